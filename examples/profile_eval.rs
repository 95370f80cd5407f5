//! Evaluates the example record many times (for profilers):
//! `cargo run --release --example profile_eval [N] [none|summary|full] [TASKS]`.
//!
//! `TASKS` gives the record that many tasks, repeating the example's ten in turn (with 0 tasks,
//! the record carries assessed task points instead, as it must). Instruction counts per record
//! at several task counts separate the per-task cost from the fixed cost (docs/performance.md).
#![allow(clippy::expect_used, reason = "a profiling harness fails loudly")]
/// The allocator the `merit` binary uses (src/main.rs), so that the figures are the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let text = include_str!("../rules/reg366.merit");
    let (rs, _) = merit::compile::compile("rules/reg366.merit", text).expect("compiles");
    let mut json: serde_json::Value = serde_json::from_str(include_str!("staff_2025.json")).expect("example is JSON");
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let trace = match args.get(2).map(String::as_str) {
        Some("full") => merit::eval::TraceLevel::Full,
        Some("summary") => merit::eval::TraceLevel::Summary,
        _ => merit::eval::TraceLevel::None,
    };
    if let Some(tasks) = args.get(3).map(|a| a.parse::<usize>().expect("TASKS is a number of tasks")) {
        let fields = json.as_object_mut().expect("the example is an object");
        let example = fields.get("tasks").and_then(|t| t.as_array()).cloned().expect("the example lists tasks");
        fields.insert("tasks".into(), example.iter().cycle().take(tasks).cloned().collect());
        if tasks == 0 {
            fields.insert("task_points_assessed".into(), "60".into());
        }
    }
    let rec = merit::eval::record::from_json(&rs.checked.schema, &json).expect("fits");
    let mut levels = 0usize;
    for _ in 0..n {
        // An error would be measured as if it were the evaluation: stop instead.
        levels += merit::eval::evaluate(&rs, std::hint::black_box(&rec), trace).expect("evaluates").level as usize;
    }
    println!("{levels}");
}
