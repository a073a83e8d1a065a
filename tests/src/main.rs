//! The `pollwall` binary as the integration tests run it (same entry point as control's binary).

fn main() {
    std::process::exit(control::cli::main());
}
