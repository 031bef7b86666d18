//! Support for fsmhost's whole-system tests: the fixture plugins, built by `build.rs` with
//! the same pipeline as the bundled plugins, the cluster harness ([`cluster`]) and an HTTP
//! client for one server ([`client`]), a test PKI for TLS ([`pki`]), py-consul from
//! PyPI for scripts run against a server ([`py_consul`]), network namespaces for servers
//! whose network a test cuts ([`netns`]), and the Jepsen-style nemesis suite ([`nemesis`]).
//!
//! The tests are two binaries, so that the host and wasmtime are linked twice rather than
//! once per test file: `tests/inprocess/` runs the host in the test process (plugin
//! runtime, state machine, snapshot files) and `tests/cluster/` starts real `fsmhost`
//! processes and runs its CLI, with the helpers only those tests share in its `support.rs`.
//! Each area is a module of one of them (`cargo test -p fsmhost-tests --test cluster
//! kv_api::` runs one).
//!
//! Fixtures (each in `tests/fixtures/<name>`): `loop-forever`, `alloc-unbounded`,
//! `panicker` (each writes a row, then misbehaves), `bad-describe` (no `id` index) and
//! `wasi-import` (imports `wasi:cli/environment`). The example plugins under `examples/`
//! are built the same way, under their directory names (e.g. `users-plugin`), and so are
//! other builds of the bundled plugins: `kv-enterprise` and `catalog-enterprise` (the
//! enterprise edition) and `kv-v2` (the next kv release, which adds the `kvs.flags`
//! index); `notes` (a fixture in two releases) also as `notes-v2`, `notes-unmigrated` and
//! `notes-hostile`.
//! The `components` binary writes any of them to a directory, for operators.

pub mod client;
pub mod cluster;
pub mod nemesis;
pub mod netns;
pub mod pki;
pub mod py_consul;

include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));

/// Encodes a value as CBOR, the wire format of payloads and results.
pub fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("a test value encodes");
    out
}

/// A log entry for `plugin`'s `command` with `payload` (CBOR), at a fixed timestamp.
pub fn entry<T: serde::Serialize>(plugin: &str, command: &str, payload: &T) -> fsmhost::fsm::Entry {
    fsmhost::fsm::Entry {
        version: None,
        plugin: plugin.into(),
        command: command.into(),
        payload: cbor(payload),
        timestamp_ms: 1_700_000_000_000,
    }
}

/// Decodes CBOR; panics (a test failure) on bytes that do not decode.
pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
    ciborium::from_reader(b).expect("the result decodes")
}

/// The component bytes of fixture `name`. Panics on an unknown name (a test bug).
pub fn fixture(name: &str) -> &'static [u8] {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no fixture named {name}; see tests/fixtures/"))
}

/// The bundled component bytes of plugin `name`.
pub fn bundled(name: &str) -> &'static [u8] {
    fsmhost::plugin::bundled()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no bundled plugin named {name}"))
}
