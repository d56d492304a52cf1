//! This process as a node of a site: several vmc processes working against one database
//! (ARCHITECTURE.md, "Several nodes on one database").
//!
//! A run that does site work ([`Vmc::join_site`]) registers the node (name, host, pid,
//! version, start) and keeps a heartbeat thread that records, every third of the lease time,
//! that the node is alive and what it is doing ([`Vmc::set_activity`]). The thread has its own
//! database connection, so a long transaction of the run never delays a beat. When the run
//! ends ([`NodeRun`] is dropped) the thread records the node idle and stops.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use vmc_store::{Lease, NodeInfo, NodeRecord, Store};

use crate::doctor::NODE_GONE_AFTER;
use crate::error::CacheError;
use crate::report::LeftToOther;
use crate::{CacheMode, Vmc};

/// What a node says it does when no run is active.
pub const IDLE: &str = "idle";

/// The host name (`/proc/sys/kernel/hostname`), `localhost` when it cannot be read: the
/// default node name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Checks a node name given by the user: 1 to 128 printable characters without blanks.
pub fn check_node_name(name: &str) -> Result<(), CacheError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.chars().count() > 128 {
        Some("it is longer than 128 characters")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains a blank or a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CacheError::InvalidNodeName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `lease_time` as the store's duration (saturating at a day: a lease is minutes long).
pub(crate) fn lease_delta(lease_time: Duration) -> TimeDelta {
    TimeDelta::from_std(lease_time)
        .unwrap_or(TimeDelta::days(1))
        .min(TimeDelta::days(1))
}

/// How often the heartbeat beats: a third of the lease time, at least a second.
pub fn beat_interval(lease_time: Duration) -> Duration {
    (lease_time / 3).max(Duration::from_secs(1))
}

/// One run of this node: the heartbeat thread, stopped (and the node recorded idle) on drop.
#[must_use = "the heartbeat stops when the run is dropped"]
pub struct NodeRun {
    stop: Option<mpsc::Sender<()>>,
    beats: Option<JoinHandle<()>>,
    activity: Arc<Mutex<String>>,
    node: String,
}

impl std::fmt::Debug for NodeRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRun")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Drop for NodeRun {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(beats) = self.beats.take() {
            let _ = beats.join();
        }
        set(&self.activity, IDLE);
    }
}

fn set(activity: &Mutex<String>, text: &str) {
    let mut current = activity.lock().unwrap_or_else(PoisonError::into_inner);
    text.clone_into(&mut current);
}

/// The outcome of [`Vmc::lease_download`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// This node downloads the image.
    Mine,
    /// Another node holds the image's download lease.
    Held,
    /// Another node cached the image meanwhile: nothing to do.
    Cached,
}

/// Renews every lease in `held`; a lost one (lapsed and taken by another node) is dropped.
fn renew_held(store: &Store, held: &Mutex<Vec<Lease>>, now: DateTime<Utc>, ttl: TimeDelta) {
    let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
    held.retain_mut(|lease| match store.renew_lease(lease, now, ttl) {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!("lost the lease {} to another node", lease.resource);
            false
        }
        Err(e) => {
            tracing::warn!("cannot renew the lease {}: {e}", lease.resource);
            true
        }
    });
}

/// A node's state as `vmc node list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node as stored, with its leases.
    pub record: NodeRecord,
    /// Whether it beat within the lease time: a run is (probably) active or just ended.
    pub alive: bool,
}

/// The nodes other than `name`, seen within [`NODE_GONE_AFTER`], whose last run recorded
/// another cache mode than `mode` (nodes whose run recorded none are left out).
pub fn mixed_cache_modes<'a>(
    nodes: &'a [NodeRecord],
    name: &'a str,
    mode: CacheMode,
    now: DateTime<Utc>,
) -> impl Iterator<Item = &'a NodeRecord> {
    nodes.iter().filter(move |n| {
        n.info.name != name
            && now - n.last_seen <= NODE_GONE_AFTER
            && n.info
                .cache_mode
                .as_deref()
                .is_some_and(|m| m != mode.as_str())
    })
}

/// Whether process `pid` of this host exists (a process of another user counts).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Whether a node that last beat at `last_seen` counts as alive at `now`.
pub fn is_alive(last_seen: DateTime<Utc>, now: DateTime<Utc>, lease_time: Duration) -> bool {
    now - last_seen <= lease_delta(lease_time)
}

impl Vmc {
    /// Registers this node for a run doing `activity` and starts its heartbeat (every third of
    /// the lease time, on its own connection). Dropping the returned run stops it.
    ///
    /// Refused ([`CacheError::NodeNameInUse`]) while another run uses the name: a node of that
    /// name that beat within the lease time and is not idle, on another host or in another
    /// live process of this one. A run that was killed leaves its record busy; on its own host
    /// the next run sees its process gone and goes on, elsewhere the name is free once the
    /// lease time has passed since its last beat. The check and the registration are two
    /// statements: it catches a misconfiguration (two homes under one name), it is not a lock;
    /// two runs starting in the same instant can both pass it.
    pub fn join_site(&self, activity: &str) -> Result<NodeRun, CacheError> {
        let config = self.config();
        check_node_name(&config.node)?;
        let info = NodeInfo {
            name: config.node.clone(),
            host: host_name(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            url: config.node_url.clone(),
            cache_mode: Some(config.cache_mode.as_str().to_owned()),
        };
        let now = config.clock.now();
        let nodes = self.store().nodes()?;
        for other in mixed_cache_modes(&nodes, &info.name, config.cache_mode, now) {
            tracing::warn!(
                "node {} last ran with --cache-mode {} ({}), this one with {}: the nodes of a site must use one mode, or events are announced twice and copies are not found (see `vmc doctor`)",
                other.info.name,
                other.info.cache_mode.as_deref().unwrap_or_default(),
                other
                    .last_seen
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                config.cache_mode.as_str()
            );
        }
        if let Some(other) = nodes.into_iter().find(|n| n.info.name == info.name)
            && is_alive(other.last_seen, now, config.lease_time)
            && other.activity != IDLE
            && !(other.info.host == info.host
                && (other.info.pid == info.pid || !process_exists(other.info.pid)))
        {
            return Err(CacheError::NodeNameInUse {
                name: info.name,
                host: other.info.host,
                pid: other.info.pid,
                activity: other.activity,
                last_seen: other
                    .last_seen
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        set(&self.activity, activity);
        self.store().register_node(&info, activity, now)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let interval = beat_interval(config.lease_time);
        let shared = Arc::clone(&self.activity);
        let held = Arc::clone(&self.held);
        let ttl = lease_delta(config.lease_time);
        let url = config.database_url.clone();
        let node = config.node.clone();
        let clock = config.clock.clone();
        let beats = std::thread::Builder::new()
            .name("vmc-heartbeat".into())
            .spawn(move || {
                let mut store = None;
                let mut beat = |doing: &str, renew: bool| {
                    if store.is_none() {
                        store = Store::open(&url)
                            .map_err(|e| tracing::warn!("node {node}: heartbeat: {e}"))
                            .ok();
                    }
                    if let Some(store) = &store
                        && let Err(e) = store.heartbeat(&node, doing, clock.now())
                    {
                        tracing::warn!("node {node}: heartbeat: {e}");
                    }
                    if renew && let Some(store) = &store {
                        renew_held(store, &held, clock.now(), ttl);
                    }
                };
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let doing = shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    beat(&doing, true);
                }
                // The run ended: its last word.
                beat(IDLE, false);
            })
            .map_err(|e| CacheError::Io {
                action: "start the heartbeat thread of",
                path: config.node.clone().into(),
                source: e,
            })?;
        Ok(NodeRun {
            stop: Some(stop),
            beats: Some(beats),
            activity: Arc::clone(&self.activity),
            node: config.node.clone(),
        })
    }

    /// Takes the lease on `resource` for this node; while this node holds it (until
    /// [`Vmc::release`]) a running heartbeat renews it. `None` when another node holds it.
    pub fn take_lease(&self, resource: &str) -> Result<Option<Lease>, CacheError> {
        let config = self.config();
        let lease = self.store().try_lease(
            resource,
            &config.node,
            config.clock.now(),
            lease_delta(config.lease_time),
        )?;
        if let Some(lease) = &lease {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.retain(|l| l.resource != lease.resource);
            held.push(lease.clone());
        }
        Ok(lease)
    }

    /// Whether this node still holds `resource`'s lease (renewing it): the check before
    /// acting on the work it guards. `false` when it was lost to another node or never taken.
    pub fn still_holds(&self, resource: &str) -> Result<bool, CacheError> {
        let config = self.config();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(lease) = held.iter_mut().find(|l| l.resource == resource) else {
            return Ok(false);
        };
        Ok(self
            .store()
            .renew_lease(lease, config.clock.now(), lease_delta(config.lease_time))?)
    }

    /// Gives `resource`'s lease up (a no-op when this node does not hold it).
    pub fn release(&self, resource: &str) -> Result<(), CacheError> {
        let lease = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let at = held.iter().position(|l| l.resource == resource);
            at.map(|i| held.swap_remove(i))
        };
        if let Some(lease) = lease {
            self.store().release_lease(&lease)?;
        }
        Ok(())
    }

    /// Takes the image's `download:<id>` lease. [`Take::Held`] when another node of the site
    /// holds it; [`Take::Cached`] when another node cached the image since this run listed
    /// what to fetch (the lease is then given back). A database failure downloads anyway (the
    /// cache stays correct: admission is conflict-safe), and says so.
    pub(crate) fn lease_download(&self, record: &vmc_store::ImageRecord) -> Take {
        let id = record.image.identifier.as_str();
        let resource = format!("download:{id}");
        match self.take_lease(&resource) {
            Ok(None) => Take::Held,
            Ok(Some(_)) => {
                let cached = self
                    .store()
                    .is_cached(&record.image.identifier)
                    .unwrap_or(false);
                if cached {
                    if let Err(e) = self.release(&resource) {
                        tracing::warn!("cannot release the lease {resource}: {e}");
                    }
                    Take::Cached
                } else {
                    Take::Mine
                }
            }
            Err(e) => {
                tracing::warn!("{id}: cannot take the download lease, downloading anyway: {e}");
                Take::Mine
            }
        }
    }

    /// Who holds the download lease of an image this node left alone.
    pub(crate) fn download_holder(&self, record: &vmc_store::ImageRecord) -> Option<LeftToOther> {
        let id = record.image.identifier.as_str();
        let node = self
            .store()
            .lease(&format!("download:{id}"))
            .ok()
            .flatten()
            .map_or_else(|| "(another)".to_owned(), |l| l.node);
        Some(LeftToOther {
            identifier: id.to_owned(),
            node,
        })
    }

    /// After a download: `Some` when this node's lease was lost meanwhile (it lapsed and
    /// another node, still holding it, took the image over): the file is then not admitted.
    pub(crate) fn download_lost(&self, record: &vmc_store::ImageRecord) -> Option<LeftToOther> {
        let id = record.image.identifier.as_str();
        let resource = format!("download:{id}");
        if self.still_holds(&resource).unwrap_or(false) {
            return None;
        }
        let now = self.config().clock.now();
        let holder = self.store().lease(&resource).ok().flatten()?;
        (holder.node != self.config().node && holder.expires_at > now).then(|| LeftToOther {
            identifier: id.to_owned(),
            node: holder.node,
        })
    }

    pub(crate) fn release_download(&self, record: &vmc_store::ImageRecord) {
        let resource = format!("download:{}", record.image.identifier);
        if let Err(e) = self.release(&resource) {
            tracing::warn!("cannot release the lease {resource}: {e}");
        }
    }

    /// Whether the node holding the image's download lease serves its cache to the others (it
    /// registered a URL): worth waiting for, to copy from it. `true` when unknown.
    pub(crate) fn holder_serves(&self, record: &vmc_store::ImageRecord) -> bool {
        let resource = format!("download:{}", record.image.identifier);
        let Ok(Some(lease)) = self.store().lease(&resource) else {
            return true;
        };
        self.store().nodes().map_or(true, |nodes| {
            nodes
                .iter()
                .find(|n| n.info.name == lease.node)
                .is_none_or(|n| n.info.url.is_some())
        })
    }

    /// Says what this node is doing now; the next heartbeat records it.
    pub fn set_activity(&self, activity: &str) {
        set(&self.activity, activity);
    }

    /// Every node of the site with its leases, and whether each is alive by this node's clock.
    pub fn nodes(&self) -> Result<Vec<NodeStatus>, CacheError> {
        let now = self.config().clock.now();
        let lease_time = self.config().lease_time;
        Ok(self
            .store()
            .nodes()?
            .into_iter()
            .map(|record| NodeStatus {
                alive: is_alive(record.last_seen, now, lease_time),
                record,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_checked() {
        assert!(check_node_name("hv-01.example.org").is_ok());
        for bad in ["", "a b", "tab\there", &"x".repeat(129)] {
            let err = check_node_name(bad).unwrap_err();
            assert!(err.to_string().contains("node name"), "{err}");
        }
    }

    #[test]
    fn beats_come_every_third_of_the_lease_time() {
        assert_eq!(
            beat_interval(Duration::from_secs(120)),
            Duration::from_secs(40)
        );
        assert_eq!(
            beat_interval(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }
}
