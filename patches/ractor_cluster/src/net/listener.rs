// Copyright (c) Sean Lawlor
//
// This source code is licensed under both the MIT license found in the
// LICENSE-MIT file in the root directory of this source tree.

//! TCP Server to accept incoming sessions

use std::net::IpAddr;

use ractor::cast;
use ractor::Actor;
use ractor::ActorProcessingErr;
use ractor::ActorRef;
use tokio::net::TcpListener;

use super::IncomingEncryptionMode;
use crate::node::NodeServerMessage;

/// A Tcp Socket [Listener] responsible for accepting new connections and spawning [super::session::Session]s
/// which handle the message sending and receiving over the socket.
///
/// The [Listener] supervises all of the TCP [super::session::Session] actors and is responsible for logging
/// connects and disconnects as well as tracking the current open [super::session::Session] actors.
///
/// TLS handshakes run in a task per connection, each bounded by the handshake timeout and
/// all of them together by the pending-connection cap, so a peer that opens a connection and
/// says nothing delays no one else's admission (the accept loop never waits on a handshake).
pub(crate) struct Listener {
    port: super::NetworkPort,
    session_manager: ActorRef<crate::node::NodeServerMessage>,
    encryption: IncomingEncryptionMode,
    listen_addr: Option<IpAddr>,
    handshake_timeout: std::time::Duration,
    tls_handshakes: std::sync::Arc<tokio::sync::Semaphore>,
    /// TLS handshakes in flight per peer address (addresses with none are removed), each at
    /// most a quarter of the cap, so that one host cannot hold every slot.
    tls_handshakes_by_ip:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

/// One TLS handshake in flight from an address: counted until dropped.
struct HandshakeSlot {
    ip: IpAddr,
    by_ip: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = by_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

impl Listener {
    /// Create a new `Listener`
    pub(crate) fn new(
        port: super::NetworkPort,
        session_manager: ActorRef<crate::node::NodeServerMessage>,
        encryption: IncomingEncryptionMode,
        listen_addr: Option<IpAddr>,
        handshake_timeout: std::time::Duration,
        max_pending_connections: usize,
    ) -> Self {
        Self {
            port,
            session_manager,
            encryption,
            listen_addr,
            handshake_timeout,
            tls_handshakes: std::sync::Arc::new(tokio::sync::Semaphore::new(
                max_pending_connections.max(1),
            )),
            tls_handshakes_by_ip: Default::default(),
            max_per_ip: (max_pending_connections / 4).max(1),
        }
    }

    /// A slot for a TLS handshake from `ip`, if the cap and `ip`'s share allow one.
    fn handshake_slot(&self, ip: IpAddr) -> Option<HandshakeSlot> {
        let permit = self.tls_handshakes.clone().try_acquire_owned().ok()?;
        let mut by_ip = self
            .tls_handshakes_by_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = by_ip.get(&ip).copied().unwrap_or(0);
        if count >= self.max_per_ip {
            return None;
        }
        by_ip.insert(ip, count + 1);
        Some(HandshakeSlot {
            ip,
            by_ip: self.tls_handshakes_by_ip.clone(),
            _permit: permit,
        })
    }
}

/// The Node listener's state
pub(crate) struct ListenerState {
    listener: Option<TcpListener>,
}

#[derive(crate::RactorMessage)]
pub(crate) struct ListenerMessage;

#[cfg_attr(feature = "async-trait", ractor::async_trait)]
impl Actor for Listener {
    type Msg = ListenerMessage;
    type Arguments = ActorRef<NodeServerMessage>;
    type State = ListenerState;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        node_server: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let listener = if let Some(addr) = self.listen_addr {
            // User-specified bind address — bind directly
            let addr = std::net::SocketAddr::new(addr, self.port);
            TcpListener::bind(addr).await?
        } else {
            // Default: create a dual-stack IPv6 socket so that both IPv4 and IPv6
            // connections are accepted. On Linux IPV6_V6ONLY defaults to false, but
            // on Windows it defaults to true, so we must set it explicitly.
            use socket2::{Domain, Protocol, Socket, Type};

            let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_only_v6(false)?;
            socket.set_reuse_address(true)?;
            socket.set_nonblocking(true)?;
            let addr =
                std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, self.port, 0, 0);
            socket.bind(&addr.into())?;
            socket.listen(128)?;
            TcpListener::from_std(std::net::TcpListener::from(socket))?
        };

        // If the used port differs from the user-specified port, inform the node server.
        let local_addr = listener.local_addr()?;
        if local_addr.port() != self.port {
            node_server.send_message(NodeServerMessage::PortChanged {
                port: local_addr.port(),
            })?;
        }

        // startup the event processing loop by sending an initial msg
        let _ = myself.cast(ListenerMessage);

        // create the initial state
        Ok(Self::State {
            listener: Some(listener),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // close the listener properly, in case anyone else has handles to the actor stopping
        // total droppage
        drop(state.listener.take());
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        _message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(listener) = &mut state.listener {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    // A peer that resets the connection right after connecting must not take
                    // the listener down: skip the connection, not the accept loop.
                    let _ = stream.set_nodelay(true);
                    let Ok(local) = stream.local_addr() else {
                        return Self::continue_accepting(&myself);
                    };

                    match &self.encryption {
                        IncomingEncryptionMode::Raw => {
                            let stream = super::NetworkStream::Raw {
                                peer_addr: addr,
                                local_addr: local,
                                stream,
                            };
                            let _ = cast!(
                                self.session_manager,
                                NodeServerMessage::ConnectionOpened {
                                    stream: Box::new(stream),
                                    is_server: true
                                }
                            );
                            tracing::debug!("TCP Session opened for {addr}");
                        }
                        IncomingEncryptionMode::Tls(acceptor) => {
                            let share =
                                crate::node::share_key(&addr.to_string()).unwrap_or(addr.ip());
                            let Some(slot) = self.handshake_slot(share) else {
                                // dropping the stream closes the socket
                                drop(stream);
                                let _ = cast!(
                                    self.session_manager,
                                    NodeServerMessage::ConnectionRefused {
                                        peer_addr: addr.to_string(),
                                        reason: crate::node::refusal::TOO_MANY_PENDING,
                                    }
                                );
                                return Self::continue_accepting(&myself);
                            };
                            let acceptor = acceptor.clone();
                            let session_manager = self.session_manager.clone();
                            let timeout = self.handshake_timeout;
                            tokio::spawn(async move {
                                let accepted =
                                    tokio::time::timeout(timeout, acceptor.accept(stream)).await;
                                drop(slot);
                                match accepted {
                                    Ok(Ok(enc_stream)) => {
                                        let _ = cast!(
                                            session_manager,
                                            NodeServerMessage::ConnectionOpened {
                                                stream: Box::new(super::NetworkStream::TlsServer {
                                                    peer_addr: addr,
                                                    local_addr: local,
                                                    stream: enc_stream,
                                                }),
                                                is_server: true
                                            }
                                        );
                                        tracing::debug!("TLS Session opened for {addr}");
                                    }
                                    Ok(Err(some_err)) => {
                                        tracing::debug!(
                                            "Error establishing secure socket with {addr}: {some_err}"
                                        );
                                        let _ = cast!(
                                            session_manager,
                                            NodeServerMessage::ConnectionRefused {
                                                peer_addr: addr.to_string(),
                                                reason: crate::node::refusal::TLS,
                                            }
                                        );
                                    }
                                    Err(_elapsed) => {
                                        let _ = cast!(
                                            session_manager,
                                            NodeServerMessage::ConnectionRefused {
                                                peer_addr: addr.to_string(),
                                                reason: crate::node::refusal::TIMEOUT,
                                            }
                                        );
                                    }
                                }
                            });
                        }
                    }
                }
                Err(socket_accept_error) => {
                    // Typically out of file descriptors: pause instead of spinning on the
                    // error (and logging it) while the condition lasts.
                    tracing::warn!("Error accepting socket {socket_accept_error} on Node server");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }

        Self::continue_accepting(&myself)
    }
}

impl Listener {
    fn continue_accepting(myself: &ActorRef<ListenerMessage>) -> Result<(), ActorProcessingErr> {
        // continue accepting new sockets
        let _ = myself.cast(ListenerMessage);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::net::TcpListener;

    #[test]
    fn test_listener_ipv4_binding() {
        // Test that custom IPv4 address binding works
        // We can't fully test the actor without mocking, but we can test the
        // socket binding logic that the listener uses
        let ipv4_addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let _socket_addr = std::net::SocketAddr::new(ipv4_addr, 0);
        // This will be tested in integration tests since it requires an ActorRef
    }

    #[tokio::test]
    async fn test_listener_default_dual_stack() {
        // Test that default listener binds to dual-stack IPv6 ([::]：0)
        // This tests the socket2 configuration path
        use socket2::{Domain, Protocol, Socket, Type};

        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))
            .expect("Socket creation failed");
        socket.set_only_v6(false).expect("set_only_v6 failed");
        socket
            .set_reuse_address(true)
            .expect("set_reuse_address failed");
        socket
            .set_nonblocking(true)
            .expect("set_nonblocking failed");

        let addr = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, 0, 0, 0);
        socket.bind(&addr.into()).expect("bind failed");
        socket.listen(128).expect("listen failed");

        let tcp_listener =
            TcpListener::from_std(std::net::TcpListener::from(socket)).expect("from_std failed");

        // Verify the listener is bound
        let local_addr = tcp_listener.local_addr().expect("local_addr failed");
        assert!(local_addr.port() > 0, "Port should be assigned");
    }

    #[tokio::test]
    async fn test_listener_custom_ipv4_address() {
        // Test that custom IPv4 address binding works
        let ipv4_addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let socket_addr = std::net::SocketAddr::new(ipv4_addr, 0);

        let listener = TcpListener::bind(socket_addr)
            .await
            .expect("Failed to bind IPv4 listener");

        let local = listener.local_addr().expect("local_addr failed");
        assert_eq!(
            local.ip(),
            ipv4_addr,
            "Should bind to specified IPv4 address"
        );
    }
}
