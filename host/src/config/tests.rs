//! The configuration file and flags, resolved: defaults, overrides and refusals.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::resolve(
        toml::from_str::<RawConfig>(text).map_err(|e| ConfigError::Parse {
            path: "t.toml".into(),
            reason: e.to_string(),
        })?,
    )
}

#[test]
fn consul_names_and_defaults() {
    let c = parse(
        r#"
        node_name = "s1"
        data_dir = "/tmp/x"
        server = true
        bootstrap_expect = 3
        retry_join = ["127.0.0.1:8301"]
        bind_addr = "127.0.0.1"
        [ports]
        http = 8501
        "#,
    )
    .unwrap();
    assert_eq!(c.node_name, "s1");
    assert_eq!(c.rpc_bind, "127.0.0.1:8300".parse().unwrap());
    assert_eq!(c.rpc_advertise, "127.0.0.1:8300".parse().unwrap());
    assert_eq!(c.http_bind, Some("127.0.0.1:8501".parse().unwrap()));
    assert_eq!(
        (c.https_bind, &c.tls_rpc, &c.tls_https),
        (None, &None, &None)
    );
    assert_eq!(c.bootstrap_expect, 3);
    assert_eq!(c.snapshots, SnapshotPolicy::default());
    assert_eq!(c.snapshots.threshold, 16384);
    assert_eq!(c.snapshots.interval, Duration::from_secs(30));
    assert_eq!(c.snapshots.trailing_logs, 10240);
    assert_eq!(
        (c.datacenter.as_str(), c.domain.as_str()),
        ("dc1", "consul")
    );
}

#[test]
fn datacenter_and_domain() {
    let c = parse("datacenter = \"East-1\"\ndomain = \"example.org.\"").unwrap();
    assert_eq!(
        (c.datacenter.as_str(), c.domain.as_str()),
        ("east-1", "example.org")
    );
    let e = parse("datacenter = \"a b\"").unwrap_err().to_string();
    assert!(e.starts_with("datacenter:"), "{e}");
    let e = parse("domain = \"\"").unwrap_err().to_string();
    assert!(e.starts_with("domain:"), "{e}");
}

#[test]
fn snapshot_options() {
    let c = parse(
        "raft_snapshot_threshold = 100\nraft_snapshot_interval = \"500ms\"\nraft_trailing_logs = 5\nraft_snapshot_retain = 3",
    )
    .unwrap();
    assert_eq!(
        c.snapshots,
        SnapshotPolicy {
            threshold: 100,
            interval: Duration::from_millis(500),
            trailing_logs: 5,
            retain: 3
        }
    );
    let e = parse("raft_snapshot_interval = \"soon\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("raft_snapshot_interval:") && e.contains("soon"),
        "{e}"
    );
    let e = parse("raft_snapshot_threshold = 0")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("raft_snapshot_threshold:"), "{e}");
    let e = parse("raft_snapshot_retain = 0").unwrap_err().to_string();
    assert!(e.starts_with("raft_snapshot_retain:"), "{e}");
}

#[test]
fn plugins_and_their_limits() {
    let c = parse("").unwrap();
    assert!(c.plugins.is_empty(), "the bundled set by default");
    assert_eq!(c.plugin_limits, crate::plugin::Limits::default());
    let c = parse(
        "plugins = [\"/p/a.wasm\", \"/p/b.wasm\"]\n[plugin_limits]\nfuel = 5000000\nmemory_bytes = 16777216",
    )
    .unwrap();
    assert_eq!(
        c.plugins,
        [PathBuf::from("/p/a.wasm"), PathBuf::from("/p/b.wasm")]
    );
    assert_eq!(c.plugin_limits.fuel, 5_000_000);
    assert_eq!(c.plugin_limits.memory_bytes, 16 << 20);
    let e = parse("[plugin_limits]\nfuel = 10").unwrap_err().to_string();
    assert!(e.starts_with("plugin_limits.fuel:"), "{e}");
    let e = parse("[plugin_limits]\nmemory_bytes = 1")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("plugin_limits.memory_bytes:"), "{e}");
    let e = parse("[plugin_limits]\nspeed = 1").unwrap_err().to_string();
    assert!(e.contains("speed"), "{e}");
    let e = parse("plugins = [\"\"]").unwrap_err().to_string();
    assert!(e.starts_with("plugins:"), "{e}");
}

#[test]
fn the_plugin_cache_is_in_the_data_dir_unless_named() {
    let c = parse("").unwrap();
    assert_eq!(c.plugin_cache_dir, None, "no data dir, no cache");
    let c = parse("data_dir = \"/tmp/x\"").unwrap();
    assert_eq!(
        c.plugin_cache_dir,
        Some(PathBuf::from("/tmp/x/plugin-cache"))
    );
    let c = parse("data_dir = \"/tmp/x\"\nplugin_cache_dir = \"/var/cache/fsmhost\"").unwrap();
    assert_eq!(
        c.plugin_cache_dir,
        Some(PathBuf::from("/var/cache/fsmhost"))
    );
    let e = parse("plugin_cache_dir = \"\"").unwrap_err().to_string();
    assert!(e.starts_with("plugin_cache_dir:"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e = parse("server = false").unwrap_err().to_string();
    assert!(e.starts_with("server:"), "{e}");
    let e = parse("bind_addr = \"nope\"").unwrap_err().to_string();
    assert!(e.starts_with("bind_addr:") && e.contains("nope"), "{e}");
    let e = parse("retry_join = [\"host\"]").unwrap_err().to_string();
    assert!(e.starts_with("retry_join:"), "{e}");
    let e = parse("nonsense = 1").unwrap_err().to_string();
    assert!(e.contains("nonsense"), "{e}");
    let e = parse("[performance]\nraft_multiplier = 0")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("performance.raft_multiplier:"), "{e}");
}

#[test]
fn autopilot_stanza() {
    let c = parse("").unwrap();
    assert_eq!(c.autopilot, crate::autopilot::AutopilotConfig::default());
    assert_eq!(c.autopilot_timing, AutopilotTiming::default());
    let c = parse(
        "[autopilot]\ncleanup_dead_servers = false\nlast_contact_threshold = \"1s\"\n\
         max_trailing_logs = 10\nmin_quorum = 3\nserver_stabilization_time = \"1m30s\"\n\
         update_interval = \"250ms\"\nreconcile_interval = \"1s\"",
    )
    .unwrap();
    assert!(!c.autopilot.cleanup_dead_servers);
    assert_eq!(c.autopilot.last_contact_threshold, Duration::from_secs(1));
    assert_eq!(c.autopilot.max_trailing_logs, 10);
    assert_eq!(c.autopilot.min_quorum, 3);
    assert_eq!(
        c.autopilot.server_stabilization_time,
        Duration::from_secs(90)
    );
    assert_eq!(
        c.autopilot_timing.update_interval,
        Duration::from_millis(250)
    );
    assert_eq!(
        c.autopilot_timing.reconcile_interval,
        Duration::from_secs(1)
    );
    let slow = parse("[performance]\nraft_multiplier = 5").unwrap();
    assert_eq!(
        slow.autopilot.last_contact_threshold,
        Duration::from_secs(1),
        "two 500ms heartbeats"
    );
    for (text, key) in [
        (
            "last_contact_threshold = \"soon\"",
            "autopilot.last_contact_threshold:",
        ),
        (
            "last_contact_threshold = \"100ms\"",
            "not above the raft heartbeat",
        ),
        ("update_interval = \"1ms\"", "autopilot.update_interval:"),
        ("redundancy_zone_tag = \"az\"", "redundancy_zone_tag"),
    ] {
        let e = parse(&format!("[autopilot]\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{e}");
    }
}

#[test]
fn flags_override_the_file() {
    let file: RawConfig =
        toml::from_str("node_name = \"a\"\n[ports]\nserver = 1\nhttp = 2").unwrap();
    let flags = RawConfig {
        node_name: Some("b".into()),
        ports: Some(Ports {
            server: None,
            http: Some(3),
            https: None,
        }),
        ..RawConfig::default()
    };
    let c = Config::resolve(file.merge(flags)).unwrap();
    assert_eq!(c.node_name, "b");
    assert_eq!(c.rpc_bind.port(), 1);
    assert_eq!(c.http_bind.map(|a| a.port()), Some(3));
}

#[test]
fn connection_limits_in_consuls_names() {
    let c = parse("").unwrap();
    assert_eq!(c.limits.http_per_client, Some(200));
    assert_eq!(c.limits.rpc_per_client, Some(100));
    let c = parse("[limits]\nhttp_max_conns_per_client = 0\nrpc_max_conns_per_client = 7").unwrap();
    assert_eq!(
        c.limits.http_per_client, None,
        "0 is no limit, as in Consul"
    );
    assert_eq!(c.limits.rpc_per_client, Some(7));
    let e = parse("[limits]\nhttp_max_conns = 1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("http_max_conns"), "{e}");
}

#[test]
fn tls_stanzas_in_consuls_names() {
    use crate::tls::{MinVersion, PeerName};
    let c = parse(
        r#"
        datacenter = "east"
        [ports]
        http = -1
        https = 8501
        [addresses]
        https = "0.0.0.0"
        [tls.defaults]
        ca_file = "/pki/ca.pem"
        cert_file = "/pki/server.pem"
        key_file = "/pki/server-key.pem"
        tls_min_version = "TLSv1_3"
        [tls.internal_rpc]
        verify_server_hostname = true
        [tls.https]
        verify_incoming = true
        "#,
    )
    .unwrap();
    assert_eq!(c.http_bind, None);
    assert_eq!(c.https_bind, Some("0.0.0.0:8501".parse().unwrap()));
    let rpc = c.tls_rpc.expect("the server port has TLS");
    assert_eq!(rpc.peer_name, PeerName::Fixed("server.east.consul".into()));
    assert!(rpc.verify_incoming && rpc.verify_outgoing);
    assert_eq!(rpc.min_version, MinVersion::Tls13);
    assert_eq!(
        rpc.cert_file.as_deref(),
        Some(std::path::Path::new("/pki/server.pem"))
    );
    let https = c.tls_https.expect("the HTTPS port has TLS");
    assert!(https.verify_incoming);
    assert_eq!(https.peer_name, PeerName::Any);
    assert_eq!(c.limits.handshake, HandshakeTimeouts::default());
}

#[test]
fn tls_refusals_name_the_key() {
    let refused = |text: &str, key: &str| {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with(key), "{text}: {e}");
    };
    // The server port is mutual TLS or nothing.
    refused(
        "[tls.internal_rpc]\nverify_incoming = true",
        "tls.internal_rpc.cert_file:",
    );
    refused(
        "[tls.defaults]\ncert_file = \"c\"\nkey_file = \"k\"",
        "tls.internal_rpc.ca_file:",
    );
    refused(
        "[tls.defaults]\nca_file = \"a\"\ncert_file = \"c\"\nkey_file = \"k\"\n\
         [tls.internal_rpc]\nverify_incoming = false",
        "tls.internal_rpc.verify_incoming:",
    );
    refused(
        "[tls.defaults]\nverify_server_hostname = true",
        "tls.defaults.verify_server_hostname:",
    );
    refused(
        "[tls.https]\nverify_server_hostname = true",
        "tls.https.verify_server_hostname:",
    );
    refused("[ports]\nhttps = 8501", "tls.https.cert_file:");
    refused(
        "[ports]\nhttps = 8501\n[tls.https]\ncert_file = \"c\"\nkey_file = \"k\"\nverify_incoming = true",
        "tls.https.ca_file:",
    );
    refused(
        "[ports]\nhttps = 8501\n[tls.https]\ncert_file = \"c\"\nkey_file = \"k\"\ntls_min_version = \"TLSv1_0\"",
        "tls.https.tls_min_version:",
    );
    refused("[ports]\nhttp = -1", "ports.http:");
    refused("[ports]\nhttp = 70000", "ports.http:");
    refused(
        "[limits]\nrpc_handshake_timeout = \"soon\"",
        "limits.rpc_handshake_timeout:",
    );
    // Without a certificate anywhere, no TLS: plain ports, as before.
    let c = parse("[tls.https]\nverify_incoming = true").unwrap();
    assert_eq!((c.tls_rpc, c.tls_https), (None, None));
}

#[test]
fn acl_stanza_in_consuls_names() {
    let tls = "[tls.defaults]\nca_file = \"a\"\ncert_file = \"c\"\nkey_file = \"k\"\n";
    let c = parse(&format!(
        "{tls}[acl]\nenabled = true\ndefault_policy = \"deny\"\ndown_policy = \"extend-cache\"\n\
         enable_token_persistence = true\n[acl.tokens]\ninitial_management = \"root\"\nagent = \"a\"\n"
    ))
    .unwrap();
    assert!(c.acl.enabled && !c.acl.default_allow);
    assert_eq!(c.acl.initial_management.as_deref(), Some("root"));
    assert_eq!(
        parse("").unwrap().acl,
        AclConfig {
            down_policy: "extend-cache".into(),
            default_allow: true,
            ..AclConfig::default()
        }
    );
    let e = parse("[acl]\nenabled = true").unwrap_err().to_string();
    assert!(
        e.starts_with("acl.enabled:") && e.contains("tls.internal_rpc"),
        "{e}"
    );
    let e = parse(&format!("{tls}[acl]\ndefault_policy = \"maybe\""))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("acl.default_policy:"), "{e}");
}

#[test]
fn telemetry_prefix_and_tombstone_ttl() {
    let c = parse("").unwrap();
    assert_eq!(c.metrics_prefix, "consul");
    assert_eq!(c.tombstone_ttl, Duration::from_secs(15 * 60));
    let c = parse("tombstone_ttl = \"30s\"\n[telemetry]\nmetrics_prefix = \"fsm_host\"").unwrap();
    assert_eq!(c.metrics_prefix, "fsm_host");
    assert_eq!(c.tombstone_ttl, Duration::from_secs(30));
    for bad in ["", "a.b", "9lives", "x y"] {
        let e = parse(&format!("[telemetry]\nmetrics_prefix = {bad:?}"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("telemetry.metrics_prefix:"), "{bad}: {e}");
    }
    let e = parse("tombstone_ttl = \"soon\"").unwrap_err().to_string();
    assert!(e.starts_with("tombstone_ttl:"), "{e}");
}

#[test]
fn raft_timers_keep_the_lease_inside_the_vote_lease_inside_the_election_timeout() {
    for m in 1..=10 {
        let t = RaftTimers::for_multiplier(m);
        assert!(t.lease() < t.vote_lease(), "multiplier {m}");
        assert!(t.vote_lease() < t.election_min, "multiplier {m}");
        assert!(
            t.vote_lease() / 2 > t.heartbeat,
            "multiplier {m}: openraft's minimum"
        );
        assert!(t.election_min < t.election_max, "multiplier {m}");
        assert!(t.step_down_after() >= t.election_min, "multiplier {m}");
    }
    let one = RaftTimers::for_multiplier(1);
    assert_eq!(one.vote_lease(), Duration::from_millis(800));
    assert_eq!(one.lease(), Duration::from_millis(720));
}
