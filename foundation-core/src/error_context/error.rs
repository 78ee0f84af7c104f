//! An error together with the history of the operation that raised it.

use std::fmt;

use super::history::StepHistory;

/// An error that carries the step history of the operation that raised it.
///
/// `Display` prints the error and then the history, one line per step, so a log line or a
/// `main` that returns the error shows what the operation did before it failed.
pub struct ContextError<E> {
    error: E,
    history: Box<StepHistory>,
}

impl<E> ContextError<E> {
    pub(crate) fn new(error: E, history: StepHistory) -> Self {
        Self { error, history: Box::new(history) }
    }

    /// The underlying error.
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The underlying error, by value.
    pub fn into_error(self) -> E {
        self.error
    }

    /// The operation's step history up to the failure.
    pub fn history(&self) -> &StepHistory {
        &self.history
    }

    /// Both parts, by value.
    pub fn into_parts(self) -> (E, StepHistory) {
        (self.error, *self.history)
    }

    /// Boxes this error as a `dyn Error`, whatever `E` is (a `String`, an `anyhow::Error`),
    /// keeping the printed history; e.g. to return it from an actor handler, whose error type
    /// is a boxed error. `ContextError<E>` is itself an `Error` only when `E` is.
    pub fn boxed(self) -> Box<dyn std::error::Error + Send + Sync + 'static>
    where
        E: fmt::Display + fmt::Debug + Send + Sync + 'static,
    {
        Box::new(Boxed(self))
    }
}

/// A `ContextError` whose inner error need not implement `Error`.
struct Boxed<E>(ContextError<E>);

impl<E: fmt::Display> fmt::Display for Boxed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: fmt::Debug> fmt::Debug for Boxed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: fmt::Display + fmt::Debug> std::error::Error for Boxed<E> {}

impl<E: fmt::Display> fmt::Display for ContextError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.error, self.history)
    }
}

impl<E: fmt::Debug> fmt::Debug for ContextError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextError").field("error", &self.error).field("history", &self.history).finish()
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ContextError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
