//! The `bote-sim` command line. Scenarios land with the simulator issue.

fn main() {
    eprintln!("bote-sim: no scenarios yet (see the simulator issue)");
    std::process::exit(2);
}
