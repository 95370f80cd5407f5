//! Check: resolve names, check types, and check levels, bands and quotas, reporting every problem
//! of a file in one run. The result is the [`Checked`] model that [`crate::compile`] turns into a
//! rule set.

mod expr;
pub mod ir;
mod schema;

use crate::date;
use crate::diagnostic::{Diagnostic, did_you_mean, has_errors};
use crate::num::Num;
use crate::source::{SourceFile, Span};
use crate::syntax::ast::{self, Item};
use ir::*;
use std::collections::{HashMap, HashSet};

/// A rule file after checking: every name resolved, every expression typed.
#[derive(Clone, Debug)]
pub struct Checked {
    /// Rule-set id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Version text.
    pub version: String,
    /// Effective date (days since 1970-01-01).
    pub effective: i32,
    /// Record schema.
    pub schema: Schema,
    /// Labels of `schema.levels`, in the same order.
    pub level_labels: Vec<String>,
    /// Top-level named values.
    pub lets: Vec<LetDef>,
    /// Item-level named values.
    pub item_lets: Vec<ItemLetDef>,
    /// Criteria (let ids), in declaration order.
    pub criteria: Vec<usize>,
    /// Eligibility rules in file order.
    pub eligibility: Vec<DecisionRule>,
    /// Validity rules in file order.
    pub invalid: Vec<InvalidRule>,
    /// The classification.
    pub classify: Classify,
    /// Vetoes.
    pub vetoes: Vec<DecisionRule>,
    /// Caps.
    pub caps: Vec<DecisionRule>,
    /// Flag-only rules.
    pub flags: Vec<DecisionRule>,
    /// Quotas.
    pub quotas: Vec<QuotaDef>,
    /// Fixtures, by name.
    pub fixtures: Vec<(String, ast::GivenValue)>,
    /// Worked cases.
    pub tests: Vec<ast::TestDecl>,
    /// Root slot of the `role subject` field.
    pub subject_slot: Option<u16>,
    /// Root slot of the `role period` field.
    pub period_slot: Option<u16>,
}

/// Checks a parsed rule file. Returns the checked model when there is no error, and every
/// diagnostic (errors and warnings) either way.
pub fn check(file: &SourceFile, ast: &ast::RuleFile) -> (Option<Checked>, Vec<Diagnostic>) {
    let mut c = Checker::new(file, ast);
    let checked = c.run();
    let mut diags = c.diags;
    diags.sort_by_key(|d| (d.span.lo, d.span.hi));
    if has_errors(&diags) { (None, diags) } else { (checked, diags) }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Todo,
    Doing,
    Done,
}

/// One frame of name scope: the root record, or an item of a list inside an aggregate.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub record: RecordTypeId,
    pub alias: Option<String>,
    /// For items of a root list: the list's root slot (item lets are found by it).
    pub list_slot: Option<u16>,
    /// Optional fields of this frame known to be present here.
    pub narrowed: Vec<String>,
}

pub(crate) struct Checker<'a> {
    pub file: &'a SourceFile,
    pub ast: &'a ast::RuleFile,
    pub diags: Vec<Diagnostic>,
    pub schema: Schema,
    pub level_spans: Vec<Span>,
    pub level_labels: Vec<String>,
    // Top-level values.
    pub let_decls: Vec<&'a ast::LetDecl>,
    pub let_kinds: Vec<LetKind>,
    pub let_index: HashMap<String, usize>,
    pub let_state: Vec<State>,
    pub let_defs: Vec<Option<LetDef>>,
    // Item-level values.
    pub item_decls: Vec<(u16, &'a ast::LetDecl)>,
    pub item_index: HashMap<(u16, String), usize>,
    pub item_state: Vec<State>,
    pub item_defs: Vec<Option<ItemLetDef>>,
    pub tables: HashMap<String, &'a ast::TableDecl>,
    pub used_lets: HashSet<usize>,
    /// How many named values are being checked inside one another right now.
    pub depth: usize,
    /// Height of each value: 1 + the height of the tallest value it reads.
    pub let_height: Vec<usize>,
    /// Height of each item value.
    pub item_height: Vec<usize>,
    /// Tallest value read so far by the value being checked.
    pub height_acc: usize,
}

/// Longest chain of named values that depend on one another (bounds recursion everywhere).
const MAX_VALUE_DEPTH: usize = 32;

impl<'a> Checker<'a> {
    fn new(file: &'a SourceFile, ast: &'a ast::RuleFile) -> Checker<'a> {
        Checker {
            file,
            ast,
            diags: Vec::new(),
            schema: Schema { records: vec![RecordType { fields: Vec::new() }], enums: Vec::new(), levels: Vec::new(), ordered_levels: 0 },
            level_spans: Vec::new(),
            level_labels: Vec::new(),
            let_decls: Vec::new(),
            let_kinds: Vec::new(),
            let_index: HashMap::new(),
            let_state: Vec::new(),
            let_defs: Vec::new(),
            item_decls: Vec::new(),
            item_index: HashMap::new(),
            item_state: Vec::new(),
            item_defs: Vec::new(),
            tables: HashMap::new(),
            used_lets: HashSet::new(),
            depth: 0,
            let_height: Vec::new(),
            item_height: Vec::new(),
            height_acc: 0,
        }
    }

    pub(crate) fn error(&mut self, code: &'static str, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, span, msg));
        let last = self.diags.len() - 1;
        #[expect(clippy::indexing_slicing, reason = "the element was pushed just above")]
        &mut self.diags[last]
    }

    pub(crate) fn level_index(&self, name: &str) -> Option<u8> {
        self.schema.levels.iter().position(|l| l == name).and_then(|i| u8::try_from(i).ok())
    }

    fn level_or_error(&mut self, id: &ast::Ident) -> Option<u8> {
        let found = self.level_index(&id.name);
        if found.is_none() {
            let hint = did_you_mean(&id.name, self.schema.levels.iter().map(String::as_str));
            let d = self.error("unknown-level", id.span, format!("unknown level `{}`", id.name));
            d.set_label("not a declared level or outcome");
            d.help = hint;
        }
        found
    }

    fn run(&mut self) -> Option<Checked> {
        let ast = self.ast;
        // 1. Declarations: schema, levels, names.
        let mut record_seen = false;
        for item in &ast.items {
            match item {
                Item::Record(fields, span) => {
                    if record_seen {
                        self.error("duplicate", *span, "a rule set has one `record` schema");
                    }
                    record_seen = true;
                    let root = schema::build_fields(self, fields, true);
                    if let Some(r) = self.schema.records.get_mut(0) {
                        r.fields = root;
                    }
                }
                Item::Levels(ls) | Item::Outcomes(ls) => {
                    for l in ls {
                        if self.level_index(&l.name.name).is_some() {
                            self.error("duplicate", l.name.span, format!("level `{}` is declared twice", l.name.name));
                            continue;
                        }
                        if matches!(item, Item::Levels(_)) && self.schema.levels.len() > self.schema.ordered_levels {
                            self.error("levels-order", l.name.span, "declare `levels` before `outcomes`");
                        }
                        self.schema.levels.push(l.name.name.clone());
                        self.level_labels.push(l.label.clone());
                        self.level_spans.push(l.name.span);
                        if matches!(item, Item::Levels(_)) {
                            self.schema.ordered_levels += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        if !record_seen {
            self.error("missing-record", ast.id.span, "the rule set declares no `record` schema");
        }
        if self.schema.ordered_levels == 0 {
            self.error("missing-levels", ast.id.span, "the rule set declares no `levels`");
        }
        if self.schema.levels.len() > 200 {
            self.error("too-many-levels", ast.id.span, "at most 200 levels and outcomes");
        }
        schema::resolve_level_defaults(self);

        for item in &ast.items {
            match item {
                Item::Let(d) | Item::Criterion(d) | Item::Score(d) => {
                    let kind = match item {
                        Item::Criterion(_) => LetKind::Criterion,
                        Item::Score(_) => LetKind::Score,
                        _ => LetKind::Let,
                    };
                    if let Some(list) = &d.list {
                        let Some(slot) = self.root_list_slot(list) else {
                            continue;
                        };
                        let key = (slot, d.name.name.clone());
                        if self.item_index.contains_key(&key) {
                            self.error("duplicate", d.name.span, format!("`{}.{}` is defined twice", list.name, d.name.name));
                            continue;
                        }
                        if let Some(rt) = self.list_item_type(slot)
                            && self.schema.records.get(rt).is_some_and(|r| r.fields.iter().any(|f| f.name == d.name.name))
                        {
                            self.error("duplicate", d.name.span, format!("`{}` is already a field of `{}` items", d.name.name, list.name));
                            continue;
                        }
                        self.item_index.insert(key, self.item_decls.len());
                        self.item_decls.push((slot, d));
                        self.item_state.push(State::Todo);
                        self.item_defs.push(None);
                        self.item_height.push(0);
                    } else {
                        if self.let_index.contains_key(&d.name.name) || self.root_field(&d.name.name).is_some() {
                            self.error("duplicate", d.name.span, format!("`{}` is already defined", d.name.name));
                            continue;
                        }
                        self.let_index.insert(d.name.name.clone(), self.let_decls.len());
                        self.let_decls.push(d);
                        self.let_kinds.push(kind);
                        self.let_state.push(State::Todo);
                        self.let_defs.push(None);
                        self.let_height.push(0);
                    }
                }
                Item::Table(t) if self.tables.insert(t.name.name.clone(), t).is_some() => {
                    self.error("duplicate", t.name.span, format!("table `{}` is defined twice", t.name.name));
                }
                _ => {}
            }
        }

        // 2. Values, in dependency order (cycles reported).
        for i in 0..self.let_decls.len() {
            self.check_let(i);
        }
        for i in 0..self.item_decls.len() {
            self.check_item_let(i);
        }

        // 3. Decisions.
        let root = || vec![Frame { record: 0, alias: None, list_slot: None, narrowed: Vec::new() }];
        let mut eligibility = Vec::new();
        let mut invalid = Vec::new();
        let mut classify = None;
        let mut vetoes = Vec::new();
        let mut caps = Vec::new();
        let mut flags = Vec::new();
        let mut quotas = Vec::new();
        let mut fixtures: Vec<(String, ast::GivenValue)> = Vec::new();
        let mut tests = Vec::new();
        let mut names: HashMap<String, Span> = HashMap::new();
        let mut reachable: HashSet<u8> = HashSet::new();
        let mut any_level_reachable = false;
        for item in &ast.items {
            match item {
                Item::Eligibility(d) | Item::Veto(d) | Item::Cap(d) | Item::Flag(d) => {
                    if let Some(prev) = names.insert(d.name.name.clone(), d.name.span) {
                        self.error("duplicate", d.name.span, format!("rule `{}` is defined twice", d.name.name))
                            .secondary
                            .push((prev, "first defined here".into()));
                    }
                    let kind = match item {
                        Item::Eligibility(_) => RuleKind::Eligibility,
                        Item::Veto(_) => RuleKind::Veto,
                        Item::Cap(_) => RuleKind::Cap,
                        _ => RuleKind::Flag,
                    };
                    let mut frames = root();
                    let when = self.expect_ty(&d.when, &mut frames, Ty::Bool);
                    let target = match (&d.target, kind) {
                        (Some(t), RuleKind::Cap) => {
                            let (ex, ty) = self.expr(t, &mut frames, Some(Ty::Level));
                            if ty.is_some_and(|t| t.ty != Ty::Level) {
                                self.error("type-mismatch", t.span, "a cap is a level");
                            }
                            match &ex {
                                Ex::Const(Const::Level(l)) => {
                                    reachable.insert(*l);
                                }
                                _ => any_level_reachable = true,
                            }
                            Some(ex)
                        }
                        (Some(t), _) => {
                            let name = match &t.kind {
                                ast::ExprKind::Name(n) => n.clone(),
                                _ => String::new(),
                            };
                            let id = ast::Ident { name, span: t.span };
                            self.level_or_error(&id).map(|l| {
                                reachable.insert(l);
                                Ex::Const(Const::Level(l))
                            })
                        }
                        (None, RuleKind::Eligibility) => {
                            self.error("missing-outcome", d.span, "an eligibility rule names its outcome with `then`");
                            None
                        }
                        (None, RuleKind::Veto) => {
                            let lowest = self.schema.ordered_levels.checked_sub(1).and_then(|l| u8::try_from(l).ok());
                            lowest.map(|l| {
                                reachable.insert(l);
                                Ex::Const(Const::Level(l))
                            })
                        }
                        (None, _) => None,
                    };
                    let because = match &d.because {
                        Some((_, span)) => self.message(*span, &mut frames),
                        None => Message::default(),
                    };
                    let rule = DecisionRule {
                        name: d.name.name.clone(),
                        kind,
                        when,
                        target,
                        flag: d.flag.as_ref().map(|f| FlagSpec { code: f.code.clone(), if_lowered: f.if_lowered }),
                        because,
                        span: d.span,
                    };
                    match kind {
                        RuleKind::Eligibility => eligibility.push(rule),
                        RuleKind::Veto => vetoes.push(rule),
                        RuleKind::Cap => caps.push(rule),
                        RuleKind::Flag => flags.push(rule),
                    }
                }
                Item::Invalid(d) => {
                    if let Some(r) = self.invalid_rule(d) {
                        invalid.push(r);
                    }
                }
                Item::Classify(d) => {
                    if classify.is_some() {
                        self.error("duplicate", d.span, "a rule set has one `classify`");
                    }
                    classify = self.classify(d, &mut reachable);
                }
                Item::Quota(q) => {
                    if let Some(def) = self.quota(q) {
                        reachable.insert(def.demote_to);
                        quotas.push(def);
                    }
                }
                Item::Fixture(name, g) => {
                    if fixtures.iter().any(|(n, _)| n == &name.name) {
                        self.error("duplicate", name.span, format!("fixture `{}` is defined twice", name.name));
                    }
                    self.check_given(g, &fixtures);
                    fixtures.push((name.name.clone(), g.clone()));
                }
                Item::Test(t) => {
                    for g in &t.given {
                        self.check_given(g, &fixtures);
                    }
                    match &t.expect {
                        ast::Expect::One { outcome, by, .. } => {
                            self.level_or_error(outcome);
                            for b in by {
                                if !names.contains_key(&b.name) && !ast.items.iter().any(|i| rule_name(i) == Some(&b.name)) {
                                    let hint = did_you_mean(&b.name, names.keys().map(String::as_str));
                                    let d = self.error("unknown-rule", b.span, format!("unknown rule `{}`", b.name));
                                    if let Some(h) = hint {
                                        d.help = Some(h);
                                    }
                                }
                            }
                        }
                        ast::Expect::Cohort(levels) => {
                            for l in levels {
                                self.level_or_error(l);
                            }
                            if levels.len() != t.given.len() {
                                self.error(
                                    "test-shape",
                                    t.span,
                                    format!("the cohort has {} records but {} outcomes are expected", t.given.len(), levels.len()),
                                );
                            }
                        }
                        ast::Expect::Invalid(_) => {}
                    }
                    tests.push(t.clone());
                }
                _ => {}
            }
        }
        let classify = match classify {
            Some(c) => Some(c),
            None => {
                self.error("missing-classify", ast.id.span, "the rule set has no `classify by` block");
                None
            }
        };
        for e in &eligibility {
            if let Some(Ex::Const(Const::Level(l))) = e.target {
                reachable.insert(l);
            }
        }

        // 4. Levels no rule can reach, values nobody uses.
        if !any_level_reachable {
            for (i, name) in self.schema.levels.clone().iter().enumerate() {
                let Ok(l) = u8::try_from(i) else { continue };
                if !reachable.contains(&l) {
                    let span = self.level_spans.get(i).copied().unwrap_or_default();
                    self.diags.push(
                        Diagnostic::warning("unreachable-level", span, format!("no rule gives level `{name}`"))
                            .with_label("unreachable")
                            .with_help("add a band, an eligibility rule, a veto or a cap that gives it, or remove it"),
                    );
                }
            }
        }
        for (i, d) in self.let_decls.iter().enumerate() {
            if self.let_kinds.get(i) == Some(&LetKind::Let) && !self.used_lets.contains(&i) {
                self.diags.push(
                    Diagnostic::warning("unused-value", d.name.span, format!("`{}` is never used", d.name.name))
                        .with_label("defined here")
                        .with_help("remove it, or make it a `criterion` to show it in every answer"),
                );
            }
        }

        let effective = match date::parse_date(&ast.effective.0) {
            Some(d) => d,
            None => {
                self.error("bad-date", ast.effective.1, format!("`{}` is not a calendar date", ast.effective.0));
                0
            }
        };
        let root_fields = self.schema.records.first().map(|r| r.fields.clone()).unwrap_or_default();
        let slot_of_role = |role: Role| root_fields.iter().position(|f| f.role == Some(role)).and_then(|i| u16::try_from(i).ok());
        if has_errors(&self.diags) {
            return None;
        }
        let lets: Vec<LetDef> = self.let_defs.iter().flatten().cloned().collect();
        let item_lets: Vec<ItemLetDef> = self.item_defs.iter().flatten().cloned().collect();
        if lets.len() != self.let_defs.len() || item_lets.len() != self.item_defs.len() {
            return None;
        }
        let criteria = (0..lets.len()).filter(|&i| self.let_kinds.get(i) == Some(&LetKind::Criterion)).collect();
        Some(Checked {
            id: ast.id.name.clone(),
            title: ast.title.clone(),
            version: ast.version.clone(),
            effective,
            schema: self.schema.clone(),
            level_labels: self.level_labels.clone(),
            lets,
            item_lets,
            criteria,
            eligibility,
            invalid,
            classify: classify?,
            vetoes,
            caps,
            flags,
            quotas,
            fixtures,
            tests,
            subject_slot: slot_of_role(Role::Subject),
            period_slot: slot_of_role(Role::Period),
        })
    }

    pub(crate) fn root_field(&self, name: &str) -> Option<(u16, &Field)> {
        let r = self.schema.records.first()?;
        let i = r.fields.iter().position(|f| f.name == name)?;
        Some((u16::try_from(i).ok()?, r.fields.get(i)?))
    }

    fn root_list_slot(&mut self, list: &ast::Ident) -> Option<u16> {
        match self.root_field(&list.name) {
            Some((slot, f)) if matches!(f.ty, FieldType::List(_)) => Some(slot),
            _ => {
                let lists: Vec<String> = self
                    .schema
                    .records
                    .first()
                    .map(|r| r.fields.iter().filter(|f| matches!(f.ty, FieldType::List(_))).map(|f| f.name.clone()).collect())
                    .unwrap_or_default();
                let hint = did_you_mean(&list.name, lists.iter().map(String::as_str));
                let d = self.error("unknown-list", list.span, format!("`{}` is not a list field of the record", list.name));
                if let Some(h) = hint {
                    d.help = Some(h);
                }
                None
            }
        }
    }

    pub(crate) fn list_item_type(&self, slot: u16) -> Option<RecordTypeId> {
        let f = self.schema.records.first()?.fields.get(slot as usize)?;
        match f.ty {
            FieldType::List(rt) => Some(rt),
            _ => None,
        }
    }

    /// Checks a top-level value (once), following its dependencies first.
    pub(crate) fn check_let(&mut self, i: usize) -> Option<Type> {
        match self.let_state.get(i).copied()? {
            State::Done => return self.let_defs.get(i)?.as_ref().map(|d| d.ty),
            State::Doing => return None,
            State::Todo => {}
        }
        if !self.enter_value(self.let_decls.get(i).map(|d| d.span)) {
            return None;
        }
        let result = self.check_let_inner(i);
        self.depth -= 1;
        result
    }

    fn check_let_inner(&mut self, i: usize) -> Option<Type> {
        if let Some(s) = self.let_state.get_mut(i) {
            *s = State::Doing;
        }
        let decl = *self.let_decls.get(i)?;
        let kind = self.let_kinds.get(i).copied().unwrap_or(LetKind::Let);
        let mut frames = vec![Frame { record: 0, alias: None, list_slot: None, narrowed: Vec::new() }];
        let (ex, ty, height) = self.value_expr(&decl.expr, decl.name.span, &mut frames);
        if let Some(h) = self.let_height.get_mut(i) {
            *h = height;
        }
        if let Some(s) = self.let_state.get_mut(i) {
            *s = State::Done;
        }
        let ty = ty?;
        if kind != LetKind::Let && (ty.ty != Ty::Num || ty.optional) {
            let what = if kind == LetKind::Score { "a score" } else { "a criterion" };
            self.error("type-mismatch", decl.expr.span, format!("{what} is a number that is always present"))
                .set_label(format!("this is {}", expr::describe(ty)));
        }
        let max = decl.max.as_ref().and_then(|(t, s)| self.number(t, *s));
        let def = LetDef {
            name: decl.name.name.clone(),
            kind,
            label: decl.label.clone(),
            max,
            ty,
            expr: ex,
            span: decl.span,
            inputs: Vec::new(),
        };
        if let Some(slot) = self.let_defs.get_mut(i) {
            *slot = Some(def);
        }
        Some(ty)
    }

    /// Checks an item-level value (once).
    pub(crate) fn check_item_let(&mut self, i: usize) -> Option<Type> {
        match self.item_state.get(i).copied()? {
            State::Done => return self.item_defs.get(i)?.as_ref().map(|d| d.ty),
            State::Doing => return None,
            State::Todo => {}
        }
        if !self.enter_value(self.item_decls.get(i).map(|d| d.1.span)) {
            return None;
        }
        let result = self.check_item_let_inner(i);
        self.depth -= 1;
        result
    }

    fn check_item_let_inner(&mut self, i: usize) -> Option<Type> {
        if let Some(s) = self.item_state.get_mut(i) {
            *s = State::Doing;
        }
        let (slot, decl) = *self.item_decls.get(i)?;
        let rt = self.list_item_type(slot)?;
        let mut frames = vec![
            Frame { record: 0, alias: None, list_slot: None, narrowed: Vec::new() },
            Frame { record: rt, alias: None, list_slot: Some(slot), narrowed: Vec::new() },
        ];
        let (ex, ty, height) = self.value_expr(&decl.expr, decl.name.span, &mut frames);
        if let Some(h) = self.item_height.get_mut(i) {
            *h = height;
        }
        if let Some(s) = self.item_state.get_mut(i) {
            *s = State::Done;
        }
        let ty = ty?;
        if let Some(d) = self.item_defs.get_mut(i) {
            *d = Some(ItemLetDef { list_slot: slot, name: decl.name.name.clone(), ty, expr: ex, span: decl.span });
        }
        Some(ty)
    }

    /// Enters one more level of named values being checked inside one another; at the limit it
    /// reports `dependency-too-deep` and refuses, so no rule file can overflow the stack.
    fn enter_value(&mut self, span: Option<Span>) -> bool {
        if self.depth >= MAX_VALUE_DEPTH {
            self.error(
                "dependency-too-deep",
                span.unwrap_or_default(),
                format!("named values depend on one another more than {MAX_VALUE_DEPTH} deep"),
            )
            .set_help("compute intermediate values in fewer steps");
            return false;
        }
        self.depth += 1;
        true
    }

    /// Checks a named value's expression and measures its height: one more than the tallest
    /// named value it reads.
    fn value_expr(&mut self, e: &ast::Expr, name: Span, frames: &mut Vec<Frame>) -> (Ex, Option<Type>, usize) {
        let outer = std::mem::replace(&mut self.height_acc, 0);
        let (ex, ty) = self.expr(e, frames, None);
        let height = self.height_acc + 1;
        self.height_acc = outer;
        self.too_tall(height, name);
        (ex, ty, height)
    }

    fn too_tall(&mut self, height: usize, span: Span) {
        if height > MAX_VALUE_DEPTH {
            self.error("dependency-too-deep", span, format!("this value sits on a chain of more than {MAX_VALUE_DEPTH} named values"))
                .set_help("compute intermediate values in fewer steps");
        }
    }

    pub(crate) fn number(&mut self, text: &str, span: Span) -> Option<Num> {
        let (digits, percent) = match text.strip_suffix('%') {
            Some(d) => (d, true),
            None => (text, false),
        };
        match Num::parse_decimal(digits) {
            Ok(n) if percent => n.div(Num::from_int(100)).ok(),
            Ok(n) => Some(n),
            Err(e) => {
                self.error("bad-number", span, format!("`{text}`: {e}"));
                None
            }
        }
    }

    pub(crate) fn expect_ty(&mut self, e: &ast::Expr, frames: &mut Vec<Frame>, want: Ty) -> Ex {
        let (ex, ty) = self.expr(e, frames, Some(want));
        if let Some(t) = ty
            && (t.ty != want || t.optional)
        {
            let d = self
                .error(
                    "type-mismatch",
                    e.span,
                    format!("expected {}, found {}", expr::describe(Type { ty: want, optional: false }), expr::describe(t)),
                )
                .clone();
            self.diags.pop();
            let d = if t.optional && t.ty == want {
                d.with_help("this value may be absent: add `?? fallback`, or test it with `present`")
            } else {
                d
            };
            self.diags.push(d);
        }
        ex
    }

    /// Splits a `because` text into literal parts and `{expr}` placeholders, checking each.
    fn message(&mut self, span: Span, frames: &mut Vec<Frame>) -> Message {
        let raw = self.file.snippet(span);
        let inner = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(raw);
        let base = span.lo as usize + 1;
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = inner.char_indices().peekable();
        while let Some((i, ch)) = rest.next() {
            match ch {
                '\\' => {
                    if let Some((_, c)) = rest.next() {
                        text.push(match c {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                }
                '{' => {
                    let start = i + 1;
                    let mut end = None;
                    let mut depth = 1;
                    for (j, c) in rest.by_ref() {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = Some(j);
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    let Some(end) = end else {
                        self.error("bad-message", Span::new(base + i, base + i + 1), "`{` is not closed; write `\\{` for a brace");
                        break;
                    };
                    let src = inner.get(start..end).unwrap_or("");
                    match crate::syntax::parse_expr(src) {
                        Ok(mut e) => {
                            shift_expr(&mut e, base + start);
                            if !text.is_empty() {
                                parts.push(MessagePart::Text(std::mem::take(&mut text)));
                            }
                            let (ex, _) = self.expr(&e, frames, None);
                            parts.push(MessagePart::Expr(ex));
                        }
                        Err(mut d) => {
                            d.span = d.span.shifted(base + start);
                            d.message = format!("in a message placeholder: {}", d.message);
                            self.diags.push(d);
                        }
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(MessagePart::Text(text));
        }
        Message { parts }
    }

    fn invalid_rule(&mut self, d: &ast::InvalidDecl) -> Option<InvalidRule> {
        let (slot, field) = match self.root_field(&d.field.name) {
            Some((s, f)) => (s, f.clone()),
            None => {
                let hint = did_you_mean(&d.field.name, self.root_names());
                let e = self.error("unknown-name", d.field.span, format!("unknown field `{}`", d.field.name));
                if let Some(h) = hint {
                    e.help = Some(h);
                }
                return None;
            }
        };
        let mut frames = vec![Frame { record: 0, alias: None, list_slot: None, narrowed: Vec::new() }];
        let (item_field, path) = match &d.item_field {
            None => (None, d.field.name.clone()),
            Some(item) => {
                let FieldType::List(rt) = field.ty else {
                    self.error("type-mismatch", d.field.span, format!("`{}` is not a list", d.field.name));
                    return None;
                };
                let idx = self.schema.records.get(rt).and_then(|r| r.fields.iter().position(|f| f.name == item.name));
                let Some(idx) = idx.and_then(|i| u16::try_from(i).ok()) else {
                    let names: Vec<String> =
                        self.schema.records.get(rt).map(|r| r.fields.iter().map(|f| f.name.clone()).collect()).unwrap_or_default();
                    let hint = did_you_mean(&item.name, names.iter().map(String::as_str));
                    let e = self.error("unknown-name", item.span, format!("`{}` items have no field `{}`", d.field.name, item.name));
                    if let Some(h) = hint {
                        e.help = Some(h);
                    }
                    return None;
                };
                frames.push(Frame { record: rt, alias: None, list_slot: Some(slot), narrowed: Vec::new() });
                (Some(idx), format!("{}[].{}", d.field.name, item.name))
            }
        };
        let when = self.expect_ty(&d.when, &mut frames, Ty::Bool);
        let because = self.message(d.because.1, &mut frames);
        Some(InvalidRule { field: slot, item_field, path, when, because, span: d.span })
    }

    pub(crate) fn root_names(&self) -> impl Iterator<Item = &str> {
        self.schema
            .records
            .first()
            .into_iter()
            .flat_map(|r| r.fields.iter().map(|f| f.name.as_str()))
            .chain(self.let_index.keys().map(String::as_str))
    }

    fn classify(&mut self, d: &ast::ClassifyDecl, reachable: &mut HashSet<u8>) -> Option<Classify> {
        let score = match self.let_index.get(&d.by.name) {
            Some(&i) => i,
            None => {
                let hint = did_you_mean(&d.by.name, self.let_index.keys().map(String::as_str));
                let e = self.error("unknown-name", d.by.span, format!("unknown score `{}`", d.by.name));
                if let Some(h) = hint {
                    e.help = Some(h);
                }
                return None;
            }
        };
        self.used_lets.insert(score);
        let ty = self.check_let(score);
        if ty.is_some_and(|t| t.ty != Ty::Num || t.optional) {
            self.error("type-mismatch", d.by.span, "`classify by` takes a number that is always present");
        }
        let mut bands = Vec::new();
        let mut seen = HashSet::new();
        let mut last: Option<Num> = None;
        let mut has_otherwise = false;
        for b in &d.bands {
            let Some(level) = self.level_or_error(&b.level) else {
                continue;
            };
            if usize::from(level) >= self.schema.ordered_levels {
                self.error(
                    "band-outcome",
                    b.level.span,
                    format!("`{}` is an outcome outside the order; bands give ordered levels", b.level.name),
                );
            }
            if !seen.insert(level) {
                self.error("duplicate", b.level.span, format!("level `{}` has two bands", b.level.name));
            }
            reachable.insert(level);
            if has_otherwise {
                self.error("unreachable-band", b.span, "a band after `otherwise` is never used");
            }
            let threshold = match &b.threshold {
                None => {
                    has_otherwise = true;
                    None
                }
                Some((name, op, e)) => {
                    if name.name != d.by.name {
                        self.error("band-subject", name.span, format!("bands compare `{}`, the value classified", d.by.name));
                    }
                    let op = match op.as_str() {
                        ">=" => Op::Ge,
                        ">" => Op::Gt,
                        _ => {
                            self.error("band-operator", b.span, "a band is `when score >= N` or `when score > N`, best first");
                            continue;
                        }
                    };
                    let value =
                        const_number(e).and_then(|(t, neg)| self.number(&t, e.span).and_then(|n| if neg { n.neg().ok() } else { Some(n) }));
                    let Some(value) = value else {
                        self.error("band-threshold", e.span, "a band threshold is a number");
                        continue;
                    };
                    if let Some(prev) = last
                        && !matches!(value.cmp(&prev), Ok(std::cmp::Ordering::Less))
                    {
                        self.error("band-order", e.span, format!("thresholds go down from best to worst; {value} is not below {prev}"));
                    }
                    last = Some(value);
                    Some((op, value))
                }
            };
            let gate = match &b.gate {
                None => None,
                Some((cond, msg)) => {
                    let mut frames = vec![Frame { record: 0, alias: None, list_slot: None, narrowed: Vec::new() }];
                    let ex = self.expect_ty(cond, &mut frames, Ty::Bool);
                    let m = match msg {
                        Some((_, span)) => self.message(*span, &mut frames),
                        None => Message::default(),
                    };
                    if b.threshold.is_none() {
                        self.error(
                            "gate-on-otherwise",
                            cond.span,
                            "the `otherwise` band cannot have a condition: every record must get a level",
                        );
                    }
                    Some((ex, m, cond.span))
                }
            };
            bands.push(BandDef { level, threshold, gate, span: b.span });
        }
        if !has_otherwise && !bands.is_empty() {
            let low = last.map(|n| n.to_string()).unwrap_or_default();
            self.error("threshold-gap", d.span, format!("a `{}` below {low} gets no level", d.by.name))
                .set_label("no band catches the lowest scores");
            if let Some(e) = self.diags.last_mut() {
                e.help = Some("end the bands with `LEVEL otherwise`".into());
            }
        }
        // Bands must follow the level order, so falling through a gate goes down.
        let mut prev = None;
        for b in &bands {
            if let Some(p) = prev
                && b.level <= p
            {
                self.error("band-order", b.span, "bands follow the order of `levels`, best first");
            }
            prev = Some(b.level);
        }
        Some(Classify {
            score,
            flag: d.flag.as_ref().map(|f| FlagSpec { code: f.code.clone(), if_lowered: f.if_lowered }),
            bands,
            span: d.span,
        })
    }

    fn quota(&mut self, q: &ast::QuotaDecl) -> Option<QuotaDef> {
        let level = self.level_or_error(&q.level);
        let base = self.level_or_error(&q.base);
        let demote_to = self.level_or_error(&q.demote_to);
        let ratio = self.number(&q.ratio.0, q.ratio.1);
        let mut per = Vec::new();
        for k in &q.per {
            match self.root_field(&k.name) {
                Some((slot, f)) if matches!(f.ty, FieldType::Text | FieldType::Enum(_) | FieldType::Integer(_) | FieldType::Date) => {
                    per.push(slot)
                }
                Some(_) => {
                    self.error(
                        "type-mismatch",
                        k.span,
                        format!("`{}` cannot be a quota scope key: use a text, enum, integer or date field", k.name),
                    );
                }
                None => {
                    let hint = did_you_mean(&k.name, self.root_names());
                    let e = self.error("unknown-name", k.span, format!("unknown field `{}`", k.name));
                    if let Some(h) = hint {
                        e.help = Some(h);
                    }
                }
            }
        }
        let root = || vec![Frame { record: 0, alias: None, list_slot: None, narrowed: Vec::new() }];
        let applies = q.applies.as_ref().map(|e| self.expect_ty(e, &mut root(), Ty::Bool));
        let mut rank = Vec::new();
        for (e, desc) in &q.rank {
            let (ex, ty) = self.expr(e, &mut root(), None);
            if let Some(t) = ty
                && (t.optional || !matches!(t.ty, Ty::Num | Ty::Date | Ty::Level))
            {
                self.error(
                    "type-mismatch",
                    e.span,
                    format!("a ranking key is a number, date or level that is always present, found {}", expr::describe(t)),
                );
            }
            rank.push((ex, *desc));
        }
        if let (Some(l), Some(d)) = (level, demote_to)
            && d <= l
        {
            self.error("quota-demote", q.demote_to.span, "a quota demotes to a lower level");
        }
        let rounding = match q.rounding.as_str() {
            "up" => QuotaRounding::Up,
            "nearest" => QuotaRounding::Nearest,
            _ => QuotaRounding::Down,
        };
        Some(QuotaDef {
            name: q.name.name.clone(),
            level: level?,
            ratio: ratio?,
            base: base?,
            base_final: q.base_final,
            rounding,
            per_names: q.per.iter().map(|p| p.name.clone()).collect(),
            per,
            applies,
            rank,
            ties_demote_all: q.ties_demote_all,
            tie_flag: q.tie_flag.as_ref().map(|f| f.code.clone()),
            demote_to: demote_to?,
            demote_flag: q.demote_flag.as_ref().map(|f| f.code.clone()),
            exemption: q.exemption,
            span: q.span,
        })
    }

    fn check_given(&mut self, g: &ast::GivenValue, fixtures: &[(String, ast::GivenValue)]) {
        if let Some(base) = &g.base
            && !fixtures.iter().any(|(n, _)| n == &base.name)
        {
            let hint = did_you_mean(&base.name, fixtures.iter().map(|(n, _)| n.as_str()));
            let e = self.error("unknown-fixture", base.span, format!("unknown fixture `{}`", base.name));
            e.help = hint.or_else(|| Some("declare it above with `fixture NAME = { ... }`".into()));
        }
    }
}

fn rule_name(item: &Item) -> Option<&String> {
    match item {
        Item::Eligibility(d) | Item::Veto(d) | Item::Cap(d) | Item::Flag(d) => Some(&d.name.name),
        Item::Quota(q) => Some(&q.name.name),
        _ => None,
    }
}

/// A number literal, possibly negated: `(text, negated)`.
fn const_number(e: &ast::Expr) -> Option<(String, bool)> {
    match &e.kind {
        ast::ExprKind::Number(t) => Some((t.clone(), false)),
        ast::ExprKind::Neg(inner) => match &inner.kind {
            ast::ExprKind::Number(t) => Some((t.clone(), true)),
            _ => None,
        },
        _ => None,
    }
}

fn shift_expr(e: &mut ast::Expr, by: usize) {
    use ast::ExprKind as K;
    e.span = e.span.shifted(by);
    match &mut e.kind {
        K::Number(_) | K::Text(_) | K::Bool(_) | K::Name(_) => {}
        K::Field(b, id) => {
            shift_expr(b, by);
            id.span = id.span.shifted(by);
        }
        K::Not(b) | K::Neg(b) | K::Present(b, _) => shift_expr(b, by),
        K::In(b, items) => {
            shift_expr(b, by);
            items.iter_mut().for_each(|i| shift_expr(i, by));
        }
        K::Binary(_, a, b) => {
            shift_expr(a, by);
            shift_expr(b, by);
        }
        K::If(a, b, c) => {
            shift_expr(a, by);
            shift_expr(b, by);
            shift_expr(c, by);
        }
        K::Match(s, arms) => {
            shift_expr(s, by);
            for a in arms {
                shift_expr(&mut a.value, by);
            }
        }
        K::Aggregate { list, alias, filter, item, .. } => {
            list.span = list.span.shifted(by);
            if let Some(a) = alias {
                a.span = a.span.shifted(by);
            }
            if let Some(f) = filter {
                shift_expr(f, by);
            }
            if let Some(i) = item {
                shift_expr(i, by);
            }
        }
        K::Call(name, args) => {
            name.span = name.span.shifted(by);
            args.iter_mut().for_each(|a| shift_expr(a, by));
        }
    }
}
