//! The [`Aggregate`] trait: what a consistency boundary decides and how it folds its events.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A consistency boundary rebuilt from its events: commands are decided against the current
/// state ([`handle`](Aggregate::handle) returns the events they cause, or refuses), and the
/// state is the fold of those events ([`apply`](Aggregate::apply)).
///
/// The state is serialized as JSON for snapshots; the events are the journal's payloads.
///
/// ```
/// use foundation_actors::aggregates::Aggregate;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Account { balance: i64 }
///
/// enum Command { Deposit(i64), Withdraw(i64) }
///
/// #[derive(Clone, Serialize, Deserialize)]
/// enum Event { Deposited(i64), Withdrew(i64) }
///
/// impl Aggregate for Account {
///     const KIND: &'static str = "account";
///     type Command = Command;
///     type Event = Event;
///     type Error = String;
///
///     fn handle(&self, command: &Command) -> Result<Vec<Event>, String> {
///         match command {
///             Command::Deposit(n) if *n > 0 => Ok(vec![Event::Deposited(*n)]),
///             Command::Withdraw(n) if *n <= self.balance => Ok(vec![Event::Withdrew(*n)]),
///             Command::Withdraw(n) => Err(format!("balance {} is below {n}", self.balance)),
///             Command::Deposit(n) => Err(format!("cannot deposit {n}")),
///         }
///     }
///
///     fn apply(&mut self, event: &Event) {
///         match event {
///             Event::Deposited(n) => self.balance += n,
///             Event::Withdrew(n) => self.balance -= n,
///         }
///     }
/// }
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + 'static {
    /// The kind of aggregate: its streams are named `KIND-ID` and its event types `KIND.Variant`.
    const KIND: &'static str;
    /// What callers ask of it.
    type Command: Send + 'static;
    /// What happened to it (stored as JSON).
    type Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// Why a command is refused.
    type Error: std::fmt::Display + Send + 'static;

    /// Decides a command against the current state: the events it causes (none is fine), or why
    /// it is refused. Must not change anything itself: the events do, through `apply`. It may
    /// be called again with the same command if another process changed the aggregate first.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state. Must not fail: the event already happened.
    fn apply(&mut self, event: &Self::Event);

    /// The schema version stored with its events (raise it when the event types change shape,
    /// and keep `Event`'s deserialization able to read the older payloads).
    fn schema_version() -> u32 {
        1
    }
}

/// The stored type of an event: `KIND.Variant` for an enum variant, `KIND` otherwise.
pub(crate) fn event_type<A: Aggregate>(payload: &serde_json::Value) -> String {
    let variant = match payload {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Object(map) if map.len() == 1 => map.keys().next().map(String::as_str),
        _ => None,
    };
    match variant {
        Some(v) => format!("{}.{v}", A::KIND),
        None => A::KIND.to_string(),
    }
}
