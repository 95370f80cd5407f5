//! The real gRPC server on a loopback port, called with the generated tonic client: every RPC,
//! the error model, health and reflection, hot reload under load, and draining on shutdown.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, reason = "tests fail loudly")]

use merit::answer;
use merit::compile::compile;
use merit::eval::{TraceLevel, evaluate, record};
use merit::service::pb::classification_service_client::ClassificationServiceClient;
use merit::service::pb::rule_set_service_client::RuleSetServiceClient;
use merit::service::{self, Config, RuleSource, Running, convert, pb};
use std::path::PathBuf;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

fn manifest(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
}

async fn spawn(rules: RuleSource, tweak: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config { rules, reload_interval: Some(Duration::from_millis(100)), ..Config::default() };
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    service::start(config, listener).await.expect("server starts")
}

async fn bundled() -> Running {
    spawn(RuleSource::Dir(manifest("rules")), |_| {}).await
}

async fn channel(r: &Running) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", r.addr)).expect("uri").connect().await.expect("connects")
}

fn example() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(manifest("examples/staff_2025.json")).expect("example")).expect("json")
}

fn request(id: &str, json: &serde_json::Value, trace: pb::TraceDetail) -> pb::ClassifyRequest {
    pb::ClassifyRequest {
        ruleset: Some(pb::RuleSetReference { id: id.into(), version: None }),
        record: Some(convert::json_record(json)),
        options: Some(pb::ClassifyOptions { trace: trace as i32, store: false }),
        idempotency_key: String::new(),
    }
}

const TINY: &str = r#"ruleset tiny "Tiny" version "1" effective 2020-01-01
record {
  subject_id: text role subject
  period:     text role period
  p:          decimal
  items:      list of { v: decimal } = []
}
levels { good "Tốt" weak "Yếu" }
let s = sum(items: v)
score total = round(100 / p + s - s, 2, half_up)
classify by total { good when total >= 50 weak otherwise }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_answers_exactly_as_the_cli() {
    let server = bundled().await;
    let mut client = ClassificationServiceClient::new(channel(&server).await);
    let json = example();
    let resp = client.classify(request("reg366_individual", &json, pb::TraceDetail::Full)).await.expect("classifies").into_inner();
    let got = serde_json::to_value(resp.classification.expect("answer")).expect("proto3 json");
    let path = manifest("rules/reg366.merit");
    let (rs, _) = compile(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap()).expect("compiles");
    let rec = record::from_json(&rs.checked.schema, &json).expect("fits");
    let want = answer::to_json(&rs, &rec, &evaluate(&rs, &rec, TraceLevel::Full).expect("classifies"));
    assert_eq!(got, want, "the gRPC answer's proto3 JSON is the CLI's JSON");
    assert_eq!(serde_json::to_string(&got).unwrap(), serde_json::to_string(&want).unwrap(), "byte for byte, key order included");
    // An answer with no flags and no trace prints `"flags": []` and `"trace": []` both ways.
    let early = serde_json::json!({"subject_id": "E", "agency_id": "A", "period": "2025", "absence_months": 7});
    let resp = client.classify(request("reg366_individual", &early, pb::TraceDetail::None)).await.expect("classifies").into_inner();
    let got = serde_json::to_value(resp.classification.expect("answer")).expect("proto3 json");
    let rec = record::from_json(&rs.checked.schema, &early).expect("fits");
    let want = answer::to_json(&rs, &rec, &evaluate(&rs, &rec, TraceLevel::None).expect("classifies"));
    assert_eq!(serde_json::to_string(&got).unwrap(), serde_json::to_string(&want).unwrap());
    assert_eq!(want["flags"], serde_json::json!(["R-ELIG-1"]));
    assert!(want.get("total").is_none() && want["outcome"].get("rank").is_none());
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_unknown_rule_sets_and_rule_errors_get_their_codes() {
    let server = bundled().await;
    let mut client = ClassificationServiceClient::new(channel(&server).await);
    let mut bad = example();
    bad["tasks"][3]["deadline"] = "31/12/2025".into();
    let err = client.classify(request("reg366_individual", &bad, pb::TraceDetail::None)).await.expect_err("invalid");
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err.get_details_bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations[0].field, "tasks[3].deadline");
    assert!(violations[0].description.contains("expected a date YYYY-MM-DD"), "{violations:?}");

    let err = client.classify(request("no_such_rules", &example(), pb::TraceDetail::None)).await.expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.get_details_resource_info().expect("ResourceInfo").resource_name, "no_such_rules");
    // Decree 335 takes effect in 2026: a 2025 record without a version finds none in effect.
    let err = client.classify(request("decree335_civil_servant", &example(), pb::TraceDetail::None)).await.expect_err("not in effect");
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("2026-01-01"), "{}", err.message());
    let mut pinned = request("decree335_civil_servant", &example(), pb::TraceDetail::None);
    pinned.ruleset.as_mut().unwrap().version = Some("2026.1".into());
    let ok = client.classify(pinned).await.expect("a named version applies whatever the period").into_inner();
    assert_eq!(ok.classification.unwrap().ruleset.unwrap().version, "2026.1");
    server.shutdown().await.expect("stops");

    let server = spawn(RuleSource::Memory(vec![("tiny.merit".into(), TINY.into())]), |_| {}).await;
    let mut client = ClassificationServiceClient::new(channel(&server).await);
    let zero = serde_json::json!({"subject_id": "Z", "period": "2025", "p": "0"});
    let err = client.classify(request("tiny", &zero, pb::TraceDetail::None)).await.expect_err("division by zero");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("rule `total`") && err.message().contains("division by zero"), "{}", err.message());
    assert!(err.get_details_precondition_failure().is_some());
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_in_order_and_a_bad_record_does_not_end_it() {
    let server = bundled().await;
    let mut client = ClassificationServiceClient::new(channel(&server).await);
    let good = convert::json_record(&example());
    let mut bad_json = example();
    bad_json["general_points"] = "31".into();
    let records = vec![good.clone(), convert::json_record(&bad_json), good]
        .into_iter()
        .map(|r| pb::BatchRecord { record: Some(r), idempotency_key: String::new() })
        .collect();
    let req = pb::ClassifyBatchRequest {
        ruleset: Some(pb::RuleSetReference { id: "reg366_individual".into(), version: None }),
        records,
        options: None,
    };
    let mut stream = client.classify_batch(req).await.expect("stream").into_inner();
    let mut got = Vec::new();
    while let Some(item) = stream.message().await.expect("item") {
        got.push(item);
    }
    assert_eq!(got.iter().map(|g| g.index).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(
        matches!(&got[0].result, Some(pb::classify_batch_response::Result::Classification(c)) if c.outcome.as_ref().unwrap().id == "completed")
    );
    match &got[1].result {
        Some(pb::classify_batch_response::Result::Error(e)) => {
            assert_eq!(e.code, "INVALID_ARGUMENT");
            assert_eq!(e.violations[0].field, "general_points");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(matches!(&got[2].result, Some(pb::classify_batch_response::Result::Classification(_))));
    server.shutdown().await.expect("stops");
}

fn member(id: &str, assessed: &str) -> pb::RecordValue {
    convert::json_record(&serde_json::json!({
        "subject_id": id, "agency_id": "A", "peer_group": "g", "period": "2025", "general_points": 27,
        "task_points_assessed": assessed,
        "tasks": [{"id": "T1", "deadline": "2025-03-01", "completed_on": "2025-02-01", "exceeded": true}]
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_applies_quotas_and_names_the_bad_record() {
    let server = bundled().await;
    let mut client = ClassificationServiceClient::new(channel(&server).await);
    let mut records = vec![member("A", "68"), member("B", "65")];
    records.extend((0..4).map(|i| member(&format!("G{i}"), "50")));
    let reference = Some(pb::RuleSetReference { id: "reg366_individual".into(), version: None });
    let req = pb::ClassifyCohortRequest {
        ruleset: reference.clone(),
        records: records.clone(),
        options: None,
        exemption: None,
        idempotency_key: String::new(),
    };
    let resp = client.classify_cohort(req).await.expect("cohort").into_inner();
    let ids: Vec<&str> = resp.classifications.iter().map(|c| c.outcome.as_ref().unwrap().id.as_str()).collect();
    assert_eq!(ids, vec!["excellent", "good", "good", "good", "good", "good"]);
    assert_eq!(resp.classifications[1].quota, Some(pb::QuotaPlace { position: 2, limit: 1, tied: false }));
    assert!(resp.classifications[1].flags.contains(&"R-QUOTA".to_string()));

    let exempt = pb::ClassifyCohortRequest {
        ruleset: reference.clone(),
        records: records.clone(),
        options: None,
        exemption: Some(pb::Exemption { maximum: None }),
        idempotency_key: String::new(),
    };
    let resp = client.classify_cohort(exempt).await.expect("cohort").into_inner();
    assert_eq!(resp.classifications[1].outcome.as_ref().unwrap().id, "excellent");

    let mut bad = records;
    bad[1].fields.insert("period".into(), pb::Value { kind: Some(pb::value::Kind::Text("2025-13".into())) });
    let req =
        pb::ClassifyCohortRequest { ruleset: reference, records: bad, options: None, exemption: None, idempotency_key: String::new() };
    let err = client.classify_cohort(req).await.expect_err("invalid");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.get_details_bad_request().unwrap().field_violations[0].field, "records[1].period");
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_set_service_checks_lists_and_describes() {
    let server = bundled().await;
    let mut client = RuleSetServiceClient::new(channel(&server).await);
    let broken = pb::CheckRulesRequest { source: TINY.replace("sum(items: v)", "sum(items: vv)"), name: "tiny.merit".into() };
    let resp = client.check_rules(broken).await.expect("checks").into_inner();
    assert!(!resp.ok);
    let d = &resp.diagnostics[0];
    assert_eq!((d.code.as_str(), d.severity()), ("unknown-name", pb::Severity::Error));
    assert_eq!(d.range.unwrap().start_line, 9);
    assert_eq!(d.hint, "did you mean `v`?");
    let good = client.check_rules(pb::CheckRulesRequest { source: TINY.into(), name: String::new() }).await.expect("checks").into_inner();
    assert!(good.ok);
    assert_eq!(good.ruleset.unwrap().hash, merit::compile::hash_text(TINY));

    let page =
        client.list_rule_sets(pb::ListRuleSetsRequest { page_size: 1, page_token: String::new() }).await.expect("lists").into_inner();
    assert_eq!(page.rule_sets.len(), 1);
    assert_eq!(page.next_page_token, "1");
    let rest = client
        .list_rule_sets(pb::ListRuleSetsRequest { page_size: 0, page_token: page.next_page_token })
        .await
        .expect("lists")
        .into_inner();
    assert_eq!(rest.rule_sets.len(), 1);
    assert!(rest.next_page_token.is_empty());

    let got =
        client.get_rule_set(pb::GetRuleSetRequest { id: "reg366_individual".into(), version: None }).await.expect("gets").into_inner();
    assert_eq!(got.source, std::fs::read_to_string(manifest("rules/reg366.merit")).unwrap());
    assert_eq!(got.summary.unwrap().effective_date, "2025-08-30");
    let tasks = got.schema.iter().find(|f| f.name == "tasks").expect("tasks field");
    assert_eq!(tasks.r#type, "list");
    assert!(tasks.fields.iter().any(|f| f.name == "deadline" && f.r#type == "date"));
    assert_eq!(got.levels[0].rank, Some(1));
    let err = client
        .get_rule_set(pb::GetRuleSetRequest { id: "reg366_individual".into(), version: Some("1999".into()) })
        .await
        .expect_err("no version");
    assert_eq!(err.code(), Code::NotFound);
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };
    let server = bundled().await;
    let ch = channel(&server).await;
    let mut health = HealthClient::new(ch.clone());
    for service in ["", "merit.v1.ClassificationService", "merit.v1.RuleSetService"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.expect("health").into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter(vec![req])).await.expect("reflection").into_inner();
    let resp = stream.message().await.expect("answer").expect("one");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("list services") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"merit.v1.ClassificationService".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_edits_are_served_without_restart_and_broken_edits_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tiny.merit");
    std::fs::write(&file, TINY).expect("write");
    let server = spawn(RuleSource::Dir(dir.path().to_path_buf()), |_| {}).await;
    let ch = channel(&server).await;
    let record = serde_json::json!({"subject_id": "R", "period": "2025", "p": "1.6"}); // total 62.50
    let outcome = |c: pb::ClassifyResponse| c.classification.unwrap().outcome.unwrap().id;
    let mut client = ClassificationServiceClient::new(ch.clone());
    assert_eq!(outcome(client.classify(request("tiny", &record, pb::TraceDetail::None)).await.unwrap().into_inner()), "good");

    // Classifications run concurrently with every reload below and must never fail.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (mut c, rec, stop) = (ClassificationServiceClient::new(ch.clone()), record.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.classify(request("tiny", &rec, pb::TraceDetail::Summary)).await.expect("never fails during reloads");
                n += 1;
            }
            n
        }));
    }
    let wait_for = |want: &'static str| {
        let ch = ch.clone();
        let record = record.clone();
        async move {
            let mut c = ClassificationServiceClient::new(ch);
            for _ in 0..100 {
                if outcome(c.classify(request("tiny", &record, pb::TraceDetail::None)).await.unwrap().into_inner()) == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    std::fs::write(&file, TINY.replace("total >= 50", "total >= 70")).expect("edit");
    assert!(wait_for("weak").await, "the edited threshold is served without a restart");
    let served = server.state.registry.load_full().resolve("tiny", None, None).unwrap().rs.hash.clone();
    std::fs::write(&file, TINY.replace("sum(items: v)", "sum(items: oops)")).expect("broken edit");
    server.reload.notify_one();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.state.registry.load_full().resolve("tiny", None, None).unwrap().rs.hash, served, "the broken file is never served");
    assert!(wait_for("weak").await, "the previous version goes on serving");
    std::fs::write(&file, TINY).expect("restore");
    assert!(wait_for("good").await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in load {
        total += t.await.expect("load task");
    }
    assert!(total > 0);
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_a_batch_in_flight() {
    let mut server = bundled().await;
    let mut client = ClassificationServiceClient::new(channel(&server).await);
    let one = pb::BatchRecord { record: Some(convert::json_record(&example())), idempotency_key: String::new() };
    let n = 3000;
    let req = pb::ClassifyBatchRequest {
        ruleset: Some(pb::RuleSetReference { id: "reg366_individual".into(), version: None }),
        records: vec![one; n],
        options: None,
    };
    let mut stream = client.classify_batch(req).await.expect("stream").into_inner();
    let first = stream.message().await.expect("first").expect("one");
    assert_eq!(first.index, 0);
    server.begin_shutdown();
    let mut count = 1;
    while let Some(item) = stream.message().await.expect("the stream finishes cleanly") {
        assert!(matches!(item.result, Some(pb::classify_batch_response::Result::Classification(_))));
        count += 1;
    }
    assert_eq!(count, n, "every record of the batch in flight is answered");
    server.wait().await.expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_concurrency_limit_requests_are_refused_not_queued() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let server = spawn(RuleSource::Memory(vec![("tiny.merit".into(), TINY.into())]), |c| {
        c.max_concurrent_requests = 1;
        c.max_message_bytes = 64 * 1024 * 1024;
    })
    .await;
    let ch = channel(&server).await;
    let items: Vec<serde_json::Value> = (0..100).map(|i| serde_json::json!({"v": format!("{i}.5")})).collect();
    let big: Vec<pb::RecordValue> = (0..1000)
        .map(|i| convert::json_record(&serde_json::json!({"subject_id": format!("S{i}"), "period": "2025", "p": "1", "items": items})))
        .collect();
    let mut slow = ClassificationServiceClient::new(ch.clone());
    // The cohort holds the only slot while it runs; should a quick request hold it first, the
    // cohort is the one refused, and it tries again.
    let cohort = tokio::spawn(async move {
        let mut refused = 0u32;
        loop {
            let req = pb::ClassifyCohortRequest {
                ruleset: Some(pb::RuleSetReference { id: "tiny".into(), version: None }),
                records: big.clone(),
                options: None,
                exemption: None,
                idempotency_key: String::new(),
            };
            match slow.classify_cohort(req).await {
                Ok(r) => return (r.into_inner().classifications.len(), refused),
                Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
                Err(s) => panic!("the cohort fails: {s:?}"),
            }
        }
    });
    let mut health = HealthClient::new(ch.clone());
    let mut fast = ClassificationServiceClient::new(ch);
    let record = serde_json::json!({"subject_id": "F", "period": "2025", "p": "1"});
    // Keep asking while the cohort runs; stop once it is done. Health checks take no slot: a
    // probe must answer while the service is saturated.
    let mut refused = 0u32;
    while !cohort.is_finished() {
        match fast.classify(request("tiny", &record, pb::TraceDetail::None)).await {
            Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
            Err(s) => panic!("only RESOURCE_EXHAUSTED is expected: {s:?}"),
            Ok(_) => {}
        }
        let probe = health.check(HealthCheckRequest { service: String::new() }).await.expect("health answers under load");
        assert_eq!(probe.into_inner().status, ServingStatus::Serving as i32);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (answers, cohort_refused) = cohort.await.expect("task");
    assert_eq!(answers, 1000, "the cohort completes");
    assert!(refused + cohort_refused > 0, "a request beyond the limit is answered RESOURCE_EXHAUSTED, not queued");
    let metrics = server.state.metrics.render();
    assert!(metrics.contains(&format!("merit_requests_shed_total {}", refused + cohort_refused)), "{metrics}");
    server.shutdown().await.expect("stops");
}

/// Sends a `Classify` whose record is the given bytes, as any client could put on the wire.
async fn classify_raw(ch: Channel, record: &[u8]) -> Result<pb::ClassifyResponse, tonic::Status> {
    use prost::Message;
    let mut req = pb::ClassifyRequest {
        ruleset: Some(pb::RuleSetReference { id: "reg366_individual".into(), version: None }),
        options: Some(pb::ClassifyOptions { trace: pb::TraceDetail::None as i32, store: false }),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 2 (the record), length-delimited.
    req.push(2 << 3 | 2);
    prost::encoding::encode_varint(record.len() as u64, &mut req);
    req.extend_from_slice(record);
    let wire = merit::service::inbound::ClassifyRequest::decode(req.as_slice()).expect("the request itself is well-formed");
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/merit.v1.ClassificationService/Classify");
    let codec = tonic_prost::ProstCodec::<merit::service::inbound::ClassifyRequest, pb::ClassifyResponse>::default();
    grpc.unary(tonic::Request::new(wire), path, codec).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_direct_decoder_leaves_are_answered_the_long_way() {
    use prost::Message;
    let server = bundled().await;
    let tree = convert::json_record(&example());
    let bytes = tree.encode_to_vec();
    let direct = classify_raw(channel(&server).await, &bytes).await.expect("classifies");
    // The same record with `general_points` repeated at the end: the value tree keeps the last
    // one, and so does the answer.
    let mut zero = example();
    zero["general_points"] = 0.into();
    let zero_tree = convert::json_record(&zero);
    let want = classify_raw(channel(&server).await, &zero_tree.encode_to_vec()).await.expect("classifies");
    assert_ne!(want.classification, direct.classification, "the repeated field changes the answer");
    let mut repeated = bytes.clone();
    let last = pb::RecordValue { fields: [("general_points".to_string(), zero_tree.fields["general_points"].clone())].into() };
    repeated.extend_from_slice(&last.encode_to_vec());
    let long_way = classify_raw(channel(&server).await, &repeated).await.expect("classifies the long way");
    assert_eq!(long_way.classification, want.classification);
    // A key that is not UTF-8: no RecordValue at all, answered INVALID_ARGUMENT naming `record`.
    let mut broken = bytes.clone();
    broken.extend_from_slice(&[0x0a, 5, 0x0a, 3, 0xff, 0xfe, 0xfd]);
    let err = classify_raw(channel(&server).await, &broken).await.expect_err("not a record");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let violations = err.get_details_bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations[0].field, "record");
    assert!(violations[0].description.contains("not a merit.v1.RecordValue"), "{}", violations[0].description);
    server.shutdown().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_past_its_deadline_ends_with_a_deadline_status_and_the_server_serves_on() {
    let server = bundled().await;
    let mut client = ClassificationServiceClient::new(channel(&server).await);
    // Enough records that their answers take a while to stream.
    let records: Vec<pb::BatchRecord> = (0..20_000)
        .map(|i| pb::BatchRecord {
            record: Some(convert::json_record(&serde_json::json!({
                "subject_id": format!("D{i}"), "agency_id": "A", "period": "2025", "general_points": 27, "task_points_assessed": 60
            }))),
            idempotency_key: String::new(),
        })
        .collect();
    // When this build's answers begin and end, from the batch without a deadline: the second
    // deadline starts a third of the way between, and is shortened while the whole batch is
    // still answered within it, or lengthened while none of it is (a fixed one was passed by
    // a release build, and ran out before the first answer in a debug one).
    let batch = |timeout: Option<Duration>| {
        let mut req = tonic::Request::new(pb::ClassifyBatchRequest {
            ruleset: Some(pb::RuleSetReference { id: "reg366_individual".into(), version: None }),
            records: records.clone(),
            options: None,
        });
        if let Some(t) = timeout {
            req.set_timeout(t);
        }
        req
    };
    let started = std::time::Instant::now();
    let mut stream = client.classify_batch(batch(None)).await.expect("a batch").into_inner();
    let mut first = None;
    while stream.message().await.expect("answers").is_some() {
        first.get_or_insert_with(|| started.elapsed());
    }
    let last = started.elapsed();
    let first = first.unwrap_or(last);
    let mut timeout = Duration::from_millis(1);
    let mut among_the_answers = first + (last - first) / 3;
    let mut ended_in_the_middle = false;
    for attempt in 0..8 {
        let (status, answered) = match client.classify_batch(batch(Some(timeout))).await {
            Err(status) => (Some(status), 0),
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let mut answered = 0;
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => answered += 1,
                        Ok(None) => break (None, answered),
                        Err(status) => break (Some(status), answered),
                    }
                }
            }
        };
        println!("{timeout:?}: ended after {answered} answers: {:?}", status.as_ref().map(|s| (s.code(), s.message())));
        let Some(status) = status else {
            // Answered in full within the deadline: it was too long (never the first, 1 ms).
            assert!(attempt > 0, "all {answered} records answered despite a {timeout:?} deadline");
            among_the_answers /= 2;
            timeout = among_the_answers;
            continue;
        };
        assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
        if status.code() == Code::DeadlineExceeded {
            assert_eq!(status.message(), format!("deadline exceeded after {answered} records"));
        }
        if answered > 0 {
            ended_in_the_middle = true;
            break;
        }
        if attempt > 0 {
            among_the_answers = among_the_answers * 3 / 2;
        }
        timeout = among_the_answers;
    }
    assert!(ended_in_the_middle, "no deadline ended the batch after some answers (answers from {first:?} to {last:?} without one)");
    // The server goes on serving.
    client.classify(request("reg366_individual", &example(), pb::TraceDetail::None)).await.expect("still serving");
    server.shutdown().await.expect("stops");
}

/// Any bytes, as a message (to send requests no generated client would).
#[derive(Clone, Debug, Default, PartialEq)]
struct AnyBytes(Vec<u8>);

impl prost::Message for AnyBytes {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_no_message_is_invalid_argument_on_every_service() {
    let server = bundled().await;
    // Field 1, length-delimited, 5 bytes long, but only one byte follows.
    let cut_short = AnyBytes(vec![0x0a, 0x05, 0x01]);
    for method in [
        "/merit.v1.ClassificationService/Classify",
        "/merit.v1.ClassificationService/ClassifyCohort",
        "/merit.v1.RuleSetService/GetRuleSet",
        "/merit.v1.EvaluationService/ListEvaluations",
    ] {
        let mut grpc = tonic::client::Grpc::new(channel(&server).await);
        grpc.ready().await.expect("ready");
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
        let codec = tonic_prost::ProstCodec::<AnyBytes, AnyBytes>::default();
        let err = grpc.unary(tonic::Request::new(cut_short.clone()), path, codec).await.expect_err("no message");
        assert_eq!(err.code(), Code::InvalidArgument, "{method}: {err:?}");
        assert!(err.message().starts_with("the request is no valid protobuf message"), "{method}: {}", err.message());
    }
    // The server goes on serving.
    let mut client = ClassificationServiceClient::new(channel(&server).await);
    client.classify(request("reg366_individual", &example(), pb::TraceDetail::None)).await.expect("still serving");
    server.shutdown().await.expect("stops");
}
