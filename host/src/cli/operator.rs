//! `fsmhost operator raft list-peers|remove-peer`, `fsmhost plugin list|install`, and the HTTP
//! client every command that talks to a running server uses.

use super::Api;
use std::time::Duration;

/// Sends one request to a server's HTTP API; the answer of a 2xx, or one line naming the
/// server's refusal.
pub(super) fn http(method: hyper::Method, addr: &Api, path: &str) -> Result<bytes::Bytes, String> {
    http_maybe(method, addr, path, Vec::new())?
        .ok_or_else(|| format!("{addr} answered 404 for {path}"))
}

/// The one line shown for a server's refusal: its status and message.
fn refusal(status: u16, message: &str) -> String {
    format!("Unexpected response code: {status} ({})", message.trim())
}

/// Sends one request with a body; the answer of a 2xx, `None` for a 404 without a message
/// (Consul's answer for a missing key), or one line naming the server's refusal.
pub(super) fn http_maybe(
    method: hyper::Method,
    addr: &Api,
    path: &str,
    body: Vec<u8>,
) -> Result<Option<bytes::Bytes>, String> {
    use crate::raft::network::CallFailure;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async {
        match addr
            .client()?
            .request(method, &addr.addr(), path, body, Duration::from_secs(30))
            .await
        {
            Ok(b) => Ok(Some(b)),
            Err(CallFailure::Status {
                status: 404,
                message,
                ..
            }) if message.trim().is_empty() => Ok(None),
            Err(CallFailure::Status {
                status, message, ..
            }) => Err(refusal(status, &message)),
            Err(e) => Err(e.to_string()),
        }
    })
}

/// Prints the raft configuration as a table.
pub fn list_peers(addr: &Api) -> Result<(), String> {
    let body = http(hyper::Method::GET, addr, "/v1/operator/raft/configuration")?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{addr} answered something that is not JSON: {e}"))?;
    let servers = v["Servers"].as_array().cloned().unwrap_or_default();
    let leader_index = servers
        .iter()
        .find(|s| s["Leader"].as_bool() == Some(true))
        .and_then(|s| s["LastIndex"].as_u64());
    let mut rows: Vec<Vec<String>> = vec![vec![
        "Node".to_string(),
        "ID".into(),
        "Address".into(),
        "State".into(),
        "Voter".into(),
        "Commit Index".into(),
        "Trails Leader By".into(),
    ]];
    for s in &servers {
        let last = s["LastIndex"].as_u64();
        let trails = match (leader_index, last) {
            (Some(l), Some(i)) => format!("{} commits", l.saturating_sub(i)),
            _ => "-".into(),
        };
        rows.push(vec![
            s["Node"].as_str().unwrap_or("?").to_string(),
            s["ID"].as_str().unwrap_or("?").to_string(),
            s["Address"].as_str().unwrap_or("?").to_string(),
            if s["Leader"].as_bool() == Some(true) {
                "leader"
            } else {
                "follower"
            }
            .to_string(),
            s["Voter"].as_bool().unwrap_or(false).to_string(),
            last.map_or("-".to_string(), |i| i.to_string()),
            trails,
        ]);
    }
    super::print_table(&rows, "");
    Ok(())
}

/// Removes a server from the raft configuration by id or address.
pub fn remove_peer(addr: &Api, id: Option<&str>, address: Option<&str>) -> Result<(), String> {
    let query = match (id, address) {
        (Some(id), None) => format!("id={id}"),
        (None, Some(a)) => format!("address={a}"),
        _ => return Err("give exactly one of -id or -address".into()),
    };
    http(
        hyper::Method::DELETE,
        addr,
        &format!("/v1/operator/raft/peer?{query}"),
    )?;
    println!("Removed peer with {query}");
    Ok(())
}

/// Prints the plugins a server has loaded.
pub fn plugin_list(addr: &Api) -> Result<(), String> {
    let body = http(hyper::Method::GET, addr, "/v1/plugins")?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{addr} answered something that is not JSON: {e}"))?;
    let names = |x: &serde_json::Value, key: &str| -> String {
        x[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t.as_str().or(t["Name"].as_str()).unwrap_or("?"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let mut rows = vec![
        [
            "Name", "Version", "Edition", "Hash", "Tables", "Commands", "Queries",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in v.as_array().cloned().unwrap_or_default() {
        let hash = p["Hash"].as_str().unwrap_or("?");
        rows.push(vec![
            p["Name"].as_str().unwrap_or("?").to_string(),
            p["Version"].as_str().unwrap_or("?").to_string(),
            p["Edition"].as_str().unwrap_or("?").to_string(),
            hash[..hash.len().min(12)].to_string(),
            names(&p, "Tables"),
            names(&p, "Commands"),
            names(&p, "Queries"),
        ]);
    }
    super::print_table(&rows, "");
    Ok(())
}

/// `fsmhost plugin install FILE [--dry-run]`: sends the component to `PUT /v1/plugins` and
/// prints the report, one line per table.
pub fn plugin_install(addr: &Api, file: &std::path::Path, dry_run: bool) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let path = if dry_run {
        "/v1/plugins?dry-run"
    } else {
        "/v1/plugins"
    };
    let body = http_maybe(hyper::Method::PUT, addr, path, bytes)?
        .ok_or_else(|| format!("{addr} answered 404 for {path}"))?;
    let r: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{addr} answered something that is not JSON: {e}"))?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("none").to_string();
    let sha = text(&r["SHA256"]);
    let what = format!(
        "plugin {} {} -> {} (sha256:{})",
        text(&r["Plugin"]),
        text(&r["FromVersion"]),
        text(&r["ToVersion"]),
        &sha[..sha.len().min(12)]
    );
    if dry_run {
        println!("Dry run: installing {what} would change:");
    } else {
        println!("Installed {what} at index {}", r["Index"]);
        println!(
            "  component copied to {} of {} other servers before the entry",
            r["CopiedTo"], r["OtherServers"]
        );
    }
    for t in r["Tables"].as_array().cloned().unwrap_or_default() {
        let list = |key: &str| {
            t[key]
                .as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default()
        };
        let mut detail = vec![match t["ObjectsAfter"].as_u64() {
            Some(after) => format!("{} objects -> {after}", t["Objects"]),
            None => format!("{} objects", t["Objects"]),
        }];
        if let (Some(from), Some(to)) = (t["FromLayout"].as_u64(), t["ToLayout"].as_u64())
            && from != to
        {
            detail.push(format!("layout {from} -> {to}"));
        }
        for (key, label) in [
            ("IndexesAdded", "indexes added"),
            ("IndexesRemoved", "indexes removed"),
            ("IndexesChanged", "indexes changed"),
        ] {
            let l = list(key);
            if !l.is_empty() {
                detail.push(format!("{label}: {l}"));
            }
        }
        println!(
            "  table {}: {} ({})",
            text(&t["Table"]),
            text(&t["Change"]),
            detail.join("; ")
        );
    }
    Ok(())
}
