//! The `Date` header value (RFC 9110 §5.6.7 IMF-fixdate), cached per thread.
//!
//! Formatting a date for every response is wasteful, so each thread keeps the
//! last formatted second. Unlike may_minihttp's shared cache (written by a
//! timer thread while readers copy it: a data race), the cache here is
//! thread-local, and every call compares the current whole second of the
//! realtime clock (the kernel's coarse one: at most a tick, a few
//! milliseconds, behind) with the cached one, so the value is never stale by
//! a second or more. Reading the clock is a vDSO call; the formatting is what we save.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// 9999-12-31T23:59:59Z: the last instant a four-digit year can express.
/// Later clocks are clamped rather than printing a malformed date.
const MAX_SECS: u64 = 253_402_300_799;

const SECS_PER_DAY: u64 = 86_400;

const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
const MONTH_NAMES: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// The last second this thread formatted, and its text.
#[derive(Clone, Copy)]
struct Cached {
    secs: u64,
    text: [u8; DATE_LEN],
}

thread_local! {
    // A `Cell` of a small `Copy` value rather than a `RefCell`: the callback
    // runs on a copy, so a nested `with_date` can never hit a borrow panic.
    // `u64::MAX` is a second no clock reaches, so the first call formats.
    static CACHE: Cell<Cached> = const {
        Cell::new(Cached { secs: u64::MAX, text: [0; DATE_LEN] })
    };
}

/// The current second (since the epoch) and its IMF-fixdate.
pub fn now() -> (u64, [u8; DATE_LEN]) {
    let secs = now_secs();
    (secs, imf(secs))
}

/// The IMF-fixdate of `secs` (since the epoch), from this thread's cache
/// when it is the second formatted last. A caller that keeps whole encoded
/// heads reads `now_secs` for every response and this only when the
/// second changed.
pub fn imf(secs: u64) -> [u8; DATE_LEN] {
    CACHE.with(|cache| {
        let mut cached = cache.get();
        if cached.secs != secs {
            cached = Cached {
                secs,
                text: format_imf(secs),
            };
            cache.set(cached);
        }
        cached.text
    })
}

/// Whole seconds since the epoch from the kernel's coarse realtime clock: a
/// few milliseconds behind at most (one tick), read without the timestamp
/// counter — this runs for every response, and a Date header only needs
/// the second. A clock before 1970 is a broken host; answering with the
/// epoch keeps the header well-formed instead of failing the response.
pub fn now_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        return u64::try_from(ts.tv_sec).unwrap_or(0);
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Formats seconds since the Unix epoch as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format_imf(secs_since_epoch: u64) -> [u8; DATE_LEN] {
    let secs = secs_since_epoch.min(MAX_SECS);
    let days = secs / SECS_PER_DAY;
    let secs_of_day = secs % SECS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 4 with Sunday = 0).
    let weekday = ((days + 4) % 7) as usize;

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[0..3].copy_from_slice(DAY_NAMES[weekday]);
    put_digits(&mut out[5..7], u64::from(day));
    out[8..11].copy_from_slice(MONTH_NAMES[usize::from(month - 1)]);
    put_digits(&mut out[12..16], year);
    put_digits(&mut out[17..19], secs_of_day / 3600);
    put_digits(&mut out[20..22], secs_of_day / 60 % 60);
    put_digits(&mut out[23..25], secs_of_day % 60);
    out
}

/// Writes `n` as zero-padded decimal filling `dst` exactly.
fn put_digits(dst: &mut [u8], mut n: u64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
///
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day
/// counts so every step is unsigned: shift the epoch to 0000-03-01 so that
/// leap days fall at the end of a year, then split into 400-year eras.
pub(crate) fn civil_from_days(days: u64) -> (u64, u8, u8) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: [u8; DATE_LEN]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// RFC 9110 §5.6.7: the example IMF-fixdate.
    #[test]
    fn rfc_example() {
        assert_eq!(s(format_imf(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn epoch_and_leap_days() {
        assert_eq!(s(format_imf(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        // 2000 is a leap year (divisible by 400).
        assert_eq!(s(format_imf(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(s(format_imf(951_868_799)), "Tue, 29 Feb 2000 23:59:59 GMT");
        assert_eq!(s(format_imf(951_868_800)), "Wed, 01 Mar 2000 00:00:00 GMT");
        // 2024-02-29 and the year boundary.
        assert_eq!(
            s(format_imf(1_709_208_000)),
            "Thu, 29 Feb 2024 12:00:00 GMT"
        );
        assert_eq!(
            s(format_imf(1_735_689_599)),
            "Tue, 31 Dec 2024 23:59:59 GMT"
        );
        assert_eq!(
            s(format_imf(1_735_689_600)),
            "Wed, 01 Jan 2025 00:00:00 GMT"
        );
    }

    #[test]
    fn far_future_is_clamped_to_a_four_digit_year() {
        assert_eq!(s(format_imf(MAX_SECS)), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(s(format_imf(u64::MAX)), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    /// Cross-check every day for 60 years against a naive day-by-day walk.
    #[test]
    fn civil_from_days_matches_a_naive_calendar() {
        let (mut y, mut m, mut d) = (1970u64, 1u8, 1u8);
        for days in 0..(60 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn now_is_current_and_well_formed() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (secs, got) = now();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // The coarse clock may lag a tick behind `before`.
        assert!((before.saturating_sub(1)..=after).contains(&secs));
        assert_eq!(got, format_imf(secs));
        assert!(got.ends_with(b" GMT"));
    }
}
