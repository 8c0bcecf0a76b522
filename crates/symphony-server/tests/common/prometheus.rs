//! `/metrics` text as Prometheus reads it, through the Python `prometheus-client` package's
//! own parser (`parse_metrics.py`). Shared with the CLI's tests, which include this file.

use std::io::Write;
use std::process::{Command, Stdio};

/// The families the parser finds: name -> `{"type", "samples": [[name, labels, value]]}`
/// (a counter's family is named without `_total`, its samples with it). `python` has
/// `prometheus-client` installed.
pub fn parse_metrics(python: &std::ffi::OsStr, text: &str) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../symphony-server/tests/parse_metrics.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("its stdin")
        .write_all(text.as_bytes())
        .expect("the text is written");
    let out = child.wait_with_output().expect("the parser ends");
    assert!(
        out.status.success(),
        "the parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser prints JSON")
}
