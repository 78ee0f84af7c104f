//! W3C trace context: the `traceparent` that rides messages between actors and nodes, and the
//! sampling decision.

use std::fmt;

/// Why a `traceparent` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent `{value}`: {reason}")]
pub struct TraceparentError {
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A position in a trace: which trace, which span, and whether it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace (never 0).
    pub trace_id: u128,
    /// The span (never 0).
    pub span_id: u64,
    /// Whether the trace is recorded (the `sampled` flag).
    pub sampled: bool,
}

fn nonzero_u64() -> u64 {
    loop {
        let v = foundation_core::random::next_u64();
        if v != 0 {
            return v;
        }
    }
}

impl TraceContext {
    /// A new trace, sampled or not by `sampler`.
    pub fn new_root(sampler: &Sampler) -> Self {
        let trace_id = (u128::from(nonzero_u64()) << 64) | u128::from(foundation_core::random::next_u64());
        TraceContext { trace_id, span_id: nonzero_u64(), sampled: sampler.samples(trace_id) }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        TraceContext { span_id: nonzero_u64(), ..*self }
    }

    /// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`). Versions above 00 are read
    /// as 00 (their extra fields ignored), as the recommendation asks; version `ff`, all-zero
    /// ids and malformed fields are refused.
    pub fn parse(value: &str) -> Result<Self, TraceparentError> {
        let error = |reason| TraceparentError { value: value.chars().take(80).collect(), reason };
        let parts: Vec<&str> = value.trim().split('-').collect();
        if parts.len() < 4 {
            return Err(error("expected version-traceid-spanid-flags"));
        }
        let hex = |s: &str, len: usize| {
            s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        };
        if !hex(parts[0], 2) || parts[0] == "ff" {
            return Err(error("bad version"));
        }
        if parts[0] == "00" && parts.len() != 4 {
            return Err(error("version 00 has exactly four fields"));
        }
        if !hex(parts[1], 32) || !hex(parts[2], 16) || !hex(parts[3], 2) {
            return Err(error("fields must be lowercase hex of 32, 16 and 2 digits"));
        }
        let trace_id = u128::from_str_radix(parts[1], 16).map_err(|_| error("bad trace id"))?;
        let span_id = u64::from_str_radix(parts[2], 16).map_err(|_| error("bad span id"))?;
        let flags = u8::from_str_radix(parts[3], 16).map_err(|_| error("bad flags"))?;
        if trace_id == 0 || span_id == 0 {
            return Err(error("all-zero trace or span id"));
        }
        Ok(TraceContext { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The `traceparent` header value.
    pub fn to_traceparent(&self) -> String {
        self.to_string()
    }

    /// The trace id as 32 hex digits.
    pub fn trace_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl From<TraceContext> for foundation_core::trace_context::TraceParent {
    fn from(c: TraceContext) -> Self {
        foundation_core::trace_context::TraceParent {
            trace_id: c.trace_id,
            span_id: c.span_id,
            sampled: c.sampled,
        }
    }
}

impl From<foundation_core::trace_context::TraceParent> for TraceContext {
    fn from(p: foundation_core::trace_context::TraceParent) -> Self {
        TraceContext { trace_id: p.trace_id, span_id: p.span_id, sampled: p.sampled }
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&foundation_core::trace_context::TraceParent::from(*self).to_text())
    }
}

/// Which new traces are recorded: a fixed share, decided from the trace id so that every node
/// decides the same for the same trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    rate: f64,
}

impl Sampler {
    /// Records `rate` (0 to 1) of new traces.
    pub fn new(rate: f64) -> Self {
        Sampler { rate: if rate.is_finite() { rate.clamp(0.0, 1.0) } else { 0.0 } }
    }

    /// Records every trace.
    pub fn always() -> Self {
        Self::new(1.0)
    }

    /// The share recorded.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether the trace `trace_id` is recorded.
    pub fn samples(&self, trace_id: u128) -> bool {
        // The low 64 bits are random in every id we make (W3C asks for the right-most 7 bytes).
        ((trace_id as u64) >> 11) as f64 / (1u64 << 53) as f64 <= self.rate && self.rate > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_ones_say_why() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(tp).unwrap();
        assert_eq!(ctx.to_traceparent(), tp);
        assert!(ctx.sampled);
        assert_eq!(ctx.child().trace_id, ctx.trace_id);
        assert_ne!(ctx.child().span_id, ctx.span_id);
        for (bad, why) in [
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all-zero"),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "bad version"),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "lowercase hex"),
            ("00-4bf92f3577b34da6-00f067aa0ba902b7-01", "lowercase hex"),
            ("garbage", "expected version"),
        ] {
            let err = TraceContext::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        // A later version's extra fields are ignored.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra").is_ok());
    }

    #[test]
    fn sampling_keeps_about_the_rate_and_agrees_for_a_trace() {
        let sampler = Sampler::new(0.1);
        let kept = (0..10_000).filter(|_| TraceContext::new_root(&sampler).sampled).count();
        assert!((700..1300).contains(&kept), "{kept}");
        assert!(!Sampler::new(0.0).samples(u128::MAX));
        assert!(Sampler::always().samples(1));
        let id = TraceContext::new_root(&sampler).trace_id;
        assert_eq!(sampler.samples(id), Sampler::new(0.1).samples(id));
    }
}
