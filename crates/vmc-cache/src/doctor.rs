//! `vmc doctor`: checks a site's set-up and says, for each problem, how to fix it. Works from a
//! [`Config`] alone, so it can report a database that does not open instead of failing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::TimeDelta;
use vmc_store::{ImageFilter, Store};
use vmc_trust::TrustStore;

use crate::Config;
use crate::lock::InstanceLock;
use crate::sync::is_available;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// All is well.
    Ok,
    /// Works now, but needs attention soon.
    Warn,
    /// Broken: vmc will fail or refuse lists.
    Fail,
}

impl Status {
    /// `ok`, `warn` or `fail`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `ca_dir`, `crl`, `database`.
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// How to fix it (for `warn` and `fail`).
    pub fix: Option<String>,
}

fn check(
    name: &'static str,
    status: Status,
    message: impl Into<String>,
    fix: Option<&str>,
) -> Check {
    Check {
        name,
        status,
        message: message.into(),
        fix: fix.map(str::to_owned),
    }
}

/// How close to `dc:date:expires` a list must be to be reported.
pub const EXPIRY_WARNING: TimeDelta = TimeDelta::days(7);

/// Runs every check.
pub fn diagnose(config: &Config) -> Vec<Check> {
    let now = config.clock.now();
    let mut checks = Vec::new();
    // CA directory and CRLs.
    match TrustStore::load(&config.ca_dir) {
        Err(e) => checks.push(check(
            "ca_dir",
            Status::Fail,
            crate::update::chain(&e),
            Some("install the IGTF CA bundle (e.g. the ca-policy-egi-core package) or point --ca-dir / VMC_CA_DIR at it"),
        )),
        Ok(trust) => {
            let status = if trust.ca_count() == 0 { Status::Fail } else { Status::Ok };
            checks.push(check(
                "ca_dir",
                status,
                format!(
                    "{}: {} CAs, {} CRLs loaded, {} files skipped",
                    config.ca_dir.display(),
                    trust.ca_count(),
                    trust.crl_count(),
                    trust.skipped().len()
                ),
                (status == Status::Fail).then_some("the directory holds no CA certificate (<hash>.0); install the CA bundle"),
            ));
            for skipped in trust.skipped() {
                checks.push(check(
                    "ca_dir",
                    Status::Warn,
                    format!("skipped {}: {}", skipped.path.display(), skipped.reason),
                    Some("remove or replace the file"),
                ));
            }
            let status = trust.crl_status(now);
            let missing: Vec<_> = status.iter().filter(|c| !c.present).collect();
            let stale: Vec<_> = status.iter().filter(|c| c.present && c.stale).collect();
            let crl_matters = config.crl != vmc_trust::CrlMode::Off;
            for c in &stale {
                checks.push(check(
                    "crl",
                    if crl_matters { Status::Fail } else { Status::Warn },
                    format!(
                        "the CRL of {} is stale (next update {})",
                        c.ca_subject,
                        c.next_update.map(|t| t.to_rfc3339()).unwrap_or_default()
                    ),
                    Some("run fetch-crl (and make sure its cron job or timer is enabled)"),
                ));
            }
            if !missing.is_empty() {
                let names: Vec<_> = missing.iter().map(|c| c.ca_subject.as_str()).collect();
                checks.push(check(
                    "crl",
                    if config.crl == vmc_trust::CrlMode::Require { Status::Fail } else { Status::Warn },
                    format!("{} CAs have no CRL: {}", missing.len(), names.join(", ")),
                    Some("run fetch-crl to download the CRLs, or use --crl if-present"),
                ));
            }
            if stale.is_empty() && missing.is_empty() {
                checks.push(check("crl", Status::Ok, format!("{} CRLs current", trust.crl_count()), None));
            }
        }
    }
    if let Some(path) = &config.oci_ca_file {
        checks.push(oci_ca_file_check(path, now));
    }
    // Database.
    let store = match Store::open(&config.database_url) {
        Ok(store) => {
            checks.push(check(
                "database",
                Status::Ok,
                format!("{} database opens and is migrated", store.backend()),
                None,
            ));
            checks.push(schema_check(&store));
            node_checks(&store, config, now, &mut checks);
            checks.push(outbox_check(&store, config, now));
            Some(store)
        }
        Err(e) => {
            checks.push(check(
                "database",
                Status::Fail,
                format!("cannot open the database: {}", crate::update::chain(&e)),
                Some("check --database / VMC_DATABASE and the permissions of its directory"),
            ));
            None
        }
    };
    // Directories: one filesystem, so that renames are atomic.
    let dirs: [(&str, &PathBuf); 3] = [
        ("cache", &config.cache_dir),
        ("partial", &config.partial_dir),
        ("expired", &config.expired_dir),
    ];
    let mut devices = Vec::new();
    for (name, dir) in dirs {
        match existing_ancestor(dir).and_then(|p| p.metadata().ok()) {
            Some(m) => devices.push((name, m.dev())),
            None => checks.push(check(
                "directories",
                Status::Fail,
                format!("the {name} directory {} cannot be created", dir.display()),
                Some("create it, or choose another with the --*-dir options"),
            )),
        }
    }
    if devices.len() == 3 {
        if devices.iter().all(|(_, d)| *d == devices[0].1) {
            checks.push(check(
                "directories",
                Status::Ok,
                "cache, partial and expired are on one filesystem (renames are atomic)",
                None,
            ));
        } else {
            checks.push(check(
                "directories",
                Status::Fail,
                "cache, partial and expired are not on one filesystem: moves into the cache would not be atomic",
                Some("put the three directories on the same filesystem"),
            ));
        }
    }
    // Free space against the selected images still to download.
    if let Some(store) = &store
        && let Ok(records) = store.images(&ImageFilter {
            selected_only: true,
            ..ImageFilter::default()
        })
    {
        let needed: u64 = records
            .iter()
            .filter(|r| is_available(r, now) && r.cached.is_none())
            .map(|r| r.image.size)
            .sum();
        let free = existing_ancestor(&config.partial_dir).and_then(|p| {
            nix::sys::statvfs::statvfs(&p)
                .ok()
                .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        });
        match free {
            Some(free) if free < needed => checks.push(check(
                "disk",
                Status::Fail,
                format!("{needed} bytes of selected images to download, {free} free"),
                Some("free space, or unselect images with `vmc image unsubscribe`"),
            )),
            Some(free) => checks.push(check(
                "disk",
                Status::Ok,
                format!("{needed} bytes to download, {free} free"),
                None,
            )),
            None => {}
        }
    }
    // Event handler.
    if let Some(handler) = &config.event_handler {
        let program = handler.split_whitespace().next().unwrap_or("");
        let found = find_program(program);
        checks.push(match found {
            Some(path) => check(
                "event_handler",
                Status::Ok,
                format!("{program} found at {}", path.display()),
                None,
            ),
            None => check(
                "event_handler",
                Status::Fail,
                format!("the event handler program {program:?} is not an executable file"),
                Some("fix --event-handler / VMC_EVENT_HANDLER, or make the file executable"),
            ),
        });
    }
    // Instance lock.
    match InstanceLock::holder(&config.lock_file) {
        Some(holder) => checks.push(check(
            "lock",
            Status::Warn,
            format!("held now by {holder}"),
            Some("wait for that run to finish; a dead holder never blocks (the kernel releases its lock)"),
        )),
        None => {
            let leftover = std::fs::read_to_string(&config.lock_file).unwrap_or_default();
            let message = if leftover.trim().is_empty() {
                "not held".to_owned()
            } else {
                format!("not held (the last holder ended without cleaning up: {})", leftover.trim())
            };
            checks.push(check("lock", Status::Ok, message, None));
        }
    }
    // Subscriptions.
    if let Some(store) = &store
        && let Ok(subs) = store.subscriptions()
    {
        for sub in subs.iter().filter(|s| s.enabled) {
            let name = sub
                .identifier
                .clone()
                .unwrap_or_else(|| vmc_fetch::redact_url(&sub.url));
            if let Some(current) = &sub.current {
                if current.expires <= now {
                    checks.push(check(
                        "subscription",
                        Status::Fail,
                        format!("{name}: the list expired at {}; its images expire", current.expires.to_rfc3339()),
                        Some("ask the endorser to publish a new list, then run `vmc subscribe update`"),
                    ));
                } else if current.expires - now < EXPIRY_WARNING {
                    checks.push(check(
                        "subscription",
                        Status::Warn,
                        format!(
                            "{name}: the list expires at {}",
                            current.expires.to_rfc3339()
                        ),
                        Some("make sure `vmc cache sync` runs and the endorser republishes"),
                    ));
                }
            }
            let oci = crate::oci::is_oci(&sub.url);
            if oci {
                checks.extend(oci_rule_check(store, sub, &name));
            }
            if let Some(e) = &sub.last_error {
                checks.push(check(
                    "subscription",
                    Status::Warn,
                    format!("{name}: last update failed: {}: {}", e.code, e.message),
                    Some(if oci {
                        "check the registry's address, TLS and credentials, then run `vmc subscribe update`"
                    } else {
                        "see `vmc subscribe check URL` for details"
                    }),
                ));
            }
        }
    }
    checks
}

/// The migrations applied to the database against those this build carries: a node older
/// than the one that last migrated a shared database is told to upgrade.
fn schema_check(store: &Store) -> Check {
    match store.schema_status() {
        Err(e) => check(
            "schema",
            Status::Fail,
            format!(
                "cannot read the applied migrations: {}",
                crate::update::chain(&e)
            ),
            Some("check the database user may read __diesel_schema_migrations"),
        ),
        Ok(schema) => {
            let unknown = schema.unknown();
            let pending = schema.pending();
            if !unknown.is_empty() {
                check(
                    "schema",
                    Status::Warn,
                    format!(
                        "the database has {} migrations this vmc does not know ({}): a newer vmc migrated it",
                        unknown.len(),
                        unknown.join(", ")
                    ),
                    Some("upgrade vmc on this node to the version the other nodes run"),
                )
            } else if !pending.is_empty() {
                check(
                    "schema",
                    Status::Fail,
                    format!(
                        "{} migrations are not applied: {}",
                        pending.len(),
                        pending.join(", ")
                    ),
                    Some(
                        "run any vmc command once with a database user allowed to alter the schema",
                    ),
                )
            } else {
                check(
                    "schema",
                    Status::Ok,
                    format!(
                        "schema version {} ({} migrations, all applied)",
                        schema.embedded.last().map_or("-", String::as_str),
                        schema.embedded.len()
                    ),
                    None,
                )
            }
        }
    }
}

/// How long a node may stay unseen before it is reported as probably gone.
pub const NODE_GONE_AFTER: TimeDelta = TimeDelta::days(7);

/// The node table: nodes that died during a run (silent, not idle), nodes not seen for a week,
/// and leases held by silent nodes (they lapse, and another node takes the work over).
fn node_checks(
    store: &Store,
    config: &Config,
    now: chrono::DateTime<chrono::Utc>,
    checks: &mut Vec<Check>,
) {
    let nodes = match store.nodes() {
        Ok(nodes) => nodes,
        Err(e) => {
            checks.push(check(
                "nodes",
                Status::Fail,
                format!("cannot read the node table: {}", crate::update::chain(&e)),
                Some("check the database user may read the nodes and leases tables"),
            ));
            return;
        }
    };
    let mut problems = 0;
    for node in &nodes {
        let name = &node.info.name;
        let alive = crate::node::is_alive(node.last_seen, now, config.lease_time);
        let seen = node
            .last_seen
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if !alive && node.activity != crate::node::IDLE {
            problems += 1;
            checks.push(check(
                "nodes",
                Status::Warn,
                format!(
                    "node {name} (host {}, pid {}) stopped beating during a run ({}), last seen {seen}",
                    node.info.host, node.info.pid, node.activity
                ),
                Some("it was killed or lost the database; its next run repairs what it left"),
            ));
        } else if now - node.last_seen > NODE_GONE_AFTER {
            problems += 1;
            checks.push(check(
                "nodes",
                Status::Warn,
                format!("node {name} was last seen {seen}"),
                Some("if it is gone for good: vmc node remove NAME"),
            ));
        }
        if !alive {
            let held: Vec<String> = node
                .leases
                .iter()
                .map(|l| {
                    format!(
                        "{} (lapses {})",
                        l.resource,
                        l.expires_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                })
                .collect();
            if !held.is_empty() {
                problems += 1;
                checks.push(check(
                    "leases",
                    Status::Warn,
                    format!("silent node {name} holds {}", held.join(", ")),
                    Some("another node takes the work over once a lease lapses; vmc node remove NAME frees them now"),
                ));
            }
        }
    }
    // One cache mode per site: this node's (as configured) and each other node's last run's.
    let mut modes: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    modes
        .entry(config.cache_mode.as_str())
        .or_default()
        .push(&config.node);
    for node in nodes
        .iter()
        .filter(|n| n.info.name != config.node && now - n.last_seen <= NODE_GONE_AFTER)
    {
        if let Some(mode) = node.info.cache_mode.as_deref() {
            modes.entry(mode).or_default().push(&node.info.name);
        }
    }
    if modes.len() > 1 {
        problems += 1;
        let said: Vec<String> = modes
            .iter()
            .map(|(mode, names)| format!("{mode}: {}", names.join(", ")))
            .collect();
        checks.push(check(
            "nodes",
            Status::Warn,
            format!(
                "the nodes of this site use different cache modes ({}; this node as configured): events are announced twice and copies between nodes are not found",
                said.join("; ")
            ),
            Some("give every node the same --cache-mode / VMC_CACHE_MODE (vmc node remove NAME for a node that is gone)"),
        ));
    }
    if problems == 0 {
        checks.push(check(
            "nodes",
            Status::Ok,
            format!(
                "{} nodes registered, {} alive, no stale leases",
                nodes.len(),
                nodes
                    .iter()
                    .filter(|n| crate::node::is_alive(n.last_seen, now, config.lease_time))
                    .count()
            ),
            None,
        ));
    }
}

/// Announced events whose run died before delivering them (the event outbox): the next run
/// delivers them, but a site where they pile up has runs dying or handlers hanging.
fn outbox_check(store: &Store, config: &Config, now: chrono::DateTime<chrono::Utc>) -> Check {
    let pending = match store.pending_events() {
        Ok(pending) => pending,
        Err(e) => {
            return check(
                "events",
                Status::Fail,
                format!("cannot read the event outbox: {}", crate::update::chain(&e)),
                Some("check the database user may read the event_outbox table"),
            );
        }
    };
    let grace =
        chrono::TimeDelta::from_std(config.event_replay_grace()).unwrap_or(chrono::TimeDelta::MAX);
    let stale: Vec<String> = pending
        .iter()
        .filter(|p| now - p.claimed_at > grace)
        .map(|p| {
            let a = &p.announcement;
            format!(
                "{} {} (node {}, {})",
                a.event_type,
                a.identifier.as_deref().unwrap_or(""),
                a.node,
                a.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .collect();
    if stale.is_empty() {
        check(
            "events",
            Status::Ok,
            format!("{} events being delivered, none left behind", pending.len()),
            None,
        )
    } else {
        check(
            "events",
            Status::Warn,
            format!(
                "{} events announced by runs that died are not delivered yet: {}",
                stale.len(),
                stale.join(", ")
            ),
            Some("the next cache sync of any node delivers them to its handler"),
        )
    }
}

/// How close to its end a certificate of the registry CA bundle must be to be reported.
pub const CA_BUNDLE_WARNING: TimeDelta = TimeDelta::days(30);

/// The registry CA bundle (`VMC_OCI_CA_FILE`): when it is set, registries are trusted by its
/// certificates alone, so an unreadable or empty file, or only expired certificates, fails
/// every OCI subscription's TLS handshake.
fn oci_ca_file_check(path: &Path, now: chrono::DateTime<chrono::Utc>) -> Check {
    let fix = "point VMC_OCI_CA_FILE at the PEM bundle of the registries' CA (or unset it to use the system's roots)";
    let certs = match vmc_fetch::load_ca_bundle(path) {
        Ok(certs) => certs,
        Err(e) => return check("oci_ca_file", Status::Fail, e.to_string(), Some(fix)),
    };
    let at = |secs: i64| openssl::asn1::Asn1Time::from_unix(secs).ok();
    let (Some(now_asn1), Some(soon)) = (
        at(now.timestamp()),
        at((now + CA_BUNDLE_WARNING).timestamp()),
    ) else {
        return check(
            "oci_ca_file",
            Status::Warn,
            format!("{}: cannot compare its dates with {now}", path.display()),
            None,
        );
    };
    let ends_before = |cert: &openssl::x509::X509, t: &openssl::asn1::Asn1Time| {
        cert.not_after()
            .compare(t)
            .is_ok_and(|o| o == std::cmp::Ordering::Less)
    };
    let describe = |cert: &openssl::x509::X509| {
        format!(
            "{} (not after {})",
            vmc_trust::one_line_dn(cert.subject_name()),
            cert.not_after()
        )
    };
    let expired: Vec<String> = certs
        .iter()
        .filter(|c| ends_before(c, &now_asn1))
        .map(describe)
        .collect();
    let ending: Vec<String> = certs
        .iter()
        .filter(|c| !ends_before(c, &now_asn1) && ends_before(c, &soon))
        .map(describe)
        .collect();
    let total = certs.len();
    let file = path.display();
    if expired.len() == total {
        check(
            "oci_ca_file",
            Status::Fail,
            format!(
                "{file}: every certificate has expired: {}",
                expired.join("; ")
            ),
            Some(fix),
        )
    } else if !expired.is_empty() || !ending.is_empty() {
        let mut parts = Vec::new();
        if !expired.is_empty() {
            parts.push(format!("expired: {}", expired.join("; ")));
        }
        if !ending.is_empty() {
            parts.push(format!(
                "expiring within {} days: {}",
                CA_BUNDLE_WARNING.num_days(),
                ending.join("; ")
            ));
        }
        check(
            "oci_ca_file",
            Status::Warn,
            format!("{file}: {total} certificates; {}", parts.join("; ")),
            Some("replace the bundle with the registries' current CA certificates"),
        )
    } else {
        check(
            "oci_ca_file",
            Status::Ok,
            format!(
                "{file}: {total} certificates, all valid for {} days or more",
                CA_BUNDLE_WARNING.num_days()
            ),
            None,
        )
    }
}

/// An OCI subscription's allow rule: it must parse and admit the subscription's reference,
/// or every image of it expires as unendorsed at the next sync.
fn oci_rule_check(
    store: &vmc_store::Store,
    sub: &vmc_model::Subscription,
    name: &str,
) -> Option<Check> {
    let fix = Some(
        "set a rule that allows the reference (`vmc subscribe remove`, then `subscribe add --allow RULE`)",
    );
    let rule = match store.oci_allow(sub.id) {
        Ok(Some(rule)) => rule,
        Ok(None) => return None,
        Err(e) => {
            return Some(check(
                "subscription",
                Status::Fail,
                format!("{name}: cannot read its registry rule: {e}"),
                None,
            ));
        }
    };
    let admits = vmc_model::oci::AllowRule::parse(&rule)
        .ok()
        .is_some_and(|r| {
            vmc_model::oci::Reference::parse(&sub.url)
                .is_ok_and(|reference| r.allows_reference(&reference))
        });
    (!admits).then(|| {
        check(
            "subscription",
            Status::Fail,
            format!(
                "{name}: the registry rule {rule:?} does not allow {}; its images are not endorsed",
                sub.url
            ),
            fix,
        )
    })
}

fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    abs.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_program(program: &str) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    // Shell builtins and PATH lookups: /bin/sh -c resolves them.
    if matches!(
        program,
        "sh" | "bash" | "exec" | "env" | "true" | ":" | "echo" | "cat"
    ) {
        return Some(PathBuf::from(program));
    }
    [
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
    ]
    .iter()
    .map(|d| Path::new(d).join(program))
    .find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Clock;

    /// A CA directory variant of the openssl-cli interop fixtures (made at test time).
    fn interop(dir: &str) -> PathBuf {
        vmc_testkit::interop::openssl_cli().join("pki").join(dir)
    }

    fn config(home: &Path, ca_dir: &str) -> Config {
        let mut c = Config::with_home(home);
        c.ca_dir = interop(ca_dir);
        c.clock = Clock::fixed("2027-06-01T00:00:00Z".parse().unwrap());
        c
    }

    fn find<'a>(checks: &'a [Check], name: &str, status: Status) -> Option<&'a Check> {
        checks.iter().find(|c| c.name == name && c.status == status)
    }

    #[test]
    fn a_healthy_site_passes() {
        let home = tempfile::tempdir().unwrap();
        let checks = diagnose(&config(home.path(), "ca-dir"));
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
        assert!(
            find(&checks, "ca_dir", Status::Ok)
                .unwrap()
                .message
                .contains("2 CAs, 2 CRLs")
        );
    }

    /// The registry CA bundle: read, and its certificates' ends compared with the clock.
    #[test]
    fn the_registry_ca_bundle_is_read_and_its_dates_checked() {
        use vmc_testkit::pki::{Ca, Validity};
        let home = tempfile::tempdir().unwrap();
        let mut c = config(home.path(), "ca-dir");
        let now = c.clock.now();
        let ca = |subject: &str, days_left: i64| {
            let validity = Validity {
                not_before: now - chrono::Duration::days(400),
                not_after: now + chrono::Duration::days(days_left),
                serial: 1,
            };
            Ca::root(subject, validity).cert.to_pem().unwrap()
        };
        let outcome = |c: &Config| {
            let checks = diagnose(c);
            let found: Vec<_> = checks.iter().filter(|k| k.name == "oci_ca_file").collect();
            assert_eq!(found.len(), 1, "{checks:?}");
            found[0].clone()
        };
        // Not set: no check.
        assert!(diagnose(&c).iter().all(|k| k.name != "oci_ca_file"));

        let bundle = home.path().join("registry-ca.pem");
        c.oci_ca_file = Some(bundle.clone());
        let missing = outcome(&c);
        assert_eq!(missing.status, Status::Fail, "{missing:?}");
        assert!(missing.message.contains("registry-ca.pem"), "{missing:?}");
        assert!(missing.fix.unwrap().contains("VMC_OCI_CA_FILE"));

        std::fs::write(&bundle, b"no certificate here\n").unwrap();
        assert_eq!(outcome(&c).status, Status::Fail);

        std::fs::write(
            &bundle,
            [ca("/CN=Registry CA A", 365), ca("/CN=Registry CA B", 90)].concat(),
        )
        .unwrap();
        let ok = outcome(&c);
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(ok.message.contains("2 certificates"), "{ok:?}");

        std::fs::write(
            &bundle,
            [ca("/CN=Registry CA A", 365), ca("/CN=Registry CA Old", -1)].concat(),
        )
        .unwrap();
        let expired = outcome(&c);
        assert_eq!(expired.status, Status::Warn, "{expired:?}");
        assert!(
            expired
                .message
                .contains("expired: /CN=Registry CA Old (not after "),
            "{expired:?}"
        );
        assert!(!expired.message.contains("Registry CA A"), "{expired:?}");

        std::fs::write(&bundle, ca("/CN=Registry CA Soon", 10)).unwrap();
        let ending = outcome(&c);
        assert_eq!(ending.status, Status::Warn, "{ending:?}");
        assert!(
            ending.message.contains("expiring within 30 days"),
            "{ending:?}"
        );

        std::fs::write(
            &bundle,
            [
                ca("/CN=Registry CA Old", -1),
                ca("/CN=Registry CA Older", -100),
            ]
            .concat(),
        )
        .unwrap();
        let all_gone = outcome(&c);
        assert_eq!(all_gone.status, Status::Fail, "{all_gone:?}");
        assert!(
            all_gone.message.contains("every certificate has expired"),
            "{all_gone:?}"
        );
    }

    #[test]
    fn a_stale_crl_is_reported_with_its_fix() {
        let home = tempfile::tempdir().unwrap();
        let checks = diagnose(&config(home.path(), "ca-dir-stale"));
        let stale = find(&checks, "crl", Status::Fail).expect("stale CRL reported");
        assert!(stale.message.contains("stale"), "{stale:?}");
        assert!(stale.fix.as_deref().unwrap_or("").contains("fetch-crl"));
    }

    #[test]
    fn missing_crls_fail_in_require_mode_and_warn_otherwise() {
        let home = tempfile::tempdir().unwrap();
        let mut c = config(home.path(), "ca-dir-nocrl");
        assert!(find(&diagnose(&c), "crl", Status::Fail).is_some());
        c.crl = vmc_trust::CrlMode::IfPresent;
        let checks = diagnose(&c);
        assert!(find(&checks, "crl", Status::Fail).is_none());
        assert!(find(&checks, "crl", Status::Warn).is_some());
    }

    #[test]
    fn a_missing_ca_dir_and_a_missing_handler_fail() {
        let home = tempfile::tempdir().unwrap();
        let mut c = config(home.path(), "no-such-dir");
        c.event_handler = Some("/no/such/handler --flag".into());
        let checks = diagnose(&c);
        assert!(find(&checks, "ca_dir", Status::Fail).is_some());
        assert!(find(&checks, "event_handler", Status::Fail).is_some());
        c.event_handler = Some("sh -c true".into());
        assert!(find(&diagnose(&c), "event_handler", Status::Ok).is_some());
    }

    #[test]
    fn the_schema_and_the_node_table_are_checked() {
        let home = tempfile::tempdir().unwrap();
        let c = config(home.path(), "ca-dir");
        let checks = diagnose(&c);
        let schema = find(&checks, "schema", Status::Ok).expect("schema checked");
        assert!(schema.message.contains("all applied"), "{schema:?}");
        assert!(find(&checks, "nodes", Status::Ok).is_some(), "{checks:#?}");

        // A node that died mid-run holding a lease, one idle for weeks, and a migration of a
        // newer vmc.
        let store = Store::open(&c.database_url).unwrap();
        let now = c.clock.now();
        let node = |name: &str| vmc_store::NodeInfo {
            name: name.into(),
            host: format!("{name}.example.org"),
            pid: 7,
            version: "0.1.0".into(),
            url: None,
            cache_mode: None,
        };
        let dead_at = now - TimeDelta::minutes(10);
        store
            .register_node(&node("hv-1"), "downloading", dead_at)
            .unwrap();
        store
            .try_lease("download:img", "hv-1", dead_at, TimeDelta::hours(1))
            .unwrap()
            .unwrap();
        store
            .register_node(&node("hv-2"), crate::node::IDLE, now - TimeDelta::days(8))
            .unwrap();
        let checks = diagnose(&c);
        let warned: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Warn && (c.name == "nodes" || c.name == "leases"))
            .map(|c| c.message.as_str())
            .collect();
        assert_eq!(warned.len(), 3, "{checks:#?}");
        assert!(
            warned[0].contains("hv-1") && warned[0].contains("during a run"),
            "{warned:?}"
        );
        assert!(warned[1].contains("download:img"), "{warned:?}");
        assert!(warned[2].contains("hv-2 was last seen"), "{warned:?}");
        assert!(find(&checks, "nodes", Status::Ok).is_none());
    }

    #[test]
    fn events_left_behind_by_a_dead_run_are_reported() {
        let home = tempfile::tempdir().unwrap();
        let c = config(home.path(), "ca-dir");
        assert!(find(&diagnose(&c), "events", Status::Ok).is_some());
        let store = Store::open(&c.database_url).unwrap();
        let now = c.clock.now();
        let announce = |at: chrono::DateTime<chrono::Utc>, id: &str| vmc_store::Announcement {
            node: "hv-1".into(),
            session: "dead".into(),
            event_type: vmc_model::EventType::AvailablePostfix,
            identifier: Some(id.into()),
            payload: serde_json::json!({}),
            at,
        };
        // One being delivered now (not stale), one from an hour ago (stale).
        store.announce(&announce(now, "fresh")).unwrap();
        store
            .announce(&announce(now - TimeDelta::hours(1), "old"))
            .unwrap();
        let checks = diagnose(&c);
        let warn = find(&checks, "events", Status::Warn).expect("stale events reported");
        assert!(warn.message.starts_with("1 events"), "{warn:?}");
        assert!(
            warn.message.contains("AvailablePostfix old (node hv-1"),
            "{warn:?}"
        );
        assert!(!warn.message.contains("fresh"), "{warn:?}");
    }

    #[test]
    fn a_held_lock_is_named() {
        let home = tempfile::tempdir().unwrap();
        let c = config(home.path(), "ca-dir");
        let _held =
            InstanceLock::acquire(&c.lock_file, std::time::Duration::ZERO, "vmc cache sync")
                .unwrap();
        let checks = diagnose(&c);
        let lock = find(&checks, "lock", Status::Warn).expect("held lock reported");
        assert!(lock.message.contains("vmc cache sync"), "{lock:?}");
    }
}
