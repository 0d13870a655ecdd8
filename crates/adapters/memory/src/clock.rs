//! The system clock.

use latchkey_domain::Timestamp;
use latchkey_ports::Clock;
use time::OffsetDateTime;

/// Reads the operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::saturating_from_datetime(OffsetDateTime::now_utc())
    }
}
