//! `cargo xtask bench-publish`: the time to publish one large image into a real Glance on
//! 127.0.0.1 with `vmc publish sync`, against `openstack image create --file` uploading the
//! same cached file to the same Glance.
//!
//! The Glance comes from the virtualenv `VMC_TEST_GLANCE_VENV` names (as the tests'), served
//! with the `noauth` flavor so that the `openstack` CLI (`--os-auth-type none`) and vmc
//! (`--glance-url`) reach it alike. The image is cached first (untimed) through the real
//! `vmc subscribe add` and `vmc cache sync` from a signed list on a loopback server; each
//! timed vmc run publishes into a new target (a fresh publication), each timed CLI run creates
//! a new image; every image is deleted between runs so that the store holds one at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use chrono::Utc;
use vmc_testkit::glance::{Auth, Glance, VENV_ENV};
use vmc_testkit::pki::TestPki;
use vmc_testkit::server::TestServer;

use crate::cmd;
use crate::feed::{self, ImageSpec, ListHeader};

/// `cargo xtask bench-publish --help`.
pub const USAGE: &str = "\
Time `vmc publish sync` against `openstack image create --file` publishing the same image into
the same real Glance on 127.0.0.1; prints a markdown report on stdout (progress on stderr)

Usage: cargo xtask bench-publish [OPTIONS]

Options:
      --size SIZE        size of the image [default: 2G]
      --runs N           timed runs of each [default: 3]
      --openstack PATH   the openstack CLI [default: $VMC_BENCH_OPENSTACK, else openstack on PATH]
  -h, --help             print this help

Needs VMC_TEST_GLANCE_VENV (a virtualenv with glance==33.0.0 and gunicorn, as .ci/run makes)
and python-openstackclient; SIZE is bytes with an optional K, M or G suffix (binary).";

/// A timed command may run this long.
const LIMIT: Duration = Duration::from_secs(1800);

/// Runs `cargo xtask bench-publish`.
pub fn run(args: &[String]) -> Result<()> {
    let mut size = 2u64 << 30;
    let mut runs = 3usize;
    let mut openstack: Option<PathBuf> = std::env::var_os("VMC_BENCH_OPENSTACK").map(PathBuf::from);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("`{arg}` needs a value"))
        };
        match arg.as_str() {
            "--size" => size = crate::bench::parse_size(&value()?)?,
            "--runs" => {
                runs = value()?.parse().context("--runs needs a positive number")?;
                ensure!(runs > 0, "--runs needs a positive number");
            }
            "--openstack" => openstack = Some(PathBuf::from(value()?)),
            _ => bail!("unknown option `{arg}` (see `cargo xtask bench-publish --help`)"),
        }
    }
    let venv = std::env::var_os(VENV_ENV)
        .map(PathBuf::from)
        .with_context(|| format!("{VENV_ENV} must name the Glance virtualenv"))?;
    let openstack = openstack.unwrap_or_else(|| PathBuf::from("openstack"));

    progress("building vmc (release)");
    cmd::run(
        cmd::cargo_command(&[
            "build",
            "--release",
            "-p",
            "vmc-cli",
            "--features",
            crate::dist::FEATURES,
        ])
        .stdout(Stdio::null()),
    )
    .context("cannot build vmc in release mode")?;
    let vmc = feed::vmc_binary("release");

    let root = tempfile::Builder::new()
        .prefix("vmc-bench-publish-")
        .tempdir()?;
    let www = root.path().join("www");
    std::fs::create_dir_all(&www)?;
    let now = Utc::now();
    let pki = TestPki::generate(now);
    let ca_dir = root.path().join("ca");
    std::fs::create_dir_all(&ca_dir)?;
    pki.write_ca_dir(&ca_dir, vmc_testkit::pki::CaDirOptions::default());
    progress(&format!(
        "writing a {} pseudo-random image",
        crate::bench::human_size(size)
    ));
    let sha512 = feed::write_pseudo_random_file(&www.join("big.img"), 19, size)?;
    let server = TestServer::start();
    server.serve_dir("/files", &www);
    let image = ImageSpec {
        id: "bench-publish",
        title: "Benchmark image",
        url: server.url("/files/big.img"),
        size,
        sha512,
        os_name: "AlmaLinux",
        os_version: "9",
    }
    .to_image()?;
    let list = ListHeader {
        identifier: "bench-publish-list",
        title: "publish benchmark",
        description: "one large image",
        vo: "bench",
        source: server.base_url(),
        uri: server.url("/files/list.smime"),
        version: "1",
        created: now - chrono::TimeDelta::hours(1),
        creator: "bench",
        email: "bench@example.org",
    }
    .list(&pki.endorser, vec![image])?;
    std::fs::write(
        www.join("list.smime"),
        pki.endorser.sign_smime(&list.to_json_bytes()),
    )?;

    let home = root.path().join("home");
    let vmc_cmd = |args: &[&str]| {
        let mut c = Command::new(&vmc);
        for name in feed::CLEARED_ENV {
            c.env_remove(name);
        }
        c.env("VMC_HOME", &home)
            .env("VMC_CA_DIR", &ca_dir)
            .args(args)
            .stdin(Stdio::null());
        c
    };
    let setup = |args: &[&str]| -> Result<()> {
        let out = vmc_cmd(args).output()?;
        ensure!(
            out.status.success(),
            "vmc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    progress("caching the image with vmc (untimed)");
    let subject = pki.endorser.subject_one_line();
    let issuer = pki.endorser.issuer_one_line();
    setup(&[
        "endorser",
        "add",
        "--id",
        "e",
        "--subject",
        &subject,
        "--issuer",
        &issuer,
    ])?;
    setup(&[
        "subscribe",
        "add",
        &server.url("/files/list.smime"),
        "--endorser",
        "e",
        "--new-images",
        "subscribe",
    ])?;
    setup(&["image", "subscribe", "bench-publish"])?;
    setup(&["cache", "sync"])?;
    std::fs::remove_file(www.join("big.img"))?;
    let cached = home.join("cache/bench-publish");
    ensure!(cached.is_file(), "the image was not cached");

    progress("starting Glance");
    let glance = Glance::start_with(&venv, Auth::Noauth)?;
    let url = glance.url();
    let mut vmc_secs = Vec::new();
    let mut cli_secs = Vec::new();
    for run in 0..runs {
        let target = format!("run-{run}");
        let mut c = vmc_cmd(&[
            "-q",
            "publish",
            "sync",
            "--glance-url",
            &url,
            "--glance-project",
            vmc_testkit::glance::DEFAULT_PROJECT,
            "--target",
            &target,
        ]);
        vmc_secs.push(timed(&mut c, &format!("vmc publish sync (run {run})"))?);
        clean(glance.addr())?;
        let mut c = Command::new(&openstack);
        c.args([
            "--os-auth-type",
            "none",
            "--os-endpoint",
            &url,
            "--os-image-api-version",
            "2",
        ])
        .args([
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
        ])
        .arg("--file")
        .arg(&cached)
        .arg(format!("bench-cli-{run}"))
        .stdin(Stdio::null());
        cli_secs.push(timed(
            &mut c,
            &format!("openstack image create (run {run})"),
        )?);
        clean(glance.addr())?;
    }
    vmc_secs.sort_by(f64::total_cmp);
    cli_secs.sort_by(f64::total_cmp);
    let vmc_median = crate::bench::median(&vmc_secs);
    let cli_median = crate::bench::median(&cli_secs);
    let mb = size as f64 / 1e6;
    println!(
        "## Publishing a {} image into Glance 33 on 127.0.0.1\n",
        crate::bench::human_size(size)
    );
    println!("| command | runs | median s | MB/s |\n|---|---|---|---|");
    println!(
        "| `vmc publish sync --glance-url …` | {runs} | {vmc_median:.2} | {:.0} |",
        mb / vmc_median
    );
    println!(
        "| `openstack image create --file …` | {runs} | {cli_median:.2} | {:.0} |",
        mb / cli_median
    );
    println!(
        "\nvmc takes {:.2}× the CLI's time (vmc also runs qemu-img info, hashes while it \
         streams and checks Glance's os_hash_value; Glance computes the sha512 in both).",
        vmc_median / cli_median
    );
    Ok(())
}

/// Runs `command` to completion and returns its wall-clock seconds; fails when it fails.
fn timed(command: &mut Command, shown: &str) -> Result<f64> {
    progress(shown);
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)?;
    }
    let status = child.wait()?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(status.success(), "{shown} failed: {stderr}");
    ensure!(started.elapsed() < LIMIT, "{shown} took over {LIMIT:?}");
    Ok(secs)
}

/// Deletes every image of the (noauth) Glance at `addr`.
fn clean(addr: SocketAddr) -> Result<()> {
    for hidden in ["false", "true"] {
        let listing = http(
            addr,
            "GET",
            &format!("/v2/images?limit=1000&os_hidden={hidden}"),
        )?;
        let body = listing.split("\r\n\r\n").nth(1).unwrap_or_default();
        let value: serde_json::Value =
            serde_json::from_str(body).with_context(|| format!("image listing: {body}"))?;
        for image in value["images"].as_array().into_iter().flatten() {
            if let Some(id) = image["id"].as_str() {
                http(addr, "DELETE", &format!("/v2/images/{id}"))?;
            }
        }
    }
    Ok(())
}

/// One HTTP/1.0 request without a body; the whole answer.
fn http(addr: SocketAddr, method: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[allow(clippy::print_stderr, reason = "progress goes to stderr")]
fn progress(text: &str) {
    eprintln!("bench-publish: {text}");
}
