//! A PostgreSQL server for tests and benchmarks (feature `testing`; bench-driver's
//! `distributed` scenario uses [`Cluster`] and the database helpers): the one given by `BTOPT_TEST_POSTGRES`
//! (a URL), else a throwaway cluster started here when the server binaries exist
//! (`/usr/lib/postgresql/15/bin`, or `BTOPT_PG_BIN`), else none: the test prints
//! `skipping: no PostgreSQL server (set BTOPT_TEST_POSTGRES)` and passes, unless
//! `BTOPT_REQUIRE_POSTGRES=1`, where a missing server fails it.
//!
//! Each test gets its own database ([`Server::create_database`]), so tests run in parallel.
//! A throwaway cluster listens on a free loopback port only; the shared one is stopped by a
//! watchdog process when the test process exits, and a [`Cluster`] of a test's own (for
//! restarts) is stopped when it is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::location::PgTarget;

/// The line a test prints when it skips for want of a server.
pub const SKIP_LINE: &str = "skipping: no PostgreSQL server (set BTOPT_TEST_POSTGRES)";

/// A server to create test databases on.
#[derive(Debug)]
pub struct Server {
    admin_url: String,
    _cluster: Option<Cluster>,
}

/// The shared server, or `None` after printing [`SKIP_LINE`] (panics instead when
/// `BTOPT_REQUIRE_POSTGRES=1`).
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    let s = SERVER.get_or_init(|| {
        if let Some(url) = std::env::var("BTOPT_TEST_POSTGRES").ok().filter(|u| !u.is_empty()) {
            return Some(Server { admin_url: url, _cluster: None });
        }
        let cluster = Cluster::start()?;
        cluster.stop_when_process_exits();
        Some(Server { admin_url: cluster.url(), _cluster: Some(cluster) })
    });
    if s.is_none() {
        skip();
    }
    s.as_ref()
}

/// Prints [`SKIP_LINE`], or panics when a server is required.
pub fn skip() {
    if std::env::var("BTOPT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("BTOPT_REQUIRE_POSTGRES=1 but no PostgreSQL server: set BTOPT_TEST_POSTGRES or install PostgreSQL 15");
    }
    println!("{SKIP_LINE}");
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test uses: `test_<pid>_<n>_<nanos>`.
fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("test_{}_{n}_{nanos}", std::process::id())
}

/// Creates a fresh database on the server at `admin_url`; returns its URL.
pub fn create_database_at(admin_url: &str) -> String {
    let target = PgTarget::parse(admin_url).expect("a valid test server URL");
    let name = unique_name();
    let mut client = target.connect().unwrap_or_else(|e| panic!("failed to reach the test server: {e}"));
    client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
    replace_dbname(admin_url, &name)
}

/// Drops the database of `url` (made by [`create_database_at`]) on the server at
/// `admin_url`, closing any session still on it.
pub fn drop_database_at(admin_url: &str, url: &str) -> crate::Result<()> {
    let admin = PgTarget::parse(admin_url)?;
    let db = PgTarget::parse(url)?;
    let name = db.dbname();
    let mut client = admin.connect()?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .map_err(|e| admin.error("drop a database", &e))
}

/// `url` with its database replaced by `db` (query parameters kept).
fn replace_dbname(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl Server {
    /// The URL of the server's maintenance database.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// A fresh, empty database for one test; returns its URL.
    pub fn create_database(&self) -> String {
        create_database_at(&self.admin_url)
    }
}

/// A throwaway cluster in a temporary directory, run as the `postgres` user when this
/// process is root (initdb refuses root), on a free loopback port. Dropping it stops it
/// (`-m immediate`) and removes the directory.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    extra: String,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    /// Where the server binaries are: `BTOPT_PG_BIN`, else `/usr/lib/postgresql/15/bin`.
    pub fn bin_dir() -> PathBuf {
        std::env::var_os("BTOPT_PG_BIN").map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), PathBuf::from)
    }

    /// Starts a cluster, or `None` if the server binaries are missing.
    pub fn start() -> Option<Cluster> {
        Cluster::start_with(false)
    }

    /// Starts a cluster that offers TLS (`ssl=on`) with a server certificate for `localhost`
    /// and `127.0.0.1` signed by a fresh CA (made with the `openssl` command); returns it with
    /// the CA's certificate file. `None` if the server binaries are missing.
    pub fn start_tls() -> Option<(Cluster, PathBuf)> {
        let c = Cluster::start_with(true)?;
        let ca = c.dir.join("ca.crt");
        Some((c, ca))
    }

    fn start_with(tls: bool) -> Option<Cluster> {
        let bin = Cluster::bin_dir();
        if !bin.join("initdb").exists() {
            return None;
        }
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(unique_name().replace("test_", "btopt-pg-"));
        std::fs::create_dir(&dir).expect("create the cluster directory");
        let mut cluster = Cluster { dir, bin, port: 0, as_postgres, extra: String::new() };
        if as_postgres {
            let ok = Command::new("chown").arg("postgres").arg(&cluster.dir).status().is_ok_and(|s| s.success());
            assert!(ok, "failed to chown the cluster directory to postgres");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cluster.dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
        }
        let data = cluster.data();
        cluster
            .pg("initdb", &["-D", p(&data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]);
        if tls {
            cluster.make_certificates(&data);
            cluster.extra = " -c ssl=on".to_string();
        }
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.try_pg_ctl(&[
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                p(&cluster.dir.join("log")),
                "-o",
                &cluster.options(),
            ]) {
                Ok(()) => return Some(cluster),
                Err(e) => last = e,
            }
        }
        panic!("failed to start a throwaway PostgreSQL cluster: {last}");
    }

    /// A CA and a server certificate for localhost/127.0.0.1 in the data directory.
    fn make_certificates(&self, data: &Path) {
        let d = &self.dir;
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(d).stdin(Stdio::null()).output();
            let out = out.expect("run the openssl command");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        std::fs::write(d.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write san.ext");
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=btopt test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        for f in ["server.crt", "server.key"] {
            std::fs::copy(d.join(f), data.join(f)).expect("copy a certificate file");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
            }
            if self.as_postgres {
                let ok = Command::new("chown").arg("postgres").arg(data.join(f)).status().is_ok_and(|s| s.success());
                assert!(ok, "failed to chown {f} to postgres");
            }
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200{}",
            self.port,
            self.dir.display(),
            self.extra
        )
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).stdin(Stdio::null()).output().expect("run a server binary");
        assert!(out.status.success(), "{program} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn try_pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m fast`: every session is cut, the server comes back on the same port.
    pub fn restart(&self) {
        self.try_pg_ctl(&[
            "restart",
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "-l",
            p(&self.dir.join("log")),
            "-o",
            &self.options(),
        ])
        .unwrap_or_else(|e| panic!("pg_ctl restart failed: {e}"));
    }

    /// Hands the cluster to a watchdog that stops it and removes its directory once this
    /// process has exited (for the shared cluster, which is never dropped, and for a process
    /// that may be killed before it drops its cluster).
    pub fn stop_when_process_exits(&self) {
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runuser}{pg_ctl} -D {data} -m immediate stop; rm -rf {dir}",
            pid = std::process::id(),
            runuser = if self.as_postgres { "runuser -u postgres -- " } else { "" },
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
            dir = self.dir.display(),
        );
        #[allow(clippy::zombie_processes, reason = "the watchdog outlives this process by design")]
        Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's watchdog");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.try_pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
