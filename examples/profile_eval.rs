//! Evaluates the example record many times (for profilers): `cargo run --release --example profile_eval [N] [full|summary]`.
#![allow(clippy::expect_used, reason = "a profiling harness fails loudly")]
fn main() {
    let text = include_str!("../rules/reg366.merit");
    let (rs, _) = merit::compile::compile("rules/reg366.merit", text).expect("compiles");
    let rec = merit::eval::record::from_json_text(&rs.checked.schema, include_str!("staff_2025.json")).expect("fits");
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    // A second argument `full` or `summary` records that trace.
    let trace = match std::env::args().nth(2).as_deref() {
        Some("full") => merit::eval::TraceLevel::Full,
        Some("summary") => merit::eval::TraceLevel::Summary,
        _ => merit::eval::TraceLevel::None,
    };
    let mut levels = 0usize;
    for _ in 0..n {
        levels += merit::eval::evaluate(&rs, std::hint::black_box(&rec), trace).map(|o| o.level as usize).unwrap_or(0);
    }
    println!("{levels}");
}
