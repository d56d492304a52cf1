//! A loopback HTTP/1.1 server for tests, that can misbehave on purpose.
//!
//! [`TestServer::start`] binds `127.0.0.1:0` and serves each connection in a thread of its own
//! (keep-alive supported); [`TestServer::start_tls`] does the same over TLS (see
//! [`TestTls`] for a CA and server certificate made in code). Routes map a path to a body
//! and a behaviour ([`Route`], [`Fault`]): `Range`/`If-Range` support or not, truncation, a
//! connection reset, a stall, a wrong `Content-Length`, failures before success, redirects,
//! Basic or bearer authentication, an endless body, a per-connection rate limit. The server
//! counts requests and body bytes sent per path and records each request's headers.
//! [`TestServer::serve_dir`] serves a directory tree; [`TestServer::enable_connect_proxy`]
//! makes it a `CONNECT` proxy to loopback addresses.
//!
//! Everything is bounded: sockets poll with short timeouts, idle connections close, and
//! dropping the server stops and joins every thread, so a test never hangs on it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Component, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::ssl::{HandshakeError, SslAcceptor, SslMethod, SslStream};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Name, X509Ref};

/// How long a socket read waits before the thread checks whether the server is stopping.
const POLL: Duration = Duration::from_millis(50);
/// A connection that sends nothing for this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// A write that makes no progress for this long fails (the client stopped reading).
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(10);
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Requests served on one connection at most.
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
/// Body bytes written per `write` call.
const CHUNK: usize = 256 * 1024;
/// An endless body stops anyway after this many bytes.
const ENDLESS_LIMIT: u64 = 64 << 30;
/// Requests kept in each path's log.
const LOG_LIMIT: usize = 1000;

/// A misbehaviour of a route (see [`Route::fault`] and [`Route::fault_for`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Send the headers and this many body bytes, then close the connection cleanly.
    TruncateAt(u64),
    /// Send this many body bytes, then reset the connection (TCP RST).
    ResetAt(u64),
    /// Send this many body bytes, pause for the duration, then send the rest.
    StallAt(u64, Duration),
    /// Announce this `Content-Length`, send the real body, then close.
    WrongContentLength(u64),
    /// Answer the first `times` requests with `status`, then behave.
    FailTimes {
        /// The failure status, e.g. 500.
        status: u16,
        /// How many requests fail.
        times: usize,
    },
    /// Answer `302` to this location (a path on this server, or an absolute URL).
    Redirect(String),
    /// Send a body without length that never ends (until the client goes away).
    EndlessBody,
}

/// Authentication a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP Basic with these credentials.
    Basic {
        /// Expected user name.
        username: String,
        /// Expected password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl Auth {
    fn header_value(&self) -> String {
        match self {
            Auth::Basic { username, password } => {
                format!(
                    "Basic {}",
                    base64(format!("{username}:{password}").as_bytes())
                )
            }
            Auth::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

/// What the server answers on one path.
#[derive(Debug, Clone)]
pub struct Route {
    /// The body (the whole resource).
    pub body: Arc<[u8]>,
    /// The status of a normal answer; anything but 200 is sent as is, without ranges.
    pub status: u16,
    /// Whether `Range` requests get `206` (else the whole body, `200`).
    pub ranges: bool,
    /// The `ETag` header (quoted, as sent), also compared with `If-Range`.
    pub etag: Option<String>,
    /// The `Last-Modified` header, also compared with `If-Range`.
    pub last_modified: Option<String>,
    /// The misbehaviour.
    pub fault: Fault,
    /// Apply the fault only to the first this-many requests of the path (`None`: always).
    pub fault_requests: Option<usize>,
    /// Required authentication (`401` without it).
    pub auth: Option<Auth>,
    /// Body bytes per second and connection at most.
    pub throttle_bps: Option<u64>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl Route {
    /// A well-behaved `200` route with range support and no validator.
    pub fn new(body: impl Into<Arc<[u8]>>) -> Route {
        Route {
            body: body.into(),
            status: 200,
            ranges: true,
            etag: None,
            last_modified: None,
            fault: Fault::None,
            fault_requests: None,
            auth: None,
            throttle_bps: None,
            headers: Vec::new(),
        }
    }

    /// A route that always redirects to `location`.
    pub fn redirect(location: &str) -> Route {
        Route::new(Vec::new()).fault(Fault::Redirect(location.to_owned()))
    }

    /// Sets range support.
    #[must_use]
    pub fn ranges(mut self, ranges: bool) -> Route {
        self.ranges = ranges;
        self
    }

    /// Sets the `ETag` (give it quoted, e.g. `"\"v1\""`).
    #[must_use]
    pub fn etag(mut self, etag: &str) -> Route {
        self.etag = Some(etag.to_owned());
        self
    }

    /// Sets the `Last-Modified` value.
    #[must_use]
    pub fn last_modified(mut self, value: &str) -> Route {
        self.last_modified = Some(value.to_owned());
        self
    }

    /// Misbehaves on every request.
    #[must_use]
    pub fn fault(mut self, fault: Fault) -> Route {
        self.fault = fault;
        self.fault_requests = None;
        self
    }

    /// Misbehaves on the first `requests` requests only.
    #[must_use]
    pub fn fault_for(mut self, fault: Fault, requests: usize) -> Route {
        self.fault = fault;
        self.fault_requests = Some(requests);
        self
    }

    /// Requires authentication.
    #[must_use]
    pub fn auth(mut self, auth: Auth) -> Route {
        self.auth = Some(auth);
        self
    }

    /// Limits the rate to `bytes_per_second` per connection.
    #[must_use]
    pub fn throttle(mut self, bytes_per_second: u64) -> Route {
        self.throttle_bps = Some(bytes_per_second.max(1));
        self
    }

    /// Sets the status of a normal answer.
    #[must_use]
    pub fn status(mut self, status: u16) -> Route {
        self.status = status;
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Route {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// The headers, names in lowercase, in order.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default, Clone)]
struct PathStats {
    requests: usize,
    bytes_sent: u64,
    log: Vec<RecordedRequest>,
}

struct Shared {
    base_url: String,
    tls: Option<SslAcceptor>,
    routes: Mutex<HashMap<String, Route>>,
    dirs: Mutex<Vec<(String, PathBuf)>>,
    stats: Mutex<HashMap<String, PathStats>>,
    connects: Mutex<Vec<String>>,
    proxy: AtomicBool,
    shutdown: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    fn add_bytes(&self, path: &str, n: u64) {
        lock(&self.stats)
            .entry(path.to_owned())
            .or_default()
            .bytes_sent += n;
    }
}

/// A running test server; stops (and joins its threads) when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a plain HTTP server on `127.0.0.1` (a free port).
    pub fn start() -> TestServer {
        Self::start_with(None)
    }

    /// Starts an HTTPS server presenting `cert` (with `key`).
    pub fn start_tls(cert: &X509Ref, key: &PKeyRef<Private>) -> TestServer {
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
            .unwrap_or_else(|e| panic!("tls acceptor: {e}"));
        builder
            .set_private_key(key)
            .unwrap_or_else(|e| panic!("tls key: {e}"));
        builder
            .set_certificate(cert)
            .unwrap_or_else(|e| panic!("tls certificate: {e}"));
        builder
            .check_private_key()
            .unwrap_or_else(|e| panic!("tls key does not match: {e}"));
        Self::start_with(Some(builder.build()))
    }

    fn start_with(tls: Option<SslAcceptor>) -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            base_url: format!("{scheme}://{addr}"),
            tls,
            routes: Mutex::new(HashMap::new()),
            dirs: Mutex::new(Vec::new()),
            stats: Mutex::new(HashMap::new()),
            connects: Mutex::new(Vec::new()),
            proxy: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("testserver-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        TestServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or `https://…`), without a trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The URL of `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.shared.base_url)
    }

    /// Serves `route` on `path` (replacing any route there).
    pub fn add(&self, path: &str, route: Route) {
        lock(&self.shared.routes).insert(path.to_owned(), route);
    }

    /// Replaces the route on `path` (the same as [`TestServer::add`]).
    pub fn replace(&self, path: &str, route: Route) {
        self.add(path, route);
    }

    /// Stops serving `path` (`404` from now on, unless a served directory has it).
    pub fn remove(&self, path: &str) {
        lock(&self.shared.routes).remove(path);
    }

    /// Serves the files under `root` at `prefix` (e.g. `/interop`), with range support.
    pub fn serve_dir(&self, prefix: &str, root: impl Into<PathBuf>) {
        let prefix = format!("/{}", prefix.trim_matches('/'));
        lock(&self.shared.dirs).push((prefix, root.into()));
    }

    /// Requests received on `path` (the query string is not part of the path).
    pub fn requests(&self, path: &str) -> usize {
        lock(&self.shared.stats).get(path).map_or(0, |s| s.requests)
    }

    /// Body bytes written to clients for `path`.
    pub fn bytes_sent(&self, path: &str) -> u64 {
        lock(&self.shared.stats)
            .get(path)
            .map_or(0, |s| s.bytes_sent)
    }

    /// Body bytes written to clients, all paths together.
    pub fn total_bytes_sent(&self) -> u64 {
        lock(&self.shared.stats)
            .values()
            .map(|s| s.bytes_sent)
            .sum()
    }

    /// The requests received on `path`, oldest first (the last 1000).
    pub fn request_log(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.shared.stats)
            .get(path)
            .map(|s| s.log.clone())
            .unwrap_or_default()
    }

    /// The last request received on `path`.
    pub fn last_request(&self, path: &str) -> Option<RecordedRequest> {
        lock(&self.shared.stats)
            .get(path)
            .and_then(|s| s.log.last().cloned())
    }

    /// Forgets the counters and logs.
    pub fn reset_stats(&self) {
        lock(&self.shared.stats).clear();
    }

    /// Accepts `CONNECT host:port` (to loopback addresses only) and tunnels the connection:
    /// the server then also works as an HTTP proxy.
    pub fn enable_connect_proxy(&self) {
        self.shared.proxy.store(true, Ordering::SeqCst);
    }

    /// The `CONNECT` targets received, in order.
    pub fn connects(&self) -> Vec<String> {
        lock(&self.shared.connects).clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for handle in threads {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping() {
            break;
        }
        let Ok(stream) = stream else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let conn_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("testserver-conn".into())
            .spawn(move || serve_connection(&conn_shared, stream));
        if let Ok(handle) = spawned {
            let mut threads = lock(&shared.threads);
            threads.retain(|h| !h.is_finished());
            threads.push(handle);
        }
    }
}

/// A client connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

/// A client connection and the server it belongs to (whose stop flag ends blocked writes).
struct Conn {
    stream: Stream,
    shared: Arc<Shared>,
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }

    /// Ends the response stream cleanly (TLS close_notify, then FIN).
    fn close_cleanly(&mut self) {
        let _ = self.flush();
        if let Stream::Tls(s) = &mut self.stream {
            let _ = s.shutdown();
        }
        let _ = self.tcp().shutdown(Shutdown::Write);
    }

    /// Resets the connection: SO_LINGER 0, so that closing sends a RST.
    fn reset(self) {
        let _ = nix::sys::socket::setsockopt(
            self.tcp(),
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        );
        drop(self);
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    /// Writes everything, polling (the socket has a short write timeout) so that a stopping
    /// server, or a client that stopped reading (no progress for [`WRITE_STALL_LIMIT`]),
    /// ends the write instead of blocking it.
    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        let mut progress = Instant::now();
        while !data.is_empty() {
            match self.write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = &data[n..];
                    progress = Instant::now();
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    if self.shared.stopping() || progress.elapsed() > WRITE_STALL_LIMIT {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn serve_connection(shared: &Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(POLL)).is_err() || stream.set_write_timeout(Some(POLL)).is_err()
    {
        return;
    }
    let stream = match &shared.tls {
        None => Stream::Plain(stream),
        Some(acceptor) => match tls_handshake(shared, acceptor, stream) {
            Some(s) => Stream::Tls(Box::new(s)),
            None => return,
        },
    };
    let mut conn = Conn {
        stream,
        shared: Arc::clone(shared),
    };
    let mut pending = Vec::new();
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Some(request) = read_request(shared, &mut conn, &mut pending) else {
            return;
        };
        match respond(shared, conn, request, &pending) {
            Some(c) => conn = c,
            None => return,
        }
    }
}

fn tls_handshake(
    shared: &Shared,
    acceptor: &SslAcceptor,
    stream: TcpStream,
) -> Option<SslStream<TcpStream>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut result = acceptor.accept(stream);
    loop {
        match result {
            Ok(s) => return Some(s),
            Err(HandshakeError::WouldBlock(mid)) => {
                if shared.stopping() || Instant::now() > deadline {
                    return None;
                }
                result = mid.handshake();
            }
            Err(_) => return None,
        }
    }
}

/// A parsed request head.
struct Request {
    method: String,
    target: String,
    path: String,
    headers: Vec<(String, String)>,
    keep_alive: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request head (and skips its body). `None` at the end of the connection.
fn read_request(shared: &Shared, conn: &mut Conn, pending: &mut Vec<u8>) -> Option<Request> {
    let mut idle_since = Instant::now();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(pos) = find(pending, b"\r\n\r\n") {
            break pos;
        }
        if pending.len() > MAX_HEAD || shared.stopping() || idle_since.elapsed() > IDLE_LIMIT {
            return None;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                idle_since = Instant::now();
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    pending.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let version = parts.next().unwrap_or("HTTP/1.0").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let connection = headers
        .iter()
        .find(|(n, _)| n == "connection")
        .map(|(_, v)| v.to_ascii_lowercase());
    let keep_alive = match connection.as_deref() {
        Some(v) if v.contains("close") => false,
        Some(v) if v.contains("keep-alive") => true,
        _ => version == "HTTP/1.1",
    };
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let request = Request {
        method,
        target,
        path,
        headers,
        keep_alive,
    };
    // Skip a request body (tests only send GET and HEAD, so this is for robustness).
    let body_len: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if body_len > 0 {
        if body_len > MAX_HEAD {
            return None;
        }
        while pending.len() < body_len {
            if shared.stopping() || idle_since.elapsed() > IDLE_LIMIT {
                return None;
            }
            match conn.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        pending.drain(..body_len);
    }
    Some(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Answers one request. Returns the connection if it stays open.
fn respond(shared: &Arc<Shared>, mut conn: Conn, request: Request, pending: &[u8]) -> Option<Conn> {
    if request.method.eq_ignore_ascii_case("CONNECT") {
        if shared.proxy.load(Ordering::SeqCst) {
            tunnel(shared, conn, &request, pending);
            return None;
        }
        simple(&mut conn, 405, "Method Not Allowed", &[], false).ok()?;
        return None;
    }
    let index = {
        let mut stats = lock(&shared.stats);
        let entry = stats.entry(request.path.clone()).or_default();
        let index = entry.requests;
        entry.requests += 1;
        if entry.log.len() >= LOG_LIMIT {
            entry.log.remove(0);
        }
        entry.log.push(RecordedRequest {
            method: request.method.clone(),
            target: request.target.clone(),
            headers: request.headers.clone(),
        });
        index
    };
    let keep = request.keep_alive;
    let Some(route) = find_route(shared, &request.path) else {
        simple(&mut conn, 404, "Not Found", &[], keep).ok()?;
        return keep.then_some(conn);
    };
    if let Some(auth) = &route.auth
        && request.header("authorization") != Some(auth.header_value().as_str())
    {
        let challenge = match auth {
            Auth::Basic { .. } => "Basic realm=\"vmc-test\"",
            Auth::Bearer(_) => "Bearer realm=\"vmc-test\"",
        };
        simple(
            &mut conn,
            401,
            "Unauthorized",
            &[("WWW-Authenticate", challenge.to_owned())],
            keep,
        )
        .ok()?;
        return keep.then_some(conn);
    }
    let fault = if route.fault_requests.is_none_or(|n| index < n) {
        route.fault.clone()
    } else {
        Fault::None
    };
    match &fault {
        Fault::FailTimes { status, times } if index < *times => {
            simple(&mut conn, *status, "Injected Failure", &[], keep).ok()?;
            return keep.then_some(conn);
        }
        Fault::Redirect(location) => {
            let location = if location.starts_with('/') {
                format!("{}{location}", shared.base_url)
            } else {
                location.clone()
            };
            simple(&mut conn, 302, "Found", &[("Location", location)], keep).ok()?;
            return keep.then_some(conn);
        }
        _ => {}
    }
    let head_only = request.method.eq_ignore_ascii_case("HEAD");
    let body: &[u8] = &route.body;
    let total = body.len() as u64;

    let mut headers: Vec<(String, String)> = route.headers.clone();
    if let Some(etag) = &route.etag {
        headers.push(("ETag".into(), etag.clone()));
    }
    if let Some(lm) = &route.last_modified {
        headers.push(("Last-Modified".into(), lm.clone()));
    }
    headers.push((
        "Accept-Ranges".into(),
        if route.ranges { "bytes" } else { "none" }.into(),
    ));

    // Which part of the body, with which status.
    let (status, reason, range) = if route.status != 200 {
        (route.status, "Status", 0..total)
    } else {
        match requested_range(&request, &route, total) {
            RangeAnswer::Full => (200, "OK", 0..total),
            RangeAnswer::Partial(start, end) => {
                headers.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{total}", end - 1),
                ));
                (206, "Partial Content", start..end)
            }
            RangeAnswer::Unsatisfiable => {
                headers.push(("Content-Range".into(), format!("bytes */{total}")));
                simple_with(&mut conn, 416, "Range Not Satisfiable", &headers, keep).ok()?;
                return keep.then_some(conn);
            }
        }
    };
    let part = &body[to_usize(range.start)..to_usize(range.end)];
    let part_len = part.len() as u64;

    let endless = fault == Fault::EndlessBody;
    let closes = !keep
        || endless
        || matches!(
            fault,
            Fault::TruncateAt(_) | Fault::ResetAt(_) | Fault::WrongContentLength(_)
        );
    if !endless {
        let announced = match fault {
            Fault::WrongContentLength(n) => n,
            _ => part_len,
        };
        headers.push(("Content-Length".into(), announced.to_string()));
    }
    headers.push(("Content-Type".into(), "application/octet-stream".into()));
    if closes {
        headers.push(("Connection".into(), "close".into()));
    }
    write_head(&mut conn, status, reason, &headers).ok()?;
    if head_only {
        conn.flush().ok()?;
        return (!closes).then_some(conn);
    }

    let mut sender = BodySender::new(shared, &request.path, route.throttle_bps);
    match fault {
        Fault::TruncateAt(n) => {
            let n = to_usize(n.min(part_len));
            let _ = sender.send(&mut conn, &part[..n]);
            conn.close_cleanly();
            None
        }
        Fault::ResetAt(n) => {
            let n = to_usize(n.min(part_len));
            let _ = sender.send(&mut conn, &part[..n]);
            let _ = conn.flush();
            // Let the bytes leave before the reset discards what is still queued.
            std::thread::sleep(Duration::from_millis(20));
            conn.reset();
            None
        }
        Fault::StallAt(n, pause) => {
            let n = to_usize(n.min(part_len));
            sender.send(&mut conn, &part[..n]).ok()?;
            conn.flush().ok()?;
            sleep_unless_stopping(shared, pause);
            sender.send(&mut conn, &part[n..]).ok()?;
            conn.flush().ok()?;
            keep.then_some(conn)
        }
        Fault::EndlessBody => {
            let pattern: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
            let mut sent = 0u64;
            while sent < ENDLESS_LIMIT && !shared.stopping() {
                if sender.send(&mut conn, &pattern).is_err() {
                    break;
                }
                sent += pattern.len() as u64;
            }
            None
        }
        Fault::WrongContentLength(_) => {
            let _ = sender.send(&mut conn, part);
            conn.close_cleanly();
            None
        }
        Fault::None | Fault::FailTimes { .. } | Fault::Redirect(_) => {
            sender.send(&mut conn, part).ok()?;
            conn.flush().ok()?;
            if closes {
                conn.close_cleanly();
                None
            } else {
                Some(conn)
            }
        }
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

enum RangeAnswer {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// Decides how to answer a `Range` header (single ranges only; `If-Range` honoured).
fn requested_range(request: &Request, route: &Route, total: u64) -> RangeAnswer {
    let Some(range) = request.header("range") else {
        return RangeAnswer::Full;
    };
    if !route.ranges {
        return RangeAnswer::Full;
    }
    if let Some(if_range) = request.header("if-range") {
        let matches = route.etag.as_deref() == Some(if_range) && !if_range.starts_with("W/")
            || route.last_modified.as_deref() == Some(if_range);
        if !matches {
            return RangeAnswer::Full;
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) | Err(_) => RangeAnswer::Unsatisfiable,
            Ok(n) => RangeAnswer::Partial(total.saturating_sub(n), total),
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeAnswer::Full;
    };
    if start >= total {
        return RangeAnswer::Unsatisfiable;
    }
    let end = match last {
        "" => total,
        l => match l.parse::<u64>() {
            Ok(l) if l >= start => (l + 1).min(total),
            _ => return RangeAnswer::Full,
        },
    };
    RangeAnswer::Partial(start, end)
}

fn find_route(shared: &Shared, path: &str) -> Option<Route> {
    if let Some(route) = lock(&shared.routes).get(path) {
        return Some(route.clone());
    }
    let dirs = lock(&shared.dirs).clone();
    for (prefix, root) in dirs {
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('/') else {
            continue;
        };
        let rel = PathBuf::from(percent_decode(rest));
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            continue;
        }
        let file = root.join(rel);
        if file.is_file()
            && let Ok(bytes) = std::fs::read(&file)
        {
            return Some(Route::new(bytes));
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write_head(
    conn: &mut Conn,
    status: u16,
    reason: &str,
    headers: &[(String, String)],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())
}

/// A short answer with a text body.
fn simple(
    conn: &mut Conn,
    status: u16,
    reason: &str,
    extra: &[(&str, String)],
    keep: bool,
) -> io::Result<()> {
    let headers: Vec<(String, String)> = extra
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    simple_with(conn, status, reason, &headers, keep)
}

fn simple_with(
    conn: &mut Conn,
    status: u16,
    reason: &str,
    extra: &[(String, String)],
    keep: bool,
) -> io::Result<()> {
    let body = format!("{status} {reason}\n");
    let mut headers = extra.to_vec();
    headers.push(("Content-Type".into(), "text/plain".into()));
    headers.push(("Content-Length".into(), body.len().to_string()));
    if !keep {
        headers.push(("Connection".into(), "close".into()));
    }
    write_head(conn, status, reason, &headers)?;
    conn.write_all(body.as_bytes())?;
    conn.flush()?;
    if !keep {
        conn.close_cleanly();
    }
    Ok(())
}

/// Writes body bytes in chunks, counting them and keeping to the rate limit.
struct BodySender<'a> {
    shared: &'a Shared,
    path: &'a str,
    bps: Option<u64>,
    started: Instant,
    sent: u64,
}

impl<'a> BodySender<'a> {
    fn new(shared: &'a Shared, path: &'a str, bps: Option<u64>) -> Self {
        BodySender {
            shared,
            path,
            bps,
            started: Instant::now(),
            sent: 0,
        }
    }

    fn send(&mut self, conn: &mut Conn, data: &[u8]) -> io::Result<()> {
        let chunk = match self.bps {
            Some(bps) => to_usize((bps / 20).clamp(1, CHUNK as u64)),
            None => CHUNK,
        };
        for piece in data.chunks(chunk) {
            if self.shared.stopping() {
                return Err(io::Error::other("server stopping"));
            }
            conn.write_all(piece)?;
            self.sent += piece.len() as u64;
            self.shared.add_bytes(self.path, piece.len() as u64);
            if let Some(bps) = self.bps {
                let due = Duration::from_secs_f64(self.sent as f64 / bps as f64);
                let elapsed = self.started.elapsed();
                if due > elapsed {
                    conn.flush()?;
                    sleep_unless_stopping(self.shared, due - elapsed);
                }
            }
        }
        Ok(())
    }
}

fn sleep_unless_stopping(shared: &Shared, duration: Duration) {
    let end = Instant::now() + duration;
    while !shared.stopping() {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Tunnels a `CONNECT` to a loopback address.
fn tunnel(shared: &Arc<Shared>, mut conn: Conn, request: &Request, pending: &[u8]) {
    lock(&shared.connects).push(request.target.clone());
    let upstream = request
        .target
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.ip().is_loopback()))
        .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok());
    let Some(upstream) = upstream else {
        let _ = simple(&mut conn, 502, "Bad Gateway", &[], false);
        return;
    };
    let Stream::Plain(client) = conn.stream else {
        return;
    };
    if client
        .try_clone()
        .and_then(|mut c| c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n"))
        .is_err()
    {
        return;
    }
    let mut upstream_w = upstream;
    if !pending.is_empty() && upstream_w.write_all(pending).is_err() {
        return;
    }
    let (Ok(client_r), Ok(upstream_r)) = (client.try_clone(), upstream_w.try_clone()) else {
        return;
    };
    let _ = upstream_r.set_read_timeout(Some(POLL));
    let _ = upstream_w.set_write_timeout(Some(WRITE_STALL_LIMIT));
    let pump_shared = Arc::clone(shared);
    let up = std::thread::Builder::new()
        .name("testserver-tunnel".into())
        .spawn(move || pump(&pump_shared, client_r, upstream_w));
    pump(shared, upstream_r, client);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

/// Copies `from` to `to` until the end, an error, idleness or shutdown.
fn pump(shared: &Shared, mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle_since = Instant::now();
    loop {
        if shared.stopping() || idle_since.elapsed() > IDLE_LIMIT {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                idle_since = Instant::now();
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Standard base64 with padding, for Basic credentials.
fn base64(input: &[u8]) -> String {
    openssl::base64::encode_block(input)
}

/// A CA and a server certificate (EC P-256) made in code, for HTTPS tests.
///
/// The certificates are valid from an hour ago to a day from now by the wall clock, because
/// the TLS library checks them against the real time.
pub struct TestTls {
    /// The CA certificate (give it to the client as an extra root).
    pub ca_cert: X509,
    /// The CA key.
    pub ca_key: PKey<Private>,
    /// The server certificate, issued by the CA.
    pub cert: X509,
    /// The server key.
    pub key: PKey<Private>,
}

impl TestTls {
    /// A CA and a server certificate for `127.0.0.1` and `localhost`.
    pub fn generate() -> TestTls {
        Self::generate_for(&["IP:127.0.0.1", "DNS:localhost"])
    }

    /// A CA and a server certificate for the given names (`IP:…` or `DNS:…`).
    pub fn generate_for(names: &[&str]) -> TestTls {
        Self::try_generate_for(names).unwrap_or_else(|e| panic!("test tls: {e}"))
    }

    fn try_generate_for(names: &[&str]) -> Result<TestTls, openssl::error::ErrorStack> {
        let ca_key = ec_key()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let not_before = Asn1Time::from_unix(now - 3600)?;
        let not_after = Asn1Time::from_unix(now + 86_400)?;

        let ca_name = name("vmc test TLS CA")?;
        let mut ca = X509::builder()?;
        ca.set_version(2)?;
        let ca_serial = serial()?;
        ca.set_serial_number(&ca_serial)?;
        ca.set_subject_name(&ca_name)?;
        ca.set_issuer_name(&ca_name)?;
        ca.set_pubkey(&ca_key)?;
        ca.set_not_before(&not_before)?;
        ca.set_not_after(&not_after)?;
        ca.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        ca.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        let ski = SubjectKeyIdentifier::new().build(&ca.x509v3_context(None, None))?;
        ca.append_extension(ski)?;
        ca.sign(&ca_key, MessageDigest::sha256())?;
        let ca_cert = ca.build();

        let key = ec_key()?;
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let server_serial = serial()?;
        b.set_serial_number(&server_serial)?;
        let server_name = name("vmc test server")?;
        b.set_subject_name(&server_name)?;
        b.set_issuer_name(ca_cert.subject_name())?;
        b.set_pubkey(&key)?;
        b.set_not_before(&not_before)?;
        b.set_not_after(&not_after)?;
        b.append_extension(BasicConstraints::new().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_agreement()
                .build()?,
        )?;
        b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
        let mut san = SubjectAlternativeName::new();
        for n in names {
            if let Some(ip) = n.strip_prefix("IP:") {
                san.ip(ip);
            } else if let Some(dns) = n.strip_prefix("DNS:") {
                san.dns(dns);
            }
        }
        let san = san.build(&b.x509v3_context(Some(&ca_cert), None))?;
        b.append_extension(san)?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca_cert), None))?;
        b.append_extension(ski)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&ca_cert), None))?;
        b.append_extension(aki)?;
        b.sign(&ca_key, MessageDigest::sha256())?;
        Ok(TestTls {
            ca_cert,
            ca_key,
            cert: b.build(),
            key,
        })
    }

    /// Starts an HTTPS [`TestServer`] with this server certificate.
    pub fn start_server(&self) -> TestServer {
        TestServer::start_tls(&self.cert, &self.key)
    }
}

fn ec_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn name(cn: &str) -> Result<X509Name, openssl::error::ErrorStack> {
    let mut b = X509Name::builder()?;
    b.append_entry_by_text("O", "vmc tests")?;
    b.append_entry_by_text("CN", cn)?;
    Ok(b.build())
}

fn serial() -> Result<Asn1Integer, openssl::error::ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw HTTP/1.1 exchange on a fresh connection; returns (head, body).
    fn raw_get(server: &TestServer, path: &str, extra: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let end = find(&all, b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&all[..end]).into_owned();
        (head, all[end + 4..].to_vec())
    }

    #[test]
    fn serves_ranges_and_counts_bytes() {
        let server = TestServer::start();
        server.add("/f", Route::new(b"0123456789".to_vec()).etag("\"v1\""));
        let (head, body) = raw_get(&server, "/f", "Range: bytes=4-\r\n");
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(head.contains("Content-Range: bytes 4-9/10"));
        assert_eq!(body, b"456789");
        let (head, body) = raw_get(&server, "/f", "Range: bytes=4-\r\nIf-Range: \"v0\"\r\n");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"0123456789");
        let (head, _) = raw_get(&server, "/f", "Range: bytes=10-\r\n");
        assert!(head.starts_with("HTTP/1.1 416"), "{head}");
        assert_eq!(server.requests("/f"), 3);
        assert_eq!(server.bytes_sent("/f"), 16);
        let (head, _) = raw_get(&server, "/missing", "");
        assert!(head.starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn faults_apply_to_the_first_requests_only() {
        let server = TestServer::start();
        server.add(
            "/t",
            Route::new(vec![7u8; 1000]).fault_for(Fault::TruncateAt(100), 1),
        );
        let (head, body) = raw_get(&server, "/t", "");
        assert!(head.contains("Content-Length: 1000"));
        assert_eq!(body.len(), 100);
        let (_, body) = raw_get(&server, "/t", "");
        assert_eq!(body.len(), 1000);
        server.add(
            "/fail",
            Route::new(b"ok".to_vec()).fault(Fault::FailTimes {
                status: 503,
                times: 1,
            }),
        );
        assert!(raw_get(&server, "/fail", "").0.starts_with("HTTP/1.1 503"));
        assert!(raw_get(&server, "/fail", "").0.starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn auth_and_redirects() {
        let server = TestServer::start();
        server.add(
            "/a",
            Route::new(b"secret".to_vec()).auth(Auth::Basic {
                username: "u".into(),
                password: "p".into(),
            }),
        );
        assert!(raw_get(&server, "/a", "").0.starts_with("HTTP/1.1 401"));
        let (head, body) = raw_get(&server, "/a", "Authorization: Basic dTpw\r\n");
        assert!(head.starts_with("HTTP/1.1 200"));
        assert_eq!(body, b"secret");
        server.add("/r", Route::redirect("/a"));
        let (head, _) = raw_get(&server, "/r", "");
        assert!(head.contains(&format!("Location: {}/a", server.base_url())));
    }

    #[test]
    fn serves_a_directory_without_escaping_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x.txt"), b"hello").unwrap();
        let server = TestServer::start();
        server.serve_dir("/files/", dir.path());
        let (head, body) = raw_get(&server, "/files/sub/x.txt", "");
        assert!(head.starts_with("HTTP/1.1 200"));
        assert_eq!(body, b"hello");
        assert!(
            raw_get(&server, "/files/../x", "")
                .0
                .starts_with("HTTP/1.1 404")
        );
    }

    #[test]
    fn endless_body_and_drop_do_not_hang() {
        let server = TestServer::start();
        server.add("/e", Route::new(Vec::new()).fault(Fault::EndlessBody));
        let mut s = TcpStream::connect(server.addr()).unwrap();
        write!(s, "GET /e HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < 3 << 20 {
            got += s.read(&mut buf).unwrap();
        }
        // The server counts a chunk once its write returned, which can be after the client
        // read it: wait (boundedly) for the count to catch up with what arrived.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while server.bytes_sent("/e") < (3 << 20) - 1024 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(server.bytes_sent("/e") >= (3 << 20) - 1024);
        // The client stops reading but keeps the connection open: dropping the server must
        // still end the writing thread promptly.
        drop(server);
        drop(s);
    }

    #[test]
    fn keep_alive_serves_several_requests_on_one_connection() {
        let server = TestServer::start();
        server.add("/k", Route::new(b"abc".to_vec()));
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /k HTTP/1.1\r\nHost: x\r\n\r\nGET /k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let text = String::from_utf8_lossy(&all);
        assert_eq!(text.matches("HTTP/1.1 200").count(), 2);
        assert_eq!(server.requests("/k"), 2);
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b"u:p"), "dTpw");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
    }
}
