//! A real `nats-server` (Debian's package; scripts/test.sh installs it) on a free loopback
//! port, stopped on drop.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// JetStream is on, its store in a temporary directory that outlives restarts.
pub struct NatsServer {
    child: Child,
    port: u16,
    pub url: String,
    store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store = tempfile::tempdir().unwrap();
        let child = spawn(port, &store);
        NatsServer {
            child,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            store,
        }
    }

    /// Stops the server as an operator would (SIGTERM: it writes its state and exits) and
    /// starts it again on the same port and store.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(stopped.success());
        let _ = self.child.wait();
        self.child = spawn(self.port, &self.store);
    }
}

fn spawn(port: u16, store: &tempfile::TempDir) -> Child {
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
