//! The cause of an error, kept: [`BoxError`] for functions users write, and [`Cause`] for error
//! types that must stay `Clone` and comparable (errors handed to several waiters, compared in
//! tests) yet keep the error they wrap as their `source()`.
//!
//! Convention of the workspace: an error that wraps another prints the cause in its own
//! one-line message *and* returns it from `source()`; a printer of the whole chain skips a
//! cause whose text is already there (as the `foundation` command does).

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Any error, boxed: what a function a user writes for Foundation to call returns (a
/// projection, a tool, a bidder's task). `?` works on every error type; `"text".into()` makes
/// one from a message.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A wrapped error, shared: cheap to clone, compared by its message, and its own `source()`
/// chain kept. Made from any error or from a message (`Cause::from("no route")`).
#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    /// Keeps `error` as a cause.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Cause(Arc::from(error.into()))
    }

    /// The error kept (a message-only cause is a `String`'s error type).
    pub fn get(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The error kept, if it is a `T`.
    pub fn downcast_ref<T: Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Cause::new(message)
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Cause::new(message)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Two causes are equal when their messages are: what a test or a caller comparing errors can
/// see of them.
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

/// A cause crosses processes as its message (the error value itself stays behind).
impl serde::Serialize for Cause {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Cause {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Cause::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_keeps_the_error_and_compares_by_message() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let cause = Cause::new(io);
        assert_eq!(cause.to_string(), "no such file");
        assert_eq!(cause.clone(), Cause::from("no such file"));
        let json = serde_json::to_string(&cause).unwrap();
        assert_eq!(serde_json::from_str::<Cause>(&json).unwrap(), cause);
        #[derive(Debug, thiserror::Error)]
        #[error("cannot load: {source}")]
        struct Load {
            #[source]
            source: Cause,
        }
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        let load = Load { source: cause };
        assert_eq!(Error::source(&load).map(ToString::to_string).as_deref(), Some("no such file"));
    }
}
