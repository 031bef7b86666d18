//! CBOR, the wire format of payloads, arguments, results and objects: encoding with
//! `ciborium`; decoding with `cbor4ii` first, `ciborium` when that fails.
//!
//! Decoding is most of what a small command costs inside the guest, and `cbor4ii` reads
//! straight from the slice, without ciborium's scratch buffer (zeroed on every call) and
//! header conversions. It is stricter in one way: a float field takes only a CBOR float of
//! its own width, while ciborium writes floats in the shortest lossless width. So a value
//! `cbor4ii` refuses is decoded again by `ciborium`, whose answer (the value, or the error
//! with the byte where it stopped) is final: the SDK accepts exactly what it accepted
//! before, and the retry costs only refusals and short floats. Both decoders are pure
//! functions of the bytes, so every server decodes the same way.
//!
//! Encoding stays with ciborium, so stored objects keep their exact bytes (the state hash
//! covers them). Hostile input gets an error, never a trap: both decoders cap nesting at
//! 256 and check a length against the bytes present before allocating it.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;

/// Bytes [`to_cbor`] reserves before encoding: a typical object at once (growing from
/// empty reallocated one five times).
const ENCODE_CAPACITY: usize = 256;

/// Encodes a value as CBOR, the wire format of payloads, results and objects.
pub fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(ENCODE_CAPACITY);
    ciborium::into_writer(value, &mut out)
        .map_err(|e| Error::internal(format!("encoding CBOR: {e}")))?;
    Ok(out)
}

/// Decodes CBOR; `what` names the value in the error (e.g. "payload of command set").
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    decode_cbor(bytes, || what.to_string())
}

/// [`from_cbor`] that names the value only when decoding fails: the SDK decodes every
/// payload and object through it, and formatting a name for each was a measurable share
/// of a small command.
pub(crate) fn decode_cbor<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, Error> {
    if let Ok(value) = cbor4ii::serde::from_slice(bytes) {
        return Ok(value);
    }
    use ciborium::de::Error as E;
    ciborium::from_reader(bytes).map_err(|e| {
        let why = match e {
            E::Semantic(Some(at), msg) => format!("{msg} (at byte {at})"),
            E::Semantic(None, msg) => msg,
            E::Syntax(at) => format!("malformed CBOR at byte {at}"),
            E::Io(e) => format!("truncated CBOR: {e:?}"),
            E::RecursionLimitExceeded => "CBOR nested too deeply".into(),
        };
        Error::bad_request(format!("decoding {}: {why}", what()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Request {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        session: Option<String>,
        ratio: f64,
        tags: Vec<String>,
    }

    fn request() -> Request {
        Request {
            key: "web/a".into(),
            value: vec![0, 1, 255],
            flags: u64::MAX,
            session: None,
            ratio: 1.5, // ciborium writes this as a half-precision float
            tags: vec!["x".into(), String::new()],
        }
    }

    #[test]
    fn what_ciborium_writes_decodes_to_the_same_value_short_floats_included() {
        let bytes = to_cbor(&request()).unwrap();
        let back: Request = from_cbor(&bytes, "request").unwrap();
        assert_eq!(back, request());
    }

    #[test]
    fn errors_name_the_value_the_problem_and_the_byte() {
        let bytes = to_cbor(&request()).unwrap();
        let err =
            from_cbor::<Request>(&bytes[..bytes.len() - 3], "payload of command set").unwrap_err();
        assert!(
            err.message.starts_with("decoding payload of command set: "),
            "{}",
            err.message
        );
        assert!(err.message.contains("truncated CBOR"), "{}", err.message);

        let err = from_cbor::<Request>(&to_cbor(&7u8).unwrap(), "request").unwrap_err();
        assert!(
            err.message.contains("invalid type: integer `7`"),
            "{}",
            err.message
        );

        #[derive(Serialize)]
        struct Partial {
            key: String,
        }
        let partial = to_cbor(&Partial { key: "k".into() }).unwrap();
        let err = from_cbor::<Request>(&partial, "request").unwrap_err();
        assert!(
            err.message.contains("missing field `value`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // 100,000 nested one-element arrays around a zero.
        let mut bytes = vec![0x81; 100_000];
        bytes.push(0);
        let err = from_cbor::<serde_json::Value>(&bytes, "payload").unwrap_err();
        assert!(
            err.message.contains("CBOR nested too deeply"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_length_past_the_end_is_refused_without_allocating_it() {
        // A byte string claiming 2^60 bytes.
        let bytes = [0x5b, 0x10, 0, 0, 0, 0, 0, 0, 0];
        let err = from_cbor::<serde_bytes::ByteBuf>(&bytes, "object").unwrap_err();
        assert!(
            err.message.starts_with("decoding object: "),
            "{}",
            err.message
        );
    }
}
