//! Durable inboxes: messages that wait for an agent that is not running, come again when
//! not acknowledged, and (over NATS, JetStream on disk) survive the server's restart.

mod common;

use std::time::Duration;

use symphony_teams::acl::{Message, Performative};
use symphony_teams::{Bus, Error};

const WAIT: Duration = Duration::from_secs(5);
const ACK_WAIT: Duration = Duration::from_millis(500);

fn handover(n: u32) -> Message {
    Message::new(Performative::Request, "conductor")
        .to("archivist")
        .content(format!("task {n}"))
        .conversation(format!("t-{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_an_agent_that_is_not_running() {
    let server = common::NatsServer::start();
    for bus in [Bus::in_process(), Bus::nats(&server.url).await.unwrap()] {
        bus.send_durable(&handover(1)).await.unwrap();
        bus.send_durable(&handover(2)).await.unwrap();
        let mut archivist = bus.join_durable("archivist", ACK_WAIT).await.unwrap();
        for n in 1..=2 {
            let received = archivist.recv_within(WAIT).await.unwrap();
            assert_eq!(received.message, handover(n), "{}", bus.transport_name());
            received.ack().await.unwrap();
        }
        // Away and back: what came meanwhile is there, what was taken is not.
        drop(archivist);
        bus.send_durable(&handover(3)).await.unwrap();
        let mut archivist = bus.join_durable("archivist", ACK_WAIT).await.unwrap();
        let received = archivist.recv_within(WAIT).await.unwrap();
        assert_eq!(received.message, handover(3));
        received.ack().await.unwrap();
        let nothing = archivist.recv_within(ACK_WAIT * 3).await;
        assert!(
            matches!(nothing, Err(Error::Timeout(_))),
            "{}",
            bus.transport_name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_nats_what_is_not_acknowledged_comes_again_even_after_a_server_restart() {
    let mut server = common::NatsServer::start();
    let bus = Bus::nats(&server.url).await.unwrap();
    bus.send_durable(&handover(1)).await.unwrap();
    {
        // Taken, then the agent dies before acknowledging.
        let mut archivist = bus.join_durable("archivist", ACK_WAIT).await.unwrap();
        assert_eq!(
            archivist.recv_within(WAIT).await.unwrap().message,
            handover(1)
        );
    }
    let mut archivist = bus.join_durable("archivist", ACK_WAIT).await.unwrap();
    let again = archivist.recv_within(WAIT).await.unwrap();
    assert_eq!(again.message, handover(1));
    again.ack().await.unwrap();
    drop(archivist);

    // Stored, then the server is stopped and started again on its store. (Killed with
    // SIGKILL instead, it may also bring back acknowledged messages: it writes consumers'
    // state lazily. Delivery is at least once; agents tell repeats by conversation.)
    bus.send_durable(&handover(2)).await.unwrap();
    drop(bus);
    server.restart();
    let bus = Bus::nats(&server.url).await.unwrap();
    let mut archivist = bus.join_durable("archivist", ACK_WAIT).await.unwrap();
    let survived = archivist.recv_within(WAIT).await.unwrap();
    assert_eq!(survived.message, handover(2));
    survived.ack().await.unwrap();
    let nothing = archivist.recv_within(ACK_WAIT * 3).await;
    assert!(
        matches!(nothing, Err(Error::Timeout(_))),
        "{:?}",
        nothing.map(|r| r.message)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_durable_message_is_answered_and_dropped() {
    let server = common::NatsServer::start();
    let bus = Bus::nats(&server.url).await.unwrap();
    let mut sender = bus.join("sloppy").await.unwrap();
    // Make the stream exist, then publish bytes that are not a message to the inbox.
    bus.send_durable(&handover(1)).await.unwrap();
    let raw = async_nats::jetstream::new(async_nats::connect(&server.url).await.unwrap());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ACL-Performative", "shout");
    headers.insert("ACL-Sender", "sloppy");
    headers.insert("ACL-Receivers", r#"["archivist"]"#);
    let stored = raw
        .publish_with_headers("symphony.durable.archivist", headers, "HEY".into())
        .await
        .unwrap();
    stored.await.unwrap();
    bus.send_durable(&handover(2)).await.unwrap();

    let mut archivist = bus.join_durable("archivist", ACK_WAIT).await.unwrap();
    for n in 1..=2 {
        let received = archivist.recv_within(WAIT).await.unwrap();
        assert_eq!(received.message, handover(n));
        received.ack().await.unwrap();
    }
    let answer = sender.recv_within(WAIT).await.unwrap();
    assert_eq!(answer.performative, Performative::NotUnderstood);
    assert!(answer.content.contains("shout"));
    // Acknowledged as read: it does not come back.
    let nothing = archivist.recv_within(ACK_WAIT * 3).await;
    assert!(matches!(nothing, Err(Error::Timeout(_))));
}
