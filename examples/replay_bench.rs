//! Replay throughput from SQLite: fills a store with N evaluations of varied records (once),
//! then replays them all under a candidate rule set and prints the time.
//!
//! `cargo run --release --example replay_bench -- [N] [DB]` (defaults 1000000, /tmp/merit-replay-bench.db).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing, reason = "a benchmark harness fails loudly")]

use merit::compile::compile;
use merit::eval::{TraceLevel, evaluate, record};
use merit::replay::{Candidate, replay};
use merit::store::{Filter, SqliteStore, Store, Submission};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let path = std::env::args().nth(2).unwrap_or_else(|| "/tmp/merit-replay-bench.db".into());
    let text = include_str!("../rules/reg366.merit");
    let rs = compile("rules/reg366.merit", text).expect("compiles").0;
    let p = path.clone();
    let store = Arc::new(tokio::task::spawn_blocking(move || SqliteStore::open(&p)).await.unwrap().expect("opens"));
    let have = store.list(&Filter::default(), None, n, false).await.unwrap().len();
    if have < n {
        let started = Instant::now();
        let example: serde_json::Value = serde_json::from_str(include_str!("staff_2025.json")).unwrap();
        let source = Arc::new((rs.hash.clone(), rs.checked.id.clone(), rs.checked.version.clone(), rs.source.text.clone()));
        let mut batch = Vec::new();
        for i in have..n {
            let mut r = example.clone();
            r["subject_id"] = format!("S{i:07}").into();
            r["general_points"] = format!("{}.{}", 15 + i % 15, i % 10).into();
            let rec = record::from_json(&rs.checked.schema, &r).unwrap();
            let o = evaluate(&rs, &rec, TraceLevel::Full).unwrap();
            let e = merit::service::storing::evaluation(&rs, &rec, &o, None).unwrap().0;
            batch.push(Submission { key: None, source: source.clone(), evaluations: vec![e] });
            if batch.len() == 5000 {
                store.write(std::mem::take(&mut batch)).await.unwrap();
            }
        }
        if !batch.is_empty() {
            store.write(batch).await.unwrap();
        }
        println!("filled {} evaluations in {:.1} s", n - have, started.elapsed().as_secs_f64());
    }
    let candidate = text
        .replace("excellent when total >= 90", "excellent when total >= 92")
        .replace("good when total >= 70", "good when total >= 86")
        .replace("completed when total >= 50", "completed when total >= 85");
    let cand = compile("candidate.merit", &candidate).expect("candidate compiles").0;
    let started = Instant::now();
    let s = replay(store.as_ref(), &Candidate::Rules(Arc::new(cand)), &Filter::default(), |_| std::ops::ControlFlow::Continue(()))
        .await
        .expect("replays");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replayed {} evaluations in {secs:.1} s ({:.0}/s): {} changed, {} not evaluable",
        s.evaluations,
        s.evaluations as f64 / secs,
        s.changed,
        s.not_evaluable
    );
}
