//! The event journal: every event with its delivery outcome.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use vmc_model::EventType;

use crate::Store;
use crate::conn::AnyConnection;
use crate::error::StoreError;
use crate::rows::{EventRow, NewEventRow};
use crate::schema::{event_outbox, events};
use crate::time;
use crate::types::{Announcement, EventOutcome, EventRecord, NewEvent, PendingEvent};

#[derive(Queryable, Selectable)]
#[diesel(table_name = event_outbox)]
struct OutboxRow {
    id: i64,
    node: String,
    session: String,
    event_type: String,
    identifier: Option<String>,
    payload: String,
    created_at: String,
    claimed_at: String,
}

impl OutboxRow {
    fn into_pending(self) -> Result<PendingEvent, StoreError> {
        let corrupt = |what: &'static str, value: &str| StoreError::Corrupt {
            what,
            value: value.to_owned(),
        };
        let event_type: EventType = self
            .event_type
            .parse()
            .map_err(|_| corrupt("outbox event type", &self.event_type))?;
        let payload = serde_json::from_str(&self.payload)
            .map_err(|_| corrupt("outbox event payload", &self.payload))?;
        Ok(PendingEvent {
            id: self.id,
            announcement: Announcement {
                node: self.node,
                session: self.session,
                event_type,
                identifier: self.identifier,
                payload,
                at: time::decode("outbox event time", &self.created_at)?,
            },
            claimed_at: time::decode("outbox claim time", &self.claimed_at)?,
        })
    }
}

/// Writes `event` to the outbox (claimed by its own run); returns its outbox id.
pub(crate) fn insert_announcement(
    conn: &mut AnyConnection,
    event: &Announcement,
) -> Result<i64, StoreError> {
    let at = time::encode("outbox event time", event.at)?;
    Ok(diesel::insert_into(event_outbox::table)
        .values((
            event_outbox::node.eq(&event.node),
            event_outbox::session.eq(&event.session),
            event_outbox::event_type.eq(event.event_type.as_str()),
            event_outbox::identifier.eq(&event.identifier),
            event_outbox::payload.eq(event.payload.to_string()),
            event_outbox::created_at.eq(&at),
            event_outbox::claimed_at.eq(&at),
        ))
        .returning(event_outbox::id)
        .get_result(conn)?)
}

impl Store {
    /// Writes an announcement to the outbox on its own (work that has no record to write with
    /// it); returns its outbox id.
    pub fn announce(&self, event: &Announcement) -> Result<i64, StoreError> {
        self.write(|conn| insert_announcement(conn, event))
    }

    /// Moves the outbox entry `id` to the journal as `delivered` (one transaction): the run
    /// that claimed it ran its handler. Returns the journal id. When another run claimed the
    /// entry meanwhile (this one was presumed dead), the outcome is journalled all the same.
    pub fn deliver_announced(&self, id: i64, delivered: &NewEvent) -> Result<i64, StoreError> {
        let row = event_row(delivered)?;
        self.write(|conn| {
            let gone = diesel::delete(
                event_outbox::table
                    .filter(event_outbox::id.eq(id))
                    .filter(event_outbox::session.eq(&delivered.session)),
            )
            .execute(conn)?;
            if gone == 0 {
                tracing::warn!("event {id} was claimed by another run while this one delivered it");
            }
            insert_event(conn, &row)
        })
    }

    /// Every announced event not yet delivered, oldest first.
    pub fn pending_events(&self) -> Result<Vec<PendingEvent>, StoreError> {
        self.read(|conn| {
            event_outbox::table
                .select(OutboxRow::as_select())
                .order(event_outbox::id.asc())
                .load(conn)?
                .into_iter()
                .map(OutboxRow::into_pending)
                .collect()
        })
    }

    /// Claims for run `session` of node `node` the announced events whose run died before
    /// delivering them, oldest first: those of an earlier run of this node (a node runs once
    /// at a time), and those of any node claimed longer than `grace` ago (longer than a live
    /// run takes to run a handler). Each claim is a compare-and-set on the claiming session,
    /// so two runs replaying at once claim each event once.
    pub fn claim_orphaned_events(
        &self,
        node: &str,
        session: &str,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let stale = time::encode("outbox claim time", now - grace)?;
        let now_text = time::encode("outbox claim time", now)?;
        self.write(|conn| {
            let rows: Vec<OutboxRow> = event_outbox::table
                .filter(event_outbox::session.ne(session))
                .filter(
                    event_outbox::node
                        .eq(node)
                        .or(event_outbox::claimed_at.le(&stale)),
                )
                .select(OutboxRow::as_select())
                .order(event_outbox::id.asc())
                .load(conn)?;
            let mut claimed = Vec::new();
            for row in rows {
                let taken = diesel::update(
                    event_outbox::table
                        .filter(event_outbox::id.eq(row.id))
                        .filter(event_outbox::session.eq(&row.session))
                        .filter(event_outbox::claimed_at.eq(&row.claimed_at)),
                )
                .set((
                    event_outbox::session.eq(session),
                    event_outbox::claimed_at.eq(&now_text),
                ))
                .execute(conn)?;
                if taken == 1 {
                    let mut pending = row.into_pending()?;
                    pending.claimed_at = now;
                    claimed.push(pending);
                }
            }
            Ok(claimed)
        })
    }

    /// Journals an event; returns its id.
    pub fn record_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        let row = event_row(event)?;
        self.write(|conn| insert_event(conn, &row))
    }

    /// Journals several events in one transaction (one commit, so one fsync however many
    /// there are); returns their ids in order. Either all are journalled or none.
    pub fn record_events(&self, batch: &[NewEvent]) -> Result<Vec<i64>, StoreError> {
        let rows = batch.iter().map(event_row).collect::<Result<Vec<_>, _>>()?;
        self.write(|conn| rows.iter().map(|row| insert_event(conn, row)).collect())
    }

    /// Journalled events, oldest first: all of them, or only those whose delivery failed;
    /// with `limit`, the newest `limit` of those.
    pub fn events(
        &self,
        failed_only: bool,
        limit: Option<usize>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.read(|conn| {
            let mut query = events::table
                .select(EventRow::as_select())
                .order(events::id.desc())
                .into_boxed();
            if failed_only {
                query = query.filter(events::outcome.eq("failed"));
            }
            if let Some(limit) = limit {
                query = query.limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            let mut records = query
                .load(conn)?
                .into_iter()
                .map(EventRow::into_model)
                .collect::<Result<Vec<_>, _>>()?;
            records.reverse();
            Ok(records)
        })
    }
}

fn event_row(event: &NewEvent) -> Result<NewEventRow<'_>, StoreError> {
    Ok(NewEventRow {
        session: &event.session,
        event_type: event.event_type.as_str(),
        identifier: event.identifier.as_deref(),
        payload: event.payload.to_string(),
        outcome: event.outcome.as_str(),
        failure: match &event.outcome {
            EventOutcome::Failed { message } => Some(message),
            _ => None,
        },
        at: time::encode("event time", event.at)?,
    })
}

fn insert_event(conn: &mut AnyConnection, row: &NewEventRow<'_>) -> Result<i64, StoreError> {
    Ok(diesel::insert_into(events::table)
        .values(row)
        .returning(events::id)
        .get_result(conn)?)
}
