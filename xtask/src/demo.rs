//! `cargo xtask demo`: the offline demo, the README's first command.
//!
//! It builds `vmc`, makes a test PKI and a hashed CA directory (with CRLs), three small images
//! and a signed HEPiX image list in code, serves them on a loopback HTTP server
//! (`127.0.0.1`, a free port), and runs the real commands a site would run against them:
//! `endorser add`, `subscribe add`, `image list`, `image subscribe`, `cache sync` with the
//! example event handler `contrib/handlers/log-jsonl.sh`, `cache list`. Then it publishes a new
//! list version without one of the selected images and syncs again (the image expires as
//! `removed`), and shows a tampered list and a list signed by an untrusted CA refused while the
//! good version stays in force. When `VMC_TEST_GLANCE_VENV` names a Glance virtualenv (as
//! `.ci/run` makes), it starts a real Glance on 127.0.0.1 and publishes the cache into it with
//! `vmc publish sync` (dry run first, then once; a second run does nothing). Then it follows a
//! second source, an OCI registry: Debian's `docker-registry` on 127.0.0.1 with a disk image
//! pushed as `oras push` does for EGI, through `subscribe add oci://…` and `cache sync`
//! (skipped, and said so, when the registry is not installed).
//!
//! Every step checks what it expects (exit codes, the exact files in the cache, the expiry, the
//! events) and the demo fails naming the step when something is off. The server stops and the
//! throwaway home is deleted at the end (`--keep` keeps the home and prints its path).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use vmc_testkit::pki::{CaDirOptions, Leaf, TestPki};
use vmc_testkit::server::{Route, TestServer};

use crate::cmd;
use crate::feed::{self, ImageSpec, ListHeader};

/// Usage text of `cargo xtask demo`.
pub const USAGE: &str = "\
Run the offline demo: a test PKI, a signed image list and a loopback server made in code, and
the real vmc commands a site runs against them (subscribe, select, sync, expiry, a bad list)

Usage: cargo xtask demo [OPTIONS]

Options:
      --keep  keep the demo's home directory (its path is printed) instead of deleting it
  -h, --help  print this help";

/// One `vmc` command may run this long before it is killed and the demo fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The endorser id the demo registers.
const ENDORSER_ID: &str = "demo-endorser";
/// The list's `dc:identifier`.
const LIST_ID: &str = "vmc-demo-list";
/// Where the good list is published.
const LIST_PATH: &str = "/lists/demo.list";
/// Where the tampered copy is published for `subscribe check`.
const TAMPERED_PATH: &str = "/bad/tampered.list";
/// Where the list signed by an untrusted CA is published.
const ROGUE_PATH: &str = "/bad/rogue.list";
/// The example event handler, relative to the workspace root.
const HANDLER: &str = "contrib/handlers/log-jsonl.sh";

/// The demo images: identifier, title, `sl:osname`, `sl:osversion`, size in MiB.
const IMAGES: [(&str, &str, &str, &str, usize); 3] = [
    (
        "demo-alpine-3.20",
        "Alpine Linux 3.20 (demo)",
        "Alpine",
        "3.20",
        2,
    ),
    ("demo-debian-12", "Debian 12 (demo)", "Debian", "12", 4),
    ("demo-rocky-9", "Rocky Linux 9 (demo)", "Rocky", "9", 6),
];
/// Indexes into [`IMAGES`] of the images the site selects.
const SELECTED: [usize; 2] = [0, 1];
/// Index into [`IMAGES`] of the image that version 1.1 of the list drops.
const DROPPED: usize = 1;

/// Runs `cargo xtask demo` with the arguments after `demo`.
pub fn run(args: &[String]) -> Result<()> {
    let mut keep = false;
    for arg in args {
        match arg.as_str() {
            "--keep" => keep = true,
            _ => bail!(
                "unknown option `{arg}` for `cargo xtask demo` (see `cargo xtask demo --help`)"
            ),
        }
    }
    let started = Instant::now();

    heading(1, "Build vmc");
    let mut build = cmd::cargo_command(&["build", "-p", "vmc-cli", "--quiet"]);
    println!("$ {}", cmd::display(&build));
    cmd::run(&mut build).context("demo step 1 (build vmc) went wrong")?;
    let bin = feed::vmc_binary("debug");
    ensure!(
        bin.is_file(),
        "demo step 1 (build vmc) went wrong: {} is missing after the build",
        bin.display()
    );
    let built = Instant::now();

    let root = tempfile::Builder::new()
        .prefix("vmc-demo-")
        .tempdir()
        .context("cannot create the demo's temporary directory")?;
    let outcome = Demo::set_up(root.path(), bin).and_then(|demo| demo.run_steps());
    // The server has stopped by now (it is owned by the demo, dropped above).
    heading(8, "Clean up");
    if keep {
        let path = root.keep();
        println!("server stopped; kept the demo home: {}", path.display());
        println!(
            "  (VMC_HOME={}/home VMC_CA_DIR={}/certificates)",
            path.display(),
            path.display()
        );
    } else {
        let path = root.path().display().to_string();
        root.close()
            .with_context(|| format!("cannot delete the demo directory {path}"))?;
        println!("server stopped; deleted {path} (keep it with `cargo xtask demo --keep`)");
    }
    outcome?;
    println!(
        "\ndemo passed: every step behaved as expected ({:.1}s after the build, {:.1}s in all)",
        built.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Prints a step heading.
fn heading(number: usize, title: &str) {
    println!("\n==> [{number}/8] {title}");
}

/// Prints a fact the demo checked.
fn ok(fact: &str) {
    println!("  ok: {fact}");
}

/// One demo image: its metadata and its bytes.
struct DemoImage {
    /// `dc:identifier`.
    id: &'static str,
    /// `dc:title`.
    title: &'static str,
    /// `sl:osname`.
    os_name: &'static str,
    /// `sl:osversion`.
    os_version: &'static str,
    /// The file.
    bytes: Arc<[u8]>,
    /// Lowercase hex sha512 of the file.
    sha512: String,
}

impl DemoImage {
    /// The path the server publishes it under.
    fn path(&self) -> String {
        format!("/images/{}.img", self.id)
    }
}

/// What a `vmc` command printed and how it ended.
struct Ran {
    /// Its stdout.
    stdout: String,
    /// Its stdout and stderr together.
    all: String,
}

/// The state of a running demo: the PKI, the server and where vmc keeps its data.
struct Demo {
    /// The `vmc` binary.
    bin: PathBuf,
    /// `VMC_HOME`.
    home: PathBuf,
    /// `VMC_CA_DIR`.
    ca_dir: PathBuf,
    /// `VMC_EVENT_LOG`, written by the example handler.
    event_log: PathBuf,
    /// The `--event-handler` command.
    handler: String,
    /// The test PKI.
    pki: TestPki,
    /// The images.
    images: Vec<DemoImage>,
    /// The loopback server (stops when dropped).
    server: TestServer,
    /// How many lines of the event log have been shown.
    events_shown: usize,
    /// Let vmc reach the loopback registry over plain http (step 6).
    plain_http: bool,
}

impl Demo {
    /// Step 2: the PKI, the CA directory, the images, the signed list and the server.
    fn set_up(root: &Path, bin: PathBuf) -> Result<Demo> {
        heading(
            2,
            "Make a PKI, three images and a signed image list; serve them on 127.0.0.1",
        );
        let step = "demo step 2 (set up the PKI, images, list and server) went wrong";
        let now = Utc::now();
        let home = root.join("home");
        let ca_dir = root.join("certificates");
        fs::create_dir_all(&home)
            .and_then(|()| fs::create_dir_all(&ca_dir))
            .with_context(|| format!("{step}: cannot create directories in {}", root.display()))?;
        let pki = TestPki::generate(now);
        pki.write_ca_dir(&ca_dir, CaDirOptions::default());
        let mut ca_files: Vec<String> = fs::read_dir(&ca_dir)
            .with_context(|| format!("{step}: cannot read {}", ca_dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        ca_files.sort();
        println!(
            "CA directory (root and intermediate CA, each with its CRL): {}",
            ca_files.join(" ")
        );
        println!(
            "endorser certificate: subject {}\n                      issuer  {}",
            pki.endorser.subject, pki.endorser.issuer
        );

        let images: Vec<DemoImage> = IMAGES
            .iter()
            .zip(1u64..)
            .map(|(&(id, title, os_name, os_version, mib), seed)| {
                let bytes = feed::pseudo_random_bytes(seed, mib << 20);
                let sha512 = feed::sha512_hex(&bytes);
                DemoImage {
                    id,
                    title,
                    os_name,
                    os_version,
                    bytes: bytes.into(),
                    sha512,
                }
            })
            .collect();
        let server = TestServer::start();
        for image in &images {
            server.add(&image.path(), Route::new(Arc::clone(&image.bytes)));
            println!(
                "image {:<18} {} MiB  sha512 {}…  {}",
                image.id,
                image.bytes.len() >> 20,
                &image.sha512[..16],
                server.url(&image.path())
            );
        }
        let handler_path = cmd::project_root().join(HANDLER);
        ensure!(
            handler_path.is_file(),
            "{step}: the example handler {} is missing",
            handler_path.display()
        );
        let handler = format!(
            "sh {}",
            feed::shell_word(&handler_path.display().to_string())
        );
        let event_log = home.join("events.jsonl");
        let demo = Demo {
            bin,
            home,
            ca_dir,
            event_log,
            handler,
            pki,
            images,
            server,
            events_shown: 0,
            plain_http: false,
        };
        let list = demo.list("1.0", now - TimeDelta::hours(1), &[0, 1, 2])?;
        demo.server
            .add(LIST_PATH, Route::new(demo.pki.endorser.sign_smime(&list)));
        println!(
            "image list {LIST_ID} version 1.0 (3 images), S/MIME-signed by the endorser: {}",
            demo.server.url(LIST_PATH)
        );
        println!("\nThe vmc commands below run with:");
        println!("  export VMC_HOME={}", demo.home.display());
        println!("  export VMC_CA_DIR={}", demo.ca_dir.display());
        println!(
            "  export VMC_EVENT_LOG={}   # read by the example handler",
            demo.event_log.display()
        );
        Ok(demo)
    }

    /// Steps 3 to 7, each failing with its number and name.
    fn run_steps(mut self) -> Result<()> {
        self.subscribe_and_sync()
            .context("demo step 3 (subscribe, select, sync) went wrong")?;
        self.expire()
            .context("demo step 4 (new list version, expiry) went wrong")?;
        self.bad_lists()
            .context("demo step 5 (bad lists refused) went wrong")?;
        self.publish()
            .context("demo step 6 (publish into Glance) went wrong")?;
        self.registry()
            .context("demo step 7 (an OCI registry as a second source) went wrong")?;
        Ok(())
    }

    /// Step 6: the cache published into a real Glance on 127.0.0.1, when the virtualenv of
    /// `VMC_TEST_GLANCE_VENV` (as `.ci/run` makes it) is there.
    fn publish(&mut self) -> Result<()> {
        heading(6, "Publish the cache into a local OpenStack Glance");
        let Some(venv) = std::env::var_os(vmc_testkit::glance::VENV_ENV) else {
            println!(
                "(skipped: {} is not set; see .ci/run for the Glance virtualenv)",
                vmc_testkit::glance::VENV_ENV
            );
            return Ok(());
        };
        let glance =
            vmc_testkit::glance::Glance::start(Path::new(&venv)).context("cannot start Glance")?;
        println!("(Glance 33 is serving {} without Keystone)", glance.url());
        let url = glance.url();
        let project = vmc_testkit::glance::DEFAULT_PROJECT;
        let args = ["--glance-url", url.as_str(), "--glance-project", project];
        let mut sync = vec!["publish", "sync", "--dry-run"];
        sync.extend(args);
        self.vmc(&sync, 0)?;
        sync.retain(|a| *a != "--dry-run");
        self.vmc(&sync, 0)?;
        let listed = self.vmc_quiet(&["--json", "publish", "list"])?;
        let rows: Value =
            serde_json::from_str(&listed).context("`vmc publish list --json` printed no JSON")?;
        let still: Vec<&str> = SELECTED
            .iter()
            .filter(|&&i| i != DROPPED)
            .map(|&i| self.images[i].id)
            .collect();
        let active: Vec<&str> = rows
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["state"] == "active")
            .filter_map(|r| r["identifier"].as_str())
            .collect();
        ensure!(
            active == still,
            "published {active:?}, expected the cached {still:?}"
        );
        self.vmc(&["publish", "list"], 0)?;
        ok(&format!(
            "{} published once, its sha512 checked against Glance's os_hash_value",
            still.join(", ")
        ));
        let again = self.vmc(&sync, 0)?;
        ensure!(
            again.stdout.trim().is_empty(),
            "a second `vmc publish sync` did something: {}",
            again.stdout
        );
        ok("a second run has nothing to do");
        Ok(())
    }

    /// Step 7: a VO's registry as a second source: a disk image pushed to a local
    /// `docker-registry`, followed with `subscribe add oci://…`, cached by `cache sync` with its
    /// layer digest verified, and announced to the handler with its OCI digest.
    fn registry(&mut self) -> Result<()> {
        heading(
            7,
            "A second source: the disk images a VO publishes in an OCI registry",
        );
        let Some(registry) = vmc_testkit::registry::Registry::start() else {
            println!("skipped: docker-registry is not installed (apt-get install docker-registry)");
            return Ok(());
        };
        let data: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let pushed = registry.push_disk_image(&vmc_testkit::registry::DiskImage {
            repository: "demo.vo/cirros",
            tag: "0.6",
            data: &data,
            file_name: "cirros-0.6.qcow2",
            layer_media_type: "application/x-qemu-disk",
            layer_annotations: &[],
            manifest_annotations: &[
                ("org.opencontainers.image.title", "CirrOS 0.6 (demo)"),
                ("org.openstack.glance.os_distro", "cirros"),
                ("org.openstack.glance.os_version", "0.6"),
                ("org.openstack.glance.architecture", "x86_64"),
            ],
        });
        println!(
            "(docker-registry on {}; pushed demo.vo/cirros:0.6, manifest {}, layer {})",
            registry.host(),
            pushed.digest,
            pushed.layer_digest
        );
        // The endorser republishes a good version 1.2, so the list source syncs too.
        let kept: Vec<usize> = (0..self.images.len()).filter(|&i| i != DROPPED).collect();
        let good = self.list("1.2", Utc::now() - TimeDelta::minutes(5), &kept)?;
        self.server
            .replace(LIST_PATH, Route::new(self.pki.endorser.sign_smime(&good)));
        let url = format!("oci://{}/demo.vo", registry.host());
        self.plain_http = true;
        self.vmc(&["subscribe", "add", &url, "--new-images", "subscribe"], 0)?;
        let out = self.sync()?;
        const ID: &str = "demo.vo.cirros-0.6";
        ensure!(
            out.all.contains(ID),
            "`vmc cache sync` did not mention {ID}"
        );
        let path = self.home.join("cache").join(ID);
        let cached = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        ensure!(cached == data, "{} is not the pushed layer", path.display());
        ok(&format!(
            "{ID} is cached: the layer, {} bytes, verified against {}",
            data.len(),
            pushed.layer_digest
        ));
        let events = self.show_new_events()?;
        ensure!(
            events
                .iter()
                .any(|(kind, id, _)| kind == "AvailablePostfix" && id == ID),
            "the handler did not see AvailablePostfix for {ID}"
        );
        let log = fs::read_to_string(&self.event_log)?;
        ensure!(
            log.contains(&format!(
                "\"VMCATCHER_EVENT_OCI_DIGEST\":\"{}\"",
                pushed.digest
            )),
            "the handler was not given VMCATCHER_EVENT_OCI_DIGEST"
        );
        ok(
            "the handler saw AvailablePostfix with VMCATCHER_EVENT_OCI_DIGEST = the manifest digest",
        );
        self.vmc(&["subscribe", "list"], 0)?;
        Ok(())
    }

    /// Step 3: the commands a site runs to start caching.
    fn subscribe_and_sync(&mut self) -> Result<()> {
        heading(
            3,
            "Trust the endorser, subscribe to the list, select two images, sync",
        );
        let subject = self.pki.endorser.subject.clone();
        let issuer = self.pki.endorser.issuer.clone();
        self.vmc(
            &[
                "endorser",
                "add",
                "--id",
                ENDORSER_ID,
                "--subject",
                &subject,
                "--issuer",
                &issuer,
            ],
            0,
        )?;
        let url = self.server.url(LIST_PATH);
        self.vmc(&["subscribe", "add", &url, "--endorser", ENDORSER_ID], 0)?;
        let listed = self.vmc(&["image", "list"], 0)?;
        for image in &self.images {
            ensure!(
                listed.stdout.contains(image.id),
                "`vmc image list` does not show {}",
                image.id
            );
        }
        ok("`vmc image list` shows the three images of the list");
        let selected: Vec<&str> = SELECTED.iter().map(|&i| self.images[i].id).collect();
        let mut args = vec!["image", "subscribe"];
        args.extend(&selected);
        self.vmc(&args, 0)?;
        self.sync()?;
        self.check_cache(&SELECTED)?;
        let events = self.show_new_events()?;
        for id in &selected {
            ensure!(
                events
                    .iter()
                    .any(|(t, i, _)| t == "AvailablePostfix" && i == id),
                "the handler was not told that {id} is available"
            );
        }
        ok("the handler got AvailablePostfix for both selected images");
        let cached = self.vmc(&["cache", "list"], 0)?;
        for (index, image) in self.images.iter().enumerate() {
            ensure!(
                cached.stdout.contains(image.id) == SELECTED.contains(&index),
                "`vmc cache list` is wrong about {}",
                image.id
            );
        }
        Ok(())
    }

    /// Step 4: a new list version drops a selected image; the next sync expires it.
    fn expire(&mut self) -> Result<()> {
        let dropped = self.images[DROPPED].id;
        heading(
            4,
            &format!("Publish list version 1.1 without {dropped}; sync again: it expires"),
        );
        let kept: Vec<usize> = (0..self.images.len()).filter(|&i| i != DROPPED).collect();
        let list = self.list("1.1", Utc::now() - TimeDelta::minutes(30), &kept)?;
        self.server
            .replace(LIST_PATH, Route::new(self.pki.endorser.sign_smime(&list)));
        println!(
            "(the server now publishes version 1.1 at {})",
            self.server.url(LIST_PATH)
        );
        self.sync()?;
        let still: Vec<usize> = SELECTED.iter().copied().filter(|&i| i != DROPPED).collect();
        self.check_cache(&still)?;
        let events = self.show_new_events()?;
        ensure!(
            events
                .iter()
                .any(|(t, i, r)| t == "ExpirePostfix" && i == dropped && r == "removed"),
            "the handler was not told that {dropped} expired as `removed`"
        );
        ok(&format!(
            "the handler got ExpirePostfix for {dropped}, reason removed"
        ));
        let cached = self.vmc(&["cache", "list"], 0)?;
        ensure!(
            !cached.stdout.contains(dropped),
            "`vmc cache list` still shows {dropped}"
        );
        let expired_dir = self.home.join("expired");
        println!("$ ls $VMC_HOME/expired");
        let expired = file_names(&expired_dir)?;
        for name in &expired {
            println!("{name}");
        }
        let prefix = format!("{dropped}.");
        ensure!(
            expired.len() == 1 && expired.iter().all(|n| n.starts_with(&prefix)),
            "the expired directory holds {expired:?}, expected one {dropped}.<time> file"
        );
        let moved = expired.iter().next().map(|n| expired_dir.join(n));
        if let Some(path) = moved {
            let bytes =
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            ensure!(
                feed::sha512_hex(&bytes) == self.images[DROPPED].sha512,
                "{} is not the image that was cached",
                path.display()
            );
        }
        ok(&format!(
            "{dropped} was moved, intact, to the expired directory"
        ));
        Ok(())
    }

    /// Step 5: a tampered list and a list from an untrusted CA are refused; the good version
    /// stays in force.
    fn bad_lists(&mut self) -> Result<()> {
        heading(5, "Bad lists are refused; the good version stays in force");
        let kept: Vec<usize> = (0..self.images.len()).filter(|&i| i != DROPPED).collect();
        let next = self.list("1.2", Utc::now() - TimeDelta::minutes(10), &kept)?;
        let victim = &self.images[kept[0]];
        let tampered = tamper(&self.pki.endorser.sign_smime(&next), &victim.sha512)?;
        self.server.add(TAMPERED_PATH, Route::new(tampered.clone()));
        println!(
            "(version 1.2, with one hex digit of {}'s sha512 changed after signing: {})",
            victim.id,
            self.server.url(TAMPERED_PATH)
        );
        let url = self.server.url(TAMPERED_PATH);
        let out = self.vmc(&["subscribe", "check", &url], 1)?;
        ensure!(
            out.all.contains("signature_invalid"),
            "`vmc subscribe check` did not report signature_invalid for the tampered list"
        );
        ok("the tampered list is rejected: signature_invalid");

        let rogue_list = self.list_signed_by(&self.pki.rogue, "1.2", &kept)?;
        self.server.add(ROGUE_PATH, Route::new(rogue_list));
        println!(
            "(version 1.2 signed by a certificate with the endorser's name from a CA that is \
             not in the CA directory ({}): {})",
            self.pki.rogue.issuer,
            self.server.url(ROGUE_PATH)
        );
        let url = self.server.url(ROGUE_PATH);
        let out = self.vmc(&["subscribe", "check", &url], 1)?;
        ensure!(
            out.all.contains("certificate_untrusted"),
            "`vmc subscribe check` did not report certificate_untrusted for the rogue list"
        );
        ok("the list from the untrusted CA is rejected: certificate_untrusted");

        self.server.replace(LIST_PATH, Route::new(tampered));
        println!(
            "(the tampered version 1.2 now replaces the real list at {})",
            self.server.url(LIST_PATH)
        );
        let out = self.vmc(&["subscribe", "update"], 1)?;
        ensure!(
            out.all.contains("signature_invalid"),
            "`vmc subscribe update` did not report signature_invalid"
        );
        self.vmc(&["subscribe", "list"], 0)?;
        let json = self.vmc_quiet(&["--json", "subscribe", "list"])?;
        let subs: Value = serde_json::from_str(&json)
            .context("`vmc --json subscribe list` did not print JSON")?;
        let sub = subs
            .as_array()
            .and_then(|a| a.first())
            .context("`vmc --json subscribe list` shows no subscription")?;
        ensure!(
            sub["version"] == "1.1",
            "the subscription's version in force is {}, expected 1.1",
            sub["version"]
        );
        ensure!(
            sub["last_error"]["code"] == "signature_invalid",
            "the subscription's last error is {}, expected signature_invalid",
            sub["last_error"]
        );
        ok("`vmc --json subscribe list`: version 1.1 still in force, last_error signature_invalid");
        let still: Vec<usize> = SELECTED.iter().copied().filter(|&i| i != DROPPED).collect();
        self.check_cache(&still)?;
        Ok(())
    }

    /// The list payload, version `version`, created at `created`, with the images at `indexes`,
    /// claimed by the endorser.
    fn list(&self, version: &str, created: DateTime<Utc>, indexes: &[usize]) -> Result<Vec<u8>> {
        self.list_claimed_by(&self.pki.endorser, version, created, indexes)
    }

    /// A list payload signed (detached S/MIME) by `leaf`, which it also names as endorser.
    fn list_signed_by(&self, leaf: &Leaf, version: &str, indexes: &[usize]) -> Result<Vec<u8>> {
        let payload =
            self.list_claimed_by(leaf, version, Utc::now() - TimeDelta::minutes(10), indexes)?;
        Ok(leaf.sign_smime(&payload))
    }

    /// The JSON payload of a list naming `leaf` as its endorser.
    fn list_claimed_by(
        &self,
        leaf: &Leaf,
        version: &str,
        created: DateTime<Utc>,
        indexes: &[usize],
    ) -> Result<Vec<u8>> {
        let mut images = Vec::new();
        for &index in indexes {
            let image = &self.images[index];
            let spec = ImageSpec {
                id: image.id,
                title: image.title,
                url: self.server.url(&image.path()),
                size: image.bytes.len() as u64,
                sha512: image.sha512.clone(),
                os_name: image.os_name,
                os_version: image.os_version,
            };
            images.push(spec.to_image()?);
        }
        let header = ListHeader {
            identifier: LIST_ID,
            title: "vmc demo image list",
            description: "Images published by `cargo xtask demo`",
            vo: "demo.vo.example.org",
            source: self.server.base_url(),
            uri: self.server.url(LIST_PATH),
            version,
            created,
            creator: "vmc demo",
            email: "demo@example.org",
        };
        Ok(header.list(leaf, images)?.to_json_bytes())
    }

    /// A `vmc` command with the demo's environment, not yet started.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.args(args);
        for name in feed::CLEARED_ENV {
            command.env_remove(name);
        }
        command
            .env("VMC_HOME", &self.home)
            .env("VMC_CA_DIR", &self.ca_dir)
            .env("VMC_EVENT_LOG", &self.event_log)
            .env("NO_COLOR", "1")
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.plain_http {
            command.env("VMC_OCI_PLAIN_HTTP", "1");
        }
        command
    }

    /// Shows and runs `vmc ARGS`, prints its output and fails unless it exits with `expected`.
    fn vmc(&self, args: &[&str], expected: i32) -> Result<Ran> {
        let mut shown = Command::new("vmc");
        shown.args(args);
        let shown = cmd::display(&shown);
        println!("$ {shown}");
        let (code, stdout, stderr) = feed::run_bounded(self.command(args), &shown, COMMAND_LIMIT)?;
        print!("{stdout}");
        print!("{stderr}");
        if code != Some(expected) {
            match code {
                Some(code) => bail!("`{shown}` exited with status {code}, expected {expected}"),
                None => bail!("`{shown}` was terminated by a signal"),
            }
        }
        if expected != 0 {
            println!("(exit status {expected}, as expected)");
        }
        let all = format!("{stdout}{stderr}");
        Ok(Ran { stdout, all })
    }

    /// Runs `vmc cache sync` with the example event handler; it must succeed and every event
    /// must have reached the handler.
    fn sync(&self) -> Result<Ran> {
        let out = self.vmc(&["cache", "sync", "--event-handler", &self.handler], 0)?;
        ensure!(
            !out.all.contains("handler_failed"),
            "the event handler failed during `vmc cache sync`"
        );
        Ok(out)
    }

    /// Runs `vmc ARGS` for a check without printing its output; it must exit 0.
    fn vmc_quiet(&self, args: &[&str]) -> Result<String> {
        let mut shown = Command::new("vmc");
        shown.args(args);
        let shown = cmd::display(&shown);
        let (code, stdout, stderr) = feed::run_bounded(self.command(args), &shown, COMMAND_LIMIT)?;
        ensure!(code == Some(0), "`{shown}` failed: {stderr}");
        Ok(stdout)
    }

    /// Checks that the cache holds exactly the images at `indexes`, intact, and that
    /// `cache.index` lists exactly them.
    fn check_cache(&self, indexes: &[usize]) -> Result<()> {
        let cache = self.home.join("cache");
        let want: BTreeSet<String> = indexes
            .iter()
            .map(|&i| self.images[i].id.to_owned())
            .collect();
        let mut found = file_names(&cache)?;
        ensure!(
            found.remove("cache.index"),
            "{} has no cache.index",
            cache.display()
        );
        ensure!(
            found == want,
            "the cache holds {found:?}, expected exactly {want:?}"
        );
        for &i in indexes {
            let image = &self.images[i];
            let path = cache.join(image.id);
            let bytes =
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            ensure!(
                feed::sha512_hex(&bytes) == image.sha512,
                "{} does not have the listed sha512",
                path.display()
            );
        }
        let index_path = cache.join("cache.index");
        let index: Value = serde_json::from_slice(
            &fs::read(&index_path)
                .with_context(|| format!("cannot read {}", index_path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", index_path.display()))?;
        let listed: BTreeSet<String> = index
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        ensure!(
            listed == want,
            "cache.index lists {listed:?}, expected {want:?}"
        );
        let names: Vec<&str> = want.iter().map(String::as_str).collect();
        ok(&format!(
            "the cache holds exactly {} (sha512 re-checked) and cache.index lists just that",
            names.join(", ")
        ));
        Ok(())
    }

    /// Prints the events the handler logged since the last call; returns them as
    /// (type, image id, reason).
    fn show_new_events(&mut self) -> Result<Vec<(String, String, String)>> {
        let text = fs::read_to_string(&self.event_log).with_context(|| {
            format!(
                "the event handler wrote no log at {}",
                self.event_log.display()
            )
        })?;
        let lines: Vec<&str> = text.lines().collect();
        println!(
            "$ cat $VMC_EVENT_LOG   # {} new events, one JSON object a line; type, image, reason:",
            lines.len().saturating_sub(self.events_shown)
        );
        let mut events = Vec::new();
        for line in lines.iter().skip(self.events_shown) {
            let event: Value = serde_json::from_str(line)
                .with_context(|| format!("the event log has a line that is not JSON: {line}"))?;
            let field = |key: &str| event[key].as_str().unwrap_or("").to_owned();
            let (kind, id, reason) = (
                field("VMCATCHER_EVENT_TYPE"),
                field("VMCATCHER_EVENT_DC_IDENTIFIER"),
                field("reason"),
            );
            let shown_id = if id.is_empty() { "-" } else { id.as_str() };
            let row = format!("  {kind:<17} {shown_id:<17} {reason}");
            println!("{}", row.trim_end());
            events.push((kind, id, reason));
        }
        self.events_shown = lines.len();
        ensure!(!events.is_empty(), "the event handler logged nothing");
        Ok(events)
    }
}

/// Changes one hex digit of `checksum` inside the signed message (after signing).
fn tamper(signed: &[u8], checksum: &str) -> Result<Vec<u8>> {
    let needle = checksum.as_bytes();
    let at = signed
        .windows(needle.len())
        .position(|w| w == needle)
        .context("the signed list does not contain the image's checksum")?;
    let mut out = signed.to_vec();
    out[at] = if out[at] == b'0' { b'1' } else { b'0' };
    Ok(out)
}

/// The names of the entries of `dir`.
fn file_names(dir: &Path) -> Result<BTreeSet<String>> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        names.insert(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tamper_changes_exactly_one_byte_of_the_checksum() {
        let signed = b"head abc0ff tail".to_vec();
        let out = tamper(&signed, "abc0ff").unwrap();
        assert_eq!(out, b"head 0bc0ff tail");
        assert!(tamper(&signed, "ffff").is_err());
    }
}
