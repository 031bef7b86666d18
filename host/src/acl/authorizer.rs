//! What one token may do: the rules of all its policies merged, over a default.
//!
//! Merging (Consul's policy merger): for the same exact segment, the same prefix, or the
//! same bare resource, `deny` in any policy wins; otherwise the highest level. Deciding
//! (Consul's policy authorizer): the exact rule for a segment, else the longest prefix
//! rule it starts with, else the default (`write` for `default_policy = "allow"`, `deny`
//! for `"deny"`).

use std::collections::BTreeMap;

use super::rules::{NamespaceMatch, Rules, Scope};
use super::{Access, Bare, Resource};

/// The merged rules a token's requests are judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorizer {
    management: bool,
    scope: Scope,
    default: Access,
}

/// Two policies' levels for the same rule: deny wins, else the higher.
fn merged(a: Access, b: Access) -> Access {
    if a == Access::Deny || b == Access::Deny {
        Access::Deny
    } else {
        a.max(b)
    }
}

fn merge_into<K: Ord + Clone>(into: &mut BTreeMap<K, Access>, from: &BTreeMap<K, Access>) {
    for (k, v) in from {
        into.entry(k.clone())
            .and_modify(|have| *have = merged(*have, *v))
            .or_insert(*v);
    }
}

impl Authorizer {
    /// A management token's: everything allowed.
    pub fn management() -> Authorizer {
        Authorizer {
            management: true,
            scope: Scope::default(),
            default: Access::Write,
        }
    }

    /// The token holding `policies`, in the `default` partition and namespace (OSS);
    /// `default`: what no rule decides (`Write`: allow, `Deny`: deny).
    pub fn new(policies: &[Rules], default: Access) -> Authorizer {
        Authorizer::in_namespace(policies, default, "default", "default")
    }

    /// The token holding `policies`, for requests in `namespace` of `partition`
    /// (enterprise editions): the top-level rules apply to the default namespace of the
    /// default partition; a `namespace` block to its namespace (a `namespace_prefix`
    /// block when no exact one names it, the longest prefix winning).
    pub fn in_namespace(
        policies: &[Rules],
        default: Access,
        partition: &str,
        namespace: &str,
    ) -> Authorizer {
        let mut scope = Scope::default();
        for rules in policies {
            let mut scopes: Vec<&Scope> = Vec::new();
            if partition == "default" && namespace == "default" {
                scopes.push(&rules.scope);
            }
            let exact = rules.namespaces.get(&(
                partition.to_string(),
                NamespaceMatch::Exact(namespace.to_string()),
            ));
            match exact {
                Some(s) => scopes.push(s),
                None => {
                    let longest = rules
                        .namespaces
                        .iter()
                        .filter_map(|((p, m), s)| match m {
                            NamespaceMatch::Prefix(pre)
                                if p == partition && namespace.starts_with(pre.as_str()) =>
                            {
                                Some((pre.len(), s))
                            }
                            _ => None,
                        })
                        .max_by_key(|(len, _)| *len);
                    if let Some((_, s)) = longest {
                        scopes.push(s);
                    }
                }
            }
            for s in scopes {
                merge_into(&mut scope.exact, &s.exact);
                merge_into(&mut scope.prefix, &s.prefix);
                merge_into(&mut scope.bare, &s.bare);
            }
        }
        Authorizer {
            management: false,
            scope,
            default,
        }
    }

    /// Whether this is a management token's.
    pub fn is_management(&self) -> bool {
        self.management
    }

    /// The level the rules give `segment` of `resource`: the exact rule, else the longest
    /// prefix rule, else `None`.
    fn level(&self, resource: Resource, segment: &str) -> Option<Access> {
        if let Some(a) = self.scope.exact.get(&(resource, segment.to_string())) {
            return Some(*a);
        }
        self.longest_prefix(resource, segment)
    }

    fn longest_prefix(&self, resource: Resource, segment: &str) -> Option<Access> {
        self.scope
            .prefix
            .range((resource, String::new())..)
            .take_while(|((r, _), _)| *r == resource)
            .filter(|((_, p), _)| segment.starts_with(p.as_str()))
            .max_by_key(|((_, p), _)| p.len())
            .map(|(_, a)| *a)
    }

    /// Whether `access` on `segment` of `resource` is allowed (a `read` need is met by a
    /// read, list or write rule; `list` by list or write; `write` by write).
    pub fn allows(&self, resource: Resource, segment: &str, access: Access) -> bool {
        if self.management {
            return true;
        }
        self.level(resource, segment)
            .unwrap_or(self.default)
            .allows(access)
    }

    /// Whether `access` on a bare resource (`operator`, `acl`, ...) is allowed.
    pub fn allows_bare(&self, bare: Bare, access: Access) -> bool {
        if self.management {
            return true;
        }
        self.scope
            .bare
            .get(&bare)
            .copied()
            .unwrap_or(self.default)
            .allows(access)
    }

    /// Consul's `KeyWritePrefix` (a recursive delete): the longest prefix rule covering
    /// `prefix` must allow write (or, with none, the default), and no rule under `prefix`
    /// may deny write.
    pub fn allows_key_write_prefix(&self, prefix: &str) -> bool {
        if self.management {
            return true;
        }
        let under = |map: &BTreeMap<(Resource, String), Access>| {
            map.iter().any(|((r, s), a)| {
                *r == Resource::Key && s.starts_with(prefix) && !a.allows(Access::Write)
            })
        };
        if under(&self.scope.exact) || under(&self.scope.prefix) {
            return false;
        }
        self.longest_prefix(Resource::Key, prefix)
            .unwrap_or(self.default)
            .allows(Access::Write)
    }
}
