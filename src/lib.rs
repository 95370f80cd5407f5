//! merit: classify periodic performance by the products delivered, under rules policy staff write.
//!
//! The pipeline: [`syntax`] (text → tree) → [`check`] (names, types, levels → checked rules)
//! → [`compile`] ([`compile::RuleSet`], immutable and shareable) → [`eval`] (record → outcome
//! with trace), with [`cohort`] applying quotas over a cohort.

pub mod answer;
pub mod check;
pub mod cli;
pub mod cohort;
pub mod compile;
pub mod diagnostic;
pub mod eval;
pub mod num;
pub mod source;
pub mod syntax;
pub mod testing;
