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
//! different outcome. A column register is a [`Col`]: its lanes over one shared denominator, so
//! that a lane operation is plain integer arithmetic.
//!
//! A record with a list of more than [`super::columns::MAX`] items, or an absent
//! list, read as columns skips the program and is evaluated by the trees alone. The program
//! does not recurse at run time (escapes aside), so its stack use is the trees'.

mod col;
mod compile;
mod run;

pub(super) use compile::{Compiler, Decisions};

use super::F;
use super::columns::Bits;
use super::frac::Frac;
use super::lower::{B, N, X};
use crate::check::ir::Op;
use crate::num::Rounding;
use col::Col;

/// A register index.
type R = u32;

/// One instruction. `d` is the register written; `m` a mask register (the items a column
/// instruction computes); `l` the root list slot whose items a column instruction reads.
#[derive(Clone, Copy, Debug, PartialEq)]
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
    /// `a / b`, or `k` where `b` is 0 (`if b == 0 then k else a / b`, the rules' guarded
    /// share, with both sides computed before).
    NDivOr {
        d: R,
        a: R,
        b: R,
        k: R,
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
    /// The sum over the items of `m` of column `a` times column `b` (a weighted sum).
    NDot {
        d: R,
        a: R,
        b: R,
        m: R,
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

impl Ins {
    /// Where the instruction may jump to.
    fn target_mut(&mut self) -> Option<&mut R> {
        match self {
            Ins::Jump { to }
            | Ins::JumpIf { to, .. }
            | Ins::JumpIfNot { to, .. }
            | Ins::JumpSet { to, .. }
            | Ins::NFieldOr { to, .. }
            | Ins::NAvgOr { to, .. } => Some(to),
            _ => None,
        }
    }

    /// The number register a straight-line instruction (one that never jumps) writes.
    fn num_dest_mut(&mut self) -> Option<&mut R> {
        match self {
            Ins::NField { d, .. }
            | Ins::NLet { d, .. }
            | Ins::NTree { d, .. }
            | Ins::NMove { d, .. }
            | Ins::NSelect { d, .. }
            | Ins::NDivOr { d, .. }
            | Ins::NArith { d, .. }
            | Ins::NNeg { d, .. }
            | Ins::NRound { d, .. }
            | Ins::NExtreme { d, .. }
            | Ins::NLen { d, .. }
            | Ins::NPopcnt { d, .. }
            | Ins::NSum { d, .. }
            | Ins::NDot { d, .. }
            | Ins::NPeriodYear { d, .. } => Some(d),
            _ => None,
        }
    }

    /// The bits register a straight-line instruction (one that never jumps) writes.
    fn bit_dest_mut(&mut self) -> Option<&mut R> {
        match self {
            Ins::BCmpConst { d, .. }
            | Ins::BInConsts { d, .. }
            | Ins::BLit { d, .. }
            | Ins::BField { d, .. }
            | Ins::BPresent { d, .. }
            | Ins::BLet { d, .. }
            | Ins::BTree { d, .. }
            | Ins::BMove { d, .. }
            | Ins::BNot { d, .. }
            | Ins::BCmp { d, .. }
            | Ins::BEq { d, .. }
            | Ins::BAny { d, .. }
            | Ins::BitsZero { d }
            | Ins::BitAnd { d, .. }
            | Ins::BitOr { d, .. }
            | Ins::BitAndNot { d, .. }
            | Ins::CFieldB { d, .. }
            | Ins::CPresent { d, .. }
            | Ins::CCmpConst { d, .. }
            | Ins::CCmpFields { d, .. }
            | Ins::CBcastB { d, .. }
            | Ins::CCmp { d, .. }
            | Ins::CTreeB { d, .. } => Some(d),
            _ => None,
        }
    }

    /// Whether the instruction computes its register from registers and the record alone, so
    /// that running it again (on the same path) gives the same value. Not: reads of the cells,
    /// escapes, moves and jumps (which write a register another instruction writes too). A pure
    /// instruction whose register `move_into` replaces by a branch's join register is no longer
    /// shared: its entry was made inside the branch and dropped when the branch ended.
    fn is_pure(&self) -> bool {
        !matches!(
            self,
            Ins::NFieldOr { .. }
                | Ins::NLet { .. }
                | Ins::NTree { .. }
                | Ins::NMove { .. }
                | Ins::NAvgOr { .. }
                | Ins::BLet { .. }
                | Ins::BTree { .. }
                | Ins::BMove { .. }
                | Ins::Jump { .. }
                | Ins::JumpSet { .. }
                | Ins::JumpIf { .. }
                | Ins::JumpIfNot { .. }
                | Ins::CTreeN { .. }
                | Ins::CTreeB { .. }
                | Ins::SetLetN { .. }
                | Ins::SetLetB { .. }
        )
    }
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
    cols: Box<[Col; COLS]>,
    /// The storage of a machine's cells (empty between runs), so that a record allocates none.
    pub(super) cells: Vec<F<'static>>,
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
                cols: Box::new([Col::ZERO; COLS]),
                cells: Vec::new(),
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
    fn col(&self, r: R) -> &Col {
        self.cols.get(r as usize & (COLS - 1)).unwrap_or(&Col::ZERO)
    }

    #[inline(always)]
    fn col_mut(&mut self, r: R) -> Option<&mut Col> {
        self.cols.get_mut(r as usize & (COLS - 1))
    }

    /// Column register `r` computed for no items: it holds no values, and a denominator that
    /// costs nothing to bring another column to. No jump.
    #[inline(always)]
    fn no_lanes(&mut self, r: R) -> Option<R> {
        if let Some(c) = self.col_mut(r) {
            c.clear();
        }
        None
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
        r.cols.fill(Col::junk());
        r.give_back();
    }

    /// Keeps the registers for this thread's next run.
    pub(super) fn give_back(self: Box<Self>) {
        // A thread being torn down drops them.
        let _kept = REGS.try_with(|r| r.set(Some(self)));
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
        let text = include_str!("../../../../rules/reg366.merit");
        let (rs, _) = crate::compile::compile("reg366.merit", text).expect("compiles");
        let plan = rs.fast.as_ref().expect("plan");
        let flat = plan.flat.as_ref().expect("flat");
        for (i, ins) in flat.code.iter().enumerate() {
            println!("{i:4} {ins:?}");
        }
        println!("trees {} {}", flat.trees_b.len(), flat.trees_n.len());
    }
}
