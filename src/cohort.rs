//! Cohorts: classify every record, then apply each quota per scope group (REGULATION.md R-QUOTA):
//! rank the candidates, keep at most the limit, demote the rest, and settle ties at the cut by
//! the rule file's tie policy.

use crate::check::ir::QuotaRounding;
use crate::compile::RuleSet;
use crate::eval::record::{Record, Value};
use crate::eval::{self, Ctx, EvalError, Outcome, QuotaPlace, Stack, StepKind, TraceLevel, TraceStep, TraceValue, V, compare};
use crate::num::{Num, Rounding};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// An authority's exemption decision for the cohort (REGULATION.md R-QUOTA-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exemption {
    /// No decision: the quota applies.
    None,
    /// Each scope group keeps at least this many (never fewer than the quota allows).
    AtMost(u32),
    /// No limit.
    Unlimited,
}

/// Classifies each record, then applies the rule set's quotas over the cohort.
/// Results are in input order; a record that fails keeps its error and takes no part in quotas.
pub fn classify_cohort(rs: &RuleSet, records: &[Record], exemption: Exemption, trace: TraceLevel) -> Vec<Result<Outcome, EvalError>> {
    let mut results: Vec<Result<Outcome, EvalError>> = records.iter().map(|r| eval::evaluate(rs, r, trace)).collect();
    for (qi, q) in rs.checked.quotas.iter().enumerate() {
        // Group candidates and base records by scope key.
        let mut groups: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        // A quota expression that fails for a record is that record's error, never a silent skip.
        let mut failed: Vec<(usize, EvalError)> = Vec::new();
        for (i, (rec, res)) in records.iter().zip(&results).enumerate() {
            let Ok(o) = res else { continue };
            if o.level != q.level && o.level != q.base {
                continue;
            }
            let mut ctx = Ctx::new(rs, rec);
            let code = rs.program.quotas.get(qi);
            if let Some(a) = code.and_then(|c| c.applies.as_ref()) {
                match a.truth(&mut ctx, &Stack::root(rec)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(k) => {
                        failed.push((i, ctx.error(k, Some((&q.name, q.span)))));
                        continue;
                    }
                }
            }
            // Rank keys are computed here too, so a key that fails is caught before ranking.
            let stack = Stack::root(rec);
            if let Some(k) = code.into_iter().flat_map(|c| &c.rank).find_map(|e| e.eval(&mut ctx, &stack).err()) {
                failed.push((i, ctx.error(k, Some((&q.name, q.span)))));
                continue;
            }
            let key = q.per.iter().map(|&s| key_text(rec.get(s))).collect();
            groups.entry(key).or_default().push(i);
        }
        for (i, e) in failed {
            if let Some(r) = results.get_mut(i) {
                *r = Err(e);
            }
        }
        for members in groups.values() {
            let level_of = |i: usize| results.get(i).and_then(|r| r.as_ref().ok()).map(|o| o.level);
            let candidates: Vec<usize> = members.iter().copied().filter(|&i| level_of(i) == Some(q.level)).collect();
            let e = candidates.len() as i64;
            let g = members.iter().filter(|&&i| level_of(i) == Some(q.base) && q.base != q.level).count() as i64;
            let k = limit(q.ratio, q.base_final, q.rounding, e, g);
            let k = match (q.exemption, exemption) {
                (true, Exemption::Unlimited) => e,
                (true, Exemption::AtMost(m)) => k.max(i64::from(m)),
                _ => k,
            };
            // Rank keys, evaluated per candidate.
            let mut keyed: Vec<(usize, Vec<V<'_>>)> = Vec::new();
            for &i in &candidates {
                let Some(rec) = records.get(i) else { continue };
                let mut ctx = Ctx::new(rs, rec);
                let stack = Stack::root(rec);
                let keys: Vec<V<'_>> = rs
                    .program
                    .quotas
                    .get(qi)
                    .into_iter()
                    .flat_map(|c| &c.rank)
                    .map(|e| e.eval(&mut ctx, &stack).unwrap_or(V::Absent))
                    .collect();
                keyed.push((i, keys));
            }
            let order = |a: &Vec<V<'_>>, b: &Vec<V<'_>>| -> Ordering {
                for ((x, y), (_, desc)) in a.iter().zip(b).zip(&q.rank) {
                    let o = compare(*x, *y).unwrap_or(Ordering::Equal);
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            };
            keyed.sort_by(|a, b| order(&a.1, &b.1));
            let k_usize = usize::try_from(k.max(0)).unwrap_or(usize::MAX);
            // A tie across the cut: the k-th and (k+1)-th share every key.
            let tie_key = match (k_usize.checked_sub(1).and_then(|x| keyed.get(x)), keyed.get(k_usize)) {
                (Some(a), Some(b)) if order(&a.1, &b.1) == Ordering::Equal => Some(a.1.clone()),
                _ => None,
            };
            let limit_u32 = u32::try_from(k.max(0)).unwrap_or(u32::MAX);
            for (pos, (i, keys)) in keyed.iter().enumerate() {
                let tied = tie_key.as_ref().is_some_and(|t| order(t, keys) == Ordering::Equal);
                let keep = if tied { !q.ties_demote_all } else { pos < k_usize };
                let Some(Ok(o)) = results.get_mut(*i) else {
                    continue;
                };
                let position = u32::try_from(pos + 1).unwrap_or(u32::MAX);
                o.quota = Some(QuotaPlace { position, limit: limit_u32, tied });
                if tied && let Some(f) = &q.tie_flag {
                    o.add_flag(rs, f);
                }
                let src = rs.bases.quota + qi;
                let what = if keep { "keeps" } else { "loses" };
                let message = format!(
                    "ranked {position} of {e} candidates for {}; at most {k} keep it{}; {what} it",
                    rs.level_id(q.level),
                    if tied { ", and the candidates tied at the cut are settled by the tie policy" } else { "" }
                );
                if !keep {
                    let before = o.level;
                    o.level = q.demote_to;
                    o.decided_by.push(src);
                    if let Some(f) = &q.demote_flag {
                        o.add_flag(rs, f);
                    }
                    if trace != TraceLevel::None {
                        insert_before_final(
                            o,
                            TraceStep {
                                kind: StepKind::Quota,
                                source: src,
                                value: TraceValue::Level(q.demote_to),
                                levels: Some((before, q.demote_to)),
                                message: Some(message),
                            },
                        );
                    }
                } else if trace != TraceLevel::None {
                    insert_before_final(
                        o,
                        TraceStep {
                            kind: StepKind::Quota,
                            source: src,
                            value: TraceValue::Level(q.level),
                            levels: None,
                            message: Some(message),
                        },
                    );
                }
            }
        }
    }
    results
}

fn insert_before_final(o: &mut Outcome, step: TraceStep) {
    let at = o.trace.iter().position(|s| s.kind == StepKind::Final).unwrap_or(o.trace.len());
    o.trace.insert(at, step);
    let level = o.level;
    for s in &mut o.trace {
        if s.kind == StepKind::Final {
            s.value = TraceValue::Level(level);
            if let Some((from, _)) = s.levels {
                s.levels = Some((from, level));
            }
        }
    }
    o.trace.retain(|s| s.kind != StepKind::Next);
}

fn key_text(v: &Value) -> String {
    match v {
        Value::Absent => String::new(),
        Value::Text(t) => t.to_string(),
        Value::Num(n) => n.to_string(),
        Value::Date(d) => d.to_string(),
        Value::Enum(t, e) => format!("{t}:{e}"),
        Value::Level(l) => l.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(_) | Value::Record(_) => String::new(),
    }
}

/// The number that may keep the level: `ratio × base`, where the base is the count of the base
/// level, or (for a base counted after demotion) `ratio × (E + G) / (1 + ratio)`.
pub fn limit(ratio: Num, base_final: bool, rounding: QuotaRounding, e: i64, g: i64) -> i64 {
    let value =
        if base_final { Num::from_int(e + g).mul(ratio).and_then(|x| x.div(Num::ONE.add(ratio)?)) } else { Num::from_int(g).mul(ratio) };
    let Ok(value) = value else { return 0 };
    let mode = match rounding {
        QuotaRounding::Down => Rounding::Floor,
        QuotaRounding::Up => Rounding::Ceiling,
        QuotaRounding::Nearest => Rounding::HalfUp,
    };
    value.round(0, mode).ok().and_then(|n| n.to_i64()).unwrap_or(0).clamp(0, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_percent_of_final_good_is_a_sixth_of_both() {
        let r = Num::from_ratio(1, 5).expect("ratio");
        assert_eq!(limit(r, true, QuotaRounding::Down, 4, 8), 2);
        assert_eq!(limit(r, true, QuotaRounding::Down, 5, 30), 5);
        assert_eq!(limit(r, true, QuotaRounding::Down, 3, 2), 0);
        assert_eq!(limit(r, true, QuotaRounding::Down, 1, 5), 1);
        assert_eq!(limit(r, false, QuotaRounding::Down, 5, 30), 5);
        assert_eq!(limit(r, false, QuotaRounding::Up, 5, 6), 2);
    }
}
