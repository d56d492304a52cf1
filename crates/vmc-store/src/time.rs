//! Timestamps as stored: RFC 3339 UTC text with nine fraction digits, e.g.
//! `2027-01-31T10:00:00.000000000Z`. The width is fixed, so text order is time order on
//! every backend, and nothing of the instant is lost.

use chrono::{DateTime, Datelike, Utc};

use crate::error::StoreError;

/// The stored form of `t`; years outside 0–9999 cannot be stored.
pub(crate) fn encode(what: &'static str, t: DateTime<Utc>) -> Result<String, StoreError> {
    if !(0..=9999).contains(&t.year()) {
        return Err(StoreError::OutOfRange {
            what,
            value: t.to_rfc3339(),
        });
    }
    Ok(t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string())
}

/// Reads a stored timestamp back.
pub(crate) fn decode(what: &'static str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt {
            what,
            value: text.to_owned(),
        })
}

/// [`decode`] for a nullable column.
pub(crate) fn decode_opt(
    what: &'static str,
    text: Option<&str>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(|t| decode(what, t)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn round_trips_to_the_nanosecond_and_sorts_as_text() {
        let times = [
            Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap(),
            Utc.timestamp_opt(1_800_000_000, 5).unwrap(),
            Utc.timestamp_opt(1_800_000_000, 123_456_789).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        ];
        let mut encoded = Vec::new();
        for t in times {
            let text = encode("t", t).unwrap();
            assert_eq!(text.len(), 30, "{text}");
            assert_eq!(decode("t", &text).unwrap(), t);
            encoded.push(text);
        }
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(sorted, encoded);
    }

    #[test]
    fn refuses_unstorable_years_and_bad_text() {
        let far = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
        assert!(matches!(
            encode("t", far),
            Err(StoreError::OutOfRange { .. })
        ));
        assert!(matches!(
            decode("t", "yesterday"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
