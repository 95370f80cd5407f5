//! Evaluate: a validated record under a compiled rule set → an [`Outcome`] with its trace.
//!
//! Order of application (REGULATION.md): eligibility, validity, score and band with gates,
//! vetoes, caps, flags. Quotas come later, over a cohort ([`crate::cohort`]). Evaluation is a
//! pure function of the rule set and the record: no clock, no randomness, no IO.

mod expr;
pub mod fast;
pub mod program;
pub mod record;
#[cfg(test)]
mod reference;

use crate::check::ir::{Const, Ex, Message, MessagePart};
use crate::compile::RuleSet;
use crate::num::Num;
use crate::source::Span;
pub use expr::{Ctx, Stack, V, compare};
use program::MessageCode;
use record::{FieldError, Record};
use std::fmt;

/// What went wrong while evaluating an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A division by zero.
    DivisionByZero,
    /// A number too large for exact arithmetic.
    Overflow,
    /// An absent value was used.
    Absent,
    /// A `match` value that no arm covers.
    NoArm,
    /// A period text that is not a period.
    BadPeriod,
    /// A value of the wrong type (a checker bug).
    Type,
    /// An internal inconsistency (a bug).
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::DivisionByZero => "division by zero",
            ErrorKind::Overflow => "a number too large for exact arithmetic",
            ErrorKind::Absent => "a value that is absent was used",
            ErrorKind::NoArm => "no `match` arm covers the value",
            ErrorKind::BadPeriod => "the period is not \"YYYY\", \"YYYY-Qn\" or \"YYYY-MM\"",
            ErrorKind::Type => "a value of the wrong type (internal error)",
            ErrorKind::Internal => "internal error",
        })
    }
}

/// A rule-time error: what, and in which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The rule or value being computed.
    pub rule: Option<String>,
    /// Its declaration.
    pub span: Option<Span>,
    /// Extra words for internal errors.
    pub detail: &'static str,
}

/// Why a record got no outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// The record does not fit the schema or breaks an `invalid` rule: the field paths.
    Invalid(Vec<FieldError>),
    /// A rule could not be computed for this record.
    Rule(RuleError),
}

impl EvalError {
    pub(crate) fn internal(detail: &'static str) -> EvalError {
        EvalError::Rule(RuleError { kind: ErrorKind::Internal, rule: None, span: None, detail })
    }

    /// A one-line description, with the rule's place in `rs`'s file.
    pub fn describe(&self, rs: &RuleSet) -> String {
        match self {
            EvalError::Invalid(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            EvalError::Rule(e) => {
                let at = e.span.map(|s| format!(" ({}:{})", rs.source.name, rs.source.line_col(s.lo))).unwrap_or_default();
                match &e.rule {
                    Some(r) => format!("rule `{r}`{at}: {}", e.kind),
                    None => e.kind.to_string(),
                }
            }
        }
    }
}

/// How much trace to record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TraceLevel {
    /// No trace (fastest; the outcome is identical).
    None,
    /// The steps that decided the outcome.
    Summary,
    /// Every criterion with its inputs, and every decision.
    #[default]
    Full,
}

/// What a trace step is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// A criterion's value.
    Criterion,
    /// The score classified.
    Score,
    /// An eligibility rule gave an early outcome.
    Eligibility,
    /// The band the score falls in.
    Band,
    /// A band's condition did not hold; the level fell through.
    Gate,
    /// A veto applied.
    Veto,
    /// A cap applied.
    Cap,
    /// A flag rule applied.
    Flag,
    /// A quota kept or demoted the record.
    Quota,
    /// The final outcome.
    Final,
    /// What was missing for the next level up.
    Next,
}

impl StepKind {
    /// Lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Criterion => "criterion",
            StepKind::Score => "score",
            StepKind::Eligibility => "eligibility",
            StepKind::Band => "band",
            StepKind::Gate => "gate",
            StepKind::Veto => "veto",
            StepKind::Cap => "cap",
            StepKind::Flag => "flag",
            StepKind::Quota => "quota",
            StepKind::Final => "final",
            StepKind::Next => "next",
        }
    }
}

/// A value shown in the trace.
#[derive(Clone, Copy, Debug)]
pub enum TraceValue {
    /// Nothing to show.
    None,
    /// A number.
    Num(Num),
    /// A level.
    Level(u8),
    /// A condition's result.
    Bool(bool),
}

/// One step of the explanation.
#[derive(Clone, Debug)]
pub struct TraceStep {
    /// What kind of step.
    pub kind: StepKind,
    /// Index into [`RuleSet::sources`] (`usize::MAX` for steps of no rule).
    pub source: usize,
    /// The value computed.
    pub value: TraceValue,
    /// The level before and after, when the step changed or set it.
    pub levels: Option<(u8, u8)>,
    /// The rendered `because` message, or a generated explanation.
    pub message: Option<String>,
}

/// A record's place in its cohort's quota ranking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaPlace {
    /// 1-based rank among the candidates.
    pub position: u32,
    /// How many keep the level.
    pub limit: u32,
    /// Whether it tied across the cut.
    pub tied: bool,
}

/// The result of classifying one record.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Level or outcome index.
    pub level: u8,
    /// The level the score's band gave, before gates, vetoes and caps.
    pub band: Option<u8>,
    /// The classified score, when computed.
    pub total: Option<Num>,
    /// Criterion values (let id, value), in declaration order.
    pub criteria: Vec<(usize, Num)>,
    /// Flag indexes into [`RuleSet::flag_codes`], sorted, each once.
    pub flags: Vec<u16>,
    /// Sources of the rules that decided the outcome (eligibility, gates, vetoes, caps, quotas).
    pub decided_by: Vec<usize>,
    /// The explanation (empty with [`TraceLevel::None`]).
    pub trace: Vec<TraceStep>,
    /// Set when classified in a cohort with a quota on its level.
    pub quota: Option<QuotaPlace>,
}

impl Outcome {
    /// An outcome before any step, with room for `criteria` criterion values.
    pub(crate) fn empty(criteria: usize) -> Outcome {
        Outcome {
            level: 0,
            band: None,
            total: None,
            criteria: Vec::with_capacity(criteria),
            flags: Vec::new(),
            decided_by: Vec::new(),
            trace: Vec::new(),
            quota: None,
        }
    }

    pub(crate) fn add_flag(&mut self, rs: &RuleSet, code: &str) {
        if let Some(i) = rs.flag_index(code) {
            self.add_flag_index(i);
        }
    }

    /// Adds a flag by its index into [`RuleSet::flag_codes`], keeping the set sorted.
    pub(crate) fn add_flag_index(&mut self, i: u16) {
        if let Err(pos) = self.flags.binary_search(&i) {
            self.flags.insert(pos, i);
        }
    }

    /// Flag codes, sorted.
    pub fn flag_codes<'r>(&self, rs: &'r RuleSet) -> Vec<&'r str> {
        self.flags.iter().filter_map(|&i| rs.flag_codes.get(i as usize).map(String::as_str)).collect()
    }
}

/// Renders a `because` message with its placeholders' values (`?` where a value fails).
pub fn render_message<'a>(ctx: &mut Ctx<'a>, msg: &'a Message, code: &'a MessageCode, stack: &Stack<'a>) -> String {
    let mut out = String::with_capacity(msg.parts.iter().map(|p| if let MessagePart::Text(t) = p { t.len() } else { 8 }).sum());
    for (part, compiled) in msg.parts.iter().zip(&code.parts) {
        match (part, compiled) {
            (MessagePart::Text(t), _) => out.push_str(t),
            (MessagePart::Expr(_), Some(e)) => {
                // A placeholder that fails shows `?` and must not be blamed for a later error.
                let saved = ctx.failed_in_snapshot();
                match e.eval(ctx, stack) {
                    Ok(v) => push_value(&mut out, ctx.rs, v),
                    Err(_) => out.push('?'),
                }
                ctx.restore_failed_in(saved);
            }
            (MessagePart::Expr(_), None) => out.push('?'),
        }
    }
    out
}

/// A value as text for messages and the trace.
pub fn show_value(rs: &RuleSet, v: V<'_>) -> String {
    let mut out = String::new();
    push_value(&mut out, rs, v);
    out
}

/// Appends a value's text (see [`show_value`]) without a string of its own.
fn push_value(out: &mut String, rs: &RuleSet, v: V<'_>) {
    use std::fmt::Write as _;
    match v {
        V::Absent => out.push_str("(absent)"),
        V::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        V::Num(n) => {
            let _ = write!(out, "{n}");
        }
        V::Text(t) => out.push_str(t),
        V::Date(d) => out.push_str(&crate::date::format_date(d)),
        V::Enum(t, e) => out.push_str(record::enum_name(&rs.checked.schema, t, e)),
        V::Level(l) => out.push_str(rs.level_id(l)),
        V::List(items) => {
            let _ = write!(out, "{} items", items.len());
        }
        V::Rec(_) => out.push_str("(record)"),
    }
}

/// Classifies one record (no quota). The trace level changes only what is recorded, never the outcome.
pub fn evaluate(rs: &RuleSet, record: &Record, trace: TraceLevel) -> Result<Outcome, EvalError> {
    // With the trace off the fast path answers, unless it gives up (see `fast`).
    if trace == TraceLevel::None
        && let Some(out) = rs.fast.as_deref().and_then(|plan| plan.run(rs, record))
    {
        return Ok(out);
    }
    let mut ctx = Ctx::new(rs, record);
    evaluate_in(&mut ctx, trace)
}

/// [`evaluate`] with a context the caller keeps, always with the closures (the fast path has none).
pub fn evaluate_in<'a>(ctx: &mut Ctx<'a>, trace: TraceLevel) -> Result<Outcome, EvalError> {
    let rs: &'a RuleSet = ctx.rs;
    let c = &rs.checked;
    let p = &*rs.program;
    let root = Stack::root(ctx.root);
    let mut out = Outcome::empty(c.criteria.len());
    if trace != TraceLevel::None {
        // Criteria, score, band, final and the next-level note, plus a few decisions.
        out.trace.reserve(c.criteria.len() + 8);
    }
    let tracing = trace != TraceLevel::None;
    let full = trace == TraceLevel::Full;

    // 1. Eligibility: the first that holds decides.
    for (i, (r, code)) in c.eligibility.iter().zip(&p.eligibility).enumerate() {
        if code.when.truth(ctx, &root).map_err(|k| ctx.error(k, Some((r.name.as_str(), r.span))))? {
            let Some(Ex::Const(Const::Level(l))) = r.target else {
                return Err(EvalError::internal("eligibility target"));
            };
            out.level = l;
            if let Some(f) = &r.flag {
                out.add_flag(rs, &f.code);
            }
            let src = rs.bases.eligibility + i;
            out.decided_by.push(src);
            if tracing {
                let message = render_message(ctx, &r.because, &code.because, &root);
                out.trace.push(TraceStep {
                    kind: StepKind::Eligibility,
                    source: src,
                    value: TraceValue::Level(l),
                    levels: None,
                    message: Some(message),
                });
                out.trace.push(TraceStep {
                    kind: StepKind::Final,
                    source: usize::MAX,
                    value: TraceValue::Level(l),
                    levels: None,
                    message: None,
                });
            }
            return Ok(out);
        }
    }

    // 2. Validity rules: field errors, all of them.
    let mut invalid = Vec::new();
    for (r, code) in c.invalid.iter().zip(&p.invalid) {
        match r.item_field {
            None => {
                if code.when.truth(ctx, &root).map_err(|k| ctx.error(k, Some((&r.path, r.span))))? {
                    let message = render_message(ctx, &r.because, &code.because, &root);
                    let path = rs
                        .checked
                        .schema
                        .records
                        .first()
                        .and_then(|x| x.fields.get(r.field as usize))
                        .map(|f| f.name.clone())
                        .unwrap_or_default();
                    invalid.push(FieldError { path, message });
                }
            }
            Some(item_slot) => {
                let record::Value::List(items) = ctx.root.get(r.field) else {
                    continue;
                };
                let list_name =
                    c.schema.records.first().and_then(|x| x.fields.get(r.field as usize)).map(|f| f.name.clone()).unwrap_or_default();
                let item_name = r.path.rsplit('.').next().unwrap_or("").to_string();
                let _ = item_slot;
                for (i, item) in items.iter().enumerate() {
                    let stack = Stack::with_item(ctx.root, item, i);
                    if code.when.truth(ctx, &stack).map_err(|k| ctx.error(k, Some((&r.path, r.span))))? {
                        let message = render_message(ctx, &r.because, &code.because, &stack);
                        invalid.push(FieldError { path: format!("{list_name}[{i}].{item_name}"), message });
                    }
                }
            }
        }
    }
    if !invalid.is_empty() {
        return Err(EvalError::Invalid(invalid));
    }

    // 3. Criteria, score, band, gates.
    for &id in &c.criteria {
        let v = ctx.let_value(id).map_err(|k| ctx.error(k, None))?;
        let V::Num(n) = v else {
            return Err(EvalError::internal("criterion type"));
        };
        out.criteria.push((id, n));
        if full {
            out.trace.push(TraceStep { kind: StepKind::Criterion, source: id, value: TraceValue::Num(n), levels: None, message: None });
        }
    }
    let V::Num(total) = ctx.let_value(c.classify.score).map_err(|k| ctx.error(k, None))? else {
        return Err(EvalError::internal("score type"));
    };
    out.total = Some(total);
    if tracing {
        out.trace.push(TraceStep {
            kind: StepKind::Score,
            source: c.classify.score,
            value: TraceValue::Num(total),
            levels: None,
            message: None,
        });
    }
    let mut band_index = c.classify.bands.len().saturating_sub(1);
    for (i, b) in c.classify.bands.iter().enumerate() {
        if threshold_met(b.threshold, total) {
            band_index = i;
            break;
        }
    }
    let band_level = c.classify.bands.get(band_index).map(|b| b.level).unwrap_or(0);
    out.band = Some(band_level);
    if tracing {
        out.trace.push(TraceStep {
            kind: StepKind::Band,
            source: rs.bases.band + band_index,
            value: TraceValue::Level(band_level),
            levels: None,
            message: None,
        });
    }
    let mut level = band_level;
    // The band whose condition held, so the next-level note does not evaluate it again.
    let mut held = None;
    for (i, (b, gate)) in c.classify.bands.iter().zip(&p.gates).enumerate().skip(band_index) {
        match (&b.gate, gate) {
            (None, _) | (_, None) => {
                level = b.level;
                break;
            }
            (Some((_, msg, _)), Some(gate)) => {
                if gate.when.truth(ctx, &root).map_err(|k| ctx.error(k, Some((rs.level_id(b.level), b.span))))? {
                    level = b.level;
                    held = Some(i);
                    break;
                }
                out.decided_by.push(rs.bases.band + i);
                if tracing {
                    let message = render_message(ctx, msg, &gate.because, &root);
                    let next = c.classify.bands.get(i + 1).map(|n| n.level).unwrap_or(b.level);
                    out.trace.push(TraceStep {
                        kind: StepKind::Gate,
                        source: rs.bases.band + i,
                        value: TraceValue::Bool(false),
                        levels: Some((b.level, next)),
                        message: Some(message),
                    });
                }
            }
        }
    }
    if level != band_level
        && let Some(f) = &c.classify.flag
    {
        out.add_flag(rs, &f.code);
    }

    // 4. Vetoes.
    let mut vetoed = false;
    for (i, (r, code)) in c.vetoes.iter().zip(&p.vetoes).enumerate() {
        if code.when.truth(ctx, &root).map_err(|k| ctx.error(k, Some((r.name.as_str(), r.span))))? {
            let Some(Ex::Const(Const::Level(to))) = r.target else {
                return Err(EvalError::internal("veto target"));
            };
            let before = level;
            if !vetoed || to > level {
                level = to;
            }
            vetoed = true;
            if let Some(f) = &r.flag {
                out.add_flag(rs, &f.code);
            }
            out.decided_by.push(rs.bases.veto + i);
            if tracing {
                let message = render_message(ctx, &r.because, &code.because, &root);
                out.trace.push(TraceStep {
                    kind: StepKind::Veto,
                    source: rs.bases.veto + i,
                    value: TraceValue::Level(to),
                    levels: Some((before, level)),
                    message: Some(message),
                });
            }
        }
    }

    // 5. Caps, when no veto applied.
    if !vetoed {
        for (i, (r, code)) in c.caps.iter().zip(&p.caps).enumerate() {
            if !code.when.truth(ctx, &root).map_err(|k| ctx.error(k, Some((r.name.as_str(), r.span))))? {
                continue;
            }
            let Some(target) = &code.target else { continue };
            let cap = match target.eval(ctx, &root).map_err(|k| ctx.error(k, Some((r.name.as_str(), r.span))))? {
                V::Level(l) => l,
                _ => continue, // an absent cap level does not apply
            };
            let lowered = cap > level;
            let before = level;
            if lowered {
                level = cap;
            }
            out.decided_by.push(rs.bases.cap + i);
            if let Some(f) = &r.flag
                && (lowered || !f.if_lowered)
            {
                out.add_flag(rs, &f.code);
            }
            if tracing && (lowered || full) {
                let message = render_message(ctx, &r.because, &code.because, &root);
                out.trace.push(TraceStep {
                    kind: StepKind::Cap,
                    source: rs.bases.cap + i,
                    value: TraceValue::Level(cap),
                    levels: lowered.then_some((before, level)),
                    message: Some(message),
                });
            }
        }
    }

    // 6. Flag rules.
    for (i, (r, code)) in c.flags.iter().zip(&p.flags).enumerate() {
        if code.when.truth(ctx, &root).map_err(|k| ctx.error(k, Some((r.name.as_str(), r.span))))? {
            if let Some(f) = &r.flag {
                out.add_flag(rs, &f.code);
            }
            out.decided_by.push(rs.bases.flag + i);
            if tracing {
                let message = render_message(ctx, &r.because, &code.because, &root);
                out.trace.push(TraceStep {
                    kind: StepKind::Flag,
                    source: rs.bases.flag + i,
                    value: TraceValue::Bool(true),
                    levels: None,
                    message: Some(message),
                });
            }
        }
    }

    out.level = level;
    if tracing {
        out.trace.push(TraceStep {
            kind: StepKind::Final,
            source: usize::MAX,
            value: TraceValue::Level(level),
            levels: Some((band_level, level)),
            message: None,
        });
        if let Some(next) = next_level_note(ctx, &out, total, vetoed, held) {
            out.trace.push(next);
        }
    }
    Ok(out)
}

fn threshold_met(t: Option<(crate::check::ir::Op, Num)>, total: Num) -> bool {
    use crate::check::ir::Op;
    use std::cmp::Ordering::*;
    match t {
        None => true,
        Some((op, n)) => matches!((op, total.cmp(&n)), (Op::Ge, Ok(Greater | Equal)) | (Op::Gt, Ok(Greater))),
    }
}

/// "3.5 points short of excellent", "condition for good not met", "vetoed", "capped".
fn next_level_note(ctx: &mut Ctx<'_>, out: &Outcome, total: Num, vetoed: bool, held: Option<usize>) -> Option<TraceStep> {
    let rs = ctx.rs;
    let c = &rs.checked;
    if out.level == 0 || !rs.is_ordered(out.level) {
        return None;
    }
    let next = out.level - 1;
    let mut reasons = Vec::new();
    if let Some((i, (b, gate))) = c.classify.bands.iter().zip(&rs.program.gates).enumerate().find(|(_, (b, _))| b.level == next) {
        if let Some((_, th)) = b.threshold
            && !threshold_met(b.threshold, total)
            && let Ok(short) = th.sub(total)
        {
            reasons.push(format!("{short} points short of {}", rs.level_id(next)));
        }
        // A gate that already failed on the way down left its message in the trace.
        let failed = out.trace.iter().find(|s| s.kind == StepKind::Gate && s.source == rs.bases.band + i).and_then(|s| s.message.clone());
        if let (Some((_, msg, _)), Some(gate)) = (&b.gate, gate) {
            let root = Stack::root(ctx.root);
            let m = match failed {
                Some(m) => Some(m),
                None if held == Some(i) => None,
                None if matches!(gate.when.truth(ctx, &root), Ok(false)) => Some(render_message(ctx, msg, &gate.because, &root)),
                None => None,
            };
            if let Some(m) = m {
                reasons.push(if m.is_empty() {
                    format!("the condition for {} does not hold", rs.level_id(next))
                } else {
                    format!("the condition for {} does not hold: {m}", rs.level_id(next))
                });
            }
        }
    }
    if vetoed {
        reasons.push("vetoed".to_string());
    }
    for step in &out.trace {
        if step.kind == StepKind::Cap && step.levels.is_some() {
            let name = rs.sources.get(step.source).map(|s| s.name.as_str()).unwrap_or("");
            reasons.push(format!("capped by {name}"));
        }
    }
    if reasons.is_empty() {
        return None;
    }
    Some(TraceStep {
        kind: StepKind::Next,
        source: usize::MAX,
        value: TraceValue::Level(next),
        levels: None,
        message: Some(reasons.join("; ")),
    })
}
