//! The `merit` command line: check, test, classify, serve, bench. A thin shell over the library.
//!
//! Exit codes (stable, for scripts): 0 success; 1 rule errors or failing tests; 2 usage;
//! 3 a record does not fit the schema; 4 a rule could not be computed for a record; 5 a file
//! could not be read.

macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::out(&format!("{}\n", format_args!($($t)*))) };
}

macro_rules! outp {
    ($($t:tt)*) => { $crate::cli::out(&format!($($t)*)) };
}

pub mod bench;
pub mod call;
pub mod replay;
pub mod serve;

use crate::answer;
use crate::cohort::{Exemption, classify_cohort};
use crate::compile::{self, RuleSet};
use crate::diagnostic::{self, Diagnostic};
use crate::eval::record::{self, Record};
use crate::eval::{self, EvalError, TraceLevel};
use crate::testing;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Stack of the server's threads: rule sets are checked to bound evaluation depth, and this
/// leaves room for the deepest they allow.
pub const RUNTIME_STACK: usize = 16 * 1024 * 1024;

/// Writes to standard output; a closed pipe (`merit test | head`) ends the output quietly.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Exit codes a script can rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything passed.
    Ok = 0,
    /// Rule files have errors, or tests failed.
    Failed = 1,
    /// A record does not fit the schema.
    InvalidRecord = 3,
    /// A rule could not be computed for a record.
    RuleError = 4,
    /// A file could not be read.
    Io = 5,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Parser)]
#[command(name = "merit", version, about = "Classify performance by the products delivered, under rules policy staff write")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--exemption N` or `--exemption unlimited`.
#[derive(Clone, Copy, Debug)]
struct ExemptionArg(Exemption);

impl std::str::FromStr for ExemptionArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "unlimited" {
            return Ok(ExemptionArg(Exemption::Unlimited));
        }
        s.parse().map(|n| ExemptionArg(Exemption::AtMost(n))).map_err(|_| format!("expected a whole number or `unlimited`, got `{s}`"))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ErrorFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum TraceArg {
    None,
    Summary,
    Full,
}

#[derive(Subcommand)]
enum Command {
    /// Check rule files (or directories of `.merit` files) and report every problem.
    Check {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// `human` (rustc style) or `json` (one array of diagnostics).
        #[arg(long, value_enum, default_value = "human")]
        error_format: ErrorFormat,
    },
    /// Run the worked cases (`test` blocks) of rule files.
    Test {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Classify a record (or, with --cohort, a JSON array of records) read from a file or `-`.
    Classify {
        /// The rule file.
        #[arg(long)]
        rules: PathBuf,
        /// The record JSON file, or `-` for standard input.
        input: PathBuf,
        /// Print the structured answer as JSON.
        #[arg(long)]
        json: bool,
        /// The input is a JSON array of one cohort's records; quotas are applied.
        #[arg(long)]
        cohort: bool,
        /// An authority's exemption for the cohort: a number, or `unlimited`.
        #[arg(long, requires = "cohort")]
        exemption: Option<ExemptionArg>,
        /// How much trace to show.
        #[arg(long, value_enum, default_value = "full")]
        trace: TraceArg,
    },
    /// Serve the gRPC API merit.v1 (bundled rules on 127.0.0.1:50051 by default).
    Serve(serve::ServeArgs),
    /// Measure the gRPC service's throughput and latency with concurrent clients.
    Bench(bench::BenchArgs),
    /// Classify through a running server (prints the answer's JSON).
    Call(call::CallArgs),
    /// Replay stored evaluations under a candidate rule set, or verify them under their own.
    Replay(replay::ReplayArgs),
}

/// Runs the command line and returns the exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { paths, error_format } => check(&paths, error_format),
        Command::Test { paths } => test(&paths),
        Command::Classify { rules, input, json, cohort, exemption, trace } => classify(&rules, &input, json, cohort, exemption, trace),
        Command::Serve(args) => serve::serve(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Call(args) => call::call(&args),
        Command::Replay(args) => replay::replay(&args),
    };
    code.into()
}

/// Every `.merit` file under the given paths, sorted.
fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|f| f.extension().is_some_and(|x| x == "merit")).collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub(crate) fn read(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn load(path: &Path) -> Result<RuleSet, Exit> {
    let text = read(path).map_err(|e| {
        eprintln!("error: {e}");
        Exit::Io
    })?;
    match compile::compile(&path.display().to_string(), &text) {
        Ok((rs, warnings)) => {
            if !warnings.is_empty() {
                eprint!("{}", diagnostic::render_human(&rs.source, &warnings, color()));
            }
            Ok(rs)
        }
        Err((source, diags)) => {
            eprint!("{}", diagnostic::render_human(&source, &diags, color()));
            Err(Exit::Failed)
        }
    }
}

fn check(paths: &[PathBuf], format: ErrorFormat) -> Exit {
    let files = match rule_files(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Io;
        }
    };
    let (mut errors, mut warnings, mut io_failed) = (0usize, 0usize, false);
    let mut json_out = Vec::new();
    for f in &files {
        let text = match read(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                io_failed = true;
                continue;
            }
        };
        let name = f.display().to_string();
        let (source, diags): (crate::source::SourceFile, Vec<Diagnostic>) = match compile::compile(&name, &text) {
            Ok((rs, w)) => (rs.source, w),
            Err((s, d)) => (s, d),
        };
        errors += diags.iter().filter(|d| d.is_error()).count();
        warnings += diags.iter().filter(|d| !d.is_error()).count();
        match format {
            ErrorFormat::Human => eprint!("{}", diagnostic::render_human(&source, &diags, color())),
            ErrorFormat::Json => {
                for d in diagnostic::to_json(&source, &diags) {
                    json_out.push(serde_json::to_value(d).unwrap_or_default());
                }
            }
        }
    }
    if let ErrorFormat::Json = format {
        outln!("{}", serde_json::Value::Array(json_out));
    } else {
        eprintln!(
            "checked {} file{}: {errors} error{}, {warnings} warning{}",
            files.len(),
            plural(files.len()),
            plural(errors),
            plural(warnings)
        );
    }
    if io_failed {
        Exit::Io
    } else if errors > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn test(paths: &[PathBuf]) -> Exit {
    let files = match rule_files(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Io;
        }
    };
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    for f in &files {
        let rs = match load(f) {
            Ok(rs) => rs,
            Err(_) => {
                broken += 1;
                outln!("{}: does not compile", f.display());
                continue;
            }
        };
        for r in testing::run_tests(&rs) {
            if r.passed() {
                passed += 1;
                outln!("test {}:{} {} ... ok", f.display(), r.loc.line, r.name);
            } else {
                failed += 1;
                outln!("test {}:{} {} ... FAILED", f.display(), r.loc.line, r.name);
                for msg in &r.failures {
                    outln!("    {msg}");
                }
            }
        }
    }
    let extra = if broken > 0 { format!(", {broken} file{} did not compile", plural(broken)) } else { String::new() };
    outln!("{passed} passed, {failed} failed{extra}");
    if failed > 0 || broken > 0 { Exit::Failed } else { Exit::Ok }
}

fn classify(rules: &Path, input: &Path, json: bool, cohort: bool, exemption: Option<ExemptionArg>, trace: TraceArg) -> Exit {
    let rs = match load(rules) {
        Ok(rs) => rs,
        Err(e) => return e,
    };
    let text = match read(input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Io;
        }
    };
    let trace = match trace {
        TraceArg::None => TraceLevel::None,
        TraceArg::Summary => TraceLevel::Summary,
        TraceArg::Full => TraceLevel::Full,
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {}: not valid JSON: {e}", input.display());
            return Exit::InvalidRecord;
        }
    };
    if !cohort {
        let record = match record::from_json(&rs.checked.schema, &value) {
            Ok(r) => r,
            Err(errors) => return report_invalid(input, None, &errors),
        };
        return match eval::evaluate(&rs, &record, trace) {
            Ok(o) => {
                print_answer(&rs, &record, &o, json);
                Exit::Ok
            }
            Err(e) => report_eval_error(&rs, input, None, &e),
        };
    }
    let serde_json::Value::Array(items) = value else {
        eprintln!("error: {}: --cohort expects a JSON array of records", input.display());
        return Exit::InvalidRecord;
    };
    let exemption = match exemption {
        None => Exemption::None,
        Some(ExemptionArg(e)) => e,
    };

    let mut records: Vec<Record> = Vec::new();
    let mut bad = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match record::from_json(&rs.checked.schema, item) {
            Ok(r) => records.push(r),
            Err(errors) => bad.push((i, errors)),
        }
    }
    if !bad.is_empty() {
        for (i, errors) in &bad {
            report_invalid(input, Some(*i), errors);
        }
        return Exit::InvalidRecord;
    }
    let results = classify_cohort(&rs, &records, exemption, trace);
    let mut exit = Exit::Ok;
    let mut answers = Vec::new();
    for (i, (rec, res)) in records.iter().zip(&results).enumerate() {
        match res {
            Ok(o) => {
                if json {
                    answers.push(answer::to_json(&rs, rec, o));
                } else {
                    outp!("{}", answer::to_human(&rs, rec, o));
                }
            }
            Err(e) => {
                exit = if matches!(e, EvalError::Invalid(_)) { Exit::InvalidRecord } else { Exit::RuleError };
                report_eval_error(&rs, input, Some(i), e);
                if json {
                    // The answers stay in input order: a failed record holds its error.
                    answers.push(serde_json::json!({ "error": { "message": e.describe(&rs) } }));
                }
            }
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&serde_json::Value::Array(answers)).unwrap_or_default());
    }
    exit
}

fn print_answer(rs: &RuleSet, record: &Record, o: &eval::Outcome, json: bool) {
    if json {
        outln!("{}", serde_json::to_string_pretty(&answer::to_json(rs, record, o)).unwrap_or_default());
    } else {
        outp!("{}", answer::to_human(rs, record, o));
    }
}

fn where_(input: &Path, index: Option<usize>) -> String {
    match index {
        Some(i) => format!("{}[{i}]", input.display()),
        None => input.display().to_string(),
    }
}

fn report_invalid(input: &Path, index: Option<usize>, errors: &[record::FieldError]) -> Exit {
    for e in errors {
        eprintln!("error: {}: {e}", where_(input, index));
    }
    Exit::InvalidRecord
}

fn report_eval_error(rs: &RuleSet, input: &Path, index: Option<usize>, e: &EvalError) -> Exit {
    match e {
        EvalError::Invalid(errors) => report_invalid(input, index, errors),
        EvalError::Rule(_) => {
            eprintln!("error: {}: {}", where_(input, index), e.describe(rs));
            Exit::RuleError
        }
    }
}
