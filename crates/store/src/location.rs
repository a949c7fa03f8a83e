//! What `--store` names: an SQLite file or a PostgreSQL server, and how to reach the server
//! (password from the URL, `PGPASSWORD` or the password file, as libpq does).

use std::future::Future;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use postgres::Socket;
use postgres::config::Host;
use postgres::tls::{MakeTlsConnect, TlsConnect};

use crate::error::{Error, Result};
use crate::redact::{redact, scrub};

/// A parsed `--store` value.
#[derive(Clone)]
pub enum Location {
    /// `FILE` or `sqlite:FILE`: one study in a local SQLite file.
    Sqlite(PathBuf),
    /// `postgresql://USER@HOST:PORT/DB` (or `postgres://`): many studies in one database.
    Postgres(Box<PgTarget>),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl Location {
    /// Parses `--store`: `postgresql://…` or `postgres://…` is a server, `sqlite:FILE` or a
    /// plain path is an SQLite file, any other `scheme://` is refused.
    pub fn parse(s: &str) -> Result<Location> {
        if s.starts_with("postgresql://") || s.starts_with("postgres://") {
            return Ok(Location::Postgres(Box::new(PgTarget::parse(s)?)));
        }
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(Error::InvalidLocation("sqlite: needs a file name".into()));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if s.contains("://") {
            return Err(Error::InvalidLocation(format!(
                "{}: use FILE, sqlite:FILE or postgresql://USER@HOST:PORT/DB",
                redact(s)
            )));
        }
        if s.is_empty() {
            return Err(Error::InvalidLocation("empty --store".into()));
        }
        Ok(Location::Sqlite(PathBuf::from(s)))
    }

    /// The location as it may be printed (no password).
    pub fn display(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(t) => t.display.clone(),
        }
    }
}

/// How to use TLS, as libpq's `sslmode` (the client library knows only the first three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SslMode {
    Disable,
    /// TLS if the server offers it, without verification (libpq's default).
    Prefer,
    /// TLS, without verification.
    Require,
    /// TLS, with the server certificate verified against the root certificate.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

/// A PostgreSQL server and database, with its password resolved, ready to connect.
#[derive(Clone)]
pub struct PgTarget {
    config: postgres::Config,
    display: String,
    ssl: SslMode,
    root_cert: Option<PathBuf>,
    /// The TLS connector, built the first time a server accepts TLS and shared by the
    /// target's clones (see [`LazyTls`]).
    tls: Arc<OnceLock<postgres_openssl::MakeTlsConnector>>,
}

/// `url` without its `sslmode` and `sslrootcert` parameters, and their values.
fn take_tls_params(url: &str) -> Result<(String, SslMode, Option<PathBuf>)> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), SslMode::Prefer, None)) };
    let mut keep = Vec::new();
    let mut mode = SslMode::Prefer;
    let mut root = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslmode", v)) => {
                mode = match v {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(Error::InvalidLocation(format!(
                            "{}: sslmode {other}: use disable, prefer, require, verify-ca or verify-full",
                            redact(url)
                        )));
                    }
                }
            }
            Some(("sslrootcert", v)) => root = Some(PathBuf::from(v)),
            _ => keep.push(pair),
        }
    }
    let rest = if keep.is_empty() { base.to_string() } else { format!("{base}?{}", keep.join("&")) };
    Ok((rest, mode, root))
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl PgTarget {
    /// Parses a `postgresql://` URL. Without a password in it, `PGPASSWORD` is used, else
    /// the matching line of `PGPASSFILE` or `~/.pgpass` (only if no one else may read it).
    ///
    /// TLS follows libpq's `sslmode`: `disable`; `prefer` (the default: TLS when offered);
    /// `require` (TLS, unverified); `verify-ca` and `verify-full` (verified against
    /// `sslrootcert`, default `~/.postgresql/root.crt`; `verify-full` also checks the host name).
    pub fn parse(url: &str) -> Result<PgTarget> {
        let display = redact(url);
        let (stripped, ssl, root_cert) = take_tls_params(url)?;
        let mut config: postgres::Config = stripped.parse().map_err(|e: postgres::Error| {
            Error::InvalidLocation(format!("{display}: {}", scrub(&redact(&e.to_string()), None)))
        })?;
        if config.get_hosts().is_empty() {
            return Err(Error::InvalidLocation(format!("{display}: no host")));
        }
        if config.get_password().is_none() {
            if let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
                config.password(p.to_string_lossy().as_bytes());
            } else if let Some(p) = pgpass_lookup(&config) {
                config.password(p.as_bytes());
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("btopt");
        }
        config.ssl_mode(match ssl {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        Ok(PgTarget { config, display, ssl, root_cert, tls: Arc::default() })
    }

    /// The TLS connector for this target's `sslmode`, built once.
    fn tls(&self) -> Result<postgres_openssl::MakeTlsConnector> {
        if let Some(c) = self.tls.get() {
            return Ok(c.clone());
        }
        let c = self.build_tls()?;
        Ok(self.tls.get_or_init(|| c).clone())
    }

    /// Whether a connection has needed TLS yet (for tests: `sslmode=prefer` against a server
    /// without TLS never builds the connector).
    #[doc(hidden)]
    pub fn has_tls_connector(&self) -> bool {
        self.tls.get().is_some()
    }

    fn build_tls(&self) -> Result<postgres_openssl::MakeTlsConnector> {
        use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
        let err = |e: openssl::error::ErrorStack| Error::Postgres {
            url: self.display.clone(),
            what: "set up TLS".into(),
            message: e.to_string(),
        };
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(err)?;
        match self.ssl {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let root = match &self.root_cert {
                    Some(p) => p.clone(),
                    None => Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".postgresql/root.crt"),
                };
                builder.set_ca_file(&root).map_err(|e| Error::Postgres {
                    url: self.display.clone(),
                    what: "set up TLS".into(),
                    message: format!("root certificate {}: {e}", root.display()),
                })?;
                builder.set_verify(SslVerifyMode::PEER);
            }
            _ => builder.set_verify(SslVerifyMode::NONE),
        }
        let mut connector = postgres_openssl::MakeTlsConnector::new(builder.build());
        if self.ssl != SslMode::VerifyFull {
            connector.set_callback(|c, _| {
                c.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
    }

    /// The URL as it may be printed (no password).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The database name (the user's name when the URL names none, as libpq does).
    pub fn dbname(&self) -> String {
        self.config.get_dbname().or(self.config.get_user()).unwrap_or("postgres").to_string()
    }

    /// The same server, another database.
    pub fn with_dbname(&self, db: &str) -> PgTarget {
        let mut t = self.clone();
        t.config.dbname(db);
        t.display = format!("{} (database {db})", self.display);
        t
    }

    /// Connects without starting a thread: a host name is resolved here, on the calling
    /// thread, and the client gets the literal address (tokio-postgres would resolve it on a
    /// blocking-pool thread, and a thread in the process stops later fork pools). The sync
    /// client's runtime is current-thread and starts none.
    pub fn connect(&self) -> Result<postgres::Client> {
        self.connect_classified().map_err(|f| f.error)
    }

    /// [`PgTarget::connect`], saying whether a failure can pass if tried again.
    pub(crate) fn connect_classified(&self) -> std::result::Result<postgres::Client, ConnectFailure> {
        let mut config = self.config.clone();
        if config.get_hostaddrs().is_empty() {
            let ports = config.get_ports().to_vec();
            let hosts = config.get_hosts().to_vec();
            let mut addrs = Vec::new();
            for (i, h) in hosts.iter().enumerate() {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match h {
                    Host::Tcp(name) => {
                        let ip = (name.as_str(), port)
                            .to_socket_addrs()
                            .ok()
                            .and_then(|mut a| a.next())
                            .map(|a| a.ip())
                            .ok_or_else(|| ConnectFailure {
                                // A name server that is away can come back: not permanent.
                                error: Error::Postgres {
                                    url: self.display.clone(),
                                    what: "connect".into(),
                                    message: format!("cannot resolve host {name}"),
                                },
                                permanent: false,
                            })?;
                        addrs.push(Some(ip));
                    }
                    #[cfg(unix)]
                    Host::Unix(_) => addrs.push(None),
                }
            }
            // hostaddr is all-or-nothing: only when every host is TCP.
            if addrs.iter().all(Option::is_some) {
                for ip in addrs.into_iter().flatten() {
                    config.hostaddr(ip);
                }
            }
        }
        let client = match self.ssl {
            SslMode::Disable => config.connect(postgres::NoTls),
            _ => config.connect(LazyTls(self.clone())),
        };
        client.map_err(|e| ConnectFailure {
            permanent: is_permanent_connect_failure(&e),
            error: self.error("connect", &e),
        })
    }

    /// A client error as this crate's error, with the URL redacted and the password masked.
    pub(crate) fn error(&self, what: &str, e: &postgres::Error) -> Error {
        let mut message = e.to_string();
        if let Some(db) = e.as_db_error() {
            message = format!("{} ({})", db.message(), db.code().code());
        } else if let Some(src) = std::error::Error::source(e) {
            message = format!("{message}: {src}");
        }
        Error::Postgres {
            url: self.display.clone(),
            what: what.to_string(),
            message: scrub(&message, self.config.get_password()),
        }
    }
}

/// The target's TLS connector, as the client's `MakeTlsConnect`, built only when the server
/// A failed connection attempt.
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    /// The error, its URL redacted.
    pub(crate) error: Error,
    /// Whether trying again cannot help.
    pub(crate) permanent: bool,
}

/// Whether a failed connection attempt fails again however often it is tried: a refused login
/// (SQLSTATE 28P01 wrong password, 28000 no such role or no `pg_hba` entry, 3D000 no such
/// database, 42501 no privilege) or a TLS failure that is not an I/O error (a certificate
/// that does not verify, a server without TLS under `sslmode=require`). Everything else passes
/// once the server is back: refused or reset connections, a server starting up or shutting
/// down (57P03, 57P01), and I/O errors during the TLS handshake of a server going away.
///
/// Decided on the client's error itself, never on its text: the text carries the URL, whose
/// query (`sslmode=require`) or host name would match any word searched for.
pub(crate) fn is_permanent_connect_failure(e: &postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        use postgres::error::SqlState;
        let code = db.code();
        return [
            SqlState::INVALID_PASSWORD,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            SqlState::INVALID_CATALOG_NAME,
            SqlState::INSUFFICIENT_PRIVILEGE,
        ]
        .contains(code);
    }
    // tokio-postgres names its TLS failures in its own text ("error performing TLS
    // handshake", "server does not support TLS"), which holds no URL.
    let own = e.to_string();
    let tls = own.starts_with("error performing TLS handshake") || own.contains("server does not support TLS");
    let mut io = false;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        io |= s.is::<std::io::Error>();
        source = s.source();
    }
    tls && !io
}

/// accepts TLS: OpenSSL's connector loads the system's CA bundle, which costs a process some
/// 40 to 70 ms of CPU per connection, and `sslmode=prefer` (the default) against a server
/// without TLS never uses it. Once built, the target keeps it for its other connections.
struct LazyTls(PgTarget);

/// [`LazyTls`] for one connection attempt.
struct LazyTlsConnect {
    target: PgTarget,
    domain: String,
}

type TlsError = Box<dyn std::error::Error + Send + Sync>;

impl MakeTlsConnect<Socket> for LazyTls {
    type Stream = postgres_openssl::TlsStream<Socket>;
    type TlsConnect = LazyTlsConnect;
    type Error = TlsError;

    fn make_tls_connect(&mut self, domain: &str) -> std::result::Result<LazyTlsConnect, TlsError> {
        Ok(LazyTlsConnect { target: self.0.clone(), domain: domain.to_string() })
    }
}

impl TlsConnect<Socket> for LazyTlsConnect {
    type Stream = postgres_openssl::TlsStream<Socket>;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Self::Stream, TlsError>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let tls = self.target.tls().map_err(TlsError::from).and_then(|mut make| {
            MakeTlsConnect::<Socket>::make_tls_connect(&mut make, &self.domain).map_err(TlsError::from)
        });
        match tls {
            Ok(tls) => tls.connect(stream),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

/// The password for `config` from the password file, as libpq reads it: lines
/// `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`.
fn pgpass_lookup(config: &postgres::Config) -> Option<String> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(&std::env::var_os("HOME")?).join(".pgpass"),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return None; // libpq ignores a file that others can read.
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let host = match config.get_hosts().first()? {
        Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        Host::Unix(_) => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or("").to_string();
    let db = config.get_dbname().unwrap_or(&user).to_string();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() != 5 {
            continue;
        }
        let want = [&host, &port, &db, &user];
        if fields[..4].iter().zip(want).all(|(f, w)| f == "*" || f == w) {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().expect("one field").push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::{PgTarget, split_pgpass};

    /// A refused connection is worth retrying whatever the URL says: its text names the URL,
    /// and `sslmode=require` or a host called "tls" once made every reconnect give up at once.
    #[test]
    fn a_refused_connection_is_not_permanent_whatever_the_url_holds() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        for url in [
            format!("postgresql://ssl@127.0.0.1:{port}/tls?sslmode=require"),
            format!("postgresql://u@127.0.0.1:{port}/db?sslmode=prefer&sslrootcert=/nonexistent/certificate.pem"),
            format!("postgresql://u@127.0.0.1:{port}/db?sslmode=disable"),
        ] {
            let Err(failure) = PgTarget::parse(&url).unwrap().connect_classified() else {
                panic!("{url}: nothing listens there")
            };
            assert!(!failure.permanent, "{url}: {}", failure.error);
        }
    }

    #[test]
    fn pgpass_lines_split_on_unescaped_colons() {
        assert_eq!(split_pgpass(r"h:5432:*:u:p\:w\\d"), ["h", "5432", "*", "u", r"p:w\d"]);
    }
}
