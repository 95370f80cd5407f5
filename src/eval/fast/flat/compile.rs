//! Compiling a plan's trees into a [`Flat`] program: the dependency order of the values, the
//! registers, the jumps, the shared loads and computations, and the escapes to the trees.

use super::{BITS, COLS, Flat, Ins, NEXT_ID, NUMS, R};
use crate::check::Checked;
use crate::check::ir::{Ex, Op};
use crate::eval::fast::frac::Frac;
use crate::eval::fast::lower::{Agg, B, N, X};

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
pub(in crate::eval::fast) struct Compiler<'p> {
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
    /// Instructions emitted that compute a value from registers and the record alone, with
    /// their register and depth, kept as `loads` are: the same instruction again is not
    /// emitted, its register is read instead.
    computed: Vec<(Ins, R, u32)>,
    checked: &'p Checked,
    /// The lets the trees read from the cells, as far as this compilation shows.
    pub(in crate::eval::fast) read_by_trees: Vec<bool>,
}

/// `if x == 0 then k else n / x` (with `x` a named value or a field) as `(x, k, n)`.
fn guarded_division(cab: &(B, N, N)) -> Option<(&N, &N, &N)> {
    let (B::Cmp(Op::Eq, xz), k, N::Arith(Op::Div, nx)) = cab else { return None };
    let (x, N::Lit(zero)) = &**xz else { return None };
    let same = match (x, &nx.1) {
        (N::Let(a), N::Let(b)) => a == b,
        (N::Field(f, s), N::Field(g, t)) => f == g && s == t,
        _ => false,
    };
    (zero.is_zero() && same).then_some((x, k, &nx.0))
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
    pub(in crate::eval::fast) fn new(checked: &'p Checked, lets: &'p [X], items: &'p [(u16, X)], publish: Vec<bool>) -> Compiler<'p> {
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
            computed: Vec::new(),
        }
    }

    /// Emits every value of the checked rules in dependency order; `None` if the order cannot
    /// be found (a cycle, which the checker rejects).
    pub(in crate::eval::fast) fn values(&mut self, c: &Checked) -> Option<()> {
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
    pub(in crate::eval::fast) fn read_by(&mut self, ex: &Ex) {
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
    pub(in crate::eval::fast) fn clear_escaped(&mut self) {
        self.escaped = false;
    }

    /// Whether an escape was emitted since the mark was cleared.
    pub(in crate::eval::fast) fn escaped(&self) -> bool {
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
    pub(in crate::eval::fast) fn any_item(&mut self, e: &B, slot: u16) -> R {
        let m = self.all(slot);
        let c = self.cb(e, m, slot);
        self.new_bit(|d| Ins::BAny { d, a: c })
    }

    /// The program, or `None` when it needs more registers than a run has.
    pub(in crate::eval::fast) fn finish(self, decisions: Decisions) -> Option<Flat> {
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
        if let Some(t) = self.code.get_mut(at).and_then(Ins::target_mut) {
            *t = to;
        }
    }

    /// The `else` side of an `if` whose `then` side was emitted after the jump at `skip`: a jump
    /// over it, then its code, its value given to `d` (`num`: a number, else a condition).
    fn otherwise(&mut self, d: R, skip: usize, num: bool, emit: impl FnOnce(&mut Self) -> R) {
        let end = self.code.len();
        self.emit(Ins::Jump { to: 0 });
        self.land(skip);
        let (start, fresh) = (self.code.len(), if num { self.nums } else { self.bits });
        let b = self.branch(emit);
        self.move_into(d, b, start, fresh, num);
        self.land(end);
    }

    /// Gives register `d` the value of `a`, which the code emitted since `start` computed in
    /// registers numbered `fresh` and up: by making the instruction that computed `a` write
    /// `d` instead where no other path can tell (it is the last, and no jump lands after it),
    /// else by a move. `num`: number registers, else bits registers.
    fn move_into(&mut self, d: R, a: R, start: usize, fresh: R, num: bool) {
        let here = self.here();
        // Only the branch's own jumps can have landed here yet.
        let lands_here = self.code.iter_mut().skip(start).any(|i| i.target_mut().is_some_and(|t| *t == here));
        if a >= fresh
            && self.code.len() > start
            && !lands_here
            && let Some(last) = self.code.last_mut()
            && let Some(w) = if num { last.num_dest_mut() } else { last.bit_dest_mut() }
            && *w == a
        {
            *w = d;
            return;
        }
        self.emit(if num { Ins::NMove { d, a } } else { Ins::BMove { d, a } });
    }

    /// A new number register, written by the instruction `ins` makes of it.
    fn new_num(&mut self, ins: impl Fn(R) -> Ins) -> R {
        self.computed_by(ins, Compiler::num)
    }

    /// A new item-set register, written by the instruction `ins` makes of it.
    fn new_bit(&mut self, ins: impl Fn(R) -> Ins) -> R {
        self.computed_by(ins, Compiler::bit)
    }

    /// A new column register, written by the instruction `ins` makes of it.
    fn new_col(&mut self, ins: impl Fn(R) -> Ins) -> R {
        self.computed_by(ins, Compiler::col)
    }

    /// The register of the instruction `ins` makes of it: a new one from `new`, or, where the
    /// same computation was emitted before on every path to here, its register.
    fn computed_by(&mut self, ins: impl Fn(R) -> Ins, new: fn(&mut Self) -> R) -> R {
        let key = ins(R::MAX);
        if let Some(&(_, r, _)) = self.computed.iter().find(|c| c.0 == key) {
            return r;
        }
        let d = new(self);
        self.emit(ins(d));
        if key.is_pure() {
            self.computed.push((key, d, self.depth));
        }
        d
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
        self.computed.retain(|c| c.2 <= depth);
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
                    Load::Num => self.new_col(|d| Ins::CFieldN { d, slot, m: under, l }),
                    Load::Bool => self.new_bit(|d| Ins::CFieldB { d, slot, m: under, l }),
                    Load::Present => self.new_bit(|d| Ins::CPresent { d, slot, m: under, l }),
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
        self.new_bit(|d| Ins::BitAnd { d, a: r, b: m })
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

    /// Keeps a number's tree for an escape, and returns its index.
    fn escape_n(&mut self, e: &N) -> R {
        self.escaped = true;
        self.trees_n.push(e.clone());
        u32::try_from(self.trees_n.len() - 1).unwrap_or(R::MAX)
    }

    /// Keeps a condition's tree for an escape, and returns its index.
    fn escape_b(&mut self, e: &B) -> R {
        self.escaped = true;
        self.trees_b.push(e.clone());
        u32::try_from(self.trees_b.len() - 1).unwrap_or(R::MAX)
    }

    fn tree_n(&mut self, e: &N) -> R {
        let t = self.escape_n(e);
        self.new_num(|d| Ins::NTree { d, t })
    }

    fn tree_b(&mut self, e: &B) -> R {
        let t = self.escape_b(e);
        self.new_bit(|d| Ins::BTree { d, t })
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
            N::Field(0, slot) => self.new_num(|d| Ins::NField { d, slot: *slot }),
            N::Let(id) => match self.let_regs.get(*id).copied() {
                Some(Some(Reg::Num(r))) => r,
                _ => self.new_num(|d| Ins::NLet { d, id: u32::try_from(*id).unwrap_or(R::MAX) }),
            },
            N::Arith(op, ab) => {
                let a = self.n(&ab.0);
                let b = self.n(&ab.1);
                self.new_num(|d| Ins::NArith { op: *op, d, a, b })
            }
            N::Neg(a) => {
                let a = self.n(a);
                self.new_num(|d| Ins::NNeg { d, a })
            }
            N::Round(places, mode, a) => {
                let a = self.n(a);
                self.new_num(|d| Ins::NRound { d, a, places: *places, mode: *mode })
            }
            N::If(cab) => {
                if let Some((x, k, numerator)) = guarded_division(cab) {
                    let b = self.n(x);
                    let k = self.n(k);
                    let a = self.n(numerator);
                    return self.new_num(|d| Ins::NDivOr { d, a, b, k });
                }
                let d = self.num();
                let c = self.b(&cab.0);
                let skip = self.code.len();
                self.emit(Ins::JumpIfNot { b: c, to: 0 });
                let fresh = self.nums;
                let a = self.branch(|me| me.n(&cab.1));
                if self.code.len() == skip + 1 {
                    // The `then` value is a register already: the `else` side alone may need code.
                    self.code.truncate(skip);
                    self.emit(Ins::JumpIf { b: c, to: 0 });
                    let fresh = self.nums;
                    let b = self.branch(|me| me.n(&cab.2));
                    if self.code.len() == skip + 1 {
                        self.code.truncate(skip);
                        self.emit(Ins::NSelect { d, c, a, b });
                        return d;
                    }
                    self.move_into(d, b, skip + 1, fresh, true);
                    let end = self.code.len();
                    self.emit(Ins::Jump { to: 0 });
                    self.land(skip);
                    self.emit(Ins::NMove { d, a });
                    self.land(end);
                    return d;
                }
                self.move_into(d, a, skip + 1, fresh, true);
                self.otherwise(d, skip, true, |me| me.n(&cab.2));
                d
            }
            N::Year(x) if matches!(&**x, X::PeriodEnd(t) if matches!(**t, X::Field(0, _))) => {
                let X::PeriodEnd(t) = &**x else { return self.tree_n(e) };
                let X::Field(_, slot) = **t else { return self.tree_n(e) };
                self.new_num(|d| Ins::NPeriodYear { d, slot })
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
                let fresh = self.nums;
                let b = self.branch(|me| me.n(&ab.1));
                self.move_into(d, b, at + 1, fresh, true);
                self.land(at);
                d
            }
            N::Coalesce(ab) if matches!(ab.0, X::Field(0, _)) => {
                let X::Field(_, slot) = ab.0 else { return self.tree_n(e) };
                let d = self.num();
                let at = self.code.len();
                self.emit(Ins::NFieldOr { d, slot, to: 0 });
                let fresh = self.nums;
                let b = self.branch(|me| me.n(&ab.1));
                self.move_into(d, b, at + 1, fresh, true);
                self.land(at);
                d
            }
            N::Extreme(min, args) if !args.is_empty() => {
                let mut acc: Option<R> = None;
                for a in args {
                    let b = self.n(a);
                    acc = Some(match acc {
                        None => b,
                        Some(a) => self.new_num(|d| Ins::NExtreme { min: *min, d, a, b }),
                    });
                }
                acc.unwrap_or_else(|| self.tree_n(e))
            }
            N::Count(agg) => match (&agg.filter, &agg.list) {
                (None, X::Field(0, slot)) => self.new_num(|d| Ins::NLen { d, slot: *slot }),
                (Some(f), _) => match self.root_agg(agg) {
                    Some((slot, m)) => {
                        let keep = self.cb(f, m, slot);
                        self.new_num(|d| Ins::NPopcnt { d, a: keep })
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
                    if let N::Arith(Op::Mul, xy) = &agg.item {
                        // A weighted sum: one pass, no column of products.
                        let a = self.cn(&xy.0, keep, slot);
                        let b = self.cn(&xy.1, keep, slot);
                        return self.new_num(|d| Ins::NDot { d, a, b, m: keep });
                    }
                    let c = self.cn(&agg.item, keep, slot);
                    self.new_num(|d| Ins::NSum { d, c, m: keep })
                }
                None => self.tree_n(e),
            },
            _ => self.tree_n(e),
        }
    }

    /// A condition at root scope, as a bits register of 0 or 1.
    pub(in crate::eval::fast) fn b(&mut self, e: &B) -> R {
        match e {
            B::Lit(v) => self.new_bit(|d| Ins::BLit { d, v: *v }),
            B::Field(0, slot) => self.new_bit(|d| Ins::BField { d, slot: *slot }),
            B::Let(id) => match self.let_regs.get(*id).copied() {
                Some(Some(Reg::Bool(r))) => r,
                _ => self.new_bit(|d| Ins::BLet { d, id: u32::try_from(*id).unwrap_or(R::MAX) }),
            },
            B::Not(a) => {
                let a = self.b(a);
                self.new_bit(|d| Ins::BNot { d, a })
            }
            B::And(ab) | B::Or(ab) => {
                let and = matches!(e, B::And(_));
                let d = self.bit();
                let a = self.b(&ab.0);
                let at = self.code.len();
                self.emit(Ins::JumpSet { d, a, on: !and, to: 0 });
                let fresh = self.bits;
                let b = self.branch(|me| me.b(&ab.1));
                if self.code.len() == at + 1 {
                    // The right side is a register already: no need to jump over it.
                    self.code.truncate(at);
                    self.emit(if and { Ins::BitAnd { d, a, b } } else { Ins::BitOr { d, a, b } });
                    return d;
                }
                self.move_into(d, b, at + 1, fresh, false);
                self.land(at);
                d
            }
            B::If(cab) => {
                let d = self.bit();
                let c = self.b(&cab.0);
                let skip = self.code.len();
                self.emit(Ins::JumpIfNot { b: c, to: 0 });
                let fresh = self.bits;
                let a = self.branch(|me| me.b(&cab.1));
                self.move_into(d, a, skip + 1, fresh, false);
                self.otherwise(d, skip, false, |me| me.b(&cab.2));
                d
            }
            B::Cmp(op, ab) => {
                let a = self.n(&ab.0);
                let b = self.n(&ab.1);
                self.new_bit(|d| Ins::BCmp { op: *op, d, a, b })
            }
            B::CmpAny(op, ab) if matches!(ab.0, X::Field(0, _)) => {
                let X::Field(_, slot) = ab.0 else { return self.tree_b(e) };
                let Some(k) = self.value(&ab.1) else { return self.tree_b(e) };
                self.new_bit(|d| Ins::BCmpConst { op: *op, d, slot, k })
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
                self.new_bit(|d| Ins::BInConsts { d, slot, k, n })
            }
            B::Present(x, yes) if matches!(**x, X::Field(0, _)) => {
                let X::Field(_, slot) = **x else { return self.tree_b(e) };
                self.new_bit(|d| Ins::BPresent { d, slot, yes: *yes })
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
                    self.new_bit(|d| if *all { Ins::BEq { d, a: holds, b: keep } } else { Ins::BAny { d, a: holds } })
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
                self.new_col(|d| Ins::CBcastN { d, a })
            }
            N::Item(1, id) if self.items.get(*id).is_some_and(|(s, _)| *s == l) => match self.item_regs.get(*id).copied() {
                Some(Some(Reg::Num(r))) => r,
                _ => self.tree_cn(e, m, l),
            },
            N::Coalesce(ab) if matches!(ab.0, X::Field(1, _)) => {
                let X::Field(_, slot) = ab.0 else { return self.tree_cn(e, m, l) };
                let present = self.load(slot, Load::Present, m, l);
                let other = self.new_bit(|d| Ins::BitAndNot { d, a: m, b: present });
                let a = self.load(slot, Load::Num, present, l);
                let b = self.cn(&ab.1, other, l);
                self.new_col(|d| Ins::CSelect { d, c: present, a, b, m })
            }
            N::Arith(op, ab) => {
                let a = self.cn(&ab.0, m, l);
                let b = self.cn(&ab.1, m, l);
                self.new_col(|d| Ins::CArith { op: *op, d, a, b, m })
            }
            N::Year(x) if matches!(**x, X::Field(1, _)) => {
                let X::Field(_, slot) = **x else { return self.tree_cn(e, m, l) };
                self.new_col(|d| Ins::CYear { d, slot, m, l })
            }
            N::If(cab) => {
                let c = self.cb(&cab.0, m, l);
                let other = self.new_bit(|d| Ins::BitAndNot { d, a: m, b: c });
                let a = self.cn(&cab.1, c, l);
                let b = self.cn(&cab.2, other, l);
                self.new_col(|d| Ins::CSelect { d, c, a, b, m })
            }
            N::Extreme(min, args) if !args.is_empty() => {
                let mut acc: Option<R> = None;
                for a in args {
                    let b = self.cn(a, m, l);
                    acc = Some(match acc {
                        None => b,
                        Some(a) => self.new_col(|d| Ins::CExtreme { min: *min, d, a, b, m }),
                    });
                }
                acc.unwrap_or_else(|| self.tree_cn(e, m, l))
            }
            _ => self.tree_cn(e, m, l),
        }
    }

    fn tree_cn(&mut self, e: &N, m: R, l: u16) -> R {
        let t = self.escape_n(e);
        self.new_col(|d| Ins::CTreeN { d, t, m, l })
    }

    /// The items of root list `l` in mask `m` for which a condition holds (always within `m`).
    fn cb(&mut self, e: &B, m: R, l: u16) -> R {
        match e {
            B::Lit(true) => m,
            B::Lit(false) => self.new_bit(|d| Ins::BitsZero { d }),
            B::Field(1, slot) => self.load(*slot, Load::Bool, m, l),
            B::Field(0, _) | B::Let(_) => {
                let a = self.b(e);
                self.new_bit(|d| Ins::CBcastB { d, a, m })
            }
            B::Item(1, id) if self.items.get(*id).is_some_and(|(s, _)| *s == l) => match self.item_regs.get(*id).copied() {
                Some(Some(Reg::Bool(r))) if m == self.all(l) => r,
                Some(Some(Reg::Bool(r))) => self.new_bit(|d| Ins::BitAnd { d, a: r, b: m }),
                _ => self.tree_cb(e, m, l),
            },
            B::Not(a) => {
                let a = self.cb(a, m, l);
                self.new_bit(|d| Ins::BitAndNot { d, a: m, b: a })
            }
            B::And(ab) => {
                let a = self.cb(&ab.0, m, l);
                self.cb(&ab.1, a, l)
            }
            B::Or(ab) => {
                let a = self.cb(&ab.0, m, l);
                let rest = self.new_bit(|d| Ins::BitAndNot { d, a: m, b: a });
                let b = self.cb(&ab.1, rest, l);
                self.new_bit(|d| Ins::BitOr { d, a, b })
            }
            B::If(cab) if matches!(cab.2, B::Lit(false)) => {
                let c = self.cb(&cab.0, m, l);
                self.cb(&cab.1, c, l)
            }
            B::If(cab) => {
                let c = self.cb(&cab.0, m, l);
                let other = self.new_bit(|d| Ins::BitAndNot { d, a: m, b: c });
                let a = self.cb(&cab.1, c, l);
                let b = self.cb(&cab.2, other, l);
                self.new_bit(|d| Ins::BitOr { d, a, b })
            }
            B::Cmp(op, ab) => {
                let a = self.cn(&ab.0, m, l);
                let b = self.cn(&ab.1, m, l);
                self.new_bit(|d| Ins::CCmp { op: *op, d, a, b, m })
            }
            B::CmpAny(op, ab) if matches!(ab.0, X::Field(1, _)) && !matches!(ab.1, X::Field(..)) => {
                let X::Field(_, slot) = ab.0 else { return self.tree_cb(e, m, l) };
                let Some(k) = self.value(&ab.1) else { return self.tree_cb(e, m, l) };
                self.new_bit(|d| Ins::CCmpConst { op: *op, d, slot, k, m, l })
            }
            B::CmpAny(op, ab) if matches!(ab.0, X::Field(1, _)) && matches!(ab.1, X::Field(1, _)) => {
                let (X::Field(_, s), X::Field(_, t)) = (&ab.0, &ab.1) else { return self.tree_cb(e, m, l) };
                self.new_bit(|d| Ins::CCmpFields { op: *op, d, s: *s, t: *t, m, l })
            }
            B::Present(x, yes) if matches!(**x, X::Field(1, _)) => {
                let X::Field(_, slot) = **x else { return self.tree_cb(e, m, l) };
                let present = self.load(slot, Load::Present, m, l);
                if *yes {
                    return present;
                }
                self.new_bit(|d| Ins::BitAndNot { d, a: m, b: present })
            }
            _ => self.tree_cb(e, m, l),
        }
    }

    fn tree_cb(&mut self, e: &B, m: R, l: u16) -> R {
        let t = self.escape_b(e);
        self.new_bit(|d| Ins::CTreeB { d, t, m, l })
    }
}

/// The bits registers of the decision conditions, in the plan's order.
#[derive(Default)]
pub(in crate::eval::fast) struct Decisions {
    pub eligibility: Vec<R>,
    pub invalid: Vec<R>,
    pub gates: Vec<Option<R>>,
    pub vetoes: Vec<R>,
    pub caps: Vec<R>,
    pub flags: Vec<R>,
}
