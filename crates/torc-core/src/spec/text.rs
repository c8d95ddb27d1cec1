//! Text to a JSON value: YAML (with anchors and `<<` merge keys), JSON and JSON5; KDL is in
//! `kdl.rs`.
//!
//! YAML aliases are replayed by the parser, so a few kilobytes of anchors can stand for a
//! billion nodes: the value is built by a visitor that counts every node it makes and stops at
//! one per byte of text plus the `yaml_alias_nodes` budget. Nesting is bounded in every
//! syntax (the parsers recurse): brackets and braces are counted in YAML, JSON5 and KDL text
//! before parsing, the YAML parser stops at 128 levels of indentation, and JSON's parser at 128.

use super::budget::{Budget, Budgets};
use super::{SpecError, SpecFormat};
use serde::de::{DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Deepest nesting of brackets and braces accepted in YAML, JSON5 and KDL text (the JSON
/// parser has its own limit).
const MAX_DEPTH: usize = 128;

/// Parses `text` into a value; a syntax error says where it is.
pub(super) fn parse(text: &str, format: SpecFormat, budgets: &Budgets) -> Result<Value, SpecError> {
    match format {
        SpecFormat::Yaml => parse_yaml(text, budgets),
        SpecFormat::Json => serde_json::from_str::<Value>(text).map_err(|e| SpecError {
            location: format!("line {}, column {}", e.line(), e.column()),
            message: format!("invalid JSON: {e}"),
        }),
        SpecFormat::Json5 => parse_json5(text),
        SpecFormat::Kdl => {
            check_depth(text, "KDL")?;
            super::kdl::parse(text)
        }
    }
}

fn parse_yaml(text: &str, budgets: &Budgets) -> Result<Value, SpecError> {
    // The YAML parser slows down sharply on deeply nested flow collections.
    check_depth(text, "YAML")?;
    let syntax = |e: serde_norway::Error| SpecError {
        location: e.location().map_or_else(
            || "document".to_string(),
            |l| format!("line {}, column {}", l.line(), l.column()),
        ),
        message: format!("invalid YAML: {e}"),
    };
    let over_budget = |e: serde_norway::Error| {
        let mut detail = e.to_string();
        if detail.starts_with("repetition limit exceeded") {
            detail = "the document's aliases are followed more than 100 times per node written \
                      (the YAML parser's own limit)"
                .to_string();
        }
        SpecError {
            location: "document".to_string(),
            message: Budget::YamlAliasNodes.message(budgets, &detail),
        }
    };
    let mut yaml: serde_norway::Value = match counted_yaml(text, budgets) {
        Ok(v) => v,
        Err((e, true)) => return Err(over_budget(e)),
        // Torc specs write templates unquoted in flow lists (`depends_on: [a_{i}]`), which
        // strict YAML rejects: retry with such items quoted, else report the first error.
        Err((e, false)) => match quote_flow_templates(text).map(|t| counted_yaml(&t, budgets)) {
            Some(Ok(v)) => v,
            Some(Err((e, true))) => return Err(over_budget(e)),
            _ => return Err(syntax(e)),
        },
    };
    yaml.apply_merge().map_err(syntax)?;
    yaml_to_json(yaml).map_err(|message| SpecError {
        location: "document".to_string(),
        message,
    })
}

/// Parses YAML into a value, making at most one node per byte of `text` plus the
/// `yaml_alias_nodes` budget (aliases are replayed: each replayed node counts). The `bool` is
/// true when the error is that budget.
fn counted_yaml(
    text: &str,
    budgets: &Budgets,
) -> Result<serde_norway::Value, (serde_norway::Error, bool)> {
    let allowed = (text.len() as u64).saturating_add(budgets.yaml_alias_nodes);
    let left = Cell::new(allowed);
    let seed = Counted {
        left: &left,
        allowed,
    };
    seed.deserialize(serde_norway::Deserializer::from_str(text))
        // The parser's own limit on how often aliases are followed is this budget too.
        .map_err(|e| {
            let replays = e.to_string().starts_with("repetition limit exceeded");
            (e, replays || left.get() == 0)
        })
}

/// Builds a YAML value as `serde_norway::Value`'s own `Deserialize` does (duplicate keys
/// refused), counting each node against `left`.
#[derive(Clone, Copy)]
struct Counted<'c> {
    left: &'c Cell<u64>,
    allowed: u64,
}

impl Counted<'_> {
    fn node<E: serde::de::Error>(self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(n) if n > 0 => {
                self.left.set(n);
                Ok(())
            }
            _ => {
                self.left.set(0);
                Err(E::custom(format_args!(
                    "the document's aliases expand it to more than {} nodes",
                    self.allowed
                )))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counted<'_> {
    type Value = serde_norway::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counted<'_> {
    type Value = serde_norway::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_norway::Value::Bool(b))
    }

    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_norway::Value::Number(i.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_norway::Value::Number(u.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_norway::Value::Number(x.into()))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_norway::Value::String(s.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_norway::Value::String(s))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.node()?;
        Ok(serde_norway::Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.node()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(serde_norway::Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde_norway::mapping::Entry;
        self.node()?;
        let mut out = serde_norway::Mapping::new();
        while let Some(key) = map.next_key_seed(self)? {
            match out.entry(key) {
                Entry::Occupied(e) => {
                    let key = match e.key() {
                        serde_norway::Value::String(s) => format!("with key {s:?}"),
                        serde_norway::Value::Number(n) => format!("with key {n}"),
                        serde_norway::Value::Bool(b) => format!("with key `{b}`"),
                        serde_norway::Value::Null => "with null key".to_string(),
                        _ => "in YAML map".to_string(),
                    };
                    return Err(serde::de::Error::custom(format_args!(
                        "duplicate entry {key}"
                    )));
                }
                Entry::Vacant(e) => {
                    e.insert(map.next_value_seed(self)?);
                }
            }
        }
        Ok(serde_norway::Value::Mapping(out))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let (tag, _) = data.variant::<String>()?;
        Err(serde::de::Error::custom(format_args!(
            "YAML tags are not supported (found `!{tag}`)"
        )))
    }
}

fn yaml_to_json(v: serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Value::Number(u.into())
            } else {
                let x = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(
                    Number::from_f64(x).ok_or_else(|| format!("the number `{n}` is not finite"))?,
                )
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_string(),
                    _ => return Err("mapping keys must be strings".to_string()),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => return Err(format!("YAML tags are not supported (found `{}`)", t.tag)),
    })
}

/// Puts double quotes around plain scalars inside YAML flow collections that contain `{`
/// (`[a_{i}, b]` becomes `["a_{i}", b]`). Block scalars, quoted strings and comments are copied
/// as they are. `None` when there was nothing to quote.
fn quote_flow_templates(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut changed = false;
    // Indentation of the line that opened a `|` or `>` block scalar, while inside one.
    let mut block_scalar: Option<usize> = None;
    let mut stack: Vec<char> = Vec::new();
    let mut expect_scalar = false;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if stack.is_empty() {
            if let Some(b) = block_scalar {
                if line.trim().is_empty() || indent > b {
                    out.push_str(line);
                    continue;
                }
                block_scalar = None;
            }
        }
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut node_start = stack.is_empty();
        while i < chars.len() {
            let c = chars[i];
            let prev_space = i == 0 || chars[i - 1].is_whitespace();
            let next_space = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            if c == '#' && prev_space {
                out.extend(&chars[i..]);
                break;
            }
            if stack.is_empty() {
                match c {
                    ' ' | '\t' => {}
                    '-' | '?' if node_start && next_space => {}
                    ':' if next_space => node_start = true,
                    '[' | '{' if node_start => {
                        stack.push(c);
                        expect_scalar = true;
                    }
                    '"' | '\'' if node_start => {
                        let end = quoted_end(&chars, i);
                        out.extend(&chars[i..end]);
                        i = end;
                        node_start = false;
                        continue;
                    }
                    '|' | '>' if node_start => {
                        block_scalar = Some(indent);
                        node_start = false;
                    }
                    _ => node_start = false,
                }
                out.push(c);
                i += 1;
                continue;
            }
            match c {
                '[' | '{' => {
                    stack.push(c);
                    expect_scalar = true;
                }
                ']' | '}' => {
                    stack.pop();
                    expect_scalar = false;
                }
                ',' => expect_scalar = true,
                ':' if next_space => expect_scalar = true,
                '"' | '\'' => {
                    let end = quoted_end(&chars, i);
                    out.extend(&chars[i..end]);
                    i = end;
                    expect_scalar = false;
                    continue;
                }
                c if c.is_whitespace() => {}
                _ if expect_scalar => {
                    let end = plain_end(&chars, i);
                    let scalar: String = chars[i..end].iter().collect();
                    let trimmed = scalar.trim_end();
                    if trimmed.contains('{') {
                        out.push('"');
                        out.push_str(&trimmed.replace('\\', "\\\\").replace('"', "\\\""));
                        out.push('"');
                        out.push_str(&scalar[trimmed.len()..]);
                        changed = true;
                    } else {
                        out.push_str(&scalar);
                    }
                    i = end;
                    expect_scalar = false;
                    continue;
                }
                _ => {}
            }
            out.push(c);
            i += 1;
        }
    }
    changed.then_some(out)
}

/// The index just past the quoted string that starts at `start` (or the end of the line).
fn quoted_end(chars: &[char], start: usize) -> usize {
    let q = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if q == '"' && chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == q {
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// The index where a plain scalar in a flow collection that starts at `start` ends.
fn plain_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        let next_space = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            '}' | ']' | ',' | '\n' | '\r' if depth == 0 => return i,
            ':' if depth == 0 && next_space => return i,
            '#' if depth == 0 && chars[i - 1].is_whitespace() => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Refuses text whose brackets and braces nest deeper than [`MAX_DEPTH`] (counted naively, so
/// braces inside strings count too: a spec never comes near the limit).
fn check_depth(text: &str, syntax: &str) -> Result<(), SpecError> {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(SpecError {
                        location: "document".to_string(),
                        message: format!("invalid {syntax}: nested more than {MAX_DEPTH} levels"),
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn parse_json5(text: &str) -> Result<Value, SpecError> {
    check_depth(text, "JSON5")?;
    json5::from_str::<Value>(text).map_err(|e| {
        let json5::Error::Message { msg, location } = e;
        SpecError {
            location: location.map_or_else(
                || "document".to_string(),
                |l| format!("line {}, column {}", l.line, l.column),
            ),
            message: format!("invalid JSON5: {msg}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_default(text: &str, format: SpecFormat) -> Result<Value, SpecError> {
        parse(text, format, &Budgets::default())
    }

    #[test]
    fn yaml_keeps_key_order_and_applies_merges() {
        let v = parse_default(
            "defaults: &d\n  a: 1\n  b: 2\nthing:\n  <<: *d\n  b: 3\nz: 1\ny: 2\n",
            SpecFormat::Yaml,
        )
        .unwrap();
        assert_eq!(v["thing"], json!({"b": 3, "a": 1}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["defaults", "thing", "z", "y"]);
    }

    #[test]
    fn yaml_colon_range_stays_a_string() {
        let v = parse_default("i: 1:10\nj: 0:1:0.5\n", SpecFormat::Yaml).unwrap();
        assert_eq!(v["i"], json!("1:10"));
        assert_eq!(v["j"], json!("0:1:0.5"));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = parse_default("name: x\njobs: [\n", SpecFormat::Yaml).unwrap_err();
        assert!(e.location.starts_with("line "), "{e:?}");
        assert!(e.message.starts_with("invalid YAML"), "{e:?}");
        let e = parse_default("{\"name\": }", SpecFormat::Json).unwrap_err();
        assert_eq!(e.location, "line 1, column 10");
        let e = parse_default("{name: }", SpecFormat::Json5).unwrap_err();
        assert!(e.location.starts_with("line 1"), "{e:?}");
        let e = parse_default(&"[".repeat(1000), SpecFormat::Json5).unwrap_err();
        assert!(e.message.contains("nested"), "{e:?}");
        let e = parse_default("a: !foo 1\n", SpecFormat::Yaml).unwrap_err();
        assert!(e.message.contains("tags"), "{e:?}");
        let e = parse_default("a: 1\na: 2\n", SpecFormat::Yaml).unwrap_err();
        assert!(e.message.contains("duplicate"), "{e:?}");
    }

    #[test]
    fn unquoted_templates_in_flow_lists_are_accepted() {
        let text = "jobs:\n  - name: b_{i}\n    command: |\n      awk '{print $1}' [x, {y}]\n    depends_on: [a_{i}, 'q_{i}', plain, \"c_{i:03d}\"]  # note {x}\n    env: {K: v_{i}, L: 2}\n    other: [\n      x_{i},\n      y]\n";
        let fixed = quote_flow_templates(text).unwrap();
        assert!(
            fixed.contains("depends_on: [\"a_{i}\", 'q_{i}', plain, \"c_{i:03d}\"]  # note {x}"),
            "{fixed}"
        );
        assert!(fixed.contains("awk '{print $1}' [x, {y}]"), "{fixed}");
        assert!(fixed.contains("{K: \"v_{i}\", L: 2}"), "{fixed}");
        assert!(fixed.contains("\"x_{i}\","), "{fixed}");
        let v = parse_default(text, SpecFormat::Yaml).unwrap();
        assert_eq!(
            v["jobs"][0]["depends_on"],
            json!(["a_{i}", "q_{i}", "plain", "c_{i:03d}"])
        );
        assert_eq!(
            v["jobs"][0]["command"],
            json!("awk '{print $1}' [x, {y}]\n")
        );
        assert_eq!(v["jobs"][0]["other"], json!(["x_{i}", "y"]));
        assert_eq!(quote_flow_templates("a: [x, y]\n"), None);
    }

    #[test]
    fn json5_comments_and_trailing_commas() {
        let v = parse_default("{ // c\n name: 'x', jobs: [1,], }", SpecFormat::Json5).unwrap();
        assert_eq!(v, json!({"name": "x", "jobs": [1]}));
    }
}
