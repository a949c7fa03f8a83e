//! The spawn backend: re-execute a binary in worker mode with piped stdin and stdout, std only.
//!
//! Worker mode is entered only through [`worker_main_if_requested`], and only when the
//! environment variable [`WORKER_ENV`] carries a random token that the parent also writes as
//! the first frame on the child's stdin. A user cannot enter it by passing a flag.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind};
use crate::fault::FaultSpec;
use crate::frame::{read_frame, write_frame};
use crate::proc::{Event, Launched, Launcher, Msg};
use crate::worker::{SpawnWorker, session};

/// The environment variable that asks a process to run as a spawned worker.
pub const WORKER_ENV: &str = "BTOPT_POOL_WORKER_TOKEN";

const HEADER_MAX: usize = 1 << 30;

#[derive(Serialize, Deserialize)]
struct Header {
    name: String,
    wid: u64,
    max_frame: u64,
    parent_pid: u32,
    init: Vec<u8>,
}

type Entry = fn(&[u8], &mut dyn Read, &mut dyn Write, usize, &FaultSpec) -> i32;

/// The worker types a binary can run in spawn mode, by [`SpawnWorker::NAME`].
#[derive(Default)]
pub struct Registry {
    entries: Vec<(&'static str, Entry)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a worker type. Names must be unique; a later one with the same name wins.
    pub fn register<W: SpawnWorker>(mut self) -> Registry {
        self.entries.retain(|(n, _)| *n != W::NAME);
        self.entries.push((W::NAME, entry::<W>));
        self
    }
}

fn entry<W: SpawnWorker>(
    init: &[u8],
    input: &mut dyn Read,
    output: &mut dyn Write,
    max: usize,
    faults: &FaultSpec,
) -> i32 {
    let built = postcard::from_bytes::<W::Init>(init)
        .map_err(|e| format!("could not decode the init value: {e}"))
        .and_then(W::init);
    let mut worker = built;
    session(worker.as_mut().map_err(|m| m.clone()), input, output, max, faults)
}

/// Runs this process as a spawned worker and exits, if the pool asked for it; otherwise
/// returns at once. Call it first thing in `main`, before any thread exists (it removes
/// [`WORKER_ENV`] from the environment so that the worker's own children never see it).
pub fn worker_main_if_requested(registry: &Registry) {
    let Some(token) = std::env::var_os(WORKER_ENV) else { return };
    // SAFETY: documented requirement: called first thing in main, while single-threaded.
    unsafe { std::env::remove_var(WORKER_ENV) };
    let code = match run_worker(registry, token.to_string_lossy().as_bytes()) {
        Ok(code) => code,
        Err(m) => {
            eprintln!("pool worker: {m}");
            2
        }
    };
    std::process::exit(code)
}

fn run_worker(registry: &Registry, token: &[u8]) -> Result<i32, String> {
    let mut input = io::stdin().lock();
    let got = read_frame(&mut input, 256).map_err(|e| format!("bad token frame: {e}"))?;
    if got.as_deref() != Some(token) {
        return Err("worker mode requested without the matching token".into());
    }
    let header =
        read_frame(&mut input, HEADER_MAX).map_err(|e| format!("bad header frame: {e}"))?.ok_or("no header frame")?;
    let header: Header = postcard::from_bytes(&header).map_err(|e| format!("bad header: {e}"))?;
    let entry = registry
        .entries
        .iter()
        .find(|(n, _)| *n == header.name)
        .ok_or_else(|| format!("worker type {:?} is not registered in this binary", header.name))?
        .1;
    let faults = FaultSpec::from_env().map_err(|e| e.to_string())?;
    let max = header.max_frame as usize;
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls. Frames get a private duplicate of stdout, and fd 1 then
        // points at stderr, so a stray println! in worker code cannot corrupt the stream.
        let frames = unsafe {
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            if libc::getppid() as u32 != header.parent_pid {
                return Ok(0);
            }
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            let fd = libc::dup(1);
            if fd < 0 || libc::dup2(2, 1) < 0 {
                return Err("could not redirect stdout".into());
            }
            std::fs::File::from_raw_fd(fd)
        };
        let mut output = io::BufWriter::with_capacity(64 << 10, frames);
        Ok(entry(&header.init, &mut input, &mut output, max, &faults))
    }
    #[cfg(not(unix))]
    {
        // TODO(windows): stdout is the frame stream here; a println! in worker code would
        // corrupt it (the pool then reports a bad frame and replaces the worker).
        let mut output = io::BufWriter::with_capacity(64 << 10, io::stdout().lock());
        Ok(entry(&header.init, &mut input, &mut output, max, &faults))
    }
}

fn random_token() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("{a:016x}{:016x}", h.finish())
}

/// Starts spawned workers. On Windows every worker is also put in a Job Object with
/// `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`, so that the workers die with the parent however it
/// ends (Windows has no PDEATHSIG); see `winjob.rs`.
pub(crate) struct SpawnLauncher {
    program: PathBuf,
    token: String,
    name: &'static str,
    init: Vec<u8>,
    max_frame: usize,
    children: HashMap<u64, Child>,
    #[cfg(windows)]
    job: crate::winjob::Job,
}

impl SpawnLauncher {
    pub(crate) fn new<W: SpawnWorker>(
        program: Option<PathBuf>,
        init: &W::Init,
        max_frame: usize,
    ) -> Result<SpawnLauncher, Error> {
        let program = match program {
            Some(p) => p,
            None => std::env::current_exe().map_err(|e| Error::io("failed to find the current executable", e))?,
        };
        let init = postcard::to_stdvec(init)
            .map_err(|e| Error::new(Kind::Startup(format!("could not encode the init value: {e}"))))?;
        Ok(SpawnLauncher {
            program,
            token: random_token(),
            name: W::NAME,
            init,
            max_frame,
            children: HashMap::new(),
            #[cfg(windows)]
            job: crate::winjob::Job::new()
                .map_err(|e| Error::new(Kind::Startup(format!("could not create a job object: {e}"))))?,
        })
    }
}

impl Launcher for SpawnLauncher {
    fn launch(&mut self, wid: u64, events: &Sender<Event>) -> Result<Launched, Error> {
        let startup = |e: io::Error| Error::new(Kind::Startup(format!("could not start worker {wid}: {e}")));
        let mut child = Command::new(&self.program)
            .env(WORKER_ENV, &self.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(startup)?;
        #[cfg(windows)]
        if let Err(e) = self.job.assign(&child) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(startup(e));
        }
        let mut tx = child.stdin.take().expect("piped stdin");
        let rx = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let pid = child.id();
        self.children.insert(wid, child);
        let header = Header {
            name: self.name.to_string(),
            wid,
            max_frame: self.max_frame as u64,
            parent_pid: std::process::id(),
            init: self.init.clone(),
        };
        let header = postcard::to_stdvec(&header).map_err(|e| startup(io::Error::other(e)))?;
        let sent =
            write_frame(&mut tx, self.token.as_bytes(), 256).and_then(|()| write_frame(&mut tx, &header, HEADER_MAX));
        if let Err(e) = sent {
            self.kill(wid, pid);
            self.reap(wid, pid);
            return Err(startup(e));
        }
        let events = events.clone();
        let max = self.max_frame;
        std::thread::Builder::new()
            .name(format!("pool-rx-{wid}"))
            .spawn(move || {
                let mut rx = BufReader::with_capacity(64 << 10, rx);
                loop {
                    let msg = match read_frame(&mut rx, max) {
                        Ok(Some(f)) => Msg::Frame(f),
                        Ok(None) => Msg::Closed { cause: "closed its stdout".into(), frame: false },
                        Err(e) => {
                            let frame = matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof);
                            Msg::Closed { cause: format!("sent a bad frame: {e}"), frame }
                        }
                    };
                    let last = matches!(msg, Msg::Closed { .. });
                    if events.send((wid, msg)).is_err() || last {
                        return;
                    }
                }
            })
            .map_err(startup)?;
        std::thread::Builder::new()
            .name(format!("pool-err-{wid}"))
            .spawn(move || {
                let mut err = BufReader::new(err);
                let mut line = Vec::new();
                while matches!(err.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                    let text = String::from_utf8_lossy(&line);
                    eprintln!("[worker {wid}] {}", text.trim_end_matches('\n'));
                    line.clear();
                }
            })
            .map_err(startup)?;
        Ok(Launched {
            pid,
            tx: Box::new(tx),
            #[cfg(unix)]
            rx: None,
        })
    }

    fn kill(&mut self, wid: u64, _pid: u32) {
        if let Some(c) = self.children.get_mut(&wid) {
            // std::process::Child::kill never signals a reaped (and so recyclable) pid.
            let _ = c.kill();
        }
    }

    fn reap(&mut self, wid: u64, _pid: u32) -> String {
        match self.children.remove(&wid).map(|mut c| c.wait()) {
            Some(Ok(status)) => format!(" ({status})"),
            _ => String::new(),
        }
    }

    fn helper_pids(&self) -> Vec<u32> {
        Vec::new()
    }

    fn shutdown(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.children.values_mut().any(|c| matches!(c.try_wait(), Ok(None))) {
            std::thread::sleep(Duration::from_millis(2));
        }
        for (_, mut c) in self.children.drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SpawnLauncher {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}
