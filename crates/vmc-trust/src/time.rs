//! Conversions between OpenSSL's ASN.1 times and chrono.

use chrono::{DateTime, Utc};
use openssl::asn1::{Asn1Time, Asn1TimeRef};

/// An ASN.1 time as a UTC instant (`None` if OpenSSL cannot compare it).
pub(crate) fn to_utc(t: &Asn1TimeRef) -> Option<DateTime<Utc>> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(t).ok()?;
    DateTime::from_timestamp(i64::from(diff.days) * 86_400 + i64::from(diff.secs), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_sides_of_the_epoch_and_past_2050() {
        for secs in [0i64, 1_700_000_000, 2_700_000_000, -86_401] {
            let t = Asn1Time::from_unix(secs).unwrap();
            assert_eq!(to_utc(&t).map(|d| d.timestamp()), Some(secs));
        }
    }
}
