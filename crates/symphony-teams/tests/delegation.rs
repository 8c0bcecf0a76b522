//! Contract-net delegation: re-awards after failures and missed deadlines without losing
//! or duplicating the task, a contractor process killed mid-contract over NATS, and a
//! conductor that shifts work toward the agent that succeeds.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use symphony_teams::delegation::{serve_contracts, Bid, Conductor, ConductorConfig, Task};
use symphony_teams::{AgentId, Bus};

fn task(id: &str, deadline_ms: u64) -> Task {
    Task {
        id: id.into(),
        kind: "sum".into(),
        content: "2 + 2".into(),
        deadline: Duration::from_millis(deadline_ms),
    }
}

fn bid(cost: f64) -> Bid {
    Bid {
        cost,
        confidence: 0.9,
        load: 0,
    }
}

fn names(names: &[&str]) -> Vec<AgentId> {
    names.iter().map(|n| AgentId::from(*n)).collect()
}

fn config() -> ConductorConfig {
    ConductorConfig {
        bid_window: Duration::from_millis(500),
        max_rounds: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_missed_deadlines_are_re_awarded_and_the_task_completes_once() {
    let bus = Bus::in_process();
    let deliveries = Arc::new(AtomicUsize::new(0));
    // The cheapest bidder fails, the next misses its deadline (and reports late), the
    // dearest delivers.
    let flaky = serve_contracts(
        bus.join("flaky").await.unwrap(),
        |_, _| Some(bid(0.0)),
        |_| async { Err("out of ideas".to_string()) },
    );
    let slow = serve_contracts(
        bus.join("slow").await.unwrap(),
        |_, _| Some(bid(1.0)),
        |_| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            Ok("4 (late)".to_string())
        },
    );
    let counted = Arc::clone(&deliveries);
    let steady = serve_contracts(
        bus.join("steady").await.unwrap(),
        |_, _| Some(bid(2.0)),
        move |t| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(format!("{} = 4", t.content))
            }
        },
    );
    // A bidder that refuses everything, and one that left before the call.
    let picky = serve_contracts(
        bus.join("picky").await.unwrap(),
        |_, _| None,
        |_| async { Ok(String::new()) },
    );
    let mut conductor = Conductor::new(bus.join("conductor").await.unwrap(), config());
    let candidates = names(&["flaky", "slow", "steady", "picky", "gone"]);
    let outcome = conductor
        .delegate(&task("t-1", 300), &candidates)
        .await
        .unwrap();

    assert_eq!(
        outcome.completed,
        Some(("steady".into(), "2 + 2 = 4".into()))
    );
    let rounds: Vec<(Option<&str>, &str)> = outcome
        .rounds
        .iter()
        .map(|(who, how)| (who.as_ref().map(|a| a.as_str()), how.as_str()))
        .collect();
    assert_eq!(
        rounds,
        [
            (Some("flaky"), "failed: out of ideas"),
            (Some("slow"), "timed out"),
            (Some("steady"), "completed"),
        ]
    );
    // The slow contractor's late result arrives after the re-award and is not taken.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(deliveries.load(Ordering::SeqCst), 1);
    assert_eq!(conductor.record.of(&"flaky".into(), "sum"), (0, 1));
    assert_eq!(conductor.record.of(&"slow".into(), "sum"), (0, 1));
    assert_eq!(conductor.record.of(&"steady".into(), "sum"), (1, 0));

    // Nobody left who bids: the task is reported undone, not lost silently.
    let outcome = conductor
        .delegate(&task("t-2", 300), &names(&["picky", "gone"]))
        .await
        .unwrap();
    assert_eq!(outcome.completed, None);
    assert_eq!(outcome.rounds, vec![(None, "no bids".to_string())]);
    for job in [flaky, slow, steady, picky] {
        job.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conductor_shifts_work_toward_the_agent_that_succeeds() {
    let bus = Bus::in_process();
    // Equal bids; `unreliable` fails three tasks in four, `reliable` never.
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    let unreliable = serve_contracts(
        bus.join("unreliable").await.unwrap(),
        |_, _| Some(bid(1.0)),
        move |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n.is_multiple_of(4) {
                    Ok("done".to_string())
                } else {
                    Err("wrong answer".to_string())
                }
            }
        },
    );
    let reliable = serve_contracts(
        bus.join("reliable").await.unwrap(),
        |_, _| Some(bid(1.0)),
        |_| async { Ok("done".to_string()) },
    );
    let mut conductor = Conductor::new(
        bus.join("conductor").await.unwrap(),
        ConductorConfig {
            bid_window: Duration::from_millis(500),
            max_rounds: 2,
        },
    );
    let candidates = names(&["unreliable", "reliable"]);
    let mut first_awards = Vec::new();
    for n in 0..60 {
        let outcome = conductor
            .delegate(&task(&format!("t-{n}"), 1000), &candidates)
            .await
            .unwrap();
        assert!(outcome.completed.is_some(), "task {n}: {outcome:?}");
        first_awards.push(outcome.rounds[0].0.clone().unwrap());
    }
    let share = |awards: &[AgentId]| awards.iter().filter(|a| a.as_str() == "reliable").count();
    let by_twenty: Vec<usize> = first_awards.chunks(20).map(share).collect();
    println!("first awards to `reliable` per 20 tasks: {by_twenty:?}");
    println!(
        "track record (successes, failures): reliable {:?}, unreliable {:?}",
        conductor.record.of(&"reliable".into(), "sum"),
        conductor.record.of(&"unreliable".into(), "sum")
    );
    assert!(by_twenty[2] >= 15, "{by_twenty:?}");
    assert!(by_twenty[2] >= by_twenty[0], "{by_twenty:?}");
    // The bandit still tries the other now and then rather than never again.
    assert!(share(&first_awards) < 60, "{by_twenty:?}");
    unreliable.abort();
    reliable.abort();
}

const CHILD_NATS: &str = "SYMPHONY_TEST_CONTRACTOR_NATS";

/// Not a test on its own: the contractor process `a_contractor_killed_mid_contract...`
/// starts (this test binary again, with the NATS address in the environment). It bids
/// lowest, says `working` when awarded, and never finishes.
#[test]
#[ignore = "run as a child process by a_contractor_killed_mid_contract_over_nats_is_replaced"]
fn contractor_process() {
    let url = std::env::var(CHILD_NATS).expect("started by the parent test");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bus = Bus::nats(&url).await.unwrap();
        let mailbox = bus.join("doomed").await.unwrap();
        let job = serve_contracts(
            mailbox,
            |_, _| Some(bid(0.0)),
            |_| async {
                println!("working");
                std::future::pending::<()>().await;
                unreachable!()
            },
        );
        println!("ready");
        job.await.unwrap();
    });
}

/// Reads the child's output until a line ends with `word` (libtest may print its own
/// words before it on the same line).
fn wait_for(lines: &mut impl Iterator<Item = std::io::Result<String>>, word: &str) {
    for line in lines {
        if line.unwrap().trim().ends_with(word) {
            return;
        }
    }
    panic!("the contractor process ended before saying `{word}`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contractor_killed_mid_contract_over_nats_is_replaced() {
    let server = common::NatsServer::start();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "contractor_process", "--ignored", "--nocapture"])
        .env(CHILD_NATS, &server.url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = tokio::task::spawn_blocking(move || {
        wait_for(&mut lines, "ready");
        lines
    })
    .await
    .unwrap();

    let bus = Bus::nats(&server.url).await.unwrap();
    let deliveries = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&deliveries);
    let survivor = serve_contracts(
        bus.join("survivor").await.unwrap(),
        |_, _| Some(bid(1.0)),
        move |t| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(format!("{} = 4", t.content))
            }
        },
    );
    let mut conductor = Conductor::new(bus.join("conductor").await.unwrap(), config());
    let delegation = tokio::spawn(async move {
        let outcome = conductor
            .delegate(&task("t-nats", 2000), &names(&["doomed", "survivor"]))
            .await
            .unwrap();
        (outcome, conductor)
    });
    // Kill -9 the contractor once it is working on the task.
    tokio::task::spawn_blocking(move || {
        wait_for(&mut lines, "working");
        child.kill().unwrap();
        child.wait().unwrap();
    })
    .await
    .unwrap();
    let (outcome, conductor) = delegation.await.unwrap();
    assert_eq!(
        outcome.completed,
        Some(("survivor".into(), "2 + 2 = 4".into()))
    );
    assert_eq!(
        outcome.rounds[0],
        (Some("doomed".into()), "timed out".into())
    );
    assert_eq!(outcome.rounds.len(), 2);
    assert_eq!(deliveries.load(Ordering::SeqCst), 1);
    assert_eq!(conductor.record.of(&"doomed".into(), "sum"), (0, 1));
    survivor.abort();
}
