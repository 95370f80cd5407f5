//! The served rule sets: every version of every rule set loaded from a directory, chosen by
//! id and version or by the version in effect on a record's period date (DESIGN.md "Settled
//! interfaces"). A reload compiles beside what is served and keeps, for each file, the last
//! version that compiled; the service swaps whole registries atomically.

use crate::compile::{self, RuleSet};
use crate::date;
use crate::diagnostic::{self, Diagnostic};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A compiled rule set and the file it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The rule set.
    pub rs: RuleSet,
    /// The file's path as given.
    pub file: String,
    /// `(hash, id, version, source text)`, shared by every evaluation the store keeps under it.
    pub identity: Arc<(String, String, String, String)>,
    /// What every answer under it shares, encoded once for the service.
    pub answer_parts: crate::service::encoded::AnswerParts,
}

impl Loaded {
    /// A loaded rule set from its file.
    pub fn new(rs: RuleSet, file: String) -> Loaded {
        let identity = Arc::new((rs.hash.clone(), rs.checked.id.clone(), rs.checked.version.clone(), rs.source.text.clone()));
        let answer_parts = crate::service::encoded::AnswerParts::new(&rs);
        Loaded { rs, file, identity, answer_parts }
    }
}

/// Every served rule set, by id, each id's versions sorted by effective date.
#[derive(Debug, Default)]
pub struct Registry {
    by_id: BTreeMap<String, Vec<Arc<Loaded>>>,
    by_file: BTreeMap<PathBuf, Arc<Loaded>>,
}

/// Why a rule-set reference could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No rule set has this id.
    UnknownId(String),
    /// The id exists but not this version.
    UnknownVersion(String, String),
    /// No version is in effect on the date; the earliest takes effect later.
    NotInEffect {
        /// Rule-set id.
        id: String,
        /// The period's reference date.
        on: String,
        /// The earliest effective date.
        earliest: String,
    },
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::UnknownId(id) => write!(f, "no rule set `{id}` is served"),
            ResolveError::UnknownVersion(id, v) => {
                write!(f, "rule set `{id}` has no version `{v}`")
            }
            ResolveError::NotInEffect { id, on, earliest } => {
                write!(f, "no version of rule set `{id}` is in effect on {on}; the earliest takes effect on {earliest}")
            }
        }
    }
}

/// What a (re)load did with one file.
#[derive(Clone, Debug)]
pub enum LoadReport {
    /// Compiled and served (new or changed).
    Loaded {
        /// File.
        file: String,
        /// `id@version`.
        rule_set: String,
        /// Its hash.
        hash: String,
    },
    /// Did not compile or conflicted; the previous version (if any) goes on serving.
    Rejected {
        /// File.
        file: String,
        /// Why, rendered.
        why: String,
        /// Whether a previous version of this file goes on serving.
        kept_previous: bool,
    },
    /// The file disappeared; its rule set is no longer served.
    Removed {
        /// File.
        file: String,
    },
}

impl Registry {
    /// A registry of already compiled rule sets (tests, embedded defaults).
    pub fn from_rule_sets(sets: Vec<(String, RuleSet)>) -> Result<Registry, String> {
        let mut by_file = BTreeMap::new();
        for (file, rs) in sets {
            by_file.insert(PathBuf::from(&file), Arc::new(Loaded::new(rs, file)));
        }
        let reg = Registry::index(by_file);
        match reg.conflicts().first() {
            Some((key, files)) => Err(format!("{key} is declared by {}", files.join(" and "))),
            None => Ok(reg),
        }
    }

    fn index(by_file: BTreeMap<PathBuf, Arc<Loaded>>) -> Registry {
        let mut by_id: BTreeMap<String, Vec<Arc<Loaded>>> = BTreeMap::new();
        for l in by_file.values() {
            by_id.entry(l.rs.checked.id.clone()).or_default().push(l.clone());
        }
        for v in by_id.values_mut() {
            v.sort_by(|a, b| (a.rs.checked.effective, &a.rs.checked.version).cmp(&(b.rs.checked.effective, &b.rs.checked.version)));
        }
        Registry { by_id, by_file }
    }

    /// `(id@version, files)` declared by more than one file.
    fn conflicts(&self) -> Vec<(String, Vec<String>)> {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in self.by_file.values() {
            seen.entry(format!("{}@{}", l.rs.checked.id, l.rs.checked.version)).or_default().push(l.file.clone());
        }
        seen.into_iter().filter(|(_, f)| f.len() > 1).collect()
    }

    /// Every served version, by id then effective date.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Loaded>> {
        self.by_id.values().flatten()
    }

    /// How many rule-set versions are served.
    pub fn len(&self) -> usize {
        self.by_file.len()
    }

    /// Whether nothing is served.
    pub fn is_empty(&self) -> bool {
        self.by_file.is_empty()
    }

    /// The versions of one rule set, oldest effective first.
    pub fn versions(&self, id: &str) -> Option<&[Arc<Loaded>]> {
        self.by_id.get(id).map(Vec::as_slice)
    }

    /// A rule set by id and version; without a version, the one in effect on `on` (days since
    /// 1970-01-01), or the latest when `on` is unknown.
    pub fn resolve(&self, id: &str, version: Option<&str>, on: Option<i32>) -> Result<Arc<Loaded>, ResolveError> {
        let versions = self.by_id.get(id).ok_or_else(|| ResolveError::UnknownId(id.to_string()))?;
        if let Some(v) = version {
            return versions
                .iter()
                .rev()
                .find(|l| l.rs.checked.version == v)
                .cloned()
                .ok_or_else(|| ResolveError::UnknownVersion(id.to_string(), v.to_string()));
        }
        let pick = match on {
            Some(day) => versions.iter().rev().find(|l| l.rs.checked.effective <= day),
            None => versions.last(),
        };
        pick.cloned().ok_or_else(|| ResolveError::NotInEffect {
            id: id.to_string(),
            on: on.map(date::format_date).unwrap_or_default(),
            earliest: versions.first().map(|l| l.rs.effective()).unwrap_or_default(),
        })
    }

    /// The name of the period field of a rule set's latest version (to pick a version by date).
    pub fn period_field(&self, id: &str) -> Option<String> {
        let l = self.by_id.get(id)?.last()?;
        let slot = l.rs.checked.period_slot?;
        l.rs.checked.schema.records.first()?.fields.get(slot as usize).map(|f| f.name.clone())
    }

    /// Loads every `.merit` file of a directory. Files unchanged since `previous` are reused;
    /// a file that fails to compile, or declares an id@version another file declares, keeps
    /// its previous version (if any) and is reported.
    pub fn load_dir(dir: &Path, previous: Option<&Registry>) -> Result<(Registry, Vec<LoadReport>), String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read rules directory {}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "merit")).collect();
        paths.sort();
        let mut reports = Vec::new();
        let mut files: BTreeMap<PathBuf, Arc<Loaded>> = BTreeMap::new();
        let mut fresh: Vec<PathBuf> = Vec::new();
        for path in &paths {
            let name = path.display().to_string();
            let old = previous.and_then(|p| p.by_file.get(path)).cloned();
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    reports.push(LoadReport::Rejected { file: name, why: format!("cannot read: {e}"), kept_previous: old.is_some() });
                    if let Some(o) = old {
                        files.insert(path.clone(), o);
                    }
                    continue;
                }
            };
            if let Some(o) = &old
                && o.rs.hash == compile::hash_text(&text)
            {
                files.insert(path.clone(), o.clone());
                continue;
            }
            match compile::compile(&name, &text) {
                Ok((rs, _warnings)) => {
                    reports.push(LoadReport::Loaded {
                        file: name.clone(),
                        rule_set: format!("{}@{}", rs.checked.id, rs.checked.version),
                        hash: rs.hash.clone(),
                    });
                    files.insert(path.clone(), Arc::new(Loaded::new(rs, name)));
                    fresh.push(path.clone());
                }
                Err((source, diags)) => {
                    let why = render_errors(&source, &diags);
                    reports.push(LoadReport::Rejected { file: name, why, kept_previous: old.is_some() });
                    if let Some(o) = old {
                        files.insert(path.clone(), o);
                    }
                }
            }
        }
        if let Some(prev) = previous {
            for (path, l) in &prev.by_file {
                if !paths.contains(path) {
                    reports.push(LoadReport::Removed { file: l.file.clone() });
                }
            }
        }
        // Two files declaring one id@version is an error: every newly compiled file in the clash
        // gives way (falling back to what it served before, if anything); unchanged ones stay.
        loop {
            let reg = Registry::index(files.clone());
            let conflicts = reg.conflicts();
            let Some((key, names)) = conflicts.first() else { return Ok((reg, reports)) };
            let clashing: Vec<PathBuf> = paths.iter().filter(|p| names.contains(&p.display().to_string())).cloned().collect();
            let mut culprits: Vec<PathBuf> = clashing.iter().filter(|p| fresh.contains(p)).cloned().collect();
            let all_old = culprits.is_empty();
            if all_old {
                culprits = clashing; // cannot happen after a valid registry; serve neither
            }
            for path in culprits {
                fresh.retain(|p| *p != path);
                let name = path.display().to_string();
                let old = if all_old { None } else { previous.and_then(|p| p.by_file.get(&path)).cloned() };
                reports.retain(|r| !matches!(r, LoadReport::Loaded { file, .. } if *file == name));
                let others: Vec<String> = names.iter().filter(|n| **n != name).cloned().collect();
                reports.push(LoadReport::Rejected {
                    file: name,
                    why: format!("{key} is also declared by {}", others.join(", ")),
                    kept_previous: old.is_some(),
                });
                match old {
                    Some(o) => files.insert(path, o),
                    None => files.remove(&path),
                };
            }
        }
    }
}

fn render_errors(source: &crate::source::SourceFile, diags: &[Diagnostic]) -> String {
    diags.iter().filter(|d| d.is_error()).map(|d| diagnostic::render_line(source, d)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, version: &str, effective: &str) -> String {
        format!(
            "ruleset {id} \"t\" version \"{version}\" effective {effective}\nrecord {{ subject_id: text role subject\n period: text role period\n p: decimal }}\nlevels {{ good \"G\" weak \"W\" }}\nscore total = p\nclassify by total {{ good when total >= 50 weak otherwise }}\n"
        )
    }

    #[test]
    fn versions_resolve_by_effective_date() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.merit"), rule("r", "1", "2025-01-01")).expect("write");
        std::fs::write(dir.path().join("b.merit"), rule("r", "2", "2026-01-01")).expect("write");
        let (reg, reports) = Registry::load_dir(dir.path(), None).expect("loads");
        assert_eq!(reports.len(), 2);
        let on = |d: &str| date::parse_date(d);
        assert_eq!(reg.resolve("r", None, on("2025-12-31")).expect("v1").rs.checked.version, "1");
        assert_eq!(reg.resolve("r", None, on("2026-03-31")).expect("v2").rs.checked.version, "2");
        assert_eq!(reg.resolve("r", Some("1"), on("2026-03-31")).expect("asked").rs.checked.version, "1");
        assert!(matches!(reg.resolve("r", None, on("2024-12-31")), Err(ResolveError::NotInEffect { .. })));
        assert!(matches!(reg.resolve("x", None, None), Err(ResolveError::UnknownId(_))));
        assert!(matches!(reg.resolve("r", Some("9"), None), Err(ResolveError::UnknownVersion(..))));
    }

    #[test]
    fn a_broken_or_conflicting_edit_keeps_the_previous_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.merit");
        std::fs::write(&a, rule("r", "1", "2025-01-01")).expect("write");
        let (first, _) = Registry::load_dir(dir.path(), None).expect("loads");
        let hash = first.resolve("r", None, None).expect("served").rs.hash.clone();
        std::fs::write(&a, "ruleset r \"t\" version \"1\" effective 2025-01-01\nlet = oops").expect("write");
        let (second, reports) = Registry::load_dir(dir.path(), Some(&first)).expect("loads");
        assert_eq!(second.resolve("r", None, None).expect("still served").rs.hash, hash);
        assert!(matches!(&reports[..], [LoadReport::Rejected { kept_previous: true, .. }]));
        std::fs::write(&a, rule("r", "1", "2025-01-01")).expect("write");
        std::fs::write(dir.path().join("b.merit"), rule("r", "1", "2025-06-01")).expect("write");
        let (third, reports) = Registry::load_dir(dir.path(), Some(&second)).expect("loads");
        assert_eq!(third.len(), 1, "{reports:?}");
        // At start-up, two files with one id@version: neither is served.
        let (fresh, reports) = Registry::load_dir(dir.path(), None).expect("loads");
        assert!(fresh.is_empty(), "{reports:?}");
        assert_eq!(third.resolve("r", None, None).expect("served").rs.hash, hash);
        assert!(reports.iter().any(|r| matches!(r, LoadReport::Rejected { why, .. } if why.contains("r@1 is also declared"))));
    }
}
