//! SQLite: one file, WAL, `synchronous = FULL` (an acknowledged evaluation survives a crash),
//! migrated on open. rusqlite is synchronous, so calls run on blocking threads: one writer
//! connection, and reader connections kept for reuse (WAL lets them read while it writes).

use super::{COLUMNS, Evaluation, Filter, KnownSources, MIGRATIONS, Store, StoreError, Submission, Written};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// The SQLite store.
pub struct SqliteStore {
    path: String,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    sources: Arc<KnownSources>,
    /// Tells the checkpointer thread to stop.
    stop: Arc<AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies the WAL into the database from a connection and thread of its own, so the writer
/// never stalls on a checkpoint inside a commit. Passive checkpoints wait for nobody; the
/// writer's own automatic checkpoint stays as a backstop should this thread fall behind.
fn start_checkpointer(path: &str, stop: Arc<AtomicBool>) -> Result<(), StoreError> {
    let c = connect(path)?;
    std::thread::Builder::new()
        .name("merit-sqlite-checkpoint".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; the writer's own checkpoints take over");
                }
            }
        })
        .map(|_| ())
        .map_err(|e| StoreError(format!("cannot start the checkpoint thread: {e}")))
}

/// Opens a connection. 16 KiB pages hold a stored row (answer with its trace, and the record)
/// without overflow pages. The writer leaves checkpoints to its own thread (see
/// [`start_checkpointer`]); its automatic checkpoint is only a backstop.
fn connect(path: &str) -> Result<Connection, StoreError> {
    let c = Connection::open(path).map_err(|e| StoreError(format!("cannot open {path}: {e}")))?;
    c.execute_batch("PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 4000; PRAGMA cache_size = -65536;")
        .map_err(err)?;
    Ok(c)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database file.
    pub fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let mut c = connect(path)?;
        c.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            .map_err(err)?;
        for (version, sql) in MIGRATIONS {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
            let done: Option<i64> = tx
                .query_row("SELECT version FROM schema_migrations WHERE version = ?1", [version], |r| r.get(0))
                .optional()
                .map_err(err)?;
            if done.is_none() {
                tx.execute_batch(sql).map_err(|e| StoreError(format!("migration {version}: {e}")))?;
                tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", params![version, super::now_rfc3339()])
                    .map_err(err)?;
            }
            tx.commit().map_err(err)?;
        }
        // The backstop checkpoint lets the WAL grow large; the file is cut back to 64 MiB after.
        c.execute_batch("PRAGMA wal_autocheckpoint = 40000; PRAGMA journal_size_limit = 67108864").map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        start_checkpointer(path, stop.clone())?;
        Ok(SqliteStore {
            path: path.to_string(),
            writer: Arc::new(Mutex::new(c)),
            readers: Arc::new(Mutex::new(Vec::new())),
            sources: Arc::default(),
            stop,
        })
    }

    /// Runs a read on a pooled reader connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = lock(&readers).pop();
            let conn = match conn {
                Some(c) => c,
                None => connect(&path)?,
            };
            let r = f(&conn);
            lock(&readers).push(conn);
            r
        })
        .await
        .map_err(err)?
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Evaluation> {
    Ok(Evaluation {
        id: r.get(0)?,
        subject: r.get(1)?,
        cohort_keys: r.get(2)?,
        agency: r.get(3)?,
        period: r.get(4)?,
        period_end: r.get(5)?,
        record: r.get(6)?,
        ruleset_id: r.get(7)?,
        ruleset_version: r.get(8)?,
        ruleset_hash: r.get(9)?,
        outcome: r.get(10)?,
        total: r.get(11)?,
        answer: r.get(12)?,
        created_at: r.get(13)?,
        cohort_id: r.get(14)?,
        cohort_index: r.get(15)?,
        exemption: r.get(16)?,
    })
}

fn write_batch(c: &mut Connection, batch: &[Submission], known: &KnownSources) -> Result<Vec<Written>, StoreError> {
    let unseen = known.unseen(batch);
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut source = tx
            .prepare_cached("INSERT INTO rule_sources (hash, ruleset_id, ruleset_version, source, first_seen) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (hash) DO NOTHING")
            .map_err(err)?;
        let mut key = tx
            .prepare_cached("INSERT INTO idempotency (key, request_hash, evaluation_ids, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO NOTHING")
            .map_err(err)?;
        let mut existing = tx.prepare_cached("SELECT request_hash, evaluation_ids FROM idempotency WHERE key = ?1").map_err(err)?;
        let mut eval = tx
            .prepare_cached(&format!(
                "INSERT INTO evaluations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ))
            .map_err(err)?;
        for (hash, id, version, text) in &unseen {
            source.execute(params![hash, id, version, text, super::now_rfc3339()]).map_err(err)?;
        }
        for s in batch {
            if let Some((k, request_hash)) = &s.key {
                let ids = serde_json::to_string(&s.evaluations.iter().map(|e| &e.id).collect::<Vec<_>>()).map_err(err)?;
                if key.execute(params![k, request_hash, ids, super::now_rfc3339()]).map_err(err)? == 0 {
                    let (h, ids): (String, String) = existing.query_row([k], |r| Ok((r.get(0)?, r.get(1)?))).map_err(err)?;
                    out.push(Written::KeyExists(h, serde_json::from_str(&ids).map_err(err)?));
                    continue;
                }
            }
            for e in &s.evaluations {
                eval.execute(params![
                    e.id,
                    e.subject,
                    e.cohort_keys,
                    e.agency,
                    e.period,
                    e.period_end,
                    e.record,
                    e.ruleset_id,
                    e.ruleset_version,
                    e.ruleset_hash,
                    e.outcome,
                    e.total,
                    e.answer,
                    e.created_at,
                    e.cohort_id,
                    e.cohort_index,
                    e.exemption
                ])
                .map_err(err)?;
            }
            out.push(Written::Stored);
        }
    }
    tx.commit().map_err(err)?;
    known.remember(unseen.iter().map(|s| &s.0));
    Ok(out)
}

/// `WHERE` clause and parameters of a filter.
pub(super) fn where_clause(f: &Filter, after: Option<&str>, placeholder: impl Fn(usize) -> String) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    let mut add = |cond: &str, v: &Option<String>| {
        if let Some(v) = v {
            args.push(v.clone());
            conds.push(format!("{cond} {}", placeholder(args.len())));
        }
    };
    add("subject =", &f.subject);
    add("agency =", &f.agency);
    add("period_end >=", &f.period_from);
    add("period_end <=", &f.period_to);
    add("ruleset_id =", &f.ruleset_id);
    add("outcome =", &f.outcome);
    add("id >", &after.map(str::to_string));
    let w = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    (w, args)
}

#[tonic::async_trait]
impl Store for SqliteStore {
    async fn write(&self, batch: Vec<Submission>) -> Result<Vec<Written>, StoreError> {
        let (writer, known) = (self.writer.clone(), self.sources.clone());
        tokio::task::spawn_blocking(move || {
            let written = write_batch(&mut lock(&writer), &batch, &known);
            if written.is_err() {
                known.forget();
            }
            written
        })
        .await
        .map_err(err)?
    }

    async fn get(&self, id: &str) -> Result<Option<Evaluation>, StoreError> {
        let id = id.to_string();
        self.read(move |c| c.query_row(&format!("SELECT {COLUMNS} FROM evaluations WHERE id = ?1"), [id], row).optional().map_err(err))
            .await
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Evaluation>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM evaluations WHERE id = ?1")).map_err(err)?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(e) = stmt.query_row([id], row).optional().map_err(err)? {
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list(&self, filter: &Filter, after: Option<&str>, limit: usize, with_answer: bool) -> Result<Vec<Evaluation>, StoreError> {
        let columns = if with_answer { COLUMNS } else { super::COLUMNS_LIGHT };
        let (w, args) = where_clause(filter, after, |i| format!("?{i}"));
        let sql = format!("SELECT {columns} FROM evaluations {w} ORDER BY id LIMIT {limit}");
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql).map_err(err)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), row).map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }

    async fn cohort(&self, cohort_id: &str) -> Result<Vec<Evaluation>, StoreError> {
        let id = cohort_id.to_string();
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM evaluations WHERE cohort_id = ?1 ORDER BY cohort_index")).map_err(err)?;
            let rows = stmt.query_map([id], row).map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }

    async fn source(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let h = hash.to_string();
        self.read(move |c| c.query_row("SELECT source FROM rule_sources WHERE hash = ?1", [h], |r| r.get(0)).optional().map_err(err)).await
    }
}
