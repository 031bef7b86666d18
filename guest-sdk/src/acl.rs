//! ACLs from a plugin's side: what an HTTP route needs the caller's token to allow
//! ([`Need`], declared in the route's [`Plan`](crate::http::Plan)), and whether the caller
//! may see one item of a list ([`allowed`], asked in a renderer).
//!
//! The host decides; a plugin only asks. A plan's needs are checked before the host runs
//! its command or query (Consul's 403 otherwise); a plan that declares none gets the
//! host's default (`operator` write for a command, read for a query); a plan that declares
//! an empty list ([`Plan::filtered`](crate::http::Plan::filtered)) runs for anyone, and
//! its renderer keeps what [`allowed`] lets the caller read.
//!
//! ```
//! use fsmhost_guest::acl::{self, Access, Need, Resource};
//!
//! // A route that writes key "a/b" needs `key:write` on it.
//! let need = Need::write(Resource::Key, "a/b");
//! assert_eq!((need.access, need.prefix), (Access::Write, false));
//! // In a renderer: keep the keys the caller may read (natively, the Harness's rule).
//! let keys = vec!["a/b".to_string(), "secret/x".to_string()];
//! let visible: Vec<_> = keys.into_iter().filter(|k| acl::allowed(Resource::Key, k, Access::Read)).collect();
//! assert_eq!(visible.len(), 2, "outside a Harness with permissions, everything is allowed");
//! ```

use crate::Tenancy;
use std::cell::RefCell;
use std::rc::Rc;

/// What an ACL rule grants access to: Consul's resources. `Acl`, `Keyring`, `Mesh`,
/// `Operator` and `Peering` have no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `acl`.
    Acl,
    /// `agent` / `agent_prefix`.
    Agent,
    /// `event` / `event_prefix`.
    Event,
    /// `key` / `key_prefix`.
    Key,
    /// `keyring`.
    Keyring,
    /// `mesh`.
    Mesh,
    /// `node` / `node_prefix`.
    Node,
    /// `operator`.
    Operator,
    /// `peering`.
    Peering,
    /// `query` / `query_prefix`.
    Query,
    /// `service` / `service_prefix`.
    Service,
    /// `session` / `session_prefix`.
    Session,
}

/// A level of access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// Read.
    Read,
    /// List (keys under a prefix).
    List,
    /// Write.
    Write,
}

/// One permission a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// What it is on.
    pub resource: Resource,
    /// The name it is on (empty for a resource without segments).
    pub segment: String,
    /// The level needed.
    pub access: Access,
    /// On every name under `segment` (a recursive delete: Consul's key write prefix).
    pub prefix: bool,
    /// The partition and namespace it is needed in (empty: `default`; enterprise
    /// editions).
    pub tenancy: Tenancy,
}

impl Need {
    /// `access` on `segment` of `resource`.
    pub fn new(resource: Resource, segment: &str, access: Access) -> Need {
        Need {
            resource,
            segment: segment.to_string(),
            access,
            prefix: false,
            tenancy: Tenancy::default(),
        }
    }
    /// The same need, in `tenancy`'s partition and namespace (an enterprise request's).
    pub fn in_tenancy(mut self, tenancy: &Tenancy) -> Need {
        self.tenancy = tenancy.clone();
        self
    }
    /// Read on `segment`.
    pub fn read(resource: Resource, segment: &str) -> Need {
        Need::new(resource, segment, Access::Read)
    }
    /// Write on `segment`.
    pub fn write(resource: Resource, segment: &str) -> Need {
        Need::new(resource, segment, Access::Write)
    }
    /// Write on every key under `prefix`, with no rule under it denying (recursive delete).
    pub fn write_prefix(resource: Resource, prefix: &str) -> Need {
        Need {
            prefix: true,
            ..Need::new(resource, prefix, Access::Write)
        }
    }
}

/// A rule deciding [`allowed`] in native tests.
pub type Rule = Rc<dyn Fn(Resource, &str, Access) -> bool>;

thread_local! {
    static NATIVE_RULE: RefCell<Option<Rule>> = const { RefCell::new(None) };
}

/// Natively, makes [`allowed`] answer with `rule` on this thread until the returned guard
/// drops ([`Harness::with_permissions`](crate::Harness::with_permissions) uses it).
pub fn set_native_rule(rule: Rule) -> RuleGuard {
    let old = NATIVE_RULE.with(|r| r.borrow_mut().replace(rule));
    RuleGuard(old)
}

/// Restores the previous native rule when dropped.
pub struct RuleGuard(Option<Rule>);

impl Drop for RuleGuard {
    fn drop(&mut self) {
        let old = self.0.take();
        NATIVE_RULE.with(|r| *r.borrow_mut() = old);
    }
}

/// Whether the caller of the request being routed or rendered may have `access` on
/// `segment` of `resource` (always true when the host runs without ACLs). Outside a route
/// or a renderer it is false. Natively it follows [`set_native_rule`], else allows all.
pub fn allowed(resource: Resource, segment: &str, access: Access) -> bool {
    allowed_in(&Tenancy::default(), resource, segment, access)
}

/// [`allowed`], in `tenancy`'s partition and namespace (an enterprise record's).
pub fn allowed_in(tenancy: &Tenancy, resource: Resource, segment: &str, access: Access) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        crate::wasm::allowed(tenancy, resource, segment, access)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = tenancy;
        NATIVE_RULE.with(|r| {
            r.borrow()
                .as_ref()
                .is_none_or(|rule| rule(resource, segment, access))
        })
    }
}
