//! The time options: `-icount shift=N` (the deterministic instruction-count clock) and
//! `-rtc base=utc|localtime|DATETIME` (what the CMOS clock reads at start), in QEMU's spelling.

use super::values::{bad, split_props, ValueError};
use crate::devices::clock::MAX_ICOUNT_SHIFT;
use crate::machine::RtcBase;

/// `-icount N`, `-icount shift=N[,sleep=off]`: the shift (each instruction is 2^N ns).
pub fn parse_icount(value: &str) -> Result<u32, ValueError> {
    let (head, props) = split_props(value);
    let mut shift = head.map(str::to_string);
    for (k, v) in props {
        match (k, v) {
            ("shift", v) => shift = Some(v.to_string()),
            // kemu never sleeps in icount mode: idle time is warped over, as with sleep=off.
            ("sleep", "off") => {}
            ("sleep", _) => {
                return Err(bad(
                    "icount",
                    value,
                    "sleep=on is not supported (kemu warps idle time: sleep=off)",
                ))
            }
            ("align", _) => return Err(bad("icount", value, "align is not supported")),
            (k, _) => return Err(bad("icount", value, format!("unknown property '{k}'"))),
        }
    }
    let Some(shift) = shift else {
        return Err(bad("icount", value, "expected shift=N (N in 0..=10)"));
    };
    if shift == "auto" {
        return Err(bad(
            "icount",
            value,
            "shift=auto is not supported (give shift=N, N in 0..=10)",
        ));
    }
    match shift.parse::<u32>() {
        Ok(n) if n <= MAX_ICOUNT_SHIFT => Ok(n),
        _ => Err(bad(
            "icount",
            value,
            format!("shift must be a number in 0..={MAX_ICOUNT_SHIFT}"),
        )),
    }
}

/// `-rtc base=utc|localtime|YYYY-MM-DD[THH:MM:SS][,clock=host|rt|vm][,driftfix=none|slew]`.
pub fn parse_rtc(value: &str) -> Result<RtcBase, ValueError> {
    let (head, props) = split_props(value);
    if let Some(h) = head {
        return Err(bad("rtc", value, format!("expected key=value, not '{h}'")));
    }
    let mut base = RtcBase::Utc;
    for (k, v) in props {
        match k {
            "base" => {
                base = match v {
                    "utc" => RtcBase::Utc,
                    "localtime" => RtcBase::LocalTime,
                    date => RtcBase::Fixed(parse_datetime(date).ok_or_else(|| {
                        bad(
                            "rtc",
                            value,
                            "base must be utc, localtime or YYYY-MM-DDTHH:MM:SS",
                        )
                    })?),
                }
            }
            // The RTC always counts the machine's clock (host time, or virtual time under
            // -icount), and no timer interrupt of it is ever lost to slew.
            "clock" if matches!(v, "host" | "rt" | "vm") => {}
            "driftfix" if matches!(v, "none" | "slew") => {}
            _ => return Err(bad("rtc", value, format!("unsupported property '{k}={v}'"))),
        }
    }
    Ok(base)
}

/// `YYYY-MM-DDTHH:MM:SS` or `YYYY-MM-DD` (UTC, years 1970-9999) in seconds since the epoch.
pub fn parse_datetime(s: &str) -> Option<u64> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |t: &str, len: usize| -> Option<u64> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d.as_slice() else {
        return None;
    };
    let (y, mo, da) = (num(y, 4)?, num(mo, 2)?, num(da, 2)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || da < 1 || da > days_in(y, mo) {
        return None;
    }
    let (h, mi, se) = match time {
        None => (0, 0, 0),
        Some(t) => {
            let p: Vec<&str> = t.split(':').collect();
            let [h, mi, se] = p.as_slice() else {
                return None;
            };
            (num(h, 2)?, num(mi, 2)?, num(se, 2)?)
        }
    };
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, da);
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

fn leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in(y: u64, m: u64) -> u64 {
    match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `y-m-d` (y >= 1970), counting whole years then whole months.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let years: u64 = (1970..y).map(|yy| if leap(yy) { 366 } else { 365 }).sum();
    let months: u64 = (1..m).map(|mm| days_in(y, mm)).sum();
    years + months + d - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icount_spellings() {
        assert_eq!(parse_icount("shift=3"), Ok(3));
        assert_eq!(parse_icount("7"), Ok(7));
        assert_eq!(parse_icount("shift=0,sleep=off"), Ok(0));
        assert_eq!(parse_icount("10"), Ok(10));
        let e = parse_icount("shift=auto").unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        assert!(parse_icount("shift=11").is_err());
        assert!(parse_icount("shift=-1").is_err());
        assert!(parse_icount("sleep=on,shift=2").is_err());
        assert!(parse_icount("").is_err());
        assert!(parse_icount("shift=1,bogus=2").is_err());
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_datetime("2026-01-01T00:00:00"), Some(1_767_225_600));
        assert_eq!(parse_datetime("2000-03-01"), Some(951_868_800));
        assert_eq!(parse_datetime("2024-02-29T23:59:59"), Some(1_709_251_199));
        assert_eq!(parse_datetime("2023-02-29"), None);
        assert_eq!(parse_datetime("2026-13-01"), None);
        assert_eq!(parse_datetime("2026-01-01T24:00:00"), None);
        assert_eq!(parse_datetime("26-01-01"), None);
        assert_eq!(parse_datetime("1969-12-31"), None);
        assert_eq!(parse_datetime("2026-01-01T00:00"), None);
    }

    #[test]
    fn rtc_spellings() {
        assert_eq!(parse_rtc("base=utc"), Ok(RtcBase::Utc));
        assert_eq!(parse_rtc("base=localtime,clock=vm"), Ok(RtcBase::LocalTime));
        assert_eq!(
            parse_rtc("base=2026-01-01T00:00:00"),
            Ok(RtcBase::Fixed(1_767_225_600))
        );
        assert!(parse_rtc("base=yesterday").is_err());
        assert!(parse_rtc("clock=sometimes").is_err());
        assert!(parse_rtc("utc").is_err());
    }
}
