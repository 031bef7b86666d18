//! `fsmhost operator autopilot get-config|set-config|state`: Consul's commands, over the
//! HTTP API, printing what Consul prints.

use super::Api;
use serde_json::Value;

use super::operator::{http, http_maybe};

const CONFIG_PATH: &str = "/v1/operator/autopilot/configuration";

fn json(addr: &Api, body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("{addr} answered something that is not JSON: {e}"))
}

fn current(addr: &Api) -> Result<Value, String> {
    let body = http(hyper::Method::GET, addr, CONFIG_PATH)
        .map_err(|e| format!("Error querying Autopilot configuration: {e}"))?;
    json(addr, &body)
}

/// Prints the configuration, one `Name = value` line per field.
pub fn get_config(addr: &Api) -> Result<(), String> {
    let c = current(addr)?;
    let text = |k: &str| c[k].as_str().unwrap_or("?").to_string();
    println!("CleanupDeadServers = {}", c["CleanupDeadServers"]);
    println!("LastContactThreshold = {}", text("LastContactThreshold"));
    println!("MaxTrailingLogs = {}", c["MaxTrailingLogs"]);
    println!("MinQuorum = {}", c["MinQuorum"]);
    println!(
        "ServerStabilizationTime = {}",
        text("ServerStabilizationTime")
    );
    println!("RedundancyZoneTag = {:?}", text("RedundancyZoneTag"));
    println!("DisableUpgradeMigration = {}", c["DisableUpgradeMigration"]);
    println!("UpgradeVersionTag = {:?}", text("UpgradeVersionTag"));
    Ok(())
}

/// The settings `set-config` changes; the others keep their values.
#[derive(Debug, Default)]
pub struct Changes {
    /// `-cleanup-dead-servers`.
    pub cleanup_dead_servers: Option<bool>,
    /// `-max-trailing-logs`.
    pub max_trailing_logs: Option<u64>,
    /// `-min-quorum`.
    pub min_quorum: Option<u32>,
    /// `-last-contact-threshold`.
    pub last_contact_threshold: Option<String>,
    /// `-server-stabilization-time`.
    pub server_stabilization_time: Option<String>,
}

/// Reads the configuration, changes what was asked, and writes it back with
/// compare-and-set, so a concurrent change is not overwritten.
pub fn set_config(addr: &Api, changes: &Changes) -> Result<(), String> {
    let mut c = current(addr)?;
    if !c.is_object() {
        return Err(format!(
            "{addr} answered a configuration that is not a JSON object: {c}"
        ));
    }
    for (key, text) in [
        ("LastContactThreshold", &changes.last_contact_threshold),
        (
            "ServerStabilizationTime",
            &changes.server_stabilization_time,
        ),
    ] {
        if let Some(t) = text {
            let d = crate::duration::parse(t)
                .ok_or_else(|| format!("{key}: {t:?} is not a duration such as 200ms or 10s"))?;
            c[key] = Value::from(crate::duration::format(d));
        }
    }
    if let Some(b) = changes.cleanup_dead_servers {
        c["CleanupDeadServers"] = Value::from(b);
    }
    if let Some(n) = changes.max_trailing_logs {
        c["MaxTrailingLogs"] = Value::from(n);
    }
    if let Some(n) = changes.min_quorum {
        c["MinQuorum"] = Value::from(n);
    }
    let cas = c["ModifyIndex"].as_u64().unwrap_or(0);
    let answer = http_maybe(
        hyper::Method::PUT,
        addr,
        &format!("{CONFIG_PATH}?cas={cas}"),
        c.to_string().into_bytes(),
    )
    .map_err(|e| format!("Error setting Autopilot configuration: {e}"))?
    .unwrap_or_default();
    if String::from_utf8_lossy(&answer).trim() == "true" {
        println!("Configuration updated!");
        Ok(())
    } else {
        Err("Configuration could not be atomically updated, please try again".into())
    }
}

/// Prints autopilot's state as Consul's `operator autopilot state` does (or its JSON).
pub fn state(addr: &Api, as_json: bool) -> Result<(), String> {
    let body = http(hyper::Method::GET, addr, "/v1/operator/autopilot/state")
        .map_err(|e| format!("Error querying Autopilot state: {e}"))?;
    let s = json(addr, &body)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        return Ok(());
    }
    let plain = |v: &Value| match v {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    println!("{:<30}{}", "Healthy:", plain(&s["Healthy"]));
    println!(
        "{:<30}{}",
        "Failure Tolerance:",
        plain(&s["FailureTolerance"])
    );
    println!("{:<30}{}", "Leader:", plain(&s["Leader"]));
    println!("Voters:");
    for v in s["Voters"].as_array().into_iter().flatten() {
        println!("   {}", plain(v));
    }
    println!("Servers:");
    for (id, server) in s["Servers"].as_object().into_iter().flatten() {
        println!("   {id}");
        for (label, key) in [
            ("Name:", "Name"),
            ("Address:", "Address"),
            ("Version:", "Version"),
            ("Status:", "Status"),
            ("Node Type:", "NodeType"),
            ("Node Status:", "NodeStatus"),
            ("Healthy:", "Healthy"),
            ("Last Contact:", "LastContact"),
            ("Last Term:", "LastTerm"),
            ("Last Index:", "LastIndex"),
        ] {
            println!("      {label:<17}{}", plain(&server[key]));
        }
    }
    Ok(())
}
