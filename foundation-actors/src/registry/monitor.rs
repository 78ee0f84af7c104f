//! Watches the services' pg scope so that an instance whose actor dies leaves the registry.

use std::sync::Weak;

use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::{Inner, PG_SCOPE};

pub(crate) struct Monitor;

pub(crate) enum MonitorMsg {}

// Local-only: explicit because ractor's `cluster` feature removes the blanket impl.
impl ractor::Message for MonitorMsg {}

impl Actor for Monitor {
    type Msg = MonitorMsg;
    type State = Weak<Inner>;
    type Arguments = Weak<Inner>;

    async fn pre_start(
        &self,
        myself: ActorRef<MonitorMsg>,
        inner: Weak<Inner>,
    ) -> Result<Weak<Inner>, ActorProcessingErr> {
        ractor::pg::monitor_scope(PG_SCOPE.to_string(), myself.get_cell());
        Ok(inner)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<MonitorMsg>,
        _: &mut Weak<Inner>,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor_scope(PG_SCOPE.to_string(), myself.get_id());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<MonitorMsg>,
        event: SupervisionEvent,
        inner: &mut Weak<Inner>,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(GroupChangeMessage::Leave(_, group, cells)) = event
            && let Some(inner) = inner.upgrade()
        {
            inner.forget_actors(&group, &cells);
        }
        Ok(())
    }
}
