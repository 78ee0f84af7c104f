//! `Option<SocketAddr>` fields written as `"127.0.0.1:9464"`, with an error that shows the form.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserializer, Serializer, de};

/// What an address value must look like; used in error messages.
pub const EXPECTED: &str = "a socket address such as \"127.0.0.1:9464\" or \"[::1]:9464\"";

/// Serde serializer (the field is skipped when `None`).
pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match addr {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_none(),
    }
}

/// Serde deserializer.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = Option<SocketAddr>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.parse().map(Some).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_str(Visitor)
}

/// The same, for a required `SocketAddr` field.
pub mod required {
    use std::net::SocketAddr;

    use serde::{Deserializer, Serializer};

    /// Serde serializer.
    pub fn serialize<S: Serializer>(addr: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&addr.to_string())
    }

    /// Serde deserializer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        // `Some` always: the optional form only yields `None` for a missing field.
        super::deserialize(d).map(|a| a.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))))
    }
}
