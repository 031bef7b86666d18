//! `[acl]`, resolved.
//!
//! ACLs need mutual TLS on the server port (`tls.internal_rpc`): servers forward requests
//! to the leader there after checking the caller's token, and raft runs there, so a
//! process that could reach the port without a certificate could go around every ACL.

use super::raw::RawAcl;
use super::{ConfigError, invalid};

/// The ACL settings of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// Whether ACLs are enforced.
    pub enabled: bool,
    /// `default_policy = "allow"`: what no rule decides is allowed (Consul's default);
    /// `false`: denied.
    pub default_allow: bool,
    /// `down_policy`, as given (kept for Consul's configs).
    pub down_policy: String,
    /// `enable_token_persistence` (kept for Consul's configs).
    pub enable_token_persistence: bool,
    /// `tokens.initial_management`: a management token's secret a leader creates.
    pub initial_management: Option<String>,
    /// `tokens.agent` (kept for Consul's configs).
    pub agent_token: Option<String>,
    /// `tokens.default`: the token a request without one is served with.
    pub default_token: Option<String>,
}

/// The `[acl]` stanza; `rpc_tls`: whether `tls.internal_rpc` is configured.
pub(super) fn resolve(raw: Option<RawAcl>, rpc_tls: bool) -> Result<AclConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let enabled = raw.enabled.unwrap_or(false);
    let default_allow = match raw.default_policy.as_deref() {
        None | Some("allow") => true,
        Some("deny") => false,
        Some(other) => {
            return Err(invalid(
                "acl.default_policy",
                format!("{other:?} is not a policy: use \"allow\" or \"deny\""),
            ));
        }
    };
    let down_policy = raw
        .down_policy
        .unwrap_or_else(|| "extend-cache".to_string());
    if !["allow", "deny", "extend-cache", "async-cache"].contains(&down_policy.as_str()) {
        return Err(invalid(
            "acl.down_policy",
            format!("{down_policy:?}: use allow, deny, extend-cache or async-cache"),
        ));
    }
    if enabled && !rpc_tls {
        return Err(invalid(
            "acl.enabled",
            "ACLs need mutual TLS on the server port: servers forward requests there after \
             checking tokens, so without certificates any process reaching ports.server could \
             go around them; configure tls.internal_rpc (or tls.defaults) with ca_file, \
             cert_file and key_file",
        ));
    }
    let tokens = raw.tokens.unwrap_or_default();
    for (key, token) in [
        ("acl.tokens.initial_management", &tokens.initial_management),
        ("acl.tokens.default", &tokens.default),
    ] {
        if token.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid(key, "must not be empty"));
        }
    }
    Ok(AclConfig {
        enabled,
        default_allow,
        down_policy,
        enable_token_persistence: raw.enable_token_persistence.unwrap_or(false),
        initial_management: tokens.initial_management,
        agent_token: tokens.agent,
        default_token: tokens.default,
    })
}
