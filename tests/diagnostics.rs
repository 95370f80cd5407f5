//! Snapshot tests of checker diagnostics: every `tests/data/check/*.merit` file, rendered
//! rustc-style (plain, no colour) and as JSON. Regenerate with `INSTA_UPDATE=always cargo test`
//! (or `cargo insta review`), then read the diff before committing.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

use merit::compile::compile;
use merit::diagnostic::{render_human, to_json};

#[test]
fn checker_diagnostics() {
    insta::glob!("data/check/*.merit", |path| {
        let text = std::fs::read_to_string(path).expect("readable");
        let name = format!("tests/data/check/{}", path.file_name().and_then(|n| n.to_str()).unwrap_or(""));
        let (source, diags) = match compile(&name, &text) {
            Ok((rs, warnings)) => (rs.source, warnings),
            Err((s, d)) => (s, d),
        };
        assert!(!diags.is_empty(), "{name} is meant to produce diagnostics");
        let human = render_human(&source, &diags, false);
        let json = serde_json::to_string_pretty(&to_json(&source, &diags)).expect("serialisable");
        insta::assert_snapshot!(format!("{human}\n---- json ----\n{json}"));
    });
}
