//! Instants as latchkey stores, compares and prints them.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// An instant in UTC with microsecond precision, between the years 1 and
/// 9999.
///
/// Invariant: the offset is UTC and the sub-second part is a whole number of
/// microseconds. Microseconds are what PostgreSQL keeps, so a timestamp
/// survives a round trip through every store unchanged; the year range is what
/// RFC 3339 can print.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// Why a value is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not an RFC 3339 timestamp (for example 2027-01-31T12:00:00Z)")]
    Format,
    #[error("outside the years 1 to 9999")]
    OutOfRange,
}

impl Timestamp {
    /// Converts a date-time, dropping nanoseconds below the microsecond.
    ///
    /// # Errors
    /// [`TimestampError::OutOfRange`] outside the years 1 to 9999.
    pub fn from_datetime(datetime: OffsetDateTime) -> Result<Self, TimestampError> {
        let utc = datetime.to_offset(UtcOffset::UTC);
        if !(1..=9999).contains(&utc.year()) {
            return Err(TimestampError::OutOfRange);
        }
        let nanos = utc.nanosecond();
        let truncated = utc.replace_nanosecond(nanos - nanos % 1_000).map_err(|_| TimestampError::OutOfRange)?;
        Ok(Self(truncated))
    }

    /// Converts a date-time, clamping it into the years 1 to 9999. For a
    /// clock reading: a clock that is wildly off then makes every expiring
    /// token expired rather than valid forever.
    #[must_use]
    pub fn saturating_from_datetime(datetime: OffsetDateTime) -> Self {
        let clamped = datetime.to_offset(UtcOffset::UTC).clamp(
            time::macros::datetime!(0001-01-01 0:00 UTC),
            time::macros::datetime!(9999-12-31 23:59:59.999_999 UTC),
        );
        Self::from_datetime(clamped).unwrap_or(Self(clamped))
    }

    /// The instant `micros` microseconds after the Unix epoch.
    ///
    /// # Errors
    /// [`TimestampError::OutOfRange`] outside the years 1 to 9999.
    pub fn from_unix_micros(micros: i64) -> Result<Self, TimestampError> {
        let datetime = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .map_err(|_| TimestampError::OutOfRange)?;
        Self::from_datetime(datetime)
    }

    /// Parses an RFC 3339 timestamp with any offset.
    ///
    /// # Errors
    /// [`TimestampError::Format`] for anything else, [`TimestampError::OutOfRange`]
    /// for years outside 1 to 9999.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let datetime = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimestampError::Format)?;
        Self::from_datetime(datetime)
    }

    /// Microseconds since the Unix epoch.
    #[must_use]
    pub fn unix_micros(self) -> i64 {
        // Years 1..=9999 are about ±2.5e17 µs, well inside i64.
        i64::try_from(self.0.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
    }

    /// The same instant as a `time` date-time in UTC.
    #[must_use]
    pub fn as_datetime(self) -> OffsetDateTime {
        self.0
    }

    /// RFC 3339 in UTC with a `Z`, with as many fractional digits as needed.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        // Formatting cannot fail for a UTC date-time in years 1..=9999, which
        // is exactly what the invariant guarantees.
        self.0.format(&Rfc3339).unwrap_or_default()
    }

    /// This instant moved by `duration`, or `None` outside the valid range.
    #[must_use]
    pub fn checked_add(self, duration: Duration) -> Option<Self> {
        self.0.checked_add(duration).and_then(|dt| Self::from_datetime(dt).ok())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_rfc3339_in_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-27T11:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-27T10:00:00Z");
        let t = Timestamp::parse_rfc3339("2026-11-27T10:00:00.123456789Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-27T10:00:00.123456Z");
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for text in ["", "2026-11-27", "tomorrow", "2026-11-27 10:00:00", "2026-13-01T00:00:00Z"] {
            assert_eq!(Timestamp::parse_rfc3339(text), Err(TimestampError::Format), "{text}");
        }
    }

    #[test]
    fn clock_readings_clamp_into_range() {
        let ancient = OffsetDateTime::from_unix_timestamp(-70_000_000_000).unwrap();
        assert_eq!(Timestamp::saturating_from_datetime(ancient).to_rfc3339(), "0001-01-01T00:00:00Z");
        let now = OffsetDateTime::now_utc();
        assert_eq!(Timestamp::saturating_from_datetime(now), Timestamp::from_datetime(now).unwrap());
    }

    #[test]
    fn micros_round_trip_exactly() {
        for micros in [0, 1, -1, 1_795_000_000_123_456, 253_402_300_799_999_999] {
            assert_eq!(Timestamp::from_unix_micros(micros).unwrap().unix_micros(), micros);
        }
        assert_eq!(Timestamp::from_unix_micros(i64::MAX), Err(TimestampError::OutOfRange));
    }
}
