//! Parameter values (ranges, lists, single values) and their combinations.

use serde_json::Value;
use std::fmt;
use std::rc::Rc;

/// The most values one parameter may have (the spec's parameters together are held to the
/// `parameter_values` budget, and its instances to `instances`).
pub(super) const MAX_VALUES: usize = 10_000_000;

/// One value a parameter takes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ParamValue {
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => f.write_str(s),
        }
    }
}

/// Why a parameter value or a template is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum ParamError {
    #[error("range `{text}` has a zero step")]
    ZeroStep { text: String },
    #[error(
        "range `{text}` is empty (for a decreasing range give a negative step, e.g. `10:1:-1`)"
    )]
    EmptyRange { text: String },
    #[error("invalid range `{text}`: expected `start:end` or `start:end:step` with numbers")]
    BadRange { text: String },
    #[error("`{text}` has {count} values, more than the limit of {MAX_VALUES}")]
    TooManyValues { text: String, count: u128 },
    #[error("a parameter needs at least one value, but the list is empty")]
    EmptyList,
    #[error("list item {index} is empty")]
    EmptyItem { index: usize },
    #[error("a parameter value must be a string, a number or a list of them, found {found}")]
    BadType { found: &'static str },
    #[error("list item {index} must be a string or a number, found {found}")]
    BadItem { index: usize, found: &'static str },
    #[error(
        "invalid format spec `{spec}` for parameter `{name}`: expected e.g. `03d`, `3d`, `.2f`"
    )]
    BadFormat { name: String, spec: String },
    #[error("format `{spec}` needs a number, but parameter `{name}` is `{value}`")]
    NeedsNumber {
        name: String,
        spec: String,
        value: String,
    },
    #[error("format `{spec}` needs an integer, but parameter `{name}` is `{value}`")]
    NeedsInteger {
        name: String,
        spec: String,
        value: String,
    },
}

/// A human description of a JSON value's type, for error messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Reads a parameter's values from the spec: a range string, a list (YAML/JSON list or a
/// `"[a, b]"` string), or a single value.
#[cfg(test)]
pub(super) fn parse_value(v: &Value) -> Result<Vec<ParamValue>, ParamError> {
    parse_value_within(v, MAX_VALUES)
}

/// [`parse_value`], where a range of more than `room` values is refused before it is made
/// (with [`ParamError::TooManyValues`]).
pub(super) fn parse_value_within(v: &Value, room: usize) -> Result<Vec<ParamValue>, ParamError> {
    match v {
        Value::String(s) => parse_text_within(s, room),
        Value::Number(n) => Ok(vec![number_value(n)]),
        Value::Bool(b) => Ok(vec![ParamValue::Str(b.to_string())]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ParamError::EmptyList);
            }
            items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(s) => Ok(typed_item(s.trim())),
                    Value::Number(n) => Ok(number_value(n)),
                    Value::Bool(b) => Ok(ParamValue::Str(b.to_string())),
                    other => Err(ParamError::BadItem {
                        index,
                        found: type_name(other),
                    }),
                })
                .collect()
        }
        other => Err(ParamError::BadType {
            found: type_name(other),
        }),
    }
}

fn number_value(n: &serde_json::Number) -> ParamValue {
    match n.as_i64() {
        Some(i) => ParamValue::Int(i),
        None => ParamValue::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// Parses the text form of a parameter value.
#[cfg(test)]
pub(super) fn parse_text(text: &str) -> Result<Vec<ParamValue>, ParamError> {
    parse_text_within(text, MAX_VALUES)
}

fn parse_text_within(text: &str, room: usize) -> Result<Vec<ParamValue>, ParamError> {
    let room = room.min(MAX_VALUES);
    let mut t = text.trim();
    // `{1:10}` is a common slip for `1:10`.
    if t.len() >= 2 && t.starts_with('{') && t.ends_with('}') && !t.contains(',') {
        t = t[1..t.len() - 1].trim();
    }
    if t.starts_with('[') && t.ends_with(']') {
        return parse_list_text(&t[1..t.len() - 1]);
    }
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').map(str::trim).collect();
        if parse_number(parts[0]).is_some() {
            return parse_range(t, &parts, room);
        }
    }
    Ok(vec![typed_item(t)])
}

/// An integer, else a finite float, else the text itself.
pub(super) fn typed_item(s: &str) -> ParamValue {
    if let Ok(i) = s.parse::<i64>() {
        return ParamValue::Int(i);
    }
    match parse_float(s) {
        Some(x) => ParamValue::Float(x),
        None => ParamValue::Str(s.to_string()),
    }
}

/// A finite float written with digits (so that `nan` and `inf` stay strings).
fn parse_float(s: &str) -> Option<f64> {
    if !s.bytes().any(|b| b.is_ascii_digit())
        || s.bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

enum Number {
    Int(i64),
    Float(f64),
}

fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::Int(i));
    }
    parse_float(s).map(Number::Float)
}

/// Splits the inside of `[a, 'b,c', "d"]` at top-level commas; quoted items are strings.
fn parse_list_text(inner: &str) -> Result<Vec<ParamValue>, ParamError> {
    let mut items: Vec<(String, bool)> = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                quoted = true;
            }
            None if c == ',' => {
                items.push((std::mem::take(&mut current), quoted));
                quoted = false;
            }
            None => current.push(c),
        }
    }
    items.push((current, quoted));
    // A trailing comma is fine.
    if items.len() > 1 && matches!(items.last(), Some((s, false)) if s.trim().is_empty()) {
        items.pop();
    }
    if items.len() == 1 && !items[0].1 && items[0].0.trim().is_empty() {
        return Err(ParamError::EmptyList);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, (text, quoted))| {
            if quoted {
                Ok(ParamValue::Str(text.trim().to_string()))
            } else if text.trim().is_empty() {
                Err(ParamError::EmptyItem { index })
            } else {
                Ok(typed_item(text.trim()))
            }
        })
        .collect()
}

/// Digits after the decimal point as written (`None` with an exponent).
fn decimals(s: &str) -> Option<u32> {
    if s.contains(['e', 'E']) {
        return None;
    }
    Some(s.split_once('.').map_or(0, |(_, f)| f.len() as u32))
}

fn parse_range(text: &str, parts: &[&str], room: usize) -> Result<Vec<ParamValue>, ParamError> {
    let bad = || ParamError::BadRange {
        text: text.to_string(),
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    let nums: Vec<Number> = parts
        .iter()
        .map(|p| parse_number(p))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let all_int = nums.iter().all(|n| matches!(n, Number::Int(_)));
    let too_many = |count: u128| ParamError::TooManyValues {
        text: text.to_string(),
        count,
    };
    if all_int {
        let ints: Vec<i128> = nums
            .iter()
            .map(|n| match n {
                Number::Int(i) => *i as i128,
                Number::Float(_) => 0,
            })
            .collect();
        let (start, end) = (ints[0], ints[1]);
        let step = ints.get(2).copied().unwrap_or(1);
        if step == 0 {
            return Err(ParamError::ZeroStep {
                text: text.to_string(),
            });
        }
        if (end - start).signum() * step.signum() < 0 {
            return Err(ParamError::EmptyRange {
                text: text.to_string(),
            });
        }
        let count = ((end - start) / step + 1) as u128;
        if count > room as u128 {
            return Err(too_many(count));
        }
        return Ok((0..count as i128)
            .map(|k| ParamValue::Int((start + k * step) as i64))
            .collect());
    }
    let floats: Vec<f64> = nums
        .iter()
        .map(|n| match n {
            Number::Int(i) => *i as f64,
            Number::Float(x) => *x,
        })
        .collect();
    let (start, end) = (floats[0], floats[1]);
    let step = floats.get(2).copied().unwrap_or(1.0);
    if step == 0.0 {
        return Err(ParamError::ZeroStep {
            text: text.to_string(),
        });
    }
    let ratio = (end - start) / step;
    let eps = 1e-9 * ratio.abs().max(1.0);
    if !ratio.is_finite() {
        return Err(too_many(u128::MAX));
    }
    if ratio < -eps {
        return Err(ParamError::EmptyRange {
            text: text.to_string(),
        });
    }
    let steps = (ratio + eps).floor();
    if steps >= room as f64 {
        return Err(too_many((steps as u128).saturating_add(1)));
    }
    let count = steps as usize + 1;
    // Round to the precision the user wrote, so that 0.1 * 3 prints as 0.3.
    let digits = parts
        .iter()
        .map(|p| decimals(p))
        .collect::<Option<Vec<u32>>>();
    let scale = digits
        .and_then(|d| d.into_iter().max())
        .filter(|d| *d <= 15)
        .map(|d| 10f64.powi(d as i32));
    Ok((0..count)
        .map(|k| {
            let x = start + k as f64 * step;
            let x = match scale {
                Some(p) if (x * p).abs() < 9.0e15 => (x * p).round() / p,
                _ => x,
            };
            // Normalise -0 to 0.
            ParamValue::Float(if x == 0.0 { 0.0 } else { x })
        })
        .collect())
}

/// A job's or file's parameters, ready to be combined.
#[derive(Debug, Clone)]
pub(super) struct ParamSet {
    pub names: Vec<String>,
    pub values: Vec<Rc<Vec<ParamValue>>>,
    pub zip: bool,
}

impl ParamSet {
    /// How many combinations there are (`u64::MAX` if more), computed without making any.
    pub fn count(&self) -> u64 {
        if self.zip {
            return self.values.first().map_or(1, |v| v.len() as u64);
        }
        self.values
            .iter()
            .try_fold(1u64, |acc, v| acc.checked_mul(v.len() as u64))
            .unwrap_or(u64::MAX)
    }

    /// Calls `f` with each combination in order: for `product`, the last parameter varies
    /// fastest; for `zip`, values are paired by position.
    pub fn for_each_combo(&self, mut f: impl FnMut(&[&ParamValue])) {
        let n = self.values.len();
        if self.values.iter().any(|v| v.is_empty()) {
            return;
        }
        let mut combo: Vec<&ParamValue> = self.values.iter().map(|v| &v[0]).collect();
        if self.zip {
            let len = self.values.first().map_or(1, |v| v.len());
            for k in 0..len {
                for (slot, v) in combo.iter_mut().zip(&self.values) {
                    *slot = &v[k];
                }
                f(&combo);
            }
            return;
        }
        let mut idx = vec![0usize; n];
        loop {
            f(&combo);
            let mut p = n;
            loop {
                if p == 0 {
                    return;
                }
                p -= 1;
                idx[p] += 1;
                if idx[p] < self.values[p].len() {
                    combo[p] = &self.values[p][idx[p]];
                    break;
                }
                idx[p] = 0;
                combo[p] = &self.values[p][0];
            }
        }
    }
}

/// Whether `name` can be used in a template: letters, digits and `_`, not starting with a digit.
pub(super) fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::ParamValue::{Float, Int, Str};
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ints(v: &[ParamValue]) -> Vec<i64> {
        v.iter()
            .map(|p| match p {
                Int(i) => *i,
                other => panic!("not an int: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn integer_ranges() {
        assert_eq!(ints(&parse_text("1:5").unwrap()), [1, 2, 3, 4, 5]);
        assert_eq!(ints(&parse_text("0:10:3").unwrap()), [0, 3, 6, 9]);
        assert_eq!(ints(&parse_text("10:1:-3").unwrap()), [10, 7, 4, 1]);
        assert_eq!(ints(&parse_text("{1:3}").unwrap()), [1, 2, 3]);
        assert_eq!(ints(&parse_text(" { 1 : 3 } ").unwrap()), [1, 2, 3]);
        assert_eq!(ints(&parse_text("-2:2").unwrap()), [-2, -1, 0, 1, 2]);
        assert_eq!(ints(&parse_text("4:4").unwrap()), [4]);
    }

    #[test]
    fn range_errors() {
        assert!(matches!(
            parse_text("1:10:0"),
            Err(ParamError::ZeroStep { .. })
        ));
        assert!(matches!(
            parse_text("0:1:0.0"),
            Err(ParamError::ZeroStep { .. })
        ));
        assert!(matches!(
            parse_text("10:1"),
            Err(ParamError::EmptyRange { .. })
        ));
        assert!(matches!(
            parse_text("1:10:-1"),
            Err(ParamError::EmptyRange { .. })
        ));
        assert!(matches!(
            parse_text("1:x"),
            Err(ParamError::BadRange { .. })
        ));
        assert!(matches!(
            parse_text("1:2:3:4"),
            Err(ParamError::BadRange { .. })
        ));
        assert!(matches!(
            parse_text("1:100000000000"),
            Err(ParamError::TooManyValues { .. })
        ));
        assert!(matches!(
            parse_text("0:1:0.00000000001"),
            Err(ParamError::TooManyValues { .. })
        ));
        let msg = parse_text("1:10:0").unwrap_err().to_string();
        assert!(msg.contains("zero step"), "{msg}");
    }

    #[test]
    fn float_ranges_do_not_drift() {
        let v = parse_text("0:1:0.1").unwrap();
        assert_eq!(v.len(), 11);
        let shown: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            shown,
            ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"]
        );
        assert_eq!(v[3], Float(0.3));
        let v = parse_text("0.0:1.0:0.25").unwrap();
        assert_eq!(
            v,
            [Float(0.0), Float(0.25), Float(0.5), Float(0.75), Float(1.0)]
        );
        let v = parse_text("1.0:0.0:-0.5").unwrap();
        assert_eq!(v, [Float(1.0), Float(0.5), Float(0.0)]);
        // 1000 steps of 0.001 land exactly on the end.
        let v = parse_text("0:1:0.001").unwrap();
        assert_eq!(v.len(), 1001);
        assert_eq!(v[1000], Float(1.0));
        assert_eq!(v[123], Float(0.123));
        // Not reaching the end exactly.
        assert_eq!(parse_text("0:1:0.3").unwrap().len(), 4);
    }

    #[test]
    fn lists_and_single_values() {
        assert_eq!(parse_text("[1, 5, 10]").unwrap(), [Int(1), Int(5), Int(10)]);
        assert_eq!(
            parse_text("[0.001, 0.01]").unwrap(),
            [Float(0.001), Float(0.01)]
        );
        assert_eq!(
            parse_text("['train', \"test\", val, '1']").unwrap(),
            [
                Str("train".into()),
                Str("test".into()),
                Str("val".into()),
                Str("1".into())
            ]
        );
        assert_eq!(
            parse_text("['a,b', c,]").unwrap(),
            [Str("a,b".into()), Str("c".into())]
        );
        assert_eq!(
            parse_text("[1, 2.5, x]").unwrap(),
            [Int(1), Float(2.5), Str("x".into())]
        );
        assert_eq!(parse_text("[]"), Err(ParamError::EmptyList));
        assert_eq!(
            parse_text("[a,,b]"),
            Err(ParamError::EmptyItem { index: 1 })
        );
        assert_eq!(parse_text("42").unwrap(), [Int(42)]);
        assert_eq!(parse_text("2.5").unwrap(), [Float(2.5)]);
        assert_eq!(parse_text("hello").unwrap(), [Str("hello".into())]);
        assert_eq!(parse_text("nan").unwrap(), [Str("nan".into())]);
        assert_eq!(
            parse_text("s3://bucket").unwrap(),
            [Str("s3://bucket".into())]
        );
        assert_eq!(
            parse_value(&json!([1, "a", 2.5, true])).unwrap(),
            [Int(1), Str("a".into()), Float(2.5), Str("true".into())]
        );
        assert_eq!(parse_value(&json!(7)).unwrap(), [Int(7)]);
        assert_eq!(parse_value(&json!([])), Err(ParamError::EmptyList));
        assert!(matches!(
            parse_value(&json!([[1]])),
            Err(ParamError::BadItem { index: 0, .. })
        ));
        assert!(matches!(
            parse_value(&json!({"a": 1})),
            Err(ParamError::BadType { .. })
        ));
    }

    fn set(values: Vec<Vec<ParamValue>>, zip: bool) -> ParamSet {
        ParamSet {
            names: (0..values.len()).map(|i| format!("p{i}")).collect(),
            values: values.into_iter().map(Rc::new).collect(),
            zip,
        }
    }

    fn combos(s: &ParamSet) -> Vec<String> {
        let mut out = Vec::new();
        s.for_each_combo(|c| {
            out.push(
                c.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        });
        out
    }

    #[test]
    fn product_and_zip_order() {
        let s = set(
            vec![
                vec![Int(1), Int(2)],
                vec![Str("a".into()), Str("b".into()), Str("c".into())],
            ],
            false,
        );
        assert_eq!(s.count(), 6);
        assert_eq!(combos(&s), ["1,a", "1,b", "1,c", "2,a", "2,b", "2,c"]);
        let z = set(
            vec![vec![Int(1), Int(2)], vec![Str("a".into()), Str("b".into())]],
            true,
        );
        assert_eq!(combos(&z), ["1,a", "2,b"]);
        assert_eq!(combos(&set(vec![], false)), [""]);
    }

    proptest! {
        #[test]
        fn integer_ranges_have_the_expected_values(start in -1000i64..1000, len in 1i64..500, step in 1i64..20, down in any::<bool>()) {
            let end = if down { start - (len - 1) * step } else { start + (len - 1) * step };
            let text = if down { format!("{start}:{end}:-{step}") } else { format!("{start}:{end}:{step}") };
            let values = ints(&parse_text(&text).unwrap());
            prop_assert_eq!(values.len() as i64, len);
            for (k, v) in values.iter().enumerate() {
                let expected = if down { start - k as i64 * step } else { start + k as i64 * step };
                prop_assert_eq!(*v, expected);
            }
        }

        #[test]
        fn integer_ranges_count_with_ragged_end(start in -100i64..100, extra in 0i64..300, step in 1i64..7) {
            let end = start + extra;
            let values = ints(&parse_text(&format!("{start}:{end}:{step}")).unwrap());
            prop_assert_eq!(values.len() as i64, extra / step + 1);
            prop_assert!(values.iter().all(|v| *v >= start && *v <= end));
        }

        #[test]
        fn float_ranges_hit_their_decimal_grid(n in 1u32..400, tenths in 1u32..9) {
            let step = tenths as f64 / 10.0;
            let end = n as f64 * step;
            let values = parse_text(&format!("0:{end:.1}:0.{tenths}")).unwrap();
            prop_assert_eq!(values.len() as u32, n + 1);
            for (k, v) in values.iter().enumerate() {
                let expected: f64 = format!("{:.1}", k as f64 * step).parse().unwrap();
                prop_assert_eq!(v, &Float(expected));
            }
        }

        #[test]
        fn parsing_never_panics(s in ".{0,40}") {
            let _ = parse_text(&s);
        }
    }
}
