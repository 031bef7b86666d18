//! `fsmhost demo`: the bundled plugins, an in-memory store and a few kv commands, applied in
//! log order exactly as the FSM will apply them, printing each step.

use serde::Serialize;

use crate::plugin::{PluginSet, Runtime, RuntimeConfig};
use crate::state::Store;

fn cbor<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).map_err(|e| format!("encoding: {e}"))?;
    Ok(out)
}

/// Renders CBOR as JSON for the terminal; byte strings show as text when they are UTF-8.
fn show(bytes: &[u8]) -> String {
    fn json(v: ciborium::Value) -> serde_json::Value {
        use ciborium::Value as C;
        use serde_json::Value as J;
        match v {
            C::Integer(i) => i64::try_from(i).map_or(J::Null, J::from),
            C::Bytes(b) => match String::from_utf8(b) {
                Ok(s) => J::String(s),
                Err(e) => J::String(format!("0x{}", hex::encode(e.as_bytes()))),
            },
            C::Float(f) => J::from(f),
            C::Text(s) => J::String(s),
            C::Bool(b) => J::Bool(b),
            C::Null => J::Null,
            C::Tag(_, v) => json(*v),
            C::Array(a) => J::Array(a.into_iter().map(json).collect()),
            C::Map(m) => J::Object(
                m.into_iter()
                    .map(|(k, v)| match json(k) {
                        J::String(k) => (k, json(v)),
                        other => (other.to_string(), json(v)),
                    })
                    .collect(),
            ),
            _ => J::Null,
        }
    }
    match ciborium::from_reader::<ciborium::Value, _>(bytes) {
        Ok(v) => json(v).to_string(),
        Err(_) => format!("0x{}", hex::encode(bytes)),
    }
}

#[derive(Serialize)]
struct Set<'a> {
    key: &'a str,
    #[serde(with = "serde_bytes")]
    value: &'a [u8],
    flags: u64,
}

#[derive(Serialize)]
struct Cas<'a> {
    key: &'a str,
    #[serde(with = "serde_bytes")]
    value: &'a [u8],
    flags: u64,
    index: u64,
}

#[derive(Serialize)]
struct Key<'a> {
    key: &'a str,
}

#[derive(Serialize)]
struct Prefix<'a> {
    prefix: &'a str,
}

pub(super) fn run() -> Result<(), String> {
    let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| e.to_string())?;
    let set: PluginSet = runtime.load_bundled().map_err(|e| e.to_string())?;
    for p in set.plugins() {
        let d = p.description();
        println!(
            "loaded plugin {} {} ({}), tables: {}",
            d.name,
            d.version,
            d.edition,
            d.tables
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let kv = set.get("kv").ok_or("the bundled set has no kv plugin")?;
    let store = Store::new(set.schema().clone());

    let log: Vec<(&str, Vec<u8>)> = vec![
        (
            "set",
            cbor(&Set {
                key: "app/config",
                value: b"v1",
                flags: 0,
            })?,
        ),
        (
            "set",
            cbor(&Set {
                key: "app/feature",
                value: b"on",
                flags: 42,
            })?,
        ),
        (
            "cas",
            cbor(&Cas {
                key: "app/config",
                value: b"v2",
                flags: 0,
                index: 1,
            })?,
        ),
        (
            "cas",
            cbor(&Cas {
                key: "app/config",
                value: b"v3",
                flags: 0,
                index: 1,
            })?,
        ),
        ("delete", cbor(&Key { key: "app/feature" })?),
        ("set", cbor(&"not a request")?),
    ];
    for (i, (command, payload)) in log.iter().enumerate() {
        let index = i as u64 + 1;
        let mut txn = store.write(index);
        match kv.apply(&mut txn, command, payload, index * 1000) {
            Ok(out) => {
                txn.commit();
                println!("index {index}: kv {command} -> {}", show(&out));
            }
            Err(e) => println!("index {index}: kv {command} failed, nothing written: {e}"),
        }
    }
    let read = store.read();
    let out = kv
        .query(&read, "list", &cbor(&Prefix { prefix: "app/" })?)
        .map_err(|e| e.to_string())?;
    println!("query kv list app/ -> {}", show(&out));
    for table in ["kvs", "tombstones"] {
        println!(
            "table {table}: {} objects, {} bytes, last changed at index {}",
            read.len(table).map_err(|e| e.to_string())?,
            read.bytes(table).map_err(|e| e.to_string())?,
            read.table_stamp(table).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}
