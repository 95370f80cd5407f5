//! The one mapping from library errors to gRPC statuses with `google.rpc` details.

use crate::compile::RuleSet;
use crate::eval::EvalError;
use crate::eval::record::FieldError;
use crate::registry::ResolveError;
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The error domain in `google.rpc.ErrorInfo`.
pub const DOMAIN: &str = "merit";

/// A record that does not fit the schema: INVALID_ARGUMENT with one field violation per path.
pub fn invalid_record(errors: &[FieldError], prefix: &str) -> Status {
    let mut details = ErrorDetails::new();
    for e in errors {
        let path = match (prefix.is_empty(), e.path.is_empty()) {
            (true, _) => e.path.clone(),
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{}", e.path),
        };
        details.add_bad_request_violation(path, e.message.clone());
    }
    details.set_error_info("RECORD_INVALID", DOMAIN, HashMap::new());
    let first = errors.first().map(ToString::to_string).unwrap_or_default();
    let message = if prefix.is_empty() {
        format!("the record does not fit the schema: {first}")
    } else {
        format!("{prefix}: the record does not fit the schema: {first}")
    };
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// An evaluation error: field errors, or FAILED_PRECONDITION naming the rule.
pub fn eval_error(rs: &RuleSet, e: &EvalError, prefix: &str) -> Status {
    match e {
        EvalError::Invalid(errors) => invalid_record(errors, prefix),
        EvalError::Rule(r) => {
            let mut details = ErrorDetails::new();
            let rule = r.rule.clone().unwrap_or_default();
            details.add_precondition_failure_violation("RULE", format!("{}@{}:{rule}", rs.checked.id, rs.checked.version), e.describe(rs));
            let mut meta = HashMap::new();
            meta.insert("rule".to_string(), rule);
            meta.insert("ruleset".to_string(), rs.checked.id.clone());
            details.set_error_info("RULE_ERROR", DOMAIN, meta);
            let message = if prefix.is_empty() { e.describe(rs) } else { format!("{prefix}: {}", e.describe(rs)) };
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
    }
}

/// An unknown rule set or version: NOT_FOUND with the resource named.
pub fn not_found(e: &ResolveError) -> Status {
    let mut details = ErrorDetails::new();
    let name = match e {
        ResolveError::UnknownId(id) | ResolveError::NotInEffect { id, .. } => id.clone(),
        ResolveError::UnknownVersion(id, v) => format!("{id}@{v}"),
    };
    details.set_resource_info("merit.v1.RuleSet", name, "", e.to_string());
    Status::with_error_details(Code::NotFound, e.to_string(), details)
}
