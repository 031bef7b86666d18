//! `fsmhost kv get|put|delete` and `fsmhost members`: clients of Consul's KV API
//! (`/v1/kv/`, served by the kv plugin) and of `/v1/agent/members`, printing what Consul's
//! commands print.

use super::Api;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Method;
use std::io::Read;

use super::operator::{http, http_maybe};

/// Percent-encodes a key for the path (keeping `/`).
pub(super) fn key_path(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    format!(
        "/v1/kv/{}",
        percent_encoding::utf8_percent_encode(key.trim_start_matches('/'), SET)
    )
}

/// A `DirEntry` as the API returns it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DirEntry {
    key: String,
    flags: u64,
    value: Option<String>,
    #[serde(default)]
    session: Option<String>,
    create_index: u64,
    modify_index: u64,
    lock_index: u64,
}

impl DirEntry {
    fn value(&self) -> Result<Vec<u8>, String> {
        match &self.value {
            None => Ok(Vec::new()),
            Some(v) => B64
                .decode(v)
                .map_err(|e| format!("the server sent a value that is not base64: {e}")),
        }
    }
}

fn entries(body: &[u8]) -> Result<Vec<DirEntry>, String> {
    serde_json::from_slice(body).map_err(|e| format!("the server's answer is not KV JSON: {e}"))
}

fn print_detailed(e: &DirEntry) -> Result<(), String> {
    let value = String::from_utf8_lossy(&e.value()?).into_owned();
    let rows = [
        ("CreateIndex", e.create_index.to_string()),
        ("Flags", e.flags.to_string()),
        ("Key", e.key.clone()),
        ("LockIndex", e.lock_index.to_string()),
        ("ModifyIndex", e.modify_index.to_string()),
        ("Session", e.session.clone().unwrap_or_else(|| "-".into())),
        ("Value", value),
    ];
    for (name, v) in rows {
        println!("{name:<17}{v}");
    }
    Ok(())
}

/// What `kv get` shows.
pub struct GetArgs<'a> {
    /// The key or prefix.
    pub key: &'a str,
    /// Every key under the prefix, `key:value` per line.
    pub recurse: bool,
    /// Only the key names (up to `separator`).
    pub keys: bool,
    /// The separator for `keys`.
    pub separator: &'a str,
    /// Every field of each entry.
    pub detailed: bool,
    /// Values in base64.
    pub base64: bool,
}

/// `fsmhost kv get`.
pub fn get(addr: &Api, a: &GetArgs) -> Result<(), String> {
    let key = a.key.trim_start_matches('/');
    if key.is_empty() && !a.recurse && !a.keys {
        return Err("Missing KEY argument".into());
    }
    let show = |v: Vec<u8>| {
        if a.base64 {
            B64.encode(v)
        } else {
            String::from_utf8_lossy(&v).into_owned()
        }
    };
    if a.keys {
        let sep =
            percent_encoding::utf8_percent_encode(a.separator, percent_encoding::NON_ALPHANUMERIC);
        let path = format!("{}?keys&separator={sep}", key_path(key));
        let Some(body) = http_maybe(Method::GET, addr, &path, Vec::new())? else {
            return Ok(());
        };
        let keys: Vec<String> = serde_json::from_slice(&body)
            .map_err(|e| format!("the server's answer is not a list of keys: {e}"))?;
        for k in keys {
            println!("{k}");
        }
        return Ok(());
    }
    if a.recurse {
        let path = format!("{}?recurse", key_path(key));
        let Some(body) = http_maybe(Method::GET, addr, &path, Vec::new())? else {
            return Ok(());
        };
        for (i, e) in entries(&body)?.iter().enumerate() {
            if a.detailed {
                if i > 0 {
                    println!();
                }
                print_detailed(e)?;
            } else {
                println!("{}:{}", e.key, show(e.value()?));
            }
        }
        return Ok(());
    }
    let body = http_maybe(Method::GET, addr, &key_path(key), Vec::new())?
        .ok_or_else(|| format!("No key exists at: {key}"))?;
    let list = entries(&body)?;
    let e = list
        .first()
        .ok_or_else(|| format!("No key exists at: {key}"))?;
    if a.detailed {
        print_detailed(e)
    } else {
        println!("{}", show(e.value()?));
        Ok(())
    }
}

/// What `kv put` writes.
pub struct PutArgs<'a> {
    /// The key.
    pub key: &'a str,
    /// The value: literal, `@file`, or `-` for stdin; empty when absent.
    pub data: Option<&'a str>,
    /// Flags.
    pub flags: u64,
    /// Check-and-set at `modify_index`.
    pub cas: bool,
    /// The ModifyIndex for `cas` (0: only if the key does not exist).
    pub modify_index: Option<u64>,
    /// The data is base64.
    pub base64: bool,
}

fn read_data(data: Option<&str>, base64: bool) -> Result<Vec<u8>, String> {
    let raw = match data {
        None => Vec::new(),
        Some("-") => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|e| format!("Failed to read stdin: {e}"))?;
            v
        }
        Some(d) if d.starts_with('@') => {
            std::fs::read(&d[1..]).map_err(|e| format!("Failed to read file: {}: {e}", &d[1..]))?
        }
        Some(d) => d.as_bytes().to_vec(),
    };
    if base64 {
        return B64
            .decode(raw.trim_ascii())
            .map_err(|e| format!("Cannot base 64 decode data: {e}"));
    }
    Ok(raw)
}

/// `fsmhost kv put`.
pub fn put(addr: &Api, a: &PutArgs) -> Result<(), String> {
    let key = a.key.trim_start_matches('/');
    if key.is_empty() {
        return Err("Missing KEY argument".into());
    }
    let value = read_data(a.data, a.base64)?;
    let mut params = Vec::new();
    if a.flags != 0 {
        params.push(format!("flags={}", a.flags));
    }
    if a.cas {
        let index = a
            .modify_index
            .ok_or("Must specify -modify-index with -cas!")?;
        params.push(format!("cas={index}"));
    }
    let path = format!("{}?{}", key_path(key), params.join("&"));
    let body = http_body(Method::PUT, addr, &path, value)?;
    if body.trim_ascii() == b"false" {
        return Err(format!("Did not write to {key}: CAS failed"));
    }
    println!("Success! Data written to: {key}");
    Ok(())
}

fn http_body(method: Method, addr: &Api, path: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
    http_maybe(method, addr, path, body)?
        .map(|b| b.to_vec())
        .ok_or_else(|| format!("{addr} answered 404 for {path}"))
}

/// `fsmhost kv delete`.
pub fn delete(
    addr: &Api,
    key: &str,
    recurse: bool,
    cas: bool,
    modify_index: Option<u64>,
) -> Result<(), String> {
    let key = key.trim_start_matches('/');
    if key.is_empty() && !recurse {
        return Err("Missing KEY argument".into());
    }
    if cas && recurse {
        return Err("Cannot specify both -cas and -recurse!".into());
    }
    if modify_index.is_some() && !cas {
        return Err("Cannot specify -modify-index without -cas!".into());
    }
    let query = match (recurse, cas) {
        (true, _) => "?recurse".to_string(),
        (false, true) => match modify_index {
            None | Some(0) => {
                return Err(
                    "Cannot delete a key that does not exist. Provide a -modify-index \
                            greater than than 0."
                        .into(),
                );
            }
            Some(i) => format!("?cas={i}"),
        },
        (false, false) => String::new(),
    };
    let path = format!("{}{query}", key_path(key));
    let body = http_body(Method::DELETE, addr, &path, Vec::new())?;
    if body.trim_ascii() == b"false" {
        return Err(format!("Did not delete key {key}: CAS failed"));
    }
    if recurse {
        println!("Success! Deleted keys with prefix: {key}");
    } else {
        println!("Success! Deleted key: {key}");
    }
    Ok(())
}

/// `fsmhost members`: the servers, as Consul's `members` prints them.
pub fn members(addr: &Api) -> Result<(), String> {
    let body = http(Method::GET, addr, "/v1/agent/members")?;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| format!("{addr} answered something that is not JSON: {e}"))?;
    let mut rows = vec![
        [
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for m in &list {
        let tag = |t: &str| m["Tags"][t].as_str().unwrap_or("").to_string();
        let status = match m["Status"].as_u64() {
            Some(1) => "alive",
            Some(4) => "failed",
            _ => "unknown",
        };
        rows.push(vec![
            m["Name"].as_str().unwrap_or("?").to_string(),
            format!(
                "{}:{}",
                m["Addr"].as_str().unwrap_or("?"),
                m["Port"].as_u64().unwrap_or(0)
            ),
            status.to_string(),
            "server".to_string(),
            tag("build"),
            tag("vsn"),
            tag("dc"),
            "default".to_string(),
            "<all>".to_string(),
        ]);
    }
    super::print_table(&rows, "");
    Ok(())
}
