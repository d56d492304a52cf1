//! A real OpenStack Glance (v2 API) on `127.0.0.1` for tests, started from a virtualenv
//! holding `glance==33.0.0` and `gunicorn` (see `.ci/run`, which makes one and exports its path
//! as [`VENV_ENV`]).
//!
//! [`Glance::start`] writes a configuration into a temporary directory (SQLite database, file
//! store, the `trusted` paste flavor: Keystone's pipeline without `authtoken`, so the identity
//! comes from the headers Keystone's middleware would set, see [`identity_headers`]), creates
//! the schema with `glance-manage db_sync`, serves `glance.wsgi.api:application` with gunicorn
//! (through a shim whose SQLite transactions take the write lock when they begin) on a free
//! port and waits until `/versions` answers. Dropping it stops gunicorn (SIGTERM, then
//! SIGKILL) and removes the directory.
//!
//! [`Glance::start_behind`] starts it behind a real Keystone instead (the `keystone` flavor,
//! tokens checked by keystonemiddleware; see [`crate::keystone`]).
//!
//! [`venv_from_env`] is the gate the tests use: the virtualenv named by [`VENV_ENV`], or `None`
//! with a "skipped" line on stderr — except under CI (`CI=true`), where a missing Glance fails
//! the test instead of hiding it.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::keystone::{Account, Keystone};

/// The environment variable naming the Glance virtualenv (`DIR/bin/gunicorn`,
/// `DIR/bin/glance-manage`).
pub const VENV_ENV: &str = "VMC_TEST_GLANCE_VENV";

/// The password of the service user `glance` of [`Glance::start_behind`].
pub const SERVICE_PASSWORD: &str = "vmc-test-glance-service-secret";

/// How long Glance may take to answer `/versions` after gunicorn starts (about 2 s here).
const START_LIMIT: Duration = Duration::from_secs(90);

/// The project every request is made in unless a test says otherwise (32 hex digits, as
/// Keystone's ids).
pub const DEFAULT_PROJECT: &str = "0123456789abcdef0123456789abcdef";

/// The virtualenv of [`VENV_ENV`], or `None` (after saying on stderr that `test` is skipped)
/// when it is unset or empty. Under CI (`CI=true`) an unset variable panics: CI must run
/// these tests.
pub fn venv_from_env(test: &str) -> Option<PathBuf> {
    venv_from(VENV_ENV, "Glance", test)
}

/// [`venv_from_env`] for the variable `var` naming the virtualenv of `what`.
pub(crate) fn venv_from(var: &str, what: &str, test: &str) -> Option<PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{test}: {var} is not set under CI; .ci/run should have made the {what} \
                 virtualenv"
            );
            crate::skip::skipped(&format!(
                "{var} is not set: no {what} virtualenv to test against (.ci/run makes one)"
            ));
            None
        }
    }
}

/// The headers Keystone's `authtoken` middleware would add for a user with the `admin`,
/// `member` and `reader` roles in `project`; Glance's `trusted` flavor believes them.
pub fn identity_headers(project: &str) -> Vec<(String, String)> {
    vec![
        ("X-Identity-Status".into(), "Confirmed".into()),
        ("X-Roles".into(), "admin,member,reader".into()),
        ("X-Project-Id".into(), project.into()),
        (
            "X-User-Id".into(),
            "fedcba9876543210fedcba9876543210".into(),
        ),
    ]
}

/// A running Glance; stopped and cleaned up on drop.
#[derive(Debug)]
pub struct Glance {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Glance {
    /// Configures, migrates and starts Glance from the virtualenv `venv`, and waits until it
    /// answers. Fails (with the end of its log) when it exits or does not answer in time.
    pub fn start(venv: &Path) -> io::Result<Glance> {
        Glance::start_with(venv, Auth::Trusted)
    }

    /// [`Glance::start`] with another way of knowing who asks (see [`Auth`]).
    pub fn start_with(venv: &Path, auth: Auth) -> io::Result<Glance> {
        Glance::launch(venv, auth, None)
    }

    /// Glance behind `keystone`, as a site runs it: the `keystone` paste flavor, so every
    /// request's token is checked by keystonemiddleware's `authtoken` (which authenticates
    /// as the service user `glance`, password [`SERVICE_PASSWORD`], admin of the project
    /// `service`, all made here through Keystone's API); then Glance is added to Keystone's
    /// catalog as the `image` service, so clients find it from their token.
    pub fn start_behind(venv: &Path, keystone: &Keystone) -> io::Result<Glance> {
        let service = keystone.create_account("service", "glance", SERVICE_PASSWORD, "admin")?;
        let glance = Glance::launch(venv, Auth::Trusted, Some((&keystone.url(), &service)))?;
        keystone.add_endpoint("image", "glance", &glance.url())?;
        Ok(glance)
    }

    /// Configures, migrates and starts Glance: `auth`, or behind the Keystone at the URL
    /// with its service account.
    fn launch(venv: &Path, auth: Auth, keystone: Option<(&str, &Account)>) -> io::Result<Glance> {
        let dir = tempfile::Builder::new().prefix("vmc-glance-").tempdir()?;
        let root = dir.path();
        for sub in ["etc", "images", "staging", "tasks", "locks"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let conf = match keystone {
            Some((url, service)) => keystone_conf(root, url, service),
            None => api_conf(root, auth),
        };
        std::fs::write(root.join("etc/glance-api.conf"), conf)?;
        if auth == Auth::Noauth && keystone.is_none() {
            std::fs::write(
                root.join("etc/policy.yaml"),
                "\"context_is_admin\": \"@\"\n",
            )?;
        }
        std::fs::write(root.join("etc/glance-api-paste.ini"), PASTE_INI)?;
        std::fs::write(root.join("vmc_glance_shim.py"), SQLITE_SHIM)?;
        let conf = root.join("etc/glance-api.conf");
        let sync = Command::new(venv.join("bin/glance-manage"))
            .arg("--config-file")
            .arg(&conf)
            .arg("db_sync")
            .current_dir(root)
            .stdin(Stdio::null())
            .output()?;
        if !sync.status.success() {
            return Err(io::Error::other(format!(
                "glance-manage db_sync failed ({}): {}",
                sync.status,
                tail(&String::from_utf8_lossy(&sync.stderr))
            )));
        }
        let mut last_error = None;
        // A port found free can be taken before gunicorn binds it: try a few.
        for _ in 0..3 {
            let port = free_port()?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let child = gunicorn(
                venv,
                root,
                addr,
                "vmc_glance_shim:application",
                ("OS_GLANCE_CONFIG_DIR", root.join("etc")),
            )?;
            let mut child = child;
            match wait_answer(&mut child, addr, "/versions", root) {
                Ok(()) => return Ok(Glance { child, dir, addr }),
                Err(error) => {
                    last_error = Some(error);
                    stop(&mut child);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("glance did not start")))
    }

    /// The API's base URL, `http://127.0.0.1:PORT` (the image API is under `/v2`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The file store's directory (one file per image id).
    pub fn images_dir(&self) -> PathBuf {
        self.dir.path().join("images")
    }

    /// gunicorn's and Glance's log so far.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

impl Drop for Glance {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Waits until the server at `addr` answers `GET path`, failing when gunicorn exits or time
/// runs out.
pub(crate) fn wait_answer(
    child: &mut Child,
    addr: SocketAddr,
    path: &str,
    root: &Path,
) -> io::Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "gunicorn exited ({status}) before {path} answered: {}",
                tail(&read_log(root))
            )));
        }
        if answers(addr, path) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{path} did not answer within {START_LIMIT:?}: {}",
                tail(&read_log(root))
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `venv`'s gunicorn serving `app` (a module in `root` or installed) on `addr`, one
/// worker of 8 threads, its log in `root/gunicorn.log`, with one environment variable set
/// (where the service's configuration is).
pub(crate) fn gunicorn(
    venv: &Path,
    root: &Path,
    addr: SocketAddr,
    app: &str,
    (key, value): (&str, PathBuf),
) -> io::Result<Child> {
    let log = std::fs::File::create(root.join("gunicorn.log"))?;
    Command::new(venv.join("bin/gunicorn"))
        .args(["--bind", &addr.to_string(), "--chdir"])
        .arg(root)
        .args([
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
        ])
        .args(["--timeout", "600", "--no-control-socket", "--pid"])
        .arg(root.join("gunicorn.pid"))
        .arg(app)
        .env(key, value)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// Stops gunicorn: SIGTERM (it stops its worker), then SIGKILL after 10 s.
pub(crate) fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn read_log(root: &Path) -> String {
    std::fs::read_to_string(root.join("gunicorn.log")).unwrap_or_default()
}

/// How a test Glance knows who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// From the identity headers Keystone's middleware would set ([`identity_headers`];
    /// without `X-Identity-Status: Confirmed` a request gets 401).
    Trusted,
    /// Everyone is an admin (`unauthenticated-context`, with a policy making every context
    /// admin): for clients that cannot send those headers, such as the `openstack` CLI with
    /// `--os-auth-type none`.
    Noauth,
}

/// `glance-api.conf` for a Glance rooted at `root`.
fn api_conf(root: &Path, auth: Auth) -> String {
    let r = root.display();
    let (flavor, policy) = match auth {
        Auth::Trusted => ("trusted", String::new()),
        Auth::Noauth => (
            "noauth",
            format!("[oslo_policy]\npolicy_file = {r}/etc/policy.yaml\n"),
        ),
    };
    conf_of(root, flavor, &policy)
}

/// `glance-api.conf` for a Glance rooted at `root` behind the Keystone at `url` (`…/v3`):
/// the `keystone` flavor, and `[keystone_authtoken]` with the service account (no memcached:
/// keystonemiddleware caches tokens in the process).
fn keystone_conf(root: &Path, url: &str, service: &Account) -> String {
    let authtoken = format!(
        "[keystone_authtoken]\nwww_authenticate_uri = {url}\nauth_url = {url}\n\
         auth_type = password\nusername = {}\npassword = {}\nproject_name = {}\n\
         user_domain_name = Default\nproject_domain_name = Default\ninterface = public\n",
        service.user, service.password, service.project
    );
    conf_of(root, "keystone", &authtoken)
}

/// `glance-api.conf` for a Glance rooted at `root` with paste flavor `flavor` and the
/// sections `extra`.
fn conf_of(root: &Path, flavor: &str, extra: &str) -> String {
    let r = root.display();
    let mut conf = String::new();
    let _ = write!(
        conf,
        "[DEFAULT]\nenabled_backends = fs:file\n\
         [paste_deploy]\nflavor = {flavor}\n{extra}\
         [database]\nconnection = sqlite:///{r}/glance.sqlite\n\
         [glance_store]\ndefault_backend = fs\n\
         [fs]\nfilesystem_store_datadir = {r}/images\n\
         [os_glance_staging_store]\nfilesystem_store_datadir = {r}/staging\n\
         [os_glance_tasks_store]\nfilesystem_store_datadir = {r}/tasks\n\
         [oslo_concurrency]\nlock_path = {r}/locks\n"
    );
    conf
}

/// Glance's WSGI application with SQLite transactions that take the write lock when they
/// begin (`BEGIN IMMEDIATE`, where oslo.db emits a deferred `BEGIN`), and wait up to 60 s
/// for it. With deferred transactions, two threads that both read and then write deadlock
/// on the lock upgrade, and SQLite answers the loser `database is locked` at once, without
/// waiting: Glance then fails the upload with a 500 and leaves the image `saving` (seen
/// with two concurrent uploads on a loaded machine). The server databases sites run Glance
/// on (MySQL, PostgreSQL) have no such upgrade; SQLite is Glance's test-only database. The
/// marker `in_transaction` is oslo.db's own: its listener then emits nothing.
const SQLITE_SHIM: &str = "\
import sqlalchemy
from sqlalchemy.engine import Engine


@sqlalchemy.event.listens_for(Engine, 'connect')
def _vmc_busy_timeout(dbapi_con, con_record):
    if type(dbapi_con).__module__.startswith('sqlite3'):
        dbapi_con.execute('PRAGMA busy_timeout = 60000')


@sqlalchemy.event.listens_for(Engine, 'begin')
def _vmc_begin_immediate(conn):
    if conn.dialect.name == 'sqlite' and 'in_transaction' not in conn.info:
        conn.execute(sqlalchemy.text('BEGIN IMMEDIATE'))
        conn.info['in_transaction'] = True


from glance.wsgi.api import application  # noqa: E402
";

/// The `trusted` pipeline: Keystone's without `authtoken` (the context middleware reads the
/// identity headers); the `noauth` one makes everyone the same unauthenticated admin; the
/// `keystone` one is Glance's own: `authtoken` checks the token and sets those headers.
const PASTE_INI: &str = "\
[composite:glance-api-trusted]
paste.composite_factory = glance.api:root_app_factory
/: api

[composite:glance-api-noauth]
paste.composite_factory = glance.api:root_app_factory
/: api

[composite:glance-api-keystone]
paste.composite_factory = glance.api:root_app_factory
/: api

[composite:api]
paste.composite_factory = glance.api:pipeline_factory
trusted = versionnegotiation context rootapp
noauth = versionnegotiation unauthenticated-context rootapp
keystone = versionnegotiation authtoken context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true

[filter:unauthenticated-context]
paste.filter_factory = glance.api.middleware.context:UnauthenticatedContextMiddleware.factory
";

/// `GET url` with `headers` (a test looking at a service as an operator would): the status
/// and the answer as JSON (`null` when it is not JSON).
pub fn get_json(url: &str, headers: &[(&str, &str)]) -> io::Result<(u16, serde_json::Value)> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut request = agent.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.call().map_err(io::Error::other)?;
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .read_to_string()
        .map_err(io::Error::other)?;
    Ok((status, serde_json::from_str(&text).unwrap_or_default()))
}

/// A port nobody listened on a moment ago.
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Whether `GET path` gets an HTTP answer.
fn answers(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 ")
}

/// The last lines of a log, for an error message.
pub(crate) fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
