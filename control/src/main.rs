//! The `pollwall` binary: a multi-call front end (`pollwall iptables ...`, or invoked through a
//! link named `iptables`, `iptables-save` or `iptables-restore`).

fn main() {
    std::process::exit(control::cli::main());
}
