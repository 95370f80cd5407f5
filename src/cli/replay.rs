//! `merit replay`: stored evaluations under a candidate rule set (or `--verify`: under their
//! own rules), as a readable table and transition matrix, or `--json` / `--csv`.

use super::{Exit, RUNTIME_STACK};
use crate::compile;
use crate::registry::Registry;
use crate::replay::{self, Candidate, Change, Event, NotEvaluable, Summary};
use crate::store::{self, Filter};
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// Options of `merit replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The store: `sqlite:PATH` or `postgres://...`.
    #[arg(long, env = "MERIT_STORE", default_value = "sqlite:merit.db")]
    pub store: String,
    /// A candidate rule file.
    #[arg(long, conflicts_with_all = ["ruleset", "verify"])]
    pub candidate: Option<PathBuf>,
    /// A candidate from the rules directory: `id@version` (or `id` for its latest version).
    #[arg(long, conflicts_with = "verify")]
    pub ruleset: Option<String>,
    /// The rules directory for `--ruleset`.
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
    /// Replay each evaluation under its own stored rules; any difference is a failure.
    #[arg(long)]
    pub verify: bool,
    /// Only this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only this agency (the first cohort key).
    #[arg(long)]
    pub agency: Option<String>,
    /// Only periods ending on or after this date (YYYY-MM-DD).
    #[arg(long, value_parser = date_arg)]
    pub period_from: Option<String>,
    /// Only periods ending on or before this date (YYYY-MM-DD).
    #[arg(long, value_parser = date_arg)]
    pub period_to: Option<String>,
    /// Only evaluations made by this rule set id.
    #[arg(long)]
    pub from_ruleset: Option<String>,
    /// Only evaluations with this outcome.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Print one JSON document.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print changes as CSV.
    #[arg(long)]
    pub csv: bool,
}

fn date_arg(s: &str) -> Result<String, String> {
    crate::date::parse_date(s).map(|_| s.to_string()).ok_or_else(|| format!("expected a date YYYY-MM-DD, got `{s}`"))
}

fn candidate(args: &ReplayArgs) -> Result<Candidate, String> {
    if args.verify {
        return Ok(Candidate::Verify);
    }
    if let Some(path) = &args.candidate {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return match compile::compile(&path.display().to_string(), &text) {
            Ok((rs, _)) => Ok(Candidate::Rules(Arc::new(rs))),
            Err((source, diags)) => {
                eprint!("{}", crate::diagnostic::render_human(&source, &diags, std::io::stderr().is_terminal()));
                Err(format!("{} does not compile", path.display()))
            }
        };
    }
    if let Some(r) = &args.ruleset {
        let (reg, _) = Registry::load_dir(&args.rules, None)?;
        let (id, version) = match r.split_once('@') {
            Some((i, v)) => (i, Some(v)),
            None => (r.as_str(), None),
        };
        return reg.resolve(id, version, None).map(|l| Candidate::Rules(Arc::new(l.rs.clone()))).map_err(|e| e.to_string());
    }
    Err("give a candidate: --candidate FILE, --ruleset ID@VERSION, or --verify".into())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn change_line(c: &Change) -> String {
    let mut parts = vec![format!(
        "{} {}: {} → {}, total {} → {}",
        c.subject,
        c.evaluation_id,
        c.old_outcome,
        c.new_outcome,
        c.old_total.as_deref().unwrap_or("-"),
        c.new_total.as_deref().unwrap_or("-")
    )];
    if !c.rules_added.is_empty() || !c.rules_removed.is_empty() {
        let mut r: Vec<String> = c.rules_added.iter().map(|x| format!("+{x}")).collect();
        r.extend(c.rules_removed.iter().map(|x| format!("-{x}")));
        parts.push(format!("rules {}", r.join(" ")));
    }
    for (name, old, new) in &c.criteria {
        parts.push(format!("{name} {old} → {new}"));
    }
    if !c.flags_added.is_empty() || !c.flags_removed.is_empty() {
        let mut f: Vec<String> = c.flags_added.iter().map(|x| format!("+{x}")).collect();
        f.extend(c.flags_removed.iter().map(|x| format!("-{x}")));
        parts.push(format!("flags {}", f.join(" ")));
    }
    parts.join("; ")
}

/// The transition matrix as a text table: rows are stored outcomes, columns new ones.
pub fn matrix(s: &Summary) -> String {
    let from: BTreeSet<&String> = s.transitions.keys().map(|(a, _)| a).collect();
    let to: BTreeSet<&String> = s.transitions.keys().map(|(_, b)| b).collect();
    let width = from.iter().chain(to.iter()).map(|x| x.chars().count()).max().unwrap_or(4).max(8);
    let mut out = format!("{:width$}", "old \\ new");
    for t in &to {
        out.push_str(&format!("  {t:>width$}"));
    }
    out.push('\n');
    for f in &from {
        out.push_str(&format!("{f:width$}"));
        for t in &to {
            let n = s.transitions.get(&((*f).clone(), (*t).clone())).copied().unwrap_or(0);
            out.push_str(&format!("  {n:>width$}"));
        }
        out.push('\n');
    }
    out
}

/// Runs the replay and prints it.
pub fn replay(args: &ReplayArgs) -> Exit {
    let cand = match candidate(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failed;
        }
    };
    let filter = Filter {
        subject: args.subject.clone(),
        agency: args.agency.clone(),
        period_from: args.period_from.clone(),
        period_to: args.period_to.clone(),
        ruleset_id: args.from_ruleset.clone(),
        outcome: args.outcome.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(RUNTIME_STACK).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failed;
        }
    };
    let plain = !args.json && !args.csv;
    let bar = (plain && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} replayed {pos} evaluations ({per_sec}, {elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b
    });
    // Replay reads a store; it never creates one (a mistyped path would replay nothing).
    if !args.store.starts_with("postgres") {
        let path = args.store.strip_prefix("sqlite://").or_else(|| args.store.strip_prefix("sqlite:")).unwrap_or(&args.store);
        if !std::path::Path::new(path).is_file() {
            eprintln!("error: no store at {path}");
            return Exit::Io;
        }
    }
    runtime.block_on(async {
        let store = match store::open(&args.store).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Io;
            }
        };
        let mut changes: Vec<Change> = Vec::new();
        let mut not_evaluable: Vec<NotEvaluable> = Vec::new();
        if args.csv {
            outln!("evaluation_id,subject,old_outcome,new_outcome,old_total,new_total,rules_added,rules_removed,cohort_id,reason");
        }
        let result = replay::replay(store.as_ref(), &cand, &filter, |e| {
            match e {
            Event::Progress(n) => {
                if let Some(b) = &bar {
                    b.set_position(n);
                }
            }
            Event::Change(c) => {
                if plain {
                    if let Some(b) = &bar {
                        b.suspend(|| outln!("{}", change_line(&c)));
                    } else {
                        outln!("{}", change_line(&c));
                    }
                } else if args.csv {
                    outln!(
                        "{},{},{},{},{},{},{},{},{},",
                        csv_field(&c.evaluation_id),
                        csv_field(&c.subject),
                        csv_field(&c.old_outcome),
                        csv_field(&c.new_outcome),
                        csv_field(c.old_total.as_deref().unwrap_or("")),
                        csv_field(c.new_total.as_deref().unwrap_or("")),
                        csv_field(&c.rules_added.join(" ")),
                        csv_field(&c.rules_removed.join(" ")),
                        csv_field(c.cohort_id.as_deref().unwrap_or(""))
                    );
                }
                changes.push(*c);
            }
            Event::NotEvaluable(n) => {
                if plain {
                    outln!("{} {}: not evaluable: {}", n.subject, n.evaluation_id, n.reason);
                } else if args.csv {
                    outln!("{},{},,not_evaluable,,,,,,{}", csv_field(&n.evaluation_id), csv_field(&n.subject), csv_field(&n.reason));
                }
                not_evaluable.push(n);
            }
            }
            std::ops::ControlFlow::Continue(())
        })
        .await;
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        let s = match result {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Io;
            }
        };
        if args.json {
            let doc = serde_json::json!({
                "candidate": s.candidate.as_ref().map(|(i, v, h)| serde_json::json!({"id": i, "version": v, "hash": h})),
                "changes": changes.iter().map(|c| serde_json::json!({
                    "evaluation_id": c.evaluation_id, "subject": c.subject, "old_outcome": c.old_outcome, "new_outcome": c.new_outcome,
                    "old_total": c.old_total, "new_total": c.new_total, "rules_added": c.rules_added, "rules_removed": c.rules_removed,
                    "criteria": c.criteria.iter().map(|(n, o, w)| serde_json::json!({"name": n, "old": o, "new": w})).collect::<Vec<_>>(),
                    "flags_added": c.flags_added, "flags_removed": c.flags_removed, "cohort_id": c.cohort_id,
                })).collect::<Vec<_>>(),
                "not_evaluable": not_evaluable.iter().map(|n| serde_json::json!({"evaluation_id": n.evaluation_id, "subject": n.subject, "reason": n.reason})).collect::<Vec<_>>(),
                "summary": {
                    "evaluations": s.evaluations, "evaluated": s.evaluated, "changed": s.changed, "not_evaluable": s.not_evaluable, "mismatches": s.mismatches,
                    "transitions": s.transitions.iter().map(|((f, t), n)| serde_json::json!({"from": f, "to": t, "count": n})).collect::<Vec<_>>(),
                    "cohorts": s.cohorts.iter().map(|c| serde_json::json!({"cohort_id": c.cohort_id, "members": c.members, "old_demoted": c.old_demoted, "new_demoted": c.new_demoted})).collect::<Vec<_>>(),
                }
            });
            outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else if plain {
            outln!("");
            outp!("{}", matrix(&s));
            for c in s.cohorts.iter().filter(|c| c.old_demoted != c.new_demoted) {
                outln!("cohort {}: {} members, demoted by quota {} → {}", c.cohort_id, c.members, c.old_demoted, c.new_demoted);
            }
            let what = if args.verify { format!(", {} not reproduced", s.mismatches) } else { String::new() };
            outln!("{} evaluations: {} evaluated, {} changed, {} not evaluable{what}", s.evaluations, s.evaluated, s.changed, s.not_evaluable);
        }
        if args.verify && s.mismatches > 0 { Exit::Failed } else { Exit::Ok }
    })
}
