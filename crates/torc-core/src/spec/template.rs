//! `{name}` / `{name:spec}` templates over a job's or file's parameters.

use super::params::{ParamError, ParamValue};
use std::fmt::Write as _;

/// How a `{name:spec}` template formats its value: `[0][width][.precision][d|f|s]`.
#[derive(Debug, Clone, PartialEq)]
struct FormatSpec {
    text: String,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    kind: Option<char>,
}

/// The widest padding a format may ask for.
const MAX_WIDTH: usize = 1000;

fn parse_format(name: &str, spec: &str) -> Result<FormatSpec, ParamError> {
    let bad = || ParamError::BadFormat {
        name: name.to_string(),
        spec: spec.to_string(),
    };
    let mut rest = spec;
    let kind = match rest.chars().last() {
        Some(c @ ('d' | 'f' | 's')) => {
            rest = &rest[..rest.len() - 1];
            Some(c)
        }
        _ => None,
    };
    let (width_part, precision) = match rest.split_once('.') {
        Some((w, p)) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            (w, Some(p.parse::<usize>().map_err(|_| bad())?))
        }
        None => (rest, None),
    };
    if !width_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let zero = width_part.starts_with('0') && width_part.len() > 1;
    let width = if width_part.is_empty() {
        0
    } else {
        width_part.parse::<usize>().map_err(|_| bad())?
    };
    if width > MAX_WIDTH || precision.is_some_and(|p| p > 100) {
        return Err(bad());
    }
    if kind == Some('d') && precision.is_some() {
        return Err(bad());
    }
    if spec.is_empty() {
        return Err(bad());
    }
    Ok(FormatSpec {
        text: spec.to_string(),
        zero,
        width,
        precision,
        kind,
    })
}

impl FormatSpec {
    fn apply(&self, name: &str, v: &ParamValue, out: &mut String) -> Result<(), ParamError> {
        let needs = |integer: bool| {
            let (name, spec, value) = (name.to_string(), self.text.clone(), v.to_string());
            if integer {
                ParamError::NeedsInteger { name, spec, value }
            } else {
                ParamError::NeedsNumber { name, spec, value }
            }
        };
        let (body, numeric) = match (self.kind, v) {
            (Some('d'), ParamValue::Int(i)) => (i.to_string(), true),
            (Some('d'), _) => return Err(needs(true)),
            (Some('f'), ParamValue::Int(i)) => (
                format!("{:.*}", self.precision.unwrap_or(6), *i as f64),
                true,
            ),
            (Some('f'), ParamValue::Float(x)) => {
                (format!("{:.*}", self.precision.unwrap_or(6), x), true)
            }
            (Some('f'), ParamValue::Str(_)) => return Err(needs(false)),
            (_, ParamValue::Str(s)) => match self.precision {
                Some(p) => (s.chars().take(p).collect(), false),
                None => (s.clone(), false),
            },
            (_, ParamValue::Int(i)) => match self.precision {
                Some(p) => (format!("{:.*}", p, *i as f64), true),
                None => (i.to_string(), true),
            },
            (_, ParamValue::Float(x)) => {
                let body = match self.precision {
                    Some(p) => format!("{x:.p$}"),
                    None => x.to_string(),
                };
                (body, true)
            }
        };
        let len = body.chars().count();
        let pad = self.width.saturating_sub(len);
        if pad == 0 {
            out.push_str(&body);
        } else if !numeric {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if self.zero {
            let (sign, digits) = match body.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&body);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param {
        index: usize,
        format: Option<FormatSpec>,
    },
}

/// A string with `{name}` / `{name:spec}` references to a job's parameters. Braces that do not
/// name one of the parameters (`${files.input.x}`, `awk '{print $1}'`) are left as written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// Splits `text` into literal parts and references to `names`.
    pub fn compile(text: &str, names: &[String]) -> Result<Template, ParamError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let reference = after.find('}').and_then(|close| {
                let inner = &after[..close];
                let (name, spec) = match inner.split_once(':') {
                    Some((n, s)) => (n, Some(s)),
                    None => (inner, None),
                };
                names
                    .iter()
                    .position(|n| n == name)
                    .map(|index| (index, name, spec, close))
            });
            match reference {
                Some((index, name, spec, close)) => {
                    literal.push_str(&rest[..open]);
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    let format = spec.map(|s| parse_format(name, s)).transpose()?;
                    segments.push(Segment::Param { index, format });
                    rest = &after[close + 1..];
                }
                None => {
                    literal.push_str(&rest[..open + 1]);
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() || segments.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    /// The text itself when the template references no parameter.
    pub fn as_literal(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [Segment::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Appends the template with `combo` substituted; with `escape`, values are regex-escaped.
    pub fn render_into(
        &self,
        names: &[String],
        combo: &[&ParamValue],
        escape: bool,
        out: &mut String,
    ) -> Result<(), ParamError> {
        for segment in &self.segments {
            match segment {
                Segment::Literal(s) => out.push_str(s),
                Segment::Param { index, format } => {
                    let value = combo[*index];
                    if escape {
                        let mut text = String::new();
                        write_value(&names[*index], value, format.as_ref(), &mut text)?;
                        out.push_str(&regex::escape(&text));
                    } else {
                        write_value(&names[*index], value, format.as_ref(), out)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub fn render(
        &self,
        names: &[String],
        combo: &[&ParamValue],
        escape: bool,
    ) -> Result<String, ParamError> {
        if let Some(s) = self.as_literal() {
            return Ok(s.to_string());
        }
        let mut out = String::new();
        self.render_into(names, combo, escape, &mut out)?;
        Ok(out)
    }
}

/// Writes `value` as `{name}` or `{name:spec}` would show it.
pub(super) fn format_value(
    name: &str,
    spec: Option<&str>,
    value: &ParamValue,
    out: &mut String,
) -> Result<(), ParamError> {
    let format = spec.map(|s| parse_format(name, s)).transpose()?;
    write_value(name, value, format.as_ref(), out)
}

fn write_value(
    name: &str,
    value: &ParamValue,
    format: Option<&FormatSpec>,
    out: &mut String,
) -> Result<(), ParamError> {
    match format {
        Some(f) => f.apply(name, value, out),
        None => {
            let _ = write!(out, "{value}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ParamValue::{Float, Int, Str};
    use super::*;
    use proptest::prelude::*;

    fn render(text: &str, names: &[&str], combo: &[ParamValue]) -> Result<String, ParamError> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let t = Template::compile(text, &names)?;
        let refs: Vec<&ParamValue> = combo.iter().collect();
        t.render(&names, &refs, false)
    }

    #[test]
    fn templates_and_formats() {
        assert_eq!(render("job_{i}", &["i"], &[Int(7)]).unwrap(), "job_7");
        assert_eq!(render("job_{i:03d}", &["i"], &[Int(7)]).unwrap(), "job_007");
        assert_eq!(render("job_{i:3d}", &["i"], &[Int(7)]).unwrap(), "job_  7");
        assert_eq!(render("{i:04d}", &["i"], &[Int(-7)]).unwrap(), "-007");
        assert_eq!(
            render("lr_{x:.2f}", &["x"], &[Float(0.1)]).unwrap(),
            "lr_0.10"
        );
        assert_eq!(
            render("lr_{x:.4f}", &["x"], &[Int(1)]).unwrap(),
            "lr_1.0000"
        );
        assert_eq!(
            render("{x:08.3f}", &["x"], &[Float(-1.23456)]).unwrap(),
            "-001.235"
        );
        assert_eq!(
            render("{s:5}|", &["s"], &[Str("ab".into())]).unwrap(),
            "ab   |"
        );
        assert_eq!(render("{s:s}", &["s"], &[Str("ab".into())]).unwrap(), "ab");
        assert_eq!(
            render("{a}_{b}_{a}", &["a", "b"], &[Int(1), Int(2)]).unwrap(),
            "1_2_1"
        );
        // Braces that are not parameters are left alone.
        let cmd = "awk '{print $1}' ${files.input.in_{i}} {j} {} {i";
        assert_eq!(
            render(cmd, &["i"], &[Int(3)]).unwrap(),
            "awk '{print $1}' ${files.input.in_3} {j} {} {i"
        );
        assert!(matches!(
            render("{i:03q}", &["i"], &[Int(1)]),
            Err(ParamError::BadFormat { .. })
        ));
        assert!(matches!(
            render("{i:.2d}", &["i"], &[Int(1)]),
            Err(ParamError::BadFormat { .. })
        ));
        assert!(matches!(
            render("{i:}", &["i"], &[Int(1)]),
            Err(ParamError::BadFormat { .. })
        ));
        assert!(matches!(
            render("{i:99999d}", &["i"], &[Int(1)]),
            Err(ParamError::BadFormat { .. })
        ));
        assert!(matches!(
            render("{x:03d}", &["x"], &[Float(0.5)]),
            Err(ParamError::NeedsInteger { .. })
        ));
        assert!(matches!(
            render("{x:.1f}", &["x"], &[Str("a".into())]),
            Err(ParamError::NeedsNumber { .. })
        ));
        let names = vec!["x".to_string()];
        let t = Template::compile("^a_{x}$", &names).unwrap();
        assert_eq!(t.render(&names, &[&Float(0.5)], true).unwrap(), "^a_0\\.5$");
        assert_eq!(
            Template::compile("plain", &names).unwrap().as_literal(),
            Some("plain")
        );
        assert_eq!(
            Template::compile("", &names).unwrap().as_literal(),
            Some("")
        );
    }

    proptest! {
        #[test]
        fn templates_never_panic(t in ".{0,40}") {
            let names = vec!["i".to_string(), "x".to_string()];
            if let Ok(tpl) = Template::compile(&t, &names) {
                let _ = tpl.render(&names, &[&Int(1), &Float(0.5)], false);
            }
        }
    }
}
