//! The `merit` command (temporary: parses files).
fn main() -> std::process::ExitCode {
    let mut ok = true;
    for path in std::env::args().skip(2) {
        let Ok(text) = std::fs::read_to_string(&path) else { eprintln!("cannot read {path}"); ok = false; continue };
        let file = merit::source::SourceFile::new(&path, &text);
        if let Err(d) = merit::syntax::parse(&file.text) {
            eprint!("{}", merit::diagnostic::render_human(&file, &[d], false));
            ok = false;
        } else {
            println!("{path}: parsed");
        }
    }
    if ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
