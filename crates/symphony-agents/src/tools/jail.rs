//! The jail that sandboxed code runs in, set up in the child between fork and exec with
//! Linux namespaces:
//!
//! - a mount namespace whose root is an empty tmpfs holding only what the interpreter needs,
//!   read-only (/usr and the links merged into it, the dynamic loader's cache and the clock
//!   of /etc, the interpreter's own installation), a fresh /proc, a /dev of a few devices, a
//!   private /tmp, and the run's directory as the one writable place. Nothing else of the
//!   machine exists there: not the homes, not the server's data directory, not its sockets;
//! - PID, network, IPC and UTS namespaces of its own. The program is PID 1 of its PID
//!   namespace, so when it ends, or is killed, every process it started dies with it, however
//!   it detached itself (`setsid`, double forks);
//! - as root, a user id of its own per run, held to a number of processes, with no
//!   privileges; unprivileged, a user namespace that maps only the server's own user.
//!
//! Everything that allocates is done before the fork: between fork and exec only
//! async-signal-safe system calls run, over paths prepared as C strings.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, c_ulong};

/// Where the run's directory appears inside the jail: the program's working and home
/// directory.
pub(crate) const WORK_DIR: &str = "/sandbox";

/// The search path programs in the jail are given.
pub(crate) const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The parts of the machine's root that programs need: bound read-only, or recreated as the
/// same links where the machine has merged them into /usr.
const SYSTEM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Of /etc, only what the dynamic loader and the clock read.
const ETC_FILES: [&str; 2] = ["ld.so.cache", "localtime"];
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

// mount_setattr(2) attributes (linux/mount.h).
const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;

/// The first of the user ids runs get as root; each run takes the next (modulo 2^16), so
/// one run's process limit is not shared with another's.
const FIRST_UID: u32 = 0x5e00_0000;
const NOBODY: u32 = 65534;

/// Whether `id` is mapped in this process's user namespace (`map`: uid_map or gid_map).
fn mapped(map: &str, id: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/self/{map}")) else {
        return false;
    };
    text.lines().any(|line| {
        let numbers: Vec<u64> = line
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        matches!(numbers[..], [first, _, count] if (first..first + count).contains(&u64::from(id)))
    })
}

/// An interpreter and the directories its installation lies in.
#[derive(Debug, Clone)]
pub(crate) struct Interpreter {
    /// The program to start, as the interpreter names itself.
    pub exe: PathBuf,
    /// Directories to bind read-only (real paths, none inside another, none under /usr).
    pub installs: Vec<PathBuf>,
}

impl Interpreter {
    /// Asks `python` (found on [`PATH`]) where it is installed.
    pub(crate) fn find(python: &Path) -> Result<Self, String> {
        let script = "import sys\nfor p in (sys.executable, sys.prefix, sys.base_prefix, \
                      sys.exec_prefix, sys.base_exec_prefix): print(p)";
        let out = Command::new(python)
            .args(["-I", "-c", script])
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        if !out.status.success() || lines.len() != 5 || lines[0].is_empty() {
            return Err(format!(
                "{} did not say where it is installed: {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let exe = PathBuf::from(lines[0]);
        let real = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut dirs = vec![real(&exe)?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()];
        if let Some(dir) = exe.parent() {
            dirs.push(real(dir)?);
        }
        for prefix in &lines[1..] {
            dirs.push(real(Path::new(prefix))?);
        }
        let home = std::env::var_os("HOME").and_then(|h| std::fs::canonicalize(h).ok());
        let mut installs: Vec<PathBuf> = Vec::new();
        dirs.sort();
        for dir in dirs {
            let system = SYSTEM_DIRS
                .iter()
                .any(|d| dir.starts_with(Path::new("/").join(d)));
            if system || installs.iter().any(|i| dir.starts_with(i)) {
                continue;
            }
            // Binding these would show the jail what it must not see.
            if dir == Path::new("/") || home.as_ref().is_some_and(|h| h.starts_with(&dir)) {
                return Err(format!(
                    "{} is installed in {}, which holds the home directory or the whole \
                     machine; install it elsewhere (e.g. /usr) to run code in the sandbox",
                    python.display(),
                    dir.display()
                ));
            }
            installs.push(dir);
        }
        Ok(Self { exe, installs })
    }
}

/// One step of entering the jail: one system call, or a few that belong together.
#[derive(Debug)]
enum Op {
    NewSession,
    DieWithParent,
    Unshare(c_int),
    WriteFile {
        path: CString,
        data: CString,
    },
    /// The namespaces' first process: the process calling this stays outside, waits for it
    /// and ends as it ended.
    Fork,
    MakeDir(CString),
    MakeFile(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
        /// A failure is not fatal (a fresh /proc in a user namespace, where the kernel may
        /// refuse it).
        optional: bool,
    },
    /// Sets mount attributes (`ATTR_*`) on the mount at `path`.
    Restrict {
        path: CString,
        attrs: u64,
        recursive: bool,
    },
    PivotRoot(CString),
    ChangeDir(CString),
    BecomeUser(libc::uid_t),
    NoNewPrivileges,
    Limit(c_int, u64),
    CloseInherited,
}

/// The steps into the jail, prepared in the parent; [`Jail::enter`] takes them in the child.
#[derive(Debug)]
pub(crate) struct Jail {
    ops: Vec<Op>,
    /// What each step does, for the error when it fails.
    what: Vec<String>,
    /// The write end of a pipe the child reports a failed step's index to.
    report: c_int,
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} has a NUL byte", path.display()))
}

fn c_str(s: &str) -> CString {
    CString::new(s).expect("no NUL in a constant")
}

impl Jail {
    /// The steps for a run whose writable directory is `work`, with the new root built on
    /// the empty directory `mount_point`, held to `limits` (resource, value). As root, `work`
    /// is given to the run's own user.
    pub(crate) fn new(
        work: &Path,
        mount_point: &Path,
        python: &Interpreter,
        limits: &[(c_int, u64)],
        report: &OwnedFd,
    ) -> Result<Self, String> {
        let mut jail = Self {
            ops: Vec::new(),
            what: Vec::new(),
            report: report.as_raw_fd(),
        };
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let namespaces = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        jail.push(Op::NewSession, "starting a session");
        jail.push(Op::DieWithParent, "tying the sandbox to the server");
        if root {
            jail.push(Op::Unshare(namespaces), "making new namespaces");
        } else {
            jail.push(
                Op::Unshare(namespaces | libc::CLONE_NEWUSER),
                "making a user namespace (unprivileged user namespaces must be enabled)",
            );
            // SAFETY: getuid and getgid have no preconditions.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            for (file, data) in [
                ("uid_map", format!("{uid} {uid} 1\n")),
                ("setgroups", "deny".into()),
                ("gid_map", format!("{gid} {gid} 1\n")),
            ] {
                let path = c_str(&format!("/proc/self/{file}"));
                let data = c_str(&data);
                jail.push(Op::WriteFile { path, data }, &format!("writing {file}"));
            }
        }
        jail.push(Op::Fork, "starting the sandbox's first process");
        jail.push(Op::DieWithParent, "tying the sandbox to the server");
        jail.push(
            Op::Mount {
                source: c_str("none"),
                target: c_str("/"),
                fstype: None,
                flags: libc::MS_REC | libc::MS_PRIVATE,
                data: None,
                optional: false,
            },
            "making the mounts private",
        );
        let new_root = mount_point.to_path_buf();
        jail.tmpfs(
            &new_root,
            "size=1m,mode=0755",
            libc::MS_NOSUID | libc::MS_NODEV,
        )?;
        let mut made = BTreeSet::new();
        for dir in SYSTEM_DIRS {
            let host = Path::new("/").join(dir);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            if meta.is_symlink() {
                let target = std::fs::read_link(&host).map_err(|e| format!("/{dir}: {e}"))?;
                jail.symlink(&target, &new_root.join(dir))?;
            } else if meta.is_dir() {
                jail.bind(&host, &new_root, &mut made, true)?;
            }
        }
        jail.make_dir(&new_root.join("etc"))?;
        for file in ETC_FILES {
            let host = Path::new("/etc").join(file);
            match std::fs::symlink_metadata(&host) {
                Ok(meta) if meta.is_symlink() => {
                    let target = std::fs::read_link(&host).map_err(|e| format!("{e}"))?;
                    jail.symlink(&target, &new_root.join("etc").join(file))?;
                }
                Ok(meta) if meta.is_file() => {
                    jail.bind(&host, &new_root, &mut made, true)?;
                }
                _ => {}
            }
        }
        for dir in &python.installs {
            jail.bind(dir, &new_root, &mut made, true)?;
        }
        let dev = new_root.join("dev");
        jail.make_dir(&dev)?;
        jail.tmpfs(
            &dev,
            "size=64k,mode=0755",
            libc::MS_NOSUID | libc::MS_NOEXEC,
        )?;
        for device in DEVICES {
            jail.bind(&Path::new("/dev").join(device), &new_root, &mut made, false)?;
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            jail.symlink(Path::new(target), &dev.join(name))?;
        }
        let proc = new_root.join("proc");
        jail.make_dir(&proc)?;
        jail.push(
            Op::Mount {
                source: c_str("proc"),
                target: c_path(&proc)?,
                fstype: Some(c_str("proc")),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: None,
                optional: !root,
            },
            "mounting /proc",
        );
        let tmp = new_root.join("tmp");
        jail.make_dir(&tmp)?;
        jail.tmpfs(&tmp, "size=16m,mode=1777", libc::MS_NOSUID | libc::MS_NODEV)?;
        let sandbox = new_root.join(WORK_DIR.trim_start_matches('/'));
        jail.make_dir(&sandbox)?;
        jail.push(
            Op::Mount {
                source: c_path(work)?,
                target: c_path(&sandbox)?,
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
                optional: false,
            },
            &format!("binding the run's directory to {WORK_DIR}"),
        );
        jail.push(
            Op::Restrict {
                path: c_path(&sandbox)?,
                attrs: ATTR_NOSUID | ATTR_NODEV,
                recursive: false,
            },
            &format!("restricting {WORK_DIR}"),
        );
        jail.push(Op::PivotRoot(c_path(&new_root)?), "entering the new root");
        jail.push(
            Op::Restrict {
                path: c_str("/"),
                attrs: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV,
                recursive: false,
            },
            "making the new root read-only",
        );
        jail.push(
            Op::ChangeDir(c_str(WORK_DIR)),
            "entering the run's directory",
        );
        if root {
            static RUNS: AtomicU32 = AtomicU32::new(0);
            let run = RUNS.fetch_add(1, Ordering::Relaxed);
            let own =
                FIRST_UID + (std::process::id().wrapping_mul(7919).wrapping_add(run) & 0xffff);
            // Root of a user namespace (a rootless container) may have few ids to give:
            // then `nobody`, shared by the runs.
            let uid = [own, NOBODY]
                .into_iter()
                .find(|&id| mapped("uid_map", id) && mapped("gid_map", id))
                .ok_or(
                    "this root has no other user id to run the code as (its user \
                        namespace maps neither a spare id nor nobody, 65534)",
                )?;
            std::os::unix::fs::chown(work, Some(uid), Some(uid))
                .map_err(|e| format!("cannot give the run's directory to its user: {e}"))?;
            jail.push(Op::BecomeUser(uid), "taking the run's own user id");
        }
        jail.push(Op::NoNewPrivileges, "dropping privileges");
        for &(resource, value) in limits {
            jail.push(Op::Limit(resource, value), "setting a resource limit");
        }
        jail.push(Op::CloseInherited, "closing inherited files");
        Ok(jail)
    }

    fn push(&mut self, op: Op, what: &str) {
        self.ops.push(op);
        self.what.push(what.to_string());
    }

    fn make_dir(&mut self, path: &Path) -> Result<(), String> {
        self.push(Op::MakeDir(c_path(path)?), "making a directory");
        Ok(())
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> Result<(), String> {
        let op = Op::Symlink {
            target: c_path(target)?,
            link: c_path(link)?,
        };
        self.push(
            op,
            &format!("linking {} to {}", link.display(), target.display()),
        );
        Ok(())
    }

    fn tmpfs(&mut self, at: &Path, options: &str, flags: c_ulong) -> Result<(), String> {
        let op = Op::Mount {
            source: c_str("tmpfs"),
            target: c_path(at)?,
            fstype: Some(c_str("tmpfs")),
            flags,
            data: Some(c_str(options)),
            optional: false,
        };
        self.push(op, &format!("mounting a tmpfs on {}", at.display()));
        Ok(())
    }

    /// Binds the machine's `host` (a directory or a file) at the same path under
    /// `new_root`, making the directories on the way.
    fn bind(
        &mut self,
        host: &Path,
        new_root: &Path,
        made: &mut BTreeSet<PathBuf>,
        read_only: bool,
    ) -> Result<(), String> {
        let inside = new_root.join(host.strip_prefix("/").unwrap_or(host));
        let mut on_the_way = Vec::new();
        let mut dir = inside.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(new_root) && *d != new_root) {
            on_the_way.push(d.to_path_buf());
            dir = d.parent();
        }
        for d in on_the_way.into_iter().rev() {
            if made.insert(d.clone()) {
                self.make_dir(&d)?;
            }
        }
        if host.is_dir() {
            if made.insert(inside.clone()) {
                self.make_dir(&inside)?;
            }
        } else {
            self.push(Op::MakeFile(c_path(&inside)?), "making a file to bind on");
        }
        let target = c_path(&inside)?;
        self.push(
            Op::Mount {
                source: c_path(host)?,
                target: target.clone(),
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
                optional: false,
            },
            &format!("binding {}", host.display()),
        );
        if read_only {
            self.push(
                Op::Restrict {
                    path: target,
                    attrs: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV,
                    recursive: true,
                },
                &format!("making {} read-only", host.display()),
            );
        }
        Ok(())
    }

    /// Takes the steps, in the child between fork and exec. A failed step's index goes to
    /// the report pipe before the error goes back to the caller.
    pub(crate) fn enter(&self) -> std::io::Result<()> {
        for (i, op) in self.ops.iter().enumerate() {
            if let Err(e) = apply(op) {
                let index = (i as u32).to_ne_bytes();
                // SAFETY: write(2) from a live buffer to a pipe this process holds open.
                unsafe {
                    libc::write(self.report, index.as_ptr().cast(), index.len());
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// What the step the child reported on `report` (the pipe's read end, once the child
    /// is gone and the write end closed here) was doing.
    pub(crate) fn failed_step(&self, report: OwnedFd) -> Option<&str> {
        let mut bytes = Vec::new();
        std::fs::File::from(report).read_to_end(&mut bytes).ok()?;
        let index: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        self.what
            .get(u32::from_ne_bytes(index) as usize)
            .map(String::as_str)
    }
}

/// A pipe whose ends are closed on exec: (read, write).
pub(crate) fn report_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(r: impl Into<i64>) -> std::io::Result<()> {
    if r.into() < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// One step. Async-signal-safe: system calls over memory prepared before the fork.
fn apply(op: &Op) -> std::io::Result<()> {
    // SAFETY (all blocks below): system calls given pointers to C strings and structs that
    // outlive the calls.
    match op {
        Op::NewSession => check(unsafe { libc::setsid() }),
        Op::DieWithParent => {
            check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) })
        }
        Op::Unshare(flags) => check(unsafe { libc::unshare(*flags) }),
        Op::WriteFile { path, data } => {
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            check(fd)?;
            let bytes = data.as_bytes();
            let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            let result = check(n as i64);
            unsafe { libc::close(fd) };
            result
        }
        Op::Fork => {
            let pid = unsafe { libc::fork() };
            check(pid)?;
            if pid > 0 {
                wait_and_exit(pid);
            }
            Ok(())
        }
        Op::MakeDir(path) => {
            if unsafe { libc::mkdir(path.as_ptr(), 0o755) } < 0 && errno() != libc::EEXIST {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }
        Op::MakeFile(path) => {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC;
            let fd = unsafe { libc::open(path.as_ptr(), flags, 0o644 as libc::c_uint) };
            check(fd)?;
            unsafe { libc::close(fd) };
            Ok(())
        }
        Op::Symlink { target, link } => {
            check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
        }
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            optional,
        } => {
            let r = unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                    *flags,
                    data.as_ref()
                        .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
                )
            };
            if *optional {
                return Ok(());
            }
            check(r)
        }
        Op::Restrict {
            path,
            attrs,
            recursive,
        } => {
            let attr = MountAttr {
                attr_set: *attrs,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            let flags = if *recursive { libc::AT_RECURSIVE } else { 0 };
            let r = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    flags,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            };
            if r < 0 && errno() == libc::ENOSYS {
                // Kernels before 5.12: a remount, which covers this mount only.
                let mut flags = libc::MS_BIND | libc::MS_REMOUNT;
                for (attr, flag) in [
                    (ATTR_RDONLY, libc::MS_RDONLY),
                    (ATTR_NOSUID, libc::MS_NOSUID),
                    (ATTR_NODEV, libc::MS_NODEV),
                    (ATTR_NOEXEC, libc::MS_NOEXEC),
                ] {
                    if attrs & attr != 0 {
                        flags |= flag;
                    }
                }
                let none = c"none".as_ptr();
                return check(unsafe {
                    libc::mount(
                        none,
                        path.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    )
                });
            }
            check(r)
        }
        Op::PivotRoot(new_root) => {
            // The old root is stacked under the new one and then detached, so no path
            // leads back to it.
            let dot = c".".as_ptr();
            check(unsafe { libc::chdir(new_root.as_ptr()) })?;
            check(unsafe { libc::syscall(libc::SYS_pivot_root, dot, dot) })?;
            check(unsafe { libc::umount2(dot, libc::MNT_DETACH) })?;
            check(unsafe { libc::chdir(c"/".as_ptr()) })
        }
        Op::ChangeDir(path) => check(unsafe { libc::chdir(path.as_ptr()) }),
        Op::BecomeUser(id) => {
            check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
            check(unsafe { libc::setgid(*id) })?;
            check(unsafe { libc::setuid(*id) })
        }
        Op::NoNewPrivileges => check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }),
        Op::Limit(resource, value) => {
            let rl = libc::rlimit {
                rlim_cur: *value as libc::rlim_t,
                rlim_max: *value as libc::rlim_t,
            };
            check(unsafe { libc::setrlimit(*resource as _, &rl) })
        }
        Op::CloseInherited => {
            // Descriptors the server opened without close-on-exec (a database, a socket)
            // must not reach the program. Best effort: kernels before 5.11 lack the call.
            unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    3,
                    c_int::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
            }
            Ok(())
        }
    }
}

/// In the process left outside the namespaces: waits for the first process inside and ends
/// as it ended, so the server sees the program's status. Called between fork and exec,
/// with `pid` a child of this process.
fn wait_and_exit(pid: libc::pid_t) -> ! {
    // SAFETY: system calls on this process's own descriptors, child and signal mask.
    unsafe {
        // Nothing of the server's is needed here, and the pipe std uses to report a failed
        // exec must close or spawn() would wait for this process to end.
        libc::syscall(libc::SYS_close_range, 0, c_int::MAX, 0);
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r < 0 && errno() != libc::EINTR {
                libc::_exit(1);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            let mut set = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::signal(signal, libc::SIG_DFL);
            libc::kill(libc::getpid(), signal);
        }
        libc::_exit(1)
    }
}
