// Copyright (c) Sean Lawlor
//
// This source code is licensed under both the MIT license found in the
// LICENSE-MIT file in the root directory of this source tree.

//! Define's a node's authentication process between peers. Definition
//! can be found in [Erlang's handshake](https://www.erlang.org/doc/apps/erts/erl_dist_protocol.html)
//!
//! Protocol version 2 (this fork) differs from Erlang's and from version 1 in what is proved:
//! the client sends a 256-bit nonce with its name, the server answers with its own, and each
//! side proves it holds the cookie with an HMAC over the direction, both nonces and both names
//! (`crate::hash`). The server proves nothing until the client has, and a peer presenting a
//! nonce this process issued is refused. Version 1 peers (no nonce) are refused.

use crate::hash::Digest;
use crate::hash::Direction;
use crate::hash::Nonce;
use crate::hash::NonceRegistry;
use crate::hash::Transcript;
use crate::protocol::auth as proto;

/// Server authentication FSM
#[derive(Debug)]
pub(crate) enum ServerAuthenticationProcess {
    /// (1) Client initiates handshake by sending their peer name and nonce
    WaitingOnPeerName,

    /// (2) We have the peer name (with a well-formed nonce that is not one of ours), and have
    /// replied with our own [proto::ServerStatus] reply
    HavePeerName(proto::NameMessage),

    /// (2B) Waiting on the client's status (true/false), if [proto::ClientStatus] was `alive`.
    ///
    /// Argument is the transcript the proofs will cover
    WaitingOnClientStatus(Transcript),

    /// (3) Waiting on the client's proof in reply to the [proto::Challenge] from the server.
    ///
    /// Argument is the transcript the proofs cover
    WaitingOnClientChallengeReply(Transcript),

    /// (4) The client's proof checked out and we're ok with the channel.
    /// The client has the final decision after they check our proof which we send
    /// with [proto::ChallengeAck]
    ///
    /// Argument is the proof to send to the client
    Ok(Digest),

    /// Close
    Close,
}

impl ServerAuthenticationProcess {
    /// Initialize the FSM state
    pub(crate) fn init() -> Self {
        Self::WaitingOnPeerName
    }

    /// The nonce the client sent with its name, if it was a well-formed version 2 nonce that
    /// this process did not issue.
    pub(crate) fn client_nonce(name: &proto::NameMessage, ours: &NonceRegistry) -> Option<Nonce> {
        let nonce = crate::hash::nonce_from_wire(&name.nonce)?;
        (!ours.is_ours(&nonce)).then_some(nonce)
    }

    /// Wait for the client's status before challenging it (it was told the peer is `Alive`).
    pub(crate) fn wait_for_client_status(&self, transcript: Transcript) -> Self {
        if matches!(self, Self::HavePeerName(_)) {
            Self::WaitingOnClientStatus(transcript)
        } else {
            Self::Close
        }
    }

    /// Challenge the client: the proofs will cover `transcript`.
    pub(crate) fn start_challenge(&self, transcript: Transcript) -> Self {
        if matches!(self, Self::WaitingOnClientStatus(_) | Self::HavePeerName(_)) {
            Self::WaitingOnClientChallengeReply(transcript)
        } else {
            Self::Close
        }
    }

    /// Implement the FSM state transitions; `ours` holds the nonces this node issued.
    pub(crate) fn next(
        &self,
        auth_message: proto::AuthenticationMessage,
        cookie: &'_ str,
        ours: &NonceRegistry,
    ) -> Self {
        if let Some(msg) = auth_message.msg {
            match msg {
                proto::authentication_message::Msg::Name(name) => {
                    if let Self::WaitingOnPeerName = &self {
                        // A version 1 peer (no nonce), a malformed nonce, or our own nonce
                        // reflected back: refused before anything is registered.
                        if Self::client_nonce(&name, ours).is_none()
                            || !same_version(name.flags.as_ref())
                        {
                            return Self::Close;
                        }
                        return Self::HavePeerName(name);
                    }
                }
                proto::authentication_message::Msg::ClientStatus(status) => {
                    if let Self::WaitingOnClientStatus(transcript) = &self {
                        // client says to not continue the session
                        if !status.status {
                            return Self::Close;
                        } else {
                            return self.start_challenge(transcript.clone());
                        }
                    }
                }
                proto::authentication_message::Msg::ClientChallenge(challenge_reply) => {
                    if let Self::WaitingOnClientChallengeReply(transcript) = &self {
                        if transcript.verify(
                            cookie,
                            Direction::ClientToServer,
                            &challenge_reply.digest,
                        ) {
                            return Self::Ok(transcript.proof(cookie, Direction::ServerToClient));
                        } else {
                            // the client does not hold the cookie, or answered another
                            // connection's challenge
                            return Self::Close;
                        }
                    }
                }
                _ => {}
            }
        }
        // received either an empty message or an out-of-order message. The node can't be trusted
        Self::Close
    }
}

/// Whether a peer speaks this node's protocol version (patch 9: older builds of this fork send
/// one-field messages with a length prefix, which this version would misread).
fn same_version(flags: Option<&proto::NodeFlags>) -> bool {
    flags.is_some_and(|flags| flags.version == crate::node::PROTOCOL_VERSION)
}

/// Client authentication FSM
#[derive(Debug)]
pub(crate) enum ClientAuthenticationProcess {
    /// (1) After the client has sent their peer name and nonce
    /// they wait for the [proto::ServerStatus] from the server
    WaitingForServerStatus,

    /// (2) We've potentially sent our client status. Either way
    /// we're waiting for the [proto::Challenge] from the server
    WaitingForServerChallenge(proto::ServerStatus),

    /// (3) We've sent our proof to the server, and we're waiting
    /// on the server's proof to determine if we should open the
    /// channel.
    ///
    /// Arguments are the server's challenge, our proof to send and the transcript both proofs
    /// cover
    WaitingForServerChallengeAck(proto::Challenge, Digest, Transcript),

    /// (4) We've validated the server's proof and agree
    /// that the channel is now open for node inter-communication
    Ok,

    /// Close
    Close,
}

impl ClientAuthenticationProcess {
    /// Initialize the FSM state
    pub(crate) fn init() -> Self {
        Self::WaitingForServerStatus
    }

    /// Implement the client FSM transitions. `our_nonce` and `(our_name, our_connection)` are
    /// what this client sent in its [proto::NameMessage]; `ours` holds the nonces this node
    /// issued.
    pub(crate) fn next(
        &self,
        auth_message: proto::AuthenticationMessage,
        cookie: &'_ str,
        our_nonce: Nonce,
        (our_name, our_connection): (&str, &str),
        ours: &NonceRegistry,
    ) -> Self {
        if let Some(msg) = auth_message.msg {
            match msg {
                proto::authentication_message::Msg::ServerStatus(status) => {
                    if let Self::WaitingForServerStatus = &self {
                        return Self::WaitingForServerChallenge(status);
                    }
                }
                proto::authentication_message::Msg::ServerChallenge(challenge_msg) => {
                    if let Self::WaitingForServerChallenge(_) = &self {
                        let Some(server_nonce) = crate::hash::nonce_from_wire(&challenge_msg.nonce)
                        else {
                            return Self::Close;
                        };
                        if ours.is_ours(&server_nonce)
                            || !same_version(challenge_msg.flags.as_ref())
                        {
                            // our own challenge reflected back at us, or a peer of another
                            // protocol version
                            return Self::Close;
                        }
                        let transcript = Transcript {
                            client_nonce: our_nonce,
                            server_nonce,
                            client_name: our_name.to_string(),
                            server_name: challenge_msg.name.clone(),
                            client_connection: our_connection.to_string(),
                            server_connection: challenge_msg.connection_string.clone(),
                        };
                        let proof = transcript.proof(cookie, Direction::ClientToServer);
                        return Self::WaitingForServerChallengeAck(
                            challenge_msg,
                            proof,
                            transcript,
                        );
                    }
                }
                proto::authentication_message::Msg::ServerAck(challenge_ack) => {
                    if let Self::WaitingForServerChallengeAck(_, _, transcript) = &self {
                        if transcript.verify(
                            cookie,
                            Direction::ServerToClient,
                            &challenge_ack.digest,
                        ) {
                            return Self::Ok;
                        } else {
                            return Self::Close;
                        }
                    }
                }
                _ => {}
            }
        }
        // received either an empty message or an out-of-order message. The node can't be trusted
        Self::Close
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::IssuedNonce;
    use crate::protocol::auth::NodeFlags;
    use proto::authentication_message::Msg;

    fn message(msg: Msg) -> proto::AuthenticationMessage {
        proto::AuthenticationMessage { msg: Some(msg) }
    }

    fn name(name: &str, nonce: &[u8]) -> proto::AuthenticationMessage {
        message(Msg::Name(proto::NameMessage {
            name: name.to_string(),
            flags: Some(NodeFlags {
                version: crate::node::PROTOCOL_VERSION,
                ..Default::default()
            }),
            connection_string: "localhost:123".to_string(),
            connection_id: 1,
            nonce: nonce.to_vec(),
        }))
    }

    fn challenge(server_name: &str, nonce: &[u8]) -> proto::AuthenticationMessage {
        message(Msg::ServerChallenge(proto::Challenge {
            name: server_name.to_string(),
            flags: Some(NodeFlags {
                version: crate::node::PROTOCOL_VERSION,
                ..Default::default()
            }),
            challenge: 0,
            connection_string: "localhost:123".to_string(),
            nonce: nonce.to_vec(),
        }))
    }

    fn status_ok() -> proto::AuthenticationMessage {
        message(Msg::ServerStatus(proto::ServerStatus {
            status: proto::server_status::Status::Ok as i32,
        }))
    }

    fn reply(digest: &[u8]) -> proto::AuthenticationMessage {
        message(Msg::ClientChallenge(proto::ChallengeReply {
            challenge: 0,
            digest: digest.to_vec(),
        }))
    }

    fn ack(digest: &[u8]) -> proto::AuthenticationMessage {
        message(Msg::ServerAck(proto::ChallengeAck {
            digest: digest.to_vec(),
        }))
    }

    /// A listener's side of a handshake as `NodeSession` drives it: name in, challenge out.
    fn server_challenges(
        server: &NonceRegistry,
        server_name: &str,
        cookie: &str,
        client: proto::AuthenticationMessage,
    ) -> (ServerAuthenticationProcess, IssuedNonce) {
        let state = ServerAuthenticationProcess::init().next(client, cookie, server);
        let ServerAuthenticationProcess::HavePeerName(peer) = &state else {
            panic!("expected the peer's name, got {state:?}");
        };
        let server_nonce = server.issue();
        let transcript = Transcript {
            client_nonce: ServerAuthenticationProcess::client_nonce(peer, server).unwrap(),
            server_nonce: server_nonce.value(),
            client_name: peer.name.clone(),
            server_name: server_name.to_string(),
            client_connection: peer.connection_string.clone(),
            server_connection: "localhost:123".to_string(),
        };
        (state.start_challenge(transcript), server_nonce)
    }

    #[test]
    fn honest_peers_with_one_cookie_authenticate_each_other() {
        let (a, b) = (NonceRegistry::default(), NonceRegistry::default());
        let client_nonce = a.issue();
        let (server, server_nonce) =
            server_challenges(&b, "b@h", "cookie", name("a@h", &client_nonce.value()));
        let client = ClientAuthenticationProcess::init()
            .next(
                status_ok(),
                "cookie",
                client_nonce.value(),
                ("a@h", "localhost:123"),
                &a,
            )
            .next(
                challenge("b@h", &server_nonce.value()),
                "cookie",
                client_nonce.value(),
                ("a@h", "localhost:123"),
                &a,
            );
        let ClientAuthenticationProcess::WaitingForServerChallengeAck(_, proof, _) = &client else {
            panic!("{client:?}");
        };
        let ServerAuthenticationProcess::Ok(server_proof) = server.next(reply(proof), "cookie", &b)
        else {
            panic!("the server refused an honest client");
        };
        let client = client.next(
            ack(&server_proof),
            "cookie",
            client_nonce.value(),
            ("a@h", "localhost:123"),
            &a,
        );
        assert!(matches!(client, ClientAuthenticationProcess::Ok));
    }

    #[test]
    fn another_cookie_is_refused_and_the_server_proves_nothing_first() {
        let (a, b) = (NonceRegistry::default(), NonceRegistry::default());
        let client_nonce = a.issue();
        let (server, server_nonce) =
            server_challenges(&b, "b@h", "cookie", name("a@h", &client_nonce.value()));
        // All the server has sent is its challenge: it holds no proof to send yet.
        assert!(!matches!(server, ServerAuthenticationProcess::Ok(_)));
        let client = ClientAuthenticationProcess::init()
            .next(
                status_ok(),
                "guess",
                client_nonce.value(),
                ("a@h", "localhost:123"),
                &a,
            )
            .next(
                challenge("b@h", &server_nonce.value()),
                "guess",
                client_nonce.value(),
                ("a@h", "localhost:123"),
                &a,
            );
        let ClientAuthenticationProcess::WaitingForServerChallengeAck(_, proof, _) = &client else {
            panic!("{client:?}");
        };
        assert!(matches!(
            server.next(reply(proof), "cookie", &b),
            ServerAuthenticationProcess::Close
        ));
    }

    #[test]
    fn a_peer_of_another_protocol_version_is_refused_in_either_role() {
        // patch 9: a peer of version 2 sends one-field messages with a length prefix
        let with_version = |mut m: proto::AuthenticationMessage, version: u32| {
            match &mut m.msg {
                Some(Msg::Name(n)) => {
                    n.flags = Some(NodeFlags {
                        version,
                        ..Default::default()
                    })
                }
                Some(Msg::ServerChallenge(c)) => {
                    c.flags = Some(NodeFlags {
                        version,
                        ..Default::default()
                    })
                }
                _ => unreachable!(),
            }
            m
        };
        let registry = NonceRegistry::default();
        let server = ServerAuthenticationProcess::init();
        for version in [2, 4] {
            assert!(matches!(
                server.next(
                    with_version(name("a@h", &[9; 32]), version),
                    "cookie",
                    &registry
                ),
                ServerAuthenticationProcess::Close
            ));
            let client = ClientAuthenticationProcess::init().next(
                status_ok(),
                "cookie",
                [1; 32],
                ("b@h", "localhost:123"),
                &registry,
            );
            assert!(matches!(
                client.next(
                    with_version(challenge("c@h", &[9; 32]), version),
                    "cookie",
                    [1; 32],
                    ("b@h", "localhost:123"),
                    &registry
                ),
                ClientAuthenticationProcess::Close
            ));
        }
        // this version goes on
        assert!(matches!(
            server.next(name("a@h", &[9; 32]), "cookie", &registry),
            ServerAuthenticationProcess::HavePeerName(_)
        ));
    }

    #[test]
    fn version_1_peers_malformed_and_reflected_nonces_are_refused() {
        // One node (one registry) in both roles, as a node is.
        let (a, b) = (NonceRegistry::default(), NonceRegistry::default());
        let server = ServerAuthenticationProcess::init();
        assert!(matches!(
            server.next(name("a@h", &[]), "cookie", &b),
            ServerAuthenticationProcess::Close
        ));
        assert!(matches!(
            server.next(name("a@h", &[7; 16]), "cookie", &b),
            ServerAuthenticationProcess::Close
        ));
        // A client presenting a nonce this node issued (its own dial's, relayed back).
        let ours = b.issue();
        assert!(matches!(
            server.next(name("a@h", &ours.value()), "cookie", &b),
            ServerAuthenticationProcess::Close
        ));
        // A server presenting a nonce this node issued (its listener's, relayed back).
        let client = ClientAuthenticationProcess::init().next(
            status_ok(),
            "cookie",
            [1; 32],
            ("b@h", "localhost:123"),
            &b,
        );
        assert!(matches!(
            client.next(
                challenge("c@h", &ours.value()),
                "cookie",
                [1; 32],
                ("b@h", "localhost:123"),
                &b
            ),
            ClientAuthenticationProcess::Close
        ));
        assert!(matches!(
            ClientAuthenticationProcess::init()
                .next(status_ok(), "cookie", [1; 32], ("a@h", "localhost:123"), &a)
                .next(
                    challenge("b@h", &[]),
                    "cookie",
                    [1; 32],
                    ("a@h", "localhost:123"),
                    &a
                ),
            ClientAuthenticationProcess::Close
        ));
    }

    /// The attack the old handshake allowed: an attacker without the cookie makes node V dial
    /// it, opens a connection of its own to V's listener under a name of its choosing, and
    /// relays V's answers between the two. Every relay fails.
    #[test]
    fn relaying_a_nodes_own_proofs_back_to_it_is_refused() {
        let cookie = "the-cluster-cookie";
        // V dials the attacker: V's client sends its name and nonce.
        let v = NonceRegistry::default();
        let v_dial_nonce = v.issue();
        let v_client = ClientAuthenticationProcess::init().next(
            status_ok(),
            cookie,
            v_dial_nonce.value(),
            ("v@h", "localhost:123"),
            &v,
        );

        // (a) The attacker presents V's own dial nonce to V's listener: refused at once.
        assert!(matches!(
            ServerAuthenticationProcess::init().next(
                name("mallory@h", &v_dial_nonce.value()),
                cookie,
                &v
            ),
            ServerAuthenticationProcess::Close
        ));

        // (b) A fresh nonce of the attacker's: V's listener challenges it...
        let (v_server, v_listen_nonce) =
            server_challenges(&v, "v@h", cookie, name("mallory@h", &[9; 32]));
        // ...the attacker passes V's listener challenge to V's dialling side under any server
        // name, and V refuses its own listener's nonce.
        for claimed in ["v@h", "mallory@h"] {
            assert!(matches!(
                v_client.next(
                    challenge(claimed, &v_listen_nonce.value()),
                    cookie,
                    v_dial_nonce.value(),
                    ("v@h", "localhost:123"),
                    &v
                ),
                ClientAuthenticationProcess::Close
            ));
        }
        // (c) Even if V answered some other challenge of the attacker's, the proof covers V's
        // dial nonce and names, not the listener's transcript: the listener refuses it.
        let answered = v_client.next(
            challenge("mallory@h", &[5; 32]),
            cookie,
            v_dial_nonce.value(),
            ("v@h", "localhost:123"),
            &v,
        );
        let ClientAuthenticationProcess::WaitingForServerChallengeAck(_, proof, _) = &answered
        else {
            panic!("{answered:?}");
        };
        assert!(matches!(
            v_server.next(reply(proof), cookie, &v),
            ServerAuthenticationProcess::Close
        ));
    }

    #[test]
    fn out_of_order_messages_close_the_handshake() {
        let (a, b) = (NonceRegistry::default(), NonceRegistry::default());
        let client_nonce = a.issue();
        assert!(matches!(
            ServerAuthenticationProcess::init().next(
                message(Msg::ClientStatus(proto::ClientStatus { status: true })),
                "cookie",
                &b
            ),
            ServerAuthenticationProcess::Close
        ));
        let (server, _server_nonce) =
            server_challenges(&b, "b@h", "cookie", name("a@h", &client_nonce.value()));
        assert!(matches!(
            server.next(status_ok(), "cookie", &b),
            ServerAuthenticationProcess::Close
        ));
        assert!(matches!(
            ClientAuthenticationProcess::init().next(
                reply(&[0; 32]),
                "cookie",
                [1; 32],
                ("a@h", "localhost:123"),
                &a
            ),
            ClientAuthenticationProcess::Close
        ));
        // The client's "continue" after an Alive status leads to the challenge.
        let waiting = ServerAuthenticationProcess::init()
            .next(name("a@h", &client_nonce.value()), "cookie", &b)
            .wait_for_client_status(Transcript {
                client_nonce: client_nonce.value(),
                server_nonce: [3; 32],
                client_name: "a@h".into(),
                server_name: "b@h".into(),
                client_connection: "localhost:123".into(),
                server_connection: "localhost:123".into(),
            });
        assert!(matches!(
            waiting.next(
                message(Msg::ClientStatus(proto::ClientStatus { status: true })),
                "cookie",
                &b
            ),
            ServerAuthenticationProcess::WaitingOnClientChallengeReply(_)
        ));
    }
}
