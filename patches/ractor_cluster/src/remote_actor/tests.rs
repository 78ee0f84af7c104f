// Copyright (c) Sean Lawlor
//
// This source code is licensed under both the MIT license found in the
// LICENSE-MIT file in the root directory of this source tree.

use super::*;

#[ractor::concurrency::test]
async fn remote_actor_serialized_message_handling() {
    // setup
    let (link, mut outgoing) = crate::net::Link::new();
    let (remote_actor_ref, remote_actor_handle) = Actor::spawn(None, RemoteActor, link.clone())
        .await
        .expect("Failed to spawn remote actor");

    let remote_actor_instance = RemoteActor;
    let mut remote_actor_state = RemoteActorState::new(link.clone());

    // act & verify
    let bad_handler = remote_actor_instance
        .handle(
            remote_actor_ref.clone(),
            RemoteActorMessage,
            &mut remote_actor_state,
        )
        .await;
    assert!(bad_handler.is_err());

    let cast = SerializedMessage::Cast {
        variant: "A".to_string(),
        args: vec![1, 2, 3],
        metadata: None,
    };
    let cast_output = remote_actor_instance
        .handle_serialized(remote_actor_ref.clone(), cast, &mut remote_actor_state)
        .await;
    assert!(cast_output.is_ok());
    // the cast went straight to the link's writer queue
    assert!(outgoing.try_recv().is_ok());
    // cast's don't have pending requests
    assert_eq!(0, link.pending_calls());

    let (tx, _rx) = ractor::concurrency::oneshot();
    let call = SerializedMessage::Call {
        variant: "B".to_string(),
        args: vec![1, 2, 3],
        reply: tx.into(),
        metadata: None,
    };
    let call_output = remote_actor_instance
        .handle_serialized(remote_actor_ref.clone(), call, &mut remote_actor_state)
        .await;
    assert!(call_output.is_ok());
    // the link keeps the port (patch 12), under the tag the call went out with
    assert_eq!(1, link.pending_calls());
    let pid = remote_actor_ref.get_id().pid();
    assert!(
        link.take_reply(1, pid + 1).is_none(),
        "another actor's reply does not answer it"
    );

    let reply = SerializedMessage::CallReply(1, vec![3, 4, 5]);
    let reply_output = remote_actor_instance
        .handle_serialized(remote_actor_ref.clone(), reply, &mut remote_actor_state)
        .await;
    assert!(reply_output.is_ok());
    assert_eq!(0, link.pending_calls());

    // cleanup
    remote_actor_ref.stop(None);
    remote_actor_handle.await.unwrap();
}

#[ractor::concurrency::test]
async fn abandoned_requests_are_reclaimed_and_a_stopped_actor_fails_its_callers() {
    let (link, _outgoing) = crate::net::Link::new();
    let (remote_actor, remote_actor_handle) =
        Actor::spawn(None, RemoteActor, link.clone()).await.unwrap();
    let mut state = RemoteActorState::new(link.clone());
    let call = |reply: ractor::RpcReplyPort<Vec<u8>>| SerializedMessage::Call {
        variant: "Call".to_string(),
        args: vec![],
        reply,
        metadata: None,
    };
    // callers that stopped waiting: swept once in a while, not kept for ever
    for _ in 0..2 * crate::net::PENDING_SWEEP_EVERY {
        let (reply, receiver) = ractor::concurrency::oneshot::<Vec<u8>>();
        drop(receiver);
        RemoteActor
            .handle_serialized(remote_actor.clone(), call(reply.into()), &mut state)
            .await
            .unwrap();
    }
    assert!(
        link.pending_calls() <= crate::net::PENDING_SWEEP_EVERY as usize,
        "{} abandoned calls kept",
        link.pending_calls()
    );

    // a caller still waiting when the remote actor stops hears it at once
    let (reply, receiver) = ractor::concurrency::oneshot::<Vec<u8>>();
    RemoteActor
        .handle_serialized(remote_actor.clone(), call(reply.into()), &mut state)
        .await
        .unwrap();
    remote_actor.stop(None);
    remote_actor_handle.await.unwrap();
    assert!(receiver.await.is_err());

    // once the writer ended, a new call is refused at once (its port dropped), not kept
    link.writer_ended();
    let (reply, receiver) = ractor::concurrency::oneshot::<Vec<u8>>();
    assert_eq!(link.await_reply(1, reply.into()), None);
    assert!(receiver.await.is_err());
    assert_eq!(0, link.pending_calls());
}

#[ractor::concurrency::test]
async fn forwarding_failure_releases_the_reply_port() {
    // a closed session: its writer queue is gone
    let (link, outgoing) = crate::net::Link::new();
    drop(outgoing);

    let (remote_actor, remote_actor_handle) =
        Actor::spawn(None, RemoteActor, link.clone()).await.unwrap();
    let mut state = RemoteActorState::new(link);
    let (reply, receiver) = ractor::concurrency::oneshot::<Vec<u8>>();

    RemoteActor
        .handle_serialized(
            remote_actor.clone(),
            SerializedMessage::Call {
                variant: "Call".to_string(),
                args: vec![],
                reply: reply.into(),
                metadata: None,
            },
            &mut state,
        )
        .await
        .unwrap();

    assert_eq!(0, state.link.pending_calls());
    assert!(receiver.await.is_err());

    remote_actor.stop(None);
    remote_actor_handle.await.unwrap();
}

#[ractor::concurrency::test]
async fn a_stand_in_s_messages_reach_the_link_in_the_sender_s_task() {
    let (link, mut outgoing) = crate::net::Link::new();
    let (supervisor, supervisor_handle) =
        Actor::spawn(None, RemoteActor, link.clone()).await.unwrap();
    let (stand_in, stand_in_handle) = RemoteActor
        .spawn_linked(link.clone(), None, 42, 7, supervisor.get_cell())
        .await
        .unwrap();
    let cell = stand_in.get_cell();
    // patch 13: queued on the link when the send returns, before this task yielded once (no
    // mailbox, no other task)
    cell.send_serialized(SerializedMessage::Cast {
        variant: "A".to_string(),
        args: vec![1, 2, 3],
        metadata: None,
    })
    .unwrap();
    assert!(
        outgoing.try_recv().is_ok(),
        "the cast is on the link at once"
    );
    let (reply, receiver) = ractor::concurrency::oneshot::<Vec<u8>>();
    cell.send_serialized(SerializedMessage::Call {
        variant: "B".to_string(),
        args: vec![],
        reply: reply.into(),
        metadata: None,
    })
    .unwrap();
    assert!(outgoing.try_recv().is_ok(), "the call too");
    assert_eq!(1, link.pending_calls());
    // set once, and never on a local actor
    assert!(!cell.set_remote_sink(Box::new(|_, _| {})));
    assert!(!supervisor.get_cell().set_remote_sink(Box::new(|_, _| {})));
    // a stopped stand-in refuses, as its mailbox did
    stand_in.stop(None);
    stand_in_handle.await.unwrap();
    let refused = cell.send_serialized(SerializedMessage::Cast {
        variant: "A".to_string(),
        args: vec![],
        metadata: None,
    });
    assert!(refused.is_err());
    assert_eq!(0, link.pending_calls(), "its calls failed with it");
    assert!(receiver.await.is_err(), "its caller heard it");
    supervisor.stop(None);
    supervisor_handle.await.unwrap();
}

#[ractor::concurrency::test]
async fn a_call_sent_while_its_stand_in_stops_is_taken_back() {
    // the sink saw the stand-in running, registered the call, then saw it stopping (its stop's
    // own sweep of the calls may have run before the registration)
    let (link, _outgoing) = crate::net::Link::new();
    let (reply, receiver) = ractor::concurrency::oneshot::<Vec<u8>>();
    let call = SerializedMessage::Call {
        variant: "B".to_string(),
        args: vec![],
        reply: reply.into(),
        metadata: None,
    };
    let id = ActorId::Remote {
        node_id: 7,
        pid: 42,
    };
    super::forward(&link, id, &mut (0, None), call, &|| true);
    assert_eq!(0, link.pending_calls());
    assert!(receiver.await.is_err(), "its caller hears it at once");
}
