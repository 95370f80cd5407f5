//! The record schema: field declarations → [`Schema`] record types, with defaults and ranges checked.

use super::Checker;
use super::ir::*;
use crate::date;
use crate::diagnostic::Diagnostic;
use crate::num::Num;
use crate::syntax::ast::{FieldDecl, Literal, RangeDecl, TypeExpr};

/// Builds a record type's fields, registering nested record types.
pub(super) fn build_fields(c: &mut Checker<'_>, decls: &[FieldDecl], root: bool) -> Vec<Field> {
    let mut fields: Vec<Field> = Vec::new();
    for d in decls {
        if fields.iter().any(|f| f.name == d.name.name) {
            c.error("duplicate", d.name.span, format!("field `{}` is declared twice", d.name.name));
            continue;
        }
        let ty = match &d.ty {
            TypeExpr::Scalar(name, range, span) => {
                let bounds = range.as_ref().map(|r| bounds(c, r, *span)).unwrap_or_default();
                match name.as_str() {
                    "text" => FieldType::Text,
                    "bool" => FieldType::Bool,
                    "integer" => FieldType::Integer(bounds),
                    "decimal" => FieldType::Decimal(bounds),
                    "date" => FieldType::Date,
                    _ => FieldType::Level,
                }
            }
            TypeExpr::Enum(values) => {
                let mut vs: Vec<String> = Vec::new();
                for v in values {
                    if vs.contains(&v.name) {
                        c.error("duplicate", v.span, format!("`{}` is listed twice", v.name));
                    } else {
                        vs.push(v.name.clone());
                    }
                }
                c.schema.enums.push(EnumType { values: vs });
                FieldType::Enum(c.schema.enums.len() - 1)
            }
            TypeExpr::List(inner) | TypeExpr::Record(inner) => {
                let id = c.schema.records.len();
                c.schema.records.push(RecordType { fields: Vec::new() });
                let built = build_fields(c, inner, false);
                if let Some(r) = c.schema.records.get_mut(id) {
                    r.fields = built;
                }
                if matches!(d.ty, TypeExpr::List(_)) { FieldType::List(id) } else { FieldType::Record(id) }
            }
        };
        let role = match &d.role {
            None => None,
            Some((r, span)) => {
                if !root {
                    c.error("role-nested", *span, "roles belong on fields of the record itself, not of nested records");
                }
                let role = match r.as_str() {
                    "subject" => Role::Subject,
                    "period" => Role::Period,
                    _ => Role::Cohort,
                };
                if role != Role::Cohort && fields.iter().any(|f| f.role == Some(role)) {
                    c.error("duplicate", *span, format!("only one field has `role {r}`"));
                }
                if !matches!(ty, FieldType::Text) && role == Role::Period {
                    c.error("type-mismatch", *span, "the period field is text such as \"2025\", \"2025-Q3\" or \"2025-07\"");
                }
                Some(role)
            }
        };
        if matches!(ty, FieldType::Record(_)) && d.default.is_some() {
            c.error("bad-default", d.span, "a nested record has no default");
        }
        let default = d.default.as_ref().and_then(|lit| default_value(c, &ty, lit));
        if d.optional && d.default.is_some() {
            c.diags.push(
                Diagnostic::warning(
                    "optional-with-default",
                    d.name.span,
                    format!("`{}` has a default, so it is never absent", d.name.name),
                )
                .with_help("remove the `?`"),
            );
        }
        fields.push(Field { name: d.name.name.clone(), ty, optional: d.optional && d.default.is_none(), default, role, span: d.span });
    }
    fields
}

fn bounds(c: &mut Checker<'_>, r: &RangeDecl, span: crate::source::Span) -> Bounds {
    let mut num = |t: &str| match Num::parse_decimal(t) {
        Ok(n) => Some(n),
        Err(e) => {
            c.error("bad-number", span, format!("`{t}`: {e}"));
            None
        }
    };
    match r {
        RangeDecl::Between(a, b) => Bounds { min: num(a).map(|n| (n, true)), max: num(b).map(|n| (n, true)) },
        RangeDecl::Bound(op, a) => {
            let n = num(a);
            match op.as_str() {
                ">=" => Bounds { min: n.map(|n| (n, true)), max: None },
                ">" => Bounds { min: n.map(|n| (n, false)), max: None },
                "<=" => Bounds { min: None, max: n.map(|n| (n, true)) },
                "<" => Bounds { min: None, max: n.map(|n| (n, false)) },
                _ => {
                    c.error("bad-range", span, "a range is `in a..b`, `>= a`, `> a`, `<= a` or `< a`");
                    Bounds::default()
                }
            }
        }
    }
}

fn default_value(c: &mut Checker<'_>, ty: &FieldType, lit: &Literal) -> Option<Const> {
    let bad = |c: &mut Checker<'_>, what: &str| {
        c.error("bad-default", lit.span(), format!("the default must be {what}"));
        None
    };
    match (ty, lit) {
        (FieldType::Text, Literal::Text(t, _)) => Some(Const::Text(super::ir::nfc(t))),
        (FieldType::Bool, Literal::Bool(b, _)) => Some(Const::Bool(*b)),
        (FieldType::Integer(b) | FieldType::Decimal(b), Literal::Number(t, span)) => {
            let n = match Num::parse_decimal(t) {
                Ok(n) => n,
                Err(e) => {
                    c.error("bad-number", *span, format!("`{t}`: {e}"));
                    return None;
                }
            };
            if matches!(ty, FieldType::Integer(_)) && !n.is_integer() {
                return bad(c, "a whole number");
            }
            if !b.contains(&n) {
                return bad(c, &b.describe());
            }
            Some(Const::Num(n))
        }
        (FieldType::Date, Literal::Date(t, _)) => match date::parse_date(t) {
            Some(d) => Some(Const::Date(d)),
            None => bad(c, "a calendar date"),
        },
        (FieldType::Enum(e), Literal::Name(n, _) | Literal::Text(n, _)) => {
            let values = c.schema.enums.get(*e).map(|e| e.values.clone()).unwrap_or_default();
            match values.iter().position(|v| v == n).and_then(|i| u16::try_from(i).ok()) {
                Some(i) => Some(Const::Enum(u16::try_from(*e).unwrap_or(u16::MAX), i)),
                None => bad(c, &format!("one of {}", values.join(", "))),
            }
        }
        // Level defaults are resolved once the levels are known.
        (FieldType::Level, Literal::Name(n, _) | Literal::Text(n, _)) => Some(Const::Text(n.clone())),
        (FieldType::List(_), Literal::Array(items, _)) if items.is_empty() => Some(Const::EmptyList),
        (FieldType::List(_), _) => bad(c, "`[]`"),
        _ => bad(c, "a value of the field's type"),
    }
}

/// Turns level defaults (kept as text until the levels were read) into level indexes.
pub(super) fn resolve_level_defaults(c: &mut Checker<'_>) {
    let levels = c.schema.levels.clone();
    let ordered = c.schema.ordered_levels;
    let mut errors = Vec::new();
    for r in &mut c.schema.records {
        for f in &mut r.fields {
            if let (FieldType::Level, Some(Const::Text(name))) = (&f.ty, &f.default) {
                match levels.iter().take(ordered).position(|l| l == name).and_then(|i| u8::try_from(i).ok()) {
                    Some(i) => f.default = Some(Const::Level(i)),
                    None => {
                        errors.push(Diagnostic::error("bad-default", f.span, format!("`{name}` is not one of the levels")));
                        f.default = None;
                    }
                }
            }
        }
    }
    c.diags.extend(errors);
}
