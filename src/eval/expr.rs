//! Evaluation of resolved expressions over a record. Values borrow from the record and the
//! rule set: nothing is cloned or looked up by name per record.

use super::program::{Code, Kind};
use super::record::{Record, Value};
use super::{ErrorKind, EvalError, RuleError};
use crate::compile::RuleSet;
use crate::num::{Num, NumError};
use crate::source::Span;
use std::cmp::Ordering;

/// A value during evaluation.
#[derive(Clone, Copy, Debug)]
pub enum V<'a> {
    /// absent
    Absent,
    /// bool
    Bool(bool),
    /// number
    Num(Num),
    /// text
    Text(&'a str),
    /// date
    Date(i32),
    /// enum value (type, index)
    Enum(u16, u16),
    /// level (index; lower is better)
    Level(u8),
    /// list items
    List(&'a [Record]),
    /// a record
    Rec(&'a Record),
}

impl<'a> V<'a> {
    /// A record value, borrowed.
    #[inline]
    pub(crate) fn of(v: &'a Value) -> V<'a> {
        match v {
            Value::Absent => V::Absent,
            Value::Bool(b) => V::Bool(*b),
            Value::Num(n) => V::Num(*n),
            Value::Text(t) => V::Text(t),
            Value::Date(d) => V::Date(*d),
            Value::Enum(t, e) => V::Enum(*t, *e),
            Value::Level(l) => V::Level(*l),
            Value::List(items) => V::List(items),
            Value::Record(r) => V::Rec(r),
        }
    }
}

/// Deepest scope: the root record plus nested aggregates (the checker enforces it).
pub const MAX_FRAMES: usize = 9;

/// The records in scope: the root, then one item per enclosing aggregate.
#[derive(Clone, Copy)]
pub struct Stack<'a> {
    /// Each frame's record and its index in the list it came from (0 for the root).
    frames: [Option<(&'a Record, u32)>; MAX_FRAMES],
    len: usize,
}

impl<'a> Stack<'a> {
    /// A scope holding only the root record.
    pub fn root(r: &'a Record) -> Stack<'a> {
        let mut frames = [None; MAX_FRAMES];
        frames[0] = Some((r, 0));
        Stack { frames, len: 1 }
    }

    /// The root record and one item of a root list, at `index`.
    pub fn with_item(root: &'a Record, item: &'a Record, index: usize) -> Stack<'a> {
        let mut s = Stack::root(root);
        s.frames[1] = Some((item, u32::try_from(index).unwrap_or(u32::MAX)));
        s.len = 2;
        s
    }

    #[inline]
    fn frame(&self, i: u8) -> Option<(&'a Record, u32)> {
        self.frames.get(i as usize).copied().flatten()
    }

    /// The record in frame `frame` and its index in its list.
    #[inline]
    pub(crate) fn item_in(&self, frame: u8) -> Option<(&'a Record, usize)> {
        self.frame(frame).map(|(r, i)| (r, i as usize))
    }

    /// How many frames are in scope.
    #[inline(always)]
    pub(crate) fn depth(&self) -> usize {
        self.len
    }

    /// The value of field `slot` of the record in frame `frame`.
    #[inline(always)]
    pub(crate) fn value(&self, frame: u8, slot: u16) -> Result<&'a Value, ErrorKind> {
        match self.frame(frame) {
            Some((r, _)) => Ok(r.get(slot)),
            None => Err(ErrorKind::Internal),
        }
    }

    /// A copy with room for one more frame, and that frame's index (too deep is a bug).
    #[inline]
    pub(crate) fn push(&self) -> Result<(Stack<'a>, usize), ErrorKind> {
        if self.len >= MAX_FRAMES {
            return Err(ErrorKind::Internal);
        }
        let mut inner = *self;
        inner.len = self.len + 1;
        Ok((inner, self.len))
    }

    /// Puts `item`, at `index` in its list, in frame `depth` (from [`Stack::push`]).
    #[inline(always)]
    pub(crate) fn set(&mut self, depth: usize, item: &'a Record, index: usize) {
        if let Some(slot) = self.frames.get_mut(depth) {
            *slot = Some((item, u32::try_from(index).unwrap_or(u32::MAX)));
        }
    }
}

/// Per-record evaluation state: memoised named values, each in the memo of its kind
/// ([`Kind`]), so a condition or a number is kept and read back as itself, not as a [`V`].
pub struct Ctx<'a> {
    /// The rule set.
    pub rs: &'a RuleSet,
    /// The record.
    pub root: &'a Record,
    /// Named values of kind `Val`: first the top-level ones by their slot
    /// ([`Program::let_slots`]), then the item values, at `item_base[id] + index`.
    memo: Vec<Option<V<'a>>>,
    /// Named conditions, laid out as `memo` (one allocation a kind).
    bools: Vec<Option<bool>>,
    /// Named numbers, laid out as `memo`.
    nums: Vec<Option<Num>>,
    /// Where each item value's items start in the memo of its kind.
    item_base: Vec<usize>,
    /// The innermost named value that failed, for the error message.
    failed_in: Option<(&'a str, Span)>,
    /// How often each named value was computed: (item value?, id, item index) → count; and
    /// which were computed in place by their reader.
    #[cfg(test)]
    pub(crate) computed: std::collections::BTreeMap<(bool, usize, usize), u32>,
    #[cfg(test)]
    pub(crate) in_place: std::collections::BTreeSet<(bool, usize)>,
}

/// Picks one of a context's memos.
type MemoOf<'a, T> = for<'c> fn(&'c mut Ctx<'a>) -> &'c mut Vec<Option<T>>;

pub(crate) fn num_err(e: NumError) -> ErrorKind {
    match e {
        NumError::Overflow => ErrorKind::Overflow,
        NumError::DivisionByZero => ErrorKind::DivisionByZero,
    }
}

/// Compares two values of one type; levels compare by rank (the first declared is greatest).
pub fn compare(a: V<'_>, b: V<'_>) -> Result<Ordering, ErrorKind> {
    Ok(match (a, b) {
        (V::Num(x), V::Num(y)) => x.cmp(&y).map_err(num_err)?,
        (V::Date(x), V::Date(y)) => x.cmp(&y),
        (V::Level(x), V::Level(y)) => y.cmp(&x),
        (V::Text(x), V::Text(y)) => x.cmp(y),
        (V::Bool(x), V::Bool(y)) => x.cmp(&y),
        (V::Enum(t, x), V::Enum(u, y)) => (t, x).cmp(&(u, y)),
        (V::Absent, _) | (_, V::Absent) => return Err(ErrorKind::Absent),
        _ => return Err(ErrorKind::Type),
    })
}

impl<'a> Ctx<'a> {
    /// A fresh context for one record.
    pub fn new(rs: &'a RuleSet, root: &'a Record) -> Ctx<'a> {
        let p = &*rs.program;
        let mut item_base = Vec::with_capacity(p.item_lets.len());
        // Item values follow the top-level values in the memo of their kind.
        let mut totals = p.let_counts;
        for (il, code) in rs.checked.item_lets.iter().zip(&p.item_lets) {
            let total = totals.get_mut(code.kind() as usize);
            let len = match root.get(il.list_slot) {
                Value::List(items) => items.len(),
                _ => 0,
            };
            item_base.push(total.as_deref().copied().unwrap_or(0));
            if let Some(t) = total {
                *t += len;
            }
        }
        let [bools, nums, vals] = totals;
        Ctx {
            rs,
            root,
            memo: vec![None; vals],
            bools: vec![None; bools],
            nums: vec![None; nums],
            item_base,
            failed_in: None,
            #[cfg(test)]
            computed: std::collections::BTreeMap::new(),
            #[cfg(test)]
            in_place: std::collections::BTreeSet::new(),
        }
    }

    /// Turns an error kind into an error naming the innermost value that failed, or `rule`.
    pub fn error(&self, kind: ErrorKind, rule: Option<(&str, Span)>) -> EvalError {
        let at = self.failed_in.or(rule);
        EvalError::Rule(RuleError { kind, rule: at.map(|(n, _)| n.to_string()), span: at.map(|(_, s)| s), detail: "" })
    }

    /// The value that failed so far (see [`Ctx::restore_failed_in`]).
    pub fn failed_in_snapshot(&self) -> Option<(&'a str, Span)> {
        self.failed_in
    }

    /// Forgets failures since a snapshot (messages are rendered best effort).
    pub fn restore_failed_in(&mut self, saved: Option<(&'a str, Span)>) {
        self.failed_in = saved;
    }

    fn note_failure(&mut self, name: &'a str, span: Span) {
        if self.failed_in.is_none() {
            self.failed_in = Some((name, span));
        }
    }

    /// Counts a named value computed (tests check none is computed twice for one record).
    #[cfg(test)]
    pub(crate) fn count_computed(&mut self, item: bool, id: usize, index: usize) {
        *self.computed.entry((item, id, index)).or_default() += 1;
    }

    /// Names top-level value `id` as the one that failed (as its memoised evaluation would).
    #[cold]
    pub(crate) fn note_let_failure(&mut self, id: usize) {
        let rs = self.rs;
        if let Some(d) = rs.checked.lets.get(id) {
            self.note_failure(&d.name, d.span);
        }
    }

    /// Names item value `id` as the one that failed.
    #[cold]
    pub(crate) fn note_item_failure(&mut self, id: usize) {
        let rs = self.rs;
        if let Some(d) = rs.checked.item_lets.get(id) {
            self.note_failure(&d.name, d.span);
        }
    }

    /// The memo index of item `frame`'s value `id` (in the memo of its kind).
    #[inline(always)]
    fn item_key(&self, id: usize, frame: u8, stack: &Stack<'a>) -> Result<usize, ErrorKind> {
        let Some((_, index)) = stack.frame(frame) else {
            return Err(ErrorKind::Internal);
        };
        self.item_base.get(id).map(|b| b + index as usize).ok_or(ErrorKind::Internal)
    }

    /// Evaluates item value `id` for the item in frame `frame`; a failure names the value.
    #[inline(never)]
    fn eval_item<T>(
        &mut self,
        id: usize,
        frame: u8,
        stack: &Stack<'a>,
        eval: impl FnOnce(&Code, &mut Ctx<'a>, &Stack<'a>) -> Result<T, ErrorKind>,
    ) -> Result<T, ErrorKind> {
        let Some((item, index)) = stack.frame(frame) else {
            return Err(ErrorKind::Internal);
        };
        let rs = self.rs;
        let (Some(def), Some(code)) = (rs.checked.item_lets.get(id), rs.program.item_lets.get(id)) else {
            return Err(ErrorKind::Internal);
        };
        // An item value sees the root and its item; the caller's scope is that already when the
        // item is its only frame.
        let v = if frame == 1 && stack.len == 2 {
            eval(code, self, stack)
        } else {
            eval(code, self, &Stack::with_item(self.root, item, index as usize))
        };
        if v.is_err() {
            self.note_failure(&def.name, def.span);
        }
        #[cfg(test)]
        if v.is_ok() {
            self.count_computed(true, id, index as usize);
        }
        v
    }

    /// Evaluates top-level value `id`; a failure names the value.
    #[inline(never)]
    fn eval_let<T>(
        &mut self,
        id: usize,
        eval: impl FnOnce(&Code, &mut Ctx<'a>, &Stack<'a>) -> Result<T, ErrorKind>,
    ) -> Result<T, ErrorKind> {
        let rs = self.rs;
        let (Some(def), Some(code)) = (rs.checked.lets.get(id), rs.program.lets.get(id)) else {
            return Err(ErrorKind::Internal);
        };
        let v = eval(code, self, &Stack::root(self.root));
        if v.is_err() {
            self.note_failure(&def.name, def.span);
        }
        #[cfg(test)]
        if v.is_ok() {
            self.count_computed(false, id, 0);
        }
        v
    }

    /// The value at `slot` of memo `memo`, computed by `compute` the first time.
    #[inline(always)]
    fn memoised<T: Copy>(
        &mut self,
        memo: MemoOf<'a, T>,
        slot: usize,
        compute: impl FnOnce(&mut Ctx<'a>) -> Result<T, ErrorKind>,
    ) -> Result<T, ErrorKind> {
        if let Some(Some(v)) = memo(self).get(slot) {
            return Ok(*v);
        }
        let v = compute(self)?;
        if let Some(m) = memo(self).get_mut(slot) {
            *m = Some(v);
        }
        Ok(v)
    }

    /// The value of item-level value `id` for the item in frame `frame`, whatever its kind.
    pub(crate) fn item_let_value(&mut self, id: usize, frame: u8, stack: &Stack<'a>) -> Result<V<'a>, ErrorKind> {
        match self.rs.program.item_lets.get(id).map(Code::kind) {
            Some(Kind::Bool) => self.bool_item(id, frame, stack).map(V::Bool),
            Some(Kind::Num) => self.num_item(id, frame, stack).map(V::Num),
            _ => {
                let key = self.item_key(id, frame, stack)?;
                self.memoised(|c| &mut c.memo, key, |c| c.eval_item(id, frame, stack, Code::eval))
            }
        }
    }

    /// Item-level condition `id` (lowered as [`Kind::Bool`]) for the item in frame `frame`.
    #[inline(always)]
    pub(crate) fn bool_item(&mut self, id: usize, frame: u8, stack: &Stack<'a>) -> Result<bool, ErrorKind> {
        let key = self.item_key(id, frame, stack)?;
        self.memoised(|c| &mut c.bools, key, |c| c.eval_item(id, frame, stack, Code::truth))
    }

    /// Item-level number `id` (lowered as [`Kind::Num`]) for the item in frame `frame`.
    #[inline(always)]
    pub(crate) fn num_item(&mut self, id: usize, frame: u8, stack: &Stack<'a>) -> Result<Num, ErrorKind> {
        let key = self.item_key(id, frame, stack)?;
        self.memoised(|c| &mut c.nums, key, |c| c.eval_item(id, frame, stack, Code::number))
    }

    /// The value of a top-level named value (computed once per record), whatever its kind.
    pub fn let_value(&mut self, id: usize) -> Result<V<'a>, ErrorKind> {
        let p = &*self.rs.program;
        match p.lets.get(id).map(Code::kind) {
            Some(Kind::Bool) => self.bool_let(id).map(V::Bool),
            Some(Kind::Num) => self.num_let(id).map(V::Num),
            _ => {
                let slot = p.let_slots.get(id).copied().ok_or(ErrorKind::Internal)?;
                self.memoised(|c| &mut c.memo, slot, |c| c.eval_let(id, Code::eval))
            }
        }
    }

    /// Top-level condition `id` (lowered as [`Kind::Bool`]).
    #[inline(always)]
    pub(crate) fn bool_let(&mut self, id: usize) -> Result<bool, ErrorKind> {
        let slot = self.rs.program.let_slots.get(id).copied().ok_or(ErrorKind::Internal)?;
        self.memoised(|c| &mut c.bools, slot, |c| c.eval_let(id, Code::truth))
    }

    /// Top-level number `id` (lowered as [`Kind::Num`]).
    #[inline(always)]
    pub(crate) fn num_let(&mut self, id: usize) -> Result<Num, ErrorKind> {
        let slot = self.rs.program.let_slots.get(id).copied().ok_or(ErrorKind::Internal)?;
        self.memoised(|c| &mut c.nums, slot, |c| c.eval_let(id, Code::number))
    }
}
