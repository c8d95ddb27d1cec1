//! Memory sizes and ISO 8601 durations, as written in specs and shown in tables.
//!
//! - Memory: a whole number with an optional suffix `k`, `m`, `g` or `t` (any case, powers of
//!   1024), optionally followed by `b` (or `ib`): `512m`, `4G`, `16gb`, `2TiB`, `1048576`. A bare
//!   number is bytes. Fractions such as `1.5g` are refused with a message that says so and, when
//!   it can, proposes the exact whole-number spelling (`1536m`).
//! - Durations: ISO 8601 `P[nW][nD][T[nH][nM][nS]]`, e.g. `PT30M`, `P1DT12H`, `PT0.5S`, `P2D`,
//!   `P1W`. Any component may carry a decimal fraction (`PT1.5H`). Years and months are refused:
//!   they have no fixed length.
//!
//! - Slurm time limits (`sbatch --time`): `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
//!   `D-HH:MM:SS`.
//!
//! Parsing never panics; every failure is a [`UnitError`] naming the input. Values beyond
//! [`MAX_DURATION`] (100 years) and [`MAX_MEMORY`] (1 PiB) are refused, so that whatever a spec
//! says can be added to a clock, multiplied by a count or converted to another unit by a
//! runner or a client without overflowing.

use std::time::Duration;

/// The longest duration a spec may give (a job's `timeout`, a requirement's `runtime`, a Slurm
/// `walltime`): 100 years of 365.25 days. Far beyond any job, and far below where adding it
/// to a clock or converting it to milliseconds could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

/// The largest memory size a spec may give: 1 PiB, far beyond any machine's memory, and far
/// below where multiplying it by a count of jobs or nodes could overflow a `u64` quickly.
pub const MAX_MEMORY: u64 = 1 << 50;

/// Why a memory size or a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty memory size: expected an integer with an optional suffix k, m, g or t")]
    EmptyMemory,
    #[error(
        "fractional memory size `{input}` is not allowed: sizes are whole numbers{}",
        suggestion.as_ref().map(|s| format!(" (write `{s}`)")).unwrap_or_default()
    )]
    FractionalMemory {
        input: String,
        /// An exact whole-number spelling of the same size, when there is one.
        suggestion: Option<String>,
    },
    #[error(
        "invalid memory size `{input}`: expected an integer with an optional suffix k, m, g or t \
         (e.g. `512m`, `4g`, `1048576`)"
    )]
    InvalidMemory { input: String },
    #[error("negative memory size `{input}` is not allowed")]
    NegativeMemory { input: String },
    #[error("memory size `{input}` is more than the limit of 1 PiB ({MAX_MEMORY} bytes)")]
    MemoryTooLarge { input: String },
    #[error("empty duration: expected an ISO 8601 duration such as `PT30M` or `P1DT12H`")]
    EmptyDuration,
    #[error("invalid ISO 8601 duration `{input}`: {problem} (expected e.g. `PT30M`, `P1DT12H`, `PT0.5S`)")]
    InvalidDuration {
        input: String,
        problem: DurationProblem,
    },
    #[error(
        "duration `{input}` uses {unit}, which have no fixed length; use weeks, days, hours, \
         minutes or seconds instead"
    )]
    CalendarDuration { input: String, unit: &'static str },
    #[error(
        "duration `{input}` is longer than the limit of 100 years (`P36525D`, {} seconds)",
        MAX_DURATION.as_secs()
    )]
    DurationTooLong { input: String },
    #[error(
        "invalid Slurm time limit `{input}`: expected `HH:MM:SS`, `D-HH:MM:SS`, `MM:SS` or \
         minutes (e.g. `01:00:00`, `2-00:00:00`)"
    )]
    InvalidWalltime { input: String },
}

/// What is wrong with a malformed ISO 8601 duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationProblem {
    #[error("it must start with `P`")]
    MissingP,
    #[error("it has no components")]
    NoComponents,
    #[error("`T` must be followed by hours, minutes or seconds")]
    EmptyTimePart,
    #[error("a number is missing before `{0}`")]
    MissingNumber(char),
    #[error("a number is not followed by a unit designator")]
    MissingDesignator,
    #[error("`{0}` is not a duration designator")]
    UnknownDesignator(char),
    #[error("`{0}` appears twice or out of order")]
    OutOfOrder(char),
    #[error("negative durations are not allowed")]
    Negative,
    #[error("malformed number")]
    BadNumber,
}

const KIB: u64 = 1024;

/// The power of 1024 of a memory suffix letter.
fn memory_exponent(c: char) -> Option<u32> {
    match c.to_ascii_lowercase() {
        'k' => Some(1),
        'm' => Some(2),
        'g' => Some(3),
        't' => Some(4),
        _ => None,
    }
}

const MEMORY_SUFFIXES: [&str; 5] = ["", "k", "m", "g", "t"];

/// Parses a memory size into bytes: `512m`, `4g`, `16GB`, `2TiB`, `1048576` (bytes).
pub fn parse_memory(input: &str) -> Result<u64, UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError::EmptyMemory);
    }
    let invalid = || UnitError::InvalidMemory {
        input: input.to_string(),
    };
    if s.starts_with('-') {
        return Err(UnitError::NegativeMemory {
            input: input.to_string(),
        });
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    let (number, rest) = s.split_at(num_end);
    let unit = rest.trim_start();
    let exponent = parse_memory_unit(unit).ok_or_else(invalid)?;
    if number.is_empty() || number.contains(',') {
        return Err(invalid());
    }
    if number.contains('.') {
        return Err(fractional(input, number, exponent));
    }
    let value: u64 = number.parse().map_err(|_| UnitError::MemoryTooLarge {
        input: input.to_string(),
    })?;
    KIB.checked_pow(exponent)
        .and_then(|m| value.checked_mul(m))
        .filter(|&bytes| bytes <= MAX_MEMORY)
        .ok_or_else(|| UnitError::MemoryTooLarge {
            input: input.to_string(),
        })
}

/// `now + d`, saturating: a duration too long for the clock gives `now` plus
/// [`MAX_DURATION`] (or `now` itself if even that does not fit), never a panic. For deadlines
/// made of durations that came from a spec, a server or a command line.
pub fn instant_after(now: std::time::Instant, d: Duration) -> std::time::Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(MAX_DURATION))
        .unwrap_or(now)
}

/// A count of seconds as a duration, saturating: negative and NaN give zero, infinite and
/// huge give [`Duration::MAX`], never a panic (`Duration::from_secs_f64` panics on them).
pub fn duration_from_secs_f64(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// Refuses a size in bytes (given as a bare number) beyond [`MAX_MEMORY`].
pub fn check_memory(bytes: u64) -> Result<u64, UnitError> {
    if bytes <= MAX_MEMORY {
        Ok(bytes)
    } else {
        Err(UnitError::MemoryTooLarge {
            input: bytes.to_string(),
        })
    }
}

/// Refuses a duration beyond [`MAX_DURATION`], naming it as `input` spelled it.
fn within_limit(d: Duration, input: &str) -> Result<Duration, UnitError> {
    if d <= MAX_DURATION {
        Ok(d)
    } else {
        Err(UnitError::DurationTooLong {
            input: input.to_string(),
        })
    }
}

/// The power of 1024 named by a unit such as ``, `b`, `k`, `kb`, `KiB`; `None` if not a unit.
fn parse_memory_unit(unit: &str) -> Option<u32> {
    let mut chars = unit.chars();
    let Some(first) = chars.next() else {
        return Some(0);
    };
    if first.eq_ignore_ascii_case(&'b') {
        return chars.next().is_none().then_some(0);
    }
    let exponent = memory_exponent(first)?;
    match chars.as_str().to_ascii_lowercase().as_str() {
        "" | "b" | "ib" => Some(exponent),
        _ => None,
    }
}

/// The error for a fractional size, with an exact whole spelling in a smaller unit if one exists.
fn fractional(input: &str, number: &str, exponent: u32) -> UnitError {
    let suggestion = number.parse::<f64>().ok().and_then(|v| {
        (1..=exponent).find_map(|down| {
            let scaled = v * (KIB.pow(down) as f64);
            let unit = MEMORY_SUFFIXES[(exponent - down) as usize];
            (scaled.fract() == 0.0 && scaled < 1e15).then(|| format!("{}{unit}", scaled as u64))
        })
    });
    UnitError::FractionalMemory {
        input: input.to_string(),
        suggestion,
    }
}

/// A size for people: `512 B`, `1 KiB`, `1.5 GiB` (at most one decimal, trailing `.0` dropped).
pub fn format_memory(bytes: u64) -> String {
    const NAMES: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while unit + 1 < NAMES.len() && bytes >= KIB.pow(unit as u32 + 1) {
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let value = bytes as f64 / KIB.pow(unit as u32) as f64;
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", NAMES[unit])
}

/// The exact spec spelling of a size, with the largest suffix that divides it: `1536m`, `4g`,
/// `100` (bytes). [`parse_memory`] reads it back to the same number.
pub fn format_memory_spec(bytes: u64) -> String {
    let mut exponent = 0;
    while exponent < 4 && bytes != 0 && bytes & (KIB.pow(exponent + 1) - 1) == 0 {
        exponent += 1;
    }
    format!(
        "{}{}",
        bytes / KIB.pow(exponent),
        MEMORY_SUFFIXES[exponent as usize]
    )
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses an ISO 8601 duration: `PT30M`, `P1DT12H`, `PT0.5S`, `P2D`, `P1W`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(UnitError::EmptyDuration);
    }
    let bad = |problem| UnitError::InvalidDuration {
        input: input.to_string(),
        problem,
    };
    let upper = s.to_ascii_uppercase();
    if upper.starts_with('-') {
        return Err(bad(DurationProblem::Negative));
    }
    let Some(body) = upper.strip_prefix('P') else {
        return Err(bad(DurationProblem::MissingP));
    };
    // Designators in the order they may appear; `rank` only grows.
    const DATE: [(char, u128); 2] = [('W', 7 * 86_400), ('D', 86_400)];
    const TIME: [(char, u128); 3] = [('H', 3_600), ('M', 60), ('S', 1)];
    let mut total: u128 = 0;
    let mut in_time = false;
    let mut rank = 0usize;
    let mut components = 0usize;
    let mut time_components = 0usize;
    let mut number = String::new();
    for c in body.chars() {
        if c.is_ascii_digit() || c == '.' || c == ',' {
            number.push(if c == ',' { '.' } else { c });
            continue;
        }
        if c == 'T' {
            if in_time || !number.is_empty() {
                return Err(bad(DurationProblem::OutOfOrder('T')));
            }
            in_time = true;
            rank = 0;
            continue;
        }
        if c == 'Y' || (c == 'M' && !in_time) {
            return Err(UnitError::CalendarDuration {
                input: input.to_string(),
                unit: if c == 'Y' { "years" } else { "months" },
            });
        }
        if c == '-' {
            return Err(bad(DurationProblem::Negative));
        }
        let table: &[(char, u128)] = if in_time { &TIME } else { &DATE };
        let Some(pos) = table.iter().position(|(d, _)| *d == c) else {
            let known = DATE.iter().chain(TIME.iter()).any(|(d, _)| *d == c);
            return Err(bad(if known {
                DurationProblem::OutOfOrder(c)
            } else {
                DurationProblem::UnknownDesignator(c)
            }));
        };
        if pos < rank {
            return Err(bad(DurationProblem::OutOfOrder(c)));
        }
        rank = pos + 1;
        if number.is_empty() {
            return Err(bad(DurationProblem::MissingNumber(c)));
        }
        let nanos = component_nanos(&number, table[pos].1).map_err(|e| match e {
            NumberError::Malformed => bad(DurationProblem::BadNumber),
            NumberError::TooLarge => UnitError::DurationTooLong {
                input: input.to_string(),
            },
        })?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| UnitError::DurationTooLong {
                input: input.to_string(),
            })?;
        number.clear();
        components += 1;
        if in_time {
            time_components += 1;
        }
    }
    if !number.is_empty() {
        return Err(bad(DurationProblem::MissingDesignator));
    }
    if in_time && time_components == 0 {
        return Err(bad(DurationProblem::EmptyTimePart));
    }
    if components == 0 {
        return Err(bad(DurationProblem::NoComponents));
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| UnitError::DurationTooLong {
        input: input.to_string(),
    })?;
    within_limit(Duration::new(secs, (total % NANOS_PER_SEC) as u32), input)
}

enum NumberError {
    Malformed,
    TooLarge,
}

/// `number` (digits with at most one `.`) times `unit_secs` seconds, in nanoseconds.
fn component_nanos(number: &str, unit_secs: u128) -> Result<u128, NumberError> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return Err(NumberError::Malformed);
    }
    let unit_nanos = unit_secs * NANOS_PER_SEC;
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| NumberError::TooLarge)?
    };
    let mut nanos = int.checked_mul(unit_nanos).ok_or(NumberError::TooLarge)?;
    // Digits past the 18th cannot change the result by a whole nanosecond.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| NumberError::Malformed)?;
        nanos += digits * unit_nanos / 10u128.pow(frac.len() as u32);
    }
    Ok(nanos)
}

/// A duration for people: `0s`, `250ms`, `45s`, `1m 30s`, `2h 5m`, `3d 4h`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if d < Duration::from_secs(1) {
        let ms = d.as_millis();
        return if ms > 0 {
            format!("{ms}ms")
        } else {
            format!("{}µs", d.as_micros().max(1))
        };
    }
    let total = d.as_secs();
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total % 86_400 / 3_600,
        total % 3_600 / 60,
        total % 60,
    );
    let millis = d.subsec_millis();
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    if millis > 0 && days == 0 && hours == 0 {
        let frac = format!("{millis:03}");
        parts.push(format!("{secs}.{}s", frac.trim_end_matches('0')));
    } else if secs > 0 {
        parts.push(format!("{secs}s"));
    }
    parts.join(" ")
}

/// Parses a Slurm time limit as `sbatch --time` takes it: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`,
/// `D-HH:MM` or `D-HH:MM:SS` (minutes, seconds and hours within their usual ranges after the
/// first field).
pub fn parse_walltime(input: &str) -> Result<Duration, UnitError> {
    let bad = || UnitError::InvalidWalltime {
        input: input.to_string(),
    };
    let s = input.trim();
    let number = |t: &str| -> Result<u64, UnitError> {
        if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u64>().map_err(|_| bad())
    };
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(number(d)?), rest),
        None => (None, s),
    };
    let parts = rest
        .split(':')
        .map(number)
        .collect::<Result<Vec<u64>, _>>()?;
    let in_range = |v: u64, max: u64| if v < max { Ok(v) } else { Err(bad()) };
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + in_range(*s, 60)?,
        (None, [h, m, s]) => h * 3600 + in_range(*m, 60)? * 60 + in_range(*s, 60)?,
        (Some(d), [h]) => d * 86_400 + in_range(*h, 24)? * 3600,
        (Some(d), [h, m]) => d * 86_400 + in_range(*h, 24)? * 3600 + in_range(*m, 60)? * 60,
        (Some(d), [h, m, s]) => {
            d * 86_400 + in_range(*h, 24)? * 3600 + in_range(*m, 60)? * 60 + in_range(*s, 60)?
        }
        _ => return Err(bad()),
    };
    within_limit(Duration::from_secs(secs), input)
}

/// The ISO 8601 spelling of a duration (`PT1H30M`, `P2DT0.5S`, `PT0S`); [`parse_duration`] reads
/// it back exactly.
pub fn format_duration_iso(d: Duration) -> String {
    let total = d.as_secs();
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total % 86_400 / 3_600,
        total % 3_600 / 60,
        total % 60,
    );
    let nanos = d.subsec_nanos();
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    let mut time = String::new();
    if hours > 0 {
        time.push_str(&format!("{hours}H"));
    }
    if minutes > 0 {
        time.push_str(&format!("{minutes}M"));
    }
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        time.push_str(&format!("{secs}.{}S", frac.trim_end_matches('0')));
    } else if secs > 0 || (days == 0 && time.is_empty()) {
        time.push_str(&format!("{secs}S"));
    }
    if !time.is_empty() {
        out.push('T');
        out.push_str(&time);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn slurm_walltimes() {
        let secs = |t: &str| super::parse_walltime(t).map(|d| d.as_secs());
        assert_eq!(secs("01:00:00"), Ok(3600));
        assert_eq!(secs("30:00"), Ok(1800));
        assert_eq!(secs("90"), Ok(5400));
        assert_eq!(secs("2-00:00:00"), Ok(172_800));
        assert_eq!(secs("1-12"), Ok(129_600));
        assert_eq!(secs("1-00:30"), Ok(88_200));
        assert_eq!(secs("100:00:00"), Ok(360_000));
        for bad in [
            "",
            "1:2:3:4",
            "01:60:00",
            "a:00",
            "-1",
            "1-24:00:00",
            "1--2",
            "1:-1",
            "9999999999",
        ] {
            assert!(super::parse_walltime(bad).is_err(), "{bad}");
        }
        let e = super::parse_walltime("1h").unwrap_err().to_string();
        assert!(e.contains("`1h`") && e.contains("HH:MM:SS"), "{e}");
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn memory_suffixes() {
        assert_eq!(parse_memory("0"), Ok(0));
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        assert_eq!(parse_memory("100b"), Ok(100));
        assert_eq!(parse_memory("1k"), Ok(1024));
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("4g"), Ok(4 << 30));
        assert_eq!(parse_memory("4GB"), Ok(4 << 30));
        assert_eq!(parse_memory("4 GiB"), Ok(4 << 30));
        assert_eq!(parse_memory("2t"), Ok(2 << 40));
        assert_eq!(parse_memory(" 8gb "), Ok(8 << 30));
    }

    #[test]
    fn memory_errors() {
        let err = parse_memory("1.5g").unwrap_err();
        assert!(matches!(err, UnitError::FractionalMemory { .. }));
        let text = err.to_string();
        assert!(text.contains("fractional"), "{text}");
        assert!(text.contains("not allowed"), "{text}");
        assert!(text.contains("1536m"), "{text}");
        assert_eq!(parse_memory(""), Err(UnitError::EmptyMemory));
        for bad in [
            "g", "12x", "1gg", "1 2", "1,000", "kb5", "1e3", "0x10", "1.2.3g",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_memory("-1g"),
            Err(UnitError::NegativeMemory { .. })
        ));
        assert!(matches!(
            parse_memory("99999999999999999999"),
            Err(UnitError::MemoryTooLarge { .. })
        ));
        assert!(matches!(
            parse_memory("99999999t"),
            Err(UnitError::MemoryTooLarge { .. })
        ));
    }

    #[test]
    fn memory_formats() {
        assert_eq!(format_memory(0), "0 B");
        assert_eq!(format_memory(1023), "1023 B");
        assert_eq!(format_memory(1024), "1 KiB");
        assert_eq!(format_memory(1536 << 20), "1.5 GiB");
        assert_eq!(format_memory(3 << 40), "3 TiB");
        assert_eq!(format_memory_spec(1536 << 20), "1536m");
        assert_eq!(format_memory_spec(4 << 30), "4g");
        assert_eq!(format_memory_spec(100), "100");
        assert_eq!(format_memory_spec(0), "0");
        assert_eq!(format_memory_spec(5 << 50), "5120t");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT30M"), Ok(Duration::from_secs(1800)));
        assert_eq!(
            parse_duration("P1DT12H"),
            Ok(Duration::from_secs(36 * 3600))
        );
        assert_eq!(parse_duration("PT0.5S"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("P2D"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("P1W"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("PT1H"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("PT1.5H"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("pt90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("PT0,25S"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("P1DT2H3M4S"),
            Ok(Duration::from_secs(86_400 + 7_384))
        );
    }

    #[test]
    fn duration_errors() {
        assert_eq!(parse_duration(" "), Err(UnitError::EmptyDuration));
        let months = parse_duration("P1M").unwrap_err();
        assert!(matches!(
            months,
            UnitError::CalendarDuration { unit: "months", .. }
        ));
        assert!(months.to_string().contains("no fixed length"));
        assert!(matches!(
            parse_duration("P1Y"),
            Err(UnitError::CalendarDuration { unit: "years", .. })
        ));
        let cases = [
            ("30M", DurationProblem::MissingP),
            ("P", DurationProblem::NoComponents),
            ("PT", DurationProblem::EmptyTimePart),
            ("P1DT", DurationProblem::EmptyTimePart),
            ("PT5", DurationProblem::MissingDesignator),
            ("PTH", DurationProblem::MissingNumber('H')),
            ("PT1X", DurationProblem::UnknownDesignator('X')),
            ("PT1S1M", DurationProblem::OutOfOrder('M')),
            ("P1D1W", DurationProblem::OutOfOrder('W')),
            ("PT1H1H", DurationProblem::OutOfOrder('H')),
            ("P1H", DurationProblem::OutOfOrder('H')),
            ("-PT1H", DurationProblem::Negative),
            ("PT1.2.3S", DurationProblem::BadNumber),
            ("PT.S", DurationProblem::BadNumber),
        ];
        for (input, problem) in cases {
            assert_eq!(
                parse_duration(input),
                Err(UnitError::InvalidDuration {
                    input: input.to_string(),
                    problem
                }),
                "{input}"
            );
        }
        assert!(matches!(
            parse_duration("PT99999999999999999999999999999999999999H"),
            Err(UnitError::DurationTooLong { .. })
        ));
    }

    #[test]
    fn duration_formats() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(
            format_duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d 4h"
        );
        assert_eq!(format_duration_iso(Duration::ZERO), "PT0S");
        assert_eq!(format_duration_iso(Duration::from_secs(5400)), "PT1H30M");
        assert_eq!(format_duration_iso(Duration::from_secs(86_400)), "P1D");
        assert_eq!(
            format_duration_iso(Duration::from_millis(172_800_500)),
            "P2DT0.5S"
        );
    }

    #[test]
    fn durations_and_sizes_beyond_their_limits_are_refused() {
        for text in [
            "PT9223372036854775807S",
            "P36526D",
            "PT18446744073709551615S",
            "P5218W",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(
                matches!(e, UnitError::DurationTooLong { .. }),
                "{text}: {e}"
            );
            assert!(e.to_string().contains("limit of 100 years"), "{e}");
        }
        assert_eq!(parse_duration("P36525D"), Ok(MAX_DURATION));
        assert_eq!(parse_walltime("36525-00:00:00"), Ok(MAX_DURATION));
        assert!(matches!(
            parse_walltime("36525-00:00:01"),
            Err(UnitError::DurationTooLong { .. })
        ));
        for text in [
            "1048577g",
            "1025t",
            "1152921504606846976",
            "18446744073709551615",
        ] {
            let e = parse_memory(text).unwrap_err();
            assert!(matches!(e, UnitError::MemoryTooLarge { .. }), "{text}: {e}");
            assert!(e.to_string().contains("limit of 1 PiB"), "{e}");
        }
        assert_eq!(parse_memory("1024t"), Ok(MAX_MEMORY));
        assert_eq!(check_memory(MAX_MEMORY), Ok(MAX_MEMORY));
        assert!(check_memory(MAX_MEMORY + 1).is_err());
    }

    #[test]
    fn conversions_of_huge_values_saturate() {
        let now = std::time::Instant::now();
        assert_eq!(instant_after(now, Duration::MAX), now + MAX_DURATION);
        assert_eq!(
            instant_after(now, Duration::from_secs(u64::MAX)),
            now + MAX_DURATION
        );
        assert_eq!(
            instant_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(duration_from_secs_f64(f64::NAN), Duration::ZERO);
        assert_eq!(duration_from_secs_f64(-1.0), Duration::ZERO);
        assert_eq!(duration_from_secs_f64(f64::INFINITY), Duration::MAX);
        assert_eq!(duration_from_secs_f64(1e30), Duration::MAX);
        assert_eq!(duration_from_secs_f64(1.5), Duration::from_millis(1500));
    }

    proptest! {
        #[test]
        fn memory_round_trips_with_any_suffix(n in 0u64..1_000, exp in 0usize..5, b in any::<bool>(), upper in any::<bool>()) {
            let mut text = format!("{n}{}{}", MEMORY_SUFFIXES[exp], if b { "b" } else { "" });
            if upper {
                text = text.to_uppercase();
            }
            prop_assert_eq!(parse_memory(&text), Ok(n * KIB.pow(exp as u32)));
        }

        #[test]
        fn memory_spec_format_round_trips(n in any::<u64>()) {
            let parsed = parse_memory(&format_memory_spec(n));
            if n <= MAX_MEMORY {
                prop_assert_eq!(parsed, Ok(n));
            } else {
                let refused = matches!(parsed, Err(UnitError::MemoryTooLarge { .. }));
                prop_assert!(refused);
            }
        }

        #[test]
        fn duration_iso_round_trips(secs in 0u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            let parsed = parse_duration(&format_duration_iso(d));
            if d <= MAX_DURATION {
                prop_assert_eq!(parsed, Ok(d));
            } else {
                let refused = matches!(parsed, Err(UnitError::DurationTooLong { .. }));
                prop_assert!(refused);
            }
        }

        #[test]
        fn units_never_panic(s in ".{0,24}") {
            let _ = parse_memory(&s);
            let _ = parse_duration(&s);
        }

        #[test]
        fn duration_like_strings_never_panic(s in "[-PTWDHMSY0-9.,]{0,16}") {
            let _ = parse_duration(&s);
        }
    }
}
