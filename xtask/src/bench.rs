//! `cargo xtask bench`: vmc side by side with the tools a site would use instead.
//!
//! It builds `vmc` in release mode, makes its data (pseudo-random images, a test PKI, signed
//! lists), serves them from nginx on 127.0.0.1 (a generated configuration in a temporary
//! directory, `sendfile on`, a `limit_rate` location for the throttled test; the testkit's
//! `TestServer` when nginx cannot be had) and times the real commands:
//!
//! 1. hashing: `vmc cache verify` of one large cached image against `sha512sum` and
//!    `openssl dgst -sha512` on the same file;
//! 2. download + verify: `vmc cache sync` into a cold cache against `curl -o FILE`,
//!    `curl -o FILE && sha512sum FILE` (the old two-pass pipeline) and
//!    `curl -o FILE && sync FILE` (durable, as vmc's file is);
//! 3. parallelism: 8 images from a server throttled per connection, `--jobs 8` against
//!    `--jobs 1`;
//! 4. scale: a signed list of 10,000 images: `subscribe add`, `subscribe update` (a new
//!    version, then the same one again) and `--json image list`;
//! 5. memory: the peak resident set of a large download (`/usr/bin/time`'s maximum RSS);
//! 6. oci: `vmc cache sync` of 4 artifacts from Debian's `docker-registry` on 127.0.0.1
//!    (pushed as `oras push` makes them) against `oras pull` of the same artifacts when `oras`
//!    is on the PATH, else against 4 parallel `skopeo copy` when skopeo is (the target), and
//!    4 parallel `curl -o FILE` of the layer blobs followed by `sha256sum` (the two-pass
//!    pull); skipped, and said so, without `docker-registry`.
//!
//! Contenders run in rounds, A B C A B C (first-touch page costs hit whichever runs first), every
//! output is removed and `sync` runs between two runs, and every run is checked (exit status,
//! sizes, digests, JSON), so a fast wrong answer fails the benchmark. The report (markdown) goes
//! to stdout, progress to stderr.

use std::cell::Cell;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use chrono::{TimeDelta, Utc};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use vmc_model::Image;
use vmc_testkit::pki::{CaDirOptions, TestPki};
use vmc_testkit::server::{Route, TestServer};

use crate::cmd;
use crate::feed::{self, ImageSpec, ListHeader};

/// Usage text of `cargo xtask bench`.
pub const USAGE: &str = "\
Benchmark vmc against sha512sum, openssl and curl on 127.0.0.1 (nginx), with the targets of
spec/performance.md; prints a markdown report on stdout (progress on stderr)

Usage: cargo xtask bench [OPTIONS]

Options:
      --size SIZE      size of the large image (hashing, download) [default: 2G; --quick: 256M]
      --mem-size SIZE  size of the download whose peak memory is measured
                       [default: the larger of --size and 2G; --quick: --size]
      --runs N         timed runs of every command [default: 5; --quick: 3]
      --scale N        images in the list of the scale test [default: 10000; --quick: 1000]
      --quick          small sizes and 3 runs (finishes in minutes)
      --only GROUPS    run only these benchmarks, comma-separated:
                       hash,download,parallel,scale,memory,oci,nodes
      --oci-size SIZE  size of each of the 4 artifacts of the oci benchmark
                       [default: 500M; --quick: 32M]
      --test-server    serve with vmc-testkit's TestServer instead of nginx
      --keep           keep the data directory (its path is printed)
  -h, --help           print this help

SIZE is a number of bytes with an optional K, M or G suffix (binary: 1G = 1024^3).";

/// One MiB.
const MIB: u64 = 1 << 20;
/// One GiB.
const GIB: u64 = 1 << 30;
/// A measured command may run this long before it is killed and the benchmark fails.
const RUN_LIMIT: Duration = Duration::from_secs(900);
/// A setup command may run this long.
const SETUP_LIMIT: Duration = Duration::from_secs(900);
/// GNU time, for the peak resident set of every measured command.
const GNU_TIME: &str = "/usr/bin/time";
/// Untimed rounds before the timed ones (first-touch costs land there).
const WARMUP_ROUNDS: usize = 1;
/// Images of the parallel test (the number).
const PARALLEL_IMAGES: usize = 8;
/// The benchmark groups, in the order they run.
const GROUPS: [&str; 7] = [
    "hash", "download", "parallel", "scale", "memory", "oci", "nodes",
];
/// Images of the nodes benchmark (the number).
const NODE_IMAGES: usize = 12;
/// Artifacts of the oci benchmark (the number).
const OCI_ARTIFACTS: usize = 4;
/// Identifier of the large image.
const BIG_ID: &str = "bench-big";
/// Identifier of the image of the memory test (when it is not the large image).
const MEM_ID: &str = "bench-mem";

/// The options of one run.
#[derive(Debug, Clone)]
struct Options {
    /// Size of the large image.
    size: u64,
    /// Size of the download whose peak memory is measured.
    mem_size: u64,
    /// Timed runs per command.
    runs: usize,
    /// Images in the scale test's list.
    scale: usize,
    /// `--quick`.
    quick: bool,
    /// The groups to run.
    only: Vec<&'static str>,
    /// Serve with the testkit's server.
    test_server: bool,
    /// Keep the data directory.
    keep: bool,
    /// Size of one image of the parallel test.
    parallel_size: u64,
    /// Per-connection rate of the throttled location, bytes per second.
    parallel_rate: u64,
    /// Size of one artifact of the oci benchmark.
    oci_size: u64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut size = None;
        let mut mem_size = None;
        let mut oci_size = None;
        let mut runs = None;
        let mut scale = None;
        let mut quick = false;
        let mut only: Vec<&'static str> = GROUPS.to_vec();
        let mut test_server = false;
        let mut keep = false;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || -> Result<String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => it
                        .next()
                        .cloned()
                        .with_context(|| format!("`{name}` needs a value")),
                }
            };
            match name {
                "--size" => size = Some(parse_size(&value()?)?),
                "--mem-size" => mem_size = Some(parse_size(&value()?)?),
                "--oci-size" => oci_size = Some(parse_size(&value()?)?),
                "--runs" => runs = Some(parse_count(name, &value()?)?),
                "--scale" => scale = Some(parse_count(name, &value()?)?),
                "--only" => {
                    let text = value()?;
                    only = Vec::new();
                    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                        let Some(group) = GROUPS.iter().find(|g| **g == word) else {
                            bail!(
                                "unknown benchmark `{word}` in --only (known: {})",
                                GROUPS.join(",")
                            );
                        };
                        only.push(group);
                    }
                    ensure!(!only.is_empty(), "--only names no benchmark");
                }
                "--quick" => quick = true,
                "--test-server" => test_server = true,
                "--keep" => keep = true,
                _ => bail!(
                    "unknown option `{arg}` for `cargo xtask bench` (see `cargo xtask bench --help`)"
                ),
            }
        }
        let size = size.unwrap_or(if quick { 256 * MIB } else { 2 * GIB });
        ensure!(size >= MIB, "--size must be at least 1M");
        let mem_size = mem_size.unwrap_or(if quick { size } else { size.max(2 * GIB) });
        ensure!(mem_size >= MIB, "--mem-size must be at least 1M");
        // nginx sends the first second's worth at once (its limit is `rate × (elapsed + 1)`), so
        // one image takes `size / rate - 1` seconds: 1 s in --quick, 3 s otherwise.
        let (parallel_size, parallel_rate) = if quick {
            (MIB, MIB / 2)
        } else {
            (4 * MIB, MIB)
        };
        Ok(Options {
            size,
            mem_size,
            runs: runs.unwrap_or(if quick { 3 } else { 5 }),
            scale: scale.unwrap_or(if quick { 1_000 } else { 10_000 }),
            quick,
            only,
            test_server,
            keep,
            parallel_size,
            parallel_rate,
            oci_size: oci_size.unwrap_or(if quick { 32 * MIB } else { 500 * MIB }),
        })
    }

    fn runs_group(&self, group: &str) -> bool {
        self.only.contains(&group)
    }
}

/// Parses `256M`, `1G`, `2GiB`, `1048576` (binary multiples).
pub(crate) fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let factor: u64 = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => MIB,
        'G' => GIB,
        'T' => 1 << 40,
        _ => bail!("cannot read the size `{text}` (e.g. 256M, 1G, 2GiB)"),
    };
    let number: u64 = digits
        .trim()
        .parse()
        .with_context(|| format!("cannot read the size `{text}` (e.g. 256M, 1G, 2GiB)"))?;
    number
        .checked_mul(factor)
        .with_context(|| format!("the size `{text}` is too large"))
}

/// Parses a positive count.
fn parse_count(name: &str, text: &str) -> Result<usize> {
    let n: usize = text
        .trim()
        .parse()
        .with_context(|| format!("`{name}` takes a positive number, not `{text}`"))?;
    ensure!(n > 0, "`{name}` takes a positive number");
    Ok(n)
}

/// Prints a progress line on stderr.
fn progress(text: &str) {
    eprintln!("bench: {text}");
}

/// Renders a size: `2 GiB`, `256 MiB`, `1.5 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB / 4) {
        format!("{} GiB", trim_float(bytes as f64 / GIB as f64))
    } else if bytes >= MIB {
        format!("{} MiB", trim_float(bytes as f64 / MIB as f64))
    } else {
        format!("{bytes} B")
    }
}

/// `2.0` → `2`, `1.25` → `1.25`.
fn trim_float(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Where a program is: `PATH`, then the sbin directories (nginx lives in `/usr/sbin`).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A stdio handle writing to our stderr (so that tool output never mixes with the report).
fn to_stderr() -> Stdio {
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::inherit(), Stdio::from)
}

/// The programs the benchmark runs.
struct Tools {
    /// `curl`.
    curl: PathBuf,
    /// `sha512sum`.
    sha512sum: PathBuf,
    /// `openssl`.
    openssl: PathBuf,
    /// `sync` (coreutils).
    sync: PathBuf,
    /// `nginx`, when it can be had.
    nginx: Option<PathBuf>,
}

impl Tools {
    /// Finds the tools; installs the missing ones with apt-get when running as root, else says
    /// which command would.
    fn find(want_nginx: bool) -> Result<Tools> {
        let wanted: Vec<(&str, &str)> = [
            ("curl", "curl"),
            ("sha512sum", "coreutils"),
            ("openssl", "openssl"),
            ("sync", "coreutils"),
        ]
        .into_iter()
        .chain(want_nginx.then_some(("nginx", "nginx")))
        .collect();
        let gnu_time = Path::new(GNU_TIME).is_file();
        let mut packages: Vec<&str> = wanted
            .iter()
            .filter(|(program, _)| find_program(program).is_none())
            .map(|(_, package)| *package)
            .collect();
        if !gnu_time {
            packages.push("time");
        }
        packages.dedup();
        if !packages.is_empty() {
            install(&packages);
        }
        let need = |name: &str, package: &str| {
            find_program(name).with_context(|| {
                format!("`{name}` is missing: install it with `apt-get install -y {package}`")
            })
        };
        ensure!(
            Path::new(GNU_TIME).is_file(),
            "{GNU_TIME} is missing: install it with `apt-get install -y time`"
        );
        Ok(Tools {
            curl: need("curl", "curl")?,
            sha512sum: need("sha512sum", "coreutils")?,
            openssl: need("openssl", "openssl")?,
            sync: need("sync", "coreutils")?,
            nginx: if want_nginx {
                find_program("nginx")
            } else {
                None
            },
        })
    }
}

/// Installs Debian packages with apt-get when running as root; else prints the command.
fn install(packages: &[&str]) {
    let line = format!("apt-get install -y {}", packages.join(" "));
    let root = nix::unistd::geteuid().is_root();
    let Some(apt) = find_program("apt-get").filter(|_| root) else {
        progress(&format!(
            "missing packages: {}; install them with `sudo {line}`",
            packages.join(" ")
        ));
        return;
    };
    let attempt = |update: bool| -> bool {
        if update {
            let mut command = Command::new(&apt);
            command.args(["update", "-q"]);
            let _ = command.stdout(to_stderr()).status();
        }
        let mut command = Command::new(&apt);
        command
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(to_stderr());
        progress(&format!("$ {}", cmd::display(&command)));
        command.status().is_ok_and(|s| s.success())
    };
    if !attempt(false) && !attempt(true) {
        progress(&format!("`{line}` failed"));
    }
}

/// A static HTTP server on 127.0.0.1 publishing `<www>/files` at `/files`.
enum Server {
    /// nginx, a foreground child process.
    Nginx(Nginx),
    /// The testkit's server (the fallback).
    Test(TestServer),
}

impl Server {
    /// `http://127.0.0.1:PORT`.
    fn base_url(&self) -> String {
        match self {
            Server::Nginx(n) => format!("http://127.0.0.1:{}", n.port),
            Server::Test(t) => t.base_url().trim_end_matches('/').to_owned(),
        }
    }

    /// The URL of `path` (starting with `/`).
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Makes the files under `/files/throttled/` slow on the fallback server (nginx has its
    /// `limit_rate` location already).
    fn throttle(&self, www: &Path, paths: &[String], rate: u64) -> Result<()> {
        if let Server::Test(server) = self {
            for path in paths {
                let file = www.join(path.trim_start_matches('/'));
                let bytes =
                    fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                server.add(path, Route::new(bytes).throttle(rate));
            }
        }
        Ok(())
    }
}

/// nginx running in the foreground with a generated configuration; stopped when dropped.
struct Nginx {
    /// The master process.
    child: Child,
    /// The port it listens on.
    port: u16,
    /// `nginx -v`.
    version: String,
}

impl Nginx {
    /// Starts nginx serving `www` (with `/files/throttled/` limited to `rate` bytes per
    /// second per connection) and waits until it answers.
    fn start(nginx: &Path, dir: &Path, www: &Path, rate: u64) -> Result<Nginx> {
        for sub in ["logs", "tmp"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let version = Command::new(nginx)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_default();
        let token = format!("vmc-bench-{}", std::process::id());
        fs::write(www.join("files/probe.txt"), &token).context("cannot write the probe file")?;
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let conf = dir.join("nginx.conf");
            fs::write(&conf, nginx_conf(dir, www, port, rate))
                .with_context(|| format!("cannot write {}", conf.display()))?;
            let stderr = File::create(dir.join("logs/stderr.log"))
                .context("cannot create nginx's stderr log")?;
            let mut command = Command::new(nginx);
            command
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            progress(&format!("$ {}", cmd::display(&command)));
            let child = command
                .spawn()
                .with_context(|| format!("cannot start {}", nginx.display()))?;
            let mut server = Nginx {
                child,
                port,
                version: version.clone(),
            };
            match server.wait_ready(&token) {
                Ok(()) => return Ok(server),
                Err(e) => {
                    let log = fs::read_to_string(dir.join("logs/stderr.log")).unwrap_or_default();
                    let errors = fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default();
                    last_error = format!("{e:#}: {}{}", log.trim(), errors.trim());
                    drop(server);
                }
            }
        }
        bail!("nginx did not start: {last_error}")
    }

    /// Waits until nginx serves the probe file.
    fn wait_ready(&mut self, token: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nginx exited ({status})");
            }
            if let Ok(body) = http_get(self.port, "/files/probe.txt")
                && body.contains(token)
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "nginx did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // Fast shutdown: the master stops its workers and exits.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx configuration: one worker, `sendfile on`, no access log, everything under `dir`.
fn nginx_conf(dir: &Path, www: &Path, port: u16, rate: u64) -> String {
    let d = dir.display();
    format!(
        "# Generated by `cargo xtask bench`.
worker_processes 1;
error_log {d}/logs/error.log warn;
pid {d}/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    default_type application/octet-stream;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location /files/throttled/ {{
            limit_rate {rate};
        }}
    }}
}}
",
        www = www.display()
    )
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (for the readiness probe); returns the whole response.
fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// One timed run: wall-clock seconds and the peak resident set.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Wall-clock seconds from spawn to exit.
    secs: f64,
    /// Maximum resident set size, KiB (GNU time's `%M`).
    rss_kib: Option<u64>,
    /// User plus system CPU seconds (GNU time's `%U + %S`).
    cpu_secs: Option<f64>,
}

/// A measured command's output.
struct Measured {
    /// Time and memory.
    sample: Sample,
    /// Its stdout.
    stdout: String,
}

/// An untimed step of a contender.
type Step<'a> = Box<dyn Fn() -> Result<()> + 'a>;

/// The check of a contender's outcome, given its stdout.
type Check<'a> = Box<dyn Fn(&str) -> Result<()> + 'a>;

/// One contender of a benchmark: untimed preparation, the timed command, untimed checks and
/// clean-up.
struct Contender<'a> {
    /// The command line shown in the report.
    label: String,
    /// Runs before the command (untimed): restores the starting state.
    prepare: Step<'a>,
    /// The command to time.
    command: Box<dyn Fn() -> Command + 'a>,
    /// Checks the outcome (untimed), given the command's stdout.
    check: Check<'a>,
    /// Removes the outputs (untimed).
    cleanup: Step<'a>,
}

/// A result row of the report.
struct Row {
    /// The benchmark.
    group: String,
    /// The command.
    label: String,
    /// Bytes moved or hashed per run (for MB/s).
    bytes: Option<u64>,
    /// The timed runs.
    samples: Vec<Sample>,
}

impl Row {
    fn sorted_secs(&self) -> Vec<f64> {
        let mut secs: Vec<f64> = self.samples.iter().map(|s| s.secs).collect();
        secs.sort_by(f64::total_cmp);
        secs
    }

    fn min(&self) -> f64 {
        self.sorted_secs().first().copied().unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        self.sorted_secs().last().copied().unwrap_or(f64::NAN)
    }

    fn median(&self) -> f64 {
        median(&self.sorted_secs())
    }

    /// The median CPU time (user + system), when GNU time reported it.
    fn median_cpu(&self) -> Option<f64> {
        let mut cpu: Vec<f64> = self.samples.iter().filter_map(|s| s.cpu_secs).collect();
        cpu.sort_by(f64::total_cmp);
        (!cpu.is_empty()).then(|| median(&cpu))
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        self.samples.iter().filter_map(|s| s.rss_kib).max()
    }
}

/// Reads GNU time's `%M %U %S` line (the last line: the command's own stderr goes elsewhere,
/// but GNU time may add a "Command exited" line first): peak RSS in KiB and CPU seconds.
fn parse_gnu_time(text: &str) -> (Option<u64>, Option<f64>) {
    let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return (None, None);
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let rss = words.first().and_then(|w| w.parse().ok());
    let user: Option<f64> = words.get(1).and_then(|w| w.parse().ok());
    let system: Option<f64> = words.get(2).and_then(|w| w.parse().ok());
    (rss, user.zip(system).map(|(u, s)| u + s))
}

/// The median of sorted values (the mean of the middle two for an even count).
pub(crate) fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// One target of the issue and how it fared.
struct Verdict {
    /// What is compared.
    what: String,
    /// The measured value.
    measured: String,
    /// The target.
    goal: String,
    /// Whether it was met.
    met: bool,
    /// A remark for the reader.
    note: String,
}

/// The state of a benchmark run.
struct Bench {
    /// Options.
    opts: Options,
    /// The release `vmc`.
    bin: PathBuf,
    /// The tools.
    tools: Tools,
    /// The data directory.
    root: PathBuf,
    /// nginx's document root (files are under `<www>/files`).
    www: PathBuf,
    /// The CA directory.
    ca_dir: PathBuf,
    /// The PKI that signs the lists.
    pki: TestPki,
    /// The server.
    server: Server,
    /// Logs of every command (stderr, stdout, RSS).
    logs: PathBuf,
    /// Commands measured so far (names the log files).
    counter: Cell<usize>,
    /// Result rows.
    rows: Vec<Row>,
    /// Targets.
    verdicts: Vec<Verdict>,
    /// Notes for the report.
    notes: Vec<String>,
}

/// Runs `cargo xtask bench` with the arguments after `bench`.
pub fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let started = Instant::now();
    let tools = Tools::find(!opts.test_server)?;

    progress("building vmc (release)");
    let build_started = Instant::now();
    let mut build = cmd::cargo_command(&[
        "build",
        "--release",
        "-p",
        "vmc-cli",
        "--features",
        crate::dist::FEATURES,
    ]);
    progress(&format!("$ {}", cmd::display(&build)));
    cmd::run(build.stdout(to_stderr())).context("cannot build vmc in release mode")?;
    let build_secs = build_started.elapsed().as_secs_f64();
    let bin = feed::vmc_binary("release");
    ensure!(
        bin.is_file(),
        "{} is missing after the build",
        bin.display()
    );

    let dir = tempfile::Builder::new()
        .prefix("vmc-bench-")
        .tempdir()
        .context("cannot create the benchmark's temporary directory")?;
    // nginx's workers run as `nobody` when started by root: let them read the files.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .context("cannot open up the data directory")?;
    progress(&format!("data directory: {}", dir.path().display()));
    let outcome = Bench::set_up(opts.clone(), bin, tools, dir.path()).and_then(|mut bench| {
        bench.run_all()?;
        let report = bench.report(build_secs, started.elapsed().as_secs_f64());
        Ok((report, bench.verdicts.iter().all(|v| v.met)))
    });
    if opts.keep {
        let path = dir.keep();
        progress(&format!("kept the data directory {}", path.display()));
    } else {
        let path = dir.path().display().to_string();
        dir.close()
            .with_context(|| format!("cannot delete the data directory {path}"))?;
    }
    let (report, all_met) = outcome?;
    print!("{report}");
    progress(&format!(
        "done in {:.0} s (release build {build_secs:.0} s); {}",
        started.elapsed().as_secs_f64(),
        if all_met {
            "every target met"
        } else {
            "some targets missed (see the report)"
        }
    ));
    Ok(())
}

impl Bench {
    /// The PKI, the CA directory and the server (data is made by each benchmark).
    fn set_up(opts: Options, bin: PathBuf, tools: Tools, root: &Path) -> Result<Bench> {
        let root = root.to_path_buf();
        let www = root.join("www");
        let ca_dir = root.join("certificates");
        let logs = root.join("logs");
        for d in [
            www.join("files/throttled"),
            www.join("files/lists"),
            ca_dir.clone(),
            logs.clone(),
            root.join("homes"),
            root.join("out"),
            root.join("stage"),
        ] {
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        for d in [&www, &www.join("files"), &www.join("files/throttled")] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot open up {}", d.display()))?;
        }
        // The real clock: lists are made valid now, and VMC_NOW stays unset.
        let pki = TestPki::generate(Utc::now());
        pki.write_ca_dir(&ca_dir, CaDirOptions::default());
        let mut notes = Vec::new();
        let server = match &tools.nginx {
            Some(nginx) => match Nginx::start(nginx, &root.join("nginx"), &www, opts.parallel_rate)
            {
                Ok(n) => Server::Nginx(n),
                Err(e) => {
                    progress(&format!("{e:#}; falling back to vmc-testkit's TestServer"));
                    notes.push(format!(
                        "nginx could not be started ({e:#}); the testkit's TestServer served \
                         instead, which reads each file into memory per request: download \
                         numbers are not comparable with nginx's."
                    ));
                    Server::Test(test_server(&www))
                }
            },
            None => {
                if !opts.test_server {
                    notes.push(
                        "nginx is not installed: the testkit's TestServer served instead, which \
                         reads each file into memory per request: download numbers are not \
                         comparable with nginx's."
                            .into(),
                    );
                }
                Server::Test(test_server(&www))
            }
        };
        progress(&format!("serving on {}", server.base_url()));
        Ok(Bench {
            opts,
            bin,
            tools,
            www,
            ca_dir,
            pki,
            server,
            logs,
            counter: Cell::new(0),
            rows: Vec::new(),
            verdicts: Vec::new(),
            notes,
            root,
        })
    }

    /// Runs the selected benchmarks in order.
    fn run_all(&mut self) -> Result<()> {
        let mut big: Option<(String, String)> = None;
        for group in GROUPS {
            if !self.opts.runs_group(group) {
                continue;
            }
            let needs_big = matches!(group, "hash" | "download")
                || (group == "memory" && self.opts.mem_size == self.opts.size);
            if needs_big && big.is_none() {
                big = Some(self.make_big_feed(BIG_ID, "big", self.opts.size, 1)?);
            }
            match group {
                "hash" => self.bench_hash(big.as_ref())?,
                "download" => self.bench_download(big.as_ref())?,
                "parallel" => self.bench_parallel()?,
                "scale" => self.bench_scale()?,
                "oci" => self.bench_oci()?,
                "nodes" => self.bench_nodes()?,
                _ => self.bench_memory(big.as_ref())?,
            }
        }
        Ok(())
    }

    // ---- data -------------------------------------------------------------------------------

    /// Writes one large image and a signed list with just it; returns the list's URL and the
    /// image's digest.
    fn make_big_feed(
        &self,
        id: &str,
        name: &str,
        size: u64,
        seed: u64,
    ) -> Result<(String, String)> {
        let file = self.www.join(format!("files/{name}.img"));
        progress(&format!(
            "writing {} of pseudo-random bytes to {}",
            human_size(size),
            file.display()
        ));
        let sha512 = feed::write_pseudo_random_file(&file, seed, size)?;
        let image = ImageSpec {
            id,
            title: "Benchmark image",
            url: self.server.url(&format!("/files/{name}.img")),
            size,
            sha512: sha512.clone(),
            os_name: "Bench",
            os_version: "1",
        }
        .to_image()?;
        let url = self.publish_list(name, "1.0", vec![image], 0)?;
        Ok((url, sha512))
    }

    /// Signs a list of `images` and publishes it at `/files/lists/<name>.list`; returns its URL.
    fn publish_list(
        &self,
        name: &str,
        version: &str,
        images: Vec<Image>,
        minutes_later: i64,
    ) -> Result<String> {
        let bytes = self.signed_list(name, version, images, minutes_later)?;
        let path = format!("/files/lists/{name}.list");
        self.put_file(&path, &bytes)?;
        Ok(self.server.url(&path))
    }

    /// The signed list `bench-<name>`.
    fn signed_list(
        &self,
        name: &str,
        version: &str,
        images: Vec<Image>,
        minutes_later: i64,
    ) -> Result<Vec<u8>> {
        let header = ListHeader {
            identifier: &format!("bench-{name}"),
            title: "vmc benchmark list",
            description: "Images published by `cargo xtask bench`",
            vo: "bench.vo.example.org",
            source: self.server.base_url(),
            uri: self.server.url(&format!("/files/lists/{name}.list")),
            version,
            created: Utc::now() - TimeDelta::minutes(30) + TimeDelta::minutes(minutes_later),
            creator: "vmc bench",
            email: "bench@example.org",
        };
        let list = header.list(&self.pki.endorser, images)?;
        Ok(self.pki.endorser.sign_smime(&list.to_json_bytes()))
    }

    /// Publishes `bytes` at `path` (under `/files/`) atomically.
    fn put_file(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let file = self.www.join(path.trim_start_matches('/'));
        let tmp = file.with_extension("tmp");
        fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))
    }

    // ---- commands ---------------------------------------------------------------------------

    /// `vmc ARGS` with `home` as `VMC_HOME`, the benchmark's CA directory and nothing else
    /// from our environment.
    fn vmc(&self, home: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.args(args);
        for name in feed::CLEARED_ENV {
            command.env_remove(name);
        }
        command
            .env("VMC_HOME", home)
            .env("VMC_CA_DIR", &self.ca_dir)
            .env("NO_COLOR", "1")
            .current_dir(&self.root);
        command
    }

    /// `sh -c SCRIPT`.
    fn shell(&self, script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]).current_dir(&self.root);
        command
    }

    /// Runs an untimed setup command; it must exit 0. Returns its stdout.
    fn setup(&self, command: Command) -> Result<String> {
        let shown = cmd::display(&command);
        let mut command = command;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (code, stdout, stderr) = feed::run_bounded(command, &shown, SETUP_LIMIT)?;
        ensure!(
            code == Some(0),
            "`{shown}` failed (exit {code:?}): {}",
            stderr.trim()
        );
        Ok(stdout)
    }

    /// A home subscribed to the list at `url` with every image selected (the template the
    /// cold-cache runs start from).
    fn subscribed_home(&self, name: &str, url: &str) -> Result<PathBuf> {
        let home = self.root.join("homes").join(format!("{name}-template"));
        fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
        self.setup(self.vmc(
            &home,
            &[
                "subscribe",
                "add",
                url,
                "--auto-endorse",
                "--new-images",
                "subscribe",
            ],
        ))?;
        Ok(home)
    }

    /// Runs `command` under GNU time: wall clock from spawn to exit, peak RSS; it must exit 0.
    fn measure(&self, label: &str, inner: &Command) -> Result<Measured> {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let rss_file = self.logs.join(format!("{n:04}.rss"));
        let out_file = self.logs.join(format!("{n:04}.out"));
        let err_file = self.logs.join(format!("{n:04}.err"));
        let mut command = Command::new(GNU_TIME);
        command
            .args(["-f", "%M %U %S", "-o"])
            .arg(&rss_file)
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = inner.get_current_dir() {
            command.current_dir(dir);
        }
        command
            .stdin(Stdio::null())
            .stdout(File::create(&out_file).context("cannot create a log file")?)
            .stderr(File::create(&err_file).context("cannot create a log file")?)
            .process_group(0);
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start `{label}`"))?;
        let pid = child.id();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let secs = start.elapsed().as_secs_f64();
            let _ = tx.send(());
            (status, secs)
        });
        if rx.recv_timeout(RUN_LIMIT).is_err() {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = waiter.join();
            bail!(
                "`{label}` did not finish within {} s and was killed",
                RUN_LIMIT.as_secs()
            );
        }
        let (status, secs) = waiter
            .join()
            .map_err(|_| anyhow::anyhow!("the waiting thread panicked"))?;
        let status = status.with_context(|| format!("cannot wait for `{label}`"))?;
        let stderr = fs::read_to_string(&err_file).unwrap_or_default();
        ensure!(
            status.success(),
            "`{label}` failed ({status}); its stderr: {}",
            stderr.trim()
        );
        let (rss_kib, cpu_secs) =
            parse_gnu_time(&fs::read_to_string(&rss_file).unwrap_or_default());
        let stdout = fs::read_to_string(&out_file).unwrap_or_default();
        Ok(Measured {
            sample: Sample {
                secs,
                rss_kib,
                cpu_secs,
            },
            stdout,
        })
    }

    /// Runs the contenders in rounds (A B C, A B C, …): `warmup` rounds untimed, then
    /// `runs` timed ones; with `sync` after every run's clean-up. Adds a row per contender.
    fn rounds(
        &self,
        group: &str,
        bytes: Option<u64>,
        contenders: &[Contender<'_>],
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<Row>> {
        let mut samples: Vec<Vec<Sample>> = contenders.iter().map(|_| Vec::new()).collect();
        for round in 0..warmup + runs {
            let timed = round >= warmup;
            for (contender, kept) in contenders.iter().zip(&mut samples) {
                (contender.prepare)()
                    .with_context(|| format!("cannot prepare `{}`", contender.label))?;
                self.flush()?;
                let measured = self.measure(&contender.label, &(contender.command)())?;
                (contender.check)(&measured.stdout)
                    .with_context(|| format!("`{}` did not do its job", contender.label))?;
                (contender.cleanup)()
                    .with_context(|| format!("cannot clean up after `{}`", contender.label))?;
                progress(&format!(
                    "{group}: {} {:.3} s{}",
                    contender.label,
                    measured.sample.secs,
                    if timed { "" } else { " (warm-up, not counted)" }
                ));
                if timed {
                    kept.push(measured.sample);
                }
            }
        }
        Ok(contenders
            .iter()
            .zip(samples)
            .map(|(c, samples)| Row {
                group: group.to_owned(),
                label: c.label.clone(),
                bytes,
                samples,
            })
            .collect())
    }

    /// `sync`: no dirty pages of one run slow the next.
    fn flush(&self) -> Result<()> {
        let status = Command::new(&self.tools.sync)
            .status()
            .context("cannot run sync")?;
        ensure!(status.success(), "sync failed");
        Ok(())
    }

    /// A fresh copy of `template` at `home` (a cold cache).
    fn restore(template: &Path, home: &Path) -> Result<()> {
        remove_dir(home)?;
        copy_dir(template, home)
    }

    // ---- 1. hashing -------------------------------------------------------------------------

    fn bench_hash(&mut self, big: Option<&(String, String)>) -> Result<()> {
        let (url, sha512) = big.context("no large image")?;
        let size = self.opts.size;
        progress(&format!("1. hashing a cached {} image", human_size(size)));
        let template = self.subscribed_home("hash", url)?;
        let home = self.root.join("homes/hash");
        Self::restore(&template, &home)?;
        self.setup(self.vmc(&home, &["cache", "sync"]))?;
        let file = home.join("cache").join(BIG_ID);
        ensure!(
            file.metadata().map(|m| m.len()).ok() == Some(size),
            "`vmc cache sync` did not cache {}",
            file.display()
        );
        let f = file.display().to_string();
        let still_cached = || -> Result<()> {
            ensure!(
                file.is_file(),
                "the cached file is gone (vmc found it corrupt?)"
            );
            Ok(())
        };
        let none = || Ok(());
        let contenders = [
            Contender {
                label: "vmc cache verify".into(),
                prepare: Box::new(none),
                command: Box::new(|| self.vmc(&home, &["cache", "verify"])),
                check: Box::new(|_| still_cached()),
                cleanup: Box::new(none),
            },
            Contender {
                label: "sha512sum FILE".into(),
                prepare: Box::new(none),
                command: Box::new(|| {
                    let mut c = Command::new(&self.tools.sha512sum);
                    c.arg(&file);
                    c
                }),
                check: Box::new(|out| digest_in(out, sha512)),
                cleanup: Box::new(none),
            },
            Contender {
                label: "openssl dgst -sha512 FILE".into(),
                prepare: Box::new(none),
                command: Box::new(|| {
                    let mut c = Command::new(&self.tools.openssl);
                    c.args(["dgst", "-sha512"]).arg(&f);
                    c
                }),
                check: Box::new(|out| digest_in(out, sha512)),
                cleanup: Box::new(none),
            },
        ];
        let rows = self.rounds(
            &format!("1. hashing, {}", human_size(size)),
            Some(size),
            &contenders,
            WARMUP_ROUNDS,
            self.opts.runs,
        )?;
        drop(contenders);
        let vmc = rows[0].median();
        let best = rows[1].median().min(rows[2].median());
        let best_name = if rows[1].median() <= rows[2].median() {
            "sha512sum"
        } else {
            "openssl dgst"
        };
        let ratio = vmc / best;
        self.verdicts.push(Verdict {
            what: format!(
                "hashing: `vmc cache verify` / faster of sha512sum, openssl ({best_name})"
            ),
            measured: format!("{ratio:.2}×"),
            goal: "≤ 1.00×".into(),
            met: ratio <= 1.0,
            note: String::new(),
        });
        self.rows.extend(rows);
        remove_dir(&home)?;
        Ok(())
    }

    // ---- 2. download + verify ---------------------------------------------------------------

    fn bench_download(&mut self, big: Option<&(String, String)>) -> Result<()> {
        let (url, sha512) = big.context("no large image")?;
        let size = self.opts.size;
        progress(&format!(
            "2. download + verify of a {} image",
            human_size(size)
        ));
        let template = self.subscribed_home("download", url)?;
        let home = self.root.join("homes/download");
        let out = self.root.join("out/big.img");
        let image_url = self.server.url("/files/big.img");
        let o = feed::shell_word(&out.display().to_string());
        let curl = feed::shell_word(&self.tools.curl.display().to_string());
        let sha512sum = feed::shell_word(&self.tools.sha512sum.display().to_string());
        let sync = feed::shell_word(&self.tools.sync.display().to_string());
        let u = feed::shell_word(&image_url);
        let cached = home.join("cache").join(BIG_ID);
        let has_size = |path: &Path| -> Result<()> {
            let len = path.metadata().map(|m| m.len()).ok();
            ensure!(
                len == Some(size),
                "{} has {len:?} bytes, expected {size}",
                path.display()
            );
            Ok(())
        };
        let remove_out = || remove_file(&out);
        let contenders = [
            Contender {
                label: "vmc cache sync (cold cache)".into(),
                prepare: Box::new(|| Self::restore(&template, &home)),
                command: Box::new(|| self.vmc(&home, &["cache", "sync"])),
                check: Box::new(|_| has_size(&cached)),
                cleanup: Box::new(|| remove_dir(&home)),
            },
            Contender {
                label: "curl -o FILE URL".into(),
                prepare: Box::new(remove_out),
                command: Box::new(|| {
                    let mut c = Command::new(&self.tools.curl);
                    c.args(["-fsS", "-o"]).arg(&out).arg(&image_url);
                    c
                }),
                check: Box::new(|_| has_size(&out)),
                cleanup: Box::new(remove_out),
            },
            Contender {
                label: "curl -o FILE URL && sha512sum FILE".into(),
                prepare: Box::new(remove_out),
                command: Box::new(|| {
                    self.shell(&format!("{curl} -fsS -o {o} {u} && {sha512sum} {o}"))
                }),
                check: Box::new(|stdout| {
                    has_size(&out)?;
                    digest_in(stdout, sha512)
                }),
                cleanup: Box::new(remove_out),
            },
            Contender {
                label: "curl -o FILE URL && sync FILE".into(),
                prepare: Box::new(remove_out),
                command: Box::new(|| self.shell(&format!("{curl} -fsS -o {o} {u} && {sync} {o}"))),
                check: Box::new(|_| has_size(&out)),
                cleanup: Box::new(remove_out),
            },
        ];
        let rows = self.rounds(
            &format!("2. download + verify, {}", human_size(size)),
            Some(size),
            &contenders,
            WARMUP_ROUNDS,
            self.opts.runs,
        )?;
        drop(contenders);
        let vmc = rows[0].median();
        let curl = rows[1].median();
        let two_pass = rows[2].median();
        self.verdicts.push(Verdict {
            what: "download: `vmc cache sync` / `curl -o FILE`".into(),
            measured: format!("{:.2}×", vmc / curl),
            goal: "≤ 1.10×".into(),
            met: vmc / curl <= 1.10,
            note: format!(
                "vmc also verifies and fsyncs; `curl && sync FILE` (durable like vmc) took {:.2}× curl",
                rows[3].median() / curl
            ),
        });
        self.verdicts.push(Verdict {
            what: "download: `vmc cache sync` / `curl -o FILE && sha512sum FILE`".into(),
            measured: format!("{:.2}×", vmc / two_pass),
            goal: "≤ 0.70×".into(),
            met: vmc / two_pass <= 0.70,
            note: String::new(),
        });
        self.rows.extend(rows);
        Ok(())
    }

    // ---- 3. parallelism ---------------------------------------------------------------------

    fn bench_parallel(&mut self) -> Result<()> {
        let (size, rate) = (self.opts.parallel_size, self.opts.parallel_rate);
        progress(&format!(
            "3. {PARALLEL_IMAGES} images of {} at {}/s per connection",
            human_size(size),
            human_size(rate)
        ));
        let mut images = Vec::new();
        let mut paths = Vec::new();
        let mut ids = Vec::new();
        for i in 0..PARALLEL_IMAGES {
            let id = format!("bench-par-{i}");
            let path = format!("/files/throttled/{id}.img");
            let file = self.www.join(path.trim_start_matches('/'));
            let sha512 = feed::write_pseudo_random_file(&file, 100 + i as u64, size)?;
            images.push(
                ImageSpec {
                    id: &id,
                    title: "Benchmark image (throttled)",
                    url: self.server.url(&path),
                    size,
                    sha512,
                    os_name: "Bench",
                    os_version: "1",
                }
                .to_image()?,
            );
            paths.push(path);
            ids.push(id);
        }
        self.server.throttle(&self.www, &paths, rate)?;
        let url = self.publish_list("parallel", "1.0", images, 0)?;
        let template = self.subscribed_home("parallel", &url)?;
        let home = self.root.join("homes/parallel");
        let all_cached = || -> Result<()> {
            for id in &ids {
                let len = home.join("cache").join(id).metadata().map(|m| m.len()).ok();
                ensure!(len == Some(size), "{id} is not in the cache");
            }
            Ok(())
        };
        let (this, home, template, all_cached) = (&*self, &home, &template, &all_cached);
        let contender = move |jobs: &'static str| Contender {
            label: format!("vmc cache sync --jobs {jobs}"),
            prepare: Box::new(move || Self::restore(template, home)),
            command: Box::new(move || this.vmc(home, &["cache", "sync", "--jobs", jobs])),
            check: Box::new(move |_| all_cached()),
            cleanup: Box::new(move || remove_dir(home)),
        };
        let contenders = [contender("8"), contender("1")];
        let rows = self.rounds(
            &format!(
                "3. parallelism, {PARALLEL_IMAGES} × {} at {}/s each",
                human_size(size),
                human_size(rate)
            ),
            Some(size * PARALLEL_IMAGES as u64),
            &contenders,
            0,
            self.opts.runs,
        )?;
        drop(contenders);
        let speedup = rows[1].median() / rows[0].median();
        // nginx's limit is `rate × (elapsed + 1)`: the first second's worth goes at once.
        let burst = if matches!(self.server, Server::Nginx(_)) {
            1.0
        } else {
            0.0
        };
        let ideal = (size as f64 / rate as f64 - burst).max(0.0);
        self.verdicts.push(Verdict {
            what: "parallelism: `--jobs 1` / `--jobs 8`, throttled server".into(),
            measured: format!("{speedup:.2}×"),
            goal: "≥ 6×".into(),
            met: speedup >= 6.0,
            note: format!(
                "at the server's rate one image takes ~{ideal:.1} s: {:.1} s for 8 in a row",
                ideal * PARALLEL_IMAGES as f64
            ),
        });
        self.rows.extend(rows);
        Ok(())
    }

    // ---- 7. nodes ----------------------------------------------------------------------------

    /// A site's `cache sync` of [`NODE_IMAGES`] throttled images on one PostgreSQL database:
    /// one node, three nodes on one cache directory, and three nodes with their own caches
    /// (copying from each other), with the bytes the upstream server sent checked every run.
    /// Needs a PostgreSQL server: `VMC_BENCH_POSTGRES_URL` (else `VMC_TEST_POSTGRES_URL`).
    fn bench_nodes(&mut self) -> Result<()> {
        let Some(admin) = ["VMC_BENCH_POSTGRES_URL", "VMC_TEST_POSTGRES_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok())
        else {
            progress("7. nodes: skipped, no PostgreSQL (set VMC_BENCH_POSTGRES_URL)");
            return Ok(());
        };
        let psql = find_program("psql").context("the nodes benchmark needs psql")?;
        let (size, rate) = (self.opts.parallel_size, self.opts.parallel_rate);
        progress(&format!(
            "7. {NODE_IMAGES} images of {} at {}/s per connection, 1 vs 3 nodes",
            human_size(size),
            human_size(rate)
        ));
        // A server of our own: it counts the bytes each image sends and serves node caches.
        let server = TestServer::start();
        let mut images = Vec::new();
        let mut paths = Vec::new();
        for i in 0..NODE_IMAGES {
            let id = format!("bench-node-{i}");
            let bytes = feed::pseudo_random_bytes(300 + i as u64, usize::try_from(size)?);
            let sha512 = feed::sha512_hex(&bytes);
            let path = format!("/img/{id}");
            server.add(&path, Route::new(bytes).throttle(rate));
            images.push(
                ImageSpec {
                    id: &id,
                    title: "Benchmark image (nodes)",
                    url: server.url(&path),
                    size,
                    sha512,
                    os_name: "Bench",
                    os_version: "1",
                }
                .to_image()?,
            );
            paths.push(path);
        }
        let list = self.signed_list("nodes", "1.0", images, 0)?;
        server.add("/list", Route::new(list));
        let list_url = server.url("/list");
        let homes = self.root.join("homes/nodes");
        for n in 1..=3 {
            server.serve_dir(&format!("/node-{n}"), homes.join(format!("n{n}/cache")));
        }
        let schema = format!("vmc_bench_nodes_{}", std::process::id());
        let sep = if admin.contains('?') { '&' } else { '?' };
        let db = format!("{admin}{sep}options=-csearch_path%3D{schema}");
        let sql = |statement: String| -> Result<()> {
            let mut command = Command::new(&psql);
            command.args(["-q", "-v", "ON_ERROR_STOP=1", &admin, "-c", &statement]);
            self.setup(command).map(drop)
        };
        // One node's command: its home, the site's database, its name; `per_node` gives it a
        // cache of its own and the URL the others copy from.
        let node = |n: usize, per_node: bool, args: &[&str]| -> Command {
            let home = homes.join(format!("n{n}"));
            let mut command = self.vmc(&home, args);
            command
                .env("VMC_DATABASE", &db)
                .env("VMC_NODE", format!("n{n}"));
            if per_node {
                command
                    .env("VMC_CACHE_MODE", "per-node")
                    .env("VMC_NODE_URL", server.url(&format!("/node-{n}/")));
            } else {
                command
                    .env("VMC_CACHE_DIR", homes.join("cache"))
                    .env("VMC_PARTIAL_DIR", homes.join("partial"))
                    .env("VMC_EXPIRED_DIR", homes.join("expired"));
            }
            command
        };
        let prepare = |per_node: bool| -> Result<()> {
            remove_dir(&homes)?;
            sql(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))?;
            self.setup(node(
                1,
                per_node,
                &[
                    "subscribe",
                    "add",
                    &list_url,
                    "--auto-endorse",
                    "--new-images",
                    "subscribe",
                ],
            ))?;
            server.reset_stats();
            Ok(())
        };
        let sent = || -> u64 { paths.iter().map(|p| server.bytes_sent(p)).sum() };
        let expected = size * NODE_IMAGES as u64;
        let check = |caches: &[PathBuf]| -> Result<()> {
            for cache in caches {
                let held = fs::read_dir(cache)
                    .with_context(|| format!("cannot read {}", cache.display()))?
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("bench-node-"))
                    .count();
                ensure!(
                    held == NODE_IMAGES,
                    "{} holds {held} images",
                    cache.display()
                );
            }
            let bytes = sent();
            ensure!(
                bytes == expected,
                "the upstream server sent {bytes} bytes for {expected} bytes of images"
            );
            Ok(())
        };
        // Three nodes at once: a shell starts them and waits for each.
        let three = |per_node: bool| -> Command {
            let mut script = String::new();
            for n in 1..=3 {
                let c = node(n, per_node, &["cache", "sync", "--jobs", "4"]);
                let mut line = String::new();
                for (k, v) in c.get_envs() {
                    let k = k.to_string_lossy();
                    match v {
                        Some(v) => line
                            .push_str(&format!("{k}={} ", feed::shell_word(&v.to_string_lossy()))),
                        None => line = format!("-u {k} {line}"),
                    }
                }
                let bin = feed::shell_word(&self.bin.display().to_string());
                script.push_str(&format!(
                    "env {line}{bin} cache sync --jobs 4 >/dev/null & p{n}=$!\n"
                ));
            }
            script.push_str("wait $p1 && wait $p2 && wait $p3\n");
            self.shell(&script)
        };
        let shared_cache = [homes.join("cache")];
        let own_caches: Vec<PathBuf> = (1..=3).map(|n| homes.join(format!("n{n}/cache"))).collect();
        let (prepare, check, node, three) = (&prepare, &check, &node, &three);
        let (shared_cache, own_caches) = (&shared_cache[..], &own_caches[..]);
        let contenders = [
            Contender {
                label: "1 node: vmc cache sync --jobs 4".into(),
                prepare: Box::new(move || prepare(false)),
                command: Box::new(move || node(1, false, &["cache", "sync", "--jobs", "4"])),
                check: Box::new(move |_| check(shared_cache)),
                cleanup: Box::new(|| Ok(())),
            },
            Contender {
                label: "3 nodes, one cache directory (--jobs 4 each)".into(),
                prepare: Box::new(move || prepare(false)),
                command: Box::new(move || three(false)),
                check: Box::new(move |_| check(shared_cache)),
                cleanup: Box::new(|| Ok(())),
            },
            Contender {
                label: "3 nodes, per-node caches (--jobs 4 each)".into(),
                prepare: Box::new(move || prepare(true)),
                command: Box::new(move || three(true)),
                check: Box::new(move |_| check(own_caches)),
                cleanup: Box::new(|| Ok(())),
            },
        ];
        let rows = self.rounds(
            &format!(
                "7. nodes, {NODE_IMAGES} × {} at {}/s each, one PostgreSQL",
                human_size(size),
                human_size(rate)
            ),
            Some(expected),
            &contenders,
            0,
            self.opts.runs,
        )?;
        drop(contenders);
        sql(format!("DROP SCHEMA IF EXISTS {schema} CASCADE;"))?;
        remove_dir(&homes)?;
        for (row, what) in [(1, "one cache directory"), (2, "per-node caches")] {
            let ratio = rows[row].median() / rows[0].median();
            self.verdicts.push(Verdict {
                what: format!("nodes: 3 nodes ({what}) / 1 node, wall time"),
                measured: format!("{ratio:.2}×"),
                goal: "≤ 0.4×".into(),
                met: ratio <= 0.4,
                note: format!(
                    "upstream bytes checked every run: {} = 1.0× the images",
                    human_size(expected)
                ),
            });
        }
        self.rows.extend(rows);
        Ok(())
    }

    // ---- 6. oci ------------------------------------------------------------------------------

    /// `vmc cache sync` of [`OCI_ARTIFACTS`] artifacts from a local `docker-registry` against
    /// `oras pull` (or, without `oras`, parallel `curl -o` + `sha256sum`, and `skopeo copy`
    /// when it is installed) of the same layers.
    fn bench_oci(&mut self) -> Result<()> {
        let size = self.opts.oci_size;
        progress(&format!(
            "6. {OCI_ARTIFACTS} OCI artifacts of {} from docker-registry",
            human_size(size)
        ));
        let Some(registry) = vmc_testkit::registry::Registry::start() else {
            self.notes.push(
                "oci: docker-registry is not installed (apt-get install docker-registry): not measured."
                    .into(),
            );
            return Ok(());
        };
        let mut blobs = Vec::new();
        for i in 0..OCI_ARTIFACTS {
            let data = feed::pseudo_random_bytes(200 + i as u64, usize::try_from(size)?);
            let repository = format!("bench.vo/disk-{i}");
            let pushed = registry.push_disk_image(&vmc_testkit::registry::DiskImage {
                repository: &repository,
                tag: "1",
                data: &data,
                file_name: "disk.qcow2",
                layer_media_type: "application/x-qemu-disk",
                layer_annotations: &[],
                manifest_annotations: &[],
            });
            blobs.push((repository, pushed.layer_digest));
        }
        let template = self.root.join("homes/oci-template");
        fs::create_dir_all(&template)?;
        let url = format!("oci://{}/bench.vo", registry.host());
        let mut add = self.vmc(
            &template,
            &["subscribe", "add", &url, "--new-images", "subscribe"],
        );
        add.env("VMC_OCI_PLAIN_HTTP", "1");
        self.setup(add)?;
        let home = self.root.join("homes/oci");
        let out = self.root.join("out/oci");
        let ids: Vec<String> = (0..OCI_ARTIFACTS)
            .map(|i| format!("bench.vo.disk-{i}-1"))
            .collect();
        let oras = find_program("oras");
        let base = registry.base_url();
        let script = match &oras {
            Some(oras) => {
                blobs
                    .iter()
                    .enumerate()
                    .map(|(i, (repo, _))| {
                        format!(
                            "{} pull --plain-http -o {}/{i} {}/{repo}:1 >/dev/null &",
                            oras.display(),
                            out.display(),
                            registry.host()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
                    + " wait"
            }
            None => {
                let fetch = blobs
                    .iter()
                    .enumerate()
                    .map(|(i, (repo, digest))| {
                        format!(
                            "{} -sf -o {}/{i}.qcow2 {base}/v2/{repo}/blobs/{digest} &",
                            self.tools.curl.display(),
                            out.display()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                format!("{fetch} wait && cd {} && sha256sum *.qcow2", out.display())
            }
        };
        // skopeo (Debian's `skopeo`), when installed: a real OCI client whose copy verifies
        // every blob's digest while it streams, as `oras pull` does.
        let skopeo = find_program("skopeo");
        let skopeo_script = skopeo.as_ref().map(|skopeo| {
            blobs
                .iter()
                .enumerate()
                .map(|(i, (repo, _))| {
                    format!(
                        "{} copy --quiet --src-tls-verify=false docker://{}/{repo}:1 dir:{}/{i} &",
                        skopeo.display(),
                        registry.host(),
                        out.display()
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
                + " wait"
        });
        let with_oras = oras.is_some();
        let label = if with_oras {
            format!("{OCI_ARTIFACTS} × oras pull (parallel)")
        } else {
            format!("{OCI_ARTIFACTS} × curl -o FILE (parallel), then sha256sum")
        };
        let digests: Vec<String> = blobs.iter().map(|(_, d)| d.clone()).collect();
        let (this, home, template, out, ids, digests, script) =
            (&*self, &home, &template, &out, &ids, &digests, &script);
        let mut contenders = vec![
            Contender {
                label: format!("vmc cache sync --jobs {OCI_ARTIFACTS}"),
                prepare: Box::new(move || Self::restore(template, home)),
                command: Box::new(move || {
                    let mut c = this.vmc(home, &["cache", "sync", "--jobs", "4"]);
                    c.env("VMC_OCI_PLAIN_HTTP", "1");
                    c
                }),
                check: Box::new(move |_| {
                    for id in ids {
                        let len = home.join("cache").join(id).metadata().map(|m| m.len()).ok();
                        ensure!(len == Some(size), "{id} is not in the cache");
                    }
                    Ok(())
                }),
                cleanup: Box::new(move || remove_dir(home)),
            },
            Contender {
                label,
                prepare: Box::new(move || {
                    remove_dir(out)?;
                    Ok(fs::create_dir_all(out)?)
                }),
                command: Box::new(move || this.shell(script)),
                check: Box::new(move |stdout| {
                    if !with_oras {
                        for digest in digests {
                            digest_in(stdout, digest.trim_start_matches("sha256:"))?;
                        }
                    }
                    Ok(())
                }),
                cleanup: Box::new(move || remove_dir(out)),
            },
        ];
        if let Some(skopeo_script) = &skopeo_script {
            contenders.push(Contender {
                label: format!("{OCI_ARTIFACTS} × skopeo copy (parallel)"),
                prepare: Box::new(move || {
                    remove_dir(out)?;
                    Ok(fs::create_dir_all(out)?)
                }),
                command: Box::new(move || this.shell(skopeo_script)),
                check: Box::new(move |_| {
                    for (i, digest) in digests.iter().enumerate() {
                        let layer = out
                            .join(i.to_string())
                            .join(digest.trim_start_matches("sha256:"));
                        let len = layer.metadata().map(|m| m.len()).ok();
                        ensure!(len == Some(size), "skopeo did not copy {}", layer.display());
                    }
                    Ok(())
                }),
                cleanup: Box::new(move || remove_dir(out)),
            });
        }
        let rows = self.rounds(
            &format!(
                "6. oci, {OCI_ARTIFACTS} × {} from docker-registry",
                human_size(size)
            ),
            Some(size * OCI_ARTIFACTS as u64),
            &contenders,
            WARMUP_ROUNDS,
            self.opts.runs,
        )?;
        drop(contenders);
        // Against oras when it is there (the baseline), else the other real OCI
        // client, skopeo, else curl + sha256sum.
        let baseline = if with_oras || skopeo_script.is_none() {
            1
        } else {
            2
        };
        for (i, row) in rows.iter().enumerate().skip(1) {
            let ratio = rows[0].median() / row.median();
            if i != baseline {
                self.notes.push(format!(
                    "oci: vmc sync / {}: {ratio:.2}× (shown, not the target)",
                    row.label
                ));
                continue;
            }
            self.verdicts.push(Verdict {
                what: format!("oci: vmc sync / {}", row.label),
                measured: format!("{ratio:.2}×"),
                goal: "≤ 1.0×".into(),
                met: ratio <= 1.0,
                note: if with_oras {
                    "vmc verifies sha256 and size in the one pass".into()
                } else if i == 2 {
                    "oras cannot be installed here (its Go modules are out of reach): skopeo \
                     copy, which also verifies each blob's digest as it streams, stands in"
                        .into()
                } else {
                    "neither oras nor skopeo is installed: measured against curl + sha256sum".into()
                },
            });
        }
        self.rows.extend(rows);
        drop(registry);
        Ok(())
    }

    // ---- 4. scale ---------------------------------------------------------------------------

    fn bench_scale(&mut self) -> Result<()> {
        let n = self.opts.scale;
        progress(&format!("4. a signed list of {n} images"));
        let made = Instant::now();
        let mut v1 = Vec::with_capacity(n);
        let mut v2 = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("bench-scale-{i:06}");
            let mut spec = ImageSpec {
                id: &id,
                title: "Benchmark appliance",
                url: self.server.url(&format!("/files/scale/{id}.img")),
                size: 1 << 30,
                sha512: feed::sha512_hex(id.as_bytes()),
                os_name: "Bench",
                os_version: "1",
            };
            v1.push(spec.to_image()?);
            // Version 2.0 replaces one image in a hundred.
            if i % 100 == 0 {
                spec.sha512 = feed::sha512_hex(format!("{id} v2").as_bytes());
            }
            v2.push(spec.to_image()?);
        }
        let stage = self.root.join("stage");
        let list_v1 = self.signed_list("scale", "1.0", v1, 0)?;
        let list_v2 = self.signed_list("scale", "2.0", v2, 10)?;
        progress(&format!(
            "signed lists of {} and {} bytes in {:.1} s",
            list_v1.len(),
            list_v2.len(),
            made.elapsed().as_secs_f64()
        ));
        fs::write(stage.join("scale-v1.list"), &list_v1).context("cannot stage the list")?;
        let list_size = list_v1.len();
        let path = "/files/lists/scale.list";
        let url = self.server.url(path);
        let home = self.root.join("homes/scale");
        let status_is = |stdout: &str, want: &str| -> Result<()> {
            let v: Value = serde_json::from_str(stdout).context("the output is not JSON")?;
            let status = &v["subscriptions"][0]["status"];
            ensure!(status == want, "status {status}, expected {want}: {stdout}");
            Ok(())
        };
        let none = || Ok(());
        let contenders = [
            Contender {
                label: format!("vmc subscribe add URL --auto-endorse ({n} images)"),
                prepare: Box::new(|| {
                    remove_dir(&home)?;
                    fs::create_dir_all(&home)?;
                    self.put_file(path, &list_v1)
                }),
                command: Box::new(|| {
                    self.vmc(
                        &home,
                        &["--json", "subscribe", "add", &url, "--auto-endorse"],
                    )
                }),
                check: Box::new(|out| status_is(out, "added")),
                cleanup: Box::new(none),
            },
            Contender {
                label: "vmc subscribe update (a new version)".into(),
                prepare: Box::new(|| self.put_file(path, &list_v2)),
                command: Box::new(|| self.vmc(&home, &["--json", "subscribe", "update"])),
                check: Box::new(|out| status_is(out, "updated")),
                cleanup: Box::new(none),
            },
            Contender {
                label: "vmc subscribe update (unchanged)".into(),
                prepare: Box::new(none),
                command: Box::new(|| self.vmc(&home, &["--json", "subscribe", "update"])),
                check: Box::new(|out| status_is(out, "unchanged")),
                cleanup: Box::new(none),
            },
            Contender {
                label: "vmc --json image list".into(),
                prepare: Box::new(none),
                command: Box::new(|| self.vmc(&home, &["--json", "image", "list"])),
                check: Box::new(|out| {
                    let v: Value = serde_json::from_str(out).context("the output is not JSON")?;
                    let len = v.as_array().map_or(0, Vec::len);
                    ensure!(len == n, "{len} images listed, expected {n}");
                    Ok(())
                }),
                cleanup: Box::new(none),
            },
        ];
        let rows = self.rounds(
            &format!("4. scale, {n} images"),
            None,
            &contenders,
            WARMUP_ROUNDS,
            self.opts.runs,
        )?;
        drop(contenders);
        remove_dir(&home)?;
        let at = if n == 10_000 {
            String::new()
        } else {
            format!("measured at {n} images; the target is set for 10,000")
        };
        let update = rows[1].median();
        self.verdicts.push(Verdict {
            what: format!("scale: `vmc subscribe update`, a new version of {n} images"),
            measured: format!("{update:.3} s"),
            goal: "≤ 1 s".into(),
            met: update <= 1.0,
            note: format!("the signed list is {:.1} MB. {at}", list_size as f64 / 1e6),
        });
        let list = rows[3].median();
        self.verdicts.push(Verdict {
            what: format!("scale: `vmc --json image list`, {n} images"),
            measured: format!("{list:.3} s"),
            goal: "≤ 0.3 s".into(),
            met: list <= 0.3,
            note: at,
        });
        self.rows.extend(rows);
        Ok(())
    }

    // ---- 5. memory --------------------------------------------------------------------------

    fn bench_memory(&mut self, big: Option<&(String, String)>) -> Result<()> {
        let size = self.opts.mem_size;
        progress(&format!(
            "5. peak memory of a {} download",
            human_size(size)
        ));
        let from_download = self
            .rows
            .iter()
            .find(|r| r.label.starts_with("vmc cache sync (cold") && r.bytes == Some(size))
            .and_then(Row::peak_rss_kib);
        let (peak, how) = if let Some(peak) = from_download {
            (peak, "the largest of the download runs above".to_owned())
        } else {
            let owned;
            let (url, id) = if size == self.opts.size {
                (&big.context("no large image")?.0, BIG_ID)
            } else {
                owned = self.make_big_feed(MEM_ID, "mem", size, 2)?;
                (&owned.0, MEM_ID)
            };
            let template = self.subscribed_home("memory", url)?;
            let home = self.root.join("homes/memory");
            let cached = home.join("cache").join(id);
            let contenders = [Contender {
                label: "vmc cache sync (cold cache)".into(),
                prepare: Box::new(|| Self::restore(&template, &home)),
                command: Box::new(|| self.vmc(&home, &["cache", "sync"])),
                check: Box::new(|_| {
                    let len = cached.metadata().map(|m| m.len()).ok();
                    ensure!(len == Some(size), "the image is not in the cache");
                    Ok(())
                }),
                cleanup: Box::new(|| remove_dir(&home)),
            }];
            let rows = self.rounds(
                &format!("5. memory, {}", human_size(size)),
                Some(size),
                &contenders,
                0,
                1,
            )?;
            drop(contenders);
            let peak = rows[0].peak_rss_kib().context("GNU time gave no RSS")?;
            self.rows.extend(rows);
            if size != self.opts.size {
                remove_file(&self.www.join("files/mem.img"))?;
            }
            (peak, "one run".to_owned())
        };
        let mib = peak as f64 / 1024.0;
        self.verdicts.push(Verdict {
            what: format!(
                "memory: peak RSS of `vmc cache sync` downloading {}",
                human_size(size)
            ),
            measured: format!("{mib:.1} MiB"),
            goal: "≤ 64 MiB".into(),
            met: mib <= 64.0,
            note: format!("GNU time's maximum resident set size, {how}"),
        });
        Ok(())
    }

    // ---- report -----------------------------------------------------------------------------

    /// The markdown report: machine, tools, commands, results and targets.
    fn report(&self, build_secs: f64, total_secs: f64) -> String {
        let mut r = String::new();
        let o = &self.opts;
        let _ = writeln!(
            r,
            "## vmc benchmarks ({})\n",
            Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(r, "Machine: {}\n", machine());
        let _ = writeln!(r, "Tools: {}\n", self.tool_versions());
        let server = match &self.server {
            Server::Nginx(n) => format!(
                "{} on 127.0.0.1 (1 worker, `sendfile on`, `limit_rate {}` on the throttled location)",
                n.version.trim_start_matches("nginx version: "),
                o.parallel_rate
            ),
            Server::Test(_) => "vmc-testkit's TestServer (fallback)".into(),
        };
        let _ = writeln!(r, "Server: {server}\n");
        let _ = writeln!(
            r,
            "Command: `cargo xtask bench{}` — {} timed runs per command after {} warm-up \
             round(s), contenders interleaved (A B C, A B C…), outputs removed and `sync` run \
             between runs; times are wall-clock seconds from spawn to exit; MB/s is 10^6 \
             bytes per second at the median; CPU s is the median user + system time and peak RSS \
             GNU time's maximum resident set over the runs. Release build: {build_secs:.0} s; the whole benchmark: {total_secs:.0} s.\n",
            self.shown_args(),
            o.runs,
            WARMUP_ROUNDS,
        );
        let _ = writeln!(
            r,
            "| benchmark | command | min s | median s | max s | MB/s | CPU s | peak RSS |"
        );
        let _ = writeln!(r, "|---|---|---:|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let rate = row
                .bytes
                .map(|b| format!("{:.0}", b as f64 / row.median() / 1e6))
                .unwrap_or_else(|| "–".into());
            let cpu = row
                .median_cpu()
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "–".into());
            let rss = row
                .peak_rss_kib()
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "–".into());
            let label = match row.label.split_once(" (") {
                Some((command, remark)) => format!("`{command}` ({remark}"),
                None => format!("`{}`", row.label),
            };
            let _ = writeln!(
                r,
                "| {} | {label} | {:.3} | {:.3} | {:.3} | {rate} | {cpu} | {rss} |",
                row.group,
                row.min(),
                row.median(),
                row.max()
            );
        }
        let _ = writeln!(r, "\n| target | measured | goal | verdict | note |");
        let _ = writeln!(r, "|---|---:|---:|---|---|");
        for v in &self.verdicts {
            let _ = writeln!(
                r,
                "| {} | {} | {} | {} | {} |",
                v.what,
                v.measured,
                v.goal,
                if v.met { "met" } else { "**missed**" },
                v.note.trim()
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(r);
            for note in &self.notes {
                let _ = writeln!(r, "- {note}");
            }
        }
        r
    }

    /// The options as typed (for the report).
    fn shown_args(&self) -> String {
        let o = &self.opts;
        let mut s = String::new();
        if o.quick {
            s.push_str(" --quick");
        }
        let _ = write!(
            s,
            " --size {} --mem-size {} --runs {} --scale {}",
            short_size(o.size),
            short_size(o.mem_size),
            o.runs,
            o.scale
        );
        if o.only.len() != GROUPS.len() {
            let _ = write!(s, " --only {}", o.only.join(","));
        }
        if o.test_server {
            s.push_str(" --test-server");
        }
        s
    }

    /// One line naming the versions of the tools.
    fn tool_versions(&self) -> String {
        let first_line = |program: &Path, args: &[&str]| -> String {
            Command::new(program)
                .args(args)
                .output()
                .map(|o| {
                    let text = if o.stdout.is_empty() {
                        o.stderr
                    } else {
                        o.stdout
                    };
                    String::from_utf8_lossy(&text)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default()
        };
        let vmc = first_line(&self.bin, &["--version"]);
        let curl = first_line(&self.tools.curl, &["--version"]);
        let curl = curl.split(" (").next().unwrap_or(&curl).to_owned();
        let openssl = first_line(&self.tools.openssl, &["version"]);
        let sha = first_line(&self.tools.sha512sum, &["--version"]);
        format!("{vmc} (release build); {curl}; {openssl}; {sha}")
    }
}

/// `2G`, `256M`, or bytes.
fn short_size(bytes: u64) -> String {
    if bytes.is_multiple_of(GIB) {
        format!("{}G", bytes / GIB)
    } else if bytes.is_multiple_of(MIB) {
        format!("{}M", bytes / MIB)
    } else {
        bytes.to_string()
    }
}

/// The machine: CPUs, CPU model and SHA/AVX flags, memory, kernel, file system of the data.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let model = field("model name");
    let flags = field("flags");
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    let features: Vec<&str> = ["avx2", "avx512f", "sha_ni", "sha512"]
        .into_iter()
        .filter(|f| has(f))
        .collect();
    let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}; {}), {:.1} GiB memory, Linux {}",
        if features.is_empty() {
            "no AVX2, AVX-512 or SHA extensions".to_owned()
        } else {
            features.join(", ")
        },
        mem_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// Checks that `output` contains `digest` (sha512sum and openssl print it in hex).
fn digest_in(output: &str, digest: &str) -> Result<()> {
    ensure!(
        output.to_ascii_lowercase().contains(digest),
        "the printed digest is not the image's: {}",
        output.trim()
    );
    Ok(())
}

/// Removes a file, a missing one being fine.
fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Removes a directory tree, a missing one being fine.
fn remove_dir(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Copies a directory tree of plain files (a vmc home: the database and empty directories).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The fallback server: the testkit's, publishing `<www>/files`.
fn test_server(www: &Path) -> TestServer {
    let server = TestServer::start();
    server.serve_dir("/files", www.join("files"));
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576").unwrap(), MIB);
        assert_eq!(parse_size("256M").unwrap(), 256 * MIB);
        assert_eq!(parse_size("1G").unwrap(), GIB);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * GIB);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert!(parse_size("1X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn quick_defaults_and_explicit_options() {
        let quick = Options::parse(&args(&["--quick"])).unwrap();
        assert_eq!(
            (quick.size, quick.mem_size, quick.runs, quick.scale),
            (256 * MIB, 256 * MIB, 3, 1_000)
        );
        let full = Options::parse(&args(&["--size=1G", "--runs", "7"])).unwrap();
        assert_eq!((full.size, full.mem_size, full.runs), (GIB, 2 * GIB, 7));
        assert_eq!(full.scale, 10_000);
        let only = Options::parse(&args(&["--only", "hash,scale"])).unwrap();
        assert!(only.runs_group("hash") && only.runs_group("scale"));
        assert!(!only.runs_group("download"));
        assert!(Options::parse(&args(&["--only", "nope"])).is_err());
        assert!(Options::parse(&args(&["--runs", "0"])).is_err());
        assert!(Options::parse(&args(&["--size"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn rows_give_min_median_max_and_peak_memory() {
        let sample = |secs, rss| Sample {
            secs,
            rss_kib: Some(rss),
            cpu_secs: Some(secs / 2.0),
        };
        let row = Row {
            group: "g".into(),
            label: "l".into(),
            bytes: None,
            samples: vec![sample(3.0, 10), sample(1.0, 30), sample(2.0, 20)],
        };
        assert_eq!((row.min(), row.median(), row.max()), (1.0, 2.0, 3.0));
        assert_eq!(row.peak_rss_kib(), Some(30));
        assert_eq!(row.median_cpu(), Some(1.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 8.0]), 3.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn gnu_time_output_is_read() {
        assert_eq!(
            parse_gnu_time("17920 0.50 0.25\n"),
            (Some(17920), Some(0.75))
        );
        assert_eq!(
            parse_gnu_time("Command exited with non-zero status 1\n100 0.00 0.01\n"),
            (Some(100), Some(0.01))
        );
        assert_eq!(parse_gnu_time(""), (None, None));
    }

    #[test]
    fn sizes_are_shown_readably() {
        assert_eq!(human_size(2 * GIB), "2 GiB");
        assert_eq!(human_size(256 * MIB), "256 MiB");
        assert_eq!(human_size(MIB + MIB / 2), "1.5 MiB");
        assert_eq!(short_size(GIB), "1G");
        assert_eq!(short_size(3 * MIB), "3M");
        assert_eq!(short_size(1000), "1000");
    }

    #[test]
    fn the_nginx_configuration_serves_the_root_and_throttles_one_location() {
        let conf = nginx_conf(Path::new("/d"), Path::new("/w"), 8080, 1024);
        assert!(conf.contains("listen 127.0.0.1:8080;"));
        assert!(conf.contains("root /w;"));
        assert!(conf.contains("sendfile on;"));
        assert!(conf.contains("location /files/throttled/ {\n            limit_rate 1024;"));
        assert!(conf.contains("pid /d/nginx.pid;"));
    }

    #[test]
    fn a_digest_must_be_in_the_output() {
        assert!(digest_in("ABCDEF  file\n", "abcdef").is_ok());
        assert!(digest_in("012345  file\n", "abcdef").is_err());
    }

    #[test]
    fn copy_dir_copies_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        fs::create_dir_all(from.join("sub/empty")).unwrap();
        fs::write(from.join("f"), b"1").unwrap();
        fs::write(from.join("sub/g"), b"2").unwrap();
        let to = dir.path().join("b");
        copy_dir(&from, &to).unwrap();
        assert_eq!(fs::read(to.join("f")).unwrap(), b"1");
        assert_eq!(fs::read(to.join("sub/g")).unwrap(), b"2");
        assert!(to.join("sub/empty").is_dir());
        remove_dir(&to).unwrap();
        remove_dir(&to).unwrap();
        assert!(!to.exists());
    }
}
