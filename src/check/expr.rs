//! Expressions: name resolution (scopes, item values, levels, enum values) and type checking.

use super::ir::*;
use super::{Checker, Frame};
use crate::diagnostic::did_you_mean;
use crate::num::Rounding;
use crate::syntax::ast::{self, AggKind, BinOp, ExprKind, Pattern};

/// Deepest aggregate nesting accepted.
const MAX_FRAMES: usize = 8;

/// Plain words for a type, for messages.
pub(crate) fn describe(t: Type) -> String {
    let base = match t.ty {
        Ty::Bool => "a condition (true/false)",
        Ty::Num => "a number",
        Ty::Text => "a text",
        Ty::Date => "a date",
        Ty::Enum(_) => "a choice value",
        Ty::Level => "a level",
        Ty::List(_) => "a list",
        Ty::Record(_) => "a record",
    };
    if t.optional { format!("{base} that may be absent") } else { base.to_string() }
}

fn req(ty: Ty) -> Type {
    Type { ty, optional: false }
}

type Checked = (Ex, Option<Type>);

impl Checker<'_> {
    /// Checks an expression in the given scope; `want` guides bare names (enum values, levels).
    /// Returns `None` as the type after reporting an error.
    pub(crate) fn expr(&mut self, e: &ast::Expr, frames: &mut Vec<Frame>, want: Option<Ty>) -> Checked {
        let bad = Ex::Const(Const::Absent);
        match &e.kind {
            ExprKind::Number(t) => match self.number(t, e.span) {
                Some(n) => (Ex::Const(Const::Num(n)), Some(req(Ty::Num))),
                None => (bad, None),
            },
            ExprKind::Text(t) => {
                // A quoted enum value where an enum is expected: `status == "present"`.
                if let Some(Ty::Enum(en)) = want {
                    let found = self.schema.enums.get(en).and_then(|x| x.values.iter().position(|v| v == t));
                    if let (Some(i), Ok(tid)) = (found.and_then(|i| u16::try_from(i).ok()), u16::try_from(en)) {
                        return (Ex::Const(Const::Enum(tid, i)), Some(req(Ty::Enum(en))));
                    }
                }
                (Ex::Const(Const::Text(super::ir::nfc(t))), Some(req(Ty::Text)))
            }
            ExprKind::Bool(b) => (Ex::Const(Const::Bool(*b)), Some(req(Ty::Bool))),
            ExprKind::Name(n) => self.name(n, e.span, frames, want),
            ExprKind::Field(base, field) => self.field(base, field, frames),
            ExprKind::Not(inner) => {
                let ex = self.expect_ty(inner, frames, Ty::Bool);
                (Ex::Not(Box::new(ex)), Some(req(Ty::Bool)))
            }
            ExprKind::Neg(inner) => {
                let ex = self.expect_ty(inner, frames, Ty::Num);
                (Ex::Neg(Box::new(ex)), Some(req(Ty::Num)))
            }
            ExprKind::Present(inner, yes) => {
                let (ex, ty) = self.expr(inner, frames, None);
                if ty.is_some_and(|t| !t.optional) {
                    self.diags.push(
                        crate::diagnostic::Diagnostic::warning("always-present", inner.span, "this value is never absent").with_label(
                            format!("so `{}` is always {}", if *yes { "present" } else { "absent" }, if *yes { "true" } else { "false" }),
                        ),
                    );
                }
                (Ex::Present(Box::new(ex), *yes), Some(req(Ty::Bool)))
            }
            ExprKind::In(inner, items) => {
                let (ex, ty) = self.expr(inner, frames, None);
                let mut out = Vec::new();
                for i in items {
                    let (iex, ity) = self.expr(i, frames, ty.map(|t| t.ty));
                    if let (Some(t), Some(it)) = (ty, ity)
                        && (t.ty != it.ty || it.optional)
                    {
                        self.error("type-mismatch", i.span, format!("expected {}, found {}", describe(req(t.ty)), describe(it)));
                    }
                    out.push(iex);
                }
                if let Some(t) = ty {
                    self.no_optional(t, inner.span);
                    if matches!(t.ty, Ty::List(_) | Ty::Record(_)) {
                        self.error("type-mismatch", inner.span, "`in` compares single values");
                    }
                }
                (Ex::In(Box::new(ex), out), Some(req(Ty::Bool)))
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, frames, e),
            ExprKind::If(c, a, b) => {
                let cond = self.expect_ty(c, frames, Ty::Bool);
                let narrowed = present_names(c);
                let last = frames.len() - 1;
                let before = frames.get(last).map(|f| f.narrowed.len()).unwrap_or(0);
                if let Some(f) = frames.get_mut(last) {
                    f.narrowed.extend(narrowed);
                }
                let (aex, aty) = self.expr(a, frames, want);
                if let Some(f) = frames.get_mut(last) {
                    f.narrowed.truncate(before);
                }
                let (bex, bty) = self.expr(b, frames, aty.map(|t| t.ty).or(want));
                let ty = self.unify(aty, bty, b.span);
                (Ex::If(Box::new(cond), Box::new(aex), Box::new(bex)), ty)
            }
            ExprKind::Match(s, arms) => {
                let (sex, sty) = self.expr(s, frames, None);
                if let Some(t) = sty {
                    self.no_optional(t, s.span);
                }
                let (arms_ex, fallback, ty) = self.arms(arms, sty, frames, e.span, want);
                (Ex::Match(Box::new(sex), arms_ex, fallback), ty)
            }
            ExprKind::Aggregate { kind, list, alias, filter, item } => {
                self.aggregate(*kind, list, alias.as_ref(), filter.as_deref(), item.as_deref(), frames, e)
            }
            ExprKind::Call(name, args) => self.call(name, args, frames, e, want),
        }
    }

    fn no_optional(&mut self, t: Type, span: crate::source::Span) {
        if t.optional {
            self.error("maybe-absent", span, "this value may be absent").set_label(describe(t));
            if let Some(d) = self.diags.last_mut() {
                d.help = Some("add `?? fallback`, or test it first with `present`".into());
            }
        }
    }

    fn unify(&mut self, a: Option<Type>, b: Option<Type>, span: crate::source::Span) -> Option<Type> {
        let (a, b) = (a?, b?);
        if a.ty != b.ty {
            self.error(
                "type-mismatch",
                span,
                format!("both branches give the same kind of value: expected {}, found {}", describe(req(a.ty)), describe(req(b.ty))),
            );
            return None;
        }
        Some(Type { ty: a.ty, optional: a.optional || b.optional })
    }

    fn name(&mut self, n: &str, span: crate::source::Span, frames: &mut [Frame], want: Option<Ty>) -> Checked {
        // 1. Scope frames, innermost first.
        let frames_ro: &[Frame] = frames;
        for (fi, frame) in frames_ro.iter().enumerate().rev() {
            if frame.alias.as_deref() == Some(n) {
                self.error("type-mismatch", span, format!("`{n}` is a list item; name one of its fields, e.g. `{n}.field`"));
                return (Ex::Const(Const::Absent), None);
            }
            if frame.alias.is_some() {
                continue;
            }
            let Ok(frame_no) = u8::try_from(fi) else {
                continue;
            };
            if let Some((slot, f)) = self.schema.records.get(frame.record).and_then(|r| {
                r.fields.iter().enumerate().find(|(_, f)| f.name == n).and_then(|(i, f)| Some((u16::try_from(i).ok()?, f.clone())))
            }) {
                let mut t = field_type(&f);
                if frames_ro.iter().skip(fi).any(|fr| fr.narrowed.iter().any(|x| x == n)) {
                    t.optional = false;
                }
                return (Ex::Field { frame: frame_no, slot }, Some(t));
            }
            if let Some(ls) = frame.list_slot
                && let Some(&id) = self.item_index.get(&(ls, n.to_string()))
            {
                let ty = self.check_item_let(id);
                self.height_acc = self.height_acc.max(self.item_height.get(id).copied().unwrap_or(0));
                if ty.is_none() && self.item_state.get(id) == Some(&super::State::Doing) {
                    self.error("cycle", span, format!("`{n}` depends on itself"));
                }
                return (Ex::ItemLet { frame: frame_no, id }, ty);
            }
        }
        // 2. Top-level values.
        if let Some(&id) = self.let_index.get(n) {
            self.used_lets.insert(id);
            let ty = self.check_let(id);
            self.height_acc = self.height_acc.max(self.let_height.get(id).copied().unwrap_or(0));
            if ty.is_none() && self.let_state.get(id) == Some(&super::State::Doing) {
                self.error("cycle", span, format!("`{n}` depends on itself")).set_label("used here while it is being defined");
            }
            return (Ex::Let(id), ty);
        }
        // 3. Enum values by context, then levels.
        if let Some(Ty::Enum(e)) = want
            && let Some(i) =
                self.schema.enums.get(e).and_then(|en| en.values.iter().position(|v| v == n)).and_then(|i| u16::try_from(i).ok())
        {
            return (Ex::Const(Const::Enum(u16::try_from(e).unwrap_or(u16::MAX), i)), Some(req(Ty::Enum(e))));
        }
        if let Some(l) = self.level_index(n) {
            return (Ex::Const(Const::Level(l)), Some(req(Ty::Level)));
        }
        if let Some(Ty::Enum(e)) = want {
            let values = self.schema.enums.get(e).map(|en| en.values.clone()).unwrap_or_default();
            let hint = did_you_mean(n, values.iter().map(String::as_str));
            let d = self.error("unknown-name", span, format!("`{n}` is not one of {}", values.join(", ")));
            d.set_label("not a value of this choice");
            d.help = hint;
            return (Ex::Const(Const::Absent), None);
        }
        // Unknown: suggest from everything visible.
        let mut candidates: Vec<String> = Vec::new();
        for frame in frames.iter() {
            if frame.alias.is_some() {
                continue;
            }
            if let Some(r) = self.schema.records.get(frame.record) {
                candidates.extend(r.fields.iter().map(|f| f.name.clone()));
            }
            if let Some(ls) = frame.list_slot {
                candidates.extend(self.item_index.keys().filter(|(s, _)| *s == ls).map(|(_, k)| k.clone()));
            }
        }
        candidates.extend(self.let_index.keys().cloned());
        candidates.extend(self.schema.levels.iter().cloned());
        if let Some(Ty::Enum(e)) = want {
            candidates.extend(self.schema.enums.get(e).map(|en| en.values.clone()).unwrap_or_default());
        }
        let hint = did_you_mean(n, candidates.iter().map(String::as_str));
        let d = self.error("unknown-name", span, format!("unknown name `{n}`"));
        d.set_label("not a field, value, level or choice in scope");
        d.help = hint;
        (Ex::Const(Const::Absent), None)
    }

    fn field(&mut self, base: &ast::Expr, field: &ast::Ident, frames: &mut Vec<Frame>) -> Checked {
        // `alias.field` reaches an aggregate's item.
        if let ExprKind::Name(n) = &base.kind
            && let Some(fi) = frames.iter().rposition(|f| f.alias.as_deref() == Some(n.as_str()))
        {
            let Some(frame) = frames.get(fi).cloned() else {
                return (Ex::Const(Const::Absent), None);
            };
            let frame_no = u8::try_from(fi).unwrap_or(u8::MAX);
            let found = self.schema.records.get(frame.record).and_then(|r| {
                r.fields.iter().enumerate().find(|(_, f)| f.name == field.name).and_then(|(i, f)| Some((u16::try_from(i).ok()?, f.clone())))
            });
            if let Some((slot, f)) = found {
                let mut t = field_type(&f);
                if frame.narrowed.iter().any(|x| *x == format!("{n}.{}", field.name)) {
                    t.optional = false;
                }
                return (Ex::Field { frame: frame_no, slot }, Some(t));
            }
            if let Some(ls) = frame.list_slot
                && let Some(&id) = self.item_index.get(&(ls, field.name.clone()))
            {
                let ty = self.check_item_let(id);
                self.height_acc = self.height_acc.max(self.item_height.get(id).copied().unwrap_or(0));
                return (Ex::ItemLet { frame: frame_no, id }, ty);
            }
            return self.no_such_field(frame.record, field, Some(frame.list_slot));
        }
        let (bex, bty) = self.expr(base, frames, None);
        let Some(bt) = bty else {
            return (Ex::Const(Const::Absent), None);
        };
        let Ty::Record(rt) = bt.ty else {
            self.error("type-mismatch", field.span, format!("`.{}` reads a field of a record, but this is {}", field.name, describe(bt)));
            return (Ex::Const(Const::Absent), None);
        };
        self.no_optional(bt, base.span);
        let found = self.schema.records.get(rt).and_then(|r| {
            r.fields.iter().enumerate().find(|(_, f)| f.name == field.name).and_then(|(i, f)| Some((u16::try_from(i).ok()?, f.clone())))
        });
        match found {
            Some((slot, f)) => (Ex::SubField(Box::new(bex), slot), Some(field_type(&f))),
            None => self.no_such_field(rt, field, None),
        }
    }

    fn no_such_field(&mut self, rt: RecordTypeId, field: &ast::Ident, list_slot: Option<Option<u16>>) -> Checked {
        let mut names: Vec<String> =
            self.schema.records.get(rt).map(|r| r.fields.iter().map(|f| f.name.clone()).collect()).unwrap_or_default();
        if let Some(Some(ls)) = list_slot {
            names.extend(self.item_index.keys().filter(|(s, _)| *s == ls).map(|(_, k)| k.clone()));
        }
        let hint = did_you_mean(&field.name, names.iter().map(String::as_str));
        let e = self.error("unknown-name", field.span, format!("no field `{}` here", field.name));
        e.help = hint;
        (Ex::Const(Const::Absent), None)
    }

    fn binary(&mut self, op: BinOp, a: &ast::Expr, b: &ast::Expr, frames: &mut Vec<Frame>, e: &ast::Expr) -> Checked {
        let fail = (Ex::Const(Const::Absent), None);
        match op {
            BinOp::And | BinOp::Or => {
                let aex = self.expect_ty(a, frames, Ty::Bool);
                // `x present and x > 1`: the right side sees x as present.
                let last = frames.len() - 1;
                let before = frames.get(last).map(|f| f.narrowed.len()).unwrap_or(0);
                if op == BinOp::And {
                    let names = present_names(a);
                    if let Some(f) = frames.get_mut(last) {
                        f.narrowed.extend(names);
                    }
                }
                let bex = self.expect_ty(b, frames, Ty::Bool);
                if let Some(f) = frames.get_mut(last) {
                    f.narrowed.truncate(before);
                }
                (Ex::Bin(op, Box::new(aex), Box::new(bex)), Some(req(Ty::Bool)))
            }
            BinOp::Coalesce => {
                let (aex, aty) = self.expr(a, frames, None);
                let Some(at) = aty else { return fail };
                if !at.optional {
                    self.diags.push(
                        crate::diagnostic::Diagnostic::warning("never-absent", a.span, "this value is never absent, so `??` never applies")
                            .with_label(describe(at)),
                    );
                }
                let (bex, bty) = self.expr(b, frames, Some(at.ty));
                let Some(bt) = bty else { return fail };
                if bt.ty != at.ty {
                    self.error("type-mismatch", b.span, format!("the fallback must be {}, found {}", describe(req(at.ty)), describe(bt)));
                    return fail;
                }
                (Ex::Bin(BinOp::Coalesce, Box::new(aex), Box::new(bex)), Some(bt))
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                let aex = self.expect_ty(a, frames, Ty::Num);
                let bex = self.expect_ty(b, frames, Ty::Num);
                (Ex::Bin(op, Box::new(aex), Box::new(bex)), Some(req(Ty::Num)))
            }
            _ => {
                // Comparisons: check the side that is not a bare unknown name first, so
                // `role == head` and `head == role` both resolve `head` against the enum.
                let a_first = !matches!(&a.kind, ExprKind::Name(n) if self.is_contextual(n, frames));
                let (aex, aty, bex, bty) = if a_first {
                    let (aex, aty) = self.expr(a, frames, None);
                    let (bex, bty) = self.expr(b, frames, aty.map(|t| t.ty));
                    (aex, aty, bex, bty)
                } else {
                    let (bex, bty) = self.expr(b, frames, None);
                    let (aex, aty) = self.expr(a, frames, bty.map(|t| t.ty));
                    (aex, aty, bex, bty)
                };
                let (Some(at), Some(bt)) = (aty, bty) else {
                    return fail;
                };
                if at.ty != bt.ty {
                    self.error("type-mismatch", e.span, format!("cannot compare {} with {}", describe(req(at.ty)), describe(req(bt.ty))))
                        .set_label(format!("`{}` needs the same kind of value on both sides", op.symbol()));
                    return fail;
                }
                self.no_optional(at, a.span);
                self.no_optional(bt, b.span);
                let ordered = matches!(op, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge);
                if ordered && !matches!(at.ty, Ty::Num | Ty::Date | Ty::Level) {
                    self.error(
                        "type-mismatch",
                        e.span,
                        format!("`{}` orders numbers, dates and levels, not {}", op.symbol(), describe(req(at.ty))),
                    );
                    return fail;
                }
                if matches!(at.ty, Ty::List(_) | Ty::Record(_)) {
                    self.error("type-mismatch", e.span, "lists and records cannot be compared; compare their fields or use an aggregate");
                    return fail;
                }
                (Ex::Bin(op, Box::new(aex), Box::new(bex)), Some(req(Ty::Bool)))
            }
        }
    }

    /// A bare name that only has meaning from context (an enum value, not a field or value).
    fn is_contextual(&self, n: &str, frames: &[Frame]) -> bool {
        let in_scope = frames.iter().any(|f| {
            f.alias.is_none() && self.schema.records.get(f.record).is_some_and(|r| r.fields.iter().any(|x| x.name == n))
                || f.list_slot.is_some_and(|ls| self.item_index.contains_key(&(ls, n.to_string())))
        });
        !in_scope && !self.let_index.contains_key(n) && self.level_index(n).is_none()
    }

    #[expect(clippy::type_complexity, reason = "a private helper returning the parts of a match")]
    fn arms(
        &mut self,
        arms: &[ast::Arm],
        sty: Option<Type>,
        frames: &mut Vec<Frame>,
        span: crate::source::Span,
        want: Option<Ty>,
    ) -> (Vec<(Vec<Const>, Ex)>, Option<Box<Ex>>, Option<Type>) {
        let mut out = Vec::new();
        let mut fallback = None;
        let mut ty: Option<Type> = None;
        let mut covered: Vec<String> = Vec::new();
        for arm in arms {
            let (vex, vty) = self.expr(&arm.value, frames, ty.map(|t| t.ty).or(want));
            ty = match ty {
                None => vty,
                Some(t) => self.unify(Some(t), vty, arm.value.span),
            };
            if arm.patterns.is_empty() {
                if fallback.is_some() {
                    self.error("duplicate", arm.value.span, "only one `_` arm");
                }
                fallback = Some(Box::new(vex));
                continue;
            }
            let mut consts = Vec::new();
            for p in &arm.patterns {
                let Some(st) = sty else { continue };
                // A quoted pattern names an enum value too (`"present" => ...`).
                let quoted;
                let p = match (p, st.ty) {
                    (Pattern::Text(t, s), Ty::Enum(_)) => {
                        quoted = Pattern::Name(ast::Ident { name: t.clone(), span: *s });
                        &quoted
                    }
                    _ => p,
                };
                let c = match (p, st.ty) {
                    (Pattern::Name(id), Ty::Enum(e)) => {
                        let values = self.schema.enums.get(e).map(|en| en.values.clone()).unwrap_or_default();
                        match values.iter().position(|v| *v == id.name).and_then(|i| u16::try_from(i).ok()) {
                            Some(i) => Some(Const::Enum(u16::try_from(e).unwrap_or(u16::MAX), i)),
                            None => {
                                let hint = did_you_mean(&id.name, values.iter().map(String::as_str));
                                let d = self.error("unknown-name", id.span, format!("`{}` is not one of {}", id.name, values.join(", ")));
                                d.help = hint;
                                None
                            }
                        }
                    }
                    (Pattern::Name(id), Ty::Level) => self.level_or_error(&id.clone()).map(Const::Level),
                    (Pattern::Text(t, _), Ty::Text) => Some(Const::Text(super::ir::nfc(t))),
                    (Pattern::Number(t, s), Ty::Num) => self.number(t, *s).map(Const::Num),
                    (Pattern::Bool(b, _), Ty::Bool) => Some(Const::Bool(*b)),
                    (p, _) => {
                        let s = match p {
                            Pattern::Name(i) => i.span,
                            Pattern::Text(_, s) | Pattern::Number(_, s) | Pattern::Bool(_, s) => *s,
                        };
                        self.error("type-mismatch", s, format!("this pattern does not fit {}", describe(st)));
                        None
                    }
                };
                if let Some(c) = c {
                    if let Pattern::Name(id) = p {
                        covered.push(id.name.clone());
                    }
                    if let Pattern::Bool(b, _) = p {
                        covered.push(b.to_string());
                    }
                    consts.push(c);
                }
            }
            out.push((consts, vex));
        }
        if fallback.is_none() {
            let all: Vec<String> = match sty.map(|t| t.ty) {
                Some(Ty::Enum(e)) => self.schema.enums.get(e).map(|en| en.values.clone()).unwrap_or_default(),
                Some(Ty::Level) => self.schema.levels.clone(),
                Some(Ty::Bool) => vec!["true".into(), "false".into()],
                _ => Vec::new(),
            };
            let missing: Vec<&String> = all.iter().filter(|v| !covered.contains(v)).collect();
            if all.is_empty() || !missing.is_empty() {
                let list = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
                let d = self.error("non-exhaustive", span, "some values match no arm").set_help(if list.is_empty() {
                    "add a `_ => value` arm".to_string()
                } else {
                    format!("add arms for {list}, or a `_ => value` arm")
                });
                let _ = d;
            }
        }
        (out, fallback, ty)
    }

    #[expect(clippy::too_many_arguments, reason = "the parts of one aggregate expression")]
    fn aggregate(
        &mut self,
        kind: AggKind,
        list: &ast::Ident,
        alias: Option<&ast::Ident>,
        filter: Option<&ast::Expr>,
        item: Option<&ast::Expr>,
        frames: &mut Vec<Frame>,
        e: &ast::Expr,
    ) -> Checked {
        let fail = (Ex::Const(Const::Absent), None);
        let (lex, lty) = self.name(&list.name, list.span, frames, None);
        let Some(lt) = lty else { return fail };
        let Ty::List(rt) = lt.ty else {
            self.error("type-mismatch", list.span, format!("`{}` is {}, not a list", list.name, describe(lt)));
            return fail;
        };
        if frames.len() >= MAX_FRAMES {
            self.error("nesting-too-deep", e.span, format!("aggregates nest at most {MAX_FRAMES} deep"));
            return fail;
        }
        let list_slot = match lex {
            Ex::Field { frame: 0, slot } => Some(slot),
            _ => None,
        };
        let mut frame = Frame { record: rt, alias: alias.map(|a| a.name.clone()), list_slot, narrowed: Vec::new() };
        if let Some(f) = filter {
            frame.narrowed = present_names(f);
        }
        frames.push(Frame { narrowed: Vec::new(), ..frame.clone() });
        let fex = filter.map(|f| self.expect_ty(f, frames, Ty::Bool));
        if let Some(top) = frames.last_mut() {
            top.narrowed = frame.narrowed.clone();
        }
        let (iex, ity) = match item {
            Some(i) => {
                let (x, t) = self.expr(i, frames, None);
                (Some(x), t)
            }
            None => (None, None),
        };
        frames.pop();
        let item_span = item.map(|i| i.span).unwrap_or(e.span);
        let ty = match kind {
            AggKind::Count => {
                if item.is_some() {
                    self.error("aggregate-form", item_span, "`count` takes `count(list)` or `count(list where condition)`");
                }
                Some(req(Ty::Num))
            }
            AggKind::Sum | AggKind::Avg => {
                match ity {
                    None if item.is_none() => {
                        self.error(
                            "aggregate-form",
                            e.span,
                            format!("`{}` needs a value per item: `{}(list: value)`", agg_name(kind), agg_name(kind)),
                        );
                    }
                    Some(t) if t.ty != Ty::Num || t.optional => {
                        self.error("type-mismatch", item_span, format!("expected a number for each item, found {}", describe(t)));
                    }
                    _ => {}
                }
                Some(Type { ty: Ty::Num, optional: kind == AggKind::Avg })
            }
            AggKind::Min | AggKind::Max => match ity {
                None if item.is_none() => {
                    self.error(
                        "aggregate-form",
                        e.span,
                        format!("`{}` needs a value per item: `{}(list: value)`", agg_name(kind), agg_name(kind)),
                    );
                    None
                }
                Some(t) if t.optional || !matches!(t.ty, Ty::Num | Ty::Date | Ty::Level) => {
                    self.error(
                        "type-mismatch",
                        item_span,
                        format!("expected a number, date or level for each item, found {}", describe(t)),
                    )
                    .help = t.optional.then(|| "filter the items with `where field present` first".to_string());
                    None
                }
                Some(t) => Some(Type { ty: t.ty, optional: true }),
                None => None,
            },
            AggKind::All | AggKind::Any => {
                match ity {
                    None if item.is_none() && kind == AggKind::All => {
                        self.error("aggregate-form", e.span, "`all` needs a condition per item: `all(list: condition)`");
                    }
                    Some(t) if t.ty != Ty::Bool || t.optional => {
                        self.error("type-mismatch", item_span, format!("expected a condition for each item, found {}", describe(t)));
                    }
                    _ => {}
                }
                Some(req(Ty::Bool))
            }
        };
        (Ex::Agg { kind, list: Box::new(lex), filter: fex.map(Box::new), item: iex.map(Box::new) }, ty)
    }

    fn call(&mut self, name: &ast::Ident, args: &[ast::Expr], frames: &mut Vec<Frame>, e: &ast::Expr, want: Option<Ty>) -> Checked {
        let fail = (Ex::Const(Const::Absent), None);
        let arity = |c: &mut Self, n: usize| {
            if args.len() != n {
                c.error("arity", e.span, format!("`{}` takes {n} argument{}", name.name, if n == 1 { "" } else { "s" }));
                false
            } else {
                true
            }
        };
        match name.name.as_str() {
            "round" => {
                if !arity(self, 3) {
                    return fail;
                }
                let [x, places, mode] = args else { return fail };
                let xex = self.expect_ty(x, frames, Ty::Num);
                let p = match &places.kind {
                    ExprKind::Number(t) => t.parse::<u32>().ok().filter(|p| *p <= 18),
                    _ => None,
                };
                let Some(p) = p else {
                    self.error("round-places", places.span, "the number of places is a whole number from 0 to 18");
                    return fail;
                };
                let m = match &mode.kind {
                    ExprKind::Name(m) => match m.as_str() {
                        "half_up" => Some(Rounding::HalfUp),
                        "half_even" => Some(Rounding::HalfEven),
                        "down" => Some(Rounding::Down),
                        "up" => Some(Rounding::Up),
                        "floor" => Some(Rounding::Floor),
                        "ceiling" => Some(Rounding::Ceiling),
                        _ => None,
                    },
                    _ => None,
                };
                let Some(m) = m else {
                    self.error("round-mode", mode.span, "unknown rounding mode").help =
                        Some("use half_up, half_even, down, up, floor or ceiling".into());
                    return fail;
                };
                (Ex::Call(Builtin::Round(p, m), vec![xex]), Some(req(Ty::Num)))
            }
            "min" | "max" => {
                if args.is_empty() {
                    self.error("arity", e.span, format!("`{}` takes one or more values", name.name)).help =
                        Some(format!("over a list, write `{}(list: value)`", name.name));
                    return fail;
                }
                let mut exs = Vec::new();
                let mut ty: Option<Ty> = None;
                for a in args {
                    let (x, t) = self.expr(a, frames, ty.or(want));
                    if let Some(t) = t {
                        self.no_optional(t, a.span);
                        if !matches!(t.ty, Ty::Num | Ty::Date | Ty::Level) {
                            self.error(
                                "type-mismatch",
                                a.span,
                                format!("`{}` takes numbers, dates or levels, found {}", name.name, describe(t)),
                            );
                        } else if ty.is_some_and(|x| x != t.ty) {
                            self.error("type-mismatch", a.span, "all values must be of one kind");
                        }
                        ty = ty.or(Some(t.ty));
                    }
                    exs.push(x);
                }
                let b = if name.name == "min" { Builtin::Min } else { Builtin::Max };
                (Ex::Call(b, exs), ty.map(req))
            }
            "clamp" => {
                if !arity(self, 3) {
                    return fail;
                }
                let exs = args.iter().map(|a| self.expect_ty(a, frames, Ty::Num)).collect();
                (Ex::Call(Builtin::Clamp, exs), Some(req(Ty::Num)))
            }
            "abs" | "floor" | "ceil" => {
                if !arity(self, 1) {
                    return fail;
                }
                let exs = args.iter().map(|a| self.expect_ty(a, frames, Ty::Num)).collect();
                let b = match name.name.as_str() {
                    "abs" => Builtin::Abs,
                    "floor" => Builtin::Floor,
                    _ => Builtin::Ceil,
                };
                (Ex::Call(b, exs), Some(req(Ty::Num)))
            }
            "year" => {
                if !arity(self, 1) {
                    return fail;
                }
                let exs = args.iter().map(|a| self.expect_ty(a, frames, Ty::Date)).collect();
                (Ex::Call(Builtin::Year, exs), Some(req(Ty::Num)))
            }
            "period_end" | "period_kind" => {
                if !arity(self, 1) {
                    return fail;
                }
                let exs = args.iter().map(|a| self.expect_ty(a, frames, Ty::Text)).collect();
                if name.name == "period_end" {
                    (Ex::Call(Builtin::PeriodEnd, exs), Some(req(Ty::Date)))
                } else {
                    (Ex::Call(Builtin::PeriodKind, exs), Some(req(Ty::Text)))
                }
            }
            "date" => {
                if !arity(self, 1) {
                    return fail;
                }
                let d = match args.first().map(|a| &a.kind) {
                    Some(ExprKind::Text(t)) => crate::date::parse_date(t),
                    _ => None,
                };
                match d {
                    Some(d) => (Ex::Const(Const::Date(d)), Some(req(Ty::Date))),
                    None => {
                        self.error("bad-date", e.span, "`date` takes a quoted calendar date \"YYYY-MM-DD\"");
                        fail
                    }
                }
            }
            other => {
                let Some(table) = self.tables.get(other).copied() else {
                    let mut known: Vec<String> =
                        ["round", "min", "max", "clamp", "abs", "floor", "ceil", "year", "period_end", "period_kind", "date"]
                            .iter()
                            .map(|s| s.to_string())
                            .collect();
                    known.extend(self.tables.keys().cloned());
                    let hint = did_you_mean(other, known.iter().map(String::as_str));
                    let d = self.error("unknown-function", name.span, format!("unknown function or table `{other}`"));
                    d.help = hint;
                    return fail;
                };
                if !arity(self, 1) {
                    return fail;
                }
                let Some(arg) = args.first() else { return fail };
                let (aex, aty) = self.expr(arg, frames, None);
                if let Some(t) = aty {
                    self.no_optional(t, arg.span);
                }
                let (arms, fallback, ty) = self.arms(&table.arms, aty, frames, table.span, want);
                (Ex::Match(Box::new(aex), arms, fallback), ty)
            }
        }
    }
}

fn agg_name(k: AggKind) -> &'static str {
    match k {
        AggKind::Count => "count",
        AggKind::Sum => "sum",
        AggKind::Avg => "avg",
        AggKind::Min => "min",
        AggKind::Max => "max",
        AggKind::All => "all",
        AggKind::Any => "any",
    }
}

/// The declared type of a field as an expression type.
pub(crate) fn field_type(f: &Field) -> Type {
    let ty = match f.ty {
        FieldType::Text => Ty::Text,
        FieldType::Bool => Ty::Bool,
        FieldType::Integer(_) | FieldType::Decimal(_) => Ty::Num,
        FieldType::Date => Ty::Date,
        FieldType::Level => Ty::Level,
        FieldType::Enum(e) => Ty::Enum(e),
        FieldType::List(r) => Ty::List(r),
        FieldType::Record(r) => Ty::Record(r),
    };
    Type { ty, optional: f.optional }
}

/// Names tested with `present` in a conjunction (`a present and b.c present and ...`).
fn present_names(e: &ast::Expr) -> Vec<String> {
    match &e.kind {
        ExprKind::Present(inner, true) => match &inner.kind {
            ExprKind::Name(n) => vec![n.clone()],
            ExprKind::Field(base, f) => match &base.kind {
                ExprKind::Name(b) => vec![format!("{b}.{}", f.name)],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        ExprKind::Binary(BinOp::And, a, b) => {
            let mut v = present_names(a);
            v.extend(present_names(b));
            v
        }
        _ => Vec::new(),
    }
}
