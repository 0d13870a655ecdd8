//! The system clock: the `Clock` port over the operating system's wall
//! clock. A crate of its own so that the binary and any adapter can use it
//! without depending on another adapter.
//!
//! Architecture invariant: as every adapter, it depends on the ports and
//! the domain only.

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
