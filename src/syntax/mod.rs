//! Syntax: rule-file text → syntax tree ([`ast::RuleFile`]) with spans. No names are resolved here.

pub mod ast;
mod parser;

pub use parser::{parse, parse_expr, unquote};
