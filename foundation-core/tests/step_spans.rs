//! Steps are `tracing` spans. In a test binary of its own: tracing caches callsite interest
//! process-wide, and tests running beside it with no subscriber could cache the `step` span as
//! disabled while this test's subscriber is installed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io;
use std::sync::{Arc, Mutex};

use foundation_core::error_context::ErrorContext;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_step_is_a_tracing_span_with_its_outcome() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let ctx = ErrorContext::new("checkout");
        let _ = ctx.step_sync("charge_card", |_| {
            tracing::info!("inside the step");
            Err::<(), _>("card declined")
        });
    });
    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(out.contains("step{operation=checkout step=charge_card"), "{out}");
    assert!(out.contains("inside the step"), "{out}");
    assert!(out.contains("outcome=\"failed\""), "{out}");
}
