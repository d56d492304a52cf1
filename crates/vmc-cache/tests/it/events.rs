//! Event delivery to a real handler script: order, variables, stdin JSON, failures, timeouts
//! that kill the handler's process group, and hostile values that must never reach a shell as
//! code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use vmc_cache::{NoProgress, SyncOptions, Vmc};
use vmc_model::{EventType, ExpiryReason, Identifier, NewImagePolicy};
use vmc_store::EventOutcome;

use crate::{Gen, GenImage};

/// One handler run as the logging script recorded it.
#[derive(Debug, Default)]
struct Logged {
    vars: BTreeMap<String, String>,
    checks: Vec<String>,
    stdin: Option<Value>,
}

impl Logged {
    fn var(&self, name: &str) -> &str {
        self.vars.get(name).map_or("", String::as_str)
    }

    fn event_type(&self) -> &str {
        self.var("VMCATCHER_EVENT_TYPE")
    }
}

/// Writes the logging handler into `dir` and returns its command and log path.
fn logging_handler(dir: &Path) -> (String, PathBuf) {
    let log = dir.join("handler.log");
    let script = dir.join("handler.sh");
    let text = format!(
        r#"#!/bin/sh
{{
  echo BEGIN
  env | grep '^VMCATCHER_' | sort
  case "$VMCATCHER_EVENT_TYPE" in
    AvailablePostfix)
      [ -f "${{VMCATCHER_CACHE_DIR_CACHE}}${{VMCATCHER_EVENT_DC_IDENTIFIER}}" ] && echo CHECK=cached-file-exists ;;
    ExpirePostfix)
      [ -f "${{VMCATCHER_CACHE_DIR_EXPIRE}}${{VMCATCHER_EVENT_FILENAME}}" ] && echo CHECK=expired-file-exists ;;
  esac
  printf 'JSON='
  cat
  echo END
}} >> '{}'
"#,
        log.display()
    );
    std::fs::write(&script, text).unwrap();
    (format!("/bin/sh '{}'", script.display()), log)
}

fn read_log(log: &Path) -> Vec<Logged> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs = Vec::new();
    let mut current: Option<Logged> = None;
    for line in text.lines() {
        if line == "BEGIN" {
            current = Some(Logged::default());
        } else if line == "END" {
            runs.push(current.take().unwrap());
        } else if let Some(cur) = current.as_mut() {
            if let Some(json) = line.strip_prefix("JSON=") {
                cur.stdin = Some(serde_json::from_str(json).unwrap());
            } else if let Some(check) = line.strip_prefix("CHECK=") {
                cur.checks.push(check.to_owned());
            } else if let Some((k, v)) = line.split_once('=') {
                cur.vars.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    assert!(current.is_none(), "unterminated handler record in {text}");
    runs
}

fn open_with_handler(env: &Gen, handler: &str, timeout: Duration) -> Vmc {
    let mut config = env.config();
    config.event_handler = Some(handler.to_owned());
    config.event_timeout = timeout;
    Vmc::open(config).unwrap()
}

#[test]
fn sync_events_reach_the_handler_in_order_with_their_variables() {
    let imgs = vec![
        GenImage::new("ev-a", 7, 3000),
        GenImage::new("ev-b", 8, 5000),
    ];
    let env = Gen::new();
    env.publish("1", &imgs);
    let (cmd, log) = logging_handler(env.home.path());
    let vmc = open_with_handler(&env, &cmd, Duration::from_secs(60));
    env.subscribe(&vmc, NewImagePolicy::Subscribe);

    // Subscribing announced both images.
    let runs = read_log(&log);
    let mut new: Vec<&str> = runs
        .iter()
        .filter(|r| r.event_type() == "SubscriptionImageNew")
        .map(|r| r.var("VMCATCHER_EVENT_DC_IDENTIFIER"))
        .collect();
    new.sort_unstable();
    assert_eq!(new, vec!["ev-a", "ev-b"]);
    assert_eq!(runs.len(), 2);
    std::fs::remove_file(&log).unwrap();

    let report = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    assert!(!report.has_failures(), "{report:?}");
    let runs = read_log(&log);
    let types: Vec<&str> = runs.iter().map(Logged::event_type).collect();
    assert_eq!(types.len(), 6, "{types:?}");
    assert_eq!(types[0], "ProcessPrefix");
    assert_eq!(types[5], "ProcessPostfix");
    for pair in types[1..5].chunks(2) {
        assert_eq!(pair, ["AvailablePrefix", "AvailablePostfix"]);
    }
    let cache_var = runs[0].var("VMCATCHER_CACHE_DIR_CACHE");
    assert!(cache_var.ends_with('/'), "{cache_var}");
    assert!(runs[0].var("VMCATCHER_CACHE_DIR_EXPIRE").ends_with('/'));
    assert!(runs[0].var("VMCATCHER_CACHE_DIR_DOWNLOAD").ends_with('/'));
    let session = runs[0].var("VMCATCHER_EVENT_UUID_SESSION");
    assert!(!session.is_empty());
    let mut available = Vec::new();
    for run in &runs {
        assert_eq!(run.var("VMCATCHER_EVENT_UUID_SESSION"), session);
        let stdin = run.stdin.as_ref().unwrap();
        assert_eq!(stdin["VMCATCHER_EVENT_TYPE"], run.event_type());
        if run.event_type() == "AvailablePostfix" {
            assert_eq!(run.checks, vec!["cached-file-exists"], "{run:?}");
            let id = run.var("VMCATCHER_EVENT_DC_IDENTIFIER");
            let img = imgs.iter().find(|g| g.id == id).unwrap();
            assert_eq!(run.var("VMCATCHER_EVENT_DC_TITLE"), img.title);
            assert_eq!(
                run.var("VMCATCHER_EVENT_HV_SIZE"),
                img.bytes.len().to_string()
            );
            assert_eq!(run.var("VMCATCHER_EVENT_IL_DC_IDENTIFIER"), env.list_id);
            assert_eq!(run.var("VMCATCHER_EVENT_FILENAME"), id);
            assert_eq!(stdin["image"]["dc:identifier"], id);
            available.push(id.to_owned());
        }
    }
    available.sort();
    assert_eq!(available, vec!["ev-a", "ev-b"]);
    // The journal has the same run, delivered.
    let journal = vmc.store().events(false, None).unwrap();
    let sync_events: Vec<_> = journal.iter().filter(|e| e.session == session).collect();
    assert_eq!(sync_events.len(), 6);
    assert!(
        sync_events
            .iter()
            .all(|e| e.outcome == EventOutcome::Delivered)
    );
    assert_eq!(sync_events[0].event_type, EventType::ProcessPrefix);

    // Expiry: ExpirePostfix names the file in the expired directory.
    std::fs::remove_file(&log).unwrap();
    vmc.store()
        .set_selected(&[Identifier::new("ev-a").unwrap()], false)
        .unwrap();
    let report = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.expired.len(), 1);
    assert_eq!(report.expired[0].reason, ExpiryReason::Unselected);
    let runs = read_log(&log);
    let types: Vec<&str> = runs.iter().map(Logged::event_type).collect();
    assert_eq!(
        types,
        vec![
            "ProcessPrefix",
            "ExpirePrefix",
            "ExpirePostfix",
            "ProcessPostfix"
        ]
    );
    let post = &runs[2];
    assert_eq!(post.checks, vec!["expired-file-exists"]);
    assert_eq!(
        post.var("VMCATCHER_EVENT_FILENAME"),
        report.expired[0].expired_file.as_deref().unwrap()
    );
    assert_eq!(post.var("VMCATCHER_EVENT_DC_IDENTIFIER"), "ev-a");
    assert_eq!(post.stdin.as_ref().unwrap()["reason"], "unselected");
}

#[test]
fn failing_handler_is_recorded_and_the_sync_completes() {
    let imgs = vec![
        GenImage::new("fail-a", 9, 2048),
        GenImage::new("fail-b", 10, 1024),
    ];
    let env = Gen::new();
    env.publish("1", &imgs);
    let vmc = open_with_handler(&env, "exit 1", Duration::from_secs(60));
    env.subscribe(&vmc, NewImagePolicy::Subscribe);
    let report = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    // ProcessPrefix, 2 × (AvailablePrefix, AvailablePostfix), ProcessPostfix.
    assert_eq!(report.handler_failures, 6);
    assert!(report.has_failures());
    assert!(report.failed.is_empty());
    assert_eq!(report.downloaded.len(), 2);
    assert_eq!(crate::cached_ids(&vmc), vec!["fail-a", "fail-b"]);
    let failed = vmc.store().events(true, None).unwrap();
    // Plus the two SubscriptionImageNew of the subscription.
    assert_eq!(failed.len(), 8);
    assert!(
        failed
            .iter()
            .all(|e| matches!(e.outcome, EventOutcome::Failed { .. }))
    );
    assert!(
        failed
            .iter()
            .any(|e| e.event_type == EventType::ProcessPostfix)
    );
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[test]
fn handler_over_its_timeout_is_killed_with_its_process_group() {
    let env = Gen::new();
    let dir = env.home.path();
    let pidfile = dir.join("child.pid");
    let script = dir.join("slow.sh");
    std::fs::write(
        &script,
        format!(
            "if [ \"$VMCATCHER_EVENT_TYPE\" = ProcessPrefix ]; then\n  sleep 30 &\n  echo $! > '{}'\n  sleep 30\nfi\n",
            pidfile.display()
        ),
    )
    .unwrap();
    let vmc = open_with_handler(
        &env,
        &format!("/bin/sh '{}'", script.display()),
        Duration::from_secs(1),
    );
    let report = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.handler_failures, 1);
    let failed = vmc.store().events(true, None).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].event_type, EventType::ProcessPrefix);
    match &failed[0].outcome {
        EventOutcome::Failed { message } => assert!(message.contains("timed out"), "{message}"),
        other => panic!("unexpected outcome {other:?}"),
    }
    let all = vmc.store().events(false, None).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].event_type, EventType::ProcessPostfix);
    assert_eq!(all[1].outcome, EventOutcome::Delivered);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered asynchronously: give the kernel a moment to tear the child down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(process_gone(pid), "background child {pid} survived");
}

#[test]
fn hostile_title_reaches_the_handler_verbatim_and_runs_nothing() {
    let env = Gen::new();
    let dir = env.home.path();
    let victim = dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    let pwned1 = dir.join("pwned-1");
    let pwned2 = dir.join("pwned-2");
    let mut img = GenImage::new("hostile", 11, 1000);
    img.title = format!(
        "$(touch {}); rm -rf {} ; `touch {}` `id` \"'; exit 1",
        pwned1.display(),
        victim.display(),
        pwned2.display()
    );
    env.publish("1", std::slice::from_ref(&img));
    let (cmd, log) = logging_handler(dir);
    let vmc = open_with_handler(&env, &cmd, Duration::from_secs(60));
    env.subscribe(&vmc, NewImagePolicy::Subscribe);
    let report = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    assert!(!report.has_failures(), "{report:?}");
    let runs = read_log(&log);
    let with_title: Vec<&Logged> = runs
        .iter()
        .filter(|r| r.vars.contains_key("VMCATCHER_EVENT_DC_TITLE"))
        .collect();
    // SubscriptionImageNew, AvailablePrefix, AvailablePostfix.
    assert_eq!(with_title.len(), 3);
    for run in with_title {
        assert_eq!(run.var("VMCATCHER_EVENT_DC_TITLE"), img.title);
        assert_eq!(
            run.stdin.as_ref().unwrap()["image"]["dc:title"],
            img.title.as_str()
        );
    }
    assert!(!pwned1.exists());
    assert!(!pwned2.exists());
    assert!(victim.is_dir());
}

/// The `SubscriptionImageNew` events of `vmc`'s journal, oldest first.
fn journalled_new_images(vmc: &Vmc) -> Vec<vmc_store::EventRecord> {
    vmc.store()
        .events(false, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == EventType::SubscriptionImageNew)
        .collect()
}

#[test]
fn subscription_image_new_fires_once_per_new_image() {
    let imgs = vec![
        GenImage::new("new-a", 12, 500),
        GenImage::new("new-b", 13, 600),
    ];
    let env = Gen::new();
    env.publish("1", &imgs[..1]);
    let vmc = env.open();
    env.subscribe(&vmc, NewImagePolicy::Accept);
    env.publish("2", &imgs);
    let report = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    assert_eq!(
        report.subscriptions[0].new_images,
        vec![Identifier::new("new-b").unwrap()]
    );
    // Version 2 again: nothing new.
    vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    let announced: Vec<String> = journalled_new_images(&vmc)
        .into_iter()
        .map(|e| {
            assert_eq!(e.outcome, EventOutcome::NoHandler);
            e.identifier.unwrap()
        })
        .collect();
    assert_eq!(announced, vec!["new-a", "new-b"]);
}

#[test]
fn more_new_images_than_one_journal_batch_are_all_announced() {
    // 1,201 new images: three journal batches, the last one partial.
    let imgs: Vec<GenImage> = (0..1202)
        .map(|i| {
            let id: &'static str = Box::leak(format!("many-{i:04}").into_boxed_str());
            GenImage::new(id, (i % 251) as u8, 1)
        })
        .collect();
    let env = Gen::new();
    env.publish("1", &imgs[..1]);
    let vmc = env.open();
    env.subscribe(&vmc, NewImagePolicy::Accept);
    env.publish("2", &imgs);
    let report = vmc.sync(&SyncOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.subscriptions[0].new_images.len(), 1201);
    let announced: Vec<String> = journalled_new_images(&vmc)
        .into_iter()
        .map(|e| e.identifier.unwrap())
        .collect();
    let expected: Vec<String> = imgs.iter().map(|i| i.id.to_owned()).collect();
    assert_eq!(announced, expected, "every new image once, in list order");
}
