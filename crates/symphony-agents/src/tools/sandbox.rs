//! Python code run in a sandbox: a child process in a fresh temporary directory, with no
//! network (a network namespace of its own, which has no interface up), an empty
//! environment, and limits on wall-clock time, memory and file size. If the network cannot
//! be cut off (no namespace support), the code is not run.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::tool::{ToolError, TypedTool};

/// What one run of sandboxed code may use.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// Wall-clock time; the process group is killed when it runs past.
    pub time: Duration,
    /// Address space, in bytes.
    pub memory: u64,
    /// Output kept of stdout and of stderr, each, in bytes.
    pub output: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(10),
            memory: 512 << 20,
            output: 16 << 10,
        }
    }
}

/// Runs Python code (the machine's `python3`, standard library only).
#[derive(Debug, Clone)]
pub struct RunPython {
    python: PathBuf,
    limits: SandboxLimits,
    needs_approval: bool,
}

impl Default for RunPython {
    fn default() -> Self {
        Self::new(SandboxLimits::default())
    }
}

impl RunPython {
    pub fn new(limits: SandboxLimits) -> Self {
        Self {
            python: PathBuf::from("python3"),
            limits,
            needs_approval: false,
        }
    }

    /// Makes every run wait for a person's approval.
    pub fn with_approval(mut self) -> Self {
        self.needs_approval = true;
        self
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeArgs {
    /// A Python 3 program; what it prints is the result.
    pub code: String,
}

impl TypedTool for RunPython {
    type Args = CodeArgs;

    fn name(&self) -> String {
        "run_python".into()
    }

    fn description(&self) -> String {
        format!(
            "Runs a Python 3 program (standard library only, no network, {} s at most) and \
             returns what it prints.",
            self.limits.time.as_secs()
        )
    }

    fn needs_approval(&self) -> bool {
        self.needs_approval
    }

    fn run(&self, args: CodeArgs) -> Result<String, ToolError> {
        let failed = |what: &str, e: std::io::Error| ToolError::Failed(format!("{what}: {e}"));
        let dir = tempfile::tempdir().map_err(|e| failed("cannot make a directory", e))?;
        std::fs::write(dir.path().join("main.py"), &args.code)
            .map_err(|e| failed("cannot write the program", e))?;
        let mut command = Command::new(&self.python);
        // -I: isolated (no user site, no PYTHON* variables, no script directory on the path).
        command
            .args(["-I", "main.py"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", dir.path())
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let limits = self.limits.clone();
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe system calls (setsid, setrlimit, unshare), allocating nothing.
        unsafe {
            command.pre_exec(move || confine(&limits));
        }
        let mut child = command.spawn().map_err(|e| {
            ToolError::Failed(format!(
                "cannot start a sandboxed python3 (the sandbox needs network namespaces): {e}"
            ))
        })?;
        let limit = self.limits.output;
        let stdout = child.stdout.take().map(|s| read_capped(s, limit));
        let stderr = child.stderr.take().map(|s| read_capped(s, limit));
        let deadline = Instant::now() + self.limits.time;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    // The whole group: the program may have started children of its own.
                    // SAFETY: kill(2) on the group this child leads (setsid in confine).
                    unsafe {
                        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
                    }
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(failed("waiting for the program", e)),
            }
        };
        let stdout = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        let Some(status) = status else {
            return Err(ToolError::Failed(format!(
                "the program ran past its {} s limit and was stopped; output so far:\n{stdout}",
                self.limits.time.as_secs_f32()
            )));
        };
        let mut out = stdout;
        if !status.success() {
            let code = status
                .code()
                .map(|c| format!("exit status {c}"))
                .unwrap_or_else(|| "killed by a signal (memory limit?)".into());
            out = format!(
                "{out}{}[{code}]\n{stderr}",
                if out.is_empty() { "" } else { "\n" }
            );
        } else if !stderr.is_empty() {
            out = format!("{out}\n[stderr]\n{stderr}");
        }
        if out.is_empty() {
            out = "(the program printed nothing)".into();
        }
        Ok(out)
    }
}

/// In the child, before exec: a session of its own (so the group can be killed), resource
/// limits, and a network namespace of its own. Tried as root first; unprivileged, a user
/// namespace makes the network namespace possible.
fn confine(limits: &SandboxLimits) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let limit = |resource, value: u64| {
        let rl = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct, which outlives the call.
        check(unsafe { libc::setrlimit(resource, &rl) })
    };
    // SAFETY: plain system calls without pointers.
    unsafe {
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET))?;
        }
    }
    limit(libc::RLIMIT_AS, limits.memory)?;
    limit(libc::RLIMIT_CPU, limits.time.as_secs() + 1)?;
    limit(libc::RLIMIT_FSIZE, 16 << 20)?;
    limit(libc::RLIMIT_CORE, 0)?;
    Ok(())
}

/// Reads a pipe to its end on a thread, keeping the first `limit` bytes.
fn read_capped(mut pipe: impl Read + Send + 'static, limit: usize) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        let mut total = 0usize;
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
            let room = limit.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        let mut text = String::from_utf8_lossy(&kept).into_owned();
        if total > limit {
            text.push_str(&format!(
                "\n[output truncated: {total} bytes, {limit} kept]"
            ));
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: &str, limits: SandboxLimits) -> Result<String, ToolError> {
        RunPython::new(limits).run(CodeArgs { code: code.into() })
    }

    #[test]
    fn code_runs_and_its_output_comes_back() {
        let out = run("print(sum(range(101)))", SandboxLimits::default()).unwrap();
        assert_eq!(out, "5050\n");
        let out = run(
            "import sys\nsys.exit('bad input')",
            SandboxLimits::default(),
        )
        .unwrap();
        assert_eq!(out, "[exit status 1]\nbad input\n");
    }

    #[test]
    fn the_network_is_unreachable() {
        // A server on this machine's loopback: reachable from here, not from the sandbox.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let code = format!(
            "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    \
             print('connected')\nexcept OSError as e:\n    print('refused', type(e).__name__)\n"
        );
        let out = run(&code, SandboxLimits::default()).unwrap();
        assert!(out.starts_with("refused"), "{out}");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn time_and_memory_are_limited() {
        let limits = SandboxLimits {
            time: Duration::from_millis(500),
            ..SandboxLimits::default()
        };
        let e = run("print('start', flush=True)\nwhile True: pass", limits).unwrap_err();
        assert!(e.to_string().contains("past its 0.5 s limit"), "{e}");
        assert!(e.to_string().ends_with("start\n"), "{e}");

        let out = run(
            "x = bytearray(2 << 30)\nprint('allocated')",
            SandboxLimits::default(),
        )
        .unwrap();
        assert!(out.contains("MemoryError"), "{out}");
    }

    #[test]
    fn output_is_capped() {
        let limits = SandboxLimits {
            output: 100,
            ..SandboxLimits::default()
        };
        let out = run("print('x' * 1000)", limits).unwrap();
        assert!(
            out.ends_with("[output truncated: 1001 bytes, 100 kept]"),
            "{out}"
        );
    }
}
