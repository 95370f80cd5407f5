//! PostgreSQL: the same store for deployments where several replicas share one database.
//! Migrations take an advisory lock, so replicas starting together migrate once.

use super::sqlite::where_clause;
use super::{COLUMNS, Evaluation, Filter, KnownSources, MIGRATIONS, Store, StoreError, Submission, Written};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    sources: KnownSources,
}

fn row(r: &tokio_postgres::Row) -> Result<Evaluation, StoreError> {
    let index: Option<i64> = r.try_get(15).map_err(err)?;
    Ok(Evaluation {
        id: r.try_get(0).map_err(err)?,
        subject: r.try_get(1).map_err(err)?,
        cohort_keys: r.try_get(2).map_err(err)?,
        agency: r.try_get(3).map_err(err)?,
        period: r.try_get(4).map_err(err)?,
        period_end: r.try_get(5).map_err(err)?,
        record: r.try_get(6).map_err(err)?,
        ruleset_id: r.try_get(7).map_err(err)?,
        ruleset_version: r.try_get(8).map_err(err)?,
        ruleset_hash: r.try_get(9).map_err(err)?,
        outcome: r.try_get(10).map_err(err)?,
        total: r.try_get(11).map_err(err)?,
        answer: r.try_get(12).map_err(err)?,
        created_at: r.try_get(13).map_err(err)?,
        cohort_id: r.try_get(14).map_err(err)?,
        cohort_index: index.and_then(|i| u32::try_from(i).ok()),
        exemption: r.try_get(16).map_err(err)?,
    })
}

impl PostgresStore {
    /// Connects (a pool of up to 8 connections) and migrates.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError(format!("bad PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(8).build().map_err(err)?;
        let mut c = pool.get().await.map_err(|e| StoreError(format!("cannot connect to PostgreSQL: {e}")))?;
        let tx = c.transaction().await.map_err(err)?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(7313); CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
            .await
            .map_err(err)?;
        for (version, sql) in MIGRATIONS {
            let done = tx.query_opt("SELECT version FROM schema_migrations WHERE version = $1", &[version]).await.map_err(err)?;
            if done.is_none() {
                tx.batch_execute(sql).await.map_err(|e| StoreError(format!("migration {version}: {e}")))?;
                tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", &[version, &super::now_rfc3339()])
                    .await
                    .map_err(err)?;
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(PostgresStore { pool, sources: KnownSources::default() })
    }

    /// Writes one batch in one transaction.
    async fn write_batch(&self, batch: Vec<Submission>) -> Result<Vec<Written>, StoreError> {
        let mut c = self.pool.get().await.map_err(err)?;
        let tx = c.transaction().await.map_err(err)?;
        let source = tx
            .prepare_cached("INSERT INTO rule_sources (hash, ruleset_id, ruleset_version, source, first_seen) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING")
            .await
            .map_err(err)?;
        let key = tx
            .prepare_cached("INSERT INTO idempotency (key, request_hash, evaluation_ids, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING")
            .await
            .map_err(err)?;
        let existing = tx.prepare_cached("SELECT request_hash, evaluation_ids FROM idempotency WHERE key = $1").await.map_err(err)?;
        let eval = tx
            .prepare_cached(&format!(
                "INSERT INTO evaluations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            ))
            .await
            .map_err(err)?;
        let mut out = Vec::with_capacity(batch.len());
        let unseen = self.sources.unseen(&batch);
        for (hash, id, version, text) in &unseen {
            tx.execute(&source, &[hash, id, version, text, &super::now_rfc3339()]).await.map_err(err)?;
        }
        for s in &batch {
            if let Some((k, request_hash)) = &s.key {
                let ids = serde_json::to_string(&s.evaluations.iter().map(|e| &e.id).collect::<Vec<_>>()).map_err(err)?;
                if tx.execute(&key, &[k, request_hash, &ids, &super::now_rfc3339()]).await.map_err(err)? == 0 {
                    let r = tx.query_one(&existing, &[k]).await.map_err(err)?;
                    let h: String = r.try_get(0).map_err(err)?;
                    let ids: String = r.try_get(1).map_err(err)?;
                    out.push(Written::KeyExists(h, serde_json::from_str(&ids).map_err(err)?));
                    continue;
                }
            }
            for e in &s.evaluations {
                let index = e.cohort_index.map(i64::from);
                tx.execute(
                    &eval,
                    &[
                        &e.id,
                        &e.subject,
                        &e.cohort_keys,
                        &e.agency,
                        &e.period,
                        &e.period_end,
                        &e.record,
                        &e.ruleset_id,
                        &e.ruleset_version,
                        &e.ruleset_hash,
                        &e.outcome,
                        &e.total,
                        &e.answer,
                        &e.created_at,
                        &e.cohort_id,
                        &index,
                        &e.exemption,
                    ],
                )
                .await
                .map_err(err)?;
            }
            out.push(Written::Stored);
        }
        tx.commit().await.map_err(err)?;
        self.sources.remember(unseen.iter().map(|s| &s.0));
        Ok(out)
    }
}

#[tonic::async_trait]
impl Store for PostgresStore {
    async fn write(&self, batch: Vec<Submission>) -> Result<Vec<Written>, StoreError> {
        let written = self.write_batch(batch).await;
        if written.is_err() {
            self.sources.forget();
        }
        written
    }

    async fn get(&self, id: &str) -> Result<Option<Evaluation>, StoreError> {
        let c = self.pool.get().await.map_err(err)?;
        let r = c.query_opt(&format!("SELECT {COLUMNS} FROM evaluations WHERE id = $1"), &[&id]).await.map_err(err)?;
        r.as_ref().map(row).transpose()
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Evaluation>, StoreError> {
        let c = self.pool.get().await.map_err(err)?;
        let rows = c.query(&format!("SELECT {COLUMNS} FROM evaluations WHERE id = ANY($1)"), &[&ids]).await.map_err(err)?;
        let mut found: Vec<Evaluation> = rows.iter().map(row).collect::<Result<_, _>>()?;
        found.sort_by_key(|e| ids.iter().position(|i| *i == e.id));
        Ok(found)
    }

    async fn list(&self, filter: &Filter, after: Option<&str>, limit: usize, with_answer: bool) -> Result<Vec<Evaluation>, StoreError> {
        let columns = if with_answer { COLUMNS } else { super::COLUMNS_LIGHT };
        let (w, args) = where_clause(filter, after, |i| format!("${i}"));
        let sql = format!("SELECT {columns} FROM evaluations {w} ORDER BY id LIMIT {limit}");
        let c = self.pool.get().await.map_err(err)?;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let rows = c.query(&sql, &params).await.map_err(err)?;
        rows.iter().map(row).collect()
    }

    async fn cohort(&self, cohort_id: &str) -> Result<Vec<Evaluation>, StoreError> {
        let c = self.pool.get().await.map_err(err)?;
        let rows = c
            .query(&format!("SELECT {COLUMNS} FROM evaluations WHERE cohort_id = $1 ORDER BY cohort_index"), &[&cohort_id])
            .await
            .map_err(err)?;
        rows.iter().map(row).collect()
    }

    async fn source(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let c = self.pool.get().await.map_err(err)?;
        let r = c.query_opt("SELECT source FROM rule_sources WHERE hash = $1", &[&hash]).await.map_err(err)?;
        r.map(|r| r.try_get(0).map_err(err)).transpose()
    }
}
