//! Mechanical architecture invariants: the language stages do no IO and use no service or
//! database crates (their unit tests may read test data); every source file opens with a `//!`
//! module doc.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn language_stages_stay_pure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for stage in ["syntax", "check", "compile", "eval"] {
        let mut files = Vec::new();
        rust_files(&root.join(stage), &mut files);
        assert!(!files.is_empty());
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable");
            // Unit tests (the `mod tests` at a file's end) may read test data from files.
            let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
            for banned in ["tokio", "tonic", "rusqlite", "tokio_postgres", "std::fs", "std::net", "SystemTime", "Instant::now", "HashMap<"]
            {
                let in_code = text.lines().filter(|l| !l.trim_start().starts_with("//")).any(|l| l.contains(banned));
                assert!(!in_code || (banned == "HashMap<" && stage == "check"), "{} uses `{banned}`", f.display());
            }
        }
    }
}

#[test]
fn every_source_file_has_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable");
        assert!(text.starts_with("//!"), "{} does not start with a //! doc", f.display());
    }
}
