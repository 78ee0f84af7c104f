// Copyright (c) Sean Lawlor
//
// This source code is licensed under both the MIT license found in the
// LICENSE-MIT file in the root directory of this source tree.

//! Port implementations for signaling and reception of messages in the Ractor environment
//!
//! Most of the ports we utilize are direct aliases of [tokio]'s channels
//! (in the `sync` feature of the crate), however there are some helpful wrappers
//! and utilities to make working with mailbox processing in `ractor` easier in
//! the actor framework.

use crate::concurrency;
use crate::MessagingErr;

// ============ Output Ports ============ //
pub mod output;
pub use output::*;

// ============ Rpc (one-use) Ports ============ //

/// A remote procedure call's reply port. Wrapper of [concurrency::OneshotSender] with a
/// consistent error type
///
/// Foundation patch (patches/ractor/PATCHES.md): a port may also be a [ReplySink], code that
/// takes the reply in the replier's own task, e.g. [RpcReplyPort::converting] to another port.
/// ractor_cluster_derive converts every remote call's reply between bytes and its type this
/// way; upstream spawned a task per call on each side to do it (two more task wake-ups per
/// round trip).
pub struct RpcReplyPort<TMsg> {
    port: Sink<TMsg>,
    timeout: Option<concurrency::Duration>,
}

enum Sink<TMsg> {
    Channel(concurrency::OneshotSender<TMsg>),
    Code(Box<dyn ReplySink<TMsg>>),
}

/// Where a reply goes when it is not a channel: run by [RpcReplyPort::send] in the replier's
/// task, so it must be quick and must not block (hand the value to a channel or a queue).
pub trait ReplySink<TMsg>: Send + Sync {
    /// Takes the reply; false if it could not be delivered (the asker is gone).
    fn send(self: Box<Self>, msg: TMsg) -> bool;
    /// Whether a reply would be lost (the asker is gone).
    fn is_closed(&self) -> bool;
}

/// [RpcReplyPort::converting]'s sink: a conversion, then another port.
struct Converting<TFrom, TTo, F> {
    to: RpcReplyPort<TTo>,
    convert: F,
    _from: std::marker::PhantomData<fn(TFrom)>,
}

impl<TFrom, TTo, F> ReplySink<TFrom> for Converting<TFrom, TTo, F>
where
    TFrom: 'static,
    TTo: Send + 'static,
    F: FnOnce(TFrom) -> Option<TTo> + Send + Sync + 'static,
{
    fn send(self: Box<Self>, msg: TFrom) -> bool {
        let Converting { to, convert, .. } = *self;
        match convert(msg) {
            Some(converted) => to.send(converted).is_ok(),
            None => false,
        }
    }

    fn is_closed(&self) -> bool {
        self.to.is_closed()
    }
}

impl<TMsg> std::fmt::Debug for RpcReplyPort<TMsg> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let port = match &self.port {
            Sink::Channel(_) => "channel",
            Sink::Code(_) => "sink",
        };
        f.debug_struct("RpcReplyPort")
            .field("port", &port)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<TMsg> RpcReplyPort<TMsg> {
    /// Read the timeout of this RPC reply port
    ///
    /// Returns [Some(concurrency::Duration)] if a timeout is set, [None] otherwise
    pub fn get_timeout(&self) -> Option<concurrency::Duration> {
        self.timeout
    }

    /// Send a message to the Rpc reply port. This consumes the port
    ///
    /// * `msg` - The message to send
    ///
    /// Returns [Ok(())] if the message send was successful, [Err(MessagingErr)] otherwise
    /// (for a [ReplySink], which has taken the message, [MessagingErr::ChannelClosed])
    pub fn send(self, msg: TMsg) -> Result<(), MessagingErr<TMsg>> {
        match self.port {
            Sink::Channel(port) => port.send(msg).map_err(|t| MessagingErr::SendErr(t)),
            Sink::Code(sink) => match sink.send(msg) {
                true => Ok(()),
                false => Err(MessagingErr::ChannelClosed),
            },
        }
    }

    /// Determine if the port is closed (i.e. the receiver has been dropped)
    ///
    /// Returns [true] if the receiver has been dropped and the channel is
    /// closed, this means sends will fail, [false] if channel is open and
    /// receiving messages
    pub fn is_closed(&self) -> bool {
        match &self.port {
            Sink::Channel(port) => port.is_closed(),
            Sink::Code(sink) => sink.is_closed(),
        }
    }

    /// A port whose reply is taken by `sink`, in the replier's task.
    pub fn from_sink(
        sink: impl ReplySink<TMsg> + 'static,
        timeout: Option<concurrency::Duration>,
    ) -> Self {
        Self {
            port: Sink::Code(Box::new(sink)),
            timeout,
        }
    }

    /// A port whose reply is converted by `convert` and sent on to `to` (with `to`'s timeout),
    /// in the replier's task: no task in between. `convert` returning `None` drops the reply
    /// (the asker sees its channel closed).
    pub fn converting<TTo: Send + 'static>(
        to: RpcReplyPort<TTo>,
        convert: impl FnOnce(TMsg) -> Option<TTo> + Send + Sync + 'static,
    ) -> Self
    where
        TMsg: 'static,
    {
        let timeout = to.timeout;
        Self::from_sink(
            Converting {
                to,
                convert,
                _from: std::marker::PhantomData,
            },
            timeout,
        )
    }
}

impl<TMsg> From<concurrency::OneshotSender<TMsg>> for RpcReplyPort<TMsg> {
    fn from(value: concurrency::OneshotSender<TMsg>) -> Self {
        Self {
            port: Sink::Channel(value),
            timeout: None,
        }
    }
}

impl<TMsg> From<(concurrency::OneshotSender<TMsg>, concurrency::Duration)> for RpcReplyPort<TMsg> {
    fn from((value, timeout): (concurrency::OneshotSender<TMsg>, concurrency::Duration)) -> Self {
        Self {
            port: Sink::Channel(value),
            timeout: Some(timeout),
        }
    }
}
