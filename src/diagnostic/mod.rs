//! Diagnostics as data, and their renderers (human rustc-style, plain, JSON).
//!
//! Every stage reports problems as [`Diagnostic`] values; rendering is separate, so the CLI,
//! the service and tests show the same facts.

use crate::source::{SourceFile, Span};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;
use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The rule set cannot be compiled.
    Error,
    /// Compiles, but probably not what was meant.
    Warning,
}

/// One problem found in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable kebab-case code, documented in docs/errors.md.
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// Lowercase, no final period.
    pub message: String,
    /// The offending text.
    pub span: Span,
    /// Label under the primary span.
    pub label: String,
    /// Secondary spans with labels.
    pub secondary: Vec<(Span, String)>,
    /// A suggestion.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            label: String::new(),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    /// With a label under the primary span.
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    /// With a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sets the label in place.
    pub fn set_label(&mut self, label: impl Into<String>) -> &mut Diagnostic {
        self.label = label.into();
        self
    }

    /// Sets the help in place.
    pub fn set_help(&mut self, help: impl Into<String>) -> &mut Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// With a secondary span.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Whether any diagnostic is an error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

/// Renders diagnostics rustc-style; `color` adds ANSI colours, otherwise plain ASCII text.
pub fn render_human(file: &SourceFile, diagnostics: &[Diagnostic], color: bool) -> String {
    let simple = SimpleFile::new(file.name.as_str(), file.text.as_str());
    let mut config = term::Config::default();
    if !color {
        config.chars = term::Chars::ascii();
    }
    let mut out: Vec<u8> = Vec::new();
    for d in diagnostics {
        let severity = match d.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
        };
        let mut labels = vec![cs::Label::primary((), d.span.range()).with_message(&d.label)];
        labels.extend(d.secondary.iter().map(|(s, m)| cs::Label::secondary((), s.range()).with_message(m)));
        let mut diag = cs::Diagnostic::new(severity).with_code(d.code).with_message(&d.message).with_labels(labels);
        if let Some(help) = &d.help {
            diag = diag.with_notes(vec![format!("help: {help}")]);
        }
        let result = if color {
            let mut buf = term::termcolor::Ansi::new(&mut out);
            term::emit_to_write_style(&mut buf, &config, &simple, &diag)
        } else {
            let mut buf = term::termcolor::NoColor::new(&mut out);
            term::emit_to_write_style(&mut buf, &config, &simple, &diag)
        };
        if result.is_err() {
            // A span outside the file: fall back to the one-line form rather than lose it.
            out.extend(render_line(file, d).into_bytes());
            out.push(b'\n');
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line `file:line:col: severity[code]: message` for logs.
pub fn render_line(file: &SourceFile, d: &Diagnostic) -> String {
    let at = file.line_col(d.span.lo);
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    format!("{}:{}: {sev}[{}]: {}", file.name, at, d.code, d.message)
}

/// The JSON form of a diagnostic: stable field names, 1-based lines and columns.
#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    /// File name.
    pub file: &'a str,
    /// `error` or `warning`.
    pub severity: Severity,
    /// Stable code.
    pub code: &'a str,
    /// Message.
    pub message: &'a str,
    /// Start line.
    pub line: u32,
    /// Start column.
    pub column: u32,
    /// End line.
    pub end_line: u32,
    /// End column.
    pub end_column: u32,
    /// Help, if any.
    pub help: Option<&'a str>,
}

/// Diagnostics in their JSON form.
pub fn to_json<'a>(file: &'a SourceFile, diagnostics: &'a [Diagnostic]) -> Vec<JsonDiagnostic<'a>> {
    diagnostics
        .iter()
        .map(|d| {
            let a = file.line_col(d.span.lo);
            let b = file.line_col(d.span.hi);
            JsonDiagnostic {
                file: &file.name,
                severity: d.severity,
                code: d.code,
                message: &d.message,
                line: a.line,
                column: a.col,
                end_line: b.line,
                end_column: b.col,
                help: d.help.as_deref(),
            }
        })
        .collect()
}

/// "did you mean `x`": the closest candidate by edit distance, if close enough.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::levenshtein(name, c);
        // Ties go to the name that sorts first, so hints never depend on iteration order.
        if best.is_none_or(|(bd, bc)| (d, c) < (bd, bc)) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (name.chars().count() / 3).max(1) + 1;
    (d <= limit && d > 0).then(|| format!("did you mean `{c}`?"))
}
