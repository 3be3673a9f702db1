//! Rendering in the three formats the openstack CLI offers: a table (default),
//! JSON, and bare values; `-c COLUMN` picks columns.

use std::io::Write;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::args::Format;

/// One object: ordered (field, value) pairs.
pub type Record = Vec<(&'static str, Value)>;

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace([' ', '-'], "_")
}

fn pick<'a>(fields: &[&'a str], columns: &[String]) -> Result<Vec<&'a str>> {
    if columns.is_empty() {
        return Ok(fields.to_vec());
    }
    columns
        .iter()
        .map(|c| {
            fields
                .iter()
                .find(|f| normalise(f) == normalise(c))
                .copied()
                .ok_or_else(|| {
                    anyhow::anyhow!("unknown column {c:?} (choose from: {})", fields.join(", "))
                })
        })
        .collect()
}

/// A value as a table cell or a `-f value` line: a control character
/// (newline, escape, NUL, …) is shown escaped, so a stored value can neither
/// break the layout nor send a sequence to the reader's terminal.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::String(s) => escape_controls(s),
        other => other.to_string(),
    }
}

fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

fn table(out: &mut impl Write, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+";
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("| {c}{} ", " ".repeat(w - c.chars().count())))
            .collect::<String>()
            + "|"
    };
    writeln!(out, "{rule}")?;
    writeln!(out, "{}", line(header))?;
    writeln!(out, "{rule}")?;
    for row in rows {
        writeln!(out, "{}", line(row))?;
    }
    writeln!(out, "{rule}")?;
    Ok(())
}

/// Prints one object (`show`).
pub fn show(format: Format, columns: &[String], record: &Record) -> Result<()> {
    let fields: Vec<&str> = record.iter().map(|(f, _)| *f).collect();
    let chosen = pick(&fields, columns)?;
    let value_of = |f: &str| record.iter().find(|(k, _)| *k == f).map(|(_, v)| v);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let mut map = Map::new();
            for f in &chosen {
                map.insert(
                    (*f).to_string(),
                    value_of(f).cloned().unwrap_or(Value::Null),
                );
            }
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&Value::Object(map))?
            )?;
        }
        Format::Value => {
            for f in &chosen {
                writeln!(out, "{}", value_of(f).map(text).unwrap_or_default())?;
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = chosen
                .iter()
                .map(|f| vec![(*f).to_string(), value_of(f).map(text).unwrap_or_default()])
                .collect();
            table(&mut out, &["Field".into(), "Value".into()], &rows)?;
        }
    }
    Ok(())
}

/// Prints a list: `columns_spec` gives (header, field) pairs, in order.
pub fn list(
    format: Format,
    columns: &[String],
    spec: &[(&'static str, &'static str)],
    records: &[Record],
) -> Result<()> {
    let headers: Vec<&str> = spec.iter().map(|(h, _)| *h).collect();
    let chosen_headers = pick(&headers, columns)?;
    let chosen: Vec<(&str, &str)> = chosen_headers
        .iter()
        .filter_map(|h| spec.iter().find(|(hh, _)| hh == h).copied())
        .collect();
    let cell = |r: &Record, field: &str| -> Value {
        r.iter()
            .find(|(k, _)| *k == field)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let array: Vec<Value> = records
                .iter()
                .map(|r| {
                    let mut map = Map::new();
                    for (h, f) in &chosen {
                        map.insert((*h).to_string(), cell(r, f));
                    }
                    Value::Object(map)
                })
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&Value::Array(array))?
            )?;
        }
        Format::Value => {
            for r in records {
                let cells: Vec<String> = chosen.iter().map(|(_, f)| text(&cell(r, f))).collect();
                writeln!(out, "{}", cells.join(" "))?;
            }
        }
        Format::Table => {
            let header: Vec<String> = chosen.iter().map(|(h, _)| (*h).to_string()).collect();
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| chosen.iter().map(|(_, f)| text(&cell(r, f))).collect())
                .collect();
            table(&mut out, &header, &rows)?;
        }
    }
    Ok(())
}

/// Bytes in binary units for humans.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        let hostile = Value::String("a\u{1b}]0;owned\u{7}\nb\0c".into());
        let shown = text(&hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "a\\u{1b}]0;owned\\u{7}\\nb\\u{0}c");
        assert_eq!(text(&Value::String("plain ü".into())), "plain ü");
    }
}
