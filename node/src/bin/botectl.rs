//! `botectl`: the Bote command line (stat, manage, topology, up/down, send/recv,
//! bench). Its commands land with the router and mesh issues.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("botectl {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!("botectl {}: no commands yet (see README.md, Status)", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
