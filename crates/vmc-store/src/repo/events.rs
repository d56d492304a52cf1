//! The event journal: every event with its delivery outcome.

use diesel::prelude::*;

use crate::Store;
use crate::conn::AnyConnection;
use crate::error::StoreError;
use crate::rows::{EventRow, NewEventRow};
use crate::schema::events;
use crate::time;
use crate::types::{EventOutcome, EventRecord, NewEvent};

impl Store {
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
