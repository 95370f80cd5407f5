//! The evaluation store and replay, against a real SQLite file and a real PostgreSQL server
//! (MERIT_TEST_POSTGRES, default postgres://postgres@127.0.0.1:5432/test; without a server a
//! plain `cargo test` skips those with a printed line, CI never does), through the real gRPC
//! server: storing, idempotency, listing, replay against an independent recomputation,
//! `--verify`, records the candidate cannot evaluate, two servers on one database, and an
//! acknowledged evaluation surviving `kill -9`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, reason = "tests fail loudly")]

use merit::cohort::{Exemption, classify_cohort};
use merit::compile::{RuleSet, compile};
use merit::eval::{TraceLevel, evaluate, record};
use merit::replay::{Candidate, Event, replay};
use merit::service::pb::classification_service_client::ClassificationServiceClient;
use merit::service::pb::evaluation_service_client::EvaluationServiceClient;
use merit::service::pb::replay_service_client::ReplayServiceClient;
use merit::service::{self, Config, RuleSource, Running, convert, pb};
use merit::store::{self, Filter};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

fn manifest(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn bundled_rules() -> RuleSet {
    let path = manifest("rules/reg366.merit");
    compile(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap()).expect("compiles").0
}

/// A fresh PostgreSQL schema, or `None` (with a printed line) when no server answers.
async fn postgres_url() -> Option<String> {
    let base = std::env::var("MERIT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let connected = tokio_postgres::connect(&base, tokio_postgres::NoTls).await;
    let (client, conn) = match connected {
        Ok(c) => c,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI must run the PostgreSQL tests, but {base} does not answer: {e}");
            println!("skipping PostgreSQL store tests: {base} does not answer ({e}); set MERIT_TEST_POSTGRES");
            return None;
        }
    };
    tokio::spawn(conn);
    let schema = format!("merit_test_{}", store::new_id());
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

/// Every backend available: a fresh SQLite file, and PostgreSQL when it answers.
async fn backends(dir: &tempfile::TempDir) -> Vec<(String, String)> {
    let mut out = vec![("sqlite".to_string(), format!("sqlite:{}", dir.path().join("merit.db").display()))];
    if let Some(pg) = postgres_url().await {
        out.push(("postgres".to_string(), pg));
    }
    out
}

async fn spawn(store_url: &str) -> Running {
    let config =
        Config { rules: RuleSource::Dir(manifest("rules")), store: Some(store_url.into()), reload_interval: None, ..Config::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    service::start(config, listener).await.expect("server starts")
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connects")
}

fn example() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(manifest("examples/staff_2025.json")).unwrap()).unwrap()
}

/// A staff record with a chosen subject, general points and assessed task points.
fn staff(subject: &str, general: &str, assessed: &str, period: &str) -> serde_json::Value {
    serde_json::json!({
        "subject_id": subject, "agency_id": "A1", "peer_group": "g", "period": period,
        "general_points": general, "task_points_assessed": assessed,
        "tasks": [{"id": "T1", "deadline": "2025-03-01", "completed_on": "2025-02-01", "exceeded": true}]
    })
}

fn classify_req(json: &serde_json::Value, key: &str) -> pb::ClassifyRequest {
    pb::ClassifyRequest {
        ruleset: Some(pb::RuleSetReference { id: "reg366_individual".into(), version: None }),
        record: Some(convert::json_record(json)),
        options: Some(pb::ClassifyOptions { trace: pb::TraceDetail::None as i32, store: true }),
        idempotency_key: key.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_evaluations_and_honours_idempotency_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in backends(&dir).await {
        let server = spawn(&url).await;
        let ch = channel(server.addr).await;
        let mut client = ClassificationServiceClient::new(ch.clone());
        let mut evals = EvaluationServiceClient::new(ch);
        let first = client.classify(classify_req(&example(), "key-1")).await.expect("stored").into_inner();
        assert!(!first.evaluation_id.is_empty(), "{name}");
        let again = client.classify(classify_req(&example(), "key-1")).await.expect("retry").into_inner();
        assert_eq!(again.evaluation_id, first.evaluation_id, "{name}: a retry returns the stored evaluation");
        assert_eq!(again.classification, first.classification, "{name}");

        let mut other = example();
        other["general_points"] = "20".into();
        let err = client.classify(classify_req(&other, "key-1")).await.expect_err("reused key");
        assert_eq!(err.code(), Code::FailedPrecondition, "{name}");
        assert_eq!(err.get_details_error_info().expect("ErrorInfo").reason, "IDEMPOTENCY_KEY_REUSED", "{name}");

        let listed = evals.list_evaluations(pb::ListEvaluationsRequest::default()).await.unwrap().into_inner().evaluations;
        assert_eq!(listed.len(), 1, "{name}: nothing is stored twice, nothing for the refused request");
        let got = evals
            .get_evaluation(pb::GetEvaluationRequest { id: first.evaluation_id.clone() })
            .await
            .unwrap()
            .into_inner()
            .evaluation
            .unwrap();
        assert_eq!(got.subject, "CB-0142");
        assert_eq!(got.period_end, "2025-12-31");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&got.cohort_keys_json).unwrap(),
            serde_json::json!({"agency_id": "UBND-Phuong-Hoa-Chung", "peer_group": "chuyên viên"})
        );
        let stored = got.classification.unwrap();
        assert!(!stored.trace.is_empty(), "{name}: the stored answer keeps the full trace");
        assert_eq!(stored.total, first.classification.unwrap().total);
        let canonical: serde_json::Value = serde_json::from_str(&got.record_json).unwrap();
        assert_eq!(canonical["tasks"][2]["units"], "1.5", "{name}: decimals stored exactly, as text");
        let missing = evals.get_evaluation(pb::GetEvaluationRequest { id: "nope".into() }).await.expect_err("unknown id");
        assert_eq!(missing.code(), Code::NotFound);
        server.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_by_filter_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in backends(&dir).await {
        let server = spawn(&url).await;
        let ch = channel(server.addr).await;
        let mut client = ClassificationServiceClient::new(ch.clone());
        let mut evals = EvaluationServiceClient::new(ch);
        for (i, (general, period)) in [("27", "2025"), ("10", "2025"), ("27", "2025-Q4"), ("29", "2026"), ("5", "2025")].iter().enumerate()
        {
            client.classify(classify_req(&staff(&format!("S{i}"), general, "63", period), "")).await.expect("stored");
        }
        let list = |f: pb::EvaluationFilter, size: u32, token: String| pb::ListEvaluationsRequest {
            filter: Some(f),
            page_size: size,
            page_token: token,
        };
        let by_subject = evals
            .list_evaluations(list(pb::EvaluationFilter { subject: "S1".into(), ..Default::default() }, 0, String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_subject.evaluations.len(), 1, "{name}");
        let excellent = evals
            .list_evaluations(list(pb::EvaluationFilter { outcome: "excellent".into(), ..Default::default() }, 0, String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(excellent.evaluations.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), vec!["S0", "S2", "S3"], "{name}");
        let in_2025 = pb::EvaluationFilter { period_from: "2025-01-01".into(), period_to: "2025-12-31".into(), ..Default::default() };
        let page1 = evals.list_evaluations(list(in_2025.clone(), 2, String::new())).await.unwrap().into_inner();
        assert_eq!(page1.evaluations.len(), 2);
        let page2 = evals.list_evaluations(list(in_2025.clone(), 2, page1.next_page_token.clone())).await.unwrap().into_inner();
        assert_eq!(page2.evaluations.len(), 2, "{name}");
        let page3 = evals.list_evaluations(list(in_2025, 2, page2.next_page_token.clone())).await.unwrap().into_inner();
        assert!(page3.evaluations.is_empty() && page3.next_page_token.is_empty(), "{name}");
        let ids: Vec<String> = page1.evaluations.iter().chain(&page2.evaluations).map(|e| e.id.clone()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "{name}: time order");
        server.shutdown().await.unwrap();
    }
}

/// The candidate of the replay tests: excellent from 92, good from 75.
fn candidate_rules() -> RuleSet {
    let text = std::fs::read_to_string(manifest("rules/reg366.merit")).unwrap();
    let text =
        text.replace("excellent when total >= 90", "excellent when total >= 92").replace("good when total >= 70", "good when total >= 75");
    compile("candidate.merit", &text).expect("candidate compiles").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_agrees_with_an_independent_recomputation_and_verify_reproduces_everything() {
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in backends(&dir).await {
        let server = spawn(&url).await;
        let ch = channel(server.addr).await;
        let mut client = ClassificationServiceClient::new(ch.clone());
        // Records classified alone.
        let alone: Vec<serde_json::Value> = [("27", "63"), ("27", "64.5"), ("20", "53"), ("25", "47"), ("10", "35")]
            .iter()
            .enumerate()
            .map(|(i, (g, a))| staff(&format!("L{i}"), g, a, "2025"))
            .collect();
        for r in &alone {
            client.classify(classify_req(r, "")).await.expect("stored");
        }
        // One cohort: its quota under the candidate is recomputed over the whole cohort.
        let members: Vec<serde_json::Value> =
            [("27", "68"), ("27", "65"), ("27", "63.5"), ("25", "50"), ("25", "50"), ("25", "48"), ("25", "47")]
                .iter()
                .enumerate()
                .map(|(i, (g, a))| staff(&format!("C{i}"), g, a, "2025"))
                .collect();
        let cohort = pb::ClassifyCohortRequest {
            ruleset: Some(pb::RuleSetReference { id: "reg366_individual".into(), version: None }),
            records: members.iter().map(convert::json_record).collect(),
            options: Some(pb::ClassifyOptions { trace: 0, store: true }),
            exemption: None,
            idempotency_key: "cohort-1".into(),
        };
        let stored = client.classify_cohort(cohort.clone()).await.expect("cohort stored").into_inner();
        assert_eq!(stored.evaluation_ids.len(), members.len());
        // A retry of the cohort call returns the stored cohort, and stores nothing twice.
        let again = client.classify_cohort(cohort.clone()).await.expect("retry").into_inner();
        assert_eq!(again.evaluation_ids, stored.evaluation_ids, "{name}");
        let mut other = cohort;
        other.exemption = Some(pb::Exemption { maximum: None });
        let err = client.classify_cohort(other).await.expect_err("same key, other request");
        assert_eq!(err.get_details_error_info().expect("ErrorInfo").reason, "IDEMPOTENCY_KEY_REUSED", "{name}");

        // Independent recomputation, straight from the input records.
        let cand = candidate_rules();
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        let original = bundled_rules();
        for r in &alone {
            let rec_old = record::from_json(&original.checked.schema, r).unwrap();
            let rec = record::from_json(&cand.checked.schema, r).unwrap();
            let old = evaluate(&original, &rec_old, TraceLevel::None).unwrap();
            let new = evaluate(&cand, &rec, TraceLevel::None).unwrap();
            if old.level != new.level {
                expected.insert(r["subject_id"].as_str().unwrap().into(), cand.level_id(new.level).into());
            }
        }
        let recs_old: Vec<_> = members.iter().map(|r| record::from_json(&original.checked.schema, r).unwrap()).collect();
        let recs: Vec<_> = members.iter().map(|r| record::from_json(&cand.checked.schema, r).unwrap()).collect();
        let old = classify_cohort(&original, &recs_old, Exemption::None, TraceLevel::None);
        let new = classify_cohort(&cand, &recs, Exemption::None, TraceLevel::None);
        for ((r, o), n) in members.iter().zip(old).zip(new) {
            let (o, n) = (o.unwrap(), n.unwrap());
            if o.level != n.level {
                expected.insert(r["subject_id"].as_str().unwrap().into(), cand.level_id(n.level).into());
            }
        }
        assert!(expected.len() >= 3, "the candidate changes something ({expected:?})");

        let store = store::open(&url).await.expect("opens");
        let mut got: BTreeMap<String, String> = BTreeMap::new();
        let candidate = Candidate::Rules(Arc::new(cand));
        let summary = replay(store.as_ref(), &candidate, &Filter::default(), |e| {
            if let Event::Change(c) = e
                && c.old_outcome != c.new_outcome
            {
                got.insert(c.subject.clone(), c.new_outcome.clone());
            }
            ControlFlow::Continue(())
        })
        .await
        .expect("replays");
        assert_eq!(got, expected, "{name}: replay agrees with the recomputation");
        assert_eq!(summary.evaluations, 12);
        assert_eq!(summary.evaluated, 12);
        assert_eq!(summary.not_evaluable, 0);
        assert_eq!(summary.transitions.values().sum::<u64>(), 12);
        assert_eq!(summary.cohorts.len(), 1, "{name}");

        // Filtering to one cohort member still replays the whole cohort, and reports one.
        let only = Filter { subject: Some("C1".into()), ..Filter::default() };
        let one = replay(store.as_ref(), &candidate, &only, |_| ControlFlow::Continue(())).await.unwrap();
        assert_eq!((one.evaluations, one.evaluated), (1, 1), "{name}");
        assert_eq!(one.cohorts[0].members, 7);

        // A reader that stops at the first change ends the replay early: the rest of the page is
        // still compared, but no cohort after it is replayed and no last progress is sent.
        let mut seen = Vec::new();
        let cut = replay(store.as_ref(), &candidate, &Filter::default(), |e| {
            let stop = matches!(e, Event::Change(_));
            seen.push(e);
            if stop { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .await
        .unwrap();
        assert!(cut.evaluated < 12 && cut.cohorts.is_empty(), "{name}: stopped early ({} evaluated)", cut.evaluated);
        assert!(!matches!(seen.last(), Some(Event::Progress(_))), "{name}: no progress after the stop");

        let verified = replay(store.as_ref(), &Candidate::Verify, &Filter::default(), |_| ControlFlow::Continue(())).await.unwrap();
        assert_eq!(
            (verified.evaluated, verified.mismatches, verified.changed),
            (12, 0, 0),
            "{name}: --verify reproduces every stored outcome"
        );

        // Through gRPC too: the stream ends with the summary.
        let mut replays = ReplayServiceClient::new(ch);
        let req = pb::ReplayRequest { candidate: None, filter: None, verify: true };
        let mut stream = replays.replay(req).await.unwrap().into_inner();
        let mut last = None;
        while let Some(m) = stream.message().await.unwrap() {
            last = m.event;
        }
        let Some(pb::replay_response::Event::Summary(s)) = last else { panic!("summary last") };
        assert_eq!((s.evaluated, s.mismatches), (12, 0));
        server.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_tampered_evaluation_and_replay_names_records_the_candidate_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("t.db").display());
    let server = spawn(&url).await;
    let mut client = ClassificationServiceClient::new(channel(server.addr).await);
    let id = client.classify(classify_req(&staff("T0", "27", "63", "2025"), "")).await.unwrap().into_inner().evaluation_id;
    client.classify(classify_req(&staff("T1", "20", "50", "2025"), "")).await.unwrap();
    server.shutdown().await.unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    conn.execute("UPDATE evaluations SET outcome = 'good' WHERE id = ?1", [&id]).unwrap();
    drop(conn);
    let store = store::open(&url).await.unwrap();
    let mut mismatched = Vec::new();
    let s = replay(store.as_ref(), &Candidate::Verify, &Filter::default(), |e| {
        if let Event::Change(c) = e {
            mismatched.push(c.evaluation_id.clone());
        }
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(s.mismatches, 1);
    assert_eq!(mismatched, vec![id]);

    // A candidate whose schema requires a new field cannot evaluate the stored records.
    let text = std::fs::read_to_string(manifest("rules/reg366.merit")).unwrap().replacen("record {", "record {\n  grade: integer", 1);
    let cand = compile("schema_changed.merit", &text).expect("compiles").0;
    let mut reasons = Vec::new();
    let s = replay(store.as_ref(), &Candidate::Rules(Arc::new(cand)), &Filter::default(), |e| {
        if let Event::NotEvaluable(n) = e {
            reasons.push(n.reason);
        }
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!((s.not_evaluable, s.evaluated), (2, 0));
    assert!(reasons.iter().all(|r| r.contains("grade: required field is missing")), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgresql_see_each_others_evaluations() {
    let Some(url) = postgres_url().await else { return };
    let a = spawn(&url).await;
    let b = spawn(&url).await;
    let mut ca = ClassificationServiceClient::new(channel(a.addr).await);
    let mut cb = ClassificationServiceClient::new(channel(b.addr).await);
    let ida = ca.classify(classify_req(&staff("PA", "27", "63", "2025"), "")).await.unwrap().into_inner().evaluation_id;
    let idb = cb.classify(classify_req(&staff("PB", "20", "50", "2025"), "")).await.unwrap().into_inner().evaluation_id;
    let mut ea = EvaluationServiceClient::new(channel(a.addr).await);
    let mut eb = EvaluationServiceClient::new(channel(b.addr).await);
    assert_eq!(ea.get_evaluation(pb::GetEvaluationRequest { id: idb }).await.unwrap().into_inner().evaluation.unwrap().subject, "PB");
    assert_eq!(eb.get_evaluation(pb::GetEvaluationRequest { id: ida }).await.unwrap().into_inner().evaluation.unwrap().subject, "PA");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Starts `merit serve` as a child process on a free port.
fn serve_process(store_url: &str) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_merit"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "off", "--store", store_url, "--rules"])
        .arg(manifest("rules"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("merit serve starts");
    (child, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_evaluation_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in backends(&dir).await {
        let (mut child, addr) = serve_process(&url);
        let mut channel = None;
        for _ in 0..100 {
            if let Ok(c) = tonic::transport::Endpoint::from_shared(addr.clone()).unwrap().connect().await {
                channel = Some(c);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let ch = channel.expect("server up");
        let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (mut c, acked) = (ClassificationServiceClient::new(ch.clone()), acked.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..100_000 {
                    match c.classify(classify_req(&staff(&format!("K{t}-{i}"), "27", "63", "2025"), "")).await {
                        Ok(r) => acked.lock().unwrap().push(r.into_inner().evaluation_id),
                        Err(_) => break, // the server is gone
                    }
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        child.kill().expect("kill -9");
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= 20, "{name}: load ran ({} acknowledged)", acked.len());
        let store = store::open(&url).await.expect("reopens after the crash");
        let found = store.get_many(&acked).await.unwrap();
        assert_eq!(found.len(), acked.len(), "{name}: every acknowledged evaluation is present");
        for e in &found {
            let answer: serde_json::Value = serde_json::from_str(&e.answer).expect("complete answer");
            assert_eq!(answer["subject"], e.subject.as_str());
            assert!(store.source(&e.ruleset_hash).await.unwrap().is_some(), "{name}: its rules are kept");
        }
        println!("{name}: {} acknowledged evaluations all present after kill -9", acked.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_batch_answers_in_order_and_keeps_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in backends(&dir).await {
        let server = spawn(&url).await;
        let ch = channel(server.addr).await;
        let mut client = ClassificationServiceClient::new(ch.clone());
        // 600 records (more than are classified at once), one of them invalid, and one key used
        // twice for the same record: the second use gives the first's answer.
        let mut records: Vec<pb::BatchRecord> = (0..600)
            .map(|i| pb::BatchRecord {
                record: Some(convert::json_record(&staff(&format!("B{i}"), if i % 2 == 0 { "27" } else { "15" }, "63", "2025"))),
                idempotency_key: String::new(),
            })
            .collect();
        records[7].record = Some(convert::json_record(&staff("bad", "31", "63", "2025")));
        records[10].idempotency_key = format!("{name}-twice");
        records[11] = pb::BatchRecord { record: records[10].record.clone(), idempotency_key: format!("{name}-twice") };
        // One key for two different records: the earlier keeps it, the later is refused.
        records[20].idempotency_key = format!("{name}-reused");
        records[21].idempotency_key = format!("{name}-reused");
        let req = pb::ClassifyBatchRequest {
            ruleset: Some(pb::RuleSetReference { id: "reg366_individual".into(), version: None }),
            records,
            options: Some(pb::ClassifyOptions { trace: pb::TraceDetail::None as i32, store: true }),
        };
        let mut stream = client.classify_batch(req).await.unwrap().into_inner();
        let mut got = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            got.push(m);
        }
        assert_eq!(got.iter().map(|m| m.index).collect::<Vec<_>>(), (0..600).collect::<Vec<u32>>(), "{name}: in order");
        for (i, m) in got.iter().enumerate() {
            let ok = matches!(m.result, Some(pb::classify_batch_response::Result::Classification(_)));
            assert_eq!(ok, i != 7 && i != 21, "{name}: record {i}");
            assert_eq!(m.evaluation_id.is_empty(), i == 7 || i == 21, "{name}: record {i}");
        }
        assert_eq!(got[10].evaluation_id, got[11].evaluation_id, "{name}: one key, one evaluation");
        let Some(pb::classify_batch_response::Result::Error(reused)) = &got[21].result else { panic!("record 21 is refused") };
        assert_eq!(reused.code, "FAILED_PRECONDITION", "{name}: {reused:?}");
        let store = store::open(&url).await.unwrap();
        let listed = store.list(&Filter::default(), None, 10_000, true).await.unwrap();
        let batch: Vec<_> = listed.iter().filter(|e| e.subject.starts_with('B')).collect();
        assert_eq!(batch.len(), 597, "{name}: every valid record once (the twice-keyed one once, the refused one not)");
        server.shutdown().await.unwrap();
    }
}
