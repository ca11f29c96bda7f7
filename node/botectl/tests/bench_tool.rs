//! `botectl bench` run in-process: the direct baseline (the bench's own
//! acceptor) and a real `boted` it spawns move every message, and the report
//! accounts for each of them. No timing is asserted.

use std::path::PathBuf;

use botectl::bench::{self, BenchOptions, Mode, RunReport};

const N: u64 = 2_000;

fn options() -> BenchOptions {
    BenchOptions {
        messages: N,
        timeout: 60,
        ..BenchOptions::default()
    }
}

fn assert_sane(run: &RunReport, presettled: bool) {
    assert!(run.is_complete(), "problems: {:?}", run.problems);
    assert_eq!(run.presettled, presettled);
    assert_eq!(run.messages, N);
    assert_eq!(run.sent, N, "every message was sent");
    assert_eq!(run.received, N, "every message was received");
    assert_eq!(run.dropped, 0);
    assert_eq!(
        run.message_bytes, 113,
        "a 100-byte body makes a 113-byte message"
    );
    if presettled {
        assert_eq!(run.accepted, 0, "presettled sends have no outcome");
    } else {
        assert_eq!(run.accepted, N, "the sender saw every delivery accepted");
    }
    assert_eq!(run.released + run.modified + run.rejected, 0);
    assert!(run.elapsed.as_nanos() > 0);
    assert!(run.msgs_per_sec > 0.0 && run.msgs_per_sec.is_finite());
    assert!(run.mb_per_sec > 0.0);
    let latency = run
        .latency
        .expect("latency is measured from the body's timestamp");
    assert_eq!(latency.samples, N, "one latency sample per message");
    assert!(latency.p50_us <= latency.p99_us);
    assert!(latency.p99_us <= latency.p999_us);
    assert!(latency.p999_us <= latency.max_us);
}

/// A request/reply run that finished: each of the `n` requests sent, its
/// reply received and accepted.
fn assert_round_trips(run: &RunReport, n: u64) {
    assert!(run.is_complete(), "problems: {:?}", run.problems);
    assert_eq!((run.sent, run.received, run.accepted), (n, n, n));
}

#[test]
fn direct_unsettled_receives_and_accepts_every_message() {
    let report = bench::run(&BenchOptions {
        direct: true,
        ..options()
    })
    .unwrap();
    assert_eq!(report.runs.len(), 1);
    assert_eq!(report.runs[0].path, "direct");
    assert!(
        report.runs[0].router.is_none(),
        "no router, no router usage"
    );
    assert_sane(&report.runs[0], false);
    assert!(report.ratio.is_none());
}

#[test]
fn direct_presettled_receives_every_message() {
    let report = bench::run(&BenchOptions {
        direct: true,
        presettled: true,
        ..options()
    })
    .unwrap();
    assert_sane(&report.runs[0], true);
}

#[test]
fn direct_with_two_senders_splits_the_messages_and_receives_all() {
    let report = bench::run(&BenchOptions {
        direct: true,
        senders: 2,
        ..options()
    })
    .unwrap();
    assert_sane(&report.runs[0], false);
    assert_eq!(
        report.runs[0].receivers, 2,
        "one acceptor connection per sender"
    );
}

#[test]
fn direct_request_reply_measures_one_round_trip_per_request() {
    let report = bench::run(&BenchOptions {
        direct: true,
        mode: Mode::Rr,
        messages: 200,
        ..options()
    })
    .unwrap();
    let run = &report.runs[0];
    assert_round_trips(run, 200);
    assert_eq!(run.mode, "rr");
    assert_eq!(run.latency.unwrap().samples, 200);
}

/// The `boted` to spawn: `BOTED`, or the one built beside this test in the
/// same target directory (`scripts/test` builds it; `cargo test` of the
/// whole workspace does too, for bote-node's tests).
fn boted() -> PathBuf {
    if let Some(path) = std::env::var_os("BOTED") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/bench_tool-<hash> -> target/<profile>/boted
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("boted"))
        .expect("the test runs from a cargo target directory");
    assert!(
        path.exists(),
        "{} not found: build it (cargo build -p bote-node --bin boted) or set BOTED",
        path.display()
    );
    path
}

#[test]
fn through_a_spawned_boted_presettled_drops_nothing_and_unsettled_is_all_accepted() {
    let presettled = bench::run(&BenchOptions {
        spawn: true,
        boted: Some(boted()),
        presettled: true,
        ..options()
    })
    .unwrap();
    let run = &presettled.runs[0];
    assert!(
        run.path.starts_with("spawned boted 127.0.0.1:"),
        "{}",
        run.path
    );
    assert_sane(run, true);
    let usage = run
        .router
        .expect("the spawned router's usage is read from /proc");
    assert!(usage.cpu_seconds >= 0.0);
    assert!(usage.peak_rss_kb >= usage.rss_before_kb && usage.rss_before_kb > 0);

    let unsettled = bench::run(&BenchOptions {
        compare: true,
        spawn: true,
        boted: Some(boted()),
        ..options()
    })
    .unwrap();
    assert_eq!(
        unsettled.runs.len(),
        2,
        "--compare runs direct, then routed"
    );
    assert_eq!(unsettled.runs[0].path, "direct");
    assert_sane(&unsettled.runs[0], false);
    assert_sane(&unsettled.runs[1], false);
    assert!(unsettled.runs[1].router.is_some());
    let ratio = unsettled.ratio.expect("--compare gives the ratio");
    assert!(ratio > 0.0 && ratio.is_finite());
}

#[test]
fn through_a_spawned_boted_request_reply_round_trips() {
    let report = bench::run(&BenchOptions {
        spawn: true,
        boted: Some(boted()),
        mode: Mode::Rr,
        messages: 200,
        ..options()
    })
    .unwrap();
    let run = &report.runs[0];
    assert_round_trips(run, 200);
}

#[test]
fn options_that_name_no_path_are_refused_with_the_reason() {
    let e = bench::run(&options()).unwrap_err().to_string();
    assert!(e.contains("--direct"), "{e}");
    let e = bench::run(&BenchOptions {
        compare: true,
        ..options()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("--compare needs"), "{e}");
}

#[test]
fn tls_on_both_client_sides_moves_every_message_direct_and_through_an_amqps_boted() {
    let report = bench::run(&BenchOptions {
        compare: true,
        spawn: true,
        tls: true,
        boted: Some(boted()),
        ..options()
    })
    .unwrap();
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.runs[0].path, "direct");
    assert!(
        report.runs[1].path.contains(", amqps"),
        "{}",
        report.runs[1].path
    );
    assert_sane(&report.runs[0], false);
    assert_sane(&report.runs[1], false);
    let rr = bench::run(&BenchOptions {
        spawn: true,
        tls: true,
        boted: Some(boted()),
        mode: Mode::Rr,
        messages: 200,
        ..options()
    })
    .unwrap();
    let run = &rr.runs[0];
    assert_round_trips(run, 200);
    // The certificates are the bench's own: a running router's are unknown.
    let e = bench::run(&BenchOptions {
        router: Some("127.0.0.1:5671".into()),
        tls: true,
        ..options()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("--tls needs --spawn"), "{e}");
}

#[test]
fn listener_options_reach_the_spawned_routers_and_a_bad_one_is_named() {
    // A chain of two whose AMQP connections run on the mesh's thread
    // (`amqp-on-mesh-thread`): every message through, all accepted, and
    // request/reply round trips.
    let on_mesh = || BenchOptions {
        spawn: true,
        boted: Some(boted()),
        chain: Some(2),
        listener_option: vec!["amqp-on-mesh-thread = true".into()],
        ..options()
    };
    let report = bench::run(&on_mesh()).unwrap();
    assert_sane(&report.runs[0], false);
    let rr = bench::run(&BenchOptions {
        mode: Mode::Rr,
        messages: 200,
        ..on_mesh()
    })
    .unwrap();
    let run = &rr.runs[0];
    assert_round_trips(run, 200);

    let e = bench::run(&BenchOptions {
        listener_option: vec!["no-such-key = 1".into()],
        chain: None,
        ..on_mesh()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("no-such-key"), "{e}");
}
