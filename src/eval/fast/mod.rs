//! The fast path: classifies a record with the trace off, to exactly the outcome the closures of
//! [`super::program`] give, or gives up and leaves the record to them.
//!
//! It is fast because it is allowed to give up. It does not explain a failure, so it carries no
//! `Result` through the tree: a failure (an absent value used, a division by zero, a number that
//! does not fit 64 bits even in lowest terms, or a column whose lanes or shared denominator do
//! not fit, a value of an unexpected type, a `match` with no arm, a bad period) only marks the
//! run as given up, and [`super::evaluate`] then runs the
//! closures from scratch, which say what and where; a record an `invalid` rule rejects is handed
//! over at once. Numbers are [`Frac`]s of two `i64` (in registers) instead of
//! [`crate::num::Num`]s (in memory). Named values and item columns are kept in one vector of
//! cells per record. An item value is computed for every item of its list at its first read, a
//! node at a time over the whole list (`columns`), and `count ... where`, `sum`, `all` and `any` over
//! a root list of up to 32 items, at root scope, run the same way, so that a node costs one
//! dispatch for the list rather than one per item.
//!
//! The trees are compiled once more into a flat program (`flat`) that computes the values and
//! the decisions' conditions eagerly into registers before `decide` runs; where it gives up or
//! does not run (a list too long for columns), the trees evaluate the record alone.
//!
//! Computing a whole column can compute an item value the closures would not have needed (after
//! the item where an `all` stopped, say); if that fails, the fast path gives up where the
//! closures would not have failed, and the closures then answer. So giving up costs time, never
//! a different outcome. The tests check both halves on every conformance record and on random
//! records of a rule set with most expression shapes, optional values of every kind, long lists
//! and values that can fail: the same outcome whenever the fast path answers, and never an answer
//! where the closures fail.

mod columns;
mod flat;
mod frac;
mod lower;

use super::expr::MAX_FRAMES;
use super::program::holds;
use super::record::{Record, Value};
use super::{Outcome, threshold_met};
use crate::check::Checked;
use crate::check::ir::{Const, DecisionRule, Ex, Op};
use crate::compile::RuleSet;
use crate::date;
use frac::Frac;
use lower::{Agg, B, Lower, N, X};
use std::cmp::Ordering;

/// A rule set lowered for the fast path. Rule sets it cannot lower have none, and evaluate
/// with the closures only.
pub struct Plan {
    lets: Vec<X>,
    /// Item values: the root list slot each belongs to, and its expression.
    items: Vec<(u16, X)>,
    eligibility: Vec<Decision<u8>>,
    /// Validity rules: the root list slot for `list[].field` rules, and the condition.
    invalid: Vec<(Option<u16>, B)>,
    /// Each band's condition, when it has one.
    gates: Vec<Option<B>>,
    gate_flag: Option<u16>,
    vetoes: Vec<Decision<u8>>,
    caps: Vec<Decision<Option<X>>>,
    flags: Vec<Decision<()>>,
    /// The values and conditions as a flat program, run before the decisions.
    flat: Option<flat::Flat>,
}

/// A decision rule: its condition, target and flag (index into the rule set's flag codes, and
/// whether only a lowering raises it).
struct Decision<T> {
    when: B,
    target: T,
    flag: Option<(u16, bool)>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("lets", &self.lets.len()).field("items", &self.items.len()).finish_non_exhaustive()
    }
}

/// A value during a fast run. `Unset` and `Busy` mark named values not yet computed and being
/// computed.
#[derive(Clone, Copy)]
enum F<'a> {
    Unset,
    Busy,
    Absent,
    Bool(bool),
    Num(Frac),
    Text(&'a str),
    Date(i32),
    Enum(u16, u16),
    Level(u8),
    List(&'a [Record]),
    Rec(&'a Record),
}

impl<'a> F<'a> {
    #[inline]
    fn of(v: &'a Value) -> Option<F<'a>> {
        Some(match v {
            Value::Absent => F::Absent,
            Value::Bool(b) => F::Bool(*b),
            Value::Num(n) => F::Num(Frac::of(n)?),
            Value::Text(t) => F::Text(t),
            Value::Date(d) => F::Date(*d),
            Value::Enum(t, e) => F::Enum(*t, *e),
            Value::Level(l) => F::Level(*l),
            Value::List(items) => F::List(items),
            Value::Record(r) => F::Rec(r),
        })
    }
}

/// Compares two values as [`super::compare`] does (a better level is greater); `None` for an
/// absent value or two of different types.
#[inline]
fn compare(a: F<'_>, b: F<'_>) -> Option<Ordering> {
    Some(match (a, b) {
        (F::Num(x), F::Num(y)) => x.cmp(y),
        (F::Date(x), F::Date(y)) => x.cmp(&y),
        (F::Level(x), F::Level(y)) => y.cmp(&x),
        (F::Text(x), F::Text(y)) => x.cmp(y),
        (F::Bool(x), F::Bool(y)) => x.cmp(&y),
        (F::Enum(t, x), F::Enum(u, y)) => (t, x).cmp(&(u, y)),
        _ => return None,
    })
}

/// The most item values a plan takes (their columns' starts live in a fixed array).
const MAX_ITEM_VALUES: usize = 64;

impl Plan {
    /// Lowers checked rules, or `None` when some expression has no fast form.
    pub fn lower(c: &Checked, flag_index: impl Fn(&str) -> Option<u16>) -> Option<Plan> {
        if c.item_lets.len() > MAX_ITEM_VALUES {
            return None;
        }
        let root = || Lower::new(c, None);
        let flag = |f: &Option<crate::check::ir::FlagSpec>| f.as_ref().and_then(|f| flag_index(&f.code).map(|i| (i, f.if_lowered)));
        let level = |t: &Option<Ex>| match t {
            Some(Ex::Const(Const::Level(l))) => Some(*l),
            _ => None,
        };
        let lets = c.lets.iter().map(|l| root().named(&l.expr, l.ty)).collect::<Option<_>>()?;
        let items = c
            .item_lets
            .iter()
            .map(|l| Some((l.list_slot, Lower::new(c, Some(l.list_slot)).named(&l.expr, l.ty)?)))
            .collect::<Option<_>>()?;
        // Eligibility rules and vetoes: a condition and the outcome it forces.
        let forcing = |rules: &[DecisionRule]| {
            rules
                .iter()
                .map(|r| Some(Decision { when: root().b(&r.when)?, target: level(&r.target)?, flag: flag(&r.flag) }))
                .collect::<Option<Vec<_>>>()
        };
        let eligibility = forcing(&c.eligibility)?;
        let invalid = c
            .invalid
            .iter()
            .map(|r| match r.item_field {
                None => Some((None, root().b(&r.when)?)),
                Some(_) => Some((Some(r.field), Lower::new(c, Some(r.field)).b(&r.when)?)),
            })
            .collect::<Option<_>>()?;
        let gates = c
            .classify
            .bands
            .iter()
            .map(|b| match &b.gate {
                Some((g, _, _)) => root().b(g).map(Some),
                None => Some(None),
            })
            .collect::<Option<_>>()?;
        let vetoes = forcing(&c.vetoes)?;
        let caps = c
            .caps
            .iter()
            .map(|r| {
                let target = match &r.target {
                    Some(t) => Some(root().x(t)?),
                    None => None,
                };
                Some(Decision { when: root().b(&r.when)?, target, flag: flag(&r.flag) })
            })
            .collect::<Option<_>>()?;
        let flags =
            c.flags.iter().map(|r| Some(Decision { when: root().b(&r.when)?, target: (), flag: flag(&r.flag) })).collect::<Option<_>>()?;
        let gate_flag = c.classify.flag.as_ref().and_then(|f| flag_index(&f.code));
        let mut plan = Plan { lets, items, eligibility, invalid, gates, gate_flag, vetoes, caps, flags, flat: None };
        plan.flat = plan.flatten(c);
        Some(plan)
    }

    /// The plan's flat program, or `None` when its values have no dependency order or it would
    /// need more registers than a run has. Compiled twice: the first time finds the lets the
    /// trees read, which the second writes into the cells.
    fn flatten(&self, c: &Checked) -> Option<flat::Flat> {
        let mut publish = vec![false; self.lets.len()];
        for &id in c.criteria.iter().chain([&c.classify.score]) {
            if let Some(p) = publish.get_mut(id) {
                *p = true;
            }
        }
        let first = self.flat_with(c, publish.clone())?;
        for (p, read) in publish.iter_mut().zip(first.read_by_trees) {
            *p |= read;
        }
        self.flat_with(c, publish)
    }

    fn flat_with(&self, c: &Checked, publish: Vec<bool>) -> Option<flat::Flat> {
        let mut fc = flat::Compiler::new(c, &self.lets, &self.items, publish);
        fc.values(c)?;
        let mut d = flat::Decisions::default();
        // A condition, and what its tree reads when it escapes to the trees.
        let cond = |fc: &mut flat::Compiler<'_>, b: &B, ex: &Ex, item_list: Option<u16>| {
            fc.clear_escaped();
            let r = match item_list {
                None => fc.b(b),
                Some(slot) => fc.any_item(b, slot),
            };
            if fc.escaped() {
                fc.read_by(ex);
            }
            r
        };
        for (r, rule) in self.eligibility.iter().zip(&c.eligibility) {
            d.eligibility.push(cond(&mut fc, &r.when, &rule.when, None));
        }
        for ((list, when), rule) in self.invalid.iter().zip(&c.invalid) {
            d.invalid.push(cond(&mut fc, when, &rule.when, *list));
        }
        for (g, band) in self.gates.iter().zip(&c.classify.bands) {
            d.gates.push(match (g, &band.gate) {
                (Some(g), Some((ex, _, _))) => Some(cond(&mut fc, g, ex, None)),
                _ => None,
            });
        }
        for (r, rule) in self.vetoes.iter().zip(&c.vetoes) {
            d.vetoes.push(cond(&mut fc, &r.when, &rule.when, None));
        }
        for (r, rule) in self.caps.iter().zip(&c.caps) {
            d.caps.push(cond(&mut fc, &r.when, &rule.when, None));
            if let Some(t) = &rule.target {
                fc.read_by(t);
            }
        }
        for (r, rule) in self.flags.iter().zip(&c.flags) {
            d.flags.push(cond(&mut fc, &r.when, &rule.when, None));
        }
        fc.finish(d)
    }

    /// The record's outcome with no trace, or `None` where the closures must answer.
    pub fn run(&self, rs: &RuleSet, record: &Record) -> Option<Outcome> {
        self.run_with(rs, record, Mode::Flat)
    }

    /// [`Plan::run`] in a given mode.
    fn run_with(&self, rs: &RuleSet, record: &Record, mode: Mode) -> Option<Outcome> {
        let mut regs = flat::Regs::take();
        let out = self.run_in(rs, record, mode, &mut regs);
        regs.give_back();
        out
    }

    fn run_in(&self, rs: &RuleSet, record: &Record, mode: Mode, regs: &mut flat::Regs) -> Option<Outcome> {
        if mode != Mode::Trees
            && let Some(f) = &self.flat
        {
            let mut m = Machine::new(self, record, std::mem::take(&mut regs.cells));
            if m.run_flat(f, regs) {
                let out = m.decide(rs, Some(f), regs);
                if !m.gave_up {
                    regs.cells = recycle(m.cells);
                    return out;
                }
            }
            regs.cells = recycle(m.cells);
            // The program computes values eagerly: a failure the trees would not reach, an
            // absent list, or a list too long for columns leaves the record to the trees.
            if mode == Mode::FlatOnly {
                return None;
            }
        }
        let mut m = Machine::new(self, record, std::mem::take(&mut regs.cells));
        let out = m.decide(rs, None, regs);
        let gave_up = m.gave_up;
        regs.cells = recycle(m.cells);
        if gave_up { None } else { out }
    }
}

/// The cells emptied, for the next record: their storage is kept, not their values (which
/// borrow this record).
fn recycle(mut cells: Vec<F<'_>>) -> Vec<F<'static>> {
    cells.clear();
    // Collecting an empty vector's iterator into one of the same layout reuses its storage.
    cells.into_iter().map(|_| F::Unset).collect()
}

/// How [`Plan::run_with`] evaluates a record.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The flat program, then (where it gives up or does not run) the trees alone.
    Flat,
    /// The trees alone.
    Trees,
    /// The flat program alone (for tests: `None` wherever it gives up).
    #[cfg_attr(not(test), allow(dead_code, reason = "the tests compare each evaluator alone"))]
    FlatOnly,
}

/// [`Machine::column`] of an item value not read yet.
const NO_COLUMN: u32 = u32::MAX;

/// One fast run over one record.
struct Machine<'a> {
    plan: &'a Plan,
    root: &'a Record,
    /// The record in each scope frame, and its index in its list.
    frames: [&'a Record; MAX_FRAMES],
    index: [u32; MAX_FRAMES],
    /// How many frames are in use.
    depth: usize,
    /// Top-level values by id, then the columns of the item values read so far.
    cells: Vec<F<'a>>,
    /// Where each item value's column starts in `cells` ([`NO_COLUMN`] until it is first read:
    /// most runs of the flat program read none, and so fill no cells for them).
    column: [u32; MAX_ITEM_VALUES],
    gave_up: bool,
}

impl<'a> Machine<'a> {
    /// A machine for one record, with `cells` (empty) as the storage of its cells.
    fn new(plan: &'a Plan, root: &'a Record, mut cells: Vec<F<'a>>) -> Machine<'a> {
        let len = plan.lets.len();
        let column = [NO_COLUMN; MAX_ITEM_VALUES];
        Machine {
            plan,
            root,
            frames: [root; MAX_FRAMES],
            index: [0; MAX_FRAMES],
            depth: 1,
            cells: {
                cells.clear();
                cells.resize(len, F::Unset);
                cells
            },
            column,
            gave_up: false,
        }
    }

    /// Marks the run as given up; `dummy` stands in for the value.
    #[cold]
    fn give_up<T>(&mut self, dummy: T) -> T {
        self.gave_up = true;
        dummy
    }

    #[inline]
    fn field(&self, frame: u8, slot: u16) -> &'a Value {
        match self.frames.get(frame as usize) {
            Some(r) => r.get(slot),
            None => &Value::Absent,
        }
    }

    /// A top-level value, computed at its first read.
    #[inline]
    fn named(&mut self, id: usize) -> F<'a> {
        match self.cells.get(id) {
            Some(F::Unset) => self.compute_named(id),
            Some(F::Busy) | None => self.give_up(F::Absent),
            Some(v) => *v,
        }
    }

    #[inline(never)]
    fn compute_named(&mut self, id: usize) -> F<'a> {
        let plan = self.plan;
        let Some(expr) = plan.lets.get(id) else { return self.give_up(F::Absent) };
        if let Some(c) = self.cells.get_mut(id) {
            *c = F::Busy;
        }
        // It is defined at root scope: its aggregates take the frames after the root's, so an
        // enclosing aggregate's frames are kept aside meanwhile.
        let v = if self.depth == 1 {
            self.value(expr)
        } else {
            let (frames, index, depth) = (self.frames, self.index, self.depth);
            self.depth = 1;
            let v = self.value(expr);
            (self.frames, self.index, self.depth) = (frames, index, depth);
            v
        };
        if let Some(c) = self.cells.get_mut(id) {
            *c = v;
        }
        v
    }

    /// Item value `id` of the item in scope frame `frame`; its column is computed at the first read.
    #[inline]
    fn item(&mut self, frame: u8, id: usize) -> F<'a> {
        let (Some(start), Some(i)) = (self.column_start(id), self.index.get(frame as usize)) else {
            return self.give_up(F::Absent);
        };
        let at = start + *i as usize;
        match self.cells.get(at) {
            Some(F::Unset) => {
                self.compute_column(id);
                match self.cells.get(at) {
                    Some(F::Unset | F::Busy) | None => self.give_up(F::Absent),
                    Some(v) => *v,
                }
            }
            Some(F::Busy) | None => self.give_up(F::Absent),
            Some(v) => *v,
        }
    }

    #[inline(never)]
    fn compute_column(&mut self, id: usize) {
        let plan = self.plan;
        let (Some((slot, expr)), Some(start)) = (plan.items.get(id), self.column_start(id)) else {
            return self.give_up(());
        };
        let Value::List(items) = self.root.get(*slot) else { return self.give_up(()) };
        if let Some(cells) = self.cells.get_mut(start..start + items.len()) {
            cells.fill(F::Busy);
        }
        let (frames, index, depth) = (self.frames, self.index, self.depth);
        self.depth = 2;
        match expr {
            X::Bool(b) if items.len() <= columns::MAX => {
                let bits = self.vb(b, items, columns::all(items.len()));
                if let Some(cells) = self.cells.get_mut(start..start + items.len()) {
                    for (i, c) in cells.iter_mut().enumerate() {
                        *c = F::Bool(bits >> i & 1 == 1);
                    }
                }
            }
            X::Num(n) if items.len() <= columns::MAX => self.number_column(n, items, start),
            _ => {
                for (i, item) in items.iter().enumerate() {
                    self.enter(1, item, i);
                    let v = self.value(expr);
                    if let Some(c) = self.cells.get_mut(start + i) {
                        *c = v;
                    }
                }
            }
        }
        (self.frames, self.index, self.depth) = (frames, index, depth);
    }

    /// A column of numbers, with its array in a frame of its own (see `columns`).
    #[inline(never)]
    fn number_column(&mut self, n: &'a N, items: &'a [Record], start: usize) {
        let mut out = [Frac::ZERO; columns::MAX];
        self.vn(n, items, columns::all(items.len()), &mut out);
        if let Some(cells) = self.cells.get_mut(start..start + items.len()) {
            for (c, v) in cells.iter_mut().zip(out) {
                *c = F::Num(v);
            }
        }
    }

    /// Where item value `id`'s cells start: placed after those in use at its first read.
    fn column_start(&mut self, id: usize) -> Option<usize> {
        let start = *self.column.get(id)?;
        if start != NO_COLUMN {
            return Some(start as usize);
        }
        let (slot, _) = self.plan.items.get(id)?;
        let len = match self.root.get(*slot) {
            Value::List(items) => items.len(),
            _ => 0,
        };
        let start = self.cells.len();
        self.cells.resize(start + len, F::Unset);
        *self.column.get_mut(id)? = u32::try_from(start).ok()?;
        Some(start)
    }

    /// Where item value `id`'s column starts, computed if it was not.
    fn ready_column(&mut self, id: usize) -> Option<usize> {
        let start = self.column_start(id)?;
        if matches!(self.cells.get(start), Some(F::Unset)) {
            self.compute_column(id);
        }
        Some(start)
    }

    /// The items of an aggregate over a root list whose items are in frame 1, and the set of
    /// those its filter keeps, when the list is short enough for columns.
    fn column_agg<T>(&mut self, agg: &'a Agg<T>) -> Option<(&'a [Record], columns::Bits)> {
        let (1, X::Field(0, slot)) = (agg.frame, &agg.list) else { return None };
        let Value::List(items) = self.root.get(*slot) else { return None };
        if items.len() > columns::MAX {
            return None;
        }
        let keep = match &agg.filter {
            Some(f) => self.vb(f, items, columns::all(items.len())),
            None => columns::all(items.len()),
        };
        Some((items, keep))
    }

    #[inline(always)]
    fn enter(&mut self, frame: usize, item: &'a Record, i: usize) {
        if let (Some(f), Some(x)) = (self.frames.get_mut(frame), self.index.get_mut(frame)) {
            *f = item;
            *x = u32::try_from(i).unwrap_or(u32::MAX);
        }
    }

    /// A value whose leaves are read in place.
    #[inline(always)]
    fn x_at(&mut self, e: &'a X) -> F<'a> {
        match e {
            X::Field(f, s) => match F::of(self.field(*f, *s)) {
                Some(v) => v,
                None => self.give_up(F::Absent),
            },
            X::Item(f, id) => self.item(*f, *id),
            _ => self.x(e),
        }
    }

    /// A named value's expression, its condition or number evaluated without the wrapper.
    #[inline(always)]
    fn value(&mut self, e: &'a X) -> F<'a> {
        match e {
            X::Bool(b) => F::Bool(self.b(b)),
            X::Num(n) => F::Num(self.n(n)),
            _ => self.x(e),
        }
    }

    /// The items of an aggregate's list.
    #[inline]
    fn list(&mut self, l: &'a X) -> &'a [Record] {
        if let X::Field(f, s) = l
            && let Value::List(items) = self.field(*f, *s)
        {
            return items;
        }
        match self.x(l) {
            F::List(items) => items,
            _ => self.give_up(&[]),
        }
    }

    /// Runs `each` on every item of an aggregate that passes its filter, until it returns
    /// `false`.
    #[inline(always)]
    fn each<T>(&mut self, agg: &'a Agg<T>, mut each: impl FnMut(&mut Self, &'a T) -> bool) {
        let items = self.list(&agg.list);
        let frame = agg.frame as usize;
        let depth = self.depth;
        self.depth = frame + 1;
        for (i, item) in items.iter().enumerate() {
            self.enter(frame, item, i);
            if let Some(f) = &agg.filter
                && !self.b_at(f)
            {
                continue;
            }
            if !each(self, &agg.item) {
                break;
            }
        }
        self.depth = depth;
    }

    /// A condition whose leaves are read in place (no call for a constant, a field or an item value).
    #[inline(always)]
    fn b_at(&mut self, e: &'a B) -> bool {
        match e {
            B::Lit(v) => *v,
            B::Field(f, s) => match self.field(*f, *s) {
                Value::Bool(v) => *v,
                _ => self.give_up(false),
            },
            B::Item(f, id) => match self.item(*f, *id) {
                F::Bool(v) => v,
                _ => self.give_up(false),
            },
            _ => self.b(e),
        }
    }

    /// A number whose leaves are read in place.
    #[inline(always)]
    fn n_at(&mut self, e: &'a N) -> Frac {
        match e {
            N::Lit(v) => *v,
            N::Field(f, s) => self.num_field(*f, *s),
            N::Item(f, id) => match self.item(*f, *id) {
                F::Num(v) => v,
                _ => self.give_up(Frac::ZERO),
            },
            _ => self.n(e),
        }
    }

    #[inline(always)]
    fn num_field(&mut self, f: u8, s: u16) -> Frac {
        match self.field(f, s) {
            Value::Num(v) => {
                let v = Frac::of(v);
                self.num(v)
            }
            _ => self.give_up(Frac::ZERO),
        }
    }

    /// A condition: the common shapes here, the rest in [`Self::b_rare`], so that this
    /// function (entered at every node) stays small.
    fn b(&mut self, e: &'a B) -> bool {
        // Each common shape has its own small function (as a closure would), so a node pays
        // for its own registers only, not for the largest shape's.
        match e {
            B::Lit(_) | B::Field(..) | B::Item(..) => self.b_at(e),
            B::Let(id) => self.b_let(*id),
            B::Not(a) => self.b_not(a),
            B::And(ab) => self.b_and(ab),
            B::Or(ab) => self.b_or(ab),
            B::Cmp(op, ab) => self.b_cmp(*op, ab),
            B::CmpAny(op, ab) => self.b_cmp_any(*op, ab),
            B::Present(a, yes) => self.b_present(a, *yes),
            B::If(cab) => self.b_if(cab),
            B::AllAny(all, agg) => self.b_all_any(*all, agg),
            B::In(a, list) => self.b_in(a, list),
            B::Of(a) => self.b_of(a),
        }
    }

    #[inline(never)]
    fn b_let(&mut self, id: usize) -> bool {
        match self.named(id) {
            F::Bool(v) => v,
            _ => self.give_up(false),
        }
    }

    #[inline(never)]
    fn b_not(&mut self, a: &'a B) -> bool {
        !self.b_at(a)
    }

    #[inline(never)]
    fn b_and(&mut self, ab: &'a (B, B)) -> bool {
        self.b_at(&ab.0) && self.b_at(&ab.1)
    }

    #[inline(never)]
    fn b_or(&mut self, ab: &'a (B, B)) -> bool {
        self.b_at(&ab.0) || self.b_at(&ab.1)
    }

    #[inline(never)]
    fn b_cmp(&mut self, op: Op, ab: &'a (N, N)) -> bool {
        let x = self.n_at(&ab.0);
        let y = self.n_at(&ab.1);
        holds(op, x.cmp(y))
    }

    #[inline(never)]
    fn b_cmp_any(&mut self, op: Op, ab: &'a (X, X)) -> bool {
        let x = self.x_at(&ab.0);
        let y = self.x_at(&ab.1);
        match compare(x, y) {
            Some(o) => holds(op, o),
            None => self.give_up(false),
        }
    }

    #[inline(never)]
    fn b_present(&mut self, a: &'a X, yes: bool) -> bool {
        matches!(self.x_at(a), F::Absent) != yes
    }

    #[inline(never)]
    fn b_if(&mut self, cab: &'a (B, B, B)) -> bool {
        if self.b_at(&cab.0) { self.b_at(&cab.1) } else { self.b_at(&cab.2) }
    }

    #[inline(never)]
    fn b_all_any(&mut self, all: bool, agg: &'a Agg<Option<B>>) -> bool {
        let depth = self.depth;
        self.depth = 2;
        let columns = self.column_agg(agg).map(|(items, keep)| match &agg.item {
            Some(c) => (keep, self.vb(c, items, keep)),
            None => (keep, keep),
        });
        self.depth = depth;
        if let Some((keep, holds)) = columns {
            return if all { holds == keep } else { holds != 0 };
        }
        let mut result = all;
        self.each(agg, |m, item| {
            let holds = match item {
                Some(c) => m.b_at(c),
                None => true,
            };
            // `all` stops at the first item that fails, `any` at the first that holds.
            if holds != all {
                result = !all;
                return false;
            }
            true
        });
        result
    }

    #[inline(never)]
    fn b_in(&mut self, a: &'a X, list: &'a [X]) -> bool {
        let v = self.x(a);
        for i in list {
            let w = self.x(i);
            match compare(v, w) {
                Some(Ordering::Equal) => return true,
                Some(_) => {}
                None => return self.give_up(false),
            }
        }
        false
    }

    #[inline(never)]
    fn b_of(&mut self, a: &'a X) -> bool {
        match self.x(a) {
            F::Bool(v) => v,
            _ => self.give_up(false),
        }
    }

    #[inline]
    fn num(&mut self, r: Option<Frac>) -> Frac {
        match r {
            Some(v) => v,
            None => self.give_up(Frac::ZERO),
        }
    }

    /// A number: the common shapes here, the rest in [`Self::n_rare`].
    fn n(&mut self, e: &'a N) -> Frac {
        match e {
            N::Lit(_) | N::Field(..) | N::Item(..) => self.n_at(e),
            N::Let(id) => self.n_let(*id),
            N::Arith(op, ab) => self.n_arith(*op, ab),
            N::If(cab) => self.n_if(cab),
            N::Sum(agg) => self.n_sum(agg),
            N::Count(agg) => self.n_count(agg),
            N::Extreme(min, args) => self.n_extreme(*min, args),
            _ => self.n_rare(e),
        }
    }

    #[inline(never)]
    fn n_let(&mut self, id: usize) -> Frac {
        match self.named(id) {
            F::Num(v) => v,
            _ => self.give_up(Frac::ZERO),
        }
    }

    #[inline(never)]
    fn n_arith(&mut self, op: Op, ab: &'a (N, N)) -> Frac {
        let x = self.n_at(&ab.0);
        let y = self.n_at(&ab.1);
        let v = match op {
            Op::Add => x.add(y),
            Op::Sub => x.sub(y),
            Op::Mul => x.mul(y),
            _ => x.div(y),
        };
        self.num(v)
    }

    #[inline(never)]
    fn n_if(&mut self, cab: &'a (B, N, N)) -> Frac {
        if self.b_at(&cab.0) { self.n_at(&cab.1) } else { self.n_at(&cab.2) }
    }

    #[inline(never)]
    fn n_count(&mut self, agg: &'a Agg<()>) -> Frac {
        if agg.filter.is_some() {
            let depth = self.depth;
            self.depth = 2;
            let keep = self.column_agg(agg).map(|(_, keep)| keep);
            self.depth = depth;
            if let Some(keep) = keep {
                return Frac::int(i64::from(keep.count_ones()));
            }
        }
        if agg.filter.is_none() {
            let items = self.list(&agg.list);
            return Frac::int(i64::try_from(items.len()).unwrap_or(i64::MAX));
        }
        let mut count: i64 = 0;
        self.each(agg, |_, _| {
            count += 1;
            true
        });
        Frac::int(count)
    }

    #[inline(never)]
    fn n_sum(&mut self, agg: &'a Agg<N>) -> Frac {
        let depth = self.depth;
        self.depth = 2;
        let mut out = [Frac::ZERO; columns::MAX];
        let keep = self.column_agg(agg).map(|(items, keep)| {
            self.vn(&agg.item, items, keep, &mut out);
            keep
        });
        self.depth = depth;
        if let Some(keep) = keep {
            let mut sum = Some(Frac::ZERO);
            for i in columns::each(keep) {
                if let Some(v) = out.get(i) {
                    sum = sum.and_then(|s| s.add(*v));
                }
            }
            return self.num(sum);
        }
        let mut sum = Some(Frac::ZERO);
        self.each(agg, |m, item| {
            let v = m.n_at(item);
            sum = sum.and_then(|s| s.add(v));
            true
        });
        self.num(sum)
    }

    #[inline(never)]
    fn n_extreme(&mut self, min: bool, args: &'a [N]) -> Frac {
        let want = if min { Ordering::Less } else { Ordering::Greater };
        let mut best: Option<Frac> = None;
        for a in args {
            let v = self.n_at(a);
            best = Some(match best {
                Some(cur) if v.cmp(cur) != want => cur,
                _ => v,
            });
        }
        self.num(best)
    }

    #[inline(never)]
    fn n_rare(&mut self, e: &'a N) -> Frac {
        match e {
            // `n` handles these itself (never sends them here).
            N::Lit(_) | N::Field(..) | N::Let(_) | N::Item(..) | N::Arith(..) | N::If(_) | N::Count(_) | N::Sum(_) | N::Extreme(..) => {
                self.n(e)
            }
            N::Neg(a) => {
                let v = self.n(a).neg();
                self.num(v)
            }
            N::Coalesce(ab) => match self.x(&ab.0) {
                F::Absent => self.n(&ab.1),
                F::Num(v) => v,
                _ => self.give_up(Frac::ZERO),
            },
            N::Round(places, mode, a) => {
                let v = self.n(a).round(*places, *mode);
                self.num(v)
            }
            N::Floor(a) => self.n(a).floor(),
            N::Ceil(a) => self.n(a).ceil(),
            N::Abs(a) => {
                let v = self.n(a);
                if v.is_negative() {
                    let v = v.neg();
                    self.num(v)
                } else {
                    v
                }
            }
            N::Clamp(xs) => {
                let x = self.n(&xs.0);
                let lo = self.n(&xs.1);
                let hi = self.n(&xs.2);
                let x = if x.cmp(lo) == Ordering::Less { lo } else { x };
                if x.cmp(hi) == Ordering::Greater { hi } else { x }
            }
            N::Year(d) => match self.x(d) {
                F::Date(d) => Frac::int(date::year_of(d)),
                _ => self.give_up(Frac::ZERO),
            },
            N::Of(a) => match self.x(a) {
                F::Num(v) => v,
                _ => self.give_up(Frac::ZERO),
            },
        }
    }

    fn x(&mut self, e: &'a X) -> F<'a> {
        match e {
            X::Absent => F::Absent,
            X::EmptyList => F::List(&[]),
            X::Text(t) => F::Text(t),
            X::Date(d) => F::Date(*d),
            X::Enum(t, v) => F::Enum(*t, *v),
            X::Level(l) => F::Level(*l),
            X::Field(..) | X::Item(..) => self.x_at(e),
            X::Let(id) => self.named(*id),
            X::Sub(base, slot) => match self.x(base) {
                F::Rec(r) => match F::of(r.get(*slot)) {
                    Some(v) => v,
                    None => self.give_up(F::Absent),
                },
                _ => self.give_up(F::Absent),
            },
            X::Bool(b) => F::Bool(self.b(b)),
            X::Num(n) => F::Num(self.n(n)),
            X::Coalesce(ab) => match self.x(&ab.0) {
                F::Absent => self.x(&ab.1),
                v => v,
            },
            X::If(cab) => {
                if self.b(&cab.0) {
                    self.x(&cab.1)
                } else {
                    self.x(&cab.2)
                }
            }
            X::Match(scrutinee, arms, fallback) => {
                let v = self.x(scrutinee);
                for (consts, value) in arms {
                    for k in consts {
                        let k = self.x(k);
                        match compare(v, k) {
                            Some(Ordering::Equal) => return self.x(value),
                            Some(_) => {}
                            None => return self.give_up(F::Absent),
                        }
                    }
                }
                match fallback {
                    Some(f) => self.x(f),
                    None => self.give_up(F::Absent),
                }
            }
            X::Avg(agg) => {
                let mut sum = Some(Frac::ZERO);
                let mut count: i64 = 0;
                self.each(agg, |m, item| {
                    let v = m.n_at(item);
                    sum = sum.and_then(|s| s.add(v));
                    count += 1;
                    true
                });
                if count == 0 {
                    return F::Absent;
                }
                let v = sum.and_then(|s| s.div(Frac::int(count)));
                F::Num(self.num(v))
            }
            X::ExtremeOf(min, agg) => {
                let want = if *min { Ordering::Less } else { Ordering::Greater };
                let mut best: Option<F<'a>> = None;
                let mut ok = true;
                self.each(agg, |m, item| {
                    let v = m.x(item);
                    best = Some(match best {
                        Some(b) => match compare(v, b) {
                            Some(o) if o != want => b,
                            Some(_) => v,
                            None => {
                                ok = false;
                                return false;
                            }
                        },
                        None => v,
                    });
                    true
                });
                if !ok {
                    return self.give_up(F::Absent);
                }
                best.unwrap_or(F::Absent)
            }
            X::Extreme(min, args) => {
                let want = if *min { Ordering::Less } else { Ordering::Greater };
                let mut best: Option<F<'a>> = None;
                for a in args {
                    let v = self.x(a);
                    if matches!(v, F::Absent) {
                        // The closures fail on an absent argument of a numeric `min`/`max`.
                        return self.give_up(F::Absent);
                    }
                    best = Some(match best {
                        Some(cur) => match compare(v, cur) {
                            Some(o) if o != want => cur,
                            Some(_) => v,
                            None => return self.give_up(F::Absent),
                        },
                        None => v,
                    });
                }
                best.unwrap_or(F::Absent)
            }
            X::PeriodEnd(t) | X::PeriodKind(t) => {
                let end = matches!(e, X::PeriodEnd(_));
                match self.x(t) {
                    F::Text(t) => match date::parse_period(t) {
                        Some((_, d)) if end => F::Date(d),
                        Some((kind, _)) => F::Text(kind.as_str()),
                        None => self.give_up(F::Absent),
                    },
                    _ => self.give_up(F::Absent),
                }
            }
        }
    }

    /// A decision's condition: the flat program's register when it has one, else the tree.
    fn cond(&mut self, tree: &'a B, reg: Option<u32>, regs: &flat::Regs) -> bool {
        match reg {
            Some(r) => regs.get(r),
            None => self.b(tree),
        }
    }

    /// [`super::evaluate_in`] without the trace: the same steps in the same order.
    fn decide(&mut self, rs: &RuleSet, flat: Option<&flat::Flat>, regs: &flat::Regs) -> Option<Outcome> {
        // A condition: from the flat program's register when it ran, else from the tree.
        let reg = |pick: fn(&flat::Flat) -> &[u32], i: usize| flat.and_then(|f| pick(f).get(i).copied());
        let plan = self.plan;
        let c = &rs.checked;
        let mut out = Outcome::empty(c.criteria.len());

        // 1. Eligibility: the first that holds decides.
        for (i, r) in plan.eligibility.iter().enumerate() {
            if self.cond(&r.when, reg(|f| &f.eligibility, i), regs) {
                out.level = r.target;
                if let Some((f, _)) = r.flag {
                    out.add_flag_index(f);
                }
                out.decided_by.push(rs.bases.eligibility + i);
                return Some(out);
            }
        }

        if self.gave_up {
            return None;
        }
        // 2. Validity: a record an `invalid` rule rejects is the closures' to explain.
        for (k, (list, when)) in plan.invalid.iter().enumerate() {
            if let Some(r) = reg(|f| &f.invalid, k) {
                if regs.get(r) {
                    return None;
                }
                continue;
            }
            match list {
                None => {
                    if self.b(when) {
                        return None;
                    }
                }
                Some(slot) => {
                    let Value::List(items) = self.root.get(*slot) else { continue };
                    self.depth = 2;
                    for (i, item) in items.iter().enumerate() {
                        self.enter(1, item, i);
                        if self.b(when) {
                            return None;
                        }
                    }
                    self.depth = 1;
                }
            }
        }

        if self.gave_up {
            return None;
        }
        // 3. Criteria, score, band, gates.
        for &id in &c.criteria {
            let F::Num(v) = self.named(id) else { return None };
            out.criteria.push((id, v.to_num()));
        }
        let F::Num(total) = self.named(c.classify.score) else { return None };
        let total = total.to_num();
        out.total = Some(total);
        let bands = &c.classify.bands;
        let band_index = bands.iter().position(|b| threshold_met(b.threshold, total)).unwrap_or(bands.len().saturating_sub(1));
        let band_level = bands.get(band_index).map(|b| b.level).unwrap_or(0);
        out.band = Some(band_level);
        let mut level = band_level;
        for (i, (b, gate)) in bands.iter().zip(&plan.gates).enumerate().skip(band_index) {
            match gate {
                None => {
                    level = b.level;
                    break;
                }
                Some(g) => {
                    let at = flat.and_then(|f| f.gates.get(i).copied().flatten());
                    if self.cond(g, at, regs) {
                        level = b.level;
                        break;
                    }
                    out.decided_by.push(rs.bases.band + i);
                }
            }
        }
        if level != band_level
            && let Some(f) = plan.gate_flag
        {
            out.add_flag_index(f);
        }

        if self.gave_up {
            return None;
        }
        // 4. Vetoes.
        let mut vetoed = false;
        for (i, r) in plan.vetoes.iter().enumerate() {
            if self.cond(&r.when, reg(|f| &f.vetoes, i), regs) {
                if !vetoed || r.target > level {
                    level = r.target;
                }
                vetoed = true;
                if let Some((f, _)) = r.flag {
                    out.add_flag_index(f);
                }
                out.decided_by.push(rs.bases.veto + i);
            }
        }

        if self.gave_up {
            return None;
        }
        // 5. Caps, when no veto applied.
        if !vetoed {
            for (i, r) in plan.caps.iter().enumerate() {
                if !self.cond(&r.when, reg(|f| &f.caps, i), regs) {
                    continue;
                }
                let Some(target) = &r.target else { continue };
                let F::Level(cap) = self.x(target) else { continue };
                let lowered = cap > level;
                if lowered {
                    level = cap;
                }
                out.decided_by.push(rs.bases.cap + i);
                if let Some((f, if_lowered)) = r.flag
                    && (lowered || !if_lowered)
                {
                    out.add_flag_index(f);
                }
            }
        }

        if self.gave_up {
            return None;
        }
        // 6. Flag rules.
        for (i, r) in plan.flags.iter().enumerate() {
            if self.cond(&r.when, reg(|f| &f.flags, i), regs) {
                if let Some((f, _)) = r.flag {
                    out.add_flag_index(f);
                }
                out.decided_by.push(rs.bases.flag + i);
            }
        }
        out.level = level;
        Some(out)
    }
}
#[cfg(test)]
mod tests {
    use super::{Mode, flat};
    use crate::compile::{RuleSet, compile};
    use crate::eval::reference::tests::{Gen, WORKOUT, workout_record};
    use crate::eval::{Ctx, Outcome, TraceLevel, evaluate_in, record::Record, record::from_json};

    /// The two outcomes, if they differ.
    fn difference(fast: &Outcome, closures: &Outcome) -> Option<String> {
        let same_total = match (fast.total, closures.total) {
            (Some(a), Some(b)) => a.eq(&b) == Ok(true),
            (a, b) => a.is_none() && b.is_none(),
        };
        let same_criteria = fast.criteria.len() == closures.criteria.len()
            && fast.criteria.iter().zip(&closures.criteria).all(|((i, a), (j, b))| i == j && a.eq(b) == Ok(true));
        let same = fast.level == closures.level
            && fast.band == closures.band
            && same_total
            && same_criteria
            && fast.flags == closures.flags
            && fast.decided_by == closures.decided_by
            && fast.trace.is_empty()
            && fast.quota.is_none();
        (!same).then(|| format!("fast {fast:?}\nclosures {closures:?}"))
    }

    /// Runs both on a record: the fast path must answer exactly as the closures do, or give up;
    /// it must give up wherever the closures fail. Returns whether it answered.
    /// Whether the fast path answered in `mode`; panics where its answer differs from the
    /// closures'. The registers are filled with junk first, so that a read of a register or
    /// lane the run did not write shows.
    fn compare(rs: &RuleSet, rec: &Record, what: &str, mode: Mode) -> bool {
        let plan = rs.fast.as_deref().unwrap_or_else(|| panic!("{what}: the rules have a fast plan"));
        assert!(plan.flat.is_some(), "{what}: the rules have a flat program");
        flat::Regs::poison();
        let fast = plan.run_with(rs, rec, mode);
        let closures = evaluate_in(&mut Ctx::new(rs, rec), TraceLevel::None);
        match (&fast, &closures) {
            (Some(f), Ok(c)) => {
                if let Some(d) = difference(f, c) {
                    panic!("{what}\n{d}");
                }
                true
            }
            (Some(f), Err(e)) => panic!("{what}: the fast path answered {f:?} where the closures fail: {e:?}"),
            (None, _) => false,
        }
    }

    #[test]
    fn agrees_with_the_closures_on_the_conformance_records() {
        let Some(records) = crate::testdata::conformance_records() else { return };
        let (reg366, decree335) = (crate::testdata::bundled("reg366.merit"), crate::testdata::bundled("decree335.merit"));
        let (mut answered, mut by_program, mut by_trees, mut classified) = (0, 0, 0, 0);
        for (rules, record) in &records {
            let rs = if *rules == "decree335.merit" { &decree335 } else { &reg366 };
            let Ok(rec) = from_json(&rs.checked.schema, record) else { continue };
            let what = record.to_string();
            answered += usize::from(compare(rs, &rec, &what, Mode::Flat));
            by_program += usize::from(compare(rs, &rec, &what, Mode::FlatOnly));
            by_trees += usize::from(compare(rs, &rec, &what, Mode::Trees));
            if crate::eval::evaluate(rs, &rec, TraceLevel::Full).is_ok() {
                classified += 1;
            }
        }
        assert!(classified >= 1900, "{classified} records classified");
        // Giving up is never wrong, but on these records it would only cost time.
        assert_eq!(answered, classified, "the fast path answered {answered} of {classified} records the closures classify");
        assert_eq!(by_program, classified, "the flat program alone answered {by_program} of {classified} records the closures classify");
        assert_eq!(by_trees, classified, "the trees alone answered {by_trees} of {classified} records the closures classify");
    }

    /// The workout rules of the reference tests, with more shapes: a top-level value read from
    /// item scope (its aggregate runs inside a column), an optional item value (computed item
    /// by item), item values that fail on some items (a division by zero) where the closures
    /// need them and where they do not, a `not`, numeric `min`/`max` and level comparisons,  a
    /// negation, `or false` and a top-level condition inside a column (so that every kind of
    /// instruction the programs hold runs).
    fn fast_workout() -> String {
        let extra = r#"let mv = avg(items where v present: v) ?? 0
let items.vi = if mv > 0 then v else (v ?? 0) + mv
let vis = count(items where vi present and (vi ?? 0) > mv)
let items.inv = 1 / w
let items.ratio2 = 10 / w
let none_small = not any(items where w > 0: inv > 0.5)
let capped = max(0, min(nn ?? 0, 3))
let high_level = if lvl present then (lvl ?? weak) >= fair else false
let neg = -(nn ?? 0)
let zc = count(items where w > 3 or false)
let anyb = count(items where both and w > 1)
"#;
        let flags = r#"flag f2 "F2" when vis > 1 and none_small and capped < 3 because "v"
flag f3 "F3" when high_level and any(items: ratio2 > 100) because "r"
flag f4 "F4" when neg + zc + anyb > 0 because "t"
"#;
        WORKOUT.replacen("score total", &format!("{extra}score total"), 1).replacen("quota q1", &format!("{flags}quota q1"), 1)
    }

    #[test]
    fn agrees_with_the_closures_on_random_workout_records() {
        let rules = fast_workout();
        let (rs, _) = compile("workout.merit", &rules).unwrap_or_else(|(_, d)| panic!("workout compiles: {d:?}"));
        let mut g = Gen(0x2545_f491_4f6c_dd1d);
        let (mut checked, mut answered, mut by_program, mut by_trees, mut failed, mut long) = (0, 0, 0, 0, 0, 0);
        for n in 0..3000 {
            let mut json = workout_record(&mut g);
            // Every fifth record gets 40 items (past the columns' 32): the per-item paths.
            if n % 5 == 0
                && let Some(items) = json.get_mut("items").and_then(|i| i.as_array_mut())
                && !items.is_empty()
            {
                let more: Vec<_> = items.iter().cycle().take(40).cloned().collect();
                *items = more;
                long += 1;
            }
            let Ok(rec) = from_json(&rs.checked.schema, &json) else { continue };
            checked += 1;
            let what = json.to_string();
            answered += usize::from(compare(&rs, &rec, &what, Mode::Flat));
            by_program += usize::from(compare(&rs, &rec, &what, Mode::FlatOnly));
            by_trees += usize::from(compare(&rs, &rec, &what, Mode::Trees));
            if crate::eval::evaluate(&rs, &rec, TraceLevel::Full).is_err() {
                failed += 1;
            }
        }
        assert!(checked > 2500, "most generated records fit the schema ({checked})");
        assert!(long > 300, "{long} records with long lists");
        assert!(failed > 100, "the closures fail on some records ({failed}), so never answering there is tested");
        assert!(answered * 2 > checked, "the fast path answered {answered} of {checked} records");
        assert!(by_program * 2 > checked, "the flat program alone answered {by_program} of {checked} records");
        assert!(by_trees * 2 > checked, "the trees alone answered {by_trees} of {checked} records");
        // Where the program gives up, the trees answer: together they answer at least as often.
        assert!(answered >= by_trees.max(by_program), "{answered} answered, {by_program} by the program, {by_trees} by the trees");
        println!(
            "workout: {checked} records; answered {answered}, by the flat program alone {by_program}, by the trees alone {by_trees}; the closures fail on {failed}"
        );
    }

    #[test]
    fn gives_up_where_a_value_fails_and_the_closures_explain() {
        let rules = WORKOUT.replace("weights / 3", "weights / (known - known)");
        let (rs, _) = compile("workout.merit", &rules).unwrap_or_else(|(_, d)| panic!("compiles: {d:?}"));
        let json = serde_json::json!({"subject_id": "S", "period": "2025", "n": 2, "items": []});
        let rec = from_json(&rs.checked.schema, &json).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(rs.fast.as_deref().is_some_and(|p| p.run(&rs, &rec).is_none()), "a division by zero gives up");
        let err = crate::eval::evaluate(&rs, &rec, TraceLevel::None).expect_err("the closures report it");
        assert!(err.describe(&rs).contains("division by zero"), "{}", err.describe(&rs));
    }

    /// A deep rule set (item values 20 deep, each `not` 100 deep, read through columns)
    /// evaluates on a thread with a 2 MiB stack, with the trace off and on, when optimised (an
    /// unoptimised test build has frames several times larger: it gets 16 MiB).
    #[test]
    fn deep_rules_evaluate_on_a_small_stack() {
        let mut rules = String::from(
            "ruleset deep \"Deep\" version \"1\" effective 2020-01-01\nrecord { subject_id: text role subject\n period: text role period\n items: list of { x: integer = 0 } = [] }\nlevels { good \"G\" weak \"W\" }\n",
        );
        let nots = "not ".repeat(100);
        rules.push_str(&format!("let items.c1 = {nots}(x > 0)\n"));
        for i in 2..=20 {
            rules.push_str(&format!("let items.c{i} = {nots}c{}\n", i - 1));
        }
        rules.push_str("score total = count(items where c20)\nclassify by total { good when total >= 1 weak otherwise }\n");
        // Compiling recurses deeper than evaluating: it gets a large stack of its own.
        let on = |stack: usize, f: Box<dyn FnOnce() -> Option<(u8, Option<String>)> + Send>| {
            std::thread::Builder::new()
                .stack_size(stack)
                .spawn(f)
                .unwrap_or_else(|e| panic!("spawn: {e}"))
                .join()
                .unwrap_or_else(|_| panic!("the thread failed"))
        };
        let rs = std::sync::Arc::new(
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn(move || compile("deep.merit", &rules).map(|(rs, _)| rs).unwrap_or_else(|(_, d)| panic!("compiles: {d:?}")))
                .unwrap_or_else(|e| panic!("spawn: {e}"))
                .join()
                .unwrap_or_else(|_| panic!("compile failed")),
        );
        assert!(rs.fast.is_some(), "the deep rules have a fast plan");
        let json = serde_json::json!({"subject_id": "S", "period": "2025", "items": [{"x": 1}, {"x": 0}, {"x": 2}]});
        let rec = std::sync::Arc::new(from_json(&rs.checked.schema, &json).unwrap_or_else(|e| panic!("{e:?}")));
        let stack = if cfg!(debug_assertions) { 16 << 20 } else { 2 << 20 };
        let (r1, c1) = (rs.clone(), rec.clone());
        let fast = on(
            stack,
            Box::new(move || r1.fast.as_deref().and_then(|p| p.run(&r1, &c1)).map(|o| (o.level, o.total.map(|t| t.to_string())))),
        );
        let (r2, c2) = (rs.clone(), rec.clone());
        let full = on(
            stack,
            Box::new(move || crate::eval::evaluate(&r2, &c2, TraceLevel::Full).ok().map(|o| (o.level, o.total.map(|t| t.to_string())))),
        );
        assert_eq!(fast, full);
        assert_eq!(fast, Some((0, Some("2".to_string()))), "two items have x > 0 (an even number of `not`s)");
    }

    /// Every kind of instruction that the bundled rules' and the workout's programs hold runs
    /// on the conformance and workout records, with the other kinds listed.
    #[test]
    fn every_instruction_in_the_programs_runs() {
        let Some(records) = crate::testdata::conformance_records() else { return };
        let (reg366, decree335) = (crate::testdata::bundled("reg366.merit"), crate::testdata::bundled("decree335.merit"));
        let (workout, _) = compile("workout.merit", &fast_workout()).unwrap_or_else(|(_, d)| panic!("workout compiles: {d:?}"));
        for (rules, record) in &records {
            let rs = if *rules == "decree335.merit" { &decree335 } else { &reg366 };
            if let Ok(rec) = from_json(&rs.checked.schema, record) {
                compare(rs, &rec, &record.to_string(), Mode::FlatOnly);
            }
        }
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..1000 {
            let json = workout_record(&mut g);
            if let Ok(rec) = from_json(&workout.checked.schema, &json) {
                compare(&workout, &rec, &json.to_string(), Mode::FlatOnly);
            }
        }
        let mut emitted = std::collections::BTreeSet::new();
        for rs in [&reg366, &decree335, &workout] {
            let program =
                rs.fast.as_deref().and_then(|p| p.flat.as_ref()).unwrap_or_else(|| panic!("{} has a flat program", rs.checked.id));
            emitted.extend(flat::tests::kinds_in(program));
        }
        let ran = flat::tests::kinds_run();
        let never: Vec<_> = emitted.difference(&ran).collect();
        assert!(never.is_empty(), "instructions in the programs that never ran: {never:?}");
        println!("instructions run: {ran:?}");
    }

    #[test]
    fn the_bundled_rules_have_a_plan() {
        for file in ["reg366.merit", "decree335.merit"] {
            assert!(crate::testdata::bundled(file).fast.is_some(), "{file}");
        }
    }
}
