//! Running a [`Flat`] program on one record: the dispatch loop and each instruction.

use super::col::Col;
use super::{Flat, Ins, R, Regs};
use crate::check::ir::Op;
use crate::eval::fast::columns::{self, Bits};
use crate::eval::fast::frac::Frac;
use crate::eval::fast::lower::X;
use crate::eval::fast::{F, Machine};
use crate::eval::program::{holds, orderings};
use crate::eval::record::{Record, Value};
use std::cmp::Ordering;

/// The arithmetic operators as [`Frac`] operations.
#[inline(always)]
fn arith(op: Op, x: Frac, y: Frac) -> Option<Frac> {
    match op {
        Op::Add => x.add(y),
        Op::Sub => x.sub(y),
        Op::Mul => x.mul(y),
        _ => x.div(y),
    }
}

/// Column register `d` to write and the registers below it to read: the compiler allocates a
/// column's register after those of its operands, so an instruction reads only lower ones.
#[inline(always)]
fn split(cols: &mut [Col], d: R) -> Option<(&[Col], &mut Col)> {
    let (below, rest) = cols.split_at_mut_checked(d as usize)?;
    Some((below, rest.first_mut()?))
}

impl<'a> Machine<'a> {
    /// Runs the program; `false` when it did not run to the end (it gave up, or a list is too
    /// long for columns, in which case the trees evaluate the record alone).
    #[inline(never)]
    pub(in crate::eval::fast) fn run_flat(&mut self, flat: &'a Flat, regs: &mut Regs) -> bool {
        if regs.owner != flat.id {
            for &(r, v) in &flat.consts {
                regs.set_num(r, v);
            }
            for &(r, v) in &flat.col_consts {
                if let Some(x) = regs.col_mut(r) {
                    *x = Col::splat(v);
                }
            }
            regs.owner = flat.id;
        }
        for &(slot, r) in &flat.lists {
            // An absent list (an optional one) is the trees' to handle, as is a long one.
            let Value::List(items) = self.root.get(slot) else { return false };
            if items.len() > columns::MAX {
                return false;
            }
            regs.set_bit(r, columns::all(items.len()));
        }
        let mut pc = 0usize;
        while let Some(ins) = flat.code.get(pc) {
            pc += 1;
            if let Some(to) = self.step(flat, regs, ins) {
                // Jumps go forward only, so a run always ends.
                if (to as usize) < pc {
                    self.give_up(());
                    return false;
                }
                pc = to as usize;
            }
        }
        // An instruction that gives up ends the run (`stop`); an escape that gives up does not,
        // and the run goes on with dummy values, which only costs time.
        !self.gave_up
    }

    /// Gives up, and ends the run (a jump past the end).
    #[cold]
    fn stop(&mut self) -> Option<R> {
        self.gave_up = true;
        Some(R::MAX)
    }

    /// A field's value compared with constant `k` (`None`: absent, or another type).
    #[inline]
    fn compare_const(&self, v: &'a Value, flat: &'a Flat, k: R) -> Option<Ordering> {
        let k = match flat.values.get(k as usize)? {
            X::Text(t) => F::Text(t),
            X::Date(d) => F::Date(*d),
            X::Enum(t, v) => F::Enum(*t, *v),
            X::Level(l) => F::Level(*l),
            _ => return None,
        };
        crate::eval::fast::compare(F::of(v)?, k)
    }

    /// The items of `mask` (in root list `l`) for which `test` holds; `None` where `test`
    /// cannot tell.
    #[inline(always)]
    fn item_bits(&mut self, l: u16, mask: Bits, mut test: impl FnMut(&mut Self, &'a Record) -> Option<bool>) -> Option<Bits> {
        if mask == 0 {
            return Some(0);
        }
        let items = self.list_items(l);
        let mut out = 0;
        for i in columns::each(mask) {
            if test(self, items.get(i)?)? {
                out |= 1 << i;
            }
        }
        Some(out)
    }

    fn list_items(&mut self, l: u16) -> &'a [Record] {
        match self.root.get(l) {
            Value::List(items) => items,
            _ => self.give_up(&[]),
        }
    }

    /// Runs a tree over a column's items, with frame 1 as the item (as `compute_column` does).
    fn in_column<T>(&mut self, run: impl FnOnce(&mut Self) -> T) -> T {
        let (frames, index, depth) = (self.frames, self.index, self.depth);
        self.depth = 2;
        let v = run(self);
        (self.frames, self.index, self.depth) = (frames, index, depth);
        v
    }

    /// One instruction; `Some(pc)` for a jump taken.
    #[inline(always)]
    fn step(&mut self, flat: &'a Flat, r: &mut Regs, ins: &Ins) -> Option<R> {
        #[cfg(test)]
        super::tests::ran(ins);
        match *ins {
            Ins::NField { d, slot } => {
                let v = self.num_field(0, slot);
                r.set_num(d, v);
            }
            Ins::NFieldOr { d, slot, to } => match self.root.get(slot) {
                Value::Absent => {}
                Value::Num(v) => {
                    let v = Frac::of(v);
                    let v = self.num(v);
                    r.set_num(d, v);
                    return Some(to);
                }
                _ => self.give_up(()),
            },
            Ins::NLet { d, id } => {
                let v = self.n_let(id as usize);
                r.set_num(d, v);
            }
            Ins::NTree { d, t } => {
                let v = match flat.trees_n.get(t as usize) {
                    Some(e) => self.n(e),
                    None => self.give_up(Frac::ZERO),
                };
                r.set_num(d, v);
            }
            Ins::NMove { d, a } => r.set_num(d, r.num(a)),
            Ins::NSelect { d, c, a, b: y } => r.set_num(d, if r.bit(c) != 0 { r.num(a) } else { r.num(y) }),
            Ins::NArith { op, d, a, b } => {
                let v = arith(op, r.num(a), r.num(b));
                let v = self.num(v);
                r.set_num(d, v);
            }
            Ins::NDivOr { d, a, b, k } => {
                let y = r.num(b);
                let v = if y.is_zero() {
                    r.num(k)
                } else {
                    let v = r.num(a).div(y);
                    self.num(v)
                };
                r.set_num(d, v);
            }
            Ins::NNeg { d, a } => {
                let v = r.num(a).neg();
                let v = self.num(v);
                r.set_num(d, v);
            }
            Ins::NRound { d, a, places, mode } => {
                let v = r.num(a).round(places, mode);
                let v = self.num(v);
                r.set_num(d, v);
            }
            Ins::NExtreme { min, d, a, b } => {
                let (x, y) = (r.num(a), r.num(b));
                let want = if min { Ordering::Less } else { Ordering::Greater };
                r.set_num(d, if y.cmp(x) == want { y } else { x });
            }
            Ins::NLen { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::List(items) => Frac::int(i64::try_from(items.len()).unwrap_or(i64::MAX)),
                    _ => self.give_up(Frac::ZERO),
                };
                r.set_num(d, v);
            }
            Ins::NPopcnt { d, a } => r.set_num(d, Frac::int(i64::from(r.bit(a).count_ones()))),
            Ins::NDot { d, a, b, m } => {
                let v = Col::dot(r.bit(m), r.col(a), r.col(b));
                let v = self.num(v);
                r.set_num(d, v);
            }
            Ins::NSum { d, c, m } => {
                let v = r.col(c).sum(r.bit(m));
                let v = self.num(v);
                r.set_num(d, v);
            }
            Ins::NPeriodYear { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::Text(t) => match crate::date::parse_period(t) {
                        Some((_, end)) => Frac::int(crate::date::year_of(end)),
                        None => self.give_up(Frac::ZERO),
                    },
                    _ => self.give_up(Frac::ZERO),
                };
                r.set_num(d, v);
            }
            Ins::NAvgOr { d, c, m, to } => {
                let keep = r.bit(m);
                if keep == 0 {
                    return None;
                }
                let v = r.col(c).mean(keep);
                let v = self.num(v);
                r.set_num(d, v);
                return Some(to);
            }
            Ins::BCmpConst { op, d, slot, k } => {
                let v = self.compare_const(self.root.get(slot), flat, k);
                match v {
                    Some(o) => r.set_bit(d, Bits::from(holds(op, o))),
                    None => return self.stop(),
                }
            }
            Ins::BInConsts { d, slot, k, n } => {
                let field = self.root.get(slot);
                let mut found = false;
                for j in k..k.saturating_add(n) {
                    match self.compare_const(field, flat, j) {
                        Some(Ordering::Equal) => {
                            found = true;
                            break;
                        }
                        Some(_) => {}
                        None => return self.stop(),
                    }
                }
                r.set_bit(d, Bits::from(found));
            }
            Ins::BLit { d, v } => r.set_bit(d, Bits::from(v)),
            Ins::BField { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::Bool(v) => *v,
                    _ => self.give_up(false),
                };
                r.set_bit(d, Bits::from(v));
            }
            Ins::BPresent { d, slot, yes } => r.set_bit(d, Bits::from(matches!(self.root.get(slot), Value::Absent) != yes)),
            Ins::BLet { d, id } => {
                let v = self.b_let(id as usize);
                r.set_bit(d, Bits::from(v));
            }
            Ins::BTree { d, t } => {
                let v = match flat.trees_b.get(t as usize) {
                    Some(e) => self.b(e),
                    None => self.give_up(false),
                };
                r.set_bit(d, Bits::from(v));
            }
            Ins::BMove { d, a } => r.set_bit(d, r.bit(a)),
            Ins::BNot { d, a } => r.set_bit(d, Bits::from(r.bit(a) == 0)),
            Ins::BCmp { op, d, a, b: y } => r.set_bit(d, Bits::from(holds(op, r.num(a).cmp(r.num(y))))),
            Ins::BEq { d, a, b: y } => r.set_bit(d, Bits::from(r.bit(a) == r.bit(y))),
            Ins::BAny { d, a } => r.set_bit(d, Bits::from(r.bit(a) != 0)),
            Ins::Jump { to } => return Some(to),
            Ins::JumpSet { d, a, on, to } => {
                let v = r.bit(a);
                r.set_bit(d, v);
                if (v != 0) == on {
                    return Some(to);
                }
            }
            Ins::JumpIf { b: c, to } => {
                if r.bit(c) != 0 {
                    return Some(to);
                }
            }
            Ins::JumpIfNot { b: c, to } => {
                if r.bit(c) == 0 {
                    return Some(to);
                }
            }
            Ins::BitsZero { d } => r.set_bit(d, 0),
            Ins::BitAnd { d, a, b: y } => r.set_bit(d, r.bit(a) & r.bit(y)),
            Ins::BitOr { d, a, b: y } => r.set_bit(d, r.bit(a) | r.bit(y)),
            Ins::BitAndNot { d, a, b: y } => r.set_bit(d, r.bit(a) & !r.bit(y)),
            Ins::CFieldN { d, slot, m, l } => {
                let keep = r.bit(m);
                if keep == 0 {
                    return r.no_lanes(d);
                }
                let items = self.list_items(l);
                let Some(out) = r.col_mut(d) else { return self.stop() };
                let loaded = out.gather(keep, |i| match items.get(i).map(|it| it.get(slot)) {
                    Some(Value::Num(v)) => Frac::of(v),
                    _ => None,
                });
                if !loaded {
                    return self.stop();
                }
            }
            Ins::CFieldB { d, slot, m, l } => {
                let bits = self.item_bits(l, r.bit(m), |_, it| match it.get(slot) {
                    Value::Bool(v) => Some(*v),
                    _ => None,
                });
                match bits {
                    Some(v) => r.set_bit(d, v),
                    None => return self.stop(),
                }
            }
            Ins::CPresent { d, slot, m, l } => {
                let bits = self.item_bits(l, r.bit(m), |_, it| Some(!matches!(it.get(slot), Value::Absent)));
                match bits {
                    Some(v) => r.set_bit(d, v),
                    None => return self.stop(),
                }
            }
            Ins::CCmpConst { op, d, slot, k, m, l } => {
                let bits = self.item_bits(l, r.bit(m), |me, it| Some(holds(op, me.compare_const(it.get(slot), flat, k)?)));
                match bits {
                    Some(v) => r.set_bit(d, v),
                    None => return self.stop(),
                }
            }
            Ins::CCmpFields { op, d, s, t, m, l } => {
                let bits = self.item_bits(l, r.bit(m), |_, it| {
                    let o = match (it.get(s), it.get(t)) {
                        // Dates (a deadline) directly; other types through `compare`.
                        (Value::Date(x), Value::Date(y)) => x.cmp(y),
                        (x, y) => crate::eval::fast::compare(F::of(x)?, F::of(y)?)?,
                    };
                    Some(holds(op, o))
                });
                match bits {
                    Some(v) => r.set_bit(d, v),
                    None => return self.stop(),
                }
            }
            Ins::CBcastN { d, a } => {
                // Every lane: those outside the mask are junk anyway.
                let v = r.num(a);
                let Some(out) = r.col_mut(d) else { return self.stop() };
                *out = Col::splat(v);
            }
            Ins::CYear { d, slot, m, l } => {
                let keep = r.bit(m);
                if keep == 0 {
                    return r.no_lanes(d);
                }
                let items = self.list_items(l);
                let Some(out) = r.col_mut(d) else { return self.stop() };
                let loaded = out.gather_ints(keep, |i| match items.get(i).map(|it| it.get(slot)) {
                    Some(Value::Date(v)) => Some(crate::date::year_of(*v)),
                    _ => None,
                });
                if !loaded {
                    return self.stop();
                }
            }
            Ins::CBcastB { d, a, m } => r.set_bit(d, if r.bit(a) != 0 { r.bit(m) } else { 0 }),
            Ins::CArith { op, d, a, b: y, m } => {
                let keep = r.bit(m);
                if keep == 0 {
                    return r.no_lanes(d);
                }
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                let ok = match op {
                    Op::Add => out.add(keep, x, y),
                    Op::Sub => out.sub(keep, x, y),
                    Op::Mul => out.mul(keep, x, y),
                    _ => out.div(keep, x, y),
                };
                if !ok {
                    return self.stop();
                }
            }
            Ins::CCmp { op, d, a, b: y, m } => {
                let keep = r.bit(m);
                let out = Col::compare(keep, r.col(a), r.col(y), orderings(op));
                r.set_bit(d, out);
            }
            Ins::CExtreme { min, d, a, b: y, m } => {
                let keep = r.bit(m);
                if keep == 0 {
                    return r.no_lanes(d);
                }
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                if !out.extreme(keep, min, x, y) {
                    return self.stop();
                }
            }
            Ins::CSelect { d, c, a, b: y, m } => {
                let (pick, keep) = (r.bit(c), r.bit(m));
                if keep == 0 {
                    return r.no_lanes(d);
                }
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                if !out.select(keep, pick, x, y) {
                    return self.stop();
                }
            }
            Ins::CTreeN { d, t, m, l } => {
                let items = self.list_items(l);
                let mask = r.bit(m);
                let mut out = [Frac::ZERO; columns::MAX];
                match flat.trees_n.get(t as usize) {
                    Some(e) => self.in_column(|me| me.vn(e, items, mask, &mut out)),
                    None => self.give_up(()),
                }
                let Some(dst) = r.col_mut(d) else { return self.stop() };
                if !dst.gather(mask, |i| out.get(i).copied()) {
                    return self.stop();
                }
            }
            Ins::CTreeB { d, t, m, l } => {
                let items = self.list_items(l);
                let mask = r.bit(m);
                let v = match flat.trees_b.get(t as usize) {
                    Some(e) => self.in_column(|me| me.vb(e, items, mask)),
                    None => self.give_up(0),
                };
                r.set_bit(d, v & mask);
            }
            Ins::SetLetN { id, a } => {
                if let Some(c) = self.cells.get_mut(id as usize) {
                    *c = F::Num(r.num(a));
                }
            }
            Ins::SetLetB { id, a } => {
                if let Some(c) = self.cells.get_mut(id as usize) {
                    *c = F::Bool(r.bit(a) != 0);
                }
            }
        }
        None
    }
}
