//! merit: classify periodic performance by the products delivered, under rules policy staff write.
//!
//! The pipeline: [`syntax`] (text → tree) → [`check`] (names, types, levels → checked rules)
//! → [`compile`] ([`compile::RuleSet`], immutable and shareable) → [`eval`] (record → outcome
//! with trace), with [`cohort`] applying quotas over a cohort.
//!
//! ```
//! use merit::compile::compile;
//! use merit::eval::{evaluate, record, TraceLevel};
//!
//! let rules = r#"
//! ruleset demo "Demo" version "1" effective 2025-01-01
//! record {
//!   subject_id: text role subject
//!   period:     text role period
//!   done:       integer >= 0
//!   assigned:   integer > 0
//! }
//! levels { good "Tốt" weak "Yếu" }
//! score total = round(100 * done / assigned, 2, half_up)
//! classify by total { good when total >= 50 weak otherwise }
//! "#;
//! let (rs, warnings) = compile("demo.merit", rules).expect("compiles");
//! assert!(warnings.is_empty());
//! let rec = record::from_json_text(&rs.checked.schema,
//!     r#"{"subject_id": "A", "period": "2025", "done": 2, "assigned": 3}"#).expect("fits");
//! let outcome = evaluate(&rs, &rec, TraceLevel::Full).expect("classifies");
//! assert_eq!(rs.level_id(outcome.level), "good");
//! assert_eq!(merit::answer::format_total(&outcome.total.expect("total")), "66.67");
//! ```

pub mod answer;
pub mod check;
pub mod cli;
pub mod cohort;
pub mod compile;
pub mod date;
pub mod diagnostic;
pub mod eval;
pub mod num;
pub mod registry;
pub mod replay;
pub mod service;
pub mod source;
pub mod store;
pub mod syntax;
#[cfg(test)]
#[allow(clippy::expect_used, clippy::indexing_slicing, reason = "test data fails loudly")]
mod testdata;
pub mod testing;
