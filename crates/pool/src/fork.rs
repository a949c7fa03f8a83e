//! The fork backend: a single-threaded zygote process, forked once at build time, holds the
//! worker state and forks every worker (initial, replacement and per-batch) on request.
//!
//! Why a zygote: after the pool is built the parent may start threads (the optimizer, the
//! spawn backend's readers, a progress bar), and a fork from a multi-threaded process may
//! only call async-signal-safe functions. The zygote never starts a thread, so it can always
//! fork. The one fork in the parent happens in [`start`], which first checks that the parent
//! is single-threaded and returns an error otherwise. File descriptors for each new worker
//! come back to the parent over a Unix socket (`SCM_RIGHTS`). The zygote also drains every
//! worker's stderr and forwards it line by line as `[worker N] ...` on its own stderr
//! (the parent's), so the parent needs no thread for the fork backend at all.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::error::{Error, Kind};
use crate::fault::FaultSpec;
use crate::proc::{Event, Launched, Launcher};
use crate::worker::{Worker, session};

const OP_SPAWN: u8 = 1;
const OP_KILL: u8 = 2;
const OP_SHUTDOWN: u8 = 3;

/// How many threads this process has, where the OS tells us (Linux: `/proc/self/stat`;
/// macOS: `proc_pidinfo(PROC_PIDTASKINFO)`).
#[cfg(not(target_os = "macos"))]
pub(crate) fn thread_count() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 20 (num_threads), counted after the parenthesised command name.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(17)?.parse().ok()
}

/// How many threads this process has (macOS: `proc_pidinfo(PROC_PIDTASKINFO)`). Compiled only
/// on macOS, which the development machines cannot build; the GitHub Actions macOS job does.
#[cfg(target_os = "macos")]
pub(crate) fn thread_count() -> Option<usize> {
    // SAFETY: an all-zero proc_taskinfo is a valid value to be overwritten.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: `info` is a live, exclusively borrowed buffer of `size` bytes.
    let got = unsafe { libc::proc_pidinfo(libc::getpid(), libc::PROC_PIDTASKINFO, 0, (&raw mut info).cast(), size) };
    (got == size).then(|| usize::try_from(info.pti_threadnum).unwrap_or(0))
}

/// How long [`check_single_threaded`] waits for threads that were just joined to leave the
/// count. A joined thread has run all its user code (so it holds no lock a child could
/// inherit), but the kernel drops it from the count only as it finishes exiting, a moment
/// after the join returned.
const SETTLE: Duration = Duration::from_millis(200);

/// Errors unless the process is single-threaded (waiting up to [`SETTLE`] for the count to
/// drop to one). On unixes where the count is unknown (other BSDs) the check passes: callers
/// there must build fork pools before any thread.
pub(crate) fn check_single_threaded() -> Result<(), Error> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match thread_count() {
            Some(n) if n > 1 => {
                if Instant::now() >= deadline {
                    return Err(Error::new(Kind::NotSingleThreaded { threads: n }));
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            _ => return Ok(()),
        }
    }
}

fn last_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(last_err("pipe"));
    }
    for fd in fds {
        // SAFETY: `fd` was just returned by pipe(2) and is open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// In a freshly forked child: die with the parent, ignore Ctrl-C (the parent decides).
fn child_setup(expected_parent: libc::pid_t) {
    // SAFETY: plain syscalls without memory-safety preconditions.
    unsafe {
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        // The parent may have died before prctl took effect.
        if libc::getppid() != expected_parent {
            libc::_exit(0);
        }
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

fn write_all_fd(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// The parent's handle on the zygote; a [`Launcher`] for the fork and per-batch backends.
pub(crate) struct ForkLauncher {
    zygote: libc::pid_t,
    ctl: UnixStream,
    reaped: bool,
}

/// Forks the zygote, which takes ownership of `state` (the parent drops its copy).
pub(crate) fn start<W, F>(state: W, child_init: F, max_frame: usize, faults: FaultSpec) -> Result<ForkLauncher, Error>
where
    W: Worker,
    F: Fn(&mut W) -> Result<(), String>,
{
    check_single_threaded()?;
    let (parent_end, zygote_end) =
        UnixStream::pair().map_err(|e| Error::io("failed to create the zygote socket", e))?;
    // Whatever sits in our stdout buffer would otherwise be written again by a child.
    let _ = io::stdout().flush();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the process is single-threaded (checked above), so the child may do anything.
    match unsafe { libc::fork() } {
        -1 => Err(Error::io("failed to fork the zygote", io::Error::last_os_error())),
        0 => {
            drop(parent_end);
            child_setup(parent);
            zygote_main(zygote_end, state, child_init, max_frame, &faults)
        }
        pid => {
            drop(zygote_end);
            drop(state);
            Ok(ForkLauncher { zygote: pid, ctl: parent_end, reaped: false })
        }
    }
}

impl ForkLauncher {
    fn send(&mut self, op: u8, arg: u64) -> io::Result<()> {
        let mut cmd = [0u8; 16];
        cmd[0] = op;
        cmd[8..].copy_from_slice(&arg.to_le_bytes());
        self.ctl.write_all(&cmd)
    }

    fn recv_fds(&mut self) -> io::Result<(i64, Vec<OwnedFd>)> {
        let mut data = [0u8; 8];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
        // Room for two descriptors, aligned for cmsghdr.
        let mut cbuf = [0u64; 8];
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        #[cfg(target_os = "linux")]
        let flags = libc::MSG_CMSG_CLOEXEC;
        #[cfg(not(target_os = "linux"))]
        let flags = 0;
        let n = loop {
            // SAFETY: `msg` points at valid buffers of the advertised sizes.
            let n = unsafe { libc::recvmsg(self.ctl.as_raw_fd(), &mut msg, flags) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        if n <= 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the zygote is gone"));
        }
        let mut fds = Vec::new();
        // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled in.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                    let p = libc::CMSG_DATA(c).cast::<RawFd>();
                    for k in 0..count {
                        let fd = p.add(k).read_unaligned();
                        #[cfg(not(target_os = "linux"))]
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if (n as usize) < data.len() {
            self.ctl.read_exact(&mut data[n as usize..])?;
        }
        Ok((i64::from_le_bytes(data), fds))
    }
}

impl Launcher for ForkLauncher {
    fn launch(&mut self, wid: u64, _events: &Sender<Event>) -> Result<Launched, Error> {
        let startup = |e: io::Error| Error::new(Kind::Startup(format!("zygote could not fork worker {wid}: {e}")));
        self.send(OP_SPAWN, wid).map_err(startup)?;
        let (pid, fds) = self.recv_fds().map_err(startup)?;
        let [tx, rx]: [OwnedFd; 2] = match fds.try_into() {
            Ok(a) if pid > 0 => a,
            _ => return Err(startup(io::Error::from_raw_os_error((-pid) as i32))),
        };
        Ok(Launched { pid: pid as u32, tx: Box::new(File::from(tx)), rx: Some(File::from(rx)) })
    }

    fn kill(&mut self, _wid: u64, pid: u32) {
        // The zygote reaps its children, so only it knows whether `pid` is still ours.
        let _ = self.send(OP_KILL, pid as u64);
    }

    fn reap(&mut self, _wid: u64, _pid: u32) -> String {
        String::new()
    }

    fn helper_pids(&self) -> Vec<u32> {
        if self.reaped { vec![] } else { vec![self.zygote as u32] }
    }

    fn shutdown(&mut self, grace: Duration) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        let _ = self.send(OP_SHUTDOWN, grace.as_millis() as u64);
        let _ = self.ctl.shutdown(std::net::Shutdown::Both);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        while unsafe { libc::waitpid(self.zygote, &mut status, 0) } < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}

impl Drop for ForkLauncher {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

struct Child {
    pid: libc::pid_t,
    wid: u64,
    err: Option<OwnedFd>,
    buf: Vec<u8>,
    reaped: bool,
    killed: bool,
}

fn forward(c: &mut Child, eof: bool) {
    while let Some(nl) = c.buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = c.buf.drain(..=nl).collect();
        let mut out = format!("[worker {}] ", c.wid).into_bytes();
        out.extend_from_slice(&line);
        write_all_fd(2, &out);
    }
    if eof && !c.buf.is_empty() {
        let mut out = format!("[worker {}] ", c.wid).into_bytes();
        out.append(&mut c.buf);
        out.push(b'\n');
        write_all_fd(2, &out);
    }
}

fn reap_all(children: &mut [Child], block: bool) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own children.
        let pid = unsafe { libc::waitpid(-1, &mut status, if block { 0 } else { libc::WNOHANG }) };
        if pid <= 0 {
            if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if let Some(c) = children.iter_mut().find(|c| c.pid == pid) {
            c.reaped = true;
            // Say how a worker died unless the pool killed it on purpose.
            let how = if libc::WIFSIGNALED(status) {
                Some(format!("died of signal {}", libc::WTERMSIG(status)))
            } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0 {
                Some(format!("exited with status {}", libc::WEXITSTATUS(status)))
            } else {
                None
            };
            if let Some(how) = how.filter(|_| !c.killed) {
                write_all_fd(2, format!("[worker {}] (pid {pid}) {how}\n", c.wid).as_bytes());
            }
        }
        if block && children.iter().all(|c| c.reaped) {
            return;
        }
    }
}

fn drain(children: &mut [Child], timeout_ms: i32) {
    let mut fds: Vec<libc::pollfd> = children
        .iter()
        .filter_map(|c| c.err.as_ref())
        .map(|e| libc::pollfd { fd: e.as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    if fds.is_empty() {
        return;
    }
    // SAFETY: valid pollfd array.
    if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) } <= 0 {
        return;
    }
    for p in fds.iter().filter(|p| p.revents != 0) {
        let c = children.iter_mut().find(|c| c.err.as_ref().is_some_and(|e| e.as_raw_fd() == p.fd)).expect("polled");
        let mut chunk = [0u8; 8192];
        // SAFETY: reading into a valid buffer.
        let n = unsafe { libc::read(p.fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n > 0 {
            c.buf.extend_from_slice(&chunk[..n as usize]);
            forward(c, false);
        } else {
            forward(c, true);
            c.err = None;
        }
    }
}

/// The zygote's loop. It never returns, never starts a thread and never drops `state`.
fn zygote_main<W, F>(ctl: UnixStream, mut state: W, child_init: F, max_frame: usize, faults: &FaultSpec) -> !
where
    W: Worker,
    F: Fn(&mut W) -> Result<(), String>,
{
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut ctl = ctl;
    let mut children: Vec<Child> = Vec::new();
    let grace = loop {
        let mut fds = vec![libc::pollfd { fd: ctl.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        fds.extend(children.iter().filter_map(|c| c.err.as_ref()).map(|e| libc::pollfd {
            fd: e.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: valid pollfd array. The timeout bounds how long a dead worker stays a zombie.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if fds[1..].iter().any(|p| p.revents != 0) {
            drain(&mut children, 0);
        }
        reap_all(&mut children, false);
        children.retain(|c| !(c.reaped && c.err.is_none()));
        if fds[0].revents == 0 {
            continue;
        }
        let mut cmd = [0u8; 16];
        if ctl.read_exact(&mut cmd).is_err() {
            break 0; // the parent is gone
        }
        let arg = u64::from_le_bytes(cmd[8..].try_into().expect("8 bytes"));
        match cmd[0] {
            OP_SPAWN => {
                let reply = spawn_worker(me, arg, &ctl, &children, &mut state, &child_init, max_frame, faults);
                match reply {
                    Ok((child, fds)) => {
                        let ok = send_fds(ctl.as_raw_fd(), child.pid as i64, &fds);
                        drop(fds);
                        children.push(child);
                        if ok.is_err() {
                            break 0;
                        }
                    }
                    Err(e) => {
                        let code = -(e.raw_os_error().unwrap_or(libc::EIO) as i64);
                        if ctl.write_all(&code.to_le_bytes()).is_err() {
                            break 0;
                        }
                    }
                }
            }
            OP_KILL => {
                if let Some(c) = children.iter_mut().find(|c| c.pid as u64 == arg && !c.reaped) {
                    c.killed = true;
                    // SAFETY: `c.pid` is an unreaped child of ours, so it cannot be recycled.
                    unsafe { libc::kill(c.pid, libc::SIGKILL) };
                }
            }
            OP_SHUTDOWN => break arg,
            _ => break 0,
        }
    };
    // Shutdown: task streams are closed, so workers exit by themselves; wait up to `grace`.
    let deadline = Instant::now() + Duration::from_millis(grace);
    loop {
        reap_all(&mut children, false);
        if children.iter().all(|c| c.reaped) || Instant::now() >= deadline {
            break;
        }
        drain(&mut children, 5);
    }
    for c in children.iter_mut().filter(|c| !c.reaped) {
        c.killed = true;
        // SAFETY: unreaped children of ours.
        unsafe { libc::kill(c.pid, libc::SIGKILL) };
    }
    if children.iter().any(|c| !c.reaped) {
        reap_all(&mut children, true);
    }
    while children.iter().any(|c| c.err.is_some()) {
        drain(&mut children, 100);
    }
    // SAFETY: _exit skips destructors on purpose: the inherited state is never dropped here.
    unsafe { libc::_exit(0) }
}

#[expect(clippy::too_many_arguments, reason = "one call site; the zygote's whole context")]
fn spawn_worker<W, F>(
    zygote: libc::pid_t,
    wid: u64,
    ctl: &UnixStream,
    children: &[Child],
    state: &mut W,
    child_init: &F,
    max_frame: usize,
    faults: &FaultSpec,
) -> io::Result<(Child, [OwnedFd; 2])>
where
    W: Worker,
    F: Fn(&mut W) -> Result<(), String>,
{
    let (task_r, task_w) = cloexec_pipe()?;
    let (res_r, res_w) = cloexec_pipe()?;
    let (err_r, err_w) = cloexec_pipe()?;
    // SAFETY: the zygote is single-threaded, so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => Err(last_err("fork")),
        0 => {
            // SAFETY: closing descriptors the worker must not hold: the control socket and
            // the other workers' stderr pipes; then routing our stderr into our own pipe.
            unsafe {
                libc::close(ctl.as_raw_fd());
                for c in children {
                    if let Some(e) = &c.err {
                        libc::close(e.as_raw_fd());
                    }
                }
                libc::dup2(err_w.as_raw_fd(), 2);
            }
            drop((err_r, err_w, task_w, res_r));
            child_setup(zygote);
            let mut input = File::from(task_r);
            let mut output = io::BufWriter::with_capacity(64 << 10, File::from(res_w));
            let worker = child_init(state).map(|()| state);
            let code = session(worker, &mut input, &mut output, max_frame, faults);
            // SAFETY: leave without destructors: inherited handles must not be closed here.
            unsafe { libc::_exit(code) }
        }
        pid => {
            Ok((Child { pid, wid, err: Some(err_r), buf: Vec::new(), reaped: false, killed: false }, [task_w, res_r]))
        }
    }
}

fn send_fds(sock: RawFd, pid: i64, fds: &[OwnedFd; 2]) -> io::Result<()> {
    let data = pid.to_le_bytes();
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    let mut cbuf = [0u64; 8];
    // SAFETY: building a msghdr over buffers that outlive the sendmsg call; CMSG_* macros
    // stay inside `cbuf`, which is large enough for two descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE((2 * size_of::<RawFd>()) as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN((2 * size_of::<RawFd>()) as u32) as _;
        let p = libc::CMSG_DATA(c).cast::<RawFd>();
        p.write_unaligned(fds[0].as_raw_fd());
        p.add(1).write_unaligned(fds[1].as_raw_fd());
        loop {
            let n = libc::sendmsg(sock, &msg, 0);
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return if n == data.len() as isize { Ok(()) } else { Err(last_err("sendmsg")) };
        }
    }
}
