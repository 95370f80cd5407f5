//! The syntax tree of one rule file: what was written, with spans, before any name is resolved.

use crate::source::Span;

/// A name as written, with where it was written.
#[derive(Clone, Debug)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// A whole rule file.
#[derive(Clone, Debug)]
pub struct RuleFile {
    /// Rule-set id (an identifier).
    pub id: Ident,
    /// Human title.
    pub title: String,
    /// Version text, e.g. "2025.1".
    pub version: String,
    /// Effective date, `YYYY-MM-DD`.
    pub effective: (String, Span),
    /// Every declaration after the header, in file order.
    pub items: Vec<Item>,
}

/// One declaration.
#[derive(Clone, Debug)]
pub enum Item {
    /// `record { ... }`
    Record(Vec<FieldDecl>, Span),
    /// `levels { ... }` (ordered best first)
    Levels(Vec<LevelDecl>),
    /// `outcomes { ... }` (outside the order)
    Outcomes(Vec<LevelDecl>),
    /// `let name = expr` or `let list.name = expr`
    Let(LetDecl),
    /// `criterion name "label" max N = expr`
    Criterion(LetDecl),
    /// `score name = expr`
    Score(LetDecl),
    /// `table name { pattern => value, ... }`
    Table(TableDecl),
    /// `eligibility name when cond then outcome ...`
    Eligibility(RuleDecl),
    /// `invalid path when cond because "..."`
    Invalid(InvalidDecl),
    /// `classify by score { bands }`
    Classify(ClassifyDecl),
    /// `veto name when cond [then level] ...`
    Veto(RuleDecl),
    /// `cap name at level when cond ...`
    Cap(RuleDecl),
    /// `flag name "CODE" when cond because "..."`
    Flag(RuleDecl),
    /// `quota name { ... }`
    Quota(QuotaDecl),
    /// `fixture name = { ... }`
    Fixture(Ident, GivenValue),
    /// `test "name" { given ... expect ... }`
    Test(TestDecl),
}

/// A field of the record schema.
#[derive(Clone, Debug)]
pub struct FieldDecl {
    /// Field name.
    pub name: Ident,
    /// Declared type.
    pub ty: TypeExpr,
    /// `?`: may be absent.
    pub optional: bool,
    /// `= value`
    pub default: Option<Literal>,
    /// `role subject|period|cohort`
    pub role: Option<(String, Span)>,
    /// The whole declaration.
    pub span: Span,
}

/// A type as written.
#[derive(Clone, Debug)]
pub enum TypeExpr {
    /// `text`, `bool`, `integer`, `decimal`, `date`, `level`, with an optional range.
    Scalar(String, Option<RangeDecl>, Span),
    /// `one of a, b, c`
    Enum(Vec<Ident>),
    /// `list of { ... }`
    List(Vec<FieldDecl>),
    /// `{ ... }`
    Record(Vec<FieldDecl>),
}

/// A numeric range on a field.
#[derive(Clone, Debug)]
pub enum RangeDecl {
    /// `in a..b`, both ends included.
    Between(String, String),
    /// `>= a`, `> a`, ...
    Bound(String, String),
}

/// A level or outcome declaration.
#[derive(Clone, Debug)]
pub struct LevelDecl {
    /// Level id.
    pub name: Ident,
    /// Label (any language).
    pub label: String,
}

/// `let`, `criterion` and `score` share this shape.
#[derive(Clone, Debug)]
pub struct LetDecl {
    /// For `let list.name`, the list.
    pub list: Option<Ident>,
    /// The value's name.
    pub name: Ident,
    /// Criterion label.
    pub label: Option<String>,
    /// Criterion maximum.
    pub max: Option<(String, Span)>,
    /// The expression.
    pub expr: Expr,
    /// The whole declaration.
    pub span: Span,
}

/// `table name { arms }`, used as `name(x)`.
#[derive(Clone, Debug)]
pub struct TableDecl {
    /// Table name.
    pub name: Ident,
    /// Its entries.
    pub arms: Vec<Arm>,
    /// The whole declaration.
    pub span: Span,
}

/// Eligibility, veto, cap and flag rules.
#[derive(Clone, Debug)]
pub struct RuleDecl {
    /// Rule id.
    pub name: Ident,
    /// The condition.
    pub when: Expr,
    /// Eligibility / veto: the outcome; cap: the level expression.
    pub target: Option<Expr>,
    /// Flag code raised, and whether only when the level was lowered.
    pub flag: Option<FlagClause>,
    /// The `because` message, with its span.
    pub because: Option<(String, Span)>,
    /// The whole declaration.
    pub span: Span,
}

/// `flag "CODE" [if lowered]`
#[derive(Clone, Debug)]
pub struct FlagClause {
    /// The code.
    pub code: String,
    /// Raised only when the rule lowered the level.
    pub if_lowered: bool,
}

/// `invalid path when cond because "..."`
#[derive(Clone, Debug)]
pub struct InvalidDecl {
    /// Top-level field, or list.
    pub field: Ident,
    /// For `list[].field`, the item field.
    pub item_field: Option<Ident>,
    /// Condition (in item scope for item fields).
    pub when: Expr,
    /// Message.
    pub because: (String, Span),
    /// The whole declaration.
    pub span: Span,
}

/// `classify by score { ... }`
#[derive(Clone, Debug)]
pub struct ClassifyDecl {
    /// The score classified.
    pub by: Ident,
    /// Flag raised when a gate lowers the level.
    pub flag: Option<FlagClause>,
    /// Bands, best first.
    pub bands: Vec<Band>,
    /// The whole declaration.
    pub span: Span,
}

/// One band.
#[derive(Clone, Debug)]
pub struct Band {
    /// The level.
    pub level: Ident,
    /// `when score OP expr`; `None` for `otherwise`.
    pub threshold: Option<(Ident, String, Expr)>,
    /// `require cond because "..."`
    pub gate: Option<(Expr, Option<(String, Span)>)>,
    /// The whole band.
    pub span: Span,
}

/// `quota name { ... }`
#[derive(Clone, Debug)]
pub struct QuotaDecl {
    /// Quota id.
    pub name: Ident,
    /// Level limited.
    pub level: Ident,
    /// Ratio text, e.g. "20%".
    pub ratio: (String, Span),
    /// Base level counted.
    pub base: Ident,
    /// Base counted after demotion.
    pub base_final: bool,
    /// `down`, `up` or `nearest`.
    pub rounding: String,
    /// Scope keys.
    pub per: Vec<Ident>,
    /// Record-level condition for taking part.
    pub applies: Option<Expr>,
    /// Ranking keys; `true` means descending.
    pub rank: Vec<(Expr, bool)>,
    /// `true`: every tied candidate across the cut is demoted.
    pub ties_demote_all: bool,
    /// Flag for ties.
    pub tie_flag: Option<FlagClause>,
    /// Level demoted to.
    pub demote_to: Ident,
    /// Flag for demotion.
    pub demote_flag: Option<FlagClause>,
    /// Whether an authority's exemption is honoured.
    pub exemption: bool,
    /// The whole declaration.
    pub span: Span,
}

/// A test's record: a fixture, a fixture with overrides, or a literal.
#[derive(Clone, Debug)]
pub struct GivenValue {
    /// `name` or `name with {...}`
    pub base: Option<Ident>,
    /// The literal object (overrides when `base` is set).
    pub object: Option<Literal>,
    /// Where it was written.
    pub span: Span,
}

/// `test "name" { ... }`
#[derive(Clone, Debug)]
pub struct TestDecl {
    /// Test name.
    pub name: String,
    /// One record, or a cohort.
    pub given: Vec<GivenValue>,
    /// `true` for `cohort [...]`.
    pub cohort: bool,
    /// Cohort exemption: `Some(None)` unlimited, `Some(Some(n))` at most n.
    pub exemption: Option<Option<String>>,
    /// What is expected.
    pub expect: Expect,
    /// The whole test.
    pub span: Span,
}

/// What a test expects.
#[derive(Clone, Debug)]
pub enum Expect {
    /// One outcome, optionally with total, flags and deciding rules.
    One {
        /// Outcome id.
        outcome: Ident,
        /// Expected total text.
        total: Option<String>,
        /// Expected flags (the whole set).
        flags: Option<Vec<String>>,
        /// Rules expected to decide it.
        by: Vec<Ident>,
    },
    /// One outcome per cohort member.
    Cohort(Vec<Ident>),
    /// The record is rejected at this field path.
    Invalid(String),
}

/// A literal value in a record literal or default.
#[derive(Clone, Debug)]
pub enum Literal {
    /// `{ a: 1 }`
    Object(Vec<(Ident, Literal)>, Span),
    /// `[ ... ]` with `N * item` already expanded.
    Array(Vec<Literal>, Span),
    /// A number, as written.
    Number(String, Span),
    /// A string, unescaped.
    Text(String, Span),
    /// A date, `YYYY-MM-DD`.
    Date(String, Span),
    /// `true` / `false`
    Bool(bool, Span),
    /// A bare name: an enum value or level.
    Name(String, Span),
    /// `null`
    Null(Span),
}

impl Literal {
    /// Where it was written.
    pub fn span(&self) -> Span {
        match self {
            Literal::Object(_, s)
            | Literal::Array(_, s)
            | Literal::Number(_, s)
            | Literal::Text(_, s)
            | Literal::Date(_, s)
            | Literal::Bool(_, s)
            | Literal::Name(_, s)
            | Literal::Null(s) => *s,
        }
    }
}

/// An expression with its span.
#[derive(Clone, Debug)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
    /// Nesting depth: 1 for a leaf (bounded by the parser, so later stages may recurse).
    pub depth: u32,
}

impl Expr {
    /// A node over already built children; its depth is one more than its deepest child.
    pub fn node(kind: ExprKind, span: Span) -> Expr {
        let child = |e: &Expr| e.depth;
        let depth = match &kind {
            ExprKind::Number(_) | ExprKind::Text(_) | ExprKind::Bool(_) | ExprKind::Name(_) => 0,
            ExprKind::Field(b, _) | ExprKind::Not(b) | ExprKind::Neg(b) | ExprKind::Present(b, _) => child(b),
            ExprKind::In(b, xs) => xs.iter().map(child).chain([child(b)]).max().unwrap_or(0),
            ExprKind::Binary(_, a, b) => child(a).max(child(b)),
            ExprKind::If(a, b, c) => child(a).max(child(b)).max(child(c)),
            ExprKind::Match(s, arms) => arms.iter().map(|a| child(&a.value)).chain([child(s)]).max().unwrap_or(0),
            ExprKind::Aggregate { filter, item, .. } => filter.iter().chain(item.iter()).map(|e| child(e)).max().unwrap_or(0),
            ExprKind::Call(_, args) => args.iter().map(child).max().unwrap_or(0),
        };
        Expr { kind, span, depth: depth.saturating_add(1) }
    }
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `??`
    Coalesce,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Coalesce => "??",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    /// A comparison operator from its text.
    pub fn from_cmp(text: &str) -> Option<BinOp> {
        Some(match text {
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            _ => return None,
        })
    }
}

/// Aggregates over a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// `count(list where c)`
    Count,
    /// `sum(list: e)`
    Sum,
    /// `avg(list: e)` (absent over no items)
    Avg,
    /// `min(list: e)` (absent over no items)
    Min,
    /// `max(list: e)` (absent over no items)
    Max,
    /// `all(list: c)` (true over no items)
    All,
    /// `any(list: c)` / `any(list where c)`
    Any,
}

/// A pattern of a `match` arm or table entry.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// A bare name (enum value or level).
    Name(Ident),
    /// A text literal.
    Text(String, Span),
    /// A number.
    Number(String, Span),
    /// `true` / `false`
    Bool(bool, Span),
}

/// A `match` arm or table entry; `patterns` empty means `_`.
#[derive(Clone, Debug)]
pub struct Arm {
    /// Alternatives; empty for the wildcard.
    pub patterns: Vec<Pattern>,
    /// The value.
    pub value: Expr,
}

/// Expression forms.
#[derive(Clone, Debug)]
pub enum ExprKind {
    /// Number literal, as written (may end in `%`).
    Number(String),
    /// Text literal.
    Text(String),
    /// `true` / `false`
    Bool(bool),
    /// A name.
    Name(String),
    /// `e.field`
    Field(Box<Expr>, Ident),
    /// `not e`
    Not(Box<Expr>),
    /// `-e`
    Neg(Box<Expr>),
    /// `e present` (true) / `e absent` (false)
    Present(Box<Expr>, bool),
    /// `e in [a, b]`
    In(Box<Expr>, Vec<Expr>),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `if c then a else b`
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `match e { arms }`
    Match(Box<Expr>, Vec<Arm>),
    /// `agg(list where filter: item)`
    Aggregate {
        /// Which aggregate.
        kind: AggKind,
        /// The list.
        list: Ident,
        /// `as name`: item fields are reached as `name.field` only.
        alias: Option<Ident>,
        /// `where` filter.
        filter: Option<Box<Expr>>,
        /// Per-item expression.
        item: Option<Box<Expr>>,
    },
    /// `f(args)`
    Call(Ident, Vec<Expr>),
}
