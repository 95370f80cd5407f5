//! The `merit` binary: see [`merit::cli`].

fn main() -> std::process::ExitCode {
    merit::cli::run()
}
