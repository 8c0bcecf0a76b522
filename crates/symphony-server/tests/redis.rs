//! Replicas sharing rate limits through a real `redis-server` that wants a password: counts
//! are shared, requests go on while Redis is down, and counting resumes in Redis once it is
//! back on the same address; a server's commands spread over its pool of connections.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use common::Harness;
use serde_json::json;
use symphony_server::redis::Redis;

const PASSWORD: &str = "a-redis-password";

/// `redis-server` on a fixed port, with a password and no persistence, killed when dropped.
struct RedisServer {
    child: Child,
}

impl RedisServer {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test.sh installs it)");
        let server = Self { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Limits count per minute (`unix_time / 60`): start with most of a minute left, so the
/// test's counts all fall in one window.
async fn start_in_a_fresh_minute() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_minute = now.as_millis() % 60_000;
    if into_minute > 30_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into_minute) as u64 + 100)).await;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

/// A chat request from the key allowed one request a minute: counted at admission, then
/// 404 for the unknown model; 429 once the minute's request is spent.
async fn limited_request(h: &Harness) -> StatusCode {
    let body = json!({"model": "nope", "messages": [{"role": "user", "content": "Hi"}]});
    h.json(
        Method::POST,
        "/v1/chat/completions",
        Some(&h.limited),
        &body,
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_limits_and_survive_a_redis_restart() {
    let port = free_port();
    let mut redis = RedisServer::start(port);
    // One replica signs in as the default user with its password, the other with the
    // password alone.
    let a = Harness::with_redis(&format!("redis://default:{PASSWORD}@127.0.0.1:{port}"));
    let b = Harness::with_redis(&format!("redis://:{PASSWORD}@127.0.0.1:{port}/0"));
    let minute = start_in_a_fresh_minute().await;

    // The key's one request this minute, spent on one replica, is spent on the other.
    assert_eq!(limited_request(&a).await, StatusCode::NOT_FOUND);
    assert_eq!(limited_request(&b).await, StatusCode::TOO_MANY_REQUESTS);

    // Redis goes away: requests go on (counted by each replica alone meanwhile).
    redis.stop();
    let during = limited_request(&b).await;
    assert!(
        during == StatusCode::NOT_FOUND || during == StatusCode::TOO_MANY_REQUESTS,
        "{during}"
    );
    assert_eq!(
        a.send(Method::GET, "/v1/models", Some(&a.reader), None)
            .await
            .status,
        StatusCode::OK
    );

    // Back on the same address, empty: replica B reconnects by itself and counts there again.
    let _redis = RedisServer::start(port);
    let observer = Redis::new(&format!("redis://:{PASSWORD}@127.0.0.1:{port}")).unwrap();
    let key = format!("symphony:rl:limited:{minute}:req");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        limited_request(&b).await;
        if observer.get_int(&key).await.unwrap() >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never counted in Redis again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the count is shared again: replica A finds the minute spent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while limited_request(&a).await != StatusCode::TOO_MANY_REQUESTS {
        assert!(
            Instant::now() < deadline,
            "replica A never saw the shared count again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The counter carries an expiry, set atomically with its first count.
    let mut ttl = redis::cmd("TTL");
    ttl.arg(&key);
    let client = redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let seconds: i64 = ttl.query_async(&mut conn).await.unwrap();
    assert!((1..=120).contains(&seconds), "TTL {seconds}");
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error() {
    let port = free_port();
    let _redis = RedisServer::start(port);
    let wrong = Redis::new(&format!("redis://:not-the-password@127.0.0.1:{port}")).unwrap();
    let e = wrong.ping().await.unwrap_err().to_string();
    assert!(
        e.to_lowercase().contains("wrongpass") || e.to_lowercase().contains("auth"),
        "{e}"
    );
}

/// The clients `redis-server` has besides the `redis-cli` that asks.
fn redis_clients(port: u16) -> usize {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-a", PASSWORD, "--no-auth-warning"])
        .args(["CLIENT", "LIST"])
        .output()
        .expect("redis-cli runs (it comes with redis-server)");
    let list = String::from_utf8_lossy(&out.stdout);
    list.lines()
        .filter(|l| l.contains("addr=") && !l.contains("cmd=client|list"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_take_the_pools_connections_in_turn() {
    let port = free_port();
    let _redis = RedisServer::start(port);
    let pool =
        Redis::with_connections(&format!("redis://:{PASSWORD}@127.0.0.1:{port}"), 3).unwrap();
    // Connections are made as commands first need them.
    assert_eq!(redis_clients(port), 0);
    pool.incr_by("pooled", 1, None).await.unwrap();
    assert_eq!(redis_clients(port), 1);
    for expected in 2..=9 {
        assert_eq!(pool.incr_by("pooled", 1, None).await.unwrap(), expected);
    }
    assert_eq!(pool.get_int("pooled").await.unwrap(), 9);
    // Three connections, however many commands.
    assert_eq!(redis_clients(port), 3);
}
