//! Compile: parse and check a rule file, then build the immutable [`RuleSet`] that evaluation
//! shares across threads: flags interned in sorted order, source locations and texts for the
//! trace prepared once, and the rule set's identity (SHA-256 of its text).

use crate::check::ir::{Ex, FieldType};
use crate::check::{self, Checked};
use crate::diagnostic::{Diagnostic, has_errors};
use crate::eval::fast::Plan;
use crate::eval::program::Program;
use crate::source::{LineCol, SourceFile, Span};
use crate::syntax;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Where a rule came from, for the trace.
#[derive(Clone, Debug)]
pub struct SourceInfo {
    /// Rule or value name.
    pub name: String,
    /// Line and column of the declaration.
    pub loc: LineCol,
    /// The declaration's text (whitespace runs collapsed).
    pub text: String,
    /// Record fields it reads.
    pub inputs: Vec<String>,
}

/// Offsets of each kind of rule in [`RuleSet::sources`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SourceBases {
    /// Eligibility rules.
    pub eligibility: usize,
    /// Validity rules.
    pub invalid: usize,
    /// Bands.
    pub band: usize,
    /// Vetoes.
    pub veto: usize,
    /// Caps.
    pub cap: usize,
    /// Flag rules.
    pub flag: usize,
    /// Quotas.
    pub quota: usize,
}

/// A compiled rule set: immutable, `Send + Sync`, evaluated without any name lookup.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// The checked rules.
    pub checked: Checked,
    /// The source file.
    pub source: SourceFile,
    /// SHA-256 of the text (CRLF turned into LF), lowercase hex.
    pub hash: String,
    /// Trace information per rule (see [`SourceBases`]).
    pub sources: Vec<SourceInfo>,
    /// Where each kind of rule starts in `sources`.
    pub bases: SourceBases,
    /// Every flag code, sorted; outcomes refer to flags by index into this.
    pub flag_codes: Vec<String>,
    /// Every expression compiled to closures (what traced evaluation runs, and trace-off evaluation
    /// where the fast path gives up).
    pub program: Arc<Program>,
    /// The rules lowered for the fast path (evaluation with the trace off), when they can be.
    pub fast: Option<Arc<Plan>>,
}

/// Compiled rules with their warnings, or the diagnostics that stopped compilation.
pub type CompileResult = Result<(RuleSet, Vec<Diagnostic>), (SourceFile, Vec<Diagnostic>)>;

/// Parses, checks and compiles one rule file.
pub fn compile(name: &str, text: &str) -> CompileResult {
    let source = SourceFile::new(name, text);
    let ast = match syntax::parse(&source.text) {
        Ok(a) => a,
        Err(d) => return Err((source, vec![d])),
    };
    let (checked, diags) = check::check(&source, &ast);
    let Some(checked) = checked.filter(|_| !has_errors(&diags)) else {
        return Err((source, diags));
    };
    let rs = build(checked, source);
    Ok((rs, diags))
}

/// SHA-256 of a rule file's text after CRLF → LF, as lowercase hex.
pub fn hash_text(text: &str) -> String {
    let normal = text.replace("\r\n", "\n");
    let digest = Sha256::digest(normal.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn build(checked: Checked, source: SourceFile) -> RuleSet {
    let hash = hash_text(&source.text);
    let mut flags = BTreeSet::new();
    let rules = checked.eligibility.iter().chain(&checked.vetoes).chain(&checked.caps).chain(&checked.flags);
    for r in rules {
        if let Some(f) = &r.flag {
            flags.insert(f.code.clone());
        }
    }
    if let Some(f) = &checked.classify.flag {
        flags.insert(f.code.clone());
    }
    for q in &checked.quotas {
        flags.extend(q.tie_flag.iter().cloned());
        flags.extend(q.demote_flag.iter().cloned());
    }
    let mut sources = Vec::new();
    let info = |name: &str, span: Span, inputs: Vec<String>| SourceInfo {
        name: name.to_string(),
        loc: source.line_col(span.lo),
        text: collapse(source.snippet(span)),
        inputs,
    };
    for l in &checked.lets {
        sources.push(info(&l.name, l.span, inputs_of(&checked, &l.expr)));
    }
    let mut bases = SourceBases { eligibility: sources.len(), ..SourceBases::default() };
    for r in &checked.eligibility {
        sources.push(info(&r.name, r.span, inputs_of(&checked, &r.when)));
    }
    bases.invalid = sources.len();
    for r in &checked.invalid {
        sources.push(info(&r.path, r.span, Vec::new()));
    }
    bases.band = sources.len();
    let levels = &checked.schema.levels;
    for b in &checked.classify.bands {
        let name = levels.get(b.level as usize).cloned().unwrap_or_default();
        let inputs = b.gate.as_ref().map(|(g, _, _)| inputs_of(&checked, g)).unwrap_or_default();
        sources.push(info(&name, b.span, inputs));
    }
    bases.veto = sources.len();
    for r in &checked.vetoes {
        sources.push(info(&r.name, r.span, inputs_of(&checked, &r.when)));
    }
    bases.cap = sources.len();
    for r in &checked.caps {
        sources.push(info(&r.name, r.span, inputs_of(&checked, &r.when)));
    }
    bases.flag = sources.len();
    for r in &checked.flags {
        sources.push(info(&r.name, r.span, inputs_of(&checked, &r.when)));
    }
    bases.quota = sources.len();
    for q in &checked.quotas {
        sources.push(info(&q.name, q.span, Vec::new()));
    }
    let program = Arc::new(Program::lower(&checked));
    let flag_codes: Vec<String> = flags.into_iter().collect();
    let fast = Plan::lower(&checked, |code| flag_index(&flag_codes, code)).map(Arc::new);
    RuleSet { checked, source, hash, sources, bases, flag_codes, program, fast }
}

/// The declaration's text for the trace: comments dropped, whitespace runs collapsed.
fn collapse(s: &str) -> String {
    let mut code = String::with_capacity(s.len());
    for line in s.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            match c {
                '\\' if in_string => escaped = !escaped,
                '"' if !escaped => in_string = !in_string,
                '#' if !in_string => {
                    end = i;
                    break;
                }
                _ => escaped = false,
            }
            if c != '\\' {
                escaped = false;
            }
        }
        code.push_str(line.get(..end).unwrap_or(line));
        code.push('\n');
    }
    let mut out = String::with_capacity(code.len());
    for (i, word) in code.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > 400 {
        out = out.chars().take(400).collect::<String>() + "…";
    }
    out
}

/// Root record fields an expression reads, directly or through named values, in schema order.
fn inputs_of(c: &Checked, ex: &Ex) -> Vec<String> {
    let mut slots = BTreeSet::new();
    let mut seen_lets = BTreeSet::new();
    let mut seen_items = BTreeSet::new();
    walk(c, ex, &mut slots, &mut seen_lets, &mut seen_items);
    let fields = c.schema.records.first().map(|r| r.fields.as_slice()).unwrap_or(&[]);
    slots.into_iter().filter_map(|s: u16| fields.get(s as usize).map(|f| f.name.clone())).collect()
}

fn walk(c: &Checked, ex: &Ex, slots: &mut BTreeSet<u16>, lets: &mut BTreeSet<usize>, items: &mut BTreeSet<usize>) {
    match ex {
        Ex::Field { frame: 0, slot } => {
            slots.insert(*slot);
        }
        Ex::Let(id) => {
            if lets.insert(*id)
                && let Some(l) = c.lets.get(*id)
            {
                walk(c, &l.expr, slots, lets, items);
            }
        }
        Ex::ItemLet { id, .. } => {
            if items.insert(*id)
                && let Some(l) = c.item_lets.get(*id)
            {
                slots.insert(l.list_slot);
                walk(c, &l.expr, slots, lets, items);
            }
        }
        _ => ex.for_each_child(|e| walk(c, e, slots, lets, items)),
    }
}

/// The index of a flag code in sorted codes.
fn flag_index(codes: &[String], code: &str) -> Option<u16> {
    codes.binary_search_by(|c| c.as_str().cmp(code)).ok().and_then(|i| u16::try_from(i).ok())
}

impl RuleSet {
    /// The index of a flag code.
    pub fn flag_index(&self, code: &str) -> Option<u16> {
        flag_index(&self.flag_codes, code)
    }

    /// A level's id.
    pub fn level_id(&self, l: u8) -> &str {
        self.checked.schema.levels.get(l as usize).map_or("", String::as_str)
    }

    /// A level's label.
    pub fn level_label(&self, l: u8) -> &str {
        self.checked.level_labels.get(l as usize).map_or("", String::as_str)
    }

    /// Whether a level is one of the ordered levels (not an outcome outside the order).
    pub fn is_ordered(&self, l: u8) -> bool {
        (l as usize) < self.checked.schema.ordered_levels
    }

    /// The effective date as `YYYY-MM-DD`.
    pub fn effective(&self) -> String {
        crate::date::format_date(self.checked.effective)
    }

    /// Whether a root field is a list (for rendering inputs).
    pub fn is_list_field(&self, slot: usize) -> bool {
        self.checked.schema.records.first().and_then(|r| r.fields.get(slot)).is_some_and(|f| matches!(f.ty, FieldType::List(_)))
    }
}
