//! Python code run in a sandbox: a child process confined to a jail of its own (see
//! [`super::jail`]): it sees only the system's programs and libraries, read-only, and a
//! fresh temporary directory it may write; it has no network, an empty environment, its
//! own process tree (killed whole when the run ends), and limits on wall-clock time, memory,
//! file size and processes. If the jail cannot be set up, the code is not run.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;

use super::jail::{report_pipe, Interpreter, Jail, PATH, WORK_DIR};
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
    /// Processes (and threads) at once.
    pub processes: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(10),
            memory: 512 << 20,
            output: 16 << 10,
            processes: 64,
        }
    }
}

/// Runs Python code (the machine's `python3`, standard library only).
#[derive(Debug, Clone)]
pub struct RunPython {
    python: PathBuf,
    /// Where `python` is installed, asked once.
    interpreter: OnceLock<Result<Interpreter, String>>,
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
            interpreter: OnceLock::new(),
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
        let run = self.execute(&args.code)?;
        match run.ended {
            // A program that never ended is the tool failing, as the model should read it.
            Ended::TimedOut(_) => Err(ToolError::Failed(run.report())),
            _ => Ok(run.report()),
        }
    }
}

impl RunPython {
    /// Runs `code` in the sandbox and says how it ended; [`Execution::passed`] is what a
    /// check of generated code asks.
    pub fn execute(&self, code: &str) -> Result<Execution, ToolError> {
        let failed = |what: &str, e: std::io::Error| ToolError::Failed(format!("{what}: {e}"));
        let python = self
            .interpreter
            .get_or_init(|| Interpreter::find(&self.python))
            .as_ref()
            .map_err(|e| ToolError::Failed(format!("cannot run python3: {e}")))?;
        let dir = tempfile::tempdir().map_err(|e| failed("cannot make a directory", e))?;
        // `work` is what the program sees as its directory; the jail's root is built on
        // `root`, outside it.
        let (work, root) = (dir.path().join("work"), dir.path().join("root"));
        std::fs::create_dir(&work)
            .and_then(|()| std::fs::create_dir(&root))
            .and_then(|()| std::fs::write(work.join("main.py"), code))
            .map_err(|e| failed("cannot write the program", e))?;
        let limits = [
            (libc::RLIMIT_AS as libc::c_int, self.limits.memory),
            (
                libc::RLIMIT_CPU as libc::c_int,
                self.limits.time.as_secs() + 1,
            ),
            (libc::RLIMIT_FSIZE as libc::c_int, 16 << 20),
            (libc::RLIMIT_CORE as libc::c_int, 0),
            (libc::RLIMIT_NPROC as libc::c_int, self.limits.processes),
        ];
        let (report, report_write) = report_pipe().map_err(|e| failed("cannot make a pipe", e))?;
        let jail = std::sync::Arc::new(
            Jail::new(&work, &root, python, &limits, &report_write)
                .map_err(|e| ToolError::Failed(format!("cannot set up the sandbox: {e}")))?,
        );
        let mut command = Command::new(&python.exe);
        // -I: isolated (no user site, no PYTHON* variables, no script directory on the path).
        command
            .args(["-I", "main.py"])
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", WORK_DIR)
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let steps = jail.clone();
        // SAFETY: the closure runs in the forked child before exec; Jail::enter makes only
        // async-signal-safe system calls over memory prepared here, allocating nothing.
        unsafe {
            command.pre_exec(move || steps.enter());
        }
        let spawned = command.spawn();
        drop(command);
        drop(report_write);
        let mut child = spawned.map_err(|e| match jail.failed_step(report) {
            Some(step) => ToolError::Failed(format!(
                "cannot confine python3, so the code was not run (the sandbox needs Linux \
                 mount, PID and network namespaces): {step}: {e}"
            )),
            None => ToolError::Failed(format!(
                "cannot start python3 ({}): {e}",
                python.exe.display()
            )),
        })?;
        let limit = self.limits.output;
        let stdout = child.stdout.take().map(|s| read_capped(s, limit));
        let stderr = child.stderr.take().map(|s| read_capped(s, limit));
        let deadline = Instant::now() + self.limits.time;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    // The child waits outside the jail for the program, the jail's first
                    // process, which dies with it (and everything it started, with that).
                    // SAFETY: kill(2) on the group this child leads (a session of its own).
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
        let ended = match status {
            None => Ended::TimedOut(self.limits.time),
            Some(status) if status.success() => Ended::Exited(0),
            Some(status) => match status.code() {
                Some(code) => Ended::Exited(code),
                None => Ended::Killed,
            },
        };
        Ok(Execution {
            stdout,
            stderr,
            ended,
        })
    }
}

/// How a sandboxed program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    /// By a signal: the memory limit, most often.
    Killed,
    /// Past its time limit, and stopped.
    TimedOut(Duration),
}

/// One run of sandboxed code.
#[derive(Debug, Clone)]
pub struct Execution {
    pub stdout: String,
    pub stderr: String,
    pub ended: Ended,
}

impl Execution {
    /// It ran to the end and exited 0.
    pub fn passed(&self) -> bool {
        self.ended == Ended::Exited(0)
    }

    /// What the model reads: the output, and how the program ended when that was not well.
    pub fn report(&self) -> String {
        let mut out = self.stdout.clone();
        match self.ended {
            Ended::TimedOut(limit) => {
                return format!(
                    "the program ran past its {} s limit and was stopped; output so far:\n{out}",
                    limit.as_secs_f32()
                );
            }
            Ended::Exited(0) => {
                if !self.stderr.is_empty() {
                    out = format!("{out}\n[stderr]\n{}", self.stderr);
                }
            }
            ended => {
                let code = match ended {
                    Ended::Exited(c) => format!("exit status {c}"),
                    _ => "killed by a signal (memory limit?)".into(),
                };
                out = format!(
                    "{out}{}[{code}]\n{}",
                    if out.is_empty() { "" } else { "\n" },
                    self.stderr
                );
            }
        }
        if out.is_empty() {
            out = "(the program printed nothing)".into();
        }
        out
    }
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
    use std::path::Path;

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

    /// Runs `code` with `{NAME}` replaced by the values given.
    fn run_with(code: &str, values: &[(&str, &str)]) -> String {
        let code = values.iter().fold(code.to_string(), |code, (name, value)| {
            code.replace(&format!("{{{name}}}"), value)
        });
        run(&code, SandboxLimits::default()).unwrap()
    }

    #[test]
    fn the_servers_home_cannot_be_read_or_written() {
        // A directory standing in for $SYMPHONY_HOME, with its key file.
        let home = tempfile::tempdir().unwrap();
        let keys = home.path().join("keys.json");
        let original = r#"{"keys": []}"#;
        std::fs::write(&keys, original).unwrap();
        // The attack of the report: add an admin key to the server's key file.
        let out = run_with(
            "import json,hashlib\nHOME='{HOME}'\np=HOME+'/keys.json'; d=json.load(open(p)); \
             d['keys'].append({'name':'x','hash':'sha256:'+hashlib.sha256(b'sk-sym-x')\
             .hexdigest(),'role':'admin','created_at':0}); json.dump(d,open(p,'w'))\n\
             print('written')",
            &[("HOME", home.path().to_str().unwrap())],
        );
        assert!(out.contains("FileNotFoundError"), "{out}");
        assert_eq!(std::fs::read_to_string(&keys).unwrap(), original);
        // Nor can a new file be put there.
        let out = run_with(
            "open('{HOME}/planted', 'w').write('x')",
            &[("HOME", home.path().to_str().unwrap())],
        );
        assert!(out.contains("FileNotFoundError"), "{out}");
        assert!(!home.path().join("planted").exists());
    }

    #[test]
    fn the_users_home_and_the_machines_files_are_not_visible() {
        let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
        let secret = tempfile::Builder::new()
            .prefix("sandbox-secret")
            .tempfile_in(&home)
            .unwrap();
        std::fs::write(secret.path(), "s3cret").unwrap();
        let out = run_with(
            "import os\nfor p in ['{SECRET}', '/etc/hostname', '/etc/passwd']:\n    try:\n        \
             print(open(p).read())\n    except OSError as e:\n        print(type(e).__name__)\n\
             try:\n    print(sorted(os.listdir('{HOME}')))\nexcept OSError as e:\n    \
             print(type(e).__name__)\nprint(sorted(os.listdir('/')))",
            &[
                ("SECRET", secret.path().to_str().unwrap()),
                ("HOME", home.to_str().unwrap()),
            ],
        );
        assert!(
            !out.contains("s3cret") && !out.contains("sandbox-secret"),
            "{out}"
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..3], ["FileNotFoundError"; 3], "{out}");
        // Of the root, only what python3 needs: its installation may lie outside /usr.
        let python = Interpreter::find(Path::new("python3")).unwrap();
        for dir in ["home", "root", "var", "opt", "srv", "mnt", "run"] {
            let needed = python
                .installs
                .iter()
                .any(|i| i.starts_with(Path::new("/").join(dir)));
            assert!(needed || !lines[4].contains(&format!("'{dir}'")), "{out}");
        }
    }

    #[test]
    fn the_code_writes_only_its_own_directory() {
        let out = run_with(
            // Asked with access(2), which writes nothing, should the jail ever fail.
            "import os\nopen('out.txt', 'w').write('kept')\nprint(os.getcwd(), \
             open('out.txt').read())\nfor p in ['/usr', '/usr/bin', '/', '/etc']:\n    \
             if os.access(p, os.W_OK):\n        print('wrote', p)",
            &[],
        );
        assert!(out.starts_with("/sandbox kept\n"), "{out}");
        assert!(!out.contains("wrote"), "{out}");
    }

    #[test]
    fn unix_sockets_outside_cannot_be_reached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let out = run_with(
            "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('{PATH}')\n    \
             print('connected')\nexcept OSError as e:\n    print(type(e).__name__)",
            &[("PATH", path.to_str().unwrap())],
        );
        assert_eq!(out, "FileNotFoundError\n");
        assert!(listener.accept().is_err(), "the sandbox got through");
    }

    /// The processes on this machine whose command line holds `marker`.
    fn processes_marked(marker: &str) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                String::from_utf8_lossy(&cmdline)
                    .contains(marker)
                    .then_some(pid)
            })
            .collect()
    }

    #[test]
    fn processes_the_code_starts_die_with_it() {
        // A daemon: a new session, a double fork, its output away from the run's pipes.
        let marker = format!("escaped-{}-{:?}", std::process::id(), Instant::now());
        let out = run_with(
            "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        \
             fd = os.open('/dev/null', os.O_RDWR)\n        for i in range(3):\n            \
             os.dup2(fd, i)\n        os.execv(sys.executable, [sys.executable, '-c', \
             'import time; time.sleep(60)', '{MARKER}'])\n    os._exit(0)\ntime.sleep(1)\n\
             print('detached')",
            &[("MARKER", &marker)],
        );
        assert_eq!(out, "detached\n");
        let escaped = processes_marked(&marker);
        for &pid in &escaped {
            // SAFETY: kill(2); the test cleans up what got away.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        assert!(
            escaped.is_empty(),
            "still running after the run: {escaped:?}"
        );
    }

    #[test]
    fn a_fork_bomb_is_held_to_the_process_limit() {
        let limits = SandboxLimits {
            processes: 16,
            ..SandboxLimits::default()
        };
        let code = "import os, time\nn = 0\ntry:\n    for _ in range(200):\n        \
                    if os.fork() == 0:\n            os.close(1)\n            os.close(2)\n            \
                    time.sleep(5)\n            os._exit(0)\n        n += 1\n    \
                    print('forked', n)\nexcept OSError as e:\n    print('stopped', n, \
                    type(e).__name__)";
        let out = run(code, limits).unwrap();
        let n: usize = out
            .strip_prefix("stopped ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(n < 16, "{out}");
    }
}
