//! Slurm's two ways of writing time: time limits (`--time`, `sinfo %l`: `30`, `30:00`,
//! `1:30:00`, `2-12`, `2-12:30:00`, `infinite`) and local timestamps (`squeue %e`, `sacct End`:
//! `2026-12-01T22:23:16` in the local time zone of the command, or a word when there is none).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use std::fmt;
use std::time::{Duration, SystemTime};

/// A Slurm time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeLimit {
    Limited(Duration),
    Unlimited,
}

/// Why a Slurm time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error(
        "invalid Slurm time limit `{input}`: expected MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or \
         D-HH:MM:SS"
    )]
    InvalidLimit { input: String },
    #[error("Slurm time limit `{input}` is too long")]
    LimitTooLong { input: String },
    #[error("invalid Slurm timestamp `{input}`: expected YYYY-MM-DDTHH:MM:SS, N/A or Unknown")]
    InvalidTimestamp { input: String },
    #[error("Slurm timestamp `{input}` does not exist in the local time zone: {problem}")]
    LocalTime { input: String, problem: String },
}

/// Reads a time limit as Slurm writes and accepts it.
///
/// `0`, `infinite` and `unlimited` (any case) are [`TimeLimit::Unlimited`], as they are to Slurm.
pub fn parse_time_limit(input: &str) -> Result<TimeLimit, TimeError> {
    let s = input.trim();
    let invalid = || TimeError::InvalidLimit {
        input: input.to_string(),
    };
    if s.eq_ignore_ascii_case("infinite") || s.eq_ignore_ascii_case("unlimited") {
        return Ok(TimeLimit::Unlimited);
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(number(d).ok_or_else(invalid)?), rest),
        None => (None, s),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(number)
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    // Without days: M, M:S, H:M:S. With days: D-H, D-H:M, D-H:M:S.
    let (d, h, m, sec) = match (days, parts.as_slice()) {
        (None, [m]) => (0, 0, *m, 0),
        (None, [m, s]) => (0, 0, *m, *s),
        (None, [h, m, s]) => (0, *h, *m, *s),
        (Some(d), [h]) => (d, *h, 0, 0),
        (Some(d), [h, m]) => (d, *h, *m, 0),
        (Some(d), [h, m, s]) => (d, *h, *m, *s),
        _ => return Err(invalid()),
    };
    let too_long = || TimeError::LimitTooLong {
        input: input.to_string(),
    };
    let secs = d
        .checked_mul(86_400)
        .and_then(|x| x.checked_add(h.checked_mul(3_600)?))
        .and_then(|x| x.checked_add(m.checked_mul(60)?))
        .and_then(|x| x.checked_add(sec))
        .ok_or_else(too_long)?;
    // Slurm keeps limits in minutes in 32 bits.
    if secs / 60 > u64::from(u32::MAX) {
        return Err(too_long());
    }
    if secs == 0 {
        return Ok(TimeLimit::Unlimited);
    }
    Ok(TimeLimit::Limited(Duration::from_secs(secs)))
}

/// A field of digits only (no sign, no space), as a number.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `d` as Slurm's `D-HH:MM:SS` (or `HH:MM:SS` under a day), whole seconds.
pub fn format_time_limit(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3_600, rest % 3_600 / 60, rest % 60);
    if days > 0 {
        format!("{days}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

impl fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeLimit::Limited(d) => f.write_str(&format_time_limit(*d)),
            TimeLimit::Unlimited => f.write_str("UNLIMITED"),
        }
    }
}

/// Reads a timestamp that a Slurm command printed in the local time zone (as `TZ` or
/// `/etc/localtime` say, the same rules Slurm's commands follow). `None` for the words Slurm
/// prints when there is no such time: `N/A`, `Unknown`, `NONE`, `None`.
pub fn parse_local_timestamp(input: &str) -> Result<Option<SystemTime>, TimeError> {
    parse_timestamp_in(input, &TimeZone::system())
}

/// [`parse_local_timestamp`] in a given time zone.
pub(crate) fn parse_timestamp_in(
    input: &str,
    tz: &TimeZone,
) -> Result<Option<SystemTime>, TimeError> {
    let s = input.trim();
    if ["N/A", "Unknown", "NONE", "None", "UNLIMITED"]
        .iter()
        .any(|w| s.eq_ignore_ascii_case(w))
    {
        return Ok(None);
    }
    // Exactly YYYY-MM-DDTHH:MM:SS: jiff alone would accept other spellings too.
    let shape_ok = s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(TimeError::InvalidTimestamp {
            input: input.to_string(),
        });
    }
    let civil: DateTime = s.parse().map_err(|_| TimeError::InvalidTimestamp {
        input: input.to_string(),
    })?;
    // A time in a DST gap or fold is taken the way `mktime` would ("compatible").
    let local_time = |e: jiff::Error| TimeError::LocalTime {
        input: input.to_string(),
        problem: e.to_string(),
    };
    let ts = tz.to_timestamp(civil).map_err(local_time)?;
    Ok(Some(SystemTime::try_from(ts).map_err(local_time)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn limit(s: &str) -> TimeLimit {
        parse_time_limit(s).unwrap()
    }
    fn secs(n: u64) -> TimeLimit {
        TimeLimit::Limited(Duration::from_secs(n))
    }

    #[test]
    fn time_limits_in_every_slurm_spelling() {
        assert_eq!(limit("30"), secs(30 * 60));
        assert_eq!(limit("5:00"), secs(5 * 60));
        assert_eq!(limit("10:30"), secs(10 * 60 + 30));
        assert_eq!(limit("01:00:00"), secs(3_600));
        assert_eq!(limit("1:30:15"), secs(5_415));
        assert_eq!(limit("2-12"), secs(2 * 86_400 + 12 * 3_600));
        assert_eq!(limit("2-12:30"), secs(2 * 86_400 + 12 * 3_600 + 30 * 60));
        assert_eq!(limit("1-00:00:00"), secs(86_400));
        assert_eq!(limit("infinite"), TimeLimit::Unlimited);
        assert_eq!(limit("UNLIMITED"), TimeLimit::Unlimited);
        assert_eq!(limit("0"), TimeLimit::Unlimited);
    }

    #[test]
    fn bad_time_limits_are_errors() {
        for s in [
            "",
            "-",
            "1-",
            "-1",
            "1:2:3:4",
            "1-2:3:4:5",
            "a",
            "1h",
            " : ",
            "+5",
            "1 :00",
            "1--2",
        ] {
            assert!(
                matches!(parse_time_limit(s), Err(TimeError::InvalidLimit { .. })),
                "{s:?}"
            );
        }
        assert!(matches!(
            parse_time_limit("99999999999999999999"),
            Err(TimeError::InvalidLimit { .. })
        ));
        assert!(matches!(
            parse_time_limit("18446744073709551615-00"),
            Err(TimeError::LimitTooLong { .. })
        ));
        assert!(matches!(
            parse_time_limit("9999999999"),
            Err(TimeError::LimitTooLong { .. })
        ));
    }

    #[test]
    fn formats_what_it_parses() {
        assert_eq!(format_time_limit(Duration::from_secs(3_600)), "01:00:00");
        assert_eq!(format_time_limit(Duration::from_secs(59)), "00:00:59");
        assert_eq!(
            format_time_limit(Duration::from_secs(2 * 86_400 + 3_661)),
            "2-01:01:01"
        );
        for n in [1, 59, 60, 3_599, 86_399, 86_400, 1_000_000] {
            let d = Duration::from_secs(n);
            assert_eq!(limit(&format_time_limit(d)), TimeLimit::Limited(d));
        }
    }

    #[test]
    fn timestamps_in_a_given_zone() {
        // Captured from `squeue -h -j ID -o %e` on the test cluster (TZ=Etc/UTC).
        let utc = parse_timestamp_in("2026-12-01T22:23:16", &TimeZone::UTC).unwrap();
        assert_eq!(utc, Some(UNIX_EPOCH + Duration::from_secs(1_796_163_796)));
        let est = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        let t = parse_timestamp_in("2026-12-01T17:23:16", &est).unwrap();
        assert_eq!(t, utc);
        // Summer: UTC-4.
        let t = parse_timestamp_in("2026-07-01T08:00:00", &est).unwrap();
        assert_eq!(t, Some(UNIX_EPOCH + Duration::from_secs(1_782_907_200)));
    }

    #[test]
    fn words_for_no_time() {
        for w in ["N/A", "Unknown", "NONE", "None", " N/A "] {
            assert_eq!(parse_timestamp_in(w, &TimeZone::UTC).unwrap(), None, "{w}");
        }
    }

    #[test]
    fn bad_timestamps_are_errors() {
        for s in [
            "",
            "2026-12-01",
            "2026-12-01 22:23:16",
            "2026-13-01T22:23:16",
            "2026-02-30T00:00:00",
            "2026-12-01T25:00:00",
            "2026-12-01T22:23:16Z",
            "+026-12-01T22:23:16",
            "soon",
        ] {
            assert!(
                matches!(
                    parse_timestamp_in(s, &TimeZone::UTC),
                    Err(TimeError::InvalidTimestamp { .. })
                ),
                "{s:?}"
            );
        }
    }
}
