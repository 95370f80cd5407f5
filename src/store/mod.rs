//! The evaluation store: every evaluation a caller asks to keep, exactly, with the rules that
//! made it (their source is kept once per hash). SQLite is the embedded default; PostgreSQL is
//! the same store for replicas sharing one database. Writes are grouped into transactions by
//! a [`Batcher`], and a caller is answered only after its evaluation is committed.

mod batch;
mod postgres;
mod sqlite;

pub use batch::Batcher;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// An evaluation to keep.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Evaluation {
    /// Time-ordered id (see [`new_id`]).
    pub id: String,
    /// The subject's id.
    pub subject: String,
    /// The cohort keys (field → value), as a JSON object.
    pub cohort_keys: String,
    /// The first cohort key's value (the agency, for filtering).
    pub agency: String,
    /// The period text.
    pub period: String,
    /// The period's reference date, `YYYY-MM-DD` (empty when the rule set has no period).
    pub period_end: String,
    /// The canonical input record (JSON, schema order, defaults filled in).
    pub record: String,
    /// Rule-set id.
    pub ruleset_id: String,
    /// Rule-set version.
    pub ruleset_version: String,
    /// Rule-set hash; its source is in the store.
    pub ruleset_hash: String,
    /// Outcome id.
    pub outcome: String,
    /// Total as text, when computed.
    pub total: Option<String>,
    /// The whole answer (the Classification JSON with the full trace).
    pub answer: String,
    /// When it was stored, RFC 3339 UTC.
    pub created_at: String,
    /// The cohort call it came from, if any.
    pub cohort_id: Option<String>,
    /// Its position in that cohort call.
    pub cohort_index: Option<u32>,
    /// The cohort call's exemption: a number, `unlimited`, or none.
    pub exemption: Option<String>,
}

/// One request's evaluations, written together or not at all.
#[derive(Clone, Debug)]
pub struct Submission {
    /// `(idempotency key, request hash)`, when the caller gave a key.
    pub key: Option<(String, String)>,
    /// The rule source to keep (hash, id, version, text).
    pub source: Arc<(String, String, String, String)>,
    /// The evaluations.
    pub evaluations: Vec<Evaluation>,
}

/// The rule sources this process knows are committed, so a batch writes each source (tens of
/// kilobytes) once at most instead of once per evaluation. Sources are never deleted.
#[derive(Default)]
pub(crate) struct KnownSources(std::sync::Mutex<std::collections::BTreeSet<String>>);

impl KnownSources {
    /// The distinct sources of a batch not yet known to be committed.
    pub(crate) fn unseen<'b>(&self, batch: &'b [Submission]) -> Vec<&'b (String, String, String, String)> {
        let known = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<&(String, String, String, String)> = Vec::new();
        for s in batch {
            if !known.contains(&s.source.0) && !out.iter().any(|o| o.0 == s.source.0) {
                out.push(&s.source);
            }
        }
        out
    }

    /// Forgets every source: after a failed write nothing is assumed of the database (a row
    /// could have gone with a restored backup or a failover), so the next write inserts again.
    pub(crate) fn forget(&self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    /// Records sources whose transaction committed.
    pub(crate) fn remember<'b>(&self, hashes: impl IntoIterator<Item = &'b String>) {
        let mut known = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        known.extend(hashes.into_iter().cloned());
    }
}

/// What became of a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Committed.
    Stored,
    /// The idempotency key was already used: `(request hash, evaluation ids)` of the first use.
    KeyExists(String, Vec<String>),
}

/// Which evaluations to list or replay. Empty fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Subject id.
    pub subject: Option<String>,
    /// Agency (first cohort key).
    pub agency: Option<String>,
    /// Period reference date from (inclusive, `YYYY-MM-DD`).
    pub period_from: Option<String>,
    /// Period reference date to (inclusive).
    pub period_to: Option<String>,
    /// Rule-set id.
    pub ruleset_id: Option<String>,
    /// Outcome id.
    pub outcome: Option<String>,
}

/// A store failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Either backend, behind one interface.
#[tonic::async_trait]
pub trait Store: Send + Sync {
    /// Writes submissions in one transaction; one result per submission, in order.
    async fn write(&self, batch: Vec<Submission>) -> Result<Vec<Written>, StoreError>;
    /// One evaluation by id.
    async fn get(&self, id: &str) -> Result<Option<Evaluation>, StoreError>;
    /// Evaluations by id, in the order given (missing ones left out).
    async fn get_many(&self, ids: &[String]) -> Result<Vec<Evaluation>, StoreError>;
    /// Evaluations matching a filter, in id order, after `after` (an id), at most `limit`;
    /// without `with_answer`, the (large) answer is left empty.
    async fn list(&self, filter: &Filter, after: Option<&str>, limit: usize, with_answer: bool) -> Result<Vec<Evaluation>, StoreError>;
    /// Every evaluation of one cohort call, in cohort order.
    async fn cohort(&self, cohort_id: &str) -> Result<Vec<Evaluation>, StoreError>;
    /// A rule source by hash.
    async fn source(&self, hash: &str) -> Result<Option<String>, StoreError>;
}

/// Opens a store from a URL: `sqlite:PATH` (or a bare path) or `postgres://...`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let path = path.to_string();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await.map_err(|e| StoreError(e.to_string()))??;
        Ok(Arc::new(store))
    }
}

/// A new time-ordered id: 12 hex digits of milliseconds since 1970, then a per-process
/// sequence and a random part, so ids sort by creation time across processes.
pub fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NODE: OnceLock<u64> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let node = *NODE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        h.write_u32(std::process::id());
        h.finish()
    });
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!("{ms:012x}{seq:06x}{node:016x}")
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(0);
    let (y, m, day) = crate::date::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, d.subsec_millis())
}

/// The columns, with the answer left out (for replay's scan).
pub(crate) const COLUMNS_LIGHT: &str = "id, subject, cohort_keys, agency, period, period_end, record, ruleset_id, ruleset_version, ruleset_hash, outcome, total, '' AS answer, created_at, cohort_id, cohort_index, exemption";

/// Versioned migrations, applied in order, each in its own transaction, by both backends:
/// the SQL is written in the part of the language SQLite and PostgreSQL share (SQLite reads
/// `BIGINT` as an integer column).
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE rule_sources (
        hash TEXT PRIMARY KEY, ruleset_id TEXT NOT NULL, ruleset_version TEXT NOT NULL,
        source TEXT NOT NULL, first_seen TEXT NOT NULL);
     CREATE TABLE evaluations (
        id TEXT PRIMARY KEY, subject TEXT NOT NULL, cohort_keys TEXT NOT NULL, agency TEXT NOT NULL,
        period TEXT NOT NULL, period_end TEXT NOT NULL, record TEXT NOT NULL,
        ruleset_id TEXT NOT NULL, ruleset_version TEXT NOT NULL,
        ruleset_hash TEXT NOT NULL REFERENCES rule_sources(hash),
        outcome TEXT NOT NULL, total TEXT, answer TEXT NOT NULL, created_at TEXT NOT NULL,
        cohort_id TEXT, cohort_index BIGINT, exemption TEXT);
     CREATE INDEX evaluations_subject ON evaluations(subject, id);
     CREATE INDEX evaluations_agency ON evaluations(agency, id);
     CREATE INDEX evaluations_period ON evaluations(period_end, id);
     CREATE INDEX evaluations_ruleset ON evaluations(ruleset_id, id);
     CREATE INDEX evaluations_outcome ON evaluations(outcome, id);
     CREATE INDEX evaluations_cohort ON evaluations(cohort_id, cohort_index);
     CREATE TABLE idempotency (
        key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, evaluation_ids TEXT NOT NULL, created_at TEXT NOT NULL);",
)];

/// SQL shared by both backends (the schema differs only in types).
pub(crate) const COLUMNS: &str = "id, subject, cohort_keys, agency, period, period_end, record, ruleset_id, ruleset_version, ruleset_hash, outcome, total, answer, created_at, cohort_id, cohort_index, exemption";

impl Filter {
    /// Whether an evaluation matches (the same test the SQL `WHERE` makes).
    pub fn matches(&self, e: &Evaluation) -> bool {
        let eq = |f: &Option<String>, v: &str| f.as_ref().is_none_or(|x| x == v);
        eq(&self.subject, &e.subject)
            && eq(&self.agency, &e.agency)
            && eq(&self.ruleset_id, &e.ruleset_id)
            && eq(&self.outcome, &e.outcome)
            && self.period_from.as_ref().is_none_or(|f| e.period_end.as_str() >= f.as_str())
            && self.period_to.as_ref().is_none_or(|t| e.period_end.as_str() <= t.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_unique() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert_eq!(now_rfc3339().len(), 24);
    }
}
