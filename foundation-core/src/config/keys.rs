//! Each configuration key declared once: [`config_section!`] takes a section's keys, each with
//! its type, default, kind, range checks, reload behaviour and one description, and generates
//! the struct (the description is the field's doc), its `Default`, the range checks
//! ([`Section::check_keys`]) and the reference entries ([`Section::KEYS`], from which
//! [`reference`](super::reference) builds `docs/guide/configuration.md`). A key's doc, range
//! and reference row cannot disagree because there is one of each.
//!
//! Rules between sections (a provider named in `llm.chain` must exist) and the walk into nested
//! tables (`[cluster.tls]`, each `[llm.providers.NAME]`) are written by hand in
//! [`FoundationConfig::validate`](super::FoundationConfig::validate).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::reference::KeyDoc;
use super::validate::Validator;

/// A section of the configuration declared with [`config_section!`].
pub trait Section {
    /// Its keys, with the section's dotted prefix (`llm.providers.NAME` for a provider).
    const KEYS: &'static [KeyDoc];
    /// Runs every key's range checks, naming the keys under `prefix` (the section's real path:
    /// `llm.providers.openai`).
    fn check_keys(&self, prefix: &str, v: &mut Validator);
}

/// How a value appears in a range error.
pub trait Show {
    /// The value, as the error shows it.
    fn show(&self) -> String;
}

macro_rules! show_display {
    ($($t:ty),*) => { $(impl Show for $t { fn show(&self) -> String { self.to_string() } })* };
}
show_display!(u16, u32, u64, usize, f64, bool, SocketAddr);

impl Show for String {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Show for Duration {
    fn show(&self) -> String {
        super::duration::format(*self)
    }
}

impl Show for Ipv4Addr {
    fn show(&self) -> String {
        format!("{:?}", self.to_string())
    }
}

impl Show for PathBuf {
    fn show(&self) -> String {
        format!("{:?}", self.display().to_string())
    }
}

impl<T: std::fmt::Debug> Show for Vec<T> {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl<T: Show> Show for Option<T> {
    fn show(&self) -> String {
        self.as_ref().map_or_else(|| "none".to_string(), Show::show)
    }
}

/// Declares a configuration section: its struct and, for each key, everything about it once.
///
/// ```text
/// config_section! {
///     /// `[telemetry]`: ...            (the struct's docs and attributes)
///     #[derive(...)] #[serde(default, deny_unknown_fields)]
///     pub struct TelemetryConfig in "telemetry" {
///         window: Duration = DEFAULT_WINDOW => KeyKind::Duration,   (type, default, kind)
///             unset "none",                                        (what applies unset; optional)
///             live true,                                           (takes effect on a reload; optional)
///             check(|c: &Self| c.window >= ..., "a duration from 1s to 24h"),   (any number)
///             serde(with = "super::duration"),                     (field attributes; optional)
///             doc "Percentiles describe this much recent time ...";
///     }
///     tables { tls: Option<TlsConfig> = None, doc "..."; }          (nested tables; optional)
/// }
/// ```
macro_rules! config_section {
    (
        $(#[$sattr:meta])*
        pub struct $name:ident in $section:literal {
            $(
                $field:ident : $ty:ty = $default:expr => $kind:expr
                $(, unset $unset:literal)?
                $(, live $live:literal)?
                $(, check($check:expr, $expected:expr))*
                $(, serde($($serde:tt)*))?
                , doc $doc:literal;
            )*
        }
        $(tables {
            $(
                $tfield:ident : $tty:ty = $tdefault:expr
                $(, serde($($tserde:tt)*))?
                , doc $tdoc:literal;
            )*
        })?
    ) => {
        $(#[$sattr])*
        pub struct $name {
            $(
                #[doc = $doc]
                #[doc = ""]
                #[doc = $crate::config::keys::config_section!(@default $default; $($unset)?)]
                $(#[serde($($serde)*)])?
                pub $field: $ty,
            )*
            $($(
                #[doc = $tdoc]
                $(#[serde($($tserde)*)])?
                pub $tfield: $tty,
            )*)?
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* $($($tfield: $tdefault,)*)? }
            }
        }

        impl $crate::config::keys::Section for $name {
            const KEYS: &'static [$crate::config::reference::KeyDoc] = &[
                $($crate::config::reference::KeyDoc {
                    key: concat!($section, ".", stringify!($field)),
                    kind: $kind,
                    unset: $crate::config::keys::config_section!(@unset $($unset)?),
                    live: $crate::config::keys::config_section!(@live $($live)?),
                    description: $doc,
                },)*
            ];

            #[allow(unused_variables, reason = "a section may have no checks")]
            fn check_keys(&self, prefix: &str, v: &mut $crate::config::Validator) {
                $($({
                    let ok: fn(&Self) -> bool = $check;
                    let expected = $expected;
                    v.check(
                        &format!("{prefix}.{}", stringify!($field)),
                        $crate::config::keys::Show::show(&self.$field),
                        ok(self),
                        AsRef::<str>::as_ref(&expected),
                    );
                })*)*
            }
        }
    };
    (@default $default:expr;) => { concat!("Default: `", stringify!($default), "`.") };
    (@default $default:expr; $unset:literal) => { concat!("Unset: ", $unset, ".") };
    (@unset) => { None };
    (@unset $unset:literal) => { Some($unset) };
    (@live) => { false };
    (@live $live:literal) => { $live };
}

pub(crate) use config_section;
