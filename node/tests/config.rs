//! The configuration of `boted` as a user meets it: the embedded default, the
//! example file, the error messages for mistakes, and how the address table
//! decides an address's distribution.

use bote_node::config::reload::{CostChange, diff};
use bote_node::config::{
    AddressKey, AddressTable, Config, ConfigError, Diagnostic, Distribution, Role, SaslMechanism,
    StripAnnotations,
};
use proptest::prelude::*;

fn parse(text: &str) -> Config {
    match Config::from_str_named(text, "bote.toml") {
        Ok(config) => config,
        Err(e) => panic!("expected the config to parse, got: {e}"),
    }
}

fn diagnostic(text: &str) -> Diagnostic {
    match Config::from_str_named(text, "bote.toml") {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(ConfigError::Invalid(d)) => *d,
        Err(e) => panic!("expected a diagnostic, got {e}"),
    }
}

fn table(entries: &[(&str, Distribution)]) -> AddressTable {
    let text: String = entries
        .iter()
        .map(|(key, d)| {
            let (kind, value) = key.split_once('=').expect("kind=value");
            format!("[[address]]\n{kind} = \"{value}\"\ndistribution = \"{d}\"\n")
        })
        .collect();
    parse(&text).addresses
}

fn qdrouterd_defaults() -> AddressTable {
    Config::embedded_default()
        .expect("the embedded default parses")
        .addresses
}

// ---------------------------------------------------------------- defaults

#[test]
fn embedded_default_listens_on_5672_for_anonymous_clients_with_or_without_sasl() {
    let config = Config::embedded_default().expect("the embedded default parses");
    assert_eq!(config.listeners.len(), 1);
    let l = &config.listeners[0];
    assert_eq!(l.socket_address(), "0.0.0.0:5672");
    assert_eq!(l.role, Role::Normal);
    assert_eq!(l.sasl_mechanisms, [SaslMechanism::Anonymous]);
    assert!(!l.require_sasl);
    assert_eq!(l.idle_timeout_secs, 16);
    assert_eq!(l.max_frame_size, 16384);
    assert_eq!(l.link_capacity, 250);
    assert_eq!(l.max_message_size, 10 * 1024 * 1024);
    assert!(config.connectors.is_empty());
    assert!(config.router.id.starts_with("Router."));
    assert_eq!(config.router.workers, 0);
    assert!(config.router.worker_threads() >= 1);
    assert_eq!(config.router.log_level, "info");
}

#[test]
fn embedded_default_carries_qdrouterds_default_prefixes_and_balances_the_rest() {
    let table = qdrouterd_defaults();
    let prefixes: Vec<(&str, Distribution)> = table
        .entries()
        .iter()
        .map(|e| (e.key.as_str(), e.distribution))
        .collect();
    assert_eq!(
        prefixes,
        [
            ("closest", Distribution::Closest),
            ("multicast", Distribution::Multicast),
            ("unicast", Distribution::Closest),
            ("exclusive", Distribution::Closest),
            ("broadcast", Distribution::Multicast),
        ]
    );
    assert!(
        table
            .entries()
            .iter()
            .all(|e| matches!(e.key, AddressKey::Prefix(_)))
    );
    for (address, expected) in [
        ("closest.orders", Distribution::Closest),
        ("unicast/a", Distribution::Closest),
        ("exclusive", Distribution::Closest),
        ("multicast.news", Distribution::Multicast),
        ("broadcast/x/y", Distribution::Multicast),
        ("orders", Distribution::Balanced),
        ("queue.closest", Distribution::Balanced),
    ] {
        assert_eq!(table.lookup(address), expected, "{address}");
    }
}

#[test]
fn an_empty_file_gives_every_router_default_and_nothing_else() {
    let config = parse("");
    assert!(config.router.id.starts_with("Router."));
    assert_eq!(config.router.hello_interval_ms, 1000);
    assert_eq!(config.router.hello_timeout_ms, 3000);
    assert_eq!(config.router.default_distribution, Distribution::Balanced);
    assert!(config.listeners.is_empty());
    assert!(config.addresses.entries().is_empty());
    assert_eq!(config.addresses.lookup("closest"), Distribution::Balanced);
}

#[test]
fn a_listener_with_only_a_port_gets_every_other_default() {
    let config = parse("[[listener]]\nport = 0\n");
    let l = &config.listeners[0];
    assert_eq!(l.port, 0);
    assert_eq!(l.host, "0.0.0.0");
    assert_eq!(l.link_capacity, 250);
    assert_eq!(l.max_message_size_limit(), Some(10 * 1024 * 1024));
}

// ---------------------------------------------------------------- full files

#[test]
fn a_full_config_parses_into_the_expected_structs() {
    let config = parse(
        r#"
[router]
id = "Router.A"
workers = 4
log-level = "debug,bote_node::amqp=trace"
hello-interval-ms = 500
hello-timeout-ms = 2000
default-distribution = "closest"

[[listener]]
name = "clients"
host = "127.0.0.1"
port = 0
role = "normal"
sasl-mechanisms = ["ANONYMOUS"]
idle-timeout-secs = 30
max-frame-size = 65536
link-capacity = 100
max-message-size = 0
require-sasl = true

[[listener]]
host = "::1"
port = 55672
role = "inter-router"

[[connector]]
name = "b"
host = "127.0.0.1"
port = 55673
cost = 7

[[address]]
prefix = "queue"
distribution = "balanced"
priority = 7

[[address]]
name = "gone"
pattern = "old/#"
distribution = "unavailable"
"#,
    );
    let r = &config.router;
    assert_eq!(r.id, "Router.A");
    assert_eq!(r.workers, 4);
    assert_eq!(r.worker_threads(), 4);
    assert_eq!(r.log_level, "debug,bote_node::amqp=trace");
    assert_eq!((r.hello_interval_ms, r.hello_timeout_ms), (500, 2000));

    let l = &config.listeners[0];
    assert_eq!(l.name.as_deref(), Some("clients"));
    assert_eq!(l.socket_address(), "127.0.0.1:0");
    assert_eq!(l.sasl_mechanisms, [SaslMechanism::Anonymous]);
    assert_eq!(l.idle_timeout_secs, 30);
    assert_eq!(l.max_frame_size, 65536);
    assert_eq!(l.link_capacity, 100);
    assert_eq!(l.max_message_size_limit(), None);
    assert!(l.require_sasl);
    let mesh = &config.listeners[1];
    assert_eq!(mesh.role, Role::InterRouter);
    assert_eq!(mesh.socket_address(), "[::1]:55672");

    let c = &config.connectors[0];
    assert_eq!(c.name, "b");
    assert_eq!(c.socket_address(), "127.0.0.1:55673");
    assert_eq!(c.role, Role::InterRouter);
    assert_eq!(c.cost, 7);
    assert_eq!(c.sasl_mechanisms, [SaslMechanism::Anonymous]);
    assert_eq!(c.idle_timeout_secs, 16);
    assert_eq!(c.max_frame_size, 16384);

    let a = &config.addresses;
    assert_eq!(a.entries()[1].name.as_deref(), Some("gone"));
    assert_eq!(a.entries()[1].key, AddressKey::Pattern("old/#".into()));
    assert_eq!(a.lookup("queue.1"), Distribution::Balanced);
    assert_eq!(a.lookup("old.stuff"), Distribution::Unavailable);
    assert_eq!(a.lookup("anything.else"), Distribution::Closest);
    assert_eq!(a.priority("queue.1"), Some(7));
    assert_eq!(a.priority("old.stuff"), None);
}

#[test]
fn qdrouterd_camel_case_names_are_accepted_as_aliases() {
    let config = parse(
        r#"
[router]
workerThreads = 2
logLevel = "warn"
defaultDistribution = "multicast"

[[listener]]
port = 0
saslMechanisms = ["ANONYMOUS"]
idleTimeoutSeconds = 60
maxFrameSize = 4096
linkCapacity = 10
maxMessageSize = 1024
requireSasl = true
"#,
    );
    assert_eq!(config.router.workers, 2);
    assert_eq!(config.router.log_level, "warn");
    assert_eq!(config.router.default_distribution, Distribution::Multicast);
    let l = &config.listeners[0];
    assert_eq!(
        (l.idle_timeout_secs, l.max_frame_size, l.link_capacity),
        (60, 4096, 10)
    );
    assert_eq!(l.max_message_size, 1024);
    assert!(l.require_sasl);
}

#[test]
fn the_example_file_users_copy_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bote.toml");
    let config = Config::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.router.id, "Router.A");
    assert_eq!(config.listeners.len(), 4);
    assert_eq!(config.listeners[1].role, Role::InterRouter);
    assert_eq!(config.listeners[2].role, Role::Edge);
    assert_eq!(
        config.listeners[3].protocol,
        bote_node::config::Protocol::Mqtt
    );
    assert_eq!(config.listeners[3].port, 1883);
    assert_eq!(config.connectors[0].name, "to-router-b");
    assert_eq!(config.addresses.lookup("closest.q"), Distribution::Closest);
    assert_eq!(
        config.addresses.lookup("sensors/kitchen/readings"),
        Distribution::Multicast
    );
    assert_eq!(
        config.addresses.lookup("retired.a.b"),
        Distribution::Unavailable
    );
    assert_eq!(config.addresses.lookup("orders"), Distribution::Balanced);
}

#[test]
fn strip_annotations_defaults_to_both_and_takes_qdrouterds_values_and_spelling() {
    let config = parse(
        "[[listener]]\nport = 1\n[[listener]]\nport = 2\nstrip-annotations = \"no\"\n\
         [[listener]]\nport = 3\nstripAnnotations = \"in\"\n\
         [[listener]]\nport = 4\nstrip-annotations = \"out\"\n",
    );
    let strip: Vec<StripAnnotations> = config
        .listeners
        .iter()
        .map(|l| l.strip_annotations)
        .collect();
    assert_eq!(
        strip,
        [
            StripAnnotations::Both,
            StripAnnotations::No,
            StripAnnotations::In,
            StripAnnotations::Out
        ]
    );
    let annotates: Vec<bool> = strip.iter().map(|s| s.annotates_outbound()).collect();
    assert_eq!(annotates, [false, true, true, false]);
}

#[test]
fn an_unknown_strip_annotations_value_names_file_line_key_and_the_choices() {
    let d = diagnostic("[[listener]]\nport = 1\n\nstrip-annotations = \"yes\"\n");
    let text = d.to_string();
    assert!(text.starts_with("bote.toml:4:"), "{text}");
    assert_eq!(d.key.as_deref(), Some("strip-annotations"));
    assert!(
        text.contains("strip-annotations in [[listener]] #1: unknown value \"yes\""),
        "{text}"
    );
    assert!(text.contains("in, out, both or no"), "{text}");
}

// ---------------------------------------------------------------- reload

const MESH: &str = r#"
[router]
id = "Router.C"

[[listener]]
name = "amqp"
port = 0

[[connector]]
name = "to-a"
host = "127.0.0.1"
port = 5001
cost = 10

[[connector]]
name = "to-b"
host = "127.0.0.1"
port = 5002
"#;

#[test]
fn a_reload_that_changes_a_connector_cost_applies_at_run_time_and_nothing_else() {
    let running = parse(MESH);
    let new = parse(&MESH.replace("cost = 10", "cost = 1"));
    let d = diff(&running, &new);
    assert_eq!(
        d.costs,
        [CostChange {
            connector: "to-a".into(),
            target: "127.0.0.1:5001".into(),
            old: 10,
            new: 1
        }]
    );
    assert!(d.needs_restart.is_empty(), "{:?}", d.needs_restart);
    assert!(diff(&running, &running).is_empty());
}

#[test]
fn a_renamed_connector_is_matched_by_host_and_port() {
    let running = parse(MESH);
    let new = parse(
        &MESH
            .replace("\"to-a\"", "\"to-router-a\"")
            .replace("cost = 10", "cost = 3"),
    );
    let d = diff(&running, &new);
    assert_eq!(d.costs.len(), 1);
    assert_eq!(d.costs[0].connector, "to-a", "the running connector's name");
    assert_eq!((d.costs[0].old, d.costs[0].new), (10, 3));
    assert_eq!(d.needs_restart.len(), 1, "{:?}", d.needs_restart);
    assert!(
        d.needs_restart[0].contains("renamed \"to-router-a\""),
        "{:?}",
        d.needs_restart
    );
}

#[test]
fn what_a_running_router_cannot_change_is_listed_as_needing_a_restart() {
    let running = parse(MESH);
    let new = parse(
        &(MESH
            .replace("Router.C", "Router.X")
            .replace("port = 0", "port = 0\nlink-capacity = 10")
            .replace("port = 5002", "port = 5003")
            .replace("cost = 10", "cost = 2")
            + "\n[[address]]\nprefix = \"q\"\ndistribution = \"closest\"\n"),
    );
    let d = diff(&running, &new);
    let text = d.needs_restart.join("\n");
    assert!(
        text.contains("[router] id \"Router.C\" -> \"Router.X\""),
        "{text}"
    );
    assert!(
        text.contains("[[listener]] \"amqp\" (0.0.0.0:0) changed"),
        "{text}"
    );
    // to-b now points elsewhere: a changed connector, not a cost change.
    assert!(
        text.contains("[[connector]] \"to-b\" (127.0.0.1:5002) changed"),
        "{text}"
    );
    assert!(text.contains("[[address]] entries changed"), "{text}");
    assert_eq!(d.needs_restart.len(), 4, "{text}");
    // The cost of to-a still applies at run time.
    assert_eq!(d.costs.len(), 1);
    assert_eq!(d.costs[0].new, 2);

    let other = parse(&MESH.replace(
        "[[connector]]\nname = \"to-b\"",
        "[[listener]]\nname = \"more\"\n[[connector]]\nname = \"to-c\"",
    ));
    let text = diff(&running, &other).needs_restart.join("\n");
    assert!(
        text.contains("[[listener]] \"more\" (0.0.0.0:5672) added"),
        "{text}"
    );
    assert!(
        text.contains("[[connector]] \"to-b\" (127.0.0.1:5002) renamed \"to-c\""),
        "{text}"
    );
    let end = MESH
        .find("[[connector]]\nname = \"to-b\"")
        .expect("to-b in MESH");
    let fewer = parse(&MESH[..end]);
    let text = diff(&running, &fewer).needs_restart.join("\n");
    assert_eq!(text, "[[connector]] \"to-b\" (127.0.0.1:5002) removed");
}

#[test]
fn a_missing_file_is_reported_with_its_path() {
    let err = Config::from_file("/nonexistent/bote.toml").expect_err("no such file");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/bote.toml"), "{err}");
}

// ---------------------------------------------------------------- errors

#[test]
fn unknown_key_names_file_line_section_key_and_the_expected_keys() {
    let d =
        diagnostic("[router]\nid = \"Router.A\"\n\n[[listener]]\nport = 5672\n\nlinkCapcity = 5\n");
    let text = d.to_string();
    assert!(text.starts_with("bote.toml:7:1: "), "{text}");
    assert_eq!((d.line, d.column), (7, 1));
    assert_eq!(d.key.as_deref(), Some("linkCapcity"));
    assert_eq!(d.section.as_deref(), Some("[[listener]] #1"));
    assert!(
        text.contains("unknown key \"linkCapcity\" in [[listener]] #1"),
        "{text}"
    );
    assert!(text.contains("expected one of: name, host, port"), "{text}");
    assert!(text.contains("link-capacity"), "{text}");
    assert!(
        !text.contains("linkCapacity"),
        "aliases are not advertised: {text}"
    );
}

#[test]
fn unknown_key_in_the_second_listener_names_that_listener() {
    let d = diagnostic("[[listener]]\nport = 1\n[[listener]]\nport = 2\nbogus = true\n");
    assert_eq!(d.line, 5);
    assert_eq!(d.section.as_deref(), Some("[[listener]] #2"));
    assert_eq!(d.key.as_deref(), Some("bogus"));
}

#[test]
fn unknown_section_is_an_unknown_top_level_key() {
    let d = diagnostic("[router]\n\n[listeners]\nport = 1\n");
    assert_eq!(d.line, 3);
    assert_eq!(d.key.as_deref(), Some("listeners"));
    assert!(
        d.message
            .contains("expected one of: router, telemetry, listener, connector, address"),
        "{d}"
    );
}

#[test]
fn unknown_distribution_names_the_value_the_key_and_the_choices() {
    let d = diagnostic(
        "[[address]]\nprefix = \"a\"\n\n[[address]]\nprefix = \"b\"\ndistribution = \"fastest\"\n",
    );
    let text = d.to_string();
    assert!(text.starts_with("bote.toml:6:16: "), "{text}");
    assert_eq!(d.key.as_deref(), Some("distribution"));
    assert!(
        text.contains("distribution in [[address]] #2: unknown value \"fastest\" (expected closest, balanced, multicast or unavailable)"),
        "{text}"
    );
}

#[test]
fn unknown_sasl_mechanism_points_at_the_element() {
    let d = diagnostic("[[listener]]\nsasl-mechanisms = [\n  \"ANONYMOUS\",\n  \"GSSAPI\",\n]\n");
    assert_eq!(d.line, 4);
    assert!(d.message.contains("unknown value \"GSSAPI\""), "{d}");
    assert!(
        d.message
            .contains("expected ANONYMOUS, PLAIN, SCRAM-SHA-256 or EXTERNAL"),
        "{d}"
    );
}

#[test]
fn wrong_type_names_key_line_and_both_types() {
    let d = diagnostic("[router]\nworkers = 2\n\n[[listener]]\nhost = \"::\"\nport = \"amqp\"\n");
    assert_eq!((d.line, d.column), (6, 8));
    assert_eq!(d.key.as_deref(), Some("port"));
    assert!(
        d.message.contains(
            "port in [[listener]] #1: expected an integer from 0 to 65535, found string \"amqp\""
        ),
        "{d}"
    );
}

#[test]
fn out_of_range_port_says_the_range() {
    let d = diagnostic("[[listener]]\nport = 70000\n");
    assert_eq!(d.line, 2);
    assert!(d.message.contains("port in [[listener]] #1"), "{d}");
    assert!(d.message.contains("an integer from 0 to 65535"), "{d}");
}

#[test]
fn missing_required_connector_key_points_at_the_section_header() {
    let d = diagnostic(
        "[[connector]]\nname = \"b\"\nhost = \"h\"\nport = 1\n\n[[connector]]\nname = \"c\"\nport = 2\n",
    );
    assert_eq!(d.line, 6);
    assert_eq!(d.key.as_deref(), Some("host"));
    assert!(
        d.message
            .contains("missing required key \"host\" in [[connector]] #2"),
        "{d}"
    );
}

#[test]
fn toml_syntax_errors_give_the_line() {
    let d = diagnostic("[router]\nid = Router.A\n");
    assert_eq!(d.line, 2);
    assert!(d.message.starts_with("TOML syntax error"), "{d}");
}

#[test]
fn same_key_in_both_spellings_is_an_error() {
    let d = diagnostic("[[listener]]\nport = 1\nlink-capacity = 1\nlinkCapacity = 2\n");
    assert!(
        d.message.contains("key \"link-capacity\" is given twice"),
        "{d}"
    );
    assert_eq!(d.line, 4);
}

#[test]
fn sasl_keys_parse_with_qdrouterd_spellings() {
    let config = parse(
        "[router]\nsaslUsersFile = \"/etc/bote/users\"\n\
         [[listener]]\nsaslMechanisms = \"SCRAM-SHA-256 PLAIN EXTERNAL\"\nauthenticatePeer = true\n\
         allow-insecure-plain = true\n\
         [[connector]]\nname = \"b\"\nhost = \"b\"\nport = 1\nsaslUsername = \"r\"\nsaslPassword = \"p\"\n",
    );
    assert_eq!(
        config.router.users_file.as_deref(),
        Some(std::path::Path::new("/etc/bote/users"))
    );
    let l = &config.listeners[0];
    assert_eq!(
        l.sasl_mechanisms,
        [
            SaslMechanism::ScramSha256,
            SaslMechanism::Plain,
            SaslMechanism::External
        ]
    );
    assert!(l.authenticate_peer && l.allow_insecure_plain && l.sasl_required());
    assert_eq!(config.connectors[0].sasl_username.as_deref(), Some("r"));
    assert_eq!(config.connectors[0].sasl_password.as_deref(), Some("p"));
    // Without ANONYMOUS on offer, SASL is required even without the flags.
    let config = parse("[router]\nusers-file = \"u\"\n[[listener]]\nsasl-mechanisms = \"PLAIN\"\n");
    assert!(config.listeners[0].sasl_required());
    assert!(!parse("[[listener]]\n").listeners[0].sasl_required());
}

#[test]
fn sasl_mechanisms_may_be_a_qdrouterd_style_string() {
    let config = parse(
        "[[connector]]\nname = \"b\"\nhost = \"b\"\nport = 1\nsasl-mechanisms = \"ANONYMOUS PLAIN\"\n",
    );
    assert_eq!(
        config.connectors[0].sasl_mechanisms,
        [SaslMechanism::Anonymous, SaslMechanism::Plain]
    );
    let d = diagnostic("[[listener]]\nsaslMechanisms = \"ANONYMOUS KERBEROS\"\n");
    assert_eq!(d.line, 2);
    assert!(
        d.message.contains(
            "unknown value \"KERBEROS\" (expected ANONYMOUS, PLAIN, SCRAM-SHA-256 or EXTERNAL)"
        ),
        "{d}"
    );
}

/// Each case: the config text, the expected line, and text the message must contain.
#[test]
fn invalid_values_are_refused_with_line_and_key() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "[[listener]]\nport = 1\nmax-frame-size = 100\n",
            3,
            "max-frame-size in [[listener]] #1: 100 is below AMQP's minimum of 512",
        ),
        (
            "[[listener]]\nlink-capacity = 0\n",
            2,
            "link-capacity in [[listener]] #1: must be at least 1",
        ),
        (
            "[[listener]]\nsasl-mechanisms = []\n",
            2,
            "sasl-mechanisms in [[listener]] #1: needs at least one mechanism",
        ),
        (
            "[[listener]]\nsasl-mechanisms = [\"ANONYMOUS\", \"ANONYMOUS\"]\n",
            2,
            "ANONYMOUS is listed twice",
        ),
        (
            "[[listener]]\nport = 1\nsasl-mechanisms = [\"ANONYMOUS\", \"PLAIN\"]\n",
            3,
            "sasl-mechanisms in [[listener]] #1: PLAIN checks passwords against a users file: set [router] users-file",
        ),
        (
            "[[listener]]\nsasl-mechanisms = \"SCRAM-SHA-256\"\n",
            2,
            "SCRAM-SHA-256 checks passwords against a users file",
        ),
        (
            "[router]\nusers-file = \"u\"\n[[listener]]\nsasl-mechanisms = [\"ANONYMOUS\", \"PLAIN\"]\nauthenticate-peer = true\n",
            5,
            "authenticate-peer in [[listener]] #1: authenticate-peer = true requires authentication, but sasl-mechanisms offers ANONYMOUS",
        ),
        (
            "[[connector]]\nname = \"b\"\nhost = \"b\"\nport = 1\nsasl-username = \"r\"\n",
            5,
            "sasl-username in [[connector]] #1: user \"r\" needs sasl-password or sasl-password-file",
        ),
        (
            "[[connector]]\nname = \"b\"\nhost = \"b\"\nport = 1\nsasl-password = \"p\"\n",
            1,
            "a password needs sasl-username",
        ),
        (
            "[[connector]]\nname = \"b\"\nhost = \"b\"\nport = 1\nsasl-username = \"r\"\nsasl-password = \"p\"\nsasl-password-file = \"f\"\n",
            7,
            "give sasl-password or sasl-password-file, not both",
        ),
        (
            "[[listener]]\nbacklog = 0\n",
            2,
            "backlog in [[listener]] #1: must be at least 1",
        ),
        ("[[listener]]\nhost = \"\"\n", 2, "host in [[listener]] #1"),
        (
            "[[listener]]\nport = 5672\n[[listener]]\nport = 5672\n",
            4,
            "0.0.0.0:5672 is already bound by [[listener]] #1",
        ),
        (
            "[router]\nlog-level = \"bote=loud\"\n",
            2,
            "log-level in [router]: \"bote=loud\": unknown level \"loud\"",
        ),
        (
            "[router]\nid = \"Router A\"\n",
            2,
            "id in [router]: \"Router A\" is not a router id",
        ),
        (
            "[router]\nhello-interval-ms = 1000\nhello-timeout-ms = 1000\n",
            3,
            "hello-timeout-ms in [router]: 1000 must be longer than hello-interval-ms (1000)",
        ),
        (
            "[[connector]]\nname = \"b\"\nhost = \"h\"\nport = 0\n",
            4,
            "port in [[connector]] #1: 0 is not a port",
        ),
        (
            "[[connector]]\nname = \"b\"\nhost = \"h\"\nport = 1\ncost = 0\n",
            5,
            "cost in [[connector]] #1: 0 is out of range",
        ),
        (
            "[[connector]]\nname = \"b\"\nhost = \"h\"\nport = 1\n[[connector]]\nname = \"b\"\nhost = \"i\"\nport = 1\n",
            6,
            "\"b\" is already the name of [[connector]] #1",
        ),
        (
            "[[address]]\nprefix = \"a\"\npattern = \"a.*\"\n",
            3,
            "an address entry takes a prefix or a pattern, not both",
        ),
        (
            "[[address]]\ndistribution = \"closest\"\n",
            1,
            "[[address]] #1: needs a prefix or a pattern",
        ),
        (
            "[[address]]\nprefix = \"a\"\n[[address]]\nprefix = \"b\"\n[[address]]\nprefix = \"a\"\ndistribution = \"closest\"\n",
            6,
            "prefix in [[address]] #3: \"a\" duplicates [[address]] #1",
        ),
        (
            "[[address]]\nprefix = \"a/b\"\n[[address]]\npattern = \"a.b.#\"\n",
            4,
            "\"a.b.#\" duplicates [[address]] #1 (both match the pattern \"a.b.#\")",
        ),
        (
            "[[address]]\nprefix = \"a\"\npriority = 10\n",
            3,
            "priority in [[address]] #1: 10 is out of range (expected 0 to 9, or -1 for none)",
        ),
        (
            "[[address]]\npattern = \"a..b\"\n",
            2,
            "pattern in [[address]] #1: \"a..b\" has an empty token",
        ),
        (
            "[[address]]\npattern = \"a.b*\"\n",
            2,
            "\"b*\": `*` and `#` must stand alone",
        ),
        (
            "[[address]]\nprefix = \"a.#\"\n",
            2,
            "wildcards belong in a pattern, not a prefix",
        ),
        ("[[address]]\nprefix = \"//\"\n", 2, "is empty"),
    ];
    for (text, line, needle) in cases {
        let d = diagnostic(text);
        assert_eq!(d.line, *line, "line for {text:?}: {d}");
        assert!(d.file == "bote.toml", "{d}");
        assert!(
            d.message.contains(needle),
            "message for {text:?}\n  got:      {d}\n  expected: {needle}"
        );
    }
}

// ---------------------------------------------------------------- matching

#[test]
fn prefix_matches_on_token_boundaries_only() {
    let table = table(&[("prefix=closest", Distribution::Closest)]);
    for address in [
        "closest",
        "closest.x",
        "closest/x",
        "closest.x.y/z",
        "/closest",
        "closest/",
    ] {
        assert_eq!(table.lookup(address), Distribution::Closest, "{address}");
    }
    for address in ["closestx", "closes", "x.closest", "", "Closest"] {
        assert_eq!(table.lookup(address), Distribution::Balanced, "{address}");
        assert!(table.matching(address).is_none(), "{address}");
    }
}

#[test]
fn multi_token_prefix_matches_its_tokens_with_either_separator() {
    let table = table(&[("prefix=a.b", Distribution::Multicast)]);
    for address in ["a.b", "a/b", "a/b.c", "a.b/c/d"] {
        assert_eq!(table.lookup(address), Distribution::Multicast, "{address}");
    }
    for address in ["a", "a.bc", "a.c.b", "ab"] {
        assert_eq!(table.lookup(address), Distribution::Balanced, "{address}");
    }
}

/// Each row: pattern, address, whether it matches.
#[test]
fn pattern_wildcards_match_one_or_any_number_of_tokens() {
    let rows: &[(&str, &str, bool)] = &[
        ("a.b.c", "a.b.c", true),
        ("a.b.c", "a/b/c", true),
        ("a.b.c", "a.b", false),
        ("a.b.c", "a.b.c.d", false),
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.c", false),
        ("a.*.c", "a.b.b.c", false),
        ("a.*", "a", false),
        ("a.*", "a.b", true),
        ("a.*", "a.b.c", false),
        ("a.#", "a", true),
        ("a.#", "a.b", true),
        ("a.#", "a.b.c.d", true),
        ("a.#", "b.a", false),
        ("a.#.c", "a.c", true),
        ("a.#.c", "a.b.c", true),
        ("a.#.c", "a.b.x.c", true),
        ("a.#.c", "a.b.c.d", false),
        ("#.c", "c", true),
        ("#.c", "x/y/c", true),
        ("#.c", "x/y/c/d", false),
        ("*.*", "a.b", true),
        ("*.*", "a", false),
        ("#", "", true),
        ("#", "anything/at.all", true),
        ("a/#/*", "a", false),
        ("a/#/*", "a.b", true),
        ("a/#/*", "a.b.c.d", true),
        ("sensors.*.readings", "sensors/kitchen/readings", true),
    ];
    for (pattern, address, matches) in rows {
        let table = table(&[(&format!("pattern={pattern}"), Distribution::Multicast)]);
        assert_eq!(
            table.matching(address).is_some(),
            *matches,
            "pattern {pattern:?} vs address {address:?}"
        );
    }
}

#[test]
fn exact_token_beats_star_beats_hash_whatever_the_configuration_order() {
    let entries = [
        ("pattern=a.#", Distribution::Multicast),
        ("pattern=a.*", Distribution::Balanced),
        ("pattern=a.b", Distribution::Unavailable),
    ];
    for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]] {
        let t = table(&order.map(|i| entries[i]));
        assert_eq!(t.lookup("a.b"), Distribution::Unavailable, "{order:?}");
        assert_eq!(t.lookup("a.c"), Distribution::Balanced, "{order:?}");
        assert_eq!(t.lookup("a.c.d"), Distribution::Multicast, "{order:?}");
        assert_eq!(t.lookup("a"), Distribution::Multicast, "{order:?}");
    }
}

#[test]
fn the_first_differing_token_decides_precedence() {
    let t = table(&[
        ("pattern=*.b.c", Distribution::Closest),
        ("pattern=a.*.*", Distribution::Multicast),
    ]);
    // `a` exact beats `*` at the first token even though the other has more
    // exact tokens later.
    assert_eq!(t.lookup("a.b.c"), Distribution::Multicast);
    assert_eq!(t.lookup("x.b.c"), Distribution::Closest);
}

#[test]
fn a_hash_that_swallows_fewer_tokens_wins() {
    let t = table(&[
        ("pattern=a.#", Distribution::Closest),
        ("pattern=a.#.c", Distribution::Multicast),
        ("pattern=a.#.b.#", Distribution::Unavailable),
    ]);
    assert_eq!(t.lookup("a.c"), Distribution::Multicast);
    assert_eq!(t.lookup("a.x.c"), Distribution::Multicast);
    // For a.b.c, `#` swallowing nothing then `b` beats swallowing `b` then `c`.
    assert_eq!(t.lookup("a.b.c"), Distribution::Unavailable);
    assert_eq!(t.lookup("a.x"), Distribution::Closest);
}

#[test]
fn a_pattern_ending_at_the_address_end_beats_a_trailing_hash() {
    let t = table(&[
        ("prefix=a", Distribution::Closest),
        ("pattern=a", Distribution::Multicast),
    ]);
    assert_eq!(t.lookup("a"), Distribution::Multicast);
    assert_eq!(t.lookup("a.b"), Distribution::Closest);
}

#[test]
fn a_longer_prefix_beats_a_shorter_one() {
    let t = table(&[
        ("prefix=queue", Distribution::Balanced),
        ("prefix=queue.priority", Distribution::Closest),
        ("prefix=multicast", Distribution::Multicast),
    ]);
    assert_eq!(t.lookup("queue.priority.1"), Distribution::Closest);
    assert_eq!(t.lookup("queue.normal"), Distribution::Balanced);
    let (index, entry) = t.matching("queue/priority").expect("matches");
    assert_eq!(index, 1);
    assert_eq!(entry.key, AddressKey::Prefix("queue.priority".into()));
}

#[test]
fn unmatched_addresses_get_the_configured_default_distribution() {
    let config =
        parse("[router]\ndefault-distribution = \"unavailable\"\n[[address]]\nprefix = \"open\"\n");
    assert_eq!(
        config.addresses.default_distribution(),
        Distribution::Unavailable
    );
    assert_eq!(config.addresses.lookup("open.x"), Distribution::Balanced);
    assert_eq!(config.addresses.lookup("closed"), Distribution::Unavailable);
}

proptest! {
    #[test]
    fn lookup_never_panics_and_agrees_with_matching(address in ".{0,64}") {
        let t = table(&[
            ("prefix=closest", Distribution::Closest),
            ("pattern=a.#.b.#.c", Distribution::Multicast),
            ("pattern=*.*.#", Distribution::Unavailable),
            ("pattern=#.z", Distribution::Closest),
        ]);
        let via_match = t.matching(&address).map_or(Distribution::Balanced, |(_, e)| e.distribution);
        prop_assert_eq!(t.lookup(&address), via_match);
    }

    #[test]
    fn lookup_on_token_soup_never_panics(tokens in proptest::collection::vec("[ab*#]{0,2}", 0..12), seps in proptest::collection::vec(prop_oneof![Just('.'), Just('/')], 12)) {
        let mut address = String::new();
        for (token, sep) in tokens.iter().zip(&seps) {
            address.push_str(token);
            address.push(*sep);
        }
        let t = table(&[
            ("pattern=a.#.b", Distribution::Closest),
            ("pattern=#.a.*", Distribution::Multicast),
            ("prefix=b", Distribution::Unavailable),
        ]);
        let _ = t.lookup(&address);
    }

    #[test]
    fn arbitrary_config_text_never_panics(text in "(\\[\\[?[a-z]{0,9}\\]\\]?\n|[a-z-]{1,12} = (\"[a-z.#*]{0,6}\"|[0-9]{1,6}|true|\\[\\])\n){0,8}") {
        let _ = Config::from_str_named(&text, "fuzz.toml");
    }
}

// ---------------------------------------------------------------- link routes

const BROKER: &str = "[[connector]]\nname = \"broker\"\nhost = \"127.0.0.1\"\nport = 5673\nrole = \"route-container\"\n";

#[test]
fn link_routes_parse_with_their_connector_and_match_by_direction() {
    let config = parse(&format!(
        "{BROKER}[[link-route]]\nprefix = \"queue\"\ndirection = \"in\"\nconnection = \"broker\"\n\
         [[link-route]]\npattern = \"topic.*\"\ndirection = \"out\"\ncontainerId = \"amq\"\naddExternalPrefix = \"x/\"\n"
    ));
    let routes = &config.link_routes;
    assert_eq!(routes.routes().len(), 2);
    let r = routes
        .matching("queue.a", bote_node::config::LinkDirection::In)
        .expect("in route");
    assert_eq!(
        r.destination,
        bote_node::config::RouteDestination::Connection("broker".into())
    );
    assert!(
        routes
            .matching("queue.a", bote_node::config::LinkDirection::Out)
            .is_none()
    );
    let r = routes
        .matching("topic.t", bote_node::config::LinkDirection::Out)
        .expect("out route");
    assert_eq!(r.external_address("topic.t"), "x/topic.t");
    // qdrouterd's spelling of the section.
    let config =
        parse("[[linkRoute]]\nprefix = \"q\"\ndirection = \"in\"\ncontainerId = \"amq\"\n");
    assert_eq!(config.link_routes.routes().len(), 1);
}

#[test]
fn a_link_route_to_an_unknown_or_inter_router_connector_names_file_line_and_key() {
    let d = diagnostic(&format!(
        "{BROKER}[[link-route]]\nprefix = \"queue\"\ndirection = \"in\"\nconnection = \"nope\"\n"
    ));
    let text = d.to_string();
    assert!(text.starts_with("bote.toml:9:"), "{text}");
    assert!(
        text.contains("no [[connector]] is named \"nope\""),
        "{text}"
    );
    let d = diagnostic(
        "[[connector]]\nname = \"peer\"\nhost = \"h\"\nport = 1\n\
         [[link-route]]\nprefix = \"q\"\ndirection = \"out\"\nconnection = \"peer\"\n",
    );
    assert!(
        d.to_string().contains("needs role = \"route-container\""),
        "{d}"
    );
    let d = diagnostic("[[link-route]]\nprefix = \"q\"\ndirection = \"out\"\n");
    assert!(d.to_string().contains("needs a connection"), "{d}");
    let d = diagnostic(
        "[[link-route]]\nprefix = \"q\"\ndirection = \"sideways\"\ncontainer-id = \"b\"\n",
    );
    assert_eq!(d.key.as_deref(), Some("direction"), "{d}");
}

#[test]
fn a_listener_cannot_take_the_route_container_role() {
    let d = diagnostic("[[listener]]\nport = 1\nrole = \"route-container\"\n");
    assert!(d.to_string().contains("connector's role"), "{d}");
}

#[test]
fn auto_links_parse_and_their_errors_name_file_line_and_key() {
    let config = parse(&format!(
        "{BROKER}[[auto-link]]\naddress = \"to.q\"\ndirection = \"out\"\nconnection = \"broker\"\nexternal-address = \"q\"\n\
         [[auto-link]]\nname = \"in\"\naddress = \"from.q\"\ndirection = \"in\"\ncontainer-id = \"amq\"\n"
    ));
    assert_eq!(config.auto_links.len(), 2);
    assert_eq!(config.auto_links[0].name, "autoLink/0");
    assert_eq!(config.auto_links[0].broker_address(), "q");
    assert_eq!(config.auto_links[1].broker_address(), "from.q");
    assert!(config.auto_links[1].is_for("any-connector", "amq"));
    let d = diagnostic(&format!(
        "{BROKER}[[auto-link]]\naddress = \"q\"\ndirection = \"in\"\nconnection = \"nope\"\n"
    ));
    assert!(d.to_string().starts_with("bote.toml:9:"), "{d}");
    assert!(
        d.to_string().contains("no [[connector]] is named \"nope\""),
        "{d}"
    );
    let d = diagnostic("[[auto-link]]\naddress = \"q\"\ndirection = \"in\"\n");
    assert!(d.to_string().contains("needs a connection"), "{d}");
}

// ---------------------------------------------------------------- edges

/// An example file, read whole, its `certs/` paths pointing at fresh test
/// certificates (`botectl certs` writes the files the examples name).
fn example(path: &str) -> String {
    let dir = std::env::temp_dir().join(format!("bote-config-certs-{}", std::process::id()));
    if !dir.join("ca.pem").exists() {
        botectl::certs::write(&dir, &[], "client").expect("test certificates");
    }
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("\"certs/", &format!("\"{}/", dir.display()))
}

#[test]
fn the_edge_gateway_examples_parse() {
    use bote_node::config::RouterMode;
    let edge = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/edge.toml");
    let config = Config::from_str_named(&example(edge), edge).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.router.mode, RouterMode::Edge);
    assert_eq!(config.listeners[0].role, Role::Normal);
    let uplinks: Vec<(&str, Role)> = config
        .connectors
        .iter()
        .map(|c| (c.name.as_str(), c.role))
        .collect();
    assert_eq!(uplinks, [("cloud-a", Role::Edge), ("cloud-b", Role::Edge)]);
    let interior = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/interior-edges.toml");
    let config =
        Config::from_str_named(&example(interior), interior).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.router.mode, RouterMode::Interior);
    assert_eq!(config.listeners[1].role, Role::Edge);
}

#[test]
fn edge_mode_refuses_mesh_roles_and_an_interior_refuses_edge_connectors() {
    let d = diagnostic("[router]\nmode = \"edge\"\n[[listener]]\nport = 0\nrole = \"edge\"\n");
    assert_eq!((d.line, d.key.as_deref()), (5, Some("role")), "{d}");
    assert!(d.message.contains("edge router takes no"), "{d}");
    let d = diagnostic(
        "[router]\nmode = \"edge\"\n[[connector]]\nname = \"x\"\nhost = \"h\"\nport = 1\nrole = \"inter-router\"\n",
    );
    assert_eq!(d.key.as_deref(), Some("role"), "{d}");
    let d = diagnostic("[[connector]]\nname = \"x\"\nhost = \"h\"\nport = 1\nrole = \"edge\"\n");
    assert_eq!(d.key.as_deref(), Some("role"), "{d}");
    assert!(d.message.contains("mode = \"edge\""), "{d}");
    let d = diagnostic("[router]\nmode = \"leaf\"\n");
    assert_eq!(d.key.as_deref(), Some("mode"), "{d}");
    let config = parse("[router]\nmode = \"edge\"\n[[listener]]\nport = 0\n");
    assert!(bote_node::mesh::configured(&config));
}
