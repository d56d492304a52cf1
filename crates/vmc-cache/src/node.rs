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
use vmc_store::{NodeInfo, NodeRecord, Store};

use crate::Vmc;
use crate::error::CacheError;

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

/// A node's state as `vmc node list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node as stored, with its leases.
    pub record: NodeRecord,
    /// Whether it beat within the lease time: a run is (probably) active or just ended.
    pub alive: bool,
}

/// Whether a node that last beat at `last_seen` counts as alive at `now`.
pub fn is_alive(last_seen: DateTime<Utc>, now: DateTime<Utc>, lease_time: Duration) -> bool {
    now - last_seen <= lease_delta(lease_time)
}

impl Vmc {
    /// Registers this node for a run doing `activity` and starts its heartbeat (every third of
    /// the lease time, on its own connection). Dropping the returned run stops it.
    pub fn join_site(&self, activity: &str) -> Result<NodeRun, CacheError> {
        let config = self.config();
        check_node_name(&config.node)?;
        set(&self.activity, activity);
        let info = NodeInfo {
            name: config.node.clone(),
            host: host_name(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        self.store()
            .register_node(&info, activity, config.clock.now())?;
        let (stop, stopped) = mpsc::channel::<()>();
        let interval = beat_interval(config.lease_time);
        let shared = Arc::clone(&self.activity);
        let url = config.database_url.clone();
        let node = config.node.clone();
        let clock = config.clock.clone();
        let beats = std::thread::Builder::new()
            .name("vmc-heartbeat".into())
            .spawn(move || {
                let mut store = None;
                let mut beat = |doing: &str| {
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
                };
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let doing = shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    beat(&doing);
                }
                // The run ended: its last word.
                beat(IDLE);
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
