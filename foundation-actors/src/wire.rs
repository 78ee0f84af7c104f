//! The one adapter that puts serde types on the wire between nodes: bincode (standard
//! configuration) behind ractor_cluster's `BytesConvertable`. Nothing else knows the format.
//!
//! Outgoing values are encoded once, and refused with [`WireError::TooLarge`] before sending if
//! they exceed the configured frame limit (the receiver would otherwise drop the whole
//! connection). A frame that does not decode is not dropped silently: it becomes a
//! [`Wire`] holding the error, is logged and counted in `foundation_wire_decode_errors_total`.

use foundation_core::trace_context::{self, TraceParent};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decoding never reads more than this, whatever a frame claims (16 MiB: ractor_cluster's own
/// inbound frame cap).
pub const DECODE_LIMIT: usize = 16 << 20;

/// What can go wrong putting a value on the wire or taking it off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The encoded value is larger than the frame limit.
    #[error("message of {size} bytes exceeds the {max}-byte frame limit (cluster.max_frame_bytes)")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The value could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[source] foundation_core::Cause),
    /// The bytes are not a valid encoding of the expected type.
    #[error("cannot decode a {type_name} from {len} bytes: {source}")]
    Decode {
        /// The expected type.
        type_name: &'static str,
        /// Bytes received.
        len: usize,
        /// Why (the underlying error).
        #[source]
        source: foundation_core::Cause,
    },
}

/// Encodes `value`, refusing it if it is larger than `max_bytes`.
pub fn encode<T: Serialize>(value: &T, max_bytes: usize) -> Result<Vec<u8>, WireError> {
    let size = checked_size(value, max_bytes)?;
    let mut bytes = Vec::with_capacity(size);
    encode_after(value, &mut bytes)?;
    Ok(bytes)
}

/// The encoded size of `value` (a pass that writes nothing), refused over `max_bytes`.
fn checked_size<T: Serialize>(value: &T, max_bytes: usize) -> Result<usize, WireError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, bincode::config::standard())
        .map_err(|e| WireError::Encode(foundation_core::Cause::new(e)))?;
    if size.bytes_written > max_bytes {
        return Err(WireError::TooLarge { size: size.bytes_written, max: max_bytes });
    }
    Ok(size.bytes_written)
}

/// Appends `value`'s encoding to `out`, whose room was reserved from [`checked_size`]: one
/// copy of each byte, no growth (bincode's own `encode_to_vec` grows a vector from empty).
fn encode_after<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    struct Append<'a>(&'a mut Vec<u8>);
    impl bincode::enc::write::Writer for Append<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }
    bincode::serde::encode_into_writer(value, Append(out), bincode::config::standard())
        .map_err(|e| WireError::Encode(foundation_core::Cause::new(e)))
}

/// The frame header for a sender's trace context: `0`, or `1` and the 55-byte `traceparent`.
fn push_header(frame: &mut Vec<u8>, traceparent: Option<TraceParent>) {
    match traceparent {
        Some(tp) => {
            frame.push(1);
            frame.extend_from_slice(tp.to_text().as_bytes());
        }
        None => frame.push(0),
    }
}

/// The length of a frame header for this context.
fn header_len(traceparent: Option<TraceParent>) -> usize {
    if traceparent.is_some() { 1 + trace_context::TRACEPARENT_LEN } else { 1 }
}

/// Decodes a `T`, refusing trailing garbage and anything over [`DECODE_LIMIT`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let error = |source: foundation_core::Cause| WireError::Decode {
        type_name: std::any::type_name::<T>(),
        len: bytes.len(),
        source,
    };
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, read) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|e| error(foundation_core::Cause::new(e)))?;
    if read != bytes.len() {
        return Err(error(format!("{} trailing bytes", bytes.len() - read).into()));
    }
    Ok(value)
}

/// Counts a frame from another node that did not decode, and logs the first and every 1000th
/// after it, of all types together (a peer sending garbage does not flood the log).
pub(crate) fn decode_failed(type_name: &'static str, error: &WireError) {
    static FAILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    metrics::counter!("foundation_wire_decode_errors_total", "type" => type_name).increment(1);
    let failed = FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if failed.is_multiple_of(1000) {
        tracing::warn!(error = %error, failed = failed + 1, "a message from another node did not decode");
    }
}

/// A serde value as a ractor message argument between nodes, with the sender's trace context.
///
/// On the wire a frame is a header and the bincode payload: `0`, or `1` followed by the 55
/// bytes of the sender's W3C `traceparent` (taken when the value was encoded, from
/// [`foundation_core::trace_context`]). The receiver reads it with [`Wire::traceparent`] and
/// continues the trace with [`Wire::span`].
pub struct Wire<T> {
    state: State<T>,
    traceparent: Option<TraceParent>,
}

enum State<T> {
    /// Encoded and size-checked, on its way out (or delivered locally without a network hop):
    /// the whole frame, header then payload, built in one buffer so that sending it is a move
    /// (a 1 MiB message was copied once more to put 1 byte in front of it).
    Encoded(Vec<u8>),
    /// Decoded on arrival.
    Value(T),
    /// Arrived but did not decode.
    Failed(WireError),
}

impl<T: Serialize + DeserializeOwned> Wire<T> {
    /// Encodes a value for sending, refusing it if it exceeds `max_bytes`.
    pub fn encode(value: &T, max_bytes: usize) -> Result<Self, WireError> {
        Self::encode_in(value, max_bytes, trace_context::current())
    }

    fn encode_in(value: &T, max_bytes: usize, traceparent: Option<TraceParent>) -> Result<Self, WireError> {
        let size = checked_size(value, max_bytes)?;
        let mut frame = Vec::with_capacity(header_len(traceparent) + size);
        push_header(&mut frame, traceparent);
        encode_after(value, &mut frame)?;
        Ok(Wire { state: State::Encoded(frame), traceparent })
    }

    /// An answer that must reach its asker: `value` encoded, or if it does not fit `max_bytes`
    /// (or cannot be encoded), `instead(why)` whatever its size (a short error, which fits any
    /// real frame limit). If even that cannot be encoded, an empty frame, which the asker reads
    /// as a decoding error.
    pub fn encode_or(value: &T, max_bytes: usize, instead: impl FnOnce(WireError) -> T) -> Self {
        Self::encode(value, max_bytes)
            .or_else(|why| Self::encode(&instead(why), usize::MAX))
            .unwrap_or_else(|_| Wire { state: State::Encoded(Vec::new()), traceparent: None })
    }

    /// Bytes already encoded (and size-checked) by [`encode`], to send to several actors without
    /// encoding again: each call copies them once, into the frame behind its header.
    pub fn from_encoded(bytes: &[u8]) -> Self {
        let traceparent = trace_context::current();
        let mut frame = Vec::with_capacity(header_len(traceparent) + bytes.len());
        push_header(&mut frame, traceparent);
        frame.extend_from_slice(bytes);
        Wire { state: State::Encoded(frame), traceparent }
    }

    /// The sender's trace context, if it was in a trace.
    pub fn trace_parent(&self) -> Option<TraceParent> {
        self.traceparent
    }

    /// The sender's W3C `traceparent`, if it was in a trace.
    pub fn traceparent(&self) -> Option<String> {
        self.traceparent.map(|tp| tp.to_text())
    }

    /// A span that continues the sender's trace on this side (`wire.receive`, with the
    /// `traceparent` field the tracer follows); a disabled span, costing nothing, when the
    /// sender was not traced or its trace is not sampled (flags `00`).
    pub fn span(&self) -> tracing::Span {
        trace_context::continue_trace!(self.traceparent, "wire.receive", message = std::any::type_name::<T>())
    }

    /// The value, or why it could not be read.
    pub fn into_inner(self) -> Result<T, WireError> {
        match self.state {
            State::Value(v) => Ok(v),
            State::Encoded(frame) => match frame.first() {
                Some(0) => decode(&frame[1..]),
                Some(_) => decode(frame.get(1 + trace_context::TRACEPARENT_LEN..).unwrap_or_default()),
                // the empty frame of an answer that could not be encoded at all
                None => decode(&frame),
            },
            State::Failed(e) => Err(e),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ractor::BytesConvertable for Wire<T> {
    fn into_bytes(self) -> Vec<u8> {
        match self.state {
            State::Encoded(frame) => frame,
            // Values only exist on the receiving side; re-encoding one cannot fail for a type
            // that decoded, and an empty frame would decode as an error on the other side.
            State::Value(v) => Self::encode_in(&v, usize::MAX, self.traceparent)
                .map(|wire| wire.into_bytes())
                .unwrap_or_default(),
            State::Failed(_) => Vec::new(),
        }
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        let len = trace_context::TRACEPARENT_LEN;
        let (traceparent, payload) = match bytes.first() {
            Some(0) => (Ok(None), &bytes[1..]),
            Some(1) if bytes.len() > len => {
                // A context this version does not read (another traceparent version, say) is
                // dropped, not the message: the trace just does not continue here.
                let tp = std::str::from_utf8(&bytes[1..=len]).ok().and_then(TraceParent::from_text);
                (Ok(tp), &bytes[len + 1..])
            }
            _ => (Err("no valid frame header"), &bytes[..0]),
        };
        let decoded = traceparent
            .map_err(|reason| WireError::Decode {
                type_name: std::any::type_name::<T>(),
                len: bytes.len(),
                source: reason.into(),
            })
            .and_then(|tp| decode(payload).map(|v| (tp, v)));
        match decoded {
            Ok((traceparent, v)) => Wire { state: State::Value(v), traceparent },
            Err(e) => {
                decode_failed(std::any::type_name::<T>(), &e);
                Wire { state: State::Failed(e), traceparent: None }
            }
        }
    }
}

impl<T> std::fmt::Debug for Wire<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            State::Encoded(b) => write!(f, "Wire(encoded, {} bytes)", b.len()),
            State::Value(_) => f.write_str("Wire(value)"),
            State::Failed(e) => write!(f, "Wire(failed: {e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use ractor::BytesConvertable;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Task {
        id: u64,
        prompt: String,
        demos: Vec<(String, String)>,
    }

    fn task() -> Task {
        Task { id: 7, prompt: "capital of France?".into(), demos: vec![("q".into(), "a".into())] }
    }

    #[test]
    fn values_round_trip_through_bytes() {
        let bytes = Wire::encode(&task(), 1024).unwrap().into_bytes();
        assert_eq!(Wire::<Task>::from_bytes(bytes).into_inner().unwrap(), task());
        // Delivered locally, never serialized by ractor: still readable.
        assert_eq!(Wire::encode(&task(), 1024).unwrap().into_inner().unwrap(), task());
    }

    #[test]
    fn the_trace_header_rides_the_frame_and_a_bad_one_is_a_decode_error() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(Wire::encode(&task(), 1024).unwrap().traceparent(), None, "no tracer installed");
        let sent = Wire::encode_in(&task(), 1024, TraceParent::from_text(tp)).unwrap();
        let bytes = sent.into_bytes();
        assert_eq!((bytes[0], &bytes[1..56]), (1, tp.as_bytes()));
        let received = Wire::<Task>::from_bytes(bytes);
        assert_eq!(received.traceparent().as_deref(), Some(tp));
        assert_eq!(received.into_inner().unwrap(), task());
        // Delivered locally with its header still on: the value, not the header, is decoded.
        let local = Wire::encode_in(&task(), 1024, TraceParent::from_text(tp)).unwrap();
        assert_eq!(local.into_inner().unwrap(), task());
        // Untraced: one byte of header.
        let plain = Wire::encode(&task(), 1024).unwrap().into_bytes();
        assert_eq!(plain[0], 0);
        assert_eq!(plain.len(), encode(&task(), 1024).unwrap().len() + 1);
        // A header that claims a context but is cut short is refused with a reason.
        let err = Wire::<Task>::from_bytes(vec![1, b'0', b'0']).into_inner().unwrap_err();
        assert!(err.to_string().contains("no valid frame header"), "{err}");
        // A context this version cannot read (a future traceparent version) loses the trace,
        // not the message.
        let mut future = vec![1];
        future.extend_from_slice(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        future.extend(encode(&task(), 1024).unwrap());
        let received = Wire::<Task>::from_bytes(future);
        assert_eq!(received.traceparent(), None);
        assert_eq!(received.into_inner().unwrap(), task());
    }

    #[derive(ractor_cluster_derive::RactorClusterMessage)]
    enum Msg {
        One(Wire<Task>),
        Two(Wire<Task>, u64),
        #[rpc]
        Ask(Wire<Task>, ractor::RpcReplyPort<Wire<Task>>),
    }

    #[test]
    fn a_call_s_reply_is_converted_in_the_replier_s_task_on_both_sides() {
        use ractor::Message;
        use ractor::concurrency::{Duration, oneshot};
        use ractor::message::SerializedMessage;
        // No runtime in this test: upstream's derive spawned a task per call on each side to
        // convert the reply (it would panic here); patches/ractor_cluster_derive (patch 11)
        // converts it in the task that sends it.
        let (asker, mut answer) = oneshot::<Wire<Task>>();
        let ask = Msg::Ask(Wire::encode(&task(), 1024).unwrap(), (asker, Duration::from_secs(3)).into());
        let SerializedMessage::Call { args, reply: to_caller, .. } = ask.serialize().unwrap() else {
            panic!("not a call")
        };
        assert_eq!(to_caller.get_timeout(), Some(Duration::from_secs(3)), "the caller's timeout rides along");
        // the far side: bytes in, a typed port for the actor
        let (wire_tx, mut wire_rx) = oneshot::<Vec<u8>>();
        let call =
            SerializedMessage::Call { variant: "Ask".into(), args, reply: wire_tx.into(), metadata: None };
        let Ok(Msg::Ask(question, port)) = Msg::deserialize(call) else { panic!("not decoded") };
        port.send(Wire::encode(&question.into_inner().unwrap(), 1024).unwrap()).unwrap();
        let bytes = wire_rx.try_recv().expect("the reply's bytes are there when send returns");
        // back on the caller's side: the bytes become the typed answer at once
        to_caller.send(bytes).unwrap();
        assert_eq!(answer.try_recv().unwrap().into_inner().unwrap(), task());
        // an asker that stopped waiting: the converting port says so and refuses the reply
        let (asker, gone) = oneshot::<Wire<Task>>();
        let ask = Msg::Ask(Wire::encode(&task(), 1024).unwrap(), asker.into());
        let SerializedMessage::Call { reply: to_caller, .. } = ask.serialize().unwrap() else { panic!() };
        assert!(!to_caller.is_closed());
        drop(gone);
        assert!(to_caller.is_closed());
        assert!(to_caller.send(Vec::new()).is_err());
    }

    #[test]
    fn a_one_field_variant_carries_the_wire_frame_itself() {
        use ractor::Message;
        use ractor::message::SerializedMessage;
        let args = |m: SerializedMessage| match m {
            SerializedMessage::Cast { args, .. } => args,
            other => panic!("not a cast: {other:?}"),
        };
        let cast = |variant: &str, args: Vec<u8>| SerializedMessage::Cast {
            variant: variant.into(),
            args,
            metadata: None,
        };
        let frame = Wire::encode(&task(), 1024).unwrap().into_bytes();
        // patches/ractor_cluster_derive: the arguments are the frame, not a copy behind a length
        let sent = args(Msg::One(Wire::encode(&task(), 1024).unwrap()).serialize().unwrap());
        assert_eq!(sent, frame);
        let Ok(Msg::One(back)) = Msg::deserialize(cast("One", sent)) else { panic!("not decoded") };
        assert_eq!(back.into_inner().unwrap(), task());
        // a field that does not decode is the Wire's error (named), not a lost message
        let Ok(Msg::One(bad)) = Msg::deserialize(cast("One", vec![9, 9])) else { panic!() };
        assert!(matches!(bad.into_inner(), Err(WireError::Decode { .. })));
        // several fields: each behind its length, all of the arguments used
        let two = args(Msg::Two(Wire::encode(&task(), 1024).unwrap(), 7).serialize().unwrap());
        assert_eq!(two.len(), 8 + frame.len() + 8 + 8);
        let Ok(Msg::Two(w, n)) = Msg::deserialize(cast("Two", two.clone())) else { panic!() };
        assert_eq!((w.into_inner().unwrap(), n), (task(), 7));
        let mut trailing = two;
        trailing.push(0);
        assert!(Msg::deserialize(cast("Two", trailing)).is_err(), "trailing bytes refused");
    }

    #[test]
    fn oversized_messages_are_refused_before_sending() {
        let big = Task { prompt: "x".repeat(10_000), ..task() };
        let err = Wire::encode(&big, 4096).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { max: 4096, .. }), "{err}");
        assert!(err.to_string().contains("exceeds the 4096-byte frame limit"), "{err}");
    }

    #[test]
    fn garbage_becomes_a_named_error_not_a_panic() {
        for garbage in [vec![], vec![0xff; 3], b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![0xfd; 64]] {
            let err = Wire::<Task>::from_bytes(garbage).into_inner().unwrap_err();
            assert!(matches!(err, WireError::Decode { .. }), "{err}");
            assert!(err.to_string().contains("Task"), "{err}");
        }
        // A length prefix claiming 2^60 bytes is refused, not allocated.
        let mut lying = vec![7];
        lying.extend([0xff, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        assert!(decode::<Task>(&lying).is_err());
        let mut trailing = encode(&task(), 1024).unwrap();
        trailing.push(0);
        assert!(decode::<Task>(&trailing).unwrap_err().to_string().contains("1 trailing bytes"));
    }
}
