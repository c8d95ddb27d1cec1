//! Typed access to the fields of a mapping, reporting wrong types where they are.

use super::diag::{unknown_key_message, Errors, Loc};
use super::params::type_name;
use serde_json::{Map, Value};

/// A value for a message: strings quoted, others by their type.
pub(super) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => type_name(other).to_string(),
    }
}

/// The value under `key`, treating `null` as absent.
pub(super) fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn wrong_type(loc: &Loc<'_>, key: &str, expected: &str, found: &Value, errs: &mut Errors) {
    errs.push(
        loc.key(key),
        format!("expected {expected}, found {}", type_name(found)),
    );
}

pub(super) fn get_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<&'a str> {
    match field(m, key)? {
        Value::String(s) => Some(s),
        other => {
            wrong_type(loc, key, "a string", other, errs);
            None
        }
    }
}

pub(super) fn require_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<&'a str> {
    if field(m, key).is_none() {
        errs.push(loc, format!("missing required key `{key}`"));
        return None;
    }
    get_str(m, key, loc, errs)
}

pub(super) fn get_bool(
    m: &Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<bool> {
    match field(m, key)? {
        Value::Bool(b) => Some(*b),
        other => {
            wrong_type(loc, key, "true or false", other, errs);
            None
        }
    }
}

pub(super) fn get_int(
    m: &Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<i64> {
    match field(m, key)? {
        Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
        other => {
            wrong_type(loc, key, "an integer", other, errs);
            None
        }
    }
}

pub(super) fn get_u32(
    m: &Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<u32> {
    match field(m, key)? {
        Value::Number(n) if n.as_u64().is_some_and(|u| u <= u32::MAX as u64) => {
            n.as_u64().map(|u| u as u32)
        }
        other => {
            wrong_type(loc, key, "a non-negative integer", other, errs);
            None
        }
    }
}

pub(super) fn get_list<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<&'a Vec<Value>> {
    match field(m, key)? {
        Value::Array(items) => Some(items),
        other => {
            wrong_type(loc, key, "a list", other, errs);
            None
        }
    }
}

pub(super) fn get_map<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<&'a Map<String, Value>> {
    match field(m, key)? {
        Value::Object(map) => Some(map),
        other => {
            wrong_type(loc, key, "a mapping", other, errs);
            None
        }
    }
}

pub(super) fn get_str_list<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Vec<&'a str> {
    let Some(items) = get_list(m, key, loc, errs) else {
        return Vec::new();
    };
    let lloc = loc.key(key);
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            Value::String(s) => Some(s.as_str()),
            other => {
                errs.push(
                    lloc.index(i),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        })
        .collect()
}

/// Calls `f` for each mapping in the list under `key`, after checking its keys.
pub(super) fn for_each_entry<'a>(
    map: &'a Map<String, Value>,
    key: &'static str,
    parent: &Loc<'_>,
    known: &[&str],
    errs: &mut Errors,
    mut f: impl FnMut(usize, &'a Map<String, Value>, &Loc<'_>, &mut Errors),
) {
    let Some(items) = get_list(map, key, parent, errs) else {
        return;
    };
    let list_loc = parent.key(key);
    for (i, item) in items.iter().enumerate() {
        let Some(m) = item.as_object() else {
            errs.push(
                list_loc.index(i),
                format!("expected a mapping, found {}", type_name(item)),
            );
            continue;
        };
        let name = m.get("name").and_then(Value::as_str);
        let loc = list_loc.entry(i, name);
        for k in m.keys() {
            if !known.contains(&k.as_str()) {
                errs.push(loc.key(k), unknown_key_message(k, known));
            }
        }
        f(i, m, &loc, errs);
    }
}
