//! `boted`: the Bote router process. The router itself lands with the
//! single-router issue; today the binary reports its version and that status.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("boted {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!(
        "boted {}: the router is not built yet; this release carries only the AMQP 1.0 engine (see README.md, Status)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
