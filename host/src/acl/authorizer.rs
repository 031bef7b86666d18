//! What one token may do: the merged rules of all its policies (and its roles' policies)
//! over a default, answered as Consul's chained authorizer answers: the policy authorizer
//! first, and where it has no rule, the static one (`AllowAll` or `DenyAll`).
//!
//! Consul's decisions per rule (`policy_authorizer.go`): a matching rule decides (`enforce`:
//! write grants everything, list grants list and read, read grants read, deny nothing) and
//! a refusal does not fall through to the default; only "no rule" does. `mesh` and
//! `peering` fall back to the `operator` rule. A default of allow grants everything except
//! `acl` (ACL management and snapshots: `AllowAll` has no management).
//!
//! Tenancy (Consul Enterprise, whose source is not public, so this is this module's model
//! of it): in partition `p`, namespace `n`, the scopes asked in order are the namespace
//! block for `n` inside the partition block for `p`, that partition block itself, then, in
//! partition `default` only, the top-level namespace block for `n`, and, in namespace
//! `default` of partition `default` only, the top-level rules. A block is the exact one for
//! the name, else the longest matching prefix one. The first scope with a rule decides.
//! Partition-wide resources (nodes, agents, operator, mesh, peering, keyring) are asked in
//! namespace `default`. In Consul CE everything is partition `default`, namespace `default`.

use super::rules::{RuleSet, Rules, select};
use super::{Access, Bare, Resource};

/// The partition and namespace every name belongs to in Consul CE.
const DEFAULT: &str = "default";

/// What one token may do: the merged rules of all its policies (and its roles' policies),
/// over a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorizer {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Management,
    Policies { rules: Rules, default: Access },
}

impl Authorizer {
    /// Everything allowed, ACL management included (a management token).
    pub fn management() -> Authorizer {
        Authorizer {
            kind: Kind::Management,
        }
    }

    /// The merged `policies` over `default`: [`Access::Write`] for `default_policy =
    /// "allow"` (everything not denied, except `acl`), [`Access::Deny`] for `"deny"`
    /// (nothing not granted). A level in between grants what that level grants.
    pub fn new(policies: &[Rules], default: Access) -> Authorizer {
        Authorizer {
            kind: Kind::Policies {
                rules: Rules::merged(policies),
                default,
            },
        }
    }

    /// Whether this is a management token's authorizer.
    pub fn is_management(&self) -> bool {
        matches!(self.kind, Kind::Management)
    }

    /// The merged rules and the default, unless this is management.
    pub fn rules(&self) -> Option<(&Rules, Access)> {
        match &self.kind {
            Kind::Management => None,
            Kind::Policies { rules, default } => Some((rules, *default)),
        }
    }

    /// Whether `access` on `segment` of `resource` is allowed (read: a read, list or write
    /// rule; list: list or write; write: write), in partition and namespace `default`.
    pub fn allows(&self, resource: Resource, segment: &str, access: Access) -> bool {
        self.allows_in(DEFAULT, DEFAULT, resource, segment, access)
    }

    /// Whether `access` on a bare resource is allowed, in partition and namespace `default`.
    pub fn allows_bare(&self, bare: Bare, access: Access) -> bool {
        self.allows_bare_in(DEFAULT, DEFAULT, bare, access)
    }

    /// Consul's `KeyWritePrefix` (for a recursive delete): the longest prefix rule at or
    /// above `prefix` grants write (or there is none and the default does), and no rule,
    /// exact or prefix, under `prefix` grants less than write.
    pub fn allows_key_write_prefix(&self, prefix: &str) -> bool {
        self.allows_key_write_prefix_in(DEFAULT, DEFAULT, prefix)
    }

    /// Whether `access` on the intentions of `service` (as destination) is allowed: a
    /// service rule's `intentions`, or when unset, `read` from a read or write rule and
    /// nothing from a deny rule.
    pub fn allows_intention(&self, service: &str, access: Access) -> bool {
        self.allows_intention_in(DEFAULT, DEFAULT, service, access)
    }

    /// [`Authorizer::allows`] in a partition and namespace (an empty name is `default`).
    pub fn allows_in(
        &self,
        partition: &str,
        namespace: &str,
        resource: Resource,
        segment: &str,
        access: Access,
    ) -> bool {
        self.decide(partition, namespace, access, |scope| {
            scope
                .lookup(resource, segment)
                .map(|rule| rule.access.grants(access))
        })
    }

    /// [`Authorizer::allows_bare`] in a partition and namespace.
    pub fn allows_bare_in(
        &self,
        partition: &str,
        namespace: &str,
        bare: Bare,
        access: Access,
    ) -> bool {
        let Kind::Policies { default, .. } = &self.kind else {
            return true;
        };
        let found = self.first(partition, namespace, |scope| {
            let rule = match bare {
                Bare::Mesh | Bare::Peering => {
                    scope.bare(bare).or_else(|| scope.bare(Bare::Operator))
                }
                _ => scope.bare(bare),
            };
            rule.map(|level| level.grants(access))
        });
        match found {
            Some(decision) => decision,
            // AllowAll does not manage ACLs: only a rule (or management) grants `acl`.
            None if bare == Bare::Acl => access == Access::Deny,
            None => default.grants(access),
        }
    }

    /// [`Authorizer::allows_key_write_prefix`] in a partition and namespace.
    pub fn allows_key_write_prefix_in(
        &self,
        partition: &str,
        namespace: &str,
        prefix: &str,
    ) -> bool {
        self.decide(partition, namespace, Access::Write, |scope| {
            let tree = scope.trees.get(&Resource::Key)?;
            // The longest prefix rule at or above `prefix`, ignoring exact rules.
            let base = (0..=prefix.len())
                .rev()
                .filter(|&end| prefix.is_char_boundary(end))
                .find_map(|end| tree.prefix.get(&prefix[..end]));
            if let Some(rule) = base
                && rule.access != Access::Write
            {
                return Some(false);
            }
            if tree.under(prefix).any(|rule| rule.access != Access::Write) {
                return Some(false);
            }
            base.map(|_| true)
        })
    }

    /// [`Authorizer::allows_intention`] in a partition and namespace.
    pub fn allows_intention_in(
        &self,
        partition: &str,
        namespace: &str,
        service: &str,
        access: Access,
    ) -> bool {
        self.decide(partition, namespace, access, |scope| {
            scope.lookup(Resource::Service, service).map(|rule| {
                let level = rule.intentions.unwrap_or(match rule.access {
                    Access::Deny => Access::Deny,
                    _ => Access::Read,
                });
                level.grants(access)
            })
        })
    }

    /// The first scope's decision, else the default's for `access`.
    fn decide(
        &self,
        partition: &str,
        namespace: &str,
        access: Access,
        ask: impl Fn(&RuleSet) -> Option<bool>,
    ) -> bool {
        match &self.kind {
            Kind::Management => true,
            Kind::Policies { default, .. } => self
                .first(partition, namespace, ask)
                .unwrap_or_else(|| default.grants(access)),
        }
    }

    /// The decision of the first scope (in the order the module doc gives) that has one.
    fn first(
        &self,
        partition: &str,
        namespace: &str,
        ask: impl Fn(&RuleSet) -> Option<bool>,
    ) -> Option<bool> {
        let Kind::Policies { rules, .. } = &self.kind else {
            return Some(true);
        };
        let partition = if partition.is_empty() {
            DEFAULT
        } else {
            partition
        };
        let namespace = if namespace.is_empty() {
            DEFAULT
        } else {
            namespace
        };
        let mut scopes: Vec<&RuleSet> = Vec::with_capacity(4);
        if let Some(block) = select(&rules.partitions, partition) {
            if let Some(ns) = select(&block.namespaces, namespace) {
                scopes.push(&ns.rules);
            }
            scopes.push(&block.rules);
        }
        if partition == DEFAULT {
            if let Some(ns) = select(&rules.namespaces, namespace) {
                scopes.push(&ns.rules);
            }
            if namespace == DEFAULT {
                scopes.push(&rules.top);
            }
        }
        scopes.into_iter().find_map(ask)
    }
}
