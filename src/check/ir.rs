//! The checked model: resolved, typed rules. Names have become slots and ids; no string is
//! looked up at evaluation time.

use crate::num::{Num, Rounding};
use crate::source::Span;

/// Index of a record type in [`Schema::records`]; 0 is the root record.
pub type RecordTypeId = usize;

/// The record schema a rule set reads.
#[derive(Clone, Debug)]
pub struct Schema {
    /// Record types; index 0 is the root, nested records and list items follow.
    pub records: Vec<RecordType>,
    /// Enum types.
    pub enums: Vec<EnumType>,
    /// Level ids, best first, then outcomes outside the order (for `level` fields only the first
    /// `ordered_levels` count).
    pub levels: Vec<String>,
    /// How many of `levels` are ordered levels.
    pub ordered_levels: usize,
}

/// One record type.
#[derive(Clone, Debug)]
pub struct RecordType {
    /// Fields in declaration order (the slot is the index).
    pub fields: Vec<Field>,
}

/// A declared enum.
#[derive(Clone, Debug)]
pub struct EnumType {
    /// Its values in declaration order.
    pub values: Vec<String>,
}

/// Field roles of DESIGN.md "Settled interfaces".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The person or unit classified.
    Subject,
    /// The period; its text maps to a reference date.
    Period,
    /// A cohort key.
    Cohort,
}

/// A field of a record type.
#[derive(Clone, Debug)]
pub struct Field {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: FieldType,
    /// May be absent (declared with `?` and no default).
    pub optional: bool,
    /// Value when absent.
    pub default: Option<Const>,
    /// Role, on root fields.
    pub role: Option<Role>,
    /// Declaration.
    pub span: Span,
}

/// A field's type, with its constraints.
#[derive(Clone, Debug)]
pub enum FieldType {
    /// Text (NFC-normalised on input).
    Text,
    /// true / false.
    Bool,
    /// A whole number, with inclusive/exclusive bounds.
    Integer(Bounds),
    /// A decimal number, read exactly.
    Decimal(Bounds),
    /// `YYYY-MM-DD`.
    Date,
    /// One of the rule set's ordered levels.
    Level,
    /// One of an enum's values.
    Enum(usize),
    /// A list of records.
    List(RecordTypeId),
    /// A nested record.
    Record(RecordTypeId),
}

/// Numeric bounds on a field.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bounds {
    /// Lower bound and whether it is included.
    pub min: Option<(Num, bool)>,
    /// Upper bound and whether it is included.
    pub max: Option<(Num, bool)>,
}

/// Unicode NFC form of a text (record text and rule literals compare in this form).
pub fn nfc(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfc().collect()
}

impl Bounds {
    /// Whether a number lies within the bounds.
    pub fn contains(&self, n: &Num) -> bool {
        use std::cmp::Ordering::*;
        let lo = match self.min {
            None => true,
            Some((m, incl)) => matches!((n.cmp(&m), incl), (Ok(Greater), _) | (Ok(Equal), true)),
        };
        let hi = match self.max {
            None => true,
            Some((m, incl)) => matches!((n.cmp(&m), incl), (Ok(Less), _) | (Ok(Equal), true)),
        };
        lo && hi
    }

    /// A human description, e.g. `between 0 and 30`.
    pub fn describe(&self) -> String {
        match (self.min, self.max) {
            (Some((a, true)), Some((b, true))) => format!("between {a} and {b}"),
            (Some((a, inc)), None) => {
                format!("{} {a}", if inc { "at least" } else { "greater than" })
            }
            (None, Some((b, inc))) => format!("{} {b}", if inc { "at most" } else { "less than" }),
            (Some((a, ai)), Some((b, bi))) => {
                format!("{} {a} and {} {b}", if ai { "at least" } else { "greater than" }, if bi { "at most" } else { "less than" })
            }
            (None, None) => "any number".to_string(),
        }
    }
}

/// The type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// true / false
    Bool,
    /// exact number
    Num,
    /// text
    Text,
    /// date
    Date,
    /// enum value (enum index)
    Enum(usize),
    /// a level or outcome
    Level,
    /// a list of records of a type
    List(RecordTypeId),
    /// a record of a type
    Record(RecordTypeId),
}

/// A type and whether the value may be absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Type {
    /// The value type.
    pub ty: Ty,
    /// May be absent.
    pub optional: bool,
}

/// A constant value.
#[derive(Clone, Debug)]
pub enum Const {
    /// absent
    Absent,
    /// bool
    Bool(bool),
    /// number
    Num(Num),
    /// text
    Text(String),
    /// date (days since 1970-01-01)
    Date(i32),
    /// enum value: (enum type, value index)
    Enum(u16, u16),
    /// level index
    Level(u8),
    /// empty list (the only list default)
    EmptyList,
}

/// Builtin functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `round(x, places, mode)`
    Round(u32, Rounding),
    /// `min(a, b, ...)` over numbers, dates or levels
    Min,
    /// `max(a, b, ...)`
    Max,
    /// `clamp(x, lo, hi)`
    Clamp,
    /// `abs(x)`
    Abs,
    /// `floor(x)`
    Floor,
    /// `ceil(x)`
    Ceil,
    /// `year(date)`
    Year,
    /// `period_end(text)`
    PeriodEnd,
    /// `period_kind(text)`
    PeriodKind,
}

/// Operators: the syntax's own, which the checker keeps once the operand types fit.
pub use crate::syntax::ast::BinOp as Op;

/// Aggregate kinds (see [`crate::syntax::ast::AggKind`]).
pub use crate::syntax::ast::AggKind;

/// A resolved expression.
#[derive(Clone, Debug)]
pub enum Ex {
    /// A constant.
    Const(Const),
    /// A field of the record in scope frame `frame` (0 = the root record).
    Field {
        /// Scope frame.
        frame: u8,
        /// Field slot.
        slot: u16,
    },
    /// A field of a nested record value.
    SubField(Box<Ex>, u16),
    /// A top-level named value.
    Let(usize),
    /// An item-level value of the item in scope frame `frame`.
    ItemLet {
        /// Scope frame holding the item.
        frame: u8,
        /// Item-let id.
        id: usize,
    },
    /// `not`
    Not(Box<Ex>),
    /// unary minus
    Neg(Box<Ex>),
    /// `present` (true) / `absent` (false)
    Present(Box<Ex>, bool),
    /// `in [..]`
    In(Box<Ex>, Vec<Ex>),
    /// binary operator
    Bin(Op, Box<Ex>, Box<Ex>),
    /// `if`
    If(Box<Ex>, Box<Ex>, Box<Ex>),
    /// `match` / table lookup: arms of constants, then the fallback.
    Match(Box<Ex>, Vec<(Vec<Const>, Ex)>, Option<Box<Ex>>),
    /// aggregate over a list; items are pushed as a new scope frame.
    Agg {
        /// Kind.
        kind: AggKind,
        /// The list expression (evaluated in the enclosing scope).
        list: Box<Ex>,
        /// Filter (in item scope).
        filter: Option<Box<Ex>>,
        /// Item expression (in item scope).
        item: Option<Box<Ex>>,
    },
    /// builtin call
    Call(Builtin, Vec<Ex>),
}

impl Ex {
    /// Calls `f` on each direct sub-expression, in source order (constants of `match` arms are
    /// not expressions).
    pub fn for_each_child<'e>(&'e self, mut f: impl FnMut(&'e Ex)) {
        match self {
            Ex::Const(_) | Ex::Field { .. } | Ex::Let(_) | Ex::ItemLet { .. } => {}
            Ex::SubField(a, _) | Ex::Not(a) | Ex::Neg(a) | Ex::Present(a, _) => f(a),
            Ex::In(a, xs) => {
                f(a);
                xs.iter().for_each(f);
            }
            Ex::Bin(_, a, b) => {
                f(a);
                f(b);
            }
            Ex::If(c, a, b) => {
                f(c);
                f(a);
                f(b);
            }
            Ex::Match(x, arms, fallback) => {
                f(x);
                arms.iter().for_each(|(_, e)| f(e));
                if let Some(e) = fallback {
                    f(e);
                }
            }
            Ex::Agg { list, filter, item, .. } => {
                f(list);
                if let Some(e) = filter {
                    f(e);
                }
                if let Some(e) = item {
                    f(e);
                }
            }
            Ex::Call(_, args) => args.iter().for_each(f),
        }
    }
}

/// What kind of named value a let is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LetKind {
    /// `let`
    Let,
    /// `criterion`
    Criterion,
    /// `score`
    Score,
}

/// A top-level named value.
#[derive(Clone, Debug)]
pub struct LetDef {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: LetKind,
    /// Criterion label.
    pub label: Option<String>,
    /// Criterion maximum.
    pub max: Option<Num>,
    /// Type.
    pub ty: Type,
    /// Expression (root scope).
    pub expr: Ex,
    /// Declaration.
    pub span: Span,
    /// Record fields it reads, directly or through other values (for the trace).
    pub inputs: Vec<String>,
}

/// An item-level named value (`let tasks.late = ...`).
#[derive(Clone, Debug)]
pub struct ItemLetDef {
    /// The list field (root slot).
    pub list_slot: u16,
    /// Name.
    pub name: String,
    /// Type.
    pub ty: Type,
    /// Expression, in scope [root, item].
    pub expr: Ex,
    /// Declaration.
    pub span: Span,
}

/// A message with `{expr}` placeholders, split into parts.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// Literal text and expressions, in order.
    pub parts: Vec<MessagePart>,
}

/// A piece of a message.
#[derive(Clone, Debug)]
pub enum MessagePart {
    /// Literal text.
    Text(String),
    /// A value to render.
    Expr(Ex),
}

/// A flag raised by a rule.
#[derive(Clone, Debug)]
pub struct FlagSpec {
    /// Flag code.
    pub code: String,
    /// Only when the rule lowered the level.
    pub if_lowered: bool,
}

/// Which stage a decision rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// Early outcome.
    Eligibility,
    /// Forces a level.
    Veto,
    /// Caps the level.
    Cap,
    /// Raises a flag only.
    Flag,
}

/// An eligibility, veto, cap or flag rule.
#[derive(Clone, Debug)]
pub struct DecisionRule {
    /// Rule id.
    pub name: String,
    /// Stage.
    pub kind: RuleKind,
    /// Condition.
    pub when: Ex,
    /// Eligibility/veto: the outcome; cap: the level.
    pub target: Option<Ex>,
    /// Flag.
    pub flag: Option<FlagSpec>,
    /// `because`
    pub because: Message,
    /// Declaration.
    pub span: Span,
}

/// `invalid path when cond because "..."`
#[derive(Clone, Debug)]
pub struct InvalidRule {
    /// Root field slot.
    pub field: u16,
    /// For `list[].field`: the item field slot.
    pub item_field: Option<u16>,
    /// Path text as written, e.g. `quarters[].total`.
    pub path: String,
    /// Condition (in item scope for item fields).
    pub when: Ex,
    /// Message.
    pub because: Message,
    /// Declaration.
    pub span: Span,
}

/// A band of the classification.
#[derive(Clone, Debug)]
pub struct BandDef {
    /// Level index.
    pub level: u8,
    /// `(op, threshold)`; `None` for `otherwise`.
    pub threshold: Option<(Op, Num)>,
    /// Gate condition and message.
    pub gate: Option<(Ex, Message, Span)>,
    /// Declaration.
    pub span: Span,
}

/// `classify by score { ... }`
#[derive(Clone, Debug)]
pub struct Classify {
    /// The score let.
    pub score: usize,
    /// Flag when a gate lowers the level.
    pub flag: Option<FlagSpec>,
    /// Bands, best first.
    pub bands: Vec<BandDef>,
    /// Declaration.
    pub span: Span,
}

/// How a quota's limit is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaRounding {
    /// floor
    Down,
    /// ceiling
    Up,
    /// half up
    Nearest,
}

/// A quota over a cohort.
#[derive(Clone, Debug)]
pub struct QuotaDef {
    /// Quota id.
    pub name: String,
    /// Level limited.
    pub level: u8,
    /// Ratio, e.g. 1/5.
    pub ratio: Num,
    /// Level whose count is the base.
    pub base: u8,
    /// Base counted after demotion.
    pub base_final: bool,
    /// Rounding of the limit.
    pub rounding: QuotaRounding,
    /// Scope key field slots (root).
    pub per: Vec<u16>,
    /// Scope key names.
    pub per_names: Vec<String>,
    /// Record-level condition for taking part.
    pub applies: Option<Ex>,
    /// Rank keys; `true` = descending.
    pub rank: Vec<(Ex, bool)>,
    /// Demote every candidate tied across the cut.
    pub ties_demote_all: bool,
    /// Flag for ties.
    pub tie_flag: Option<String>,
    /// Level demoted to.
    pub demote_to: u8,
    /// Flag for demotions.
    pub demote_flag: Option<String>,
    /// Whether a cohort exemption is honoured.
    pub exemption: bool,
    /// Declaration.
    pub span: Span,
}
