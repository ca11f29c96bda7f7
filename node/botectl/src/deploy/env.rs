//! A router's configuration from environment variables (`botectl
//! config-from-env`), for the container image and the Kubernetes
//! StatefulSet: router id, listeners and connectors, the connectors either
//! listed or wired from the pod's ordinal ([`super::generate::ordinal_peers`]).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BOTE_ROUTER_ID` | `$HOSTNAME` | the router id (`bote-3`) |
//! | `BOTE_LISTEN` | `0.0.0.0:5672` | the client (normal) listener |
//! | `BOTE_INTER_ROUTER_LISTEN` | `0.0.0.0:55672` | the inter-router listener (`off`: none) |
//! | `BOTE_HTTP` | `0.0.0.0:8672` | the HTTP API (`/healthz`, `/readyz`) |
//! | `BOTE_MQTT_LISTEN` | | an MQTT listener (`0.0.0.0:1883`); unset: none; with `BOTE_TLS_DIR`, MQTT over TLS |
//! | `BOTE_DATA_DIR` | | `[router] data-dir`: where MQTT retained messages and persistent sessions are kept (a volume); unset: memory only |
//! | `BOTE_CONNECTORS` | | `host:port[/cost],…` inter-router connectors |
//! | `BOTE_MESH_SERVICE` | | headless Service: wire from the ordinal of the id (`<name>-<N>`) |
//! | `BOTE_MESH_DEGREE` | `0` | predecessors dialled (0: all, a full mesh) |
//! | `BOTE_MESH_PORT` | the inter-router port | the peers' inter-router port |
//! | `BOTE_NAMESPACE` | | appended to peers' names (`bote-0.bote-mesh.<ns>.svc`) |
//! | `BOTE_LOG_LEVEL` | `info` | |
//! | `BOTE_OTLP_ENDPOINT` | | OpenTelemetry trace export |
//! | `BOTE_TLS_DIR` | | the client listeners speak TLS (amqps, and MQTT over TLS) with `tls.crt` and `tls.key` of this directory (a Kubernetes TLS Secret); with `ca.crt`, client certificates are verified against it |
//! | `BOTE_TLS_REQUIRE_CLIENT_CERT` | `false` | `true`: clients must present a certificate signed by `ca.crt` |
//! | `BOTE_INTER_ROUTER_TLS_DIR` | | inter-router links are mutual TLS: the listener and every connector use `tls.crt`, `tls.key` and `ca.crt` of this directory; a peer's certificate must name the host dialled (its DNS name) |

use std::fmt::Write as _;

use super::generate::ordinal_peers;

/// The configuration text from `get` (an environment lookup), or what is
/// wrong with a variable.
pub fn config_from(get: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let var = |name: &str| get(name).filter(|v| !v.is_empty());
    let id = var("BOTE_ROUTER_ID")
        .or_else(|| var("HOSTNAME"))
        .ok_or("BOTE_ROUTER_ID (or HOSTNAME) is not set")?;
    let split = |name: &str, default: &str| -> Result<(String, u16), String> {
        let v = var(name).unwrap_or_else(|| default.to_owned());
        let (host, port) = v
            .rsplit_once(':')
            .ok_or_else(|| format!("{name}=\"{v}\" is not host:port"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{name}=\"{v}\": \"{port}\" is not a port"))?;
        Ok((host.trim_matches(['[', ']']).to_owned(), port))
    };
    let mut c = format!(
        "[router]\nid = \"{id}\"\nlog-level = \"{}\"\nhttp = \"{}\"\n",
        var("BOTE_LOG_LEVEL").unwrap_or_else(|| "info".into()),
        var("BOTE_HTTP").unwrap_or_else(|| "0.0.0.0:8672".into()),
    );
    if let Some(dir) = var("BOTE_DATA_DIR") {
        let _ = writeln!(c, "data-dir = \"{}\"", dir.trim_end_matches('/'));
    }
    if let Some(endpoint) = var("BOTE_OTLP_ENDPOINT") {
        let _ = write!(c, "\n[telemetry]\notlp-endpoint = \"{endpoint}\"\n");
    }
    let (host, port) = split("BOTE_LISTEN", "0.0.0.0:5672")?;
    let _ = write!(
        c,
        "\n[[listener]]\nhost = \"{host}\"\nport = {port}\nrole = \"normal\"\n"
    );
    // The client listeners' TLS (amqps, and MQTT over TLS): the same lines
    // for both.
    let mut client_tls = String::new();
    if let Some(dir) = var("BOTE_TLS_DIR") {
        let dir = dir.trim_end_matches('/');
        let _ = write!(
            client_tls,
            "tls-cert-file = \"{dir}/tls.crt\"\ntls-key-file = \"{dir}/tls.key\"\n"
        );
        let require = match var("BOTE_TLS_REQUIRE_CLIENT_CERT").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "BOTE_TLS_REQUIRE_CLIENT_CERT=\"{other}\" is not true or false"
                ));
            }
        };
        let ca = format!("{dir}/ca.crt");
        if require || std::path::Path::new(&ca).exists() {
            let _ = writeln!(client_tls, "tls-ca-file = \"{ca}\"");
        }
        if require {
            client_tls.push_str("require-client-cert = true\n");
        }
    }
    c.push_str(&client_tls);
    if var("BOTE_MQTT_LISTEN").is_some() {
        let (host, port) = split("BOTE_MQTT_LISTEN", "")?;
        let _ = write!(
            c,
            "\n[[listener]]\nhost = \"{host}\"\nport = {port}\nrole = \"normal\"\nprotocol = \"mqtt\"\n{client_tls}"
        );
    }
    let inter_tls = var("BOTE_INTER_ROUTER_TLS_DIR").map(|d| d.trim_end_matches('/').to_owned());
    let mut inter_port = 55672;
    if var("BOTE_INTER_ROUTER_LISTEN").as_deref() != Some("off") {
        let (host, port) = split("BOTE_INTER_ROUTER_LISTEN", "0.0.0.0:55672")?;
        inter_port = port;
        let _ = write!(
            c,
            "\n[[listener]]\nhost = \"{host}\"\nport = {port}\nrole = \"inter-router\"\n"
        );
        if let Some(dir) = &inter_tls {
            let _ = write!(
                c,
                "tls-cert-file = \"{dir}/tls.crt\"\ntls-key-file = \"{dir}/tls.key\"\n\
                 tls-ca-file = \"{dir}/ca.crt\"\nrequire-client-cert = true\n"
            );
        }
    }
    let mut connectors: Vec<(String, u16, u32)> = Vec::new();
    if let Some(list) = var("BOTE_CONNECTORS") {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (addr, cost) = match item.split_once('/') {
                Some((a, cost)) => (
                    a,
                    cost.parse().map_err(|_| {
                        format!("BOTE_CONNECTORS: \"{item}\": \"{cost}\" is not a cost")
                    })?,
                ),
                None => (item, 1),
            };
            let (host, port) = addr
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
                .ok_or_else(|| format!("BOTE_CONNECTORS: \"{item}\" is not host:port[/cost]"))?;
            connectors.push((host, port, cost));
        }
    }
    if let Some(service) = var("BOTE_MESH_SERVICE") {
        let (name, ordinal) = id
            .rsplit_once('-')
            .and_then(|(n, o)| Some((n.to_owned(), o.parse::<usize>().ok()?)))
            .ok_or_else(|| {
                format!(
                    "router id \"{id}\" has no ordinal (<name>-<N>, as a StatefulSet's pod name)"
                )
            })?;
        let degree = match var("BOTE_MESH_DEGREE") {
            None => 0,
            Some(d) => d
                .parse()
                .map_err(|_| format!("BOTE_MESH_DEGREE=\"{d}\" is not a number"))?,
        };
        let port = match var("BOTE_MESH_PORT") {
            None => inter_port,
            Some(p) => p
                .parse()
                .map_err(|_| format!("BOTE_MESH_PORT=\"{p}\" is not a port"))?,
        };
        let suffix = var("BOTE_NAMESPACE").map_or(String::new(), |ns| format!(".{ns}.svc"));
        for peer in ordinal_peers(ordinal, degree) {
            connectors.push((format!("{name}-{peer}.{service}{suffix}"), port, 1));
        }
    }
    c.push_str(super::generate::DEFAULT_ADDRESSES);
    for (host, port, cost) in connectors {
        let _ = write!(
            c,
            "\n[[connector]]\nname = \"{host}:{port}\"\nhost = \"{host}\"\nport = {port}\nrole = \"inter-router\"\ncost = {cost}\n"
        );
        if let Some(dir) = &inter_tls {
            let _ = write!(
                c,
                "tls-ca-file = \"{dir}/ca.crt\"\ntls-cert-file = \"{dir}/tls.crt\"\n\
                 tls-key-file = \"{dir}/tls.key\"\n"
            );
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<String, String> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        config_from(|k| map.get(k).cloned())
    }

    #[test]
    fn a_statefulset_pod_dials_its_predecessors_by_dns_name() {
        let c = config(&[
            ("HOSTNAME", "bote-3"),
            ("BOTE_MESH_SERVICE", "bote-mesh"),
            ("BOTE_MESH_DEGREE", "2"),
            ("BOTE_NAMESPACE", "prod"),
        ])
        .unwrap();
        assert!(c.contains("id = \"bote-3\""));
        assert!(c.contains("host = \"bote-2.bote-mesh.prod.svc\"\nport = 55672"));
        assert!(c.contains("host = \"bote-1.bote-mesh.prod.svc\""));
        assert!(!c.contains("bote-0."));
        assert_eq!(c.matches("[[connector]]").count(), 2);
        assert_eq!(c.matches("[[listener]]").count(), 2);
    }

    #[test]
    fn listed_connectors_and_bad_values() {
        let c = config(&[
            ("BOTE_ROUTER_ID", "A"),
            ("BOTE_CONNECTORS", "b.example:55672/3, c:1"),
        ])
        .unwrap();
        assert!(
            c.contains("host = \"b.example\"\nport = 55672\nrole = \"inter-router\"\ncost = 3")
        );
        assert!(c.contains("host = \"c\"\nport = 1"));
        assert_eq!(
            config(&[]).unwrap_err(),
            "BOTE_ROUTER_ID (or HOSTNAME) is not set"
        );
        assert!(
            config(&[("HOSTNAME", "bote"), ("BOTE_MESH_SERVICE", "m")])
                .unwrap_err()
                .contains("no ordinal")
        );
        assert!(
            config(&[("HOSTNAME", "a"), ("BOTE_LISTEN", "x")])
                .unwrap_err()
                .contains("BOTE_LISTEN")
        );
    }

    #[test]
    fn an_mqtt_listener_and_a_data_dir_for_its_state() {
        let c = config(&[
            ("BOTE_ROUTER_ID", "bote-0"),
            ("BOTE_MQTT_LISTEN", "0.0.0.0:1883"),
            ("BOTE_DATA_DIR", "/var/lib/bote/"),
        ])
        .unwrap();
        assert!(c.contains("[router]\nid = \"bote-0\"\n"));
        assert!(c.contains("data-dir = \"/var/lib/bote\"\n"));
        assert!(c.contains("port = 1883\nrole = \"normal\"\nprotocol = \"mqtt\"\n"));
        assert_eq!(c.matches("[[listener]]").count(), 3);
        let plain = config(&[("BOTE_ROUTER_ID", "bote-0")]).unwrap();
        assert!(!plain.contains("mqtt") && !plain.contains("data-dir"));
        let tls = config(&[
            ("BOTE_ROUTER_ID", "bote-0"),
            ("BOTE_MQTT_LISTEN", "0.0.0.0:8883"),
            ("BOTE_TLS_DIR", "/etc/bote/tls/client"),
        ])
        .unwrap();
        assert!(tls.contains(
            "port = 8883\nrole = \"normal\"\nprotocol = \"mqtt\"\n\
             tls-cert-file = \"/etc/bote/tls/client/tls.crt\"\n"
        ));
        assert_eq!(tls.matches("tls-cert-file").count(), 2);
        let e = config(&[("BOTE_ROUTER_ID", "r"), ("BOTE_MQTT_LISTEN", "1883")]).unwrap_err();
        assert!(e.contains("BOTE_MQTT_LISTEN"), "{e}");
    }

    #[test]
    fn tls_directories_make_the_client_listener_amqps_and_the_mesh_mutual_tls() {
        let c = config(&[
            ("BOTE_ROUTER_ID", "bote-1"),
            ("BOTE_MESH_SERVICE", "bote-mesh"),
            ("BOTE_TLS_DIR", "/etc/bote/tls/client/"),
            ("BOTE_TLS_REQUIRE_CLIENT_CERT", "true"),
            ("BOTE_INTER_ROUTER_TLS_DIR", "/etc/bote/tls/inter-router"),
        ])
        .unwrap();
        assert!(c.contains(
            "role = \"normal\"\ntls-cert-file = \"/etc/bote/tls/client/tls.crt\"\n\
             tls-key-file = \"/etc/bote/tls/client/tls.key\"\n\
             tls-ca-file = \"/etc/bote/tls/client/ca.crt\"\nrequire-client-cert = true\n"
        ));
        assert!(c.contains(
            "role = \"inter-router\"\ntls-cert-file = \"/etc/bote/tls/inter-router/tls.crt\"\n"
        ));
        assert_eq!(c.matches("require-client-cert = true").count(), 2);
        // The connector to bote-0 verifies it and presents this pod's certificate.
        assert!(c.contains(
            "host = \"bote-0.bote-mesh\"\nport = 55672\nrole = \"inter-router\"\ncost = 1\n\
             tls-ca-file = \"/etc/bote/tls/inter-router/ca.crt\"\n\
             tls-cert-file = \"/etc/bote/tls/inter-router/tls.crt\"\n"
        ));
        let e = config(&[
            ("BOTE_ROUTER_ID", "r"),
            ("BOTE_TLS_DIR", "/t"),
            ("BOTE_TLS_REQUIRE_CLIENT_CERT", "yes"),
        ])
        .unwrap_err();
        assert!(e.contains("BOTE_TLS_REQUIRE_CLIENT_CERT"), "{e}");
    }
}
