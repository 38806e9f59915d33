//! Time as the platform stores it: UTC in TIMESTAMP columns (Spin cannot read TIMESTAMPTZ),
//! RFC 3339 with a `Z` in the API.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// The current UTC time (the host's wall clock).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

/// `2026-11-21T09:41:25.119171Z`: microseconds, as the database keeps them.
pub fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 instant (any offset) into UTC.
pub fn parse_rfc3339(text: &str) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(text).ok().map(|at| at.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_utc_instants() {
        let at = parse_rfc3339("2026-11-21T10:41:25.5+01:00").unwrap();
        assert_eq!(rfc3339(at), "2026-11-21T09:41:25.500000Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
