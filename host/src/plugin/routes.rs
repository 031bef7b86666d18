//! HTTP routes plugins serve: the host's side of the `route` and `render` exports.
//!
//! Owns: the names of the plain types of a routed request (the SDK's, re-exported; no
//! wasmtime type leaves this module's parent), the load-time checks of a plugin's routes,
//! and finding the plugin that serves a request.
//! Invariants (checked at load, in [`check`] and [`check_set`]): a route's path starts with
//! `/v1/`, is not under one of the host's own paths, and no two plugins of a set serve an
//! overlapping route, so a request has at most one plugin.

use super::LoadError;

/// Paths the host serves itself; a plugin route under one of them is refused. (Of
/// `/v1/operator`, only the host's own families: `/v1/operator/usage` is the catalog
/// plugin's. Of `/v1/agent`, the agent's own: its services and checks,
/// `/v1/agent/service/...` and `/v1/agent/check/...`, are the catalog plugin's, on the
/// serving server's node.)
pub const RESERVED: &[&str] = &[
    "/v1/apply",
    "/v1/query",
    "/v1/plugins",
    "/v1/snapshot",
    "/v1/status",
    "/v1/agent/self",
    "/v1/agent/members",
    "/v1/agent/metrics",
    "/v1/agent/leave",
    "/v1/agent/join",
    "/v1/agent/force-leave",
    "/v1/agent/reload",
    "/v1/agent/monitor",
    "/v1/agent/host",
    "/v1/agent/version",
    "/v1/agent/token",
    "/v1/agent/connect",
    "/v1/operator/raft",
    "/v1/operator/autopilot",
    "/v1/operator/keyring",
    "/v1/internal",
];

/// Methods a route may use.
const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE"];

/// The plain types of a routed request are the SDK's (one definition for both sides of
/// the contract), under the host's names.
pub use fsmhost_guest::http::{
    Action as HttpAction, Plan as HttpPlan, Request as HttpRequest, Response as HttpResponse,
    Route as HttpRoute,
};

/// The ACL types of the contract are the SDK's too.
pub use fsmhost_guest::acl::{Access as AclAccess, Need as AclNeed, Resource as AclResource};

/// The caller's permissions for one routed request: what the `acl.allowed` import answers
/// during its `route` and `render` calls (resource, segment, access, partition,
/// namespace).
pub type Permits =
    std::sync::Arc<dyn Fn(AclResource, &str, AclAccess, &str, &str) -> bool + Send + Sync>;

/// Whether some request would match both routes.
fn overlaps(a: &HttpRoute, b: &HttpRoute) -> bool {
    a.method == b.method
        && match (a.prefix, b.prefix) {
            (false, false) => a.path == b.path,
            (true, false) => b.path.starts_with(&*a.path),
            (false, true) => a.path.starts_with(&*b.path),
            (true, true) => a.path.starts_with(&*b.path) || b.path.starts_with(&*a.path),
        }
}

/// Checks one plugin's routes on their own.
pub(crate) fn check(plugin: &str, routes: &[HttpRoute]) -> Result<(), LoadError> {
    let invalid = |problem: String| LoadError::InvalidDescription {
        plugin: plugin.to_string(),
        problem,
    };
    for (i, r) in routes.iter().enumerate() {
        if !METHODS.contains(&&*r.method) {
            return Err(invalid(format!(
                "route {r}: method {:?} is not one of {}",
                r.method,
                METHODS.join(", ")
            )));
        }
        if !r.path.starts_with("/v1/") || r.path.contains(['?', '#', ' ']) {
            return Err(invalid(format!(
                "route {r}: the path must start with /v1/ and hold no ?, # or space"
            )));
        }
        if r.prefix && !r.path.ends_with('/') {
            return Err(invalid(format!(
                "route {r}: a prefix route's path must end with /"
            )));
        }
        if let Some(host) = RESERVED.iter().find(|h| {
            r.path == **h
                || r.path.starts_with(&format!("{h}/"))
                || (r.prefix && h.starts_with(&*r.path))
        }) {
            return Err(invalid(format!(
                "route {r} would take requests for the host's own {host}"
            )));
        }
        if let Some(twice) = routes[..i].iter().find(|o| *o == r) {
            return Err(invalid(format!("route {twice} is declared twice")));
        }
    }
    Ok(())
}

/// Checks that no two plugins serve overlapping routes; `routes` is `(plugin, its routes)`.
pub(crate) fn check_set(routes: &[(String, &[HttpRoute])]) -> Result<(), LoadError> {
    for (i, (plugin, mine)) in routes.iter().enumerate() {
        for (other, theirs) in &routes[..i] {
            for r in mine.iter() {
                if let Some(clash) = theirs.iter().find(|t| overlaps(t, r)) {
                    return Err(LoadError::Conflict {
                        first: other.clone(),
                        second: plugin.clone(),
                        what: format!("overlapping HTTP routes ({clash} and {r})"),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, path: &str, prefix: bool) -> HttpRoute {
        HttpRoute {
            method: method.to_string().into(),
            path: path.to_string().into(),
            prefix,
        }
    }

    #[test]
    fn routes_are_checked() {
        assert!(
            check(
                "kv",
                &[r("GET", "/v1/kv/", true), r("PUT", "/v1/txn", false)]
            )
            .is_ok()
        );
        let e = |routes: &[HttpRoute]| check("kv", routes).unwrap_err().to_string();
        assert!(e(&[r("PATCH", "/v1/kv/", true)]).contains("method \"PATCH\""));
        assert!(e(&[r("GET", "/kv/", true)]).contains("must start with /v1/"));
        assert!(e(&[r("GET", "/v1/kv", true)]).contains("must end with /"));
        assert!(e(&[r("GET", "/v1/status/x", false)]).contains("host's own /v1/status"));
        assert!(e(&[r("GET", "/v1/", true)]).contains("host's own"));
        assert!(e(&[r("GET", "/v1/kv/", true), r("GET", "/v1/kv/", true)]).contains("twice"));
        // The agent's services and checks may be a plugin's; the agent itself may not.
        assert!(check("catalog", &[r("PUT", "/v1/agent/service/register", false)]).is_ok());
        assert!(check("catalog", &[r("GET", "/v1/agent/checks", false)]).is_ok());
        assert!(e(&[r("GET", "/v1/agent/self", false)]).contains("host's own /v1/agent/self"));
        assert!(e(&[r("GET", "/v1/agent/", true)]).contains("host's own"));
    }

    #[test]
    fn overlapping_routes_of_two_plugins_conflict() {
        let a = [r("GET", "/v1/kv/", true)];
        let b = [r("GET", "/v1/kv/special", false)];
        let c = [
            r("PUT", "/v1/kv/special", false),
            r("GET", "/v1/catalog/", true),
        ];
        let set = |x: &[HttpRoute], y: &[HttpRoute]| {
            check_set(&[("a".to_string(), x), ("b".to_string(), y)])
        };
        let err = set(&a, &b).unwrap_err().to_string();
        assert!(
            err.contains("plugins a and b both declare overlapping HTTP routes"),
            "{err}"
        );
        assert!(set(&a, &c).is_ok(), "another method, another path");
        assert!(r("GET", "/v1/kv/", true).matches("GET", "/v1/kv/a/b"));
        assert!(!r("GET", "/v1/txn", false).matches("GET", "/v1/txn/x"));
    }
}
