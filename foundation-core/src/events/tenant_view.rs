//! [`TenantEvents`]: one tenant's window on a shared store.

use super::backend::EventStoreError;
use super::event::{Event, EventId, NewEvent};
use super::query::EventQuery;
use super::store::EventStore;

/// A store seen by one tenant: every event appended through it is that tenant's, and every
/// read returns only that tenant's events, whatever the query or id asked for.
#[derive(Debug, Clone)]
pub struct TenantEvents {
    store: EventStore,
    tenant: String,
}

impl EventStore {
    /// This store as one tenant sees it.
    pub fn for_tenant(&self, tenant: impl Into<String>) -> TenantEvents {
        TenantEvents { store: self.clone(), tenant: tenant.into() }
    }
}

impl TenantEvents {
    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Appends an event as this tenant's (a tenant set on the event is replaced).
    pub async fn append(&self, event: NewEvent) -> Result<Event, EventStoreError> {
        self.store.append(event.tenant(self.tenant.clone())).await
    }

    /// Appends events as this tenant's, in one transaction.
    pub async fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, EventStoreError> {
        let tenant = &self.tenant;
        self.store.append_batch(events.into_iter().map(|e| e.tenant(tenant.clone())).collect()).await
    }

    /// Runs the query over this tenant's events only (a tenant named in it is replaced).
    pub async fn query(&self, query: EventQuery) -> Result<Vec<Event>, EventStoreError> {
        self.store.query(query.tenant(self.tenant.clone())).await
    }

    /// One of this tenant's events; `None` for another tenant's, as for a missing one.
    pub async fn get(&self, id: EventId) -> Result<Option<Event>, EventStoreError> {
        Ok(self.store.get(id).await?.filter(|e| e.tenant.as_deref() == Some(self.tenant.as_str())))
    }
}
