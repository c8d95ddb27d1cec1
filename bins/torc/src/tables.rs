//! The files a spec names, read for the core (which reads none): `parameters_file` tables
//! (`.csv` with a header row, `.json` an array of objects, `.jsonl` / `.ndjson` one object per
//! line) and `@path` value lists (one value per non-empty line). Relative paths resolve against
//! the current directory. CSV cells are typed as the core types text (integer, else float, else
//! string); JSON values keep their own types.

use serde_json::{Map, Value};
use std::path::Path;
use torc_core::spec::{typed_cell, TableSource};

/// Reads tables and lists from the file system.
pub struct SpecFiles;

impl TableSource for SpecFiles {
    fn table(&self, path: &str) -> Result<Vec<Map<String, Value>>, String> {
        let text = read(path)?;
        let ext = Path::new(path)
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => parse_csv(&text),
            "json" => parse_json(&text),
            "jsonl" | "ndjson" => parse_jsonl(&text),
            _ => Err(format!(
                "unknown table format{}: expected .csv, .json, .jsonl or .ndjson",
                if ext.is_empty() {
                    String::new()
                } else {
                    format!(" `.{ext}`")
                }
            )),
        }
    }

    fn lines(&self, path: &str) -> Result<Vec<String>, String> {
        Ok(read(path)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// An array of objects.
fn parse_json(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("expected a JSON array of objects, one per row".to_string());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(m) => Ok(m),
            _ => Err(format!("item {i} is not an object")),
        })
        .collect()
}

/// One object per non-empty line.
fn parse_jsonl(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(format!("line {}: expected a JSON object", n + 1)),
            Err(e) => Err(format!("line {}: invalid JSON: {e}", n + 1)),
        })
        .collect()
}

/// A header row, then one row per record. Fields may be quoted (`"a, b"`, `""` for a quote,
/// line breaks inside quotes); blank lines are skipped; unquoted fields are trimmed.
fn parse_csv(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let records = csv_records(text)?;
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Ok(Vec::new());
    };
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(format!("line 1: column {} has no name", i + 1));
        }
        if header[..i].contains(name) {
            return Err(format!("line 1: column `{name}` appears twice"));
        }
    }
    records
        .map(|(line, fields)| {
            if fields.len() != header.len() {
                return Err(format!(
                    "line {line}: {} fields, but the header has {}",
                    fields.len(),
                    header.len()
                ));
            }
            Ok(header
                .iter()
                .zip(fields)
                .map(|(name, cell)| (name.clone(), typed_cell(&cell)))
                .collect())
        })
        .collect()
}

/// The records of CSV text with the line each starts on; blank lines are skipped.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    let finish = |field: &mut String, was_quoted: bool| {
        let f = std::mem::take(field);
        if was_quoted {
            f
        } else {
            f.trim().to_string()
        }
    };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            ',' => {
                fields.push(finish(&mut field, was_quoted));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(finish(&mut field, was_quoted));
                was_quoted = false;
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    records.push((start, std::mem::take(&mut fields)));
                }
                fields.clear();
                line += 1;
                start = line;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {start}: a quoted field is not closed"));
    }
    fields.push(finish(&mut field, was_quoted));
    if !(fields.len() == 1 && fields[0].is_empty()) {
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_cells_are_typed_and_quotes_understood() {
        let rows = parse_csv(
            "id, lr ,name\r\n1,0.5,adam\n\n 2 , 1e-3 ,\"sgd, momentum\"\n3,x,\"say \"\"hi\"\"\nthere\"\n",
        )
        .unwrap();
        let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        assert_eq!(
            rows,
            [
                json!({"id": 1, "lr": 0.5, "name": "adam"}),
                json!({"id": 2, "lr": 0.001, "name": "sgd, momentum"}),
                json!({"id": 3, "lr": "x", "name": "say \"hi\"\nthere"}),
            ]
        );
        assert_eq!(parse_csv("").unwrap(), Vec::new());
        assert_eq!(parse_csv("a,b\n").unwrap(), Vec::new());
        assert_eq!(
            parse_csv("a,b\n1,2\n3\n").unwrap_err(),
            "line 3: 1 fields, but the header has 2"
        );
        assert_eq!(
            parse_csv("a,a\n1,2\n").unwrap_err(),
            "line 1: column `a` appears twice"
        );
        assert!(parse_csv("a\n\"open\n").unwrap_err().contains("not closed"));
    }

    #[test]
    fn json_and_jsonl_tables() {
        assert_eq!(
            parse_json(r#"[{"a": 1}, {"a": "x"}]"#).unwrap()[1]["a"],
            json!("x")
        );
        assert!(parse_json(r#"{"a": 1}"#).unwrap_err().contains("array"));
        assert!(parse_json("[1]").unwrap_err().contains("item 0"));
        let rows = parse_jsonl("{\"a\": 1}\n\n{\"a\": 2.5}\n").unwrap();
        assert_eq!(rows[1]["a"], json!(2.5));
        assert_eq!(
            parse_jsonl("{}\n[1]\n").unwrap_err(),
            "line 2: expected a JSON object"
        );
    }

    #[test]
    fn files_relative_to_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.CSV");
        std::fs::write(&csv, "a\n1\n").unwrap();
        let list = dir.path().join("v.txt");
        std::fs::write(&list, "x\n\n  y  \n").unwrap();
        let files = SpecFiles;
        assert_eq!(
            files.table(csv.to_str().unwrap()).unwrap()[0]["a"],
            json!(1)
        );
        assert_eq!(files.lines(list.to_str().unwrap()).unwrap(), ["x", "y"]);
        assert!(files
            .table(list.to_str().unwrap())
            .unwrap_err()
            .contains("unknown table format `.txt`"));
        assert!(files.table("/nonexistent/t.csv").is_err());
    }
}
