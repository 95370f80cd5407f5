//! Conversions between `merit.v1` messages and the library's types. Records become the same
//! JSON the CLI reads, so both paths validate a record identically.

use super::pb;
use crate::answer;
use crate::check::ir::{Const, Field, FieldType, Role, Schema};
use crate::compile::RuleSet;
use crate::date;
use crate::diagnostic::{Diagnostic, Severity};
use crate::eval::Outcome;
use crate::eval::record::Record;
use crate::registry::Loaded;
use crate::source::SourceFile;
use serde_json::{Map, Value as Json};

/// A record value tree as JSON: decimals as exact JSON numbers (read from their text), dates
/// and text as strings, an unset value as null (absent).
pub fn record_json(r: &pb::RecordValue) -> Json {
    Json::Object(r.fields.iter().map(|(k, v)| (k.clone(), value_json(v))).collect::<Map<_, _>>())
}

fn value_json(v: &pb::Value) -> Json {
    use pb::value::Kind;
    match &v.kind {
        None => Json::Null,
        Some(Kind::Text(t)) | Some(Kind::Date(t)) => Json::String(t.clone()),
        Some(Kind::Boolean(b)) => Json::Bool(*b),
        Some(Kind::Integer(i)) => Json::from(*i),
        // Kept as text when it is no number, so the schema check reports it with its path.
        Some(Kind::Decimal(d)) => match serde_json::from_str::<Json>(d) {
            Ok(n @ Json::Number(_)) => n,
            _ => Json::String(d.clone()),
        },
        Some(Kind::List(l)) => Json::Array(l.items.iter().map(value_json).collect()),
        Some(Kind::Record(r)) => record_json(r),
    }
}

/// A JSON record as a value tree (for clients and tests that hold JSON).
pub fn json_record(j: &Json) -> pb::RecordValue {
    match j {
        Json::Object(m) => pb::RecordValue { fields: m.iter().map(|(k, v)| (k.clone(), json_value(v))).collect() },
        _ => pb::RecordValue::default(),
    }
}

fn json_value(j: &Json) -> pb::Value {
    use pb::value::Kind;
    let kind = match j {
        Json::Null => None,
        Json::Bool(b) => Some(Kind::Boolean(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) if !n.as_str().contains(['.', 'e', 'E']) => Some(Kind::Integer(i)),
            _ => Some(Kind::Decimal(n.as_str().to_string())),
        },
        Json::String(s) => Some(if date::parse_date(s).is_some() { Kind::Date(s.clone()) } else { Kind::Text(s.clone()) }),
        Json::Array(items) => Some(Kind::List(pb::ListValue { items: items.iter().map(json_value).collect() })),
        Json::Object(_) => Some(Kind::Record(json_record(j))),
    };
    pb::Value { kind }
}

/// The rule set's identity.
pub fn identity(rs: &RuleSet) -> pb::RuleSetIdentity {
    pb::RuleSetIdentity { id: rs.checked.id.clone(), version: rs.checked.version.clone(), hash: rs.hash.clone() }
}

/// The answer for one record: the same fields as `merit classify --json`.
pub fn classification(rs: &RuleSet, record: &Record, o: &Outcome) -> pb::Classification {
    let trace = o
        .trace
        .iter()
        .map(|s| {
            let src = rs.sources.get(s.source);
            pb::TraceStep {
                step: s.kind.as_str().to_string(),
                rule: src.map(|x| x.name.clone()).unwrap_or_default(),
                at: src.map(|x| format!("{}:{}", rs.source.name, x.loc)).unwrap_or_default(),
                text: src.map(|x| x.text.clone()).unwrap_or_default(),
                inputs: src.map(|x| x.inputs.clone()).unwrap_or_default(),
                value: answer::step_value(rs, s),
                effect: match s.levels {
                    Some((a, b)) if a != b => format!("{} → {}", rs.level_id(a), rs.level_id(b)),
                    _ => String::new(),
                },
                message: s.message.clone().unwrap_or_default(),
            }
        })
        .collect();
    pb::Classification {
        ruleset: Some(identity(rs)),
        subject: answer::subject_of(rs, record).to_string(),
        outcome: Some(pb::Outcome {
            id: rs.level_id(o.level).to_string(),
            label: rs.level_label(o.level).to_string(),
            rank: rs.is_ordered(o.level).then_some(u32::from(o.level) + 1),
        }),
        total: o.total.map(|t| answer::format_total(&t)),
        criteria: answer::criteria_by_name(rs, o),
        flags: o.flag_codes(rs).into_iter().map(str::to_string).collect(),
        trace,
        quota: o.quota.map(|q| pb::QuotaPlace { position: q.position, limit: q.limit, tied: q.tied }),
    }
}

/// A diagnostic as a message.
pub fn diagnostic(source: &SourceFile, d: &Diagnostic) -> pb::Diagnostic {
    let a = source.line_col(d.span.lo);
    let b = source.line_col(d.span.hi);
    pb::Diagnostic {
        severity: match d.severity {
            Severity::Error => pb::Severity::Error as i32,
            Severity::Warning => pb::Severity::Warning as i32,
        },
        code: d.code.to_string(),
        message: d.message.clone(),
        hint: d.help.clone().unwrap_or_default(),
        range: Some(pb::SourceRange { start_line: a.line, start_column: a.col, end_line: b.line, end_column: b.col }),
    }
}

/// A served rule set's summary.
pub fn summary(l: &Loaded) -> pb::RuleSetSummary {
    pb::RuleSetSummary {
        ruleset: Some(identity(&l.rs)),
        title: l.rs.checked.title.clone(),
        effective_date: l.rs.effective(),
        file: l.file.clone(),
    }
}

/// The record schema as messages.
pub fn schema(schema: &Schema) -> Vec<pb::FieldSchema> {
    fields(schema, 0)
}

fn fields(schema: &Schema, rt: usize) -> Vec<pb::FieldSchema> {
    schema.records.get(rt).map(|r| r.fields.iter().map(|f| field(schema, f)).collect()).unwrap_or_default()
}

fn field(schema: &Schema, f: &Field) -> pb::FieldSchema {
    let (ty, values, nested, range) = match &f.ty {
        FieldType::Text => ("text", Vec::new(), Vec::new(), String::new()),
        FieldType::Bool => ("bool", Vec::new(), Vec::new(), String::new()),
        FieldType::Integer(b) => ("integer", Vec::new(), Vec::new(), b.describe()),
        FieldType::Decimal(b) => ("decimal", Vec::new(), Vec::new(), b.describe()),
        FieldType::Date => ("date", Vec::new(), Vec::new(), String::new()),
        FieldType::Level => ("level", schema.levels.iter().take(schema.ordered_levels).cloned().collect(), Vec::new(), String::new()),
        FieldType::Enum(e) => ("choice", schema.enums.get(*e).map(|x| x.values.clone()).unwrap_or_default(), Vec::new(), String::new()),
        FieldType::List(r) => ("list", Vec::new(), fields(schema, *r), String::new()),
        FieldType::Record(r) => ("record", Vec::new(), fields(schema, *r), String::new()),
    };
    let default_value = f.default.as_ref().map(|c| match c {
        Const::Absent => String::new(),
        Const::Bool(b) => b.to_string(),
        Const::Num(n) => n.to_string(),
        Const::Text(t) => t.clone(),
        Const::Date(d) => date::format_date(*d),
        Const::Enum(t, e) => crate::eval::record::enum_name(schema, *t, *e).to_string(),
        Const::Level(l) => schema.levels.get(*l as usize).cloned().unwrap_or_default(),
        Const::EmptyList => "[]".to_string(),
    });
    pb::FieldSchema {
        name: f.name.clone(),
        r#type: ty.to_string(),
        optional: f.optional,
        default_value,
        role: match f.role {
            Some(Role::Subject) => "subject",
            Some(Role::Period) => "period",
            Some(Role::Cohort) => "cohort",
            None => "",
        }
        .to_string(),
        values,
        fields: nested,
        range,
    }
}

/// Decodes a value tree straight into a record, when it fits the schema exactly as the JSON
/// path would accept it; `None` otherwise, and the caller takes the JSON path, which names
/// every field at fault. (A request's record is decoded once per request: this skips building
/// a JSON tree.)
pub fn record_from_tree(schema: &Schema, r: &pb::RecordValue) -> Option<Record> {
    tree_record(schema, 0, r)
}

fn tree_record(schema: &Schema, rt: usize, r: &pb::RecordValue) -> Option<Record> {
    let fields = &schema.records.get(rt)?.fields;
    let mut slots = Vec::with_capacity(fields.len());
    // Field names are distinct, so every key is known exactly when every key is found.
    let mut found = 0;
    for f in fields {
        let given = r.fields.get(&f.name);
        found += usize::from(given.is_some());
        slots.push(match given.and_then(|v| v.kind.as_ref()) {
            None => match &f.default {
                Some(c) => crate::eval::record::from_const(c),
                None if f.optional => crate::eval::record::Value::Absent,
                None => return None,
            },
            Some(k) => tree_value(schema, f, k)?,
        });
    }
    (found == r.fields.len()).then_some(Record { slots })
}

fn tree_value(schema: &Schema, f: &Field, k: &pb::value::Kind) -> Option<crate::eval::record::Value> {
    use crate::eval::record::Value;
    use crate::num::Num;
    use pb::value::Kind;
    let number = |text: &str, integer_only: bool| -> Option<Value> {
        let n = Num::parse_decimal(text).ok()?;
        match &f.ty {
            FieldType::Integer(b) if b.contains(&n) && !(integer_only && text.contains(['.', 'e', 'E'])) => Some(Value::Num(n)),
            FieldType::Decimal(b) if b.contains(&n) => Some(Value::Num(n)),
            _ => None,
        }
    };
    match (&f.ty, k) {
        (FieldType::Text, Kind::Text(t) | Kind::Date(t)) => {
            if f.role == Some(Role::Period) && date::parse_period(t).is_none() {
                return None;
            }
            let text = if unicode_normalization::is_nfc(t) { t.clone() } else { crate::check::ir::nfc(t) };
            Some(Value::Text(text.into_boxed_str()))
        }
        (FieldType::Bool, Kind::Boolean(b)) => Some(Value::Bool(*b)),
        (FieldType::Integer(b) | FieldType::Decimal(b), Kind::Integer(i)) => {
            let n = Num::from_int(*i);
            b.contains(&n).then_some(Value::Num(n))
        }
        // As the JSON path reads it: only text that is a JSON integer.
        (FieldType::Integer(_), Kind::Decimal(d)) if serde_json::from_str::<serde_json::Number>(d).is_ok() => number(d, true),
        (FieldType::Decimal(_), Kind::Decimal(d)) if serde_json::from_str::<serde_json::Number>(d).is_ok() => number(d, false),
        (FieldType::Decimal(_), Kind::Text(d)) => number(d, false),
        (FieldType::Date, Kind::Date(d) | Kind::Text(d)) => date::parse_date(d).map(Value::Date),
        (FieldType::Level, Kind::Text(t)) => {
            schema.levels.get(..schema.ordered_levels)?.iter().position(|l| l == t).and_then(|i| u8::try_from(i).ok()).map(Value::Level)
        }
        (FieldType::Enum(e), Kind::Text(t)) => {
            let i = schema.enums.get(*e)?.values.iter().position(|v| v == t)?;
            Some(Value::Enum(u16::try_from(*e).ok()?, u16::try_from(i).ok()?))
        }
        (FieldType::List(rt), Kind::List(l)) => {
            let items = l.items.iter().map(|v| match &v.kind {
                Some(Kind::Record(r)) => tree_record(schema, *rt, r),
                _ => None,
            });
            items.collect::<Option<Vec<_>>>().map(Value::List)
        }
        (FieldType::Record(rt), Kind::Record(r)) => tree_record(schema, *rt, r).map(|r| Value::Record(Box::new(r))),
        _ => None,
    }
}

/// The text of a field of a value tree (for choosing the rule-set version by period).
pub fn tree_text<'a>(r: &'a pb::RecordValue, field: &str) -> Option<&'a str> {
    match r.fields.get(field)?.kind.as_ref()? {
        pb::value::Kind::Text(t) | pb::value::Kind::Date(t) => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{json_record, record_from_tree};
    use crate::compile::compile;
    use crate::eval::record::{from_json, to_json_text};

    #[test]
    fn the_tree_path_reads_what_the_json_path_reads_and_refuses_unknown_fields() {
        let (rs, _) = compile("rules/reg366.merit", include_str!("../../rules/reg366.merit")).expect("bundled rules compile");
        let schema = &rs.checked.schema;
        let json: serde_json::Value = serde_json::from_str(include_str!("../../examples/staff_2025.json")).expect("example is JSON");
        let fast = record_from_tree(schema, &json_record(&json)).expect("the example fits");
        let checked = from_json(schema, &json).expect("the example fits");
        assert_eq!(to_json_text(schema, &fast), to_json_text(schema, &checked));
        // An unknown field, at the root or in a list item, sends the record to the JSON path,
        // which names it.
        let mut root = json.clone();
        root["general_point"] = 27.into();
        assert!(record_from_tree(schema, &json_record(&root)).is_none());
        let mut item = json.clone();
        item["tasks"][2]["deadlines"] = "2025-01-01".into();
        assert!(record_from_tree(schema, &json_record(&item)).is_none());
        let errors = from_json(schema, &item).expect_err("unknown field");
        assert_eq!(errors[0].path, "tasks[2].deadlines");
    }
}
