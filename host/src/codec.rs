//! CBOR, the encoding of everything the host stores or sends between servers: log entries,
//! snapshot headers, server-port bodies.
//!
//! Owns: the two helpers every module uses, so that no module reaches into another (the
//! raft module, say) for its encoder.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes a value as CBOR.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and every type encoded here is plain data.
    ciborium::into_writer(value, &mut out).expect("CBOR encoding of plain data into a Vec");
    out
}

/// Decodes a CBOR value, naming what was expected (`what`) on failure.
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| format!("malformed {what}: {e}"))
}
