//! Raw bytes between nodes, not copied to be sent or received: documents, images, embeddings,
//! model files, anything that already is bytes.
//!
//! A [`Wire`](crate::wire::Wire) encodes a serde value (a copy into the frame) and decodes it on
//! arrival (another copy, into fresh memory). A [`Blob`] is the bytes themselves: as the only
//! field of a message variant (`Put(Blob)`), its vector becomes the frame that is written, and
//! the frame that is read becomes the receiver's vector (ractor_cluster_derive as forked,
//! `patches/ractor_cluster/PATCHES.md`, patch 9). This is what Erlang does with a large binary.
//!
//! On the wire a blob is its bytes followed by a trailer: the sender's W3C `traceparent` (55
//! bytes) and `1`, or `0`. A trailer rather than a header so that neither side moves the bytes:
//! the sender appends it (in room [`Blob::copy_from`] reserved), the receiver truncates it.
//!
//! Bounds: [`Blob::new`] refuses bytes over the frame limit you give it (the receiver would close
//! the whole session on reading a frame over its own); a frame without a valid trailer is not
//! dropped silently, it becomes a `Blob` holding [`WireError::Decode`], logged and counted in
//! `foundation_wire_decode_errors_total` (`type` = `Blob`; the log has the first decode error of
//! any type and every 1000th after it).

use foundation_core::trace_context::{self, TraceParent};

use crate::wire::WireError;

/// The longest trailer: a `traceparent` and its marker.
pub const TRAILER_MAX: usize = trace_context::TRACEPARENT_LEN + 1;

/// Bytes as a ractor message argument between nodes, with the sender's trace context.
///
/// ```
/// use foundation_actors::blob::Blob;
///
/// let document = b"%PDF-1.7 ...".to_vec();
/// let blob = Blob::new(document, 16 << 20)?;
/// // what a receiving actor does with it
/// assert_eq!(blob.into_vec()?, b"%PDF-1.7 ...");
/// // over the frame limit: refused before sending
/// assert!(Blob::copy_from(&[0; 100], 64).is_err());
/// # Ok::<(), foundation_actors::wire::WireError>(())
/// ```
pub struct Blob {
    bytes: Result<Vec<u8>, WireError>,
    traceparent: Option<TraceParent>,
}

impl Blob {
    /// `bytes` for sending, refused (with [`WireError::TooLarge`]) if they and the trailer are
    /// over `max_bytes`. Moves the vector; sending appends the trailer to it, which reallocates
    /// (a copy) unless it has [`TRAILER_MAX`] bytes of spare capacity — [`Blob::copy_from`]
    /// makes one that has.
    pub fn new(bytes: Vec<u8>, max_bytes: usize) -> Result<Self, WireError> {
        Self::new_in(bytes, max_bytes, trace_context::current())
    }

    /// A copy of `bytes` for sending, in a vector with room for the trailer (one copy in all).
    pub fn copy_from(bytes: &[u8], max_bytes: usize) -> Result<Self, WireError> {
        let traceparent = trace_context::current();
        checked(bytes.len(), traceparent, max_bytes)?;
        let mut owned = Vec::with_capacity(bytes.len() + trailer_len(traceparent));
        owned.extend_from_slice(bytes);
        Ok(Blob { bytes: Ok(owned), traceparent })
    }

    fn new_in(bytes: Vec<u8>, max_bytes: usize, traceparent: Option<TraceParent>) -> Result<Self, WireError> {
        checked(bytes.len(), traceparent, max_bytes)?;
        Ok(Blob { bytes: Ok(bytes), traceparent })
    }

    /// The bytes, or why the frame they came in was not a blob.
    pub fn into_vec(self) -> Result<Vec<u8>, WireError> {
        self.bytes
    }

    /// The bytes, borrowed.
    pub fn as_slice(&self) -> Result<&[u8], &WireError> {
        self.bytes.as_deref()
    }

    /// How many bytes (0 for a frame that was not a blob).
    pub fn len(&self) -> usize {
        self.bytes.as_ref().map_or(0, Vec::len)
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sender's trace context, if it was in a trace.
    pub fn trace_parent(&self) -> Option<TraceParent> {
        self.traceparent
    }

    /// A span that continues the sender's trace on this side (`wire.receive`); a disabled
    /// span when the sender was not traced or its trace is not sampled.
    pub fn span(&self) -> tracing::Span {
        trace_context::continue_trace!(self.traceparent, "wire.receive", message = "Blob")
    }
}

fn trailer_len(traceparent: Option<TraceParent>) -> usize {
    if traceparent.is_some() { TRAILER_MAX } else { 1 }
}

fn checked(len: usize, traceparent: Option<TraceParent>, max_bytes: usize) -> Result<(), WireError> {
    let size = len.saturating_add(trailer_len(traceparent));
    if size > max_bytes {
        return Err(WireError::TooLarge { size, max: max_bytes });
    }
    Ok(())
}

/// Reads the trailer off a received frame: the bytes (truncated, not moved) and the context.
fn split_trailer(mut frame: Vec<u8>) -> Result<(Vec<u8>, Option<TraceParent>), WireError> {
    let len = trace_context::TRACEPARENT_LEN;
    let error = |len, reason: &str| WireError::Decode { type_name: "Blob", len, source: reason.into() };
    match frame.last() {
        Some(0) => {
            frame.pop();
            Ok((frame, None))
        }
        Some(1) if frame.len() > len => {
            let at = frame.len() - 1 - len;
            // A context this version does not read loses the trace, not the bytes.
            let tp = std::str::from_utf8(&frame[at..frame.len() - 1]).ok().and_then(TraceParent::from_text);
            frame.truncate(at);
            Ok((frame, tp))
        }
        _ => Err(error(frame.len(), "no valid blob trailer")),
    }
}

impl ractor::BytesConvertable for Blob {
    fn into_bytes(self) -> Vec<u8> {
        match self.bytes {
            Ok(mut bytes) => {
                match self.traceparent {
                    Some(tp) => {
                        bytes.reserve_exact(TRAILER_MAX);
                        bytes.extend_from_slice(tp.to_text().as_bytes());
                        bytes.push(1);
                    }
                    None => {
                        // exact: a full vector would otherwise double its capacity
                        bytes.reserve_exact(1);
                        bytes.push(0);
                    }
                }
                bytes
            }
            // Only a received blob can hold an error; sent on, it is a frame the next receiver
            // refuses the same way.
            Err(_) => Vec::new(),
        }
    }

    fn from_bytes(frame: Vec<u8>) -> Self {
        match split_trailer(frame) {
            Ok((bytes, traceparent)) => Blob { bytes: Ok(bytes), traceparent },
            Err(e) => {
                crate::wire::decode_failed("Blob", &e);
                Blob { bytes: Err(e), traceparent: None }
            }
        }
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.bytes {
            Ok(b) => write!(f, "Blob({} bytes)", b.len()),
            Err(e) => write!(f, "Blob(failed: {e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use ractor::BytesConvertable;

    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn bytes_cross_in_the_same_buffer_both_ways() {
        let blob = Blob::copy_from(&[7; 4096], 1 << 20).unwrap();
        let sent_from = blob.as_slice().unwrap().as_ptr();
        let frame = blob.into_bytes();
        assert_eq!(frame.as_ptr(), sent_from, "the trailer went into reserved room: no copy");
        assert_eq!((frame.len(), frame[4096]), (4097, 0));
        let received_in = frame.as_ptr();
        let received = Blob::from_bytes(frame);
        assert_eq!(received.trace_parent(), None);
        let bytes = received.into_vec().unwrap();
        assert_eq!(bytes.as_ptr(), received_in, "the frame is the receiver's vector");
        assert_eq!(bytes, vec![7; 4096]);
    }

    #[test]
    fn the_trace_context_rides_the_trailer() {
        let tp = TraceParent::from_text(TP);
        let frame = Blob::new_in(b"hello".to_vec(), 1024, tp).unwrap().into_bytes();
        assert_eq!(&frame[..5], b"hello");
        assert_eq!((&frame[5..60], frame[60]), (TP.as_bytes(), 1));
        let received = Blob::from_bytes(frame);
        assert_eq!(received.trace_parent(), tp);
        assert_eq!(received.into_vec().unwrap(), b"hello");
        // a context this version cannot read: the bytes arrive, the trace does not continue
        let mut future = b"hello".to_vec();
        future.extend_from_slice(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        future.push(1);
        let received = Blob::from_bytes(future);
        assert_eq!((received.trace_parent(), received.into_vec().unwrap()), (None, b"hello".to_vec()));
        // empty bytes are a blob too
        let empty = Blob::from_bytes(Blob::new(Vec::new(), 1).unwrap().into_bytes());
        assert!(empty.is_empty() && empty.as_slice().is_ok());
    }

    #[test]
    fn over_the_frame_limit_is_refused_before_sending_and_counts_the_trailer() {
        let err = Blob::new(vec![0; 64], 64).unwrap_err();
        assert_eq!(err, WireError::TooLarge { size: 65, max: 64 });
        assert!(Blob::new(vec![0; 63], 64).is_ok());
        let traced = Blob::new_in(vec![0; 63], 64, TraceParent::from_text(TP)).unwrap_err();
        assert_eq!(traced, WireError::TooLarge { size: 63 + TRAILER_MAX, max: 64 });
        assert!(Blob::copy_from(&[0; 100], 64).is_err());
    }

    #[test]
    fn a_frame_without_a_valid_trailer_is_a_named_error() {
        for garbage in [vec![], vec![2], vec![1; 10], b"GET / HTTP/1.1\r\n\r\n".to_vec()] {
            let blob = Blob::from_bytes(garbage);
            assert_eq!(blob.len(), 0);
            let err = blob.into_vec().unwrap_err();
            assert!(err.to_string().contains("no valid blob trailer"), "{err}");
        }
    }
}
