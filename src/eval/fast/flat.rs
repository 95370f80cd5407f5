//! The flat program: the fast path's named values, item columns and decision conditions as one
//! straight-line list of instructions over typed registers, run once per record before the
//! decisions. A tree node costs a call and a dispatch on every visit; an instruction here costs a
//! dispatch in one loop, and a value read is a register read.
//!
//! Every named value and item value that is never absent and lowers to a condition or a number
//! is computed eagerly, in dependency order; a named value that a tree reads (or `decide`: the
//! criteria and the score) is also written into the machine's cells. Item values are not: a tree
//! that reads one computes its column again (correct, and rare). `and`, `or`, `if` and `??` jump
//! (forward only) over what they would not evaluate; in a column, a mask does the same per item,
//! as in `columns`. A shape the program has no instruction for is left to the tree that the rest
//! of the fast path uses (an escape): at root scope through [`Machine::b`] and [`Machine::n`], in
//! a column through [`Machine::vb`] and [`Machine::vn`]. Named values of other types (text,
//! dates, levels, optional values) stay with the trees, computed at their first read.
//!
//! Computing eagerly can compute a value the closures would not have needed; if it fails, the
//! program gives up where the trees would not have, and the trees then evaluate the record alone
//! (and, if they give up too, the closures). So eagerness costs time on such records, never a
//! different outcome. A record with a list of more than [`columns::MAX`] items, or an absent
//! list, read as columns skips the program and is evaluated by the trees alone. The program
//! does not recurse at run time (escapes aside), so its stack use is the trees'.

use super::columns::{self, Bits, Nums};
use super::frac::Frac;
use super::lower::{Agg, B, N, X};
use super::{F, Machine};
use crate::check::Checked;
use crate::check::ir::{Ex, Op};
use crate::eval::program::holds;
use crate::eval::record::{Record, Value};
use crate::num::Rounding;
use std::cmp::Ordering;

/// A register index.
type R = u32;

/// One instruction. `d` is the register written; `m` a mask register (the items a column
/// instruction computes); `l` the root list slot whose items a column instruction reads.
#[derive(Clone, Copy, Debug)]
enum Ins {
    // Numbers at root scope.
    NField {
        d: R,
        slot: u16,
    },
    /// The field when it is present (then jumps to `to`), else falls through.
    NFieldOr {
        d: R,
        slot: u16,
        to: R,
    },
    NLet {
        d: R,
        id: R,
    },
    NTree {
        d: R,
        t: R,
    },
    NMove {
        d: R,
        a: R,
    },
    /// `a` when `c` holds, else `b`.
    NSelect {
        d: R,
        c: R,
        a: R,
        b: R,
    },
    NArith {
        op: Op,
        d: R,
        a: R,
        b: R,
    },
    NNeg {
        d: R,
        a: R,
    },
    NRound {
        d: R,
        a: R,
        places: u32,
        mode: Rounding,
    },
    NExtreme {
        min: bool,
        d: R,
        a: R,
        b: R,
    },
    NLen {
        d: R,
        slot: u16,
    },
    NPopcnt {
        d: R,
        a: R,
    },
    NSum {
        d: R,
        c: R,
        m: R,
    },
    /// The year of the end of the period in a text field.
    NPeriodYear {
        d: R,
        slot: u16,
    },
    /// The mean of column `c` over the items of `m` (then a jump to `to`); falls through when
    /// `m` is empty.
    NAvgOr {
        d: R,
        c: R,
        m: R,
        to: R,
    },
    // Conditions at root scope (a bits register holding 0 or 1).
    /// A field compared with constant `k`.
    BCmpConst {
        op: Op,
        d: R,
        slot: u16,
        k: R,
    },
    /// Whether a field equals one of constants `k..k + n`.
    BInConsts {
        d: R,
        slot: u16,
        k: R,
        n: R,
    },
    BLit {
        d: R,
        v: bool,
    },
    BField {
        d: R,
        slot: u16,
    },
    BPresent {
        d: R,
        slot: u16,
        yes: bool,
    },
    BLet {
        d: R,
        id: R,
    },
    BTree {
        d: R,
        t: R,
    },
    BMove {
        d: R,
        a: R,
    },
    BNot {
        d: R,
        a: R,
    },
    BCmp {
        op: Op,
        d: R,
        a: R,
        b: R,
    },
    /// 1 when the two bit sets are equal.
    BEq {
        d: R,
        a: R,
        b: R,
    },
    /// 1 when the bit set is not empty.
    BAny {
        d: R,
        a: R,
    },
    Jump {
        to: R,
    },
    /// `d = a`, then a jump when `a` is `on` (`and` jumps on false, `or` on true).
    JumpSet {
        d: R,
        a: R,
        on: bool,
        to: R,
    },
    JumpIf {
        b: R,
        to: R,
    },
    JumpIfNot {
        b: R,
        to: R,
    },
    // Item sets.
    BitsZero {
        d: R,
    },
    BitAnd {
        d: R,
        a: R,
        b: R,
    },
    BitOr {
        d: R,
        a: R,
        b: R,
    },
    BitAndNot {
        d: R,
        a: R,
        b: R,
    },
    // Columns.
    CFieldN {
        d: R,
        slot: u16,
        m: R,
        l: u16,
    },
    CFieldB {
        d: R,
        slot: u16,
        m: R,
        l: u16,
    },
    /// The items that have the field.
    CPresent {
        d: R,
        slot: u16,
        m: R,
        l: u16,
    },
    CBcastN {
        d: R,
        a: R,
        m: R,
    },
    /// The year of a date field.
    CYear {
        d: R,
        slot: u16,
        m: R,
        l: u16,
    },
    CBcastB {
        d: R,
        a: R,
        m: R,
    },
    CArith {
        op: Op,
        d: R,
        a: R,
        b: R,
        m: R,
    },
    CCmp {
        op: Op,
        d: R,
        a: R,
        b: R,
        m: R,
    },
    /// An item field compared with constant `k`.
    CCmpConst {
        op: Op,
        d: R,
        slot: u16,
        k: R,
        m: R,
        l: u16,
    },
    /// A comparison of two fields of the item (dates, texts, enum values, numbers).
    CCmpFields {
        op: Op,
        d: R,
        s: u16,
        t: u16,
        m: R,
        l: u16,
    },
    CExtreme {
        min: bool,
        d: R,
        a: R,
        b: R,
        m: R,
    },
    /// `a` for the items of `c`, `b` for the others of `m`.
    CSelect {
        d: R,
        c: R,
        a: R,
        b: R,
        m: R,
    },
    CTreeN {
        d: R,
        t: R,
        m: R,
        l: u16,
    },
    CTreeB {
        d: R,
        t: R,
        m: R,
        l: u16,
    },
    // Results for the trees.
    SetLetN {
        id: R,
        a: R,
    },
    SetLetB {
        id: R,
        a: R,
    },
}

/// A compiled flat program.
pub(super) struct Flat {
    code: Vec<Ins>,
    trees_b: Vec<B>,
    trees_n: Vec<N>,
    /// Constants compared with fields.
    values: Vec<X>,
    /// Each root list read as columns: its slot and the register of its all-items mask.
    lists: Vec<(u16, R)>,
    /// The registers of constants, and the column registers of constants.
    consts: Vec<(R, Frac)>,
    col_consts: Vec<(R, Frac)>,
    /// Tells apart programs (the registers of a thread keep one program's constants).
    id: u64,
    /// The lets the trees read from the cells.
    pub(super) read_by_trees: Vec<bool>,
    /// The bits register of each decision condition, in the plan's order.
    pub(super) eligibility: Vec<R>,
    pub(super) invalid: Vec<R>,
    pub(super) gates: Vec<Option<R>>,
    pub(super) vetoes: Vec<R>,
    pub(super) caps: Vec<R>,
    pub(super) flags: Vec<R>,
}

/// The most registers of each kind a program may use (a rule set that needs more has no flat
/// program). Powers of two: an index is masked into range, so a register read needs no check.
const NUMS: usize = 256;
const BITS: usize = 256;
const COLS: usize = 64;

/// The registers of one run. Kept per thread and reused, so a record allocates none.
pub(super) struct Regs {
    /// The program whose constants the registers hold (0: none).
    owner: u64,
    nums: Box<[Frac; NUMS]>,
    bits: Box<[Bits; BITS]>,
    cols: Box<[Nums; COLS]>,
}

/// The next program's id.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    static REGS: std::cell::Cell<Option<Box<Regs>>> = const { std::cell::Cell::new(None) };
}

impl Regs {
    /// This thread's registers (new ones if they are in use), to give back with [`Regs::give_back`].
    pub(super) fn take() -> Box<Regs> {
        // `try_with`: a thread being torn down gets registers of its own instead of a panic.
        REGS.try_with(std::cell::Cell::take).ok().flatten().unwrap_or_else(|| {
            Box::new(Regs {
                owner: 0,
                nums: Box::new([Frac::ZERO; NUMS]),
                bits: Box::new([0; BITS]),
                cols: Box::new([[Frac::ZERO; columns::MAX]; COLS]),
            })
        })
    }

    /// Whether condition register `r` holds.
    pub(super) fn get(&self, r: R) -> bool {
        self.bit(r) != 0
    }

    #[inline(always)]
    fn num(&self, r: R) -> Frac {
        self.nums.get(r as usize & (NUMS - 1)).copied().unwrap_or(Frac::ZERO)
    }

    #[inline(always)]
    fn bit(&self, r: R) -> Bits {
        self.bits.get(r as usize & (BITS - 1)).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn set_num(&mut self, r: R, v: Frac) {
        if let Some(x) = self.nums.get_mut(r as usize & (NUMS - 1)) {
            *x = v;
        }
    }

    #[inline(always)]
    fn set_bit(&mut self, r: R, v: Bits) {
        if let Some(x) = self.bits.get_mut(r as usize & (BITS - 1)) {
            *x = v;
        }
    }

    #[inline(always)]
    fn col(&self, r: R) -> &Nums {
        self.cols.get(r as usize & (COLS - 1)).unwrap_or(&[Frac::ZERO; columns::MAX])
    }

    #[inline(always)]
    fn col_mut(&mut self, r: R) -> Option<&mut Nums> {
        self.cols.get_mut(r as usize & (COLS - 1))
    }

    /// Fills this thread's registers with junk (constants included: they are set again), so
    /// that a test sees a read of a register or lane the run did not write.
    #[cfg(test)]
    pub(super) fn poison() {
        let mut r = Regs::take();
        r.owner = 0;
        let junk = Frac::int(7).div(Frac::int(3)).unwrap_or(Frac::ZERO);
        r.nums.fill(junk);
        r.bits.fill(0xA5A5_A5A5_A5A5_A5A5);
        r.cols.fill([junk; columns::MAX]);
        r.give_back();
    }

    /// Keeps the registers for this thread's next run.
    pub(super) fn give_back(self: Box<Self>) {
        // A thread being torn down drops them.
        let _kept = REGS.try_with(|r| r.set(Some(self)));
    }
}

/// A value's register: a number, or a condition (a bits register).
#[derive(Clone, Copy)]
enum Reg {
    Num(R),
    Bool(R),
}

/// What a load reads of an item field.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    Num,
    Bool,
    Present,
}

/// A named value or item value, as a node of the dependency order.
#[derive(Clone, Copy, PartialEq)]
enum Node {
    Let(usize),
    Item(usize),
}

/// Compiles a plan's values and conditions into a [`Flat`].
pub(super) struct Compiler<'p> {
    lets: &'p [X],
    items: &'p [(u16, X)],
    code: Vec<Ins>,
    trees_b: Vec<B>,
    trees_n: Vec<N>,
    values: Vec<X>,
    nums: R,
    bits: R,
    cols: R,
    lists: Vec<(u16, R)>,
    let_regs: Vec<Option<Reg>>,
    item_regs: Vec<Option<Reg>>,
    /// Number and column registers that hold constants, set once per thread and plan.
    consts: Vec<(R, Frac)>,
    col_consts: Vec<(R, Frac)>,
    /// Lets whose value a tree or the decisions read from the cells.
    publish: Vec<bool>,
    /// Whether an escape to the trees was emitted since this was last cleared.
    escaped: bool,
    /// How many jumps the code being emitted is conditional on.
    depth: u32,
    /// Item fields loaded for all the items of their list: (list, field, column, depth), kept
    /// while the code emitted runs after the load on every path.
    loads: Vec<(u16, u16, Load, R, u32)>,
    checked: &'p Checked,
    /// The lets the trees read from the cells, as far as this compilation shows.
    pub(super) read_by_trees: Vec<bool>,
}

/// Collects the named values and item values an expression reads.
fn reads(ex: &Ex, out: &mut Vec<Node>) {
    match ex {
        Ex::Let(id) => out.push(Node::Let(*id)),
        Ex::ItemLet { id, .. } => out.push(Node::Item(*id)),
        _ => ex.for_each_child(|c| reads(c, out)),
    }
}

impl<'p> Compiler<'p> {
    /// A compiler for a plan's named values (`lets`) and item values (`items`) that writes
    /// the lets of `publish` into the cells.
    pub(super) fn new(checked: &'p Checked, lets: &'p [X], items: &'p [(u16, X)], publish: Vec<bool>) -> Compiler<'p> {
        Compiler {
            checked,
            lets,
            items,
            code: Vec::new(),
            trees_b: Vec::new(),
            trees_n: Vec::new(),
            values: Vec::new(),
            nums: 0,
            bits: 0,
            cols: 0,
            lists: Vec::new(),
            let_regs: vec![None; lets.len()],
            item_regs: vec![None; items.len()],
            consts: Vec::new(),
            col_consts: Vec::new(),
            read_by_trees: vec![false; lets.len()],
            publish,
            escaped: false,
            depth: 0,
            loads: Vec::new(),
        }
    }

    /// Emits every value of the checked rules in dependency order; `None` if the order cannot
    /// be found (a cycle, which the checker rejects).
    pub(super) fn values(&mut self, c: &Checked) -> Option<()> {
        let nodes: Vec<Node> = (0..c.lets.len()).map(Node::Let).chain((0..c.item_lets.len()).map(Node::Item)).collect();
        // 0 unvisited, 1 in progress, 2 done.
        let mut state = vec![0u8; nodes.len()];
        let index = |n: Node| match n {
            Node::Let(i) => i,
            Node::Item(i) => c.lets.len() + i,
        };
        let mut order = Vec::with_capacity(nodes.len());
        for &n in &nodes {
            // An explicit stack: (node, its reads not yet visited).
            let mut stack: Vec<(Node, Vec<Node>)> = Vec::new();
            if state.get(index(n)) != Some(&0) {
                continue;
            }
            let deps = |n: Node| {
                let mut v = Vec::new();
                match n {
                    Node::Let(i) => reads(&c.lets.get(i)?.expr, &mut v),
                    Node::Item(i) => reads(&c.item_lets.get(i)?.expr, &mut v),
                }
                Some(v)
            };
            *state.get_mut(index(n))? = 1;
            stack.push((n, deps(n)?));
            while let Some((top, pending)) = stack.last_mut() {
                match pending.pop() {
                    Some(d) => match state.get(index(d)) {
                        Some(0) => {
                            *state.get_mut(index(d))? = 1;
                            let dd = deps(d)?;
                            stack.push((d, dd));
                        }
                        Some(1) => return None,
                        _ => {}
                    },
                    None => {
                        let top = *top;
                        *state.get_mut(index(top))? = 2;
                        order.push(top);
                        stack.pop();
                    }
                }
            }
        }
        for n in order {
            self.escaped = false;
            let flat = self.node(n)?;
            // The trees evaluate this value (in part, or whole), reading what it reads; an item
            // value's column may be computed by a tree whenever a tree reads it.
            if self.escaped || !flat || matches!(n, Node::Item(_)) {
                let ex = match n {
                    Node::Let(i) => &c.lets.get(i)?.expr,
                    Node::Item(i) => &c.item_lets.get(i)?.expr,
                };
                self.read_by(ex);
            }
        }
        Some(())
    }

    /// Marks the lets an expression evaluated by a tree reads.
    pub(super) fn read_by(&mut self, ex: &Ex) {
        let mut v = Vec::new();
        reads(ex, &mut v);
        for n in v {
            if let Node::Let(i) = n
                && let Some(p) = self.read_by_trees.get_mut(i)
            {
                *p = true;
            }
        }
    }

    /// Clears the escape mark (before a decision condition).
    pub(super) fn clear_escaped(&mut self) {
        self.escaped = false;
    }

    /// Whether an escape was emitted since the mark was cleared.
    pub(super) fn escaped(&self) -> bool {
        self.escaped
    }

    /// Emits a value's code; `Some(false)` when the trees compute it.
    fn node(&mut self, n: Node) -> Option<bool> {
        let lets = self.lets;
        let items = self.items;
        match n {
            Node::Let(id) => {
                let r = match lets.get(id)? {
                    X::Num(e) => {
                        let a = self.n(e);
                        if self.publish.get(id) == Some(&true) {
                            self.emit(Ins::SetLetN { id: u32::try_from(id).ok()?, a });
                        }
                        Reg::Num(a)
                    }
                    X::Bool(e) => {
                        let a = self.b(e);
                        if self.publish.get(id) == Some(&true) {
                            self.emit(Ins::SetLetB { id: u32::try_from(id).ok()?, a });
                        }
                        Reg::Bool(a)
                    }
                    _ => return Some(false),
                };
                *self.let_regs.get_mut(id)? = Some(r);
            }
            Node::Item(id) => {
                let (slot, x) = items.get(id)?;
                let m = self.all(*slot);
                let r = match x {
                    X::Num(e) => Reg::Num(self.cn(e, m, *slot)),
                    X::Bool(e) => Reg::Bool(self.cb(e, m, *slot)),
                    _ => return Some(false),
                };
                *self.item_regs.get_mut(id)? = Some(r);
            }
        }
        Some(true)
    }

    /// Whether a condition holds for any item of root list `slot`, as a bits register of 0 or 1.
    pub(super) fn any_item(&mut self, e: &B, slot: u16) -> R {
        let m = self.all(slot);
        let c = self.cb(e, m, slot);
        let d = self.bit();
        self.emit(Ins::BAny { d, a: c });
        d
    }

    /// The program, or `None` when it needs more registers than a run has.
    pub(super) fn finish(self, decisions: Decisions) -> Option<Flat> {
        if self.nums as usize > NUMS || self.bits as usize > BITS || self.cols as usize > COLS {
            return None;
        }
        Some(self.finish_unchecked(decisions))
    }

    fn finish_unchecked(self, decisions: Decisions) -> Flat {
        Flat {
            code: self.code,
            trees_b: self.trees_b,
            trees_n: self.trees_n,
            values: self.values,
            lists: self.lists,
            consts: self.consts,
            col_consts: self.col_consts,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            read_by_trees: self.read_by_trees,
            eligibility: decisions.eligibility,
            invalid: decisions.invalid,
            gates: decisions.gates,
            vetoes: decisions.vetoes,
            caps: decisions.caps,
            flags: decisions.flags,
        }
    }

    fn emit(&mut self, i: Ins) {
        self.code.push(i);
    }

    /// The position the next instruction takes, as a jump target.
    fn here(&self) -> R {
        u32::try_from(self.code.len()).unwrap_or(R::MAX)
    }

    /// Points the jump at `at` to the next instruction.
    fn land(&mut self, at: usize) {
        let to = self.here();
        if let Some(
            Ins::Jump { to: t }
            | Ins::JumpIf { to: t, .. }
            | Ins::JumpIfNot { to: t, .. }
            | Ins::JumpSet { to: t, .. }
            | Ins::NFieldOr { to: t, .. }
            | Ins::NAvgOr { to: t, .. },
        ) = self.code.get_mut(at)
        {
            *t = to;
        }
    }

    fn num(&mut self) -> R {
        self.nums += 1;
        self.nums - 1
    }

    fn bit(&mut self) -> R {
        self.bits += 1;
        self.bits - 1
    }

    fn col(&mut self) -> R {
        self.cols += 1;
        self.cols - 1
    }

    /// Emits code that runs only on some paths.
    fn branch<T>(&mut self, emit: impl FnOnce(&mut Self) -> T) -> T {
        self.depth += 1;
        let v = emit(self);
        self.depth -= 1;
        let depth = self.depth;
        self.loads.retain(|l| l.4 <= depth);
        v
    }

    /// Whether every item of root list `l` has field `slot` (it is not optional).
    fn always(&self, l: u16, slot: u16) -> bool {
        let records = &self.checked.schema.records;
        let Some(crate::check::ir::FieldType::List(rt)) = records.first().and_then(|r| r.fields.get(l as usize)).map(|f| &f.ty) else {
            return false;
        };
        records.get(*rt).and_then(|r| r.fields.get(slot as usize)).is_some_and(|f| !f.optional)
    }

    /// A load of an item field, for the items of `m` at least. A field every item has is loaded
    /// for all the items, and a load for all the items is shared by the loads after it.
    fn load(&mut self, slot: u16, kind: Load, m: R, l: u16) -> R {
        let all = self.all(l);
        let hit = self.loads.iter().find(|x| x.0 == l && x.1 == slot && x.2 == kind).map(|x| x.3);
        let (r, under) = match hit {
            Some(r) => (r, all),
            None => {
                let under = if self.always(l, slot) { all } else { m };
                let d = match kind {
                    Load::Num => {
                        let d = self.col();
                        self.emit(Ins::CFieldN { d, slot, m: under, l });
                        d
                    }
                    Load::Bool => {
                        let d = self.bit();
                        self.emit(Ins::CFieldB { d, slot, m: under, l });
                        d
                    }
                    Load::Present => {
                        let d = self.bit();
                        self.emit(Ins::CPresent { d, slot, m: under, l });
                        d
                    }
                };
                if under == all {
                    self.loads.push((l, slot, kind, d, self.depth));
                }
                (d, under)
            }
        };
        // A set of items is kept within the mask it is asked for.
        if kind == Load::Num || under == m {
            return r;
        }
        let d = self.bit();
        self.emit(Ins::BitAnd { d, a: r, b: m });
        d
    }

    /// The index of a constant value for comparisons, if `x` is one.
    fn value(&mut self, x: &X) -> Option<R> {
        if !matches!(x, X::Text(_) | X::Date(_) | X::Enum(..) | X::Level(_)) {
            return None;
        }
        let k = u32::try_from(self.values.len()).ok()?;
        self.values.push(x.clone());
        Some(k)
    }

    /// The register holding constant `v`.
    fn constant(&mut self, v: Frac) -> R {
        if let Some((r, _)) = self.consts.iter().find(|(_, c)| c.same(v)) {
            return *r;
        }
        let d = self.num();
        self.consts.push((d, v));
        d
    }

    /// The mask register of all the items of root list `slot`.
    fn all(&mut self, slot: u16) -> R {
        if let Some((_, r)) = self.lists.iter().find(|(s, _)| *s == slot) {
            return *r;
        }
        let r = self.bit();
        self.lists.push((slot, r));
        r
    }

    fn tree_n(&mut self, e: &N) -> R {
        self.escaped = true;
        let d = self.num();
        let t = u32::try_from(self.trees_n.len()).unwrap_or(R::MAX);
        self.trees_n.push(e.clone());
        self.emit(Ins::NTree { d, t });
        d
    }

    fn tree_b(&mut self, e: &B) -> R {
        self.escaped = true;
        let d = self.bit();
        let t = u32::try_from(self.trees_b.len()).unwrap_or(R::MAX);
        self.trees_b.push(e.clone());
        self.emit(Ins::BTree { d, t });
        d
    }

    /// The root list slot and its all-items mask, for an aggregate over a root list's items.
    fn root_agg<T>(&mut self, agg: &Agg<T>) -> Option<(u16, R)> {
        match (agg.frame, &agg.list) {
            (1, X::Field(0, slot)) => Some((*slot, self.all(*slot))),
            _ => None,
        }
    }

    /// A number at root scope.
    fn n(&mut self, e: &N) -> R {
        match e {
            N::Lit(v) => self.constant(*v),
            N::Field(0, slot) => {
                let d = self.num();
                self.emit(Ins::NField { d, slot: *slot });
                d
            }
            N::Let(id) => match self.let_regs.get(*id).copied() {
                Some(Some(Reg::Num(r))) => r,
                _ => {
                    let d = self.num();
                    self.emit(Ins::NLet { d, id: u32::try_from(*id).unwrap_or(R::MAX) });
                    d
                }
            },
            N::Arith(op, ab) => {
                let a = self.n(&ab.0);
                let b = self.n(&ab.1);
                let d = self.num();
                self.emit(Ins::NArith { op: *op, d, a, b });
                d
            }
            N::Neg(a) => {
                let a = self.n(a);
                let d = self.num();
                self.emit(Ins::NNeg { d, a });
                d
            }
            N::Round(places, mode, a) => {
                let a = self.n(a);
                let d = self.num();
                self.emit(Ins::NRound { d, a, places: *places, mode: *mode });
                d
            }
            N::If(cab) => {
                let d = self.num();
                let c = self.b(&cab.0);
                let skip = self.code.len();
                self.emit(Ins::JumpIfNot { b: c, to: 0 });
                let a = self.branch(|me| me.n(&cab.1));
                if self.code.len() == skip + 1 {
                    // The `then` value is a register already: the `else` side alone may need code.
                    self.code.truncate(skip);
                    self.emit(Ins::JumpIf { b: c, to: 0 });
                    let b = self.branch(|me| me.n(&cab.2));
                    if self.code.len() == skip + 1 {
                        self.code.truncate(skip);
                        self.emit(Ins::NSelect { d, c, a, b });
                        return d;
                    }
                    self.emit(Ins::NMove { d, a: b });
                    let end = self.code.len();
                    self.emit(Ins::Jump { to: 0 });
                    self.land(skip);
                    self.emit(Ins::NMove { d, a });
                    self.land(end);
                    return d;
                }
                self.emit(Ins::NMove { d, a });
                let end = self.code.len();
                self.emit(Ins::Jump { to: 0 });
                self.land(skip);
                let b = self.branch(|me| me.n(&cab.2));
                self.emit(Ins::NMove { d, a: b });
                self.land(end);
                d
            }
            N::Year(x) if matches!(&**x, X::PeriodEnd(t) if matches!(**t, X::Field(0, _))) => {
                let X::PeriodEnd(t) = &**x else { return self.tree_n(e) };
                let X::Field(_, slot) = **t else { return self.tree_n(e) };
                let d = self.num();
                self.emit(Ins::NPeriodYear { d, slot });
                d
            }
            N::Coalesce(ab) if matches!(&ab.0, X::Avg(agg) if agg.frame == 1 && matches!(agg.list, X::Field(0, _))) => {
                let X::Avg(agg) = &ab.0 else { return self.tree_n(e) };
                let Some((slot, m)) = self.root_agg(agg) else { return self.tree_n(e) };
                let keep = match &agg.filter {
                    Some(f) => self.cb(f, m, slot),
                    None => m,
                };
                let c = self.cn(&agg.item, keep, slot);
                let d = self.num();
                let at = self.code.len();
                self.emit(Ins::NAvgOr { d, c, m: keep, to: 0 });
                let b = self.branch(|me| me.n(&ab.1));
                self.emit(Ins::NMove { d, a: b });
                self.land(at);
                d
            }
            N::Coalesce(ab) if matches!(ab.0, X::Field(0, _)) => {
                let X::Field(_, slot) = ab.0 else { return self.tree_n(e) };
                let d = self.num();
                let at = self.code.len();
                self.emit(Ins::NFieldOr { d, slot, to: 0 });
                let b = self.branch(|me| me.n(&ab.1));
                self.emit(Ins::NMove { d, a: b });
                self.land(at);
                d
            }
            N::Extreme(min, args) if !args.is_empty() => {
                let mut acc: Option<R> = None;
                for a in args {
                    let b = self.n(a);
                    acc = Some(match acc {
                        None => b,
                        Some(a) => {
                            let d = self.num();
                            self.emit(Ins::NExtreme { min: *min, d, a, b });
                            d
                        }
                    });
                }
                acc.unwrap_or_else(|| self.tree_n(e))
            }
            N::Count(agg) => match (&agg.filter, &agg.list) {
                (None, X::Field(0, slot)) => {
                    let d = self.num();
                    self.emit(Ins::NLen { d, slot: *slot });
                    d
                }
                (Some(f), _) => match self.root_agg(agg) {
                    Some((slot, m)) => {
                        let keep = self.cb(f, m, slot);
                        let d = self.num();
                        self.emit(Ins::NPopcnt { d, a: keep });
                        d
                    }
                    None => self.tree_n(e),
                },
                _ => self.tree_n(e),
            },
            N::Sum(agg) => match self.root_agg(agg) {
                Some((slot, m)) => {
                    let keep = match &agg.filter {
                        Some(f) => self.cb(f, m, slot),
                        None => m,
                    };
                    let c = self.cn(&agg.item, keep, slot);
                    let d = self.num();
                    self.emit(Ins::NSum { d, c, m: keep });
                    d
                }
                None => self.tree_n(e),
            },
            _ => self.tree_n(e),
        }
    }

    /// A condition at root scope, as a bits register of 0 or 1.
    pub(super) fn b(&mut self, e: &B) -> R {
        match e {
            B::Lit(v) => {
                let d = self.bit();
                self.emit(Ins::BLit { d, v: *v });
                d
            }
            B::Field(0, slot) => {
                let d = self.bit();
                self.emit(Ins::BField { d, slot: *slot });
                d
            }
            B::Let(id) => match self.let_regs.get(*id).copied() {
                Some(Some(Reg::Bool(r))) => r,
                _ => {
                    let d = self.bit();
                    self.emit(Ins::BLet { d, id: u32::try_from(*id).unwrap_or(R::MAX) });
                    d
                }
            },
            B::Not(a) => {
                let a = self.b(a);
                let d = self.bit();
                self.emit(Ins::BNot { d, a });
                d
            }
            B::And(ab) | B::Or(ab) => {
                let and = matches!(e, B::And(_));
                let d = self.bit();
                let a = self.b(&ab.0);
                let at = self.code.len();
                self.emit(Ins::JumpSet { d, a, on: !and, to: 0 });
                let b = self.branch(|me| me.b(&ab.1));
                if self.code.len() == at + 1 {
                    // The right side is a register already: no need to jump over it.
                    self.code.truncate(at);
                    self.emit(if and { Ins::BitAnd { d, a, b } } else { Ins::BitOr { d, a, b } });
                    return d;
                }
                self.emit(Ins::BMove { d, a: b });
                self.land(at);
                d
            }
            B::If(cab) => {
                let d = self.bit();
                let c = self.b(&cab.0);
                let skip = self.code.len();
                self.emit(Ins::JumpIfNot { b: c, to: 0 });
                let a = self.branch(|me| me.b(&cab.1));
                self.emit(Ins::BMove { d, a });
                let end = self.code.len();
                self.emit(Ins::Jump { to: 0 });
                self.land(skip);
                let b = self.branch(|me| me.b(&cab.2));
                self.emit(Ins::BMove { d, a: b });
                self.land(end);
                d
            }
            B::Cmp(op, ab) => {
                let a = self.n(&ab.0);
                let b = self.n(&ab.1);
                let d = self.bit();
                self.emit(Ins::BCmp { op: *op, d, a, b });
                d
            }
            B::CmpAny(op, ab) if matches!(ab.0, X::Field(0, _)) => {
                let X::Field(_, slot) = ab.0 else { return self.tree_b(e) };
                let Some(k) = self.value(&ab.1) else { return self.tree_b(e) };
                let d = self.bit();
                self.emit(Ins::BCmpConst { op: *op, d, slot, k });
                d
            }
            B::In(x, list) if matches!(**x, X::Field(0, _)) && !list.is_empty() => {
                let X::Field(_, slot) = **x else { return self.tree_b(e) };
                let k = u32::try_from(self.values.len()).unwrap_or(R::MAX);
                for v in list {
                    if self.value(v).is_none() {
                        self.values.truncate(k as usize);
                        return self.tree_b(e);
                    }
                }
                let n = u32::try_from(list.len()).unwrap_or(R::MAX);
                let d = self.bit();
                self.emit(Ins::BInConsts { d, slot, k, n });
                d
            }
            B::Present(x, yes) if matches!(**x, X::Field(0, _)) => {
                let X::Field(_, slot) = **x else { return self.tree_b(e) };
                let d = self.bit();
                self.emit(Ins::BPresent { d, slot, yes: *yes });
                d
            }
            B::AllAny(all, agg) => match self.root_agg(agg) {
                Some((slot, m)) => {
                    let keep = match &agg.filter {
                        Some(f) => self.cb(f, m, slot),
                        None => m,
                    };
                    let holds = match &agg.item {
                        Some(c) => self.cb(c, keep, slot),
                        None => keep,
                    };
                    let d = self.bit();
                    self.emit(if *all { Ins::BEq { d, a: holds, b: keep } } else { Ins::BAny { d, a: holds } });
                    d
                }
                None => self.tree_b(e),
            },
            _ => self.tree_b(e),
        }
    }

    /// A column of numbers over the items of root list `l` in mask `m`.
    fn cn(&mut self, e: &N, m: R, l: u16) -> R {
        match e {
            N::Lit(v) => {
                if let Some((r, _)) = self.col_consts.iter().find(|(_, c)| c.same(*v)) {
                    return *r;
                }
                let d = self.col();
                self.col_consts.push((d, *v));
                d
            }
            N::Field(1, slot) => self.load(*slot, Load::Num, m, l),
            N::Field(0, _) | N::Let(_) => {
                let a = self.n(e);
                let d = self.col();
                self.emit(Ins::CBcastN { d, a, m });
                d
            }
            N::Item(1, id) if self.items.get(*id).is_some_and(|(s, _)| *s == l) => match self.item_regs.get(*id).copied() {
                Some(Some(Reg::Num(r))) => r,
                _ => self.tree_cn(e, m, l),
            },
            N::Coalesce(ab) if matches!(ab.0, X::Field(1, _)) => {
                let X::Field(_, slot) = ab.0 else { return self.tree_cn(e, m, l) };
                let present = self.load(slot, Load::Present, m, l);
                let other = self.bit();
                self.emit(Ins::BitAndNot { d: other, a: m, b: present });
                let a = self.load(slot, Load::Num, present, l);
                let b = self.cn(&ab.1, other, l);
                let d = self.col();
                self.emit(Ins::CSelect { d, c: present, a, b, m });
                d
            }
            N::Arith(op, ab) => {
                let a = self.cn(&ab.0, m, l);
                let b = self.cn(&ab.1, m, l);
                let d = self.col();
                self.emit(Ins::CArith { op: *op, d, a, b, m });
                d
            }
            N::Year(x) if matches!(**x, X::Field(1, _)) => {
                let X::Field(_, slot) = **x else { return self.tree_cn(e, m, l) };
                let d = self.col();
                self.emit(Ins::CYear { d, slot, m, l });
                d
            }
            N::If(cab) => {
                let c = self.cb(&cab.0, m, l);
                let other = self.bit();
                self.emit(Ins::BitAndNot { d: other, a: m, b: c });
                let a = self.cn(&cab.1, c, l);
                let b = self.cn(&cab.2, other, l);
                let d = self.col();
                self.emit(Ins::CSelect { d, c, a, b, m });
                d
            }
            N::Extreme(min, args) if !args.is_empty() => {
                let mut acc: Option<R> = None;
                for a in args {
                    let b = self.cn(a, m, l);
                    acc = Some(match acc {
                        None => b,
                        Some(a) => {
                            let d = self.col();
                            self.emit(Ins::CExtreme { min: *min, d, a, b, m });
                            d
                        }
                    });
                }
                acc.unwrap_or_else(|| self.tree_cn(e, m, l))
            }
            _ => self.tree_cn(e, m, l),
        }
    }

    fn tree_cn(&mut self, e: &N, m: R, l: u16) -> R {
        self.escaped = true;
        let d = self.col();
        let t = u32::try_from(self.trees_n.len()).unwrap_or(R::MAX);
        self.trees_n.push(e.clone());
        self.emit(Ins::CTreeN { d, t, m, l });
        d
    }

    /// The items of root list `l` in mask `m` for which a condition holds (always within `m`).
    fn cb(&mut self, e: &B, m: R, l: u16) -> R {
        match e {
            B::Lit(true) => m,
            B::Lit(false) => {
                let d = self.bit();
                self.emit(Ins::BitsZero { d });
                d
            }
            B::Field(1, slot) => self.load(*slot, Load::Bool, m, l),
            B::Field(0, _) | B::Let(_) => {
                let a = self.b(e);
                let d = self.bit();
                self.emit(Ins::CBcastB { d, a, m });
                d
            }
            B::Item(1, id) if self.items.get(*id).is_some_and(|(s, _)| *s == l) => match self.item_regs.get(*id).copied() {
                Some(Some(Reg::Bool(r))) if m == self.all(l) => r,
                Some(Some(Reg::Bool(r))) => {
                    let d = self.bit();
                    self.emit(Ins::BitAnd { d, a: r, b: m });
                    d
                }
                _ => self.tree_cb(e, m, l),
            },
            B::Not(a) => {
                let a = self.cb(a, m, l);
                let d = self.bit();
                self.emit(Ins::BitAndNot { d, a: m, b: a });
                d
            }
            B::And(ab) => {
                let a = self.cb(&ab.0, m, l);
                self.cb(&ab.1, a, l)
            }
            B::Or(ab) => {
                let a = self.cb(&ab.0, m, l);
                let rest = self.bit();
                self.emit(Ins::BitAndNot { d: rest, a: m, b: a });
                let b = self.cb(&ab.1, rest, l);
                let d = self.bit();
                self.emit(Ins::BitOr { d, a, b });
                d
            }
            B::If(cab) if matches!(cab.2, B::Lit(false)) => {
                let c = self.cb(&cab.0, m, l);
                self.cb(&cab.1, c, l)
            }
            B::If(cab) => {
                let c = self.cb(&cab.0, m, l);
                let other = self.bit();
                self.emit(Ins::BitAndNot { d: other, a: m, b: c });
                let a = self.cb(&cab.1, c, l);
                let b = self.cb(&cab.2, other, l);
                let d = self.bit();
                self.emit(Ins::BitOr { d, a, b });
                d
            }
            B::Cmp(op, ab) => {
                let a = self.cn(&ab.0, m, l);
                let b = self.cn(&ab.1, m, l);
                let d = self.bit();
                self.emit(Ins::CCmp { op: *op, d, a, b, m });
                d
            }
            B::CmpAny(op, ab) if matches!(ab.0, X::Field(1, _)) && !matches!(ab.1, X::Field(..)) => {
                let X::Field(_, slot) = ab.0 else { return self.tree_cb(e, m, l) };
                let Some(k) = self.value(&ab.1) else { return self.tree_cb(e, m, l) };
                let d = self.bit();
                self.emit(Ins::CCmpConst { op: *op, d, slot, k, m, l });
                d
            }
            B::CmpAny(op, ab) if matches!(ab.0, X::Field(1, _)) && matches!(ab.1, X::Field(1, _)) => {
                let (X::Field(_, s), X::Field(_, t)) = (&ab.0, &ab.1) else { return self.tree_cb(e, m, l) };
                let d = self.bit();
                self.emit(Ins::CCmpFields { op: *op, d, s: *s, t: *t, m, l });
                d
            }
            B::Present(x, yes) if matches!(**x, X::Field(1, _)) => {
                let X::Field(_, slot) = **x else { return self.tree_cb(e, m, l) };
                let present = self.load(slot, Load::Present, m, l);
                if *yes {
                    return present;
                }
                let d = self.bit();
                self.emit(Ins::BitAndNot { d, a: m, b: present });
                d
            }
            _ => self.tree_cb(e, m, l),
        }
    }

    fn tree_cb(&mut self, e: &B, m: R, l: u16) -> R {
        self.escaped = true;
        let d = self.bit();
        let t = u32::try_from(self.trees_b.len()).unwrap_or(R::MAX);
        self.trees_b.push(e.clone());
        self.emit(Ins::CTreeB { d, t, m, l });
        d
    }
}

/// The bits registers of the decision conditions, in the plan's order.
#[derive(Default)]
pub(super) struct Decisions {
    pub eligibility: Vec<R>,
    pub invalid: Vec<R>,
    pub gates: Vec<Option<R>>,
    pub vetoes: Vec<R>,
    pub caps: Vec<R>,
    pub flags: Vec<R>,
}

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

/// Lane `i` of a column (`i` is below 64, as a bit of a mask; the `& 31` lets the compiler
/// drop the bounds check).
#[inline(always)]
fn at(c: &Nums, i: usize) -> Frac {
    c.get(i & (columns::MAX - 1)).copied().unwrap_or(Frac::ZERO)
}

#[inline(always)]
fn put(c: &mut Nums, i: usize, v: Frac) {
    if let Some(x) = c.get_mut(i & (columns::MAX - 1)) {
        *x = v;
    }
}

/// `out = f(x, y)` on the items of `keep`; `false` when `f` fails on one.
#[inline(always)]
fn lanes2(keep: Bits, x: &Nums, y: &Nums, out: &mut Nums, f: impl Fn(Frac, Frac) -> Option<Frac>) -> bool {
    for i in columns::each(keep) {
        match f(at(x, i), at(y, i)) {
            Some(v) => put(out, i, v),
            None => return false,
        }
    }
    true
}

/// Column register `d` to write and the registers below it to read: the compiler allocates a
/// column's register after those of its operands, so an instruction reads only lower ones.
#[inline(always)]
fn split(cols: &mut [Nums], d: R) -> Option<(&[Nums], &mut Nums)> {
    let (below, rest) = cols.split_at_mut_checked(d as usize)?;
    Some((below, rest.first_mut()?))
}

impl<'a> Machine<'a> {
    /// Runs the program; `false` when it did not run to the end (it gave up, or a list is too
    /// long for columns, in which case the trees evaluate the record alone).
    #[inline(never)]
    pub(super) fn run_flat(&mut self, flat: &'a Flat, regs: &mut Regs) -> bool {
        if regs.owner != flat.id {
            for &(r, v) in &flat.consts {
                regs.set_num(r, v);
            }
            for &(r, v) in &flat.col_consts {
                if let Some(x) = regs.col_mut(r) {
                    *x = [v; columns::MAX];
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
        let v = match v {
            Value::Text(t) => F::Text(t),
            Value::Date(d) => F::Date(*d),
            Value::Enum(t, e) => F::Enum(*t, *e),
            Value::Level(l) => F::Level(*l),
            _ => return None,
        };
        super::compare(v, k)
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
        tests::ran(ins);
        let n = |r: &Regs, i: R| r.num(i);
        let b = |r: &Regs, i: R| r.bit(i);
        let set_n = |r: &mut Regs, i: R, v: Frac| r.set_num(i, v);
        let set_b = |r: &mut Regs, i: R, v: Bits| r.set_bit(i, v);
        match *ins {
            Ins::NField { d, slot } => {
                let v = self.num_field(0, slot);
                set_n(r, d, v);
            }
            Ins::NFieldOr { d, slot, to } => match self.root.get(slot) {
                Value::Absent => {}
                Value::Num(v) => {
                    let v = Frac::of(v);
                    let v = self.num(v);
                    set_n(r, d, v);
                    return Some(to);
                }
                _ => self.give_up(()),
            },
            Ins::NLet { d, id } => {
                let v = self.n_let(id as usize);
                set_n(r, d, v);
            }
            Ins::NTree { d, t } => {
                let v = match flat.trees_n.get(t as usize) {
                    Some(e) => self.n(e),
                    None => self.give_up(Frac::ZERO),
                };
                set_n(r, d, v);
            }
            Ins::NMove { d, a } => set_n(r, d, n(r, a)),
            Ins::NSelect { d, c, a, b: y } => set_n(r, d, if b(r, c) != 0 { n(r, a) } else { n(r, y) }),
            Ins::NArith { op, d, a, b } => {
                let v = arith(op, n(r, a), n(r, b));
                let v = self.num(v);
                set_n(r, d, v);
            }
            Ins::NNeg { d, a } => {
                let v = n(r, a).neg();
                let v = self.num(v);
                set_n(r, d, v);
            }
            Ins::NRound { d, a, places, mode } => {
                let v = n(r, a).round(places, mode);
                let v = self.num(v);
                set_n(r, d, v);
            }
            Ins::NExtreme { min, d, a, b } => {
                let (x, y) = (n(r, a), n(r, b));
                let want = if min { Ordering::Less } else { Ordering::Greater };
                set_n(r, d, if y.cmp(x) == want { y } else { x });
            }
            Ins::NLen { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::List(items) => Frac::int(i64::try_from(items.len()).unwrap_or(i64::MAX)),
                    _ => self.give_up(Frac::ZERO),
                };
                set_n(r, d, v);
            }
            Ins::NPopcnt { d, a } => set_n(r, d, Frac::int(i64::from(b(r, a).count_ones()))),
            Ins::NSum { d, c, m } => {
                let col = r.col(c);
                let mut sum = Some(Frac::ZERO);
                for i in columns::each(b(r, m)) {
                    sum = sum.and_then(|s| s.add(at(col, i)));
                }
                let v = self.num(sum);
                set_n(r, d, v);
            }
            Ins::NPeriodYear { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::Text(t) => match crate::date::parse_period(t) {
                        Some((_, end)) => Frac::int(crate::date::year_of(end)),
                        None => self.give_up(Frac::ZERO),
                    },
                    _ => self.give_up(Frac::ZERO),
                };
                set_n(r, d, v);
            }
            Ins::NAvgOr { d, c, m, to } => {
                let keep = b(r, m);
                if keep == 0 {
                    return None;
                }
                let col = r.col(c);
                let mut sum = Some(Frac::ZERO);
                for i in columns::each(keep) {
                    sum = sum.and_then(|s| s.add(at(col, i)));
                }
                let v = sum.and_then(|s| s.div(Frac::int(i64::from(keep.count_ones()))));
                let v = self.num(v);
                set_n(r, d, v);
                return Some(to);
            }
            Ins::BCmpConst { op, d, slot, k } => {
                let v = self.compare_const(self.root.get(slot), flat, k);
                match v {
                    Some(o) => set_b(r, d, Bits::from(holds(op, o))),
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
                set_b(r, d, Bits::from(found));
            }
            Ins::BLit { d, v } => set_b(r, d, Bits::from(v)),
            Ins::BField { d, slot } => {
                let v = match self.root.get(slot) {
                    Value::Bool(v) => *v,
                    _ => self.give_up(false),
                };
                set_b(r, d, Bits::from(v));
            }
            Ins::BPresent { d, slot, yes } => set_b(r, d, Bits::from(matches!(self.root.get(slot), Value::Absent) != yes)),
            Ins::BLet { d, id } => {
                let v = self.b_let(id as usize);
                set_b(r, d, Bits::from(v));
            }
            Ins::BTree { d, t } => {
                let v = match flat.trees_b.get(t as usize) {
                    Some(e) => self.b(e),
                    None => self.give_up(false),
                };
                set_b(r, d, Bits::from(v));
            }
            Ins::BMove { d, a } => set_b(r, d, b(r, a)),
            Ins::BNot { d, a } => set_b(r, d, Bits::from(b(r, a) == 0)),
            Ins::BCmp { op, d, a, b: y } => set_b(r, d, Bits::from(holds(op, n(r, a).cmp(n(r, y))))),
            Ins::BEq { d, a, b: y } => set_b(r, d, Bits::from(b(r, a) == b(r, y))),
            Ins::BAny { d, a } => set_b(r, d, Bits::from(b(r, a) != 0)),
            Ins::Jump { to } => return Some(to),
            Ins::JumpSet { d, a, on, to } => {
                let v = b(r, a);
                set_b(r, d, v);
                if (v != 0) == on {
                    return Some(to);
                }
            }
            Ins::JumpIf { b: c, to } => {
                if b(r, c) != 0 {
                    return Some(to);
                }
            }
            Ins::JumpIfNot { b: c, to } => {
                if b(r, c) == 0 {
                    return Some(to);
                }
            }
            Ins::BitsZero { d } => set_b(r, d, 0),
            Ins::BitAnd { d, a, b: y } => set_b(r, d, b(r, a) & b(r, y)),
            Ins::BitOr { d, a, b: y } => set_b(r, d, b(r, a) | b(r, y)),
            Ins::BitAndNot { d, a, b: y } => set_b(r, d, b(r, a) & !b(r, y)),
            Ins::CFieldN { d, slot, m, l } => {
                let items = self.list_items(l);
                let keep = b(r, m);
                let Some(out) = r.col_mut(d) else { return self.stop() };
                for i in columns::each(keep) {
                    let v = match items.get(i).map(|it| it.get(slot)) {
                        Some(Value::Num(v)) => Frac::of(v),
                        _ => None,
                    };
                    match v {
                        Some(v) => put(out, i, v),
                        None => return self.stop(),
                    }
                }
            }
            Ins::CFieldB { d, slot, m, l } => {
                let items = self.list_items(l);
                let mut out = 0;
                for i in columns::each(b(r, m)) {
                    match items.get(i).map(|it| it.get(slot)) {
                        Some(Value::Bool(true)) => out |= 1 << i,
                        Some(Value::Bool(false)) => {}
                        _ => return self.stop(),
                    }
                }
                set_b(r, d, out);
            }
            Ins::CPresent { d, slot, m, l } => {
                let items = self.list_items(l);
                let mut out = 0;
                for i in columns::each(b(r, m)) {
                    if !matches!(items.get(i).map(|it| it.get(slot)), Some(Value::Absent) | None) {
                        out |= 1 << i;
                    }
                }
                set_b(r, d, out);
            }
            Ins::CCmpConst { op, d, slot, k, m, l } => {
                let items = self.list_items(l);
                let mut out = 0;
                for i in columns::each(b(r, m)) {
                    let Some(item) = items.get(i) else { return self.stop() };
                    match self.compare_const(item.get(slot), flat, k) {
                        Some(o) if holds(op, o) => out |= 1 << i,
                        Some(_) => {}
                        None => return self.stop(),
                    }
                }
                set_b(r, d, out);
            }
            Ins::CCmpFields { op, d, s, t, m, l } => {
                let items = self.list_items(l);
                let mut out = 0;
                for i in columns::each(b(r, m)) {
                    let Some(item) = items.get(i) else { return self.stop() };
                    let o = match (item.get(s), item.get(t)) {
                        (Value::Date(x), Value::Date(y)) => Some(x.cmp(y)),
                        (x, y) => match (F::of(x), F::of(y)) {
                            (Some(x), Some(y)) => super::compare(x, y),
                            _ => None,
                        },
                    };
                    match o {
                        Some(o) if holds(op, o) => out |= 1 << i,
                        Some(_) => {}
                        None => return self.stop(),
                    }
                }
                set_b(r, d, out);
            }
            Ins::CBcastN { d, a, m } => {
                let (v, keep) = (n(r, a), b(r, m));
                let Some(out) = r.col_mut(d) else { return self.stop() };
                for i in columns::each(keep) {
                    put(out, i, v);
                }
            }
            Ins::CYear { d, slot, m, l } => {
                let items = self.list_items(l);
                let keep = b(r, m);
                let Some(out) = r.col_mut(d) else { return self.stop() };
                for i in columns::each(keep) {
                    match items.get(i).map(|it| it.get(slot)) {
                        Some(Value::Date(v)) => put(out, i, Frac::int(crate::date::year_of(*v))),
                        _ => return self.stop(),
                    }
                }
            }
            Ins::CBcastB { d, a, m } => set_b(r, d, if b(r, a) != 0 { b(r, m) } else { 0 }),
            Ins::CArith { op, d, a, b: y, m } => {
                let keep = b(r, m);
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                // One loop an operator, so that each is inlined.
                let ok = match op {
                    Op::Add => lanes2(keep, x, y, out, Frac::add),
                    Op::Sub => lanes2(keep, x, y, out, Frac::sub),
                    Op::Mul => lanes2(keep, x, y, out, Frac::mul),
                    _ => lanes2(keep, x, y, out, Frac::div),
                };
                if !ok {
                    return self.stop();
                }
            }
            Ins::CCmp { op, d, a, b: y, m } => {
                let keep = b(r, m);
                let (x, y) = (r.col(a), r.col(y));
                let mut out = 0;
                for i in columns::each(keep) {
                    if holds(op, at(x, i).cmp(at(y, i))) {
                        out |= 1 << i;
                    }
                }
                set_b(r, d, out);
            }
            Ins::CExtreme { min, d, a, b: y, m } => {
                let want = if min { Ordering::Less } else { Ordering::Greater };
                let keep = b(r, m);
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                for i in columns::each(keep) {
                    let (x, v) = (at(x, i), at(y, i));
                    put(out, i, if v.cmp(x) == want { v } else { x });
                }
            }
            Ins::CSelect { d, c, a, b: y, m } => {
                let (pick, keep) = (b(r, c), b(r, m));
                let Some((below, out)) = split(r.cols.as_mut_slice(), d) else { return self.stop() };
                let (Some(x), Some(y)) = (below.get(a as usize), below.get(y as usize)) else { return self.stop() };
                for i in columns::each(keep) {
                    put(out, i, if pick >> i & 1 == 1 { at(x, i) } else { at(y, i) });
                }
            }
            Ins::CTreeN { d, t, m, l } => {
                let items = self.list_items(l);
                let mask = b(r, m);
                let mut out = [Frac::ZERO; columns::MAX];
                match flat.trees_n.get(t as usize) {
                    Some(e) => self.in_column(|me| me.vn(e, items, mask, &mut out)),
                    None => self.give_up(()),
                }
                let Some(dst) = r.col_mut(d) else { return self.stop() };
                for i in columns::each(mask) {
                    put(dst, i, at(&out, i));
                }
            }
            Ins::CTreeB { d, t, m, l } => {
                let items = self.list_items(l);
                let mask = b(r, m);
                let v = match flat.trees_b.get(t as usize) {
                    Some(e) => self.in_column(|me| me.vb(e, items, mask)),
                    None => self.give_up(0),
                };
                set_b(r, d, v & mask);
            }
            Ins::SetLetN { id, a } => {
                if let Some(c) = self.cells.get_mut(id as usize) {
                    *c = F::Num(n(r, a));
                }
            }
            Ins::SetLetB { id, a } => {
                if let Some(c) = self.cells.get_mut(id as usize) {
                    *c = F::Bool(b(r, a) != 0);
                }
            }
        }
        None
    }
}

/// The name of an instruction's kind (its `Debug` form up to the fields).
#[cfg(test)]
fn kind(ins: &Ins) -> String {
    format!("{ins:?}").split([' ', '{']).next().unwrap_or_default().to_string()
}

#[cfg(test)]
pub(super) mod tests {
    use super::{Flat, Ins, kind};
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    thread_local! {
        static RAN: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
    }

    /// Notes that an instruction of this kind ran on this thread.
    pub(super) fn ran(ins: &Ins) {
        RAN.with(|r| r.borrow_mut().insert(kind(ins)));
    }

    /// The kinds of instruction that ran on this thread.
    pub(in crate::eval::fast) fn kinds_run() -> BTreeSet<String> {
        RAN.with(|r| r.borrow().clone())
    }

    /// The kinds of instruction in a program.
    pub(in crate::eval::fast) fn kinds_in(flat: &Flat) -> BTreeSet<String> {
        flat.code.iter().map(kind).collect()
    }

    #[test]
    #[ignore = "prints the bundled rules' flat program"]
    fn print_program() {
        let text = include_str!("../../../rules/reg366.merit");
        let (rs, _) = crate::compile::compile("reg366.merit", text).expect("compiles");
        let plan = rs.fast.as_ref().expect("plan");
        let flat = plan.flat.as_ref().expect("flat");
        for (i, ins) in flat.code.iter().enumerate() {
            println!("{i:4} {ins:?}");
        }
        println!("trees {} {}", flat.trees_b.len(), flat.trees_n.len());
    }
}
