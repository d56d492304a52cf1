//! Nodes and leases: several vmc processes of one site working against one database.
//!
//! A node registers ([`Store::register_node`]) when a run starts and beats
//! ([`Store::heartbeat`]) while it works. A lease ([`Store::try_lease`]) gives one node at a
//! time one piece of site-wide work — downloading one image, importing one list, deciding
//! expiry — for a bounded time: it is taken when free, expired, or already held by the taker,
//! and every take increments its token. Renewing, checking and releasing name the token, so a
//! node that lost its lease (it stalled past the expiry and another node took over) can no
//! longer act on it: a fencing token.
//!
//! Taking is two statements that are each atomic on both backends: an `INSERT … ON CONFLICT DO
//! NOTHING` (the lease was free), else an `UPDATE … WHERE expires_at <= now OR node = me` (it
//! had expired, or is ours). On PostgreSQL, two nodes racing for an expired lease both reach
//! the row lock; the second re-checks the predicate after the first commits and finds the new
//! expiry, so exactly one wins. On SQLite the write transaction already serialises them.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use crate::Store;
use crate::conn::AnyConnection;
use crate::error::StoreError;
use crate::schema::{leases, node_runs, nodes};
use crate::time;
use crate::types::{Lease, NodeInfo, NodeRecord, WorkRun};

/// Runs an upsert, which the multi-backend connection cannot express, on the concrete
/// connection (the statement is the same on both backends).
macro_rules! on_backend {
    ($conn:expr, $query:expr) => {
        match $conn {
            AnyConnection::Sqlite(c) => $query.execute(c),
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(c) => $query.execute(c),
        }
    };
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = nodes)]
struct NodeRow {
    name: String,
    host: String,
    pid: i64,
    version: String,
    started_at: String,
    last_seen: String,
    activity: String,
    url: Option<String>,
    cache_mode: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = leases)]
struct LeaseRow {
    resource: String,
    node: String,
    token: i64,
    acquired_at: String,
    expires_at: String,
}

impl LeaseRow {
    fn into_lease(self) -> Result<Lease, StoreError> {
        Ok(Lease {
            resource: self.resource,
            node: self.node,
            token: self.token,
            acquired_at: time::decode("lease time", &self.acquired_at)?,
            expires_at: time::decode("lease expiry", &self.expires_at)?,
        })
    }
}

impl Store {
    /// Registers (or re-registers) a node at the start of a run: host, pid and version are
    /// replaced, `started_at` and `last_seen` set to `now`, the activity to `activity`.
    pub fn register_node(
        &self,
        node: &NodeInfo,
        activity: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = time::encode("node time", now)?;
        let pid = i64::from(node.pid);
        self.write(|conn| {
            let upsert = diesel::insert_into(nodes::table)
                .values((
                    nodes::name.eq(&node.name),
                    nodes::host.eq(&node.host),
                    nodes::pid.eq(pid),
                    nodes::version.eq(&node.version),
                    nodes::started_at.eq(&now),
                    nodes::last_seen.eq(&now),
                    nodes::activity.eq(activity),
                    nodes::url.eq(&node.url),
                    nodes::cache_mode.eq(&node.cache_mode),
                ))
                .on_conflict(nodes::name)
                .do_update()
                .set((
                    nodes::host.eq(&node.host),
                    nodes::pid.eq(pid),
                    nodes::version.eq(&node.version),
                    nodes::started_at.eq(&now),
                    nodes::last_seen.eq(&now),
                    nodes::activity.eq(activity),
                    nodes::url.eq(&node.url),
                    nodes::cache_mode.eq(&node.cache_mode),
                ));
            on_backend!(conn, upsert)?;
            Ok(())
        })
    }

    /// Records that node `name` is alive and doing `activity` (e.g. `downloading 3 images`).
    /// Fails with [`StoreError::NotFound`] when the node is not registered.
    pub fn heartbeat(
        &self,
        name: &str,
        activity: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = time::encode("node time", now)?;
        self.write(|conn| {
            let rows = diesel::update(nodes::table.find(name))
                .set((nodes::last_seen.eq(&now), nodes::activity.eq(activity)))
                .execute(conn)?;
            super::require_touched(rows, "node", name)
        })
    }

    /// Every registered node, by name, with the leases it holds (expired ones included: the
    /// caller compares `expires_at` with its clock).
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read(|conn| {
            let rows: Vec<NodeRow> = nodes::table
                .select(NodeRow::as_select())
                .order(nodes::name.asc())
                .load(conn)?;
            let held: Vec<LeaseRow> = leases::table
                .select(LeaseRow::as_select())
                .order(leases::resource.asc())
                .load(conn)?;
            let mut held: Vec<Lease> = held
                .into_iter()
                .map(LeaseRow::into_lease)
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(|row| {
                    let (mine, rest): (Vec<Lease>, Vec<Lease>) =
                        held.drain(..).partition(|l| l.node == row.name);
                    held = rest;
                    Ok(NodeRecord {
                        info: NodeInfo {
                            name: row.name,
                            host: row.host,
                            pid: u32::try_from(row.pid).unwrap_or(0),
                            version: row.version,
                            url: row.url,
                            cache_mode: row.cache_mode,
                        },
                        started_at: time::decode("node start", &row.started_at)?,
                        last_seen: time::decode("node heartbeat", &row.last_seen)?,
                        activity: row.activity,
                        leases: mine,
                    })
                })
                .collect()
        })
    }

    /// Removes node `name` and releases its leases. Fails with [`StoreError::NotFound`] when
    /// there is no such node.
    pub fn remove_node(&self, name: &str) -> Result<(), StoreError> {
        self.write(|conn| {
            diesel::delete(leases::table.filter(leases::node.eq(name))).execute(conn)?;
            let rows = diesel::delete(nodes::table.find(name)).execute(conn)?;
            super::require_touched(rows, "node", name)
        })
    }

    /// Takes the lease on `resource` for node `node` until `now + ttl`, when it is free,
    /// expired, or already `node`'s (then it is renewed with a new token). `None` when another
    /// node holds it.
    pub fn try_lease(
        &self,
        resource: &str,
        node: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let at = time::encode("lease time", now)?;
        let until = time::encode("lease expiry", now + ttl)?;
        self.write(|conn| {
            let insert = diesel::insert_into(leases::table)
                .values((
                    leases::resource.eq(resource),
                    leases::node.eq(node),
                    leases::token.eq(1_i64),
                    leases::acquired_at.eq(&at),
                    leases::expires_at.eq(&until),
                ))
                .on_conflict_do_nothing();
            let inserted = on_backend!(conn, insert)?;
            if inserted == 0 {
                let taken = diesel::update(
                    leases::table
                        .filter(leases::resource.eq(resource))
                        .filter(leases::expires_at.le(&at).or(leases::node.eq(node))),
                )
                .set((
                    leases::node.eq(node),
                    leases::token.eq(leases::token + 1_i64),
                    leases::acquired_at.eq(&at),
                    leases::expires_at.eq(&until),
                ))
                .execute(conn)?;
                if taken == 0 {
                    return Ok(None);
                }
            }
            let row: LeaseRow = leases::table
                .find(resource)
                .select(LeaseRow::as_select())
                .first(conn)?;
            row.into_lease().map(Some)
        })
    }

    /// Extends `lease` to `now + ttl` while it is still the holder's (same node and token);
    /// `false` when it was lost (expired and taken by another node, or released).
    pub fn renew_lease(
        &self,
        lease: &mut Lease,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let until = time::encode("lease expiry", now + ttl)?;
        let rows = self.write(|conn| {
            Ok(diesel::update(
                leases::table
                    .filter(leases::resource.eq(&lease.resource))
                    .filter(leases::node.eq(&lease.node))
                    .filter(leases::token.eq(lease.token)),
            )
            .set(leases::expires_at.eq(&until))
            .execute(conn)?)
        })?;
        if rows == 1 {
            lease.expires_at = now + ttl;
        }
        Ok(rows == 1)
    }

    /// Whether `lease` is still held by its node with its token and unexpired at `now`: the
    /// check before acting on the work it guards (admitting a download, say).
    pub fn holds_lease(&self, lease: &Lease, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let at = time::encode("lease time", now)?;
        self.read(|conn| {
            let found = leases::table
                .filter(leases::resource.eq(&lease.resource))
                .filter(leases::node.eq(&lease.node))
                .filter(leases::token.eq(lease.token))
                .filter(leases::expires_at.gt(&at))
                .count()
                .get_result::<i64>(conn)?;
            Ok(found == 1)
        })
    }

    /// Gives `lease` up (a no-op when it was already lost).
    pub fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.write(|conn| {
            diesel::delete(
                leases::table
                    .filter(leases::resource.eq(&lease.resource))
                    .filter(leases::node.eq(&lease.node))
                    .filter(leases::token.eq(lease.token)),
            )
            .execute(conn)?;
            Ok(())
        })
    }

    /// The current holder of `resource`'s lease, if any (expired or not).
    pub fn lease(&self, resource: &str) -> Result<Option<Lease>, StoreError> {
        self.read(|conn| {
            leases::table
                .find(resource)
                .select(LeaseRow::as_select())
                .first(conn)
                .optional()?
                .map(LeaseRow::into_lease)
                .transpose()
        })
    }

    /// Records that node `node` finished the work `resource` at `at` (replacing the previous
    /// record of that work).
    pub fn record_run(
        &self,
        resource: &str,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = time::encode("run time", at)?;
        self.write(|conn| {
            let upsert = diesel::insert_into(node_runs::table)
                .values((
                    node_runs::resource.eq(resource),
                    node_runs::node.eq(node),
                    node_runs::finished_at.eq(&at),
                ))
                .on_conflict(node_runs::resource)
                .do_update()
                .set((node_runs::node.eq(node), node_runs::finished_at.eq(&at)));
            on_backend!(conn, upsert)?;
            Ok(())
        })
    }

    /// Records that node `node` did the one-off work `resource` at `at` unless some node did
    /// already: `true` for the first node only (an `INSERT … ON CONFLICT DO NOTHING`, atomic
    /// on both backends). The site-wide "once" of work every node repeats for itself, such as
    /// announcing an expiry that each node's own cache carries out.
    pub fn claim_once(
        &self,
        resource: &str,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = time::encode("run time", at)?;
        self.write(|conn| {
            let insert = diesel::insert_into(node_runs::table)
                .values((
                    node_runs::resource.eq(resource),
                    node_runs::node.eq(node),
                    node_runs::finished_at.eq(&at),
                ))
                .on_conflict_do_nothing();
            Ok(on_backend!(conn, insert)? == 1)
        })
    }

    /// [`Store::claim_once`], also `true` when `node` itself made the claim before (its
    /// earlier run claimed the work and died before doing it): whether the work is `node`'s,
    /// in one transaction.
    pub fn claim_or_own(
        &self,
        resource: &str,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = time::encode("run time", at)?;
        self.write(|conn| {
            let insert = diesel::insert_into(node_runs::table)
                .values((
                    node_runs::resource.eq(resource),
                    node_runs::node.eq(node),
                    node_runs::finished_at.eq(&at),
                ))
                .on_conflict_do_nothing();
            if on_backend!(conn, insert)? == 1 {
                return Ok(true);
            }
            let holder: String = node_runs::table
                .find(resource)
                .select(node_runs::node)
                .first(conn)?;
            Ok(holder == node)
        })
    }

    /// Gives back node `node`'s claim on the one-off work `resource` ([`Store::claim_once`]),
    /// when it could not do the work after all, so that the next node's claim succeeds.
    /// Another node's claim is left alone. Returns whether a claim was given back.
    pub fn release_claim(&self, resource: &str, node: &str) -> Result<bool, StoreError> {
        self.write(|conn| {
            let delete = diesel::delete(
                node_runs::table
                    .filter(node_runs::resource.eq(resource))
                    .filter(node_runs::node.eq(node)),
            );
            Ok(on_backend!(conn, delete)? == 1)
        })
    }

    /// When the work `resource` was last done, and by whom.
    pub fn last_run(&self, resource: &str) -> Result<Option<WorkRun>, StoreError> {
        self.read(|conn| {
            let row: Option<(String, String, String)> = node_runs::table
                .find(resource)
                .select((node_runs::resource, node_runs::node, node_runs::finished_at))
                .first(conn)
                .optional()?;
            row.map(|(resource, node, at)| {
                Ok(WorkRun {
                    resource,
                    node,
                    finished_at: time::decode("run time", &at)?,
                })
            })
            .transpose()
        })
    }
}
