//! Reading parameters: workflow-level ones, each entry's own and the ones it uses, and
//! parameter tables (a `parameters_file` written in as rows); also `env` mappings.

use super::budget::Budget;
use super::diag::{did_you_mean, Errors, Loc};
use super::fields::{field, get_bool, get_map, get_str, get_str_list};
use super::params::{self, is_param_name, type_name, ParamError, ParamSet, ParamValue};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Workflow-level parameters by name (`None`: the value was invalid, already reported).
type WorkflowParamList = Vec<(String, Option<Rc<Vec<ParamValue>>>)>;

/// What entries may take from the workflow: its parameters, and its table.
pub(super) struct WorkflowParams {
    list: WorkflowParamList,
    /// `Err(())`: there is a table but it is invalid (already reported).
    table: Option<Result<ParamSet, ()>>,
}

pub(super) fn read_workflow_params(
    map: &Map<String, Value>,
    root: &Loc<'_>,
    errs: &mut Errors,
) -> WorkflowParams {
    let mut list = Vec::new();
    let table = field(map, "parameters_file").map(|t| {
        if map.contains_key("parameters") {
            errs.push(
                root.key("parameters_file"),
                "give either `parameters` or `parameters_file`, not both",
            );
        }
        read_table(t, &root.key("parameters_file"), errs).ok_or(())
    });
    if let Some(params) = get_map(map, "parameters", root, errs) {
        let loc = root.key("parameters");
        for (name, v) in params {
            list.push((
                name.clone(),
                read_param_values(name, v, &loc, errs).map(Rc::new),
            ));
        }
    }
    WorkflowParams { list, table }
}

/// A `parameters_file` table, written in as a list of rows: one instance per row, the columns
/// as parameters.
fn read_table(v: &Value, loc: &Loc<'_>, errs: &mut Errors) -> Option<ParamSet> {
    let rows = match v {
        Value::Array(rows) => rows,
        Value::String(path) => {
            errs.push(
                loc,
                format!(
                    "the parameter table `{path}` was not read (only the command line reads files)"
                ),
            );
            return None;
        }
        other => {
            errs.push(
                loc,
                format!(
                    "expected the path of a table file, found {}",
                    type_name(other)
                ),
            );
            return None;
        }
    };
    let Some(first) = rows.first() else {
        errs.push(loc, "the parameter table has no rows");
        return None;
    };
    let Some(first) = first.as_object() else {
        errs.push(
            loc.index(0),
            format!(
                "expected a row mapping columns to values, found {}",
                type_name(first)
            ),
        );
        return None;
    };
    let names: Vec<String> = first.keys().cloned().collect();
    let mut ok = !names.is_empty();
    if names.is_empty() {
        errs.push(loc.index(0), "the parameter table has no columns");
    }
    for name in &names {
        if !is_param_name(name) {
            errs.push(
                loc,
                format!("invalid column name `{name}`: parameter names use letters, digits and `_`, not starting with a digit"),
            );
            ok = false;
        }
    }
    let mut columns: Vec<Vec<ParamValue>> = vec![Vec::with_capacity(rows.len()); names.len()];
    for (i, row) in rows.iter().enumerate() {
        let here = loc.index(i);
        let Some(row) = row.as_object() else {
            errs.push(
                here,
                format!(
                    "expected a row mapping columns to values, found {}",
                    type_name(row)
                ),
            );
            ok = false;
            continue;
        };
        if let Some(extra) = row.keys().find(|k| !first.contains_key(k.as_str())) {
            errs.push(
                here,
                format!("row {i} has a column `{extra}` that the first row does not have"),
            );
            ok = false;
        }
        for (column, name) in columns.iter_mut().zip(&names) {
            match row.get(name) {
                Some(Value::Number(n)) => column.push(match n.as_i64() {
                    Some(i) => ParamValue::Int(i),
                    None => ParamValue::Float(n.as_f64().unwrap_or(0.0)),
                }),
                Some(Value::String(s)) => column.push(ParamValue::Str(s.clone())),
                Some(Value::Bool(b)) => column.push(ParamValue::Str(b.to_string())),
                Some(other) => {
                    errs.push(
                        here.key(name),
                        format!("expected a number or a string, found {}", type_name(other)),
                    );
                    ok = false;
                }
                None => {
                    errs.push(here, format!("row {i} has no value for column `{name}`"));
                    ok = false;
                }
            }
        }
    }
    ok.then(|| ParamSet {
        names,
        values: columns.into_iter().map(Rc::new).collect(),
        zip: true,
    })
}

/// An `env` mapping: names to strings (numbers and booleans as written).
pub(super) fn read_env(
    m: &Map<String, Value>,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(vars) = get_map(m, "env", loc, errs) else {
        return env;
    };
    let eloc = loc.key("env");
    for (k, v) in vars {
        if k.is_empty() || k.contains(['=', '\0']) {
            errs.push(
                eloc.key(k),
                format!("invalid environment variable name {k:?}"),
            );
            continue;
        }
        let value = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                errs.push(
                    eloc.key(k),
                    format!(
                        "expected a string, number or boolean, found {}",
                        type_name(other)
                    ),
                );
                continue;
            }
        };
        env.insert(k.clone(), value);
    }
    env
}

fn read_param_values(
    name: &str,
    v: &Value,
    loc: &Loc<'_>,
    errs: &mut Errors,
) -> Option<Vec<ParamValue>> {
    let here = loc.key(name);
    if !is_param_name(name) {
        errs.push(
            here,
            format!("invalid parameter name `{name}`: use letters, digits and `_`, not starting with a digit"),
        );
        return None;
    }
    let room = errs.meter.left(Budget::ParameterValues);
    match params::parse_value_within(v, usize::try_from(room).unwrap_or(usize::MAX)) {
        Ok(values) => {
            // Within `room`: always granted.
            errs.spend(
                here,
                Budget::ParameterValues,
                values.len() as u64,
                String::new,
            );
            Some(values)
        }
        Err(ParamError::TooManyValues { text, count }) if count <= params::MAX_VALUES as u128 => {
            let made = errs.meter.budgets.parameter_values - room;
            errs.spend(here, Budget::ParameterValues, count as u64, || {
                format!(
                    "`{text}` makes {count} values, after {made} made by the parameters before it"
                )
            });
            None
        }
        Err(e) => {
            errs.push(here, e.to_string());
            None
        }
    }
}

/// A job's or file's parameters: its own `parameters`, plus the workflow-level ones named in
/// `use_parameters` (its own win on a name clash). `None` when it has none (or they are
/// invalid, which is reported).
pub(super) fn read_param_set(
    map: &Map<String, Value>,
    loc: &Loc<'_>,
    workflow: &WorkflowParams,
    errs: &mut Errors,
) -> Option<ParamSet> {
    let mut set = ParamSet {
        names: Vec::new(),
        values: Vec::new(),
        zip: false,
    };
    let mut ok = true;
    let own_table = field(map, "parameters_file");
    let use_table = get_bool(map, "use_parameters_file", loc, errs).unwrap_or(false);
    if own_table.is_some() || use_table {
        if own_table.is_some() && use_table {
            errs.push(
                loc,
                "give either `parameters_file` or `use_parameters_file: true`, not both",
            );
        }
        let clash: Vec<&str> = ["parameters", "parameter_mode", "use_parameters"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        if !clash.is_empty() {
            let key = if own_table.is_some() {
                "`parameters_file`"
            } else {
                "`use_parameters_file`"
            };
            let given: Vec<String> = clash.iter().map(|k| format!("`{k}`")).collect();
            errs.push(
                loc,
                format!(
                    "a parameter table ({key}) excludes `parameters`, `parameter_mode` and \
                     `use_parameters` on the same entry, but it also has {}",
                    given.join(", ")
                ),
            );
        }
        return match own_table {
            Some(t) => read_table(t, &loc.key("parameters_file"), errs),
            None => match &workflow.table {
                Some(Ok(t)) => Some(t.clone()),
                Some(Err(())) => None,
                None => {
                    errs.push(
                        loc.key("use_parameters_file"),
                        "there is no workflow-level `parameters_file` to use",
                    );
                    None
                }
            },
        };
    }
    if let Some(local) = get_map(map, "parameters", loc, errs) {
        let ploc = loc.key("parameters");
        if local.is_empty() {
            errs.push(ploc, "`parameters` is empty");
            ok = false;
        }
        for (name, v) in local {
            match read_param_values(name, v, &ploc, errs) {
                Some(values) => {
                    set.names.push(name.clone());
                    set.values.push(Rc::new(values));
                }
                None => ok = false,
            }
        }
    }
    let used = get_str_list(map, "use_parameters", loc, errs);
    let uloc = loc.key("use_parameters");
    for (i, name) in used.iter().enumerate() {
        if set.names.iter().any(|n| n == name) {
            continue;
        }
        match workflow.list.iter().find(|(n, _)| n == name) {
            Some((_, Some(values))) => {
                set.names.push(name.to_string());
                set.values.push(values.clone());
            }
            Some((_, None)) => ok = false,
            None => {
                let hint = errs.suggest(
                    name,
                    workflow.list.len(),
                    workflow.list.iter().map(|(n, _)| n.as_str()),
                );
                errs.push(
                    uloc.index(i),
                    format!("unknown workflow parameter `{name}`{hint}"),
                );
            }
        }
    }
    if let Some(mode) = get_str(map, "parameter_mode", loc, errs) {
        match mode {
            "product" => {}
            "zip" => set.zip = true,
            other => {
                errs.push(
                    loc.key("parameter_mode"),
                    format!(
                        "unknown parameter_mode `{other}` (expected `product` or `zip`){}",
                        did_you_mean(other, ["product", "zip"])
                    ),
                );
                ok = false;
            }
        }
    }
    if set.zip && ok {
        let first = set.values.first().map_or(0, |v| v.len());
        if set.values.iter().any(|v| v.len() != first) {
            let lengths: Vec<String> = set
                .names
                .iter()
                .zip(&set.values)
                .map(|(n, v)| format!("`{n}` has {}", v.len()))
                .collect();
            let key = if map.contains_key("parameters") {
                "parameters"
            } else {
                "use_parameters"
            };
            errs.push(
                loc.key(key),
                format!(
                    "parameter_mode `zip` needs parameters with the same number of values, but {}",
                    lengths.join(", ")
                ),
            );
            ok = false;
        }
    }
    (ok && !set.names.is_empty()).then_some(set)
}
