//! The bus and the directory on both transports: in process, and through a real
//! `nats-server` started by each test.

mod common;

use std::time::Duration;

use symphony_teams::acl::{AgentId, Message, Performative};
use symphony_teams::directory::{self, Query, ServiceDescription};
use symphony_teams::{Bus, Error};

const WAIT: Duration = Duration::from_secs(5);

/// Runs `check` on an in-process bus and on a NATS bus.
async fn on_both(check: impl AsyncFn(Bus)) {
    check(Bus::in_process()).await;
    let server = common::NatsServer::start();
    check(Bus::nats(&server.url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_every_receiver_with_every_field() {
    on_both(async |bus: Bus| {
        let alice = bus.join("alice").await.unwrap();
        let mut bob = bus.join("bob").await.unwrap();
        let mut carol = bus.join("carol.team 1").await.unwrap();
        let mut watch = bus.watch().await.unwrap();
        let mut message = Message::new(Performative::InformRef, "alice")
            .to("bob")
            .to("carol.team 1")
            .content("{\"answer\": 42}\nand a second line")
            .language("json")
            .ontology("arithmetic")
            .protocol("fipa-query")
            .conversation("q-1")
            .reply_with("m-1")
            .reply_by(symphony_teams::acl::Timestamp(1_900_000_000_000));
        message.in_reply_to = Some("q-0".into());
        message.reply_to = vec!["dave".into()];
        message.encoding = Some("utf-8".into());
        alice.send(&message).await.unwrap();
        assert_eq!(
            bob.recv_within(WAIT).await.unwrap(),
            message,
            "{}",
            bus.transport_name()
        );
        assert_eq!(carol.recv_within(WAIT).await.unwrap(), message);
        // The watcher sees it once, however many receivers.
        assert_eq!(
            tokio::time::timeout(WAIT, watch.recv()).await.unwrap(),
            Some(message)
        );
        let next = tokio::time::timeout(Duration::from_millis(200), watch.recv()).await;
        assert!(next.is_err(), "{}: seen twice", bus.transport_name());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_waits_for_its_answer_and_keeps_the_rest_in_order() {
    on_both(async |bus: Bus| {
        let mut asker = bus.join("asker").await.unwrap();
        let mut answerer = bus.join("answerer").await.unwrap();
        let chatter = bus.join("chatter").await.unwrap();
        let _mute = bus.join("mute").await.unwrap();
        let server = tokio::spawn(async move {
            let question = answerer.recv_within(WAIT).await.unwrap();
            for n in 0..3 {
                let note = Message::new(Performative::Inform, "chatter")
                    .to("asker")
                    .content(format!("note {n}"));
                chatter.send(&note).await.unwrap();
            }
            chatter.bus().flush().await.unwrap();
            let mut answer = question.reply("answerer", Performative::Inform);
            answer.content = "yes".into();
            answerer.send(&answer).await.unwrap();
        });
        let question = Message::new(Performative::QueryIf, "")
            .to("answerer")
            .conversation("c");
        let answer = asker.ask(question, WAIT).await.unwrap();
        assert_eq!(answer.content, "yes");
        assert_eq!(answer.conversation_id.as_deref(), Some("c"));
        server.await.unwrap();
        for n in 0..3 {
            assert_eq!(
                asker.recv_within(WAIT).await.unwrap().content,
                format!("note {n}")
            );
        }
        let silent = Message::new(Performative::QueryIf, "").to("mute");
        let err = asker
            .ask(silent, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_finds_live_agents_and_forgets_dead_ones() {
    on_both(async |bus: Bus| {
        let df = directory::spawn(&bus).await.unwrap();
        let lease = Duration::from_millis(600);
        let mut writer = bus.join("writer").await.unwrap();
        let mut reviewer = bus.join("reviewer").await.unwrap();
        let mut client = bus.join("client").await.unwrap();
        let services = |kind: &str| vec![ServiceDescription::new(format!("{kind}-1"), kind)];
        let net = vec!["fipa-contract-net".to_string()];
        directory::register(&mut writer, services("write"), net.clone(), lease)
            .await
            .unwrap();
        directory::register(&mut reviewer, services("review"), vec![], lease)
            .await
            .unwrap();
        let writer_alive = directory::keep_registered(bus.clone(), "writer".into(), lease);
        // The reviewer does not renew: it stands for an agent that died.

        let names = |found: Vec<directory::AgentDescription>| {
            found.into_iter().map(|d| d.name.0).collect::<Vec<_>>()
        };
        let everyone = directory::search(&mut client, Query::default())
            .await
            .unwrap();
        assert_eq!(names(everyone), ["reviewer", "writer"]);
        let writers = directory::search(&mut client, Query::service_type("write"))
            .await
            .unwrap();
        assert_eq!(names(writers), ["writer"]);
        let by_protocol = Query {
            protocol: Some("fipa-contract-net".into()),
            ..Query::default()
        };
        assert_eq!(
            names(directory::search(&mut client, by_protocol).await.unwrap()),
            ["writer"]
        );

        tokio::time::sleep(lease + Duration::from_millis(400)).await;
        let everyone = directory::search(&mut client, Query::default())
            .await
            .unwrap();
        assert_eq!(
            names(everyone),
            ["writer"],
            "{}: the reviewer's lease ran out",
            bus.transport_name()
        );

        // Registering someone else is refused; deregistering works once.
        let err = directory::deregister(&mut client).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    performative: Performative::Refuse,
                    ..
                }
            ),
            "{err}"
        );
        writer_alive.abort();
        directory::deregister(&mut writer).await.unwrap();
        assert!(directory::search(&mut client, Query::default())
            .await
            .unwrap()
            .is_empty());
        df.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_names_are_unique_and_freed_on_leaving() {
    let bus = Bus::in_process();
    let first = bus.join("solo").await.unwrap();
    assert!(matches!(bus.join("solo").await, Err(Error::NameTaken(_))));
    drop(first);
    let _again = bus.join("solo").await.unwrap();
    let to_nobody = Message::new(Performative::Inform, "solo")
        .to("solo")
        .to("ghost");
    match bus.send(&to_nobody).await {
        Err(Error::Undeliverable(names)) => assert_eq!(names, vec![AgentId::from("ghost")]),
        other => panic!("{other:?}"),
    }
    let no_receiver = Message::new(Performative::Inform, "solo");
    assert!(matches!(
        bus.send(&no_receiver).await,
        Err(Error::Invalid(_))
    ));
}

/// Bytes that are not a message, and an act FIPA does not have, published straight to an
/// agent's subject by another NATS client: the agent never sees them, and each sender
/// that can be named gets `not-understood`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_over_nats_are_answered_not_understood() {
    let server = common::NatsServer::start();
    let bus = Bus::nats(&server.url).await.unwrap();
    let mut agent = bus.join("careful").await.unwrap();
    let mut sender = bus.join("sloppy").await.unwrap();
    let raw = async_nats::connect(&server.url).await.unwrap();
    let subject = "symphony.acl.careful";

    let mut unknown_act = async_nats::HeaderMap::new();
    unknown_act.insert("ACL-Performative", "shout");
    unknown_act.insert("ACL-Sender", "sloppy");
    unknown_act.insert("ACL-Receivers", r#"["careful"]"#);
    unknown_act.insert("ACL-Conversation-Id", "x-1");
    unknown_act.insert("ACL-Reply-With", "w-1");
    raw.publish_with_headers(subject, unknown_act, "HELLO".into())
        .await
        .unwrap();

    let mut bad_receivers = async_nats::HeaderMap::new();
    bad_receivers.insert("ACL-Performative", "inform");
    bad_receivers.insert("ACL-Sender", "sloppy");
    bad_receivers.insert("ACL-Receivers", "careful");
    raw.publish_with_headers(subject, bad_receivers, "hi".into())
        .await
        .unwrap();
    // No headers at all: nobody to answer.
    raw.publish(subject, "just bytes".into()).await.unwrap();

    let mut binary = async_nats::HeaderMap::new();
    binary.insert("ACL-Performative", "inform");
    binary.insert("ACL-Sender", "sloppy");
    binary.insert("ACL-Receivers", r#"["careful"]"#);
    raw.publish_with_headers(subject, binary, vec![0xff, 0x00].into())
        .await
        .unwrap();

    let fine = Message::new(Performative::Inform, "sloppy")
        .to("careful")
        .content("ok");
    // A round trip through the server on the raw connection: once its own message comes
    // back, the server has routed everything published before it. (A flush only empties
    // the client's buffer; without this, `fine`, sent on another connection, could reach
    // the agent first and leave a malformed message unread.)
    let mut echo = raw.subscribe("test.echo").await.unwrap();
    raw.publish("test.echo", "".into()).await.unwrap();
    tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut echo))
        .await
        .unwrap();
    sender.send(&fine).await.unwrap();

    // Only the well-formed message reaches the agent; its loop answers the others.
    let got = agent.recv_within(WAIT).await.unwrap();
    assert_eq!(got, fine);
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(sender.recv_within(WAIT).await.unwrap());
    }
    assert!(answers
        .iter()
        .all(|a| a.performative == Performative::NotUnderstood));
    assert!(answers.iter().all(|a| a.sender == AgentId::from("careful")));
    assert!(
        answers[0].content.contains("shout"),
        "{}",
        answers[0].content
    );
    assert_eq!(answers[0].conversation_id.as_deref(), Some("x-1"));
    assert_eq!(answers[0].in_reply_to.as_deref(), Some("w-1"));
    assert!(
        answers[2].content.contains("UTF-8"),
        "{}",
        answers[2].content
    );
    let more = sender.recv_within(Duration::from_millis(200)).await;
    assert!(matches!(more, Err(Error::Timeout(_))), "{more:?}");
}

/// The benchmark's figures come from real deliveries on both transports: every message
/// sent is counted as received, and every ping timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_counts_every_delivery() {
    use symphony_teams::bench::{run, BenchConfig};
    on_both(async |bus: Bus| {
        let config = BenchConfig {
            agents: 200,
            pings: 50,
            messages: 2_000,
        };
        let report = run(&bus, &config).await.unwrap();
        assert_eq!(report.transport, bus.transport_name());
        assert_eq!(
            (report.agents, report.pings, report.messages),
            (200, 50, 2_000)
        );
        assert!(
            report.p50_us > 0.0 && report.p50_us <= report.p99_us && report.p99_us <= report.max_us
        );
    })
    .await;
}
