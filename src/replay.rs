//! Replay: re-evaluate stored evaluations under a candidate rule set (or, to verify, under
//! their own original rules) and report what changes. Cohorts replay whole: every member of a
//! stored cohort that any filtered evaluation belongs to is classified again with the
//! candidate's quotas; only filtered evaluations are reported (DESIGN.md "Settled interfaces").

use crate::answer::format_total;
use crate::cohort::{Exemption, classify_cohort};
use crate::compile::{self, RuleSet};
use crate::eval::record::{self, Record};
use crate::eval::{self, EvalError, Outcome, TraceLevel};
use crate::store::{Evaluation, Filter, Store, StoreError};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

/// What to replay under.
#[derive(Clone)]
pub enum Candidate {
    /// One candidate rule set for every evaluation.
    Rules(Arc<RuleSet>),
    /// Each evaluation under its own stored rules: everything must be reproduced exactly.
    Verify,
}

/// An evaluation whose outcome or total changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Stored evaluation id.
    pub evaluation_id: String,
    /// Subject.
    pub subject: String,
    /// Stored outcome.
    pub old_outcome: String,
    /// New outcome.
    pub new_outcome: String,
    /// Stored total.
    pub old_total: Option<String>,
    /// New total.
    pub new_total: Option<String>,
    /// Rules deciding the new outcome and not the old.
    pub rules_added: Vec<String>,
    /// Rules deciding the old outcome and not the new.
    pub rules_removed: Vec<String>,
    /// `(criterion, old, new)` for criteria whose value changed.
    pub criteria: Vec<(String, String, String)>,
    /// Flags raised now, not before.
    pub flags_added: Vec<String>,
    /// Flags raised before, not now.
    pub flags_removed: Vec<String>,
    /// The cohort call, if any.
    pub cohort_id: Option<String>,
}

/// An evaluation the candidate cannot evaluate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotEvaluable {
    /// Stored evaluation id.
    pub evaluation_id: String,
    /// Subject.
    pub subject: String,
    /// Why.
    pub reason: String,
}

/// A cohort's quota, as stored and under the candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CohortEffect {
    /// Cohort call id.
    pub cohort_id: String,
    /// Members replayed.
    pub members: u32,
    /// Demoted by a quota as stored.
    pub old_demoted: u32,
    /// Demoted by a quota under the candidate.
    pub new_demoted: u32,
}

/// The totals of a replay.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The candidate's `(id, version, hash)`; `None` when verifying.
    pub candidate: Option<(String, String, String)>,
    /// Evaluations matching the filter.
    pub evaluations: u64,
    /// Evaluated.
    pub evaluated: u64,
    /// Changed (outcome or total).
    pub changed: u64,
    /// Not evaluable.
    pub not_evaluable: u64,
    /// `(old, new) → count`.
    pub transitions: BTreeMap<(String, String), u64>,
    /// Per cohort.
    pub cohorts: Vec<CohortEffect>,
    /// With verify: evaluations not reproduced (outcome, total or flags).
    pub mismatches: u64,
}

/// One event of a replay, in order.
#[derive(Clone, Debug)]
pub enum Event {
    /// A changed evaluation (with verify: one not reproduced).
    Change(Box<Change>),
    /// An evaluation the candidate cannot evaluate.
    NotEvaluable(NotEvaluable),
    /// How many filtered evaluations have been handled so far.
    Progress(u64),
}

/// Rows fetched per page.
const PAGE: usize = 5000;

/// Parts of a stored answer that a comparison needs.
struct OldAnswer {
    flags: BTreeSet<String>,
    criteria: BTreeMap<String, String>,
    rules: BTreeSet<String>,
    quota_demoted: bool,
}

fn old_answer(e: &Evaluation) -> OldAnswer {
    let j: Json = serde_json::from_str(&e.answer).unwrap_or(Json::Null);
    let text = |v: Option<&Json>| v.and_then(Json::as_str).unwrap_or("").to_string();
    let flags = j
        .get("flags")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let criteria = j
        .get("criteria")
        .and_then(Json::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(Some(v)))).collect())
        .unwrap_or_default();
    let mut rules = BTreeSet::new();
    let mut quota_demoted = false;
    for s in j.get("trace").and_then(Json::as_array).into_iter().flatten() {
        let (step, rule, effect) = (text(s.get("step")), text(s.get("rule")), text(s.get("effect")));
        let decides = matches!(step.as_str(), "eligibility" | "gate" | "veto" | "cap" | "flag") || (step == "quota" && !effect.is_empty());
        if decides && !rule.is_empty() {
            rules.insert(rule);
        }
        if step == "quota" && !effect.is_empty() {
            quota_demoted = true;
        }
    }
    OldAnswer { flags, criteria, rules, quota_demoted }
}

fn new_rules(rs: &RuleSet, o: &Outcome) -> BTreeSet<String> {
    o.decided_by.iter().filter_map(|&s| rs.sources.get(s).map(|x| x.name.clone())).collect()
}

fn quota_demoted(rs: &RuleSet, o: &Outcome) -> bool {
    o.decided_by.iter().any(|&s| s >= rs.bases.quota)
}

fn exemption_of(e: &Evaluation) -> Exemption {
    match e.exemption.as_deref() {
        None => Exemption::None,
        Some("unlimited") => Exemption::Unlimited,
        Some(n) => n.parse().map(Exemption::AtMost).unwrap_or(Exemption::None),
    }
}

struct Run<'a, F: FnMut(Event) -> ControlFlow<()>> {
    store: &'a dyn Store,
    filter: &'a Filter,
    candidate: &'a Candidate,
    on: F,
    summary: Summary,
    compiled: HashMap<String, Arc<RuleSet>>,
    done: u64,
    /// The receiver of events asked to stop.
    stopped: bool,
}

impl<F: FnMut(Event) -> ControlFlow<()>> Run<'_, F> {
    fn emit(&mut self, e: Event) {
        if (self.on)(e).is_break() {
            self.stopped = true;
        }
    }

    async fn rules_for(&mut self, e: &Evaluation) -> Result<Arc<RuleSet>, String> {
        match self.candidate {
            Candidate::Rules(rs) => Ok(rs.clone()),
            Candidate::Verify => {
                if let Some(rs) = self.compiled.get(&e.ruleset_hash) {
                    return Ok(rs.clone());
                }
                let source = self
                    .store
                    .source(&e.ruleset_hash)
                    .await
                    .map_err(|x| x.to_string())?
                    .ok_or("its rule source is missing from the store")?;
                let name = format!("{}@{}", e.ruleset_id, e.ruleset_version);
                let rs = compile::compile(&name, &source)
                    .map(|(rs, _)| Arc::new(rs))
                    .map_err(|_| "its stored rule source no longer compiles".to_string())?;
                self.compiled.insert(e.ruleset_hash.clone(), rs.clone());
                Ok(rs)
            }
        }
    }

    fn not_evaluable(&mut self, e: &Evaluation, reason: String) {
        self.summary.not_evaluable += 1;
        if self.candidate_is_verify() {
            self.summary.mismatches += 1;
        }
        self.emit(Event::NotEvaluable(NotEvaluable { evaluation_id: e.id.clone(), subject: e.subject.clone(), reason }));
    }

    fn candidate_is_verify(&self) -> bool {
        matches!(self.candidate, Candidate::Verify)
    }

    fn compare(&mut self, rs: &RuleSet, e: &Evaluation, o: &Outcome) {
        self.summary.evaluated += 1;
        let outcome = rs.level_id(o.level).to_string();
        let total = o.total.map(|t| format_total(&t));
        *self.summary.transitions.entry((e.outcome.clone(), outcome.clone())).or_default() += 1;
        let changed = outcome != e.outcome || total != e.total;
        let verify = self.candidate_is_verify();
        let new_flags: BTreeSet<String> = o.flag_codes(rs).into_iter().map(str::to_string).collect();
        let old = if changed || verify { Some(old_answer(e)) } else { None };
        let mismatch = verify && (changed || old.as_ref().is_some_and(|a| a.flags != new_flags));
        if mismatch {
            self.summary.mismatches += 1;
        }
        if changed {
            self.summary.changed += 1;
        }
        if changed || mismatch {
            let old = old.unwrap_or_else(|| old_answer(e));
            let new_r = new_rules(rs, o);
            let new_c = crate::answer::criteria_by_name(rs, o);
            let criteria = old
                .criteria
                .iter()
                .filter_map(|(k, v)| match new_c.get(k) {
                    Some(n) if n != v => Some((k.clone(), v.clone(), n.clone())),
                    None => Some((k.clone(), v.clone(), String::new())),
                    _ => None,
                })
                .chain(new_c.iter().filter(|(k, _)| !old.criteria.contains_key(*k)).map(|(k, v)| (k.clone(), String::new(), v.clone())))
                .collect();
            self.emit(Event::Change(Box::new(Change {
                evaluation_id: e.id.clone(),
                subject: e.subject.clone(),
                old_outcome: e.outcome.clone(),
                new_outcome: outcome,
                old_total: e.total.clone(),
                new_total: total,
                rules_added: new_r.difference(&old.rules).cloned().collect(),
                rules_removed: old.rules.difference(&new_r).cloned().collect(),
                criteria,
                flags_added: new_flags.difference(&old.flags).cloned().collect(),
                flags_removed: old.flags.difference(&new_flags).cloned().collect(),
                cohort_id: e.cohort_id.clone(),
            })));
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        if self.done.is_multiple_of(1000) {
            self.emit(Event::Progress(self.done));
        }
    }

    /// Evaluations classified alone: decoded and evaluated in parallel, then compared in order.
    async fn alone_batch(&mut self, rows: &[&Evaluation]) {
        let mut rules: Vec<Result<Arc<RuleSet>, String>> = Vec::with_capacity(rows.len());
        for e in rows {
            rules.push(self.rules_for(e).await);
        }
        let results = par_map(rows, &rules, |e, rs| {
            let rs = rs.as_ref().ok()?;
            Some(
                record::from_json_text(&rs.checked.schema, &e.record)
                    .map_err(EvalError::Invalid)
                    .and_then(|r| eval::evaluate(rs, &r, TraceLevel::None)),
            )
        });
        for ((e, rs), result) in rows.iter().zip(rules).zip(results) {
            match (rs, result) {
                (Err(why), _) => self.not_evaluable(e, why),
                (Ok(rs), Some(result)) => self.settle(&rs, e, result).await,
                (Ok(_), None) => self.not_evaluable(e, "evaluation failed unexpectedly".into()),
            }
            self.tick();
        }
    }

    async fn settle(&mut self, rs: &RuleSet, e: &Evaluation, result: Result<Outcome, EvalError>) {
        match result {
            Ok(o) => {
                // The stored answer is read only when it is needed: a change, or to verify.
                let changed = rs.level_id(o.level) != e.outcome || o.total.map(|t| format_total(&t)) != e.total;
                if (changed || self.candidate_is_verify()) && e.answer.is_empty() {
                    // Should the read fail, the change is still reported, without the rule differences.
                    if let Ok(Some(full)) = self.store.get(&e.id).await {
                        return self.compare(rs, &full, &o);
                    }
                }
                self.compare(rs, e, &o)
            }
            Err(err) => self.not_evaluable(e, err.describe(rs)),
        }
    }

    async fn whole_cohort(&mut self, cohort_id: &str) -> Result<(), StoreError> {
        let members = self.store.cohort(cohort_id).await?;
        let Some(first) = members.first() else { return Ok(()) };
        let rs = match self.rules_for(first).await {
            Ok(rs) => rs,
            Err(why) => {
                for m in members.iter().filter(|m| self.filter.matches(m)) {
                    self.not_evaluable(m, why.clone());
                    self.tick();
                }
                return Ok(());
            }
        };
        // Members the candidate cannot read take no part in the quota.
        let mut records: Vec<Record> = Vec::new();
        let mut kept: Vec<&Evaluation> = Vec::new();
        for m in &members {
            match record::from_json_text(&rs.checked.schema, &m.record) {
                Ok(r) => {
                    records.push(r);
                    kept.push(m);
                }
                Err(errs) => {
                    if self.filter.matches(m) {
                        self.not_evaluable(m, EvalError::Invalid(errs).describe(&rs));
                        self.tick();
                    }
                }
            }
        }
        let results = classify_cohort(&rs, &records, exemption_of(first), TraceLevel::None);
        let mut effect = CohortEffect { cohort_id: cohort_id.to_string(), members: 0, old_demoted: 0, new_demoted: 0 };
        for (m, res) in kept.iter().zip(results) {
            effect.members += 1;
            if old_answer_demoted(m) {
                effect.old_demoted += 1;
            }
            if let Ok(o) = &res
                && quota_demoted(&rs, o)
            {
                effect.new_demoted += 1;
            }
            if !self.filter.matches(m) {
                continue;
            }
            match res {
                Ok(o) => self.compare(&rs, m, &o),
                Err(err) => self.not_evaluable(m, err.describe(&rs)),
            }
            self.tick();
        }
        self.summary.cohorts.push(effect);
        Ok(())
    }
}

/// `f` over rows in parallel (one chunk per core), results in order.
fn par_map<T: Send>(
    rows: &[&Evaluation],
    rules: &[Result<Arc<RuleSet>, String>],
    f: impl Fn(&Evaluation, &Result<Arc<RuleSet>, String>) -> Option<T> + Sync,
) -> Vec<Option<T>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).clamp(1, 8);
    let chunk = rows.len().div_ceil(threads).max(256);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .zip(rules.chunks(chunk))
            .map(|(rs, ru)| (rs.len(), scope.spawn(move || rs.iter().zip(ru).map(|(e, r)| f(e, r)).collect::<Vec<Option<T>>>())))
            .collect();
        // A chunk whose thread failed yields no results for its rows (reported as not evaluable).
        handles.into_iter().flat_map(|(n, h)| h.join().unwrap_or_else(|_| (0..n).map(|_| None).collect())).collect()
    })
}

fn old_answer_demoted(e: &Evaluation) -> bool {
    // Cheap test first: most stored answers have no quota step at all.
    e.answer.contains("\"quota\"") && old_answer(e).quota_demoted
}

/// Replays the filtered evaluations; `on` receives changes, records not evaluable and
/// progress as they happen; the summary comes back at the end. When `on` answers
/// [`ControlFlow::Break`] (its reader went away), the replay stops at the end of the page or
/// cohort at hand and returns the summary so far.
pub async fn replay(
    store: &dyn Store,
    candidate: &Candidate,
    filter: &Filter,
    on: impl FnMut(Event) -> ControlFlow<()>,
) -> Result<Summary, StoreError> {
    let mut run = Run { store, filter, candidate, on, summary: Summary::default(), compiled: HashMap::new(), done: 0, stopped: false };
    if let Candidate::Rules(rs) = candidate {
        run.summary.candidate = Some((rs.checked.id.clone(), rs.checked.version.clone(), rs.hash.clone()));
    }
    let mut seen_cohorts: HashSet<String> = HashSet::new();
    let mut page = store.list(filter, None, PAGE, false).await?;
    while let Some(last) = page.last() {
        let after = last.id.clone();
        let more = page.len() == PAGE;
        run.summary.evaluations += page.len() as u64;
        // The next page is read while this one is evaluated.
        let next = async { if more { store.list(filter, Some(&after), PAGE, false).await } else { Ok(Vec::new()) } };
        let alone: Vec<&Evaluation> = page.iter().filter(|e| e.cohort_id.is_none()).collect();
        let (next, ()) = tokio::join!(next, run.alone_batch(&alone));
        for e in &page {
            if run.stopped {
                return Ok(run.summary);
            }
            if let Some(c) = &e.cohort_id
                && seen_cohorts.insert(c.clone())
            {
                run.whole_cohort(c).await?;
            }
        }
        if run.stopped {
            return Ok(run.summary);
        }
        page = next?;
    }
    run.emit(Event::Progress(run.done));
    Ok(run.summary)
}
