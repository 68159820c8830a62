//! The CMOS real-time clock's wall time: `-rtc base=` fixes where it starts, the machine's
//! [`Clock`] how it advances. Under `-icount` with a fixed base, every reading is a function of
//! the instruction count, so the guest's `date` repeats from run to run.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::RtcBase;
use crate::devices::clock::Clock;
use crate::devices::cmos::WallClock;

/// The wall clock for the CMOS: `base` at the clock's present reading, then moving with it.
pub fn wall_clock(base: RtcBase, clock: Arc<dyn Clock>) -> WallClock {
    let start = start_time(base);
    let origin = clock.now_ns();
    Box::new(move || start + Duration::from_nanos(clock.now_ns().saturating_sub(origin)))
}

/// The wall time `base` names, now.
fn start_time(base: RtcBase) -> SystemTime {
    match base {
        RtcBase::Utc => SystemTime::now(),
        RtcBase::LocalTime => {
            let now = SystemTime::now();
            let offset = local_offset_secs(now);
            if offset >= 0 {
                now + Duration::from_secs(offset.unsigned_abs())
            } else {
                now.checked_sub(Duration::from_secs(offset.unsigned_abs()))
                    .unwrap_or(now)
            }
        }
        RtcBase::Fixed(secs) => UNIX_EPOCH + Duration::from_secs(secs),
    }
}

/// The host's offset of local time from UTC at `t`, in seconds (0 if unknown).
fn local_offset_secs(t: SystemTime) -> i64 {
    let Ok(since) = t.duration_since(UNIX_EPOCH) else {
        return 0;
    };
    let Ok(secs) = libc::time_t::try_from(since.as_secs()) else {
        return 0;
    };
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals of the right types; localtime_r writes only `tm`
    // and returns null on failure, which is checked.
    let r = unsafe { libc::localtime_r(&secs, &mut tm) };
    if r.is_null() {
        0
    } else {
        tm.tm_gmtoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::clock::ManualClock;

    #[test]
    fn fixed_base_moves_with_the_machine_clock() {
        let clock = Arc::new(ManualClock::new(5_000_000_000));
        let wall = wall_clock(RtcBase::Fixed(1_767_225_600), clock.clone());
        assert_eq!(wall(), UNIX_EPOCH + Duration::from_secs(1_767_225_600));
        clock.advance(2_500_000_000);
        assert_eq!(
            wall(),
            UNIX_EPOCH + Duration::from_millis(1_767_225_602_500)
        );
    }

    #[test]
    fn utc_base_starts_at_host_time() {
        let clock = Arc::new(ManualClock::new(0));
        let before = SystemTime::now();
        let wall = wall_clock(RtcBase::Utc, clock);
        let t = wall();
        assert!(t >= before && t <= SystemTime::now());
        let local = wall_clock(RtcBase::LocalTime, Arc::new(ManualClock::new(0)))();
        let gap = local
            .duration_since(t)
            .unwrap_or_else(|e| e.duration())
            .as_secs();
        assert!(gap <= 14 * 3600 + 60, "local offset within ±14 h: {gap}");
    }
}
