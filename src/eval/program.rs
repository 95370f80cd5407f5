//! Lowering: checked expressions become closures, once per rule set, so evaluating a record
//! walks no syntax tree. Each expression is compiled for the type its consumer wants (a
//! condition to `bool`, arithmetic to [`Num`], anything else to [`V`]); leaves (constants,
//! fields, named values) stay inline operands instead of calls, and the common shapes (a count
//! without filter, a comparison of two numbers) get their own closures.
//!
//! The closures compute exactly what the checked expression means: operands are evaluated in
//! source order, `and`/`or`/`if`/`??` are lazy, `all`/`any` stop at the first decisive item,
//! and every failure is the same [`ErrorKind`] at the same place.

use super::ErrorKind;
use super::expr::{Ctx, Stack, V, compare, num_err};
use super::record::Value;
use crate::check::Checked;
use crate::check::ir::{AggKind, Builtin, Const, Ex, FieldType, Message, MessagePart, Op, RecordTypeId, Ty};
use crate::date;
use crate::num::Num;
use std::cmp::Ordering;
use std::fmt;

type R<T> = Result<T, ErrorKind>;
type TypedFn<T> = Box<dyn for<'a> Fn(&mut Ctx<'a>, &Stack<'a>) -> R<T> + Send + Sync>;
type ValFn = Box<dyn for<'a> Fn(&mut Ctx<'a>, &Stack<'a>) -> R<V<'a>> + Send + Sync>;

// The constructors pin each closure to the higher-ranked signature its box needs.
fn bool_fn<F: for<'a> Fn(&mut Ctx<'a>, &Stack<'a>) -> R<bool> + Send + Sync + 'static>(f: F) -> BoolArg {
    Arg::Code(Box::new(f))
}
fn num_fn<F: for<'a> Fn(&mut Ctx<'a>, &Stack<'a>) -> R<Num> + Send + Sync + 'static>(f: F) -> NumArg {
    Arg::Code(Box::new(f))
}
fn val_fn<F: for<'a> Fn(&mut Ctx<'a>, &Stack<'a>) -> R<V<'a>> + Send + Sync + 'static>(f: F) -> ValArg {
    ValArg::Code(Box::new(f))
}
fn typed_fn<T, F: for<'a> Fn(&mut Ctx<'a>, &Stack<'a>) -> R<T> + Send + Sync + 'static>(f: F) -> Arg<T> {
    Arg::Code(Box::new(f))
}

/// An operand that yields a `T` (a `bool` or a number). `Let` and `Item` name values lowered
/// as `T` (kept in the memo of that kind); `LetV` and `ItemV` name values of any kind.
enum Arg<T> {
    Lit(T),
    Field(u8, u16),
    Let(usize),
    Item(u8, usize),
    LetV(usize),
    ItemV(u8, usize),
    Code(TypedFn<T>),
}

/// An operand that yields a `bool`.
type BoolArg = Arg<bool>;
/// An operand that yields a number.
type NumArg = Arg<Num>;

/// A type an operand can be lowered to: how it is read from a record, a value and the memos.
trait Typed: Copy + Sized {
    fn of_field(v: &Value) -> Option<Self>;
    fn of_value(v: V<'_>) -> Option<Self>;
    fn named<'a>(ctx: &mut Ctx<'a>, id: usize) -> R<Self>;
    fn item<'a>(ctx: &mut Ctx<'a>, id: usize, frame: u8, st: &Stack<'a>) -> R<Self>;
}

impl Typed for bool {
    #[inline(always)]
    fn of_field(v: &Value) -> Option<bool> {
        if let Value::Bool(b) = v { Some(*b) } else { None }
    }
    #[inline(always)]
    fn of_value(v: V<'_>) -> Option<bool> {
        if let V::Bool(b) = v { Some(b) } else { None }
    }
    #[inline(always)]
    fn named<'a>(ctx: &mut Ctx<'a>, id: usize) -> R<bool> {
        ctx.bool_let(id)
    }
    #[inline(always)]
    fn item<'a>(ctx: &mut Ctx<'a>, id: usize, frame: u8, st: &Stack<'a>) -> R<bool> {
        ctx.bool_item(id, frame, st)
    }
}

impl Typed for Num {
    #[inline(always)]
    fn of_field(v: &Value) -> Option<Num> {
        if let Value::Num(n) = v { Some(*n) } else { None }
    }
    #[inline(always)]
    fn of_value(v: V<'_>) -> Option<Num> {
        if let V::Num(n) = v { Some(n) } else { None }
    }
    #[inline(always)]
    fn named<'a>(ctx: &mut Ctx<'a>, id: usize) -> R<Num> {
        ctx.num_let(id)
    }
    #[inline(always)]
    fn item<'a>(ctx: &mut Ctx<'a>, id: usize, frame: u8, st: &Stack<'a>) -> R<Num> {
        ctx.num_item(id, frame, st)
    }
}

/// A value as a `T`: absent and other kinds are errors.
fn typed<T: Typed>(v: V<'_>) -> R<T> {
    T::of_value(v).ok_or(if matches!(v, V::Absent) { ErrorKind::Absent } else { ErrorKind::Type })
}

fn as_bool(v: V<'_>) -> R<bool> {
    typed(v)
}

fn as_num(v: V<'_>) -> R<Num> {
    typed(v)
}

impl<T: Typed> Arg<T> {
    #[inline(always)]
    fn get<'a>(&self, ctx: &mut Ctx<'a>, st: &Stack<'a>) -> R<T> {
        match self {
            Arg::Lit(x) => Ok(*x),
            Arg::Field(f, s) => {
                let v = st.value(*f, *s)?;
                T::of_field(v).ok_or(if matches!(v, Value::Absent) { ErrorKind::Absent } else { ErrorKind::Type })
            }
            Arg::Let(id) => T::named(ctx, *id),
            Arg::Item(f, id) => T::item(ctx, *id, *f, st),
            Arg::LetV(id) => typed(ctx.let_value(*id)?),
            Arg::ItemV(f, id) => typed(ctx.item_let_value(*id, *f, st)?),
            Arg::Code(c) => c(ctx, st),
        }
    }
}

/// An operand that yields any value.
enum ValArg {
    /// A constant that borrows nothing.
    Lit(V<'static>),
    /// A text constant, by index into [`Program::texts`].
    Text(usize),
    Field(u8, u16),
    Let(usize),
    Item(u8, usize),
    Code(ValFn),
}

impl ValArg {
    #[inline(always)]
    fn get<'a>(&self, ctx: &mut Ctx<'a>, st: &Stack<'a>) -> R<V<'a>> {
        match self {
            ValArg::Lit(v) => Ok(*v),
            ValArg::Text(i) => {
                let rs = ctx.rs;
                rs.program.texts.get(*i).map(|t| V::Text(t.as_str())).ok_or(ErrorKind::Internal)
            }
            ValArg::Field(f, s) => Ok(V::of(st.value(*f, *s)?)),
            ValArg::Let(id) => ctx.let_value(*id),
            ValArg::Item(f, id) => ctx.item_let_value(*id, *f, st),
            ValArg::Code(c) => c(ctx, st),
        }
    }
}

/// A compiled expression: a condition, or a value of any type.
pub struct Code(CodeKind);

/// What a compiled expression yields, and so which memo keeps a named value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `bool` (never absent).
    Bool,
    /// A number (never absent).
    Num,
    /// Any value, absent included.
    Val,
}

enum CodeKind {
    Bool(BoolArg),
    Num(NumArg),
    Val(ValArg),
}

impl Code {
    /// The expression's value.
    pub fn eval<'a>(&self, ctx: &mut Ctx<'a>, st: &Stack<'a>) -> R<V<'a>> {
        match &self.0 {
            CodeKind::Bool(b) => b.get(ctx, st).map(V::Bool),
            CodeKind::Num(n) => n.get(ctx, st).map(V::Num),
            CodeKind::Val(v) => v.get(ctx, st),
        }
    }

    /// What the expression yields.
    pub fn kind(&self) -> Kind {
        match &self.0 {
            CodeKind::Bool(_) => Kind::Bool,
            CodeKind::Num(_) => Kind::Num,
            CodeKind::Val(_) => Kind::Val,
        }
    }

    /// The number of an expression lowered as one ([`Kind::Num`]).
    #[inline]
    pub fn number<'a>(&self, ctx: &mut Ctx<'a>, st: &Stack<'a>) -> R<Num> {
        match &self.0 {
            CodeKind::Num(n) => n.get(ctx, st),
            CodeKind::Bool(b) => b.get(ctx, st).and(Err(ErrorKind::Type)),
            CodeKind::Val(v) => as_num(v.get(ctx, st)?),
        }
    }

    /// The condition's truth (an absent value is an error).
    pub fn truth<'a>(&self, ctx: &mut Ctx<'a>, st: &Stack<'a>) -> R<bool> {
        match &self.0 {
            CodeKind::Bool(b) => b.get(ctx, st),
            CodeKind::Num(n) => n.get(ctx, st).and(Err(ErrorKind::Type)),
            CodeKind::Val(v) => as_bool(v.get(ctx, st)?),
        }
    }
}

/// A `because` message: its placeholders compiled, in order.
pub struct MessageCode {
    /// One entry per message part; `None` for literal text.
    pub parts: Vec<Option<Code>>,
}

/// A decision rule's compiled parts.
pub struct RuleCode {
    /// Its condition.
    pub when: Code,
    /// Its target level, when it has one.
    pub target: Option<Code>,
    /// Its message.
    pub because: MessageCode,
}

/// A quota's compiled expressions.
pub struct QuotaCode {
    /// `applies when`.
    pub applies: Option<Code>,
    /// The ranking keys.
    pub rank: Vec<Code>,
}

/// A band's compiled condition and message.
pub struct GateCode {
    /// The condition.
    pub when: Code,
    /// Its message.
    pub because: MessageCode,
}

/// Every expression of a rule set, compiled; parallel to the [`Checked`] rules.
pub struct Program {
    /// Top-level named values, by let id.
    pub lets: Vec<Code>,
    /// Item-level named values, by item-let id.
    pub item_lets: Vec<Code>,
    /// Each named value's slot in the memo of its [`Kind`].
    pub let_slots: Vec<usize>,
    /// How many named values of each [`Kind`] (indexed by `Kind as usize`).
    pub let_counts: [usize; 3],
    /// Eligibility rules.
    pub eligibility: Vec<RuleCode>,
    /// Validity rules.
    pub invalid: Vec<RuleCode>,
    /// Band conditions, by band.
    pub gates: Vec<Option<GateCode>>,
    /// Vetoes.
    pub vetoes: Vec<RuleCode>,
    /// Caps.
    pub caps: Vec<RuleCode>,
    /// Flag rules.
    pub flags: Vec<RuleCode>,
    /// Quotas.
    pub quotas: Vec<QuotaCode>,
    /// Text constants (values borrow them for the length of an evaluation).
    texts: Vec<String>,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program").field("lets", &self.lets.len()).field("item_lets", &self.item_lets.len()).finish_non_exhaustive()
    }
}

impl Program {
    /// Compiles every expression of checked rules.
    pub fn lower(c: &Checked) -> Program {
        let mut cx = Lower {
            checked: c,
            frames: vec![Some(0)],
            texts: Vec::new(),
            let_absent: vec![None; c.lets.len()],
            item_absent: vec![None; c.item_lets.len()],
            let_kinds: vec![None; c.lets.len()],
            item_kinds: vec![None; c.item_lets.len()],
            reads: Reads::of(c),
        };
        let lets: Vec<Code> = c.lets.iter().map(|l| cx.code(&l.expr)).collect();
        let item_lets: Vec<Code> = c
            .item_lets
            .iter()
            .map(|il| {
                let item = cx.field_ty(Some(0), il.list_slot).and_then(|t| match t {
                    Ty::List(rt) => Some(rt),
                    _ => None,
                });
                cx.within(item, |cx| cx.code(&il.expr))
            })
            .collect();
        let eligibility = c.eligibility.iter().map(|r| cx.rule(&r.when, r.target.as_ref(), &r.because)).collect();
        let invalid = c
            .invalid
            .iter()
            .map(|r| match r.item_field {
                None => cx.rule(&r.when, None, &r.because),
                Some(_) => {
                    let item = cx.field_ty(Some(0), r.field).and_then(|t| match t {
                        Ty::List(rt) => Some(rt),
                        _ => None,
                    });
                    cx.within(item, |cx| cx.rule(&r.when, None, &r.because))
                }
            })
            .collect();
        let gates = c
            .classify
            .bands
            .iter()
            .map(|b| b.gate.as_ref().map(|(g, m, _)| GateCode { when: cx.condition(g), because: cx.message(m) }))
            .collect();
        let vetoes = c.vetoes.iter().map(|r| cx.rule(&r.when, r.target.as_ref(), &r.because)).collect();
        let caps = c.caps.iter().map(|r| cx.rule(&r.when, r.target.as_ref(), &r.because)).collect();
        let flags = c.flags.iter().map(|r| cx.rule(&r.when, r.target.as_ref(), &r.because)).collect();
        let quotas = c
            .quotas
            .iter()
            .map(|q| QuotaCode {
                applies: q.applies.as_ref().map(|a| cx.condition(a)),
                rank: q.rank.iter().map(|(e, _)| cx.code(e)).collect(),
            })
            .collect();
        let (let_slots, let_counts) = memo_slots(&lets);
        Program { lets, item_lets, let_slots, let_counts, eligibility, invalid, gates, vetoes, caps, flags, quotas, texts: cx.texts }
    }
}

/// Each named value's place in the memo of its kind, and how many each memo holds. (Item values
/// get theirs per record, from their lists' lengths: see `Ctx::new`.)
fn memo_slots(codes: &[Code]) -> (Vec<usize>, [usize; 3]) {
    let mut counts = [0; 3];
    let slots = codes
        .iter()
        .map(|c| {
            let k = c.kind() as usize;
            let slot = counts.get(k).copied().unwrap_or(0);
            if let Some(n) = counts.get_mut(k) {
                *n += 1;
            }
            slot
        })
        .collect();
    (slots, counts)
}

/// The lowering context: the record type of each scope frame, for picking typed closures.
struct Lower<'c> {
    checked: &'c Checked,
    frames: Vec<Option<RecordTypeId>>,
    texts: Vec<String>,
    /// Whether each named value may be absent, once known.
    let_absent: Vec<Option<bool>>,
    item_absent: Vec<Option<bool>>,
    /// The kind each named value is lowered as, once known.
    let_kinds: Vec<Option<Kind>>,
    item_kinds: Vec<Option<Kind>>,
    /// How often each named value is read.
    reads: Reads,
}

/// How many places read each named value (the evaluation itself reads the criteria and the score).
struct Reads {
    lets: Vec<u32>,
    items: Vec<u32>,
}

impl Reads {
    fn of(c: &Checked) -> Reads {
        let mut r = Reads { lets: vec![0; c.lets.len()], items: vec![0; c.item_lets.len()] };
        for l in &c.lets {
            r.walk(&l.expr);
        }
        for l in &c.item_lets {
            r.walk(&l.expr);
        }
        for rule in c.eligibility.iter().chain(&c.vetoes).chain(&c.caps).chain(&c.flags) {
            r.walk(&rule.when);
            rule.target.iter().for_each(|t| r.walk(t));
            r.message(&rule.because);
        }
        for rule in &c.invalid {
            r.walk(&rule.when);
            r.message(&rule.because);
        }
        for (gate, msg, _) in c.classify.bands.iter().filter_map(|b| b.gate.as_ref()) {
            r.walk(gate);
            r.message(msg);
        }
        for q in &c.quotas {
            q.applies.iter().for_each(|a| r.walk(a));
            q.rank.iter().for_each(|(e, _)| r.walk(e));
        }
        for id in c.criteria.iter().chain(std::iter::once(&c.classify.score)) {
            if let Some(n) = r.lets.get_mut(*id) {
                *n += 1;
            }
        }
        r
    }

    fn message(&mut self, m: &Message) {
        for p in &m.parts {
            if let MessagePart::Expr(e) = p {
                self.walk(e);
            }
        }
    }

    fn walk(&mut self, ex: &Ex) {
        let count = match ex {
            Ex::Let(id) => self.lets.get_mut(*id),
            Ex::ItemLet { id, .. } => self.items.get_mut(*id),
            _ => None,
        };
        if let Some(n) = count {
            *n += 1;
        }
        ex.for_each_child(|e| self.walk(e));
    }
}

fn ty_of_field(t: &FieldType) -> Ty {
    match t {
        FieldType::Text => Ty::Text,
        FieldType::Bool => Ty::Bool,
        FieldType::Integer(_) | FieldType::Decimal(_) => Ty::Num,
        FieldType::Date => Ty::Date,
        FieldType::Level => Ty::Level,
        FieldType::Enum(e) => Ty::Enum(*e),
        FieldType::List(rt) => Ty::List(*rt),
        FieldType::Record(rt) => Ty::Record(*rt),
    }
}

fn is_cmp(op: Op) -> bool {
    matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
}

/// Whether a comparison operator holds for the ordering of its operands.
#[inline]
pub(super) fn holds(op: Op, ord: Ordering) -> bool {
    // Bit 0, 1, 2 of the operator's mask: holds when less, equal, greater. A table load, not a
    // branch on the operator.
    let bit = match ord {
        Ordering::Less => 1,
        Ordering::Equal => 2,
        Ordering::Greater => 4,
    };
    orderings(op) & bit != 0
}

/// The orderings for which a comparison operator holds: bit 0 less, bit 1 equal, bit 2 greater.
#[inline]
pub(super) fn orderings(op: Op) -> u8 {
    match op {
        Op::Eq => 0b010,
        Op::Ne => 0b101,
        Op::Lt => 0b001,
        Op::Le => 0b011,
        Op::Gt => 0b100,
        _ => 0b110,
    }
}

fn equal(a: V<'_>, b: V<'_>) -> R<bool> {
    Ok(compare(a, b)? == Ordering::Equal)
}

impl Lower<'_> {
    /// Runs `f` with one more scope frame, holding items of record type `item`.
    fn within<T>(&mut self, item: Option<RecordTypeId>, f: impl FnOnce(&mut Self) -> T) -> T {
        self.frames.push(item);
        let out = f(self);
        self.frames.pop();
        out
    }

    fn field_ty(&self, rt: Option<RecordTypeId>, slot: u16) -> Option<Ty> {
        let f = self.checked.schema.records.get(rt?)?.fields.get(slot as usize)?;
        Some(ty_of_field(&f.ty))
    }

    /// The static type of an expression, where the lowering can tell.
    fn ty(&mut self, ex: &Ex) -> Option<Ty> {
        match ex {
            Ex::Const(c) => match c {
                Const::Bool(_) => Some(Ty::Bool),
                Const::Num(_) => Some(Ty::Num),
                Const::Text(_) => Some(Ty::Text),
                Const::Date(_) => Some(Ty::Date),
                Const::Enum(t, _) => Some(Ty::Enum(*t as usize)),
                Const::Level(_) => Some(Ty::Level),
                Const::Absent | Const::EmptyList => None,
            },
            Ex::Field { frame, slot } => self.field_ty(self.frames.get(*frame as usize).copied().flatten(), *slot),
            Ex::SubField(base, slot) => match self.ty(base)? {
                Ty::Record(rt) => self.field_ty(Some(rt), *slot),
                _ => None,
            },
            Ex::Let(id) => self.checked.lets.get(*id).map(|l| l.ty.ty),
            Ex::ItemLet { id, .. } => self.checked.item_lets.get(*id).map(|l| l.ty.ty),
            Ex::Not(_) | Ex::Present(..) | Ex::In(..) => Some(Ty::Bool),
            Ex::Neg(_) => Some(Ty::Num),
            Ex::Bin(op, a, _) => match op {
                Op::And | Op::Or => Some(Ty::Bool),
                Op::Coalesce => self.ty(a),
                Op::Add | Op::Sub | Op::Mul | Op::Div => Some(Ty::Num),
                _ => Some(Ty::Bool),
            },
            Ex::If(_, a, _) => self.ty(a),
            Ex::Match(_, arms, fallback) => match arms.first() {
                Some((_, e)) => self.ty(e),
                None => fallback.as_deref().and_then(|f| self.ty(f)),
            },
            Ex::Agg { kind, list, item, .. } => match kind {
                AggKind::Count | AggKind::Sum | AggKind::Avg => Some(Ty::Num),
                AggKind::All | AggKind::Any => Some(Ty::Bool),
                AggKind::Min | AggKind::Max => {
                    let rt = self.item_type(list);
                    let item = item.as_deref()?;
                    self.within(rt, |cx| cx.ty(item))
                }
            },
            Ex::Call(b, args) => match b {
                Builtin::Min | Builtin::Max => self.ty(args.first()?),
                Builtin::PeriodEnd => Some(Ty::Date),
                Builtin::PeriodKind => Some(Ty::Text),
                _ => Some(Ty::Num),
            },
        }
    }

    fn item_type(&mut self, list: &Ex) -> Option<RecordTypeId> {
        match self.ty(list)? {
            Ty::List(rt) => Some(rt),
            _ => None,
        }
    }

    fn code(&mut self, ex: &Ex) -> Code {
        match self.kind_of(ex) {
            Kind::Bool => Code(CodeKind::Bool(self.boolean(ex))),
            Kind::Num => Code(CodeKind::Num(self.num(ex))),
            Kind::Val => Code(CodeKind::Val(self.val(ex))),
        }
    }

    /// How an expression is lowered: a value that may be absent (an optional field, `avg`,
    /// `??` with such a fallback, ...) stays a value, as a typed closure would turn its absence
    /// into an error.
    fn kind_of(&mut self, ex: &Ex) -> Kind {
        match self.ty(ex) {
            Some(Ty::Bool) if !self.may_be_absent(ex) => Kind::Bool,
            Some(Ty::Num) if !self.may_be_absent(ex) => Kind::Num,
            _ => Kind::Val,
        }
    }

    /// Runs `f` in the scope a top-level named value (`item: None`) or an item-level value of
    /// list `item` is defined in.
    fn defined_in<T>(&mut self, item: Option<u16>, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = std::mem::replace(&mut self.frames, vec![Some(0)]);
        let out = match item {
            None => f(self),
            Some(list_slot) => {
                let rt = self.field_ty(Some(0), list_slot).and_then(|t| match t {
                    Ty::List(rt) => Some(rt),
                    _ => None,
                });
                self.within(rt, f)
            }
        };
        self.frames = saved;
        out
    }

    /// The kind a top-level named value is lowered as.
    fn let_kind(&mut self, id: usize) -> Kind {
        if let Some(Some(k)) = self.let_kinds.get(id) {
            return *k;
        }
        let k = match self.checked.lets.get(id) {
            Some(l) => self.defined_in(None, |cx| cx.kind_of(&l.expr)),
            None => Kind::Val,
        };
        if let Some(slot) = self.let_kinds.get_mut(id) {
            *slot = Some(k);
        }
        k
    }

    /// The kind an item-level value is lowered as.
    fn item_kind(&mut self, id: usize) -> Kind {
        if let Some(Some(k)) = self.item_kinds.get(id) {
            return *k;
        }
        let k = match self.checked.item_lets.get(id) {
            Some(l) => self.defined_in(Some(l.list_slot), |cx| cx.kind_of(&l.expr)),
            None => Kind::Val,
        };
        if let Some(slot) = self.item_kinds.get_mut(id) {
            *slot = Some(k);
        }
        k
    }

    /// Whether an expression can yield an absent value rather than fail. Exact for fields,
    /// named values and calls; any other leaf that could is `true`.
    fn may_be_absent(&mut self, ex: &Ex) -> bool {
        match ex {
            Ex::Const(Const::Absent) | Ex::Agg { kind: AggKind::Avg | AggKind::Min | AggKind::Max, .. } => true,
            Ex::Bin(Op::Coalesce, _, b) => self.may_be_absent(b),
            Ex::If(_, a, b) => self.may_be_absent(a) || self.may_be_absent(b),
            Ex::Match(_, arms, fallback) => {
                arms.iter().any(|(_, e)| self.may_be_absent(e)) || fallback.as_deref().is_some_and(|f| self.may_be_absent(f))
            }
            // A field with a default is filled in; one without is absent only if optional.
            Ex::Field { frame, slot } => {
                let rt = self.frames.get(*frame as usize).copied().flatten();
                match rt.and_then(|rt| self.checked.schema.records.get(rt)).and_then(|r| r.fields.get(*slot as usize)) {
                    Some(f) => match &f.default {
                        Some(c) => matches!(c, Const::Absent),
                        None => f.optional,
                    },
                    None => true,
                }
            }
            Ex::Let(id) => match self.let_absent.get(*id).copied().flatten() {
                Some(known) => known,
                None => {
                    // Named values form no cycle (the checker refuses one); `true` meanwhile is safe.
                    self.mark(*id, false, true);
                    let absent = match self.checked.lets.get(*id) {
                        Some(l) => self.defined_in(None, |cx| cx.may_be_absent(&l.expr)),
                        None => true,
                    };
                    self.mark(*id, false, absent);
                    absent
                }
            },
            Ex::ItemLet { id, .. } => match self.item_absent.get(*id).copied().flatten() {
                Some(known) => known,
                None => {
                    self.mark(*id, true, true);
                    let absent = match self.checked.item_lets.get(*id) {
                        Some(l) => self.defined_in(Some(l.list_slot), |cx| cx.may_be_absent(&l.expr)),
                        None => true,
                    };
                    self.mark(*id, true, absent);
                    absent
                }
            },
            // Builtins fail on an absent argument; only `min()`/`max()` of nothing is absent.
            Ex::Call(b, args) => matches!(b, Builtin::Min | Builtin::Max) && args.is_empty(),
            Ex::SubField(..) => true,
            _ => false,
        }
    }

    /// A typed named value read at root scope: kept in its memo, or, when this is its only
    /// reader, computed in place (once, as the memo would have; a failure still names it).
    fn named<T: Typed + Send + Sync + 'static>(&mut self, id: usize, lower: fn(&mut Self, &Ex) -> Arg<T>) -> Arg<T> {
        let checked = self.checked;
        let only_reader = self.reads.lets.get(id) == Some(&1);
        // Inside an aggregate or an item value the reader runs once per item: keep the memo.
        let (true, 1, Some(def)) = (only_reader, self.frames.len(), checked.lets.get(id)) else {
            return Arg::Let(id);
        };
        let inner = self.defined_in(None, |cx| lower(cx, &def.expr));
        typed_fn(move |c, s| {
            // Its aggregates take the frames after the root's, as in its own scope.
            let r = if s.depth() == 1 { inner.get(c, s) } else { inner.get(c, &Stack::root(c.root)) };
            if r.is_err() {
                c.note_let_failure(id);
            }
            #[cfg(test)]
            if r.is_ok() {
                c.count_computed(false, id, 0);
                c.in_place.insert((false, id));
            }
            r
        })
    }

    /// A typed item value read by one reader in the scope of its own item (another item value
    /// of the list, or an aggregate over it at root scope): computed in place when that is its
    /// only reader, else kept in its memo.
    fn named_item<T: Typed + Send + Sync + 'static>(&mut self, frame: u8, id: usize, lower: fn(&mut Self, &Ex) -> Arg<T>) -> Arg<T> {
        let checked = self.checked;
        let only_reader = self.reads.items.get(id) == Some(&1);
        let (true, 1, 2, Some(def)) = (only_reader, frame, self.frames.len(), checked.item_lets.get(id)) else {
            return Arg::Item(frame, id);
        };
        let inner = self.defined_in(Some(def.list_slot), |cx| lower(cx, &def.expr));
        typed_fn(move |c, s| {
            let r = if s.depth() == 2 {
                inner.get(c, s)
            } else {
                match s.item_in(1) {
                    Some((item, index)) => inner.get(c, &Stack::with_item(c.root, item, index)),
                    None => Err(ErrorKind::Internal),
                }
            };
            if r.is_err() {
                c.note_item_failure(id);
            }
            #[cfg(test)]
            if r.is_ok() {
                let index = s.item_in(1).map_or(usize::MAX, |(_, i)| i);
                c.count_computed(true, id, index);
                c.in_place.insert((true, id));
            }
            r
        })
    }

    fn mark(&mut self, id: usize, item: bool, absent: bool) {
        let memo = if item { &mut self.item_absent } else { &mut self.let_absent };
        if let Some(slot) = memo.get_mut(id) {
            *slot = Some(absent);
        }
    }

    fn condition(&mut self, ex: &Ex) -> Code {
        Code(CodeKind::Bool(self.boolean(ex)))
    }

    fn message(&mut self, m: &Message) -> MessageCode {
        MessageCode {
            parts: m
                .parts
                .iter()
                .map(|p| match p {
                    MessagePart::Text(_) => None,
                    MessagePart::Expr(e) => Some(self.code(e)),
                })
                .collect(),
        }
    }

    fn rule(&mut self, when: &Ex, target: Option<&Ex>, because: &Message) -> RuleCode {
        RuleCode { when: self.condition(when), target: target.map(|t| self.code(t)), because: self.message(because) }
    }

    fn lit(&mut self, c: &Const) -> ValArg {
        ValArg::Lit(match c {
            Const::Absent => V::Absent,
            Const::Bool(b) => V::Bool(*b),
            Const::Num(n) => V::Num(n.reduced()),
            Const::Text(t) => {
                self.texts.push(t.clone());
                return ValArg::Text(self.texts.len() - 1);
            }
            Const::Date(d) => V::Date(*d),
            Const::Enum(t, e) => V::Enum(*t, *e),
            Const::Level(l) => V::Level(*l),
            Const::EmptyList => V::List(&[]),
        })
    }

    fn boolean(&mut self, ex: &Ex) -> BoolArg {
        match ex {
            Ex::Const(Const::Bool(b)) => Arg::Lit(*b),
            Ex::Field { frame, slot } => Arg::Field(*frame, *slot),
            Ex::Let(id) if self.let_kind(*id) == Kind::Bool => self.named(*id, Self::boolean),
            Ex::ItemLet { frame, id } if self.item_kind(*id) == Kind::Bool => self.named_item(*frame, *id, Self::boolean),
            Ex::Let(id) => Arg::LetV(*id),
            Ex::ItemLet { frame, id } => Arg::ItemV(*frame, *id),
            Ex::Not(e) => {
                let e = self.boolean(e);
                bool_fn(move |c, s| Ok(!e.get(c, s)?))
            }
            Ex::Present(e, yes) => {
                let (e, yes) = (self.val(e), *yes);
                bool_fn(move |c, s| Ok(matches!(e.get(c, s)?, V::Absent) != yes))
            }
            Ex::In(e, items) => {
                let e = self.val(e);
                let items: Vec<ValArg> = items.iter().map(|i| self.val(i)).collect();
                bool_fn(move |c, s| {
                    let v = e.get(c, s)?;
                    for i in &items {
                        if equal(v, i.get(c, s)?)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })
            }
            Ex::Bin(Op::And, a, b) => {
                let (a, b) = (self.boolean(a), self.boolean(b));
                bool_fn(move |c, s| Ok(a.get(c, s)? && b.get(c, s)?))
            }
            Ex::Bin(Op::Or, a, b) => {
                let (a, b) = (self.boolean(a), self.boolean(b));
                bool_fn(move |c, s| Ok(a.get(c, s)? || b.get(c, s)?))
            }
            Ex::Bin(op, a, b) if is_cmp(*op) => self.comparison(*op, a, b),
            Ex::If(cond, a, b) => {
                let (cond, a, b) = (self.boolean(cond), self.boolean(a), self.boolean(b));
                bool_fn(move |c, s| if cond.get(c, s)? { a.get(c, s) } else { b.get(c, s) })
            }
            Ex::Agg { kind: kind @ (AggKind::All | AggKind::Any), list, filter, item } => {
                self.all_any(*kind == AggKind::All, list, filter.as_deref(), item.as_deref())
            }
            _ => {
                let v = self.val(ex);
                bool_fn(move |c, s| as_bool(v.get(c, s)?))
            }
        }
    }

    fn comparison(&mut self, op: Op, a: &Ex, b: &Ex) -> BoolArg {
        if self.ty(a) == Some(Ty::Num) && self.ty(b) == Some(Ty::Num) {
            let (a, b) = (self.num(a), self.num(b));
            return match op {
                Op::Eq => bool_fn(move |c, s| Ok(num_cmp(&a, &b, c, s)? == Ordering::Equal)),
                Op::Ne => bool_fn(move |c, s| Ok(num_cmp(&a, &b, c, s)? != Ordering::Equal)),
                Op::Lt => bool_fn(move |c, s| Ok(num_cmp(&a, &b, c, s)? == Ordering::Less)),
                Op::Le => bool_fn(move |c, s| Ok(num_cmp(&a, &b, c, s)? != Ordering::Greater)),
                Op::Gt => bool_fn(move |c, s| Ok(num_cmp(&a, &b, c, s)? == Ordering::Greater)),
                _ => bool_fn(move |c, s| Ok(num_cmp(&a, &b, c, s)? != Ordering::Less)),
            };
        }
        let (a, b) = (self.val(a), self.val(b));
        bool_fn(move |c, s| {
            let x = a.get(c, s)?;
            let y = b.get(c, s)?;
            Ok(holds(op, compare(x, y)?))
        })
    }

    fn num(&mut self, ex: &Ex) -> NumArg {
        match ex {
            Ex::Const(Const::Num(n)) => Arg::Lit(n.reduced()),
            Ex::Field { frame, slot } => Arg::Field(*frame, *slot),
            Ex::Let(id) if self.let_kind(*id) == Kind::Num => self.named(*id, Self::num),
            Ex::ItemLet { frame, id } if self.item_kind(*id) == Kind::Num => self.named_item(*frame, *id, Self::num),
            Ex::Let(id) => Arg::LetV(*id),
            Ex::ItemLet { frame, id } => Arg::ItemV(*frame, *id),
            Ex::Neg(e) => {
                let e = self.num(e);
                num_fn(move |c, s| e.get(c, s)?.neg().map_err(num_err))
            }
            Ex::Bin(op @ (Op::Add | Op::Sub | Op::Mul | Op::Div), a, b) => {
                let (a, b) = (self.num(a), self.num(b));
                match op {
                    Op::Add => num_fn(move |c, s| {
                        let x = a.get(c, s)?;
                        x.add(b.get(c, s)?).map_err(num_err)
                    }),
                    Op::Sub => num_fn(move |c, s| {
                        let x = a.get(c, s)?;
                        x.sub(b.get(c, s)?).map_err(num_err)
                    }),
                    Op::Mul => num_fn(move |c, s| {
                        let x = a.get(c, s)?;
                        x.mul(b.get(c, s)?).map_err(num_err)
                    }),
                    _ => num_fn(move |c, s| {
                        let x = a.get(c, s)?;
                        x.div(b.get(c, s)?).map_err(num_err)
                    }),
                }
            }
            Ex::Bin(Op::Coalesce, a, b) => {
                let (a, b) = (self.val(a), self.num(b));
                num_fn(move |c, s| match a.get(c, s)? {
                    V::Absent => b.get(c, s),
                    v => as_num(v),
                })
            }
            Ex::If(cond, a, b) => {
                let (cond, a, b) = (self.boolean(cond), self.num(a), self.num(b));
                num_fn(move |c, s| if cond.get(c, s)? { a.get(c, s) } else { b.get(c, s) })
            }
            Ex::Agg { kind: AggKind::Count, list, filter, .. } => self.count(list, filter.as_deref()),
            Ex::Agg { kind: AggKind::Sum, list, filter, item: Some(item) } => self.sum(list, filter.as_deref(), item),
            Ex::Call(b, args) => match self.num_call(*b, args) {
                Some(n) => n,
                None => {
                    let v = self.val_call(*b, args);
                    num_fn(move |c, s| as_num(v.get(c, s)?))
                }
            },
            _ => {
                let v = self.val(ex);
                num_fn(move |c, s| as_num(v.get(c, s)?))
            }
        }
    }

    /// Numeric builtins over numeric arguments; `None` for the rest.
    fn num_call(&mut self, b: Builtin, args: &[Ex]) -> Option<NumArg> {
        Some(match (b, args) {
            (Builtin::Round(places, mode), [x]) => {
                let x = self.num(x);
                num_fn(move |c, s| x.get(c, s)?.round(places, mode).map_err(num_err))
            }
            (Builtin::Floor, [x]) => {
                let x = self.num(x);
                num_fn(move |c, s| Ok(x.get(c, s)?.floor()))
            }
            (Builtin::Ceil, [x]) => {
                let x = self.num(x);
                num_fn(move |c, s| Ok(x.get(c, s)?.ceil()))
            }
            (Builtin::Abs, [x]) => {
                let x = self.num(x);
                num_fn(move |c, s| {
                    let x = x.get(c, s)?;
                    if x.is_negative() { x.neg().map_err(num_err) } else { Ok(x) }
                })
            }
            (Builtin::Clamp, [x, lo, hi]) => {
                let (x, lo, hi) = (self.num(x), self.num(lo), self.num(hi));
                num_fn(move |c, s| {
                    let x = x.get(c, s)?;
                    let lo = lo.get(c, s)?;
                    let hi = hi.get(c, s)?;
                    let x = if x.cmp(&lo).map_err(num_err)? == Ordering::Less { lo } else { x };
                    Ok(if x.cmp(&hi).map_err(num_err)? == Ordering::Greater { hi } else { x })
                })
            }
            (Builtin::Year, [d]) => {
                let d = self.val(d);
                num_fn(move |c, s| match d.get(c, s)? {
                    V::Date(d) => Ok(Num::from_int(date::year_of(d))),
                    _ => Err(ErrorKind::Type),
                })
            }
            (Builtin::Min | Builtin::Max, [_, ..]) if args.iter().all(|a| self.ty(a) == Some(Ty::Num)) => {
                let want = if b == Builtin::Min { Ordering::Less } else { Ordering::Greater };
                let args: Vec<NumArg> = args.iter().map(|a| self.num(a)).collect();
                num_fn(move |c, s| {
                    let mut best: Option<Num> = None;
                    for a in &args {
                        let v = a.get(c, s)?;
                        best = Some(match best {
                            Some(cur) if v.cmp(&cur).map_err(num_err)? != want => cur,
                            _ => v,
                        });
                    }
                    best.ok_or(ErrorKind::Internal)
                })
            }
            _ => return None,
        })
    }

    fn count(&mut self, list: &Ex, filter: Option<&Ex>) -> NumArg {
        let rt = self.item_type(list);
        let l = self.val(list);
        match filter {
            None => num_fn(move |c, s| Ok(Num::from_int(i64::try_from(items(l.get(c, s)?)?.len()).unwrap_or(i64::MAX)))),
            Some(f) => {
                let f = self.within(rt, |cx| cx.boolean(f));
                num_fn(move |c, s| {
                    let list = items(l.get(c, s)?)?;
                    let (mut inner, depth) = s.push()?;
                    let mut n: i64 = 0;
                    for (i, it) in list.iter().enumerate() {
                        inner.set(depth, it, i);
                        if f.get(c, &inner)? {
                            n += 1;
                        }
                    }
                    Ok(Num::from_int(n))
                })
            }
        }
    }

    fn sum(&mut self, list: &Ex, filter: Option<&Ex>, item: &Ex) -> NumArg {
        let rt = self.item_type(list);
        let l = self.val(list);
        let (f, e) = self.within(rt, |cx| (filter.map(|f| cx.boolean(f)), cx.num(item)));
        num_fn(move |c, s| {
            let list = items(l.get(c, s)?)?;
            let (mut inner, depth) = s.push()?;
            let mut sum = Num::ZERO;
            for (i, it) in list.iter().enumerate() {
                inner.set(depth, it, i);
                if let Some(f) = &f
                    && !f.get(c, &inner)?
                {
                    continue;
                }
                sum = sum.add(e.get(c, &inner)?).map_err(num_err)?;
            }
            Ok(sum)
        })
    }

    fn avg(&mut self, list: &Ex, filter: Option<&Ex>, item: &Ex) -> ValArg {
        let rt = self.item_type(list);
        let l = self.val(list);
        let (f, e) = self.within(rt, |cx| (filter.map(|f| cx.boolean(f)), cx.num(item)));
        val_fn(move |c, s| {
            let list = items(l.get(c, s)?)?;
            let (mut inner, depth) = s.push()?;
            let mut sum = Num::ZERO;
            let mut n: i64 = 0;
            for (i, it) in list.iter().enumerate() {
                inner.set(depth, it, i);
                if let Some(f) = &f
                    && !f.get(c, &inner)?
                {
                    continue;
                }
                sum = sum.add(e.get(c, &inner)?).map_err(num_err)?;
                n += 1;
            }
            if n == 0 { Ok(V::Absent) } else { sum.div(Num::from_int(n)).map(V::Num).map_err(num_err) }
        })
    }

    fn all_any(&mut self, all: bool, list: &Ex, filter: Option<&Ex>, item: Option<&Ex>) -> BoolArg {
        let rt = self.item_type(list);
        let l = self.val(list);
        let (f, e) = self.within(rt, |cx| (filter.map(|f| cx.boolean(f)), item.map(|e| cx.boolean(e))));
        if all && e.is_none() {
            // The checker gives `all` an item expression; without one it would hold trivially.
            return Arg::Lit(true);
        }
        bool_fn(move |c, s| {
            let list = items(l.get(c, s)?)?;
            let (mut inner, depth) = s.push()?;
            for (i, it) in list.iter().enumerate() {
                inner.set(depth, it, i);
                if let Some(f) = &f
                    && !f.get(c, &inner)?
                {
                    continue;
                }
                let holds = match &e {
                    Some(e) => e.get(c, &inner)?,
                    None => true,
                };
                // `all` stops at the first item that fails, `any` at the first that holds.
                if holds != all {
                    return Ok(!all);
                }
            }
            Ok(all)
        })
    }

    fn min_max(&mut self, min: bool, list: &Ex, filter: Option<&Ex>, item: &Ex) -> ValArg {
        let rt = self.item_type(list);
        let l = self.val(list);
        let (f, e) = self.within(rt, |cx| (filter.map(|f| cx.boolean(f)), cx.val(item)));
        let want = if min { Ordering::Less } else { Ordering::Greater };
        val_fn(move |c, s| {
            let list = items(l.get(c, s)?)?;
            let (mut inner, depth) = s.push()?;
            let mut best: Option<V<'_>> = None;
            for (i, it) in list.iter().enumerate() {
                inner.set(depth, it, i);
                if let Some(f) = &f
                    && !f.get(c, &inner)?
                {
                    continue;
                }
                let v = e.get(c, &inner)?;
                best = Some(match best {
                    Some(b) if compare(v, b)? != want => b,
                    _ => v,
                });
            }
            Ok(best.unwrap_or(V::Absent))
        })
    }

    fn val(&mut self, ex: &Ex) -> ValArg {
        match ex {
            Ex::Const(c) => self.lit(c),
            Ex::Field { frame, slot } => ValArg::Field(*frame, *slot),
            Ex::Let(id) => ValArg::Let(*id),
            Ex::ItemLet { frame, id } => ValArg::Item(*frame, *id),
            Ex::SubField(base, slot) => {
                let (base, slot) = (self.val(base), *slot);
                val_fn(move |c, s| match base.get(c, s)? {
                    V::Rec(r) => Ok(V::of(r.get(slot))),
                    V::Absent => Err(ErrorKind::Absent),
                    _ => Err(ErrorKind::Type),
                })
            }
            // Exactly the shapes `num` handles itself (anything else would come back here).
            Ex::Neg(_)
            | Ex::Bin(Op::Add | Op::Sub | Op::Mul | Op::Div, ..)
            | Ex::Agg { kind: AggKind::Count, .. }
            | Ex::Agg { kind: AggKind::Sum, item: Some(_), .. } => {
                let n = self.num(ex);
                val_fn(move |c, s| n.get(c, s).map(V::Num))
            }
            Ex::Not(_) | Ex::Present(..) | Ex::In(..) | Ex::Agg { kind: AggKind::All | AggKind::Any, .. } => {
                let b = self.boolean(ex);
                val_fn(move |c, s| b.get(c, s).map(V::Bool))
            }
            Ex::Bin(op, ..) if is_cmp(*op) || matches!(op, Op::And | Op::Or) => {
                let b = self.boolean(ex);
                val_fn(move |c, s| b.get(c, s).map(V::Bool))
            }
            Ex::Bin(_, a, b) => {
                // `??`: the only operator left.
                let (a, b) = (self.val(a), self.val(b));
                val_fn(move |c, s| match a.get(c, s)? {
                    V::Absent => b.get(c, s),
                    v => Ok(v),
                })
            }
            Ex::If(cond, a, b) => {
                let (cond, a, b) = (self.boolean(cond), self.val(a), self.val(b));
                val_fn(move |c, s| if cond.get(c, s)? { a.get(c, s) } else { b.get(c, s) })
            }
            Ex::Match(scrutinee, arms, fallback) => {
                let scrutinee = self.val(scrutinee);
                let arms: Vec<(Vec<ValArg>, ValArg)> =
                    arms.iter().map(|(consts, e)| (consts.iter().map(|k| self.lit(k)).collect(), self.val(e))).collect();
                let fallback = fallback.as_deref().map(|f| self.val(f));
                val_fn(move |c, s| {
                    let v = scrutinee.get(c, s)?;
                    for (consts, value) in &arms {
                        for k in consts {
                            if equal(v, k.get(c, s)?)? {
                                return value.get(c, s);
                            }
                        }
                    }
                    match &fallback {
                        Some(f) => f.get(c, s),
                        None => Err(ErrorKind::NoArm),
                    }
                })
            }
            Ex::Agg { kind: AggKind::Avg, list, filter, item: Some(item) } => self.avg(list, filter.as_deref(), item),
            Ex::Agg { kind: kind @ (AggKind::Min | AggKind::Max), list, filter, item: Some(item) } => {
                self.min_max(*kind == AggKind::Min, list, filter.as_deref(), item)
            }
            Ex::Agg { .. } => val_fn(|_, _| Err(ErrorKind::Internal)),
            Ex::Call(b, args) => self.val_call(*b, args),
        }
    }

    fn val_call(&mut self, b: Builtin, args: &[Ex]) -> ValArg {
        match (b, args) {
            (Builtin::Min | Builtin::Max, _) => {
                if let Some(n) = self.num_call(b, args) {
                    return val_fn(move |c, s| n.get(c, s).map(V::Num));
                }
                let want = if b == Builtin::Min { Ordering::Less } else { Ordering::Greater };
                let args: Vec<ValArg> = args.iter().map(|a| self.val(a)).collect();
                val_fn(move |c, s| {
                    let mut best: Option<V<'_>> = None;
                    for a in &args {
                        let v = a.get(c, s)?;
                        best = Some(match best {
                            Some(cur) if compare(v, cur)? != want => cur,
                            _ => v,
                        });
                    }
                    Ok(best.unwrap_or(V::Absent))
                })
            }
            (Builtin::PeriodEnd | Builtin::PeriodKind, [t]) => {
                let (t, end) = (self.val(t), b == Builtin::PeriodEnd);
                val_fn(move |c, s| match t.get(c, s)? {
                    V::Text(t) => match date::parse_period(t) {
                        Some((_, d)) if end => Ok(V::Date(d)),
                        Some((kind, _)) => Ok(V::Text(kind.as_str())),
                        None => Err(ErrorKind::BadPeriod),
                    },
                    _ => Err(ErrorKind::Type),
                })
            }
            _ => match self.num_call(b, args) {
                Some(n) => val_fn(move |c, s| n.get(c, s).map(V::Num)),
                None => val_fn(|_, _| Err(ErrorKind::Internal)),
            },
        }
    }
}

/// Compares two numbers, the first evaluated first.
#[inline(always)]
fn num_cmp<'a>(a: &NumArg, b: &NumArg, c: &mut Ctx<'a>, s: &Stack<'a>) -> R<Ordering> {
    let x = a.get(c, s)?;
    let y = b.get(c, s)?;
    x.cmp(&y).map_err(num_err)
}

/// The items of a list value.
#[inline(always)]
fn items<'a>(v: V<'a>) -> R<&'a [super::record::Record]> {
    match v {
        V::List(items) => Ok(items),
        V::Absent => Err(ErrorKind::Absent),
        _ => Err(ErrorKind::Type),
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::compile;
    use crate::eval::record::from_json;
    use crate::eval::{Ctx, ErrorKind, EvalError, TraceLevel, evaluate, evaluate_in};

    const RULES: &str = r#"ruleset lazy "Lazy" version "1" effective 2020-01-01
record {
  subject_id: text role subject
  period:     text role period
  p:          decimal
  items:      list of { v: decimal, ok: bool = true } = []
}
levels { good "Good" weak "Weak" }
let items.inverse = 1 / v
let safe = if p == 0 then 0 else 10 / p
let all_ok = all(items: ok and inverse > 0)
let first_small = any(items where v < 1: true)
let smallest = min(items: v) ?? 0
score total = round(safe + count(items where ok) + smallest, 2, half_up)
classify by total { good when total >= 5 require all_ok or first_small weak otherwise }
"#;

    fn run(json: serde_json::Value) -> Result<(u8, String), EvalError> {
        let (rs, _) = compile("lazy.merit", RULES).expect("compiles");
        let rec = from_json(&rs.checked.schema, &json).expect("fits");
        evaluate_in(&mut Ctx::new(&rs, &rec), TraceLevel::None).map(|o| (o.level, o.total.map(|t| t.to_string()).unwrap_or_default()))
    }

    #[test]
    fn untaken_branches_and_decided_aggregates_are_not_evaluated() {
        // `10 / p` with p = 0 sits in the branch not taken.
        let (level, total) = run(serde_json::json!({"subject_id": "A", "period": "2025", "p": 0})).expect("classifies");
        assert_eq!((level, total.as_str()), (1, "0"));
        // `all` stops at the first item that fails (ok = false), before the item whose
        // inverse divides by zero; `any` stops at its first match.
        let items = serde_json::json!([{"v": 2, "ok": false}, {"v": 0}]);
        let (level, total) = run(serde_json::json!({"subject_id": "B", "period": "2025", "p": 2, "items": items})).expect("classifies");
        assert_eq!((level, total.as_str()), (0, "6"), "5 + one ok item + smallest 0; good through `first_small`");
    }

    #[test]
    fn absent_values_pass_through_named_values_as_values() {
        const OPTIONAL: &str = r#"ruleset opt "Optional" version "1" effective 2020-01-01
record {
  subject_id: text role subject
  period:     text role period
  flag:       bool?
  points:     decimal?
  items:      list of { ok: bool? } = []
}
levels { good "Good" weak "Weak" }
let f = flag
let p = points
let items.k = ok
let known = count(items where k ?? false)
score total = round((if f ?? false then 10 else 0) + (p ?? 1) + known, 2, half_up)
classify by total { good when total >= 5 weak otherwise }
flag shown "SHOWN" when f absent because "flag {f}, points {p}"
"#;
        let (rs, _) = compile("opt.merit", OPTIONAL).expect("compiles");
        let rec = from_json(&rs.checked.schema, &serde_json::json!({"subject_id": "O", "period": "2025", "items": [{}, {"ok": true}]}))
            .expect("fits");
        let o = evaluate(&rs, &rec, TraceLevel::Full).expect("absent optional values are values, not errors");
        assert_eq!(o.total.map(|t| t.to_string()).as_deref(), Some("2"));
        let msg = o.trace.iter().find_map(|s| s.message.as_deref().filter(|m| m.starts_with("flag "))).expect("flag step");
        assert_eq!(msg, "flag (absent), points (absent)");
    }

    #[test]
    fn named_values_are_typed_exactly_when_they_cannot_be_absent() {
        use super::Kind;
        const KINDS: &str = r#"ruleset kinds "Kinds" version "1" effective 2020-01-01
record {
  subject_id: text role subject
  period:     text role period
  n:          decimal
  d:          decimal = 1
  o:          decimal?
  items:      list of { v: decimal, w: decimal? } = []
}
levels { good "Good" weak "Weak" }
let required = max(0, n - 1)
let defaulted = d
let optional = o
let through = optional
let fallback = o ?? required
let items.v2 = round(v, 0, half_up)
let items.w2 = w
let done = count(items where v2 > 0) > 0
score total = round(required + defaulted + fallback + sum(items: v2), 2, half_up)
classify by total { good when total >= 5 require done weak otherwise }
"#;
        let (rs, _) = compile("kinds.merit", KINDS).expect("compiles");
        let kind = |name: &str| {
            let id = rs.checked.lets.iter().position(|l| l.name == name).expect("a named value");
            rs.program.lets[id].kind()
        };
        let item_kind = |name: &str| {
            let id = rs.checked.item_lets.iter().position(|l| l.name == name).expect("an item value");
            rs.program.item_lets[id].kind()
        };
        assert_eq!(
            [kind("required"), kind("defaulted"), kind("fallback"), kind("done"), item_kind("v2")],
            [Kind::Num, Kind::Num, Kind::Num, Kind::Bool, Kind::Num]
        );
        assert_eq!([kind("optional"), kind("through"), item_kind("w2")], [Kind::Val, Kind::Val, Kind::Val]);
        // Each memo gives its values back as the same values.
        let rec = from_json(&rs.checked.schema, &serde_json::json!({"subject_id": "K", "period": "2025", "n": 3, "items": [{"v": 2.5}]}))
            .expect("fits");
        let o = evaluate_in(&mut Ctx::new(&rs, &rec), TraceLevel::None).expect("classifies");
        assert_eq!((o.level, o.total.map(|t| t.to_string())), (0, Some("8".to_string())), "2 + 1 + 2 + 3");
    }

    #[test]
    fn no_named_value_is_computed_twice_for_one_record() {
        use crate::eval::{Ctx, evaluate_in};
        use crate::testdata::{bundled, conformance_records};
        let Some(records) = conformance_records() else { return };
        let rules = [("reg366.merit", bundled("reg366.merit")), ("decree335.merit", bundled("decree335.merit"))];
        let mut in_place = std::collections::BTreeSet::new();
        let mut computed = 0;
        for (file, json) in &records {
            let Some((_, rs)) = rules.iter().find(|(f, _)| f == file) else { continue };
            let Ok(rec) = from_json(&rs.checked.schema, json) else { continue };
            // The full trace evaluates the most: messages, the next-level note.
            let mut ctx = Ctx::new(rs, &rec);
            let _ = evaluate_in(&mut ctx, TraceLevel::Full);
            for (&(item, id, index), &n) in &ctx.computed {
                let name = if item { &rs.checked.item_lets[id].name } else { &rs.checked.lets[id].name };
                assert_eq!(n, 1, "{file}: {name} (item {index}) computed {n} times for {json}");
                computed += 1;
            }
            in_place.extend(
                ctx.in_place.iter().map(|&(item, id)| {
                    (*file, if item { rs.checked.item_lets[id].name.clone() } else { rs.checked.lets[id].name.clone() })
                }),
            );
        }
        assert!(computed > 50_000, "the records were evaluated ({computed} values)");
        // Regulation 366's factors have one reader each, an aggregate at root scope: in place.
        for name in ["quality_factor", "progress_factor", "quantity", "quality", "progress"] {
            assert!(in_place.contains(&("reg366.merit", name.to_string())), "{name} is computed in place");
        }
        // `done` has several readers: in its memo.
        assert!(!in_place.contains(&("reg366.merit", "done".to_string())));
    }

    #[test]
    fn values_with_one_reader_are_computed_in_place_and_still_named_when_they_fail() {
        // Each value below has one reader, so each is lowered into it rather than kept in a memo.
        const ONCE: &str = r#"ruleset once "Once" version "1" effective 2020-01-01
record {
  subject_id: text role subject
  period:     text role period
  p:          decimal
  items:      list of { v: decimal } = []
}
levels { good "Good" weak "Weak" }
let inverse = 1 / p
let doubled = inverse * 2
let items.share = v / p
score total = round(doubled + sum(items: share), 2, half_up)
classify by total { good when total >= 5 weak otherwise }
"#;
        let (rs, _) = compile("once.merit", ONCE).expect("compiles");
        let run = |json: serde_json::Value| {
            let rec = from_json(&rs.checked.schema, &json).expect("fits");
            evaluate_in(&mut Ctx::new(&rs, &rec), TraceLevel::None).map(|o| (o.level, o.total.map(|t| t.to_string())))
        };
        let items = serde_json::json!([{"v": 1}, {"v": 3}]);
        assert_eq!(
            run(serde_json::json!({"subject_id": "A", "period": "2025", "p": "0.5", "items": items})).expect("classifies"),
            (0, Some("12".to_string())),
            "4 + 2 + 6"
        );
        match run(serde_json::json!({"subject_id": "B", "period": "2025", "p": 0, "items": items})) {
            Err(EvalError::Rule(e)) => assert_eq!((e.kind, e.rule.as_deref()), (ErrorKind::DivisionByZero, Some("inverse"))),
            other => panic!("expected a rule error, got {other:?}"),
        }
        // With the top-level values fine, the item value's failure names it.
        let rules = ONCE.replace("let inverse = 1 / p\nlet doubled = inverse * 2\n", "let doubled = 2\n");
        assert_ne!(rules, ONCE);
        let (rs2, _) = compile("once.merit", &rules).expect("compiles");
        let rec = from_json(&rs2.checked.schema, &serde_json::json!({"subject_id": "C", "period": "2025", "p": 0, "items": items}))
            .expect("fits");
        match evaluate_in(&mut Ctx::new(&rs2, &rec), TraceLevel::None) {
            Err(EvalError::Rule(e)) => assert_eq!((e.kind, e.rule.as_deref()), (ErrorKind::DivisionByZero, Some("share"))),
            other => panic!("expected a rule error, got {other:?}"),
        }
    }

    #[test]
    fn a_failure_names_the_innermost_value() {
        let items = serde_json::json!([{"v": 0}]);
        match run(serde_json::json!({"subject_id": "C", "period": "2025", "p": 1, "items": items})) {
            Err(EvalError::Rule(e)) => {
                assert_eq!(e.kind, ErrorKind::DivisionByZero);
                assert_eq!(e.rule.as_deref(), Some("inverse"));
            }
            other => panic!("expected a rule error, got {other:?}"),
        }
    }
}
