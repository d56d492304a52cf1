//! Events for downstream tools, with vmcatcher's names and variables: each event runs the
//! handler once through `/bin/sh -c`, with `VMCATCHER_*` variables in its environment and the
//! event as one JSON object on its stdin, under a real timeout that kills its process group.
//! Values only ever travel in the environment and on stdin, never in the command line, so
//! hostile titles cannot inject shell code.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Map, Value};
use vmc_model::{EventType, Image};
use vmc_store::{Announcement, EventOutcome, NewEvent, Store};

/// One event, before delivery.
#[derive(Debug, Clone)]
pub struct Event {
    /// The type.
    pub event_type: EventType,
    /// The image it is about, if any.
    pub image: Option<Image>,
    /// The `dc:identifier` of the image's list.
    pub list_identifier: Option<String>,
    /// The list's `ad:vo`.
    pub vo: Option<String>,
    /// File name in the cache directory, or in the expired directory for `ExpirePostfix`.
    pub filename: Option<String>,
    /// The expiry reason for expiry events.
    pub reason: Option<String>,
}

impl Event {
    /// An event about no image (`ProcessPrefix`, `ProcessPostfix`).
    pub fn process(event_type: EventType) -> Self {
        Self {
            event_type,
            image: None,
            list_identifier: None,
            vo: None,
            filename: None,
            reason: None,
        }
    }
}

/// Delivers events to the handler and records each in the journal.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    handler: Option<String>,
    timeout: Duration,
    node: String,
    session: String,
    dirs: Vec<(&'static str, String)>,
    rdbms: Option<String>,
    failures: Arc<AtomicUsize>,
}

/// The outcome of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Journal id.
    pub id: i64,
    /// What happened.
    pub outcome: EventOutcome,
}

fn dir_var(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut s = abs.display().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    s
}

impl Dispatcher {
    /// A dispatcher for one run (one `VMCATCHER_EVENT_UUID_SESSION`).
    pub fn new(config: &crate::Config) -> Self {
        Self {
            handler: config.event_handler.clone(),
            timeout: config.event_timeout,
            node: config.node.clone(),
            session: uuid::Uuid::new_v4().to_string(),
            dirs: vec![
                ("VMCATCHER_CACHE_DIR_CACHE", dir_var(&config.cache_dir)),
                ("VMCATCHER_CACHE_DIR_DOWNLOAD", dir_var(&config.partial_dir)),
                ("VMCATCHER_CACHE_DIR_EXPIRE", dir_var(&config.expired_dir)),
            ],
            rdbms: config.rdbms_for_handlers.clone(),
            failures: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many deliveries have failed so far in this run.
    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::Relaxed)
    }

    /// This run's session id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The handler's environment additions for `event`, without empty values.
    pub fn variables(&self, event: &Event) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                vars.push((name.to_owned(), v.replace('\0', "")));
            }
        };
        put(
            "VMCATCHER_EVENT_TYPE",
            Some(event.event_type.as_str().to_owned()),
        );
        if let Some(image) = &event.image {
            put(
                "VMCATCHER_EVENT_DC_IDENTIFIER",
                Some(image.identifier.to_string()),
            );
            put("VMCATCHER_EVENT_DC_TITLE", Some(image.title.clone()));
            put(
                "VMCATCHER_EVENT_DC_DESCRIPTION",
                image.text("dc:description"),
            );
            put("VMCATCHER_EVENT_HV_URI", Some(image.uri.clone()));
            put("VMCATCHER_EVENT_HV_SIZE", Some(image.size.to_string()));
            put("VMCATCHER_EVENT_HV_VERSION", Some(image.version.clone()));
            put("VMCATCHER_EVENT_HV_HYPERVISOR", image.text("hv:hypervisor"));
            put("VMCATCHER_EVENT_HV_FORMAT", image.text("hv:format"));
            put("VMCATCHER_EVENT_SL_ARCH", image.text("sl:arch"));
            // An OCI image's digest is `algorithm:hex` (its layer's), not a sha512.
            put(
                "VMCATCHER_EVENT_SL_CHECKSUM_SHA512",
                Some(image.sha512.clone()).filter(|s| !crate::oci::is_layer_digest(s)),
            );
            put("VMCATCHER_EVENT_SL_COMMENTS", image.text("sl:comments"));
            put("VMCATCHER_EVENT_SL_OS", image.text("sl:os"));
            put("VMCATCHER_EVENT_SL_OSVERSION", image.text("sl:osversion"));
            put("VMCATCHER_EVENT_AD_MPURI", image.text("ad:mpuri"));
            // OCI images: the manifest digest (the version), the layer digest, the reference,
            // and every annotation as a JSON object (also in the stdin JSON's `image`).
            put(
                "VMCATCHER_EVENT_OCI_DIGEST",
                image.text(crate::oci::KEY_MANIFEST_DIGEST),
            );
            put(
                "VMCATCHER_EVENT_OCI_LAYER_DIGEST",
                image.text(crate::oci::KEY_LAYER_DIGEST),
            );
            put(
                "VMCATCHER_EVENT_OCI_REFERENCE",
                image.text(crate::oci::KEY_REFERENCE),
            );
            put(
                "VMCATCHER_EVENT_OCI_ANNOTATIONS",
                image
                    .extra
                    .get(crate::oci::KEY_ANNOTATIONS)
                    .map(|v| v.to_string()),
            );
        }
        put("VMCATCHER_EVENT_FILENAME", event.filename.clone());
        put(
            "VMCATCHER_EVENT_IL_DC_IDENTIFIER",
            event.list_identifier.clone(),
        );
        put("VMCATCHER_EVENT_VO", event.vo.clone());
        put("VMCATCHER_EVENT_UUID_SESSION", Some(self.session.clone()));
        for (name, value) in &self.dirs {
            put(name, Some(value.clone()));
        }
        put("VMCATCHER_RDBMS", self.rdbms.clone());
        vars
    }

    /// The event as the JSON object written to the handler's stdin and kept in the journal.
    pub fn payload(&self, event: &Event) -> Value {
        let mut map = Map::new();
        for (name, value) in self.variables(event) {
            map.insert(name, Value::String(value));
        }
        if let Some(reason) = &event.reason {
            map.insert("reason".into(), Value::String(reason.clone()));
        }
        if let Some(image) = &event.image {
            map.insert("image".into(), Value::Object(image.to_json()));
        }
        Value::Object(map)
    }

    /// Runs the handler for `event` (if one is configured) and journals the outcome.
    pub fn fire(&self, store: &Store, event: &Event, now: DateTime<Utc>) -> Delivery {
        let record = self.deliver(event, now);
        let outcome = record.outcome.clone();
        let id = store.record_event(&record).unwrap_or_else(|e| {
            tracing::error!("cannot journal event {}: {e}", event.event_type);
            0
        });
        Delivery { id, outcome }
    }

    /// [`fire`](Self::fire) for several events, in order. Without a handler they are journalled
    /// in one transaction (one commit for the lot, not one per event); with one, each outcome
    /// is journalled as soon as its handler has run.
    pub fn fire_all(&self, store: &Store, events: &[Event], now: DateTime<Utc>) -> Vec<Delivery> {
        if self.handler.is_some() {
            return events.iter().map(|e| self.fire(store, e, now)).collect();
        }
        let records: Vec<NewEvent> = events.iter().map(|e| self.deliver(e, now)).collect();
        let ids = store.record_events(&records).unwrap_or_else(|e| {
            tracing::error!("cannot journal {} events: {e}", records.len());
            vec![0; records.len()]
        });
        records
            .into_iter()
            .zip(ids)
            .map(|(record, id)| Delivery {
                id,
                outcome: record.outcome,
            })
            .collect()
    }

    /// The outbox entry announcing `event`, to be written in the transaction of the work it
    /// announces (see [`Store::record_cached_and_announce`]) and then delivered with
    /// [`Dispatcher::fire_announced`].
    pub fn announcement(&self, event: &Event, now: DateTime<Utc>) -> Announcement {
        Announcement {
            node: self.node.clone(),
            session: self.session.clone(),
            event_type: event.event_type,
            identifier: event.image.as_ref().map(|i| i.identifier.to_string()),
            payload: self.payload(event),
            at: now,
        }
    }

    /// Runs the handler for the announcement written to the outbox as `id` and moves it to
    /// the journal with its outcome. Replayed announcements (another run's) keep the payload
    /// their run wrote, session id included.
    pub fn fire_announced(
        &self,
        store: &Store,
        id: i64,
        announced: &Announcement,
        now: DateTime<Utc>,
    ) -> Delivery {
        let mut record = self.deliver_payload(
            announced.event_type,
            announced.identifier.clone(),
            announced.payload.clone(),
            now,
        );
        // The outbox row is now claimed by this run: the journal row moves it out.
        record.session.clone_from(&self.session);
        let outcome = record.outcome.clone();
        let id = store.deliver_announced(id, &record).unwrap_or_else(|e| {
            tracing::error!("cannot journal event {}: {e}", announced.event_type);
            0
        });
        Delivery { id, outcome }
    }

    /// Delivers the announcements that runs which died never delivered: an earlier run's of
    /// this node at once, another node's once it has been pending longer than `grace`. Each
    /// is claimed for this run first, so it is delivered by one run. Returns how many.
    pub fn replay_orphans(
        &self,
        store: &Store,
        grace: std::time::Duration,
        now: DateTime<Utc>,
    ) -> usize {
        let grace = chrono::TimeDelta::from_std(grace).unwrap_or(chrono::TimeDelta::MAX);
        let orphans = match store.claim_orphaned_events(&self.node, &self.session, now, grace) {
            Ok(orphans) => orphans,
            Err(e) => {
                tracing::error!("cannot read the event outbox: {e}");
                return 0;
            }
        };
        for pending in &orphans {
            tracing::info!(
                "replaying {} {} announced by node {} (run {}) and never delivered",
                pending.announcement.event_type,
                pending.announcement.identifier.as_deref().unwrap_or(""),
                pending.announcement.node,
                pending.announcement.session
            );
            self.fire_announced(store, pending.id, &pending.announcement, now);
        }
        orphans.len()
    }

    /// Runs the handler, if any, and returns the journal record of the outcome.
    fn deliver(&self, event: &Event, now: DateTime<Utc>) -> NewEvent {
        self.deliver_payload(
            event.event_type,
            event.image.as_ref().map(|i| i.identifier.to_string()),
            self.payload(event),
            now,
        )
    }

    fn deliver_payload(
        &self,
        event_type: EventType,
        identifier: Option<String>,
        payload: Value,
        now: DateTime<Utc>,
    ) -> NewEvent {
        let outcome = match &self.handler {
            None => EventOutcome::NoHandler,
            Some(cmd) => self.run(cmd, &payload),
        };
        if let EventOutcome::Failed { message } = &outcome {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "handler_failed: event handler failed for {event_type} {}: {message}",
                identifier.as_deref().unwrap_or("")
            );
        }
        NewEvent {
            session: self.session.clone(),
            event_type,
            identifier,
            payload,
            outcome,
            at: now,
        }
    }

    fn run(&self, cmd: &str, payload: &Value) -> EventOutcome {
        // The environment is the payload's `VMCATCHER_*` keys: what `variables` made of the
        // event, or what an earlier run announced.
        let vars = payload
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                (k.starts_with("VMCATCHER_"))
                    .then(|| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .flatten()
            });
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(cmd)
            .envs(vars)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(std::io::stderr()))
            .process_group(0);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return EventOutcome::Failed {
                    message: format!("cannot start /bin/sh: {e}"),
                };
            }
        };
        let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
        if let Some(mut stdin) = child.stdin.take() {
            let mut bytes = serde_json::to_vec(payload).unwrap_or_default();
            bytes.push(b'\n');
            // A handler that does not read its stdin must not block us: write from a thread
            // and ignore a closed pipe.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return if status.success() {
                        EventOutcome::Delivered
                    } else {
                        EventOutcome::Failed {
                            message: format!("handler exited with {status}"),
                        }
                    };
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    let _ = child.wait();
                    return EventOutcome::Failed {
                        message: format!(
                            "handler timed out after {} s; its process group was killed",
                            self.timeout.as_secs_f64()
                        ),
                    };
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    return EventOutcome::Failed {
                        message: format!("cannot wait for the handler: {e}"),
                    };
                }
            }
        }
    }
}
