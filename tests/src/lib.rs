//! Support for fsmhost's whole-system tests: the fixture plugins, built by `build.rs` with
//! the same pipeline as the bundled plugins.
//!
//! Fixtures (each in `tests/fixtures/<name>`): `loop-forever`, `alloc-unbounded`,
//! `panicker` (each writes a row, then misbehaves), `bad-describe` (no `id` index) and
//! `wasi-import` (imports `wasi:cli/environment`). The example plugins under `examples/`
//! are built the same way, under their directory names (e.g. `users-plugin`).

pub mod cluster;

include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));

/// Encodes a value as CBOR, the wire format of payloads and results.
pub fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("a test value encodes");
    out
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
