//! pest pairs → syntax tree. A syntax error stops the file at its first error (pest's mode);
//! everything after parsing reports all problems at once.

use super::ast::*;
use crate::diagnostic::Diagnostic;
use crate::source::Span;
use pest::Parser as _;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::sync::LazyLock;

#[derive(pest_derive::Parser)]
#[grammar = "syntax/grammar.pest"]
struct Grammar;

type P<'a> = Pair<'a, Rule>;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::op_or, Assoc::Left))
        .op(Op::infix(Rule::op_and, Assoc::Left))
        .op(Op::prefix(Rule::op_not))
        .op(Op::infix(Rule::op_eq, Assoc::Left)
            | Op::infix(Rule::op_ne, Assoc::Left)
            | Op::infix(Rule::op_lt, Assoc::Left)
            | Op::infix(Rule::op_le, Assoc::Left)
            | Op::infix(Rule::op_gt, Assoc::Left)
            | Op::infix(Rule::op_ge, Assoc::Left))
        .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
        .op(Op::infix(Rule::op_mul, Assoc::Left) | Op::infix(Rule::op_div, Assoc::Left))
        .op(Op::infix(Rule::op_coalesce, Assoc::Left))
        .op(Op::prefix(Rule::op_neg))
        .op(Op::postfix(Rule::op_present) | Op::postfix(Rule::op_absent) | Op::postfix(Rule::op_in) | Op::postfix(Rule::op_field))
});

/// Deepest expression nesting accepted; deeper input is an error, never a stack overflow.
const MAX_DEPTH: usize = 200;

/// Parses one rule file's text.
pub fn parse(text: &str) -> Result<RuleFile, Diagnostic> {
    let depth = max_bracket_depth(text);
    if depth > MAX_DEPTH {
        return Err(Diagnostic::error(
            "nesting-too-deep",
            Span::new(0, 0),
            format!("brackets nest {depth} deep; at most {MAX_DEPTH} are allowed"),
        ));
    }
    let mut pairs = Grammar::parse(Rule::file, text).map_err(pest_error)?;
    let file = pairs.next().ok_or_else(|| Diagnostic::error("syntax", Span::default(), "empty file"))?;
    lower_file(file)
}

/// Parses one expression (used for `{...}` interpolations in messages).
pub fn parse_expr(text: &str) -> Result<Expr, Diagnostic> {
    if max_bracket_depth(text) > MAX_DEPTH {
        return Err(Diagnostic::error("nesting-too-deep", Span::new(0, text.len()), "expression nests too deep"));
    }
    let mut pairs = Grammar::parse(Rule::expr_only, text).map_err(pest_error)?;
    let only = pairs.next().ok_or_else(|| Diagnostic::error("syntax", Span::default(), "empty expression"))?;
    let e = only.into_inner().next().ok_or_else(|| Diagnostic::error("syntax", Span::default(), "empty expression"))?;
    expr(e)
}

fn max_bracket_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn pest_error(e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let span = match e.location {
        InputLocation::Pos(p) => Span::new(p, p),
        InputLocation::Span((a, b)) => Span::new(a, b),
    };
    let message = match &e.variant {
        ErrorVariant::ParsingError { positives, negatives } => {
            let mut names: Vec<&str> = positives.iter().filter_map(|r| rule_name(*r)).collect();
            names.sort_unstable();
            names.dedup();
            if names.is_empty() && negatives.is_empty() {
                "unexpected text".to_string()
            } else if names.is_empty() {
                "unexpected keyword".to_string()
            } else {
                format!("expected {}", names.join(", "))
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    Diagnostic::error("syntax", span, message).with_label("here")
}

fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::ident => "a name",
        Rule::string => "a quoted text",
        Rule::number | Rule::signed_number => "a number",
        Rule::date_lit => "a date YYYY-MM-DD",
        Rule::expr | Rule::primary | Rule::paren | Rule::call | Rule::aggregate => "an expression",
        Rule::header => "`ruleset`",
        Rule::record_decl => "`record`",
        Rule::levels_decl => "`levels`",
        Rule::outcomes_decl => "`outcomes`",
        Rule::let_decl => "`let`",
        Rule::criterion_decl => "`criterion`",
        Rule::score_decl => "`score`",
        Rule::table_decl => "`table`",
        Rule::eligibility_decl => "`eligibility`",
        Rule::invalid_decl => "`invalid`",
        Rule::classify_decl => "`classify`",
        Rule::veto_decl => "`veto`",
        Rule::cap_decl => "`cap`",
        Rule::flag_decl | Rule::flag_clause => "`flag`",
        Rule::quota_decl => "`quota`",
        Rule::fixture_decl => "`fixture`",
        Rule::test_decl => "`test`",
        Rule::because => "`because`",
        Rule::field_decl => "a field",
        Rule::type_expr | Rule::scalar_type | Rule::scalar_name => "a type",
        Rule::level_decl => "a level",
        Rule::band => "a band",
        Rule::gate => "`require`",
        Rule::cmp_op => "a comparison",
        Rule::op_or | Rule::op_and => "`and` / `or`",
        Rule::op_eq | Rule::op_ne | Rule::op_lt | Rule::op_le | Rule::op_gt | Rule::op_ge => "an operator",
        Rule::op_add | Rule::op_sub | Rule::op_mul | Rule::op_div | Rule::op_coalesce => "an operator",
        Rule::object => "`{`",
        Rule::array => "`[`",
        Rule::pair => "a field name",
        Rule::expect => "`expect`",
        Rule::given_one | Rule::given_cohort => "`given` or `cohort`",
        Rule::role => "`role`",
        Rule::default => "`=`",
        Rule::optional_mark => "`?`",
        _ => return None,
    })
}

fn span_of(p: &P<'_>) -> Span {
    let s = p.as_span();
    Span::new(s.start(), s.end())
}

fn bug(p: &P<'_>) -> Diagnostic {
    Diagnostic::error("syntax", span_of(p), format!("unexpected {:?}", p.as_rule()))
}

/// Takes the next inner pair, or reports the parent as malformed (cannot happen for text the grammar accepted).
fn next<'a>(it: &mut impl Iterator<Item = P<'a>>, parent: Span) -> Result<P<'a>, Diagnostic> {
    it.next().ok_or_else(|| Diagnostic::error("syntax", parent, "incomplete declaration"))
}

fn ident(p: P<'_>) -> Ident {
    Ident { name: p.as_str().to_string(), span: span_of(&p) }
}

/// Unescapes a string literal's text (without quotes).
pub fn unquote(raw: &str) -> String {
    let inner = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                // `\{` stays escaped so message interpolation can tell it from a placeholder.
                Some('{') => out.push_str("\\{"),
                Some('}') => out.push_str("\\}"),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn string(p: P<'_>) -> (String, Span) {
    (unquote(p.as_str()), span_of(&p))
}

fn lower_file(file: P<'_>) -> Result<RuleFile, Diagnostic> {
    let fspan = span_of(&file);
    let mut it = file.into_inner();
    let header = next(&mut it, fspan)?;
    let hspan = span_of(&header);
    let mut h = header.into_inner();
    let id = ident(next(&mut h, hspan)?);
    let title = string(next(&mut h, hspan)?).0;
    let version = string(next(&mut h, hspan)?).0;
    let eff = next(&mut h, hspan)?;
    let effective = (eff.as_str().to_string(), span_of(&eff));
    let mut items = Vec::new();
    for p in it {
        if p.as_rule() == Rule::EOI {
            break;
        }
        items.push(item(p)?);
    }
    Ok(RuleFile { id, title, version, effective, items })
}

fn item(p: P<'_>) -> Result<Item, Diagnostic> {
    let span = span_of(&p);
    Ok(match p.as_rule() {
        Rule::record_decl => {
            let rt = next(&mut p.into_inner(), span)?;
            Item::Record(fields(rt)?, span)
        }
        Rule::levels_decl => Item::Levels(levels(p)?),
        Rule::outcomes_decl => Item::Outcomes(levels(p)?),
        Rule::let_decl => {
            let mut it = p.into_inner();
            let first = ident(next(&mut it, span)?);
            let second = next(&mut it, span)?;
            let (list, name, e) =
                if second.as_rule() == Rule::ident { (Some(first), ident(second), next(&mut it, span)?) } else { (None, first, second) };
            Item::Let(LetDecl { list, name, label: None, max: None, expr: expr(e)?, span })
        }
        Rule::criterion_decl => {
            let mut it = p.into_inner();
            let name = ident(next(&mut it, span)?);
            let label = string(next(&mut it, span)?).0;
            let third = next(&mut it, span)?;
            let (max, e) = if third.as_rule() == Rule::number {
                (Some((third.as_str().to_string(), span_of(&third))), next(&mut it, span)?)
            } else {
                (None, third)
            };
            Item::Criterion(LetDecl { list: None, name, label: Some(label), max, expr: expr(e)?, span })
        }
        Rule::score_decl => {
            let mut it = p.into_inner();
            let name = ident(next(&mut it, span)?);
            let e = expr(next(&mut it, span)?)?;
            Item::Score(LetDecl { list: None, name, label: None, max: None, expr: e, span })
        }
        Rule::table_decl => {
            let mut it = p.into_inner();
            let name = ident(next(&mut it, span)?);
            let arms = it.map(arm).collect::<Result<Vec<_>, _>>()?;
            Item::Table(TableDecl { name, arms, span })
        }
        Rule::eligibility_decl | Rule::veto_decl | Rule::cap_decl | Rule::flag_decl => rule_decl(p)?,
        Rule::invalid_decl => {
            let mut it = p.into_inner();
            let path = next(&mut it, span)?;
            let mut pi = path.into_inner();
            let field = ident(next(&mut pi, span)?);
            let item_field = pi.next().map(ident);
            let when = expr(next(&mut it, span)?)?;
            let because = because(next(&mut it, span)?, span)?;
            Item::Invalid(InvalidDecl { field, item_field, when, because, span })
        }
        Rule::classify_decl => {
            let mut it = p.into_inner();
            let by = ident(next(&mut it, span)?);
            let mut flag = None;
            let mut bands = Vec::new();
            for q in it {
                match q.as_rule() {
                    Rule::flag_clause => flag = Some(flag_clause(q, span)?),
                    Rule::band => bands.push(band(q)?),
                    _ => return Err(bug(&q)),
                }
            }
            Item::Classify(ClassifyDecl { by, flag, bands, span })
        }
        Rule::quota_decl => Item::Quota(quota(p)?),
        Rule::fixture_decl => {
            let mut it = p.into_inner();
            let name = ident(next(&mut it, span)?);
            Item::Fixture(name, given_value(next(&mut it, span)?)?)
        }
        Rule::test_decl => Item::Test(test(p)?),
        _ => return Err(bug(&p)),
    })
}

fn fields(record_type: P<'_>) -> Result<Vec<FieldDecl>, Diagnostic> {
    record_type.into_inner().map(field).collect()
}

fn field(p: P<'_>) -> Result<FieldDecl, Diagnostic> {
    let span = span_of(&p);
    let mut it = p.into_inner();
    let name = ident(next(&mut it, span)?);
    let tp = next(&mut it, span)?;
    let ty = type_expr(next(&mut tp.into_inner(), span)?)?;
    let mut f = FieldDecl { name, ty, optional: false, default: None, role: None, span };
    for q in it {
        match q.as_rule() {
            Rule::optional_mark => f.optional = true,
            Rule::default => f.default = Some(literal(next(&mut q.into_inner(), span)?)?),
            Rule::role => {
                let r = next(&mut q.into_inner(), span)?;
                f.role = Some((r.as_str().to_string(), span_of(&r)));
            }
            _ => return Err(bug(&q)),
        }
    }
    Ok(f)
}

fn type_expr(p: P<'_>) -> Result<TypeExpr, Diagnostic> {
    let span = span_of(&p);
    Ok(match p.as_rule() {
        Rule::list_type => TypeExpr::List(fields(next(&mut p.into_inner(), span)?)?),
        Rule::record_type => TypeExpr::Record(fields(p)?),
        Rule::enum_type => TypeExpr::Enum(
            p.into_inner()
                .filter_map(|v| v.into_inner().next())
                .map(|v| {
                    let span = span_of(&v);
                    let name = if v.as_rule() == Rule::string { unquote(v.as_str()) } else { v.as_str().to_string() };
                    Ident { name, span }
                })
                .collect(),
        ),
        Rule::scalar_type => {
            let mut it = p.into_inner();
            let name = next(&mut it, span)?.as_str().to_string();
            let range = match it.next() {
                None => None,
                Some(r) => {
                    let inner = next(&mut r.into_inner(), span)?;
                    let rule = inner.as_rule();
                    let mut ri = inner.into_inner();
                    let a = next(&mut ri, span)?.as_str().to_string();
                    let b = next(&mut ri, span)?.as_str().to_string();
                    Some(if rule == Rule::range_between { RangeDecl::Between(a, b) } else { RangeDecl::Bound(a, b) })
                }
            };
            TypeExpr::Scalar(name, range, span)
        }
        _ => return Err(bug(&p)),
    })
}

fn levels(p: P<'_>) -> Result<Vec<LevelDecl>, Diagnostic> {
    p.into_inner()
        .map(|l| {
            let span = span_of(&l);
            let mut it = l.into_inner();
            let name = ident(next(&mut it, span)?);
            let label = string(next(&mut it, span)?).0;
            Ok(LevelDecl { name, label })
        })
        .collect()
}

fn flag_clause(p: P<'_>, span: Span) -> Result<FlagClause, Diagnostic> {
    let mut it = p.into_inner();
    let code = string(next(&mut it, span)?).0;
    Ok(FlagClause { code, if_lowered: it.next().is_some() })
}

fn because(p: P<'_>, span: Span) -> Result<(String, Span), Diagnostic> {
    Ok(string(next(&mut p.into_inner(), span)?))
}

fn rule_decl(p: P<'_>) -> Result<Item, Diagnostic> {
    let span = span_of(&p);
    let rule = p.as_rule();
    let mut it = p.into_inner();
    let name = ident(next(&mut it, span)?);
    let mut d = RuleDecl { name, when: Expr::node(ExprKind::Bool(true), span), target: None, flag: None, because: None, span };
    match rule {
        Rule::cap_decl => {
            d.target = Some(expr(next(&mut it, span)?)?);
            d.when = expr(next(&mut it, span)?)?;
        }
        Rule::flag_decl => {
            let code = string(next(&mut it, span)?).0;
            d.flag = Some(FlagClause { code, if_lowered: false });
            d.when = expr(next(&mut it, span)?)?;
        }
        _ => d.when = expr(next(&mut it, span)?)?,
    }
    for q in it {
        match q.as_rule() {
            Rule::ident => d.target = Some(Expr::node(ExprKind::Name(q.as_str().to_string()), span_of(&q))),
            Rule::flag_clause => d.flag = Some(flag_clause(q, span)?),
            Rule::because => d.because = Some(because(q, span)?),
            _ => return Err(bug(&q)),
        }
    }
    Ok(match rule {
        Rule::eligibility_decl => Item::Eligibility(d),
        Rule::veto_decl => Item::Veto(d),
        Rule::cap_decl => Item::Cap(d),
        _ => Item::Flag(d),
    })
}

fn band(p: P<'_>) -> Result<Band, Diagnostic> {
    let span = span_of(&p);
    let mut it = p.into_inner();
    let level = ident(next(&mut it, span)?);
    let mut b = Band { level, threshold: None, gate: None, span };
    for q in it {
        match q.as_rule() {
            Rule::band_threshold => {
                let mut ti = q.into_inner();
                let score = ident(next(&mut ti, span)?);
                let op = next(&mut ti, span)?.as_str().to_string();
                let e = expr(next(&mut ti, span)?)?;
                b.threshold = Some((score, op, e));
            }
            Rule::band_otherwise => {}
            Rule::gate => {
                let mut gi = q.into_inner();
                let cond = expr(next(&mut gi, span)?)?;
                let msg = match gi.next() {
                    Some(m) => Some(because(m, span)?),
                    None => None,
                };
                b.gate = Some((cond, msg));
            }
            _ => return Err(bug(&q)),
        }
    }
    Ok(b)
}

fn quota(p: P<'_>) -> Result<QuotaDecl, Diagnostic> {
    let span = span_of(&p);
    let mut it = p.into_inner();
    let name = ident(next(&mut it, span)?);
    let keep = next(&mut it, span)?;
    let mut ki = keep.into_inner();
    let level = ident(next(&mut ki, span)?);
    let ratio_p = next(&mut ki, span)?;
    let ratio = (ratio_p.as_str().to_string(), span_of(&ratio_p));
    let base_p = next(&mut ki, span)?;
    let mut bi = base_p.into_inner();
    let first = next(&mut bi, span)?;
    let (base_final, base) = if first.as_rule() == Rule::final_mark { (true, ident(next(&mut bi, span)?)) } else { (false, ident(first)) };
    let rounding = ki.next().map_or_else(|| "down".to_string(), |r| r.as_str().to_string());
    let mut q = QuotaDecl {
        name,
        level,
        ratio,
        base,
        base_final,
        rounding,
        per: Vec::new(),
        applies: None,
        rank: Vec::new(),
        ties_demote_all: true,
        tie_flag: None,
        demote_to: Ident { name: String::new(), span },
        demote_flag: None,
        exemption: false,
        span,
    };
    for c in it {
        match c.as_rule() {
            Rule::quota_per => q.per = c.into_inner().map(ident).collect(),
            Rule::quota_applies => q.applies = Some(expr(next(&mut c.into_inner(), span)?)?),
            Rule::quota_rank => {
                for k in c.into_inner() {
                    let mut ki = k.into_inner();
                    let e = expr(next(&mut ki, span)?)?;
                    let desc = next(&mut ki, span)?.as_str() == "desc";
                    q.rank.push((e, desc));
                }
            }
            Rule::quota_ties => {
                let mut ti = c.into_inner();
                q.ties_demote_all = next(&mut ti, span)?.as_str().starts_with("demote");
                if let Some(f) = ti.next() {
                    q.tie_flag = Some(flag_clause(f, span)?);
                }
            }
            Rule::quota_demote => {
                let mut di = c.into_inner();
                q.demote_to = ident(next(&mut di, span)?);
                if let Some(f) = di.next() {
                    q.demote_flag = Some(flag_clause(f, span)?);
                }
            }
            Rule::quota_exemption => q.exemption = true,
            _ => return Err(bug(&c)),
        }
    }
    Ok(q)
}

fn given_value(p: P<'_>) -> Result<GivenValue, Diagnostic> {
    let span = span_of(&p);
    let mut g = GivenValue { base: None, object: None, span };
    for q in p.into_inner() {
        match q.as_rule() {
            Rule::ident => g.base = Some(ident(q)),
            Rule::object => g.object = Some(literal(q)?),
            _ => return Err(bug(&q)),
        }
    }
    Ok(g)
}

fn test(p: P<'_>) -> Result<TestDecl, Diagnostic> {
    let span = span_of(&p);
    let mut it = p.into_inner();
    let name = string(next(&mut it, span)?).0;
    let given_p = next(&mut it, span)?;
    let mut t = TestDecl { name, given: Vec::new(), cohort: false, exemption: None, expect: Expect::Cohort(Vec::new()), span };
    match given_p.as_rule() {
        Rule::given_one => t.given.push(given_value(next(&mut given_p.into_inner(), span)?)?),
        _ => {
            t.cohort = true;
            for q in given_p.into_inner() {
                match q.as_rule() {
                    Rule::cohort_exemption => {
                        let v = next(&mut q.into_inner(), span)?;
                        t.exemption = Some((v.as_rule() == Rule::number).then(|| v.as_str().to_string()));
                    }
                    Rule::given_value => t.given.push(given_value(q)?),
                    _ => return Err(bug(&q)),
                }
            }
        }
    }
    let ex = next(&mut it, span)?;
    let inner = next(&mut ex.into_inner(), span)?;
    t.expect = match inner.as_rule() {
        Rule::expect_invalid => Expect::Invalid(string(next(&mut inner.into_inner(), span)?).0),
        Rule::expect_cohort => Expect::Cohort(inner.into_inner().map(ident).collect()),
        _ => {
            let mut ei = inner.into_inner();
            let outcome = ident(next(&mut ei, span)?);
            let (mut total, mut flags, mut by) = (None, None, Vec::new());
            for q in ei {
                match q.as_rule() {
                    Rule::expect_total => {
                        let v = next(&mut q.into_inner(), span)?;
                        total = Some(if v.as_rule() == Rule::string { string(v).0 } else { v.as_str().to_string() });
                    }
                    Rule::expect_flags => flags = Some(q.into_inner().map(|s| string(s).0).collect()),
                    Rule::expect_by => by = q.into_inner().map(ident).collect(),
                    _ => return Err(bug(&q)),
                }
            }
            Expect::One { outcome, total, flags, by }
        }
    };
    Ok(t)
}

fn literal(p: P<'_>) -> Result<Literal, Diagnostic> {
    let span = span_of(&p);
    Ok(match p.as_rule() {
        Rule::object => {
            let mut pairs = Vec::new();
            for pair in p.into_inner() {
                let mut pi = pair.into_inner();
                let k = ident(next(&mut pi, span)?);
                let v = literal(next(&mut pi, span)?)?;
                pairs.push((k, v));
            }
            Literal::Object(pairs, span)
        }
        Rule::array => {
            let mut items = Vec::new();
            for item in p.into_inner() {
                let mut ii = item.into_inner();
                let first = next(&mut ii, span)?;
                if first.as_rule() == Rule::repeat_count {
                    let n: usize =
                        first.as_str().parse().map_err(|_| Diagnostic::error("syntax", span_of(&first), "repeat count too large"))?;
                    if n > 10_000 {
                        return Err(Diagnostic::error("syntax", span_of(&first), "repeat count above 10000"));
                    }
                    let v = literal(next(&mut ii, span)?)?;
                    items.extend(std::iter::repeat_n(v, n));
                } else {
                    items.push(literal(first)?);
                }
            }
            Literal::Array(items, span)
        }
        Rule::date_lit => Literal::Date(p.as_str().to_string(), span),
        Rule::signed_number => Literal::Number(p.as_str().to_string(), span),
        Rule::string => Literal::Text(unquote(p.as_str()), span),
        Rule::bool_lit => Literal::Bool(p.as_str().starts_with('t'), span),
        Rule::null_lit => Literal::Null(span),
        Rule::ident => Literal::Name(p.as_str().to_string(), span),
        _ => return Err(bug(&p)),
    })
}

fn arm(p: P<'_>) -> Result<Arm, Diagnostic> {
    let span = span_of(&p);
    let mut patterns = Vec::new();
    let mut value = None;
    for q in p.into_inner() {
        match q.as_rule() {
            Rule::wildcard => {}
            Rule::pattern => {
                let inner = next(&mut q.into_inner(), span)?;
                let s = span_of(&inner);
                patterns.push(match inner.as_rule() {
                    Rule::ident => Pattern::Name(ident(inner)),
                    Rule::string => Pattern::Text(unquote(inner.as_str()), s),
                    Rule::bool_lit => Pattern::Bool(inner.as_str().starts_with('t'), s),
                    _ => Pattern::Number(inner.as_str().to_string(), s),
                });
            }
            Rule::expr => value = Some(expr(q)?),
            _ => return Err(bug(&q)),
        }
    }
    let value = value.ok_or_else(|| Diagnostic::error("syntax", span, "arm without a value"))?;
    Ok(Arm { patterns, value })
}

fn expr(p: P<'_>) -> Result<Expr, Diagnostic> {
    PRATT
        .map_primary(primary)
        .map_prefix(|op, rhs| {
            let rhs = rhs?;
            let span = Span::new(op.as_span().start(), rhs.span.hi as usize);
            let kind = if op.as_rule() == Rule::op_not { ExprKind::Not(Box::new(rhs)) } else { ExprKind::Neg(Box::new(rhs)) };
            deep_enough(Expr::node(kind, span))
        })
        .map_postfix(|lhs, op| {
            let lhs = lhs?;
            let span = Span::new(lhs.span.lo as usize, op.as_span().end());
            let kind = match op.as_rule() {
                Rule::op_present => ExprKind::Present(Box::new(lhs), true),
                Rule::op_absent => ExprKind::Present(Box::new(lhs), false),
                Rule::op_field => {
                    let name = next(&mut op.into_inner(), span)?;
                    ExprKind::Field(Box::new(lhs), ident(name))
                }
                _ => {
                    let items = op.into_inner().filter(|q| q.as_rule() == Rule::expr).map(expr).collect::<Result<Vec<_>, _>>()?;
                    ExprKind::In(Box::new(lhs), items)
                }
            };
            deep_enough(Expr::node(kind, span))
        })
        .map_infix(|lhs, op, rhs| {
            let (lhs, rhs) = (lhs?, rhs?);
            let bin = match op.as_rule() {
                Rule::op_or => BinOp::Or,
                Rule::op_and => BinOp::And,
                Rule::op_coalesce => BinOp::Coalesce,
                Rule::op_eq => BinOp::Eq,
                Rule::op_ne => BinOp::Ne,
                Rule::op_lt => BinOp::Lt,
                Rule::op_le => BinOp::Le,
                Rule::op_gt => BinOp::Gt,
                Rule::op_ge => BinOp::Ge,
                Rule::op_add => BinOp::Add,
                Rule::op_sub => BinOp::Sub,
                Rule::op_mul => BinOp::Mul,
                _ => BinOp::Div,
            };
            let span = Span::new(lhs.span.lo as usize, rhs.span.hi as usize);
            deep_enough(Expr::node(ExprKind::Binary(bin, Box::new(lhs), Box::new(rhs)), span))
        })
        .parse(p.into_inner())
}

fn primary(p: P<'_>) -> Result<Expr, Diagnostic> {
    let span = span_of(&p);
    let kind = match p.as_rule() {
        Rule::number => ExprKind::Number(p.as_str().to_string()),
        Rule::string => ExprKind::Text(unquote(p.as_str())),
        Rule::bool_lit => ExprKind::Bool(p.as_str().starts_with('t')),
        Rule::ident => ExprKind::Name(p.as_str().to_string()),
        Rule::paren => return expr(next(&mut p.into_inner(), span)?),
        Rule::if_expr => {
            let mut it = p.into_inner().filter(|q| q.as_rule() == Rule::expr);
            let c = expr(next(&mut it, span)?)?;
            let a = expr(next(&mut it, span)?)?;
            let b = expr(next(&mut it, span)?)?;
            ExprKind::If(Box::new(c), Box::new(a), Box::new(b))
        }
        Rule::match_expr => {
            let mut it = p.into_inner().filter(|q| q.as_rule() != Rule::kw_match);
            let scrutinee = expr(next(&mut it, span)?)?;
            let arms = it.map(arm).collect::<Result<Vec<_>, _>>()?;
            ExprKind::Match(Box::new(scrutinee), arms)
        }
        Rule::aggregate => {
            let mut it = p.into_inner();
            let kind = match next(&mut it, span)?.as_str() {
                "count" => AggKind::Count,
                "sum" => AggKind::Sum,
                "avg" => AggKind::Avg,
                "min" => AggKind::Min,
                "max" => AggKind::Max,
                "all" => AggKind::All,
                _ => AggKind::Any,
            };
            let list = ident(next(&mut it, span)?);
            let (mut alias, mut filter, mut item) = (None, None, None);
            for q in it {
                let rule = q.as_rule();
                let inner = next(&mut q.into_inner(), span)?;
                match rule {
                    Rule::agg_alias => alias = Some(ident(inner)),
                    Rule::agg_filter => filter = Some(Box::new(expr(inner)?)),
                    _ => item = Some(Box::new(expr(inner)?)),
                }
            }
            ExprKind::Aggregate { kind, list, alias, filter, item }
        }
        Rule::call => {
            let mut it = p.into_inner();
            let name = ident(next(&mut it, span)?);
            let args = it.map(expr).collect::<Result<Vec<_>, _>>()?;
            ExprKind::Call(name, args)
        }
        _ => return Err(bug(&p)),
    };
    deep_enough(Expr::node(kind, span))
}

/// Deepest expression accepted: deeper ones are an error, so no later stage can overflow its stack.
const MAX_EXPR_DEPTH: u32 = 128;

fn deep_enough(e: Expr) -> Result<Expr, Diagnostic> {
    if e.depth > MAX_EXPR_DEPTH {
        return Err(Diagnostic::error(
            "nesting-too-deep",
            e.span,
            format!("this expression nests more than {MAX_EXPR_DEPTH} operations deep"),
        )
        .with_help("split it into named values with `let`"));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_puts_coalesce_above_arithmetic() {
        let e = parse_expr("a ?? 0 + b * 2 >= 3 and not c").expect("parses");
        let ExprKind::Binary(BinOp::And, lhs, _) = e.kind else { panic!("and at the top") };
        let ExprKind::Binary(BinOp::Ge, sum, _) = lhs.kind else { panic!(">= under and") };
        let ExprKind::Binary(BinOp::Add, coalesce, _) = sum.kind else { panic!("+ under >=") };
        assert!(matches!(coalesce.kind, ExprKind::Binary(BinOp::Coalesce, _, _)));
    }

    #[test]
    fn aggregate_forms() {
        let e = parse_expr("sum(tasks where completed_on present: units)").expect("parses");
        let ExprKind::Aggregate { kind, filter, item, .. } = e.kind else { panic!("aggregate") };
        assert_eq!(kind, AggKind::Sum);
        assert!(filter.is_some() && item.is_some());
        let e = parse_expr("min(a, b)").expect("parses");
        assert!(matches!(e.kind, ExprKind::Call(..)));
        let e = parse_expr("count(tasks)").expect("parses");
        assert!(matches!(e.kind, ExprKind::Aggregate { kind: AggKind::Count, filter: None, item: None, .. }));
    }

    #[test]
    fn syntax_error_points_at_the_place() {
        let err = parse("ruleset x \"t\" version \"1\" effective 2025-01-01\nlet a = 1 +\n").expect_err("fails");
        assert_eq!(err.code, "syntax");
        assert!(err.span.lo >= 55, "{:?}", err.span);
    }
}
