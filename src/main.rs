//! The `merit` binary: see [`merit::cli`].

/// mimalloc: the service allocates many small, short-lived values per request, and this
/// allocator serves them markedly faster than the system one (see the issue note's figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    merit::cli::run()
}
