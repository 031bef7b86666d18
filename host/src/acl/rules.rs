//! One policy's rules as data: the rules of one scope ([`RuleSet`]), and the policy as a
//! whole ([`Rules`]): its top-level rules and its Enterprise `namespace` and `partition`
//! blocks. Rules for the same segment or scope merge as Consul's `policy_merger.go` does,
//! whether they come from one policy (a duplicate block) or from several (a token's).

use std::collections::BTreeMap;

use super::{Access, Bare, Resource, RulesError};

/// How a rule matches segments: `key "foo"` is exact, `key_prefix "foo"` a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Match {
    /// The segment itself.
    Exact,
    /// Every segment that starts with it.
    Prefix,
}

/// One segmented rule: its level and, for services, its `intentions` level (unset: the
/// service's `read` or `write` gives intentions `read`, `deny` gives `deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRule {
    /// The `policy` value.
    pub access: Access,
    /// The `intentions` value of a service rule.
    pub intentions: Option<Access>,
}

impl SegmentRule {
    /// Consul's merge of two rules for one segment: each level keeps the one that takes
    /// precedence (deny > write > list > read; an unset `intentions` loses to any).
    pub fn merge(self, other: SegmentRule) -> SegmentRule {
        let access = if other.access.takes_precedence_over(self.access) {
            other.access
        } else {
            self.access
        };
        let intentions = match (self.intentions, other.intentions) {
            (Some(a), Some(b)) if b.takes_precedence_over(a) => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        SegmentRule { access, intentions }
    }
}

/// The rules of one resource: exact and prefix rules by segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Tree {
    pub(crate) exact: BTreeMap<String, SegmentRule>,
    pub(crate) prefix: BTreeMap<String, SegmentRule>,
}

impl Tree {
    fn side(&mut self, how: Match) -> &mut BTreeMap<String, SegmentRule> {
        match how {
            Match::Exact => &mut self.exact,
            Match::Prefix => &mut self.prefix,
        }
    }

    fn insert(&mut self, how: Match, segment: &str, rule: SegmentRule) {
        let side = self.side(how);
        let merged = match side.get(segment) {
            Some(old) => old.merge(rule),
            None => rule,
        };
        side.insert(segment.to_string(), merged);
    }

    fn merge(&mut self, other: &Tree) {
        for (segment, rule) in &other.exact {
            self.insert(Match::Exact, segment, *rule);
        }
        for (segment, rule) in &other.prefix {
            self.insert(Match::Prefix, segment, *rule);
        }
    }

    /// Consul's `getPolicy`: the exact rule for `segment`, else the rule of its longest
    /// matching prefix.
    pub(crate) fn lookup(&self, segment: &str) -> Option<SegmentRule> {
        if let Some(rule) = self.exact.get(segment) {
            return Some(*rule);
        }
        if self.prefix.is_empty() {
            return None;
        }
        (0..=segment.len())
            .rev()
            .filter(|&end| segment.is_char_boundary(end))
            .find_map(|end| self.prefix.get(&segment[..end]).copied())
    }

    /// Every rule whose segment starts with `prefix` (exact and prefix rules alike).
    pub(crate) fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = SegmentRule> + 'a {
        use std::ops::Bound::{Included, Unbounded};
        let exact = self.exact.range::<str, _>((Included(prefix), Unbounded));
        let prefixes = self.prefix.range::<str, _>((Included(prefix), Unbounded));
        exact
            .take_while(move |(s, _)| s.starts_with(prefix))
            .chain(prefixes.take_while(move |(s, _)| s.starts_with(prefix)))
            .map(|(_, r)| *r)
    }
}

/// The rules of one scope: segmented rules per resource and the bare ones. A policy's
/// top level is one; so is the inside of each `namespace` or `partition` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleSet {
    pub(crate) trees: BTreeMap<Resource, Tree>,
    pub(crate) bare: BTreeMap<Bare, Access>,
    /// `identity` / `identity_prefix` rules (Consul 1.17+): parsed and merged, not enforced.
    pub(crate) identities: Tree,
}

impl RuleSet {
    /// Adds a segmented rule, merging it with one already there for the same segment.
    pub fn insert(&mut self, resource: Resource, how: Match, segment: &str, rule: SegmentRule) {
        self.trees
            .entry(resource)
            .or_default()
            .insert(how, segment, rule);
    }

    /// Sets a bare rule, merging it with one already there.
    pub fn set_bare(&mut self, bare: Bare, access: Access) {
        let merged = match self.bare.get(&bare) {
            Some(old) if !access.takes_precedence_over(*old) => *old,
            _ => access,
        };
        self.bare.insert(bare, merged);
    }

    pub(crate) fn insert_identity(&mut self, how: Match, name: &str, rule: SegmentRule) {
        self.identities.insert(how, name, rule);
    }

    /// The rule written for exactly this segment and match (no precedence applied).
    pub fn rule(&self, resource: Resource, how: Match, segment: &str) -> Option<SegmentRule> {
        let tree = self.trees.get(&resource)?;
        match how {
            Match::Exact => tree.exact.get(segment).copied(),
            Match::Prefix => tree.prefix.get(segment).copied(),
        }
    }

    /// The bare rule, if one was written.
    pub fn bare(&self, bare: Bare) -> Option<Access> {
        self.bare.get(&bare).copied()
    }

    /// The rule that applies to `segment` of `resource` in this scope: the exact rule, else
    /// the longest matching prefix rule.
    pub fn lookup(&self, resource: Resource, segment: &str) -> Option<SegmentRule> {
        self.trees.get(&resource)?.lookup(segment)
    }

    /// Whether no rule at all was written.
    pub fn is_empty(&self) -> bool {
        self.trees
            .values()
            .all(|t| t.exact.is_empty() && t.prefix.is_empty())
            && self.bare.is_empty()
            && self.identities.exact.is_empty()
            && self.identities.prefix.is_empty()
    }

    /// Merges `other` into this scope, rule by rule, with Consul's precedence.
    pub fn merge(&mut self, other: &RuleSet) {
        for (resource, tree) in &other.trees {
            self.trees.entry(*resource).or_default().merge(tree);
        }
        for (bare, access) in &other.bare {
            self.set_bare(*bare, *access);
        }
        self.identities.merge(&other.identities);
    }
}

/// An Enterprise `namespace` / `namespace_prefix` block: its rules, and its own `policy`
/// (managing the namespace itself).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamespaceBlock {
    /// The block's `policy = "..."`, if any.
    pub policy: Option<Access>,
    /// The rules inside it.
    pub rules: RuleSet,
}

impl NamespaceBlock {
    /// Merges another block for the same namespace into this one.
    pub fn merge(&mut self, other: &NamespaceBlock) {
        self.policy = match (self.policy, other.policy) {
            (Some(a), Some(b)) if b.takes_precedence_over(a) => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        self.rules.merge(&other.rules);
    }
}

/// An Enterprise `partition` / `partition_prefix` block: its rules and its namespace blocks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionBlock {
    /// The rules directly inside it (nodes, mesh, peering, ...).
    pub rules: RuleSet,
    /// Its `namespace` / `namespace_prefix` blocks, by match and name.
    pub namespaces: BTreeMap<(Match, String), NamespaceBlock>,
}

impl PartitionBlock {
    /// Merges another block for the same partition into this one.
    pub fn merge(&mut self, other: &PartitionBlock) {
        self.rules.merge(&other.rules);
        merge_namespaces(&mut self.namespaces, &other.namespaces);
    }
}

fn merge_namespaces(
    into: &mut BTreeMap<(Match, String), NamespaceBlock>,
    from: &BTreeMap<(Match, String), NamespaceBlock>,
) {
    for (key, block) in from {
        into.entry(key.clone()).or_default().merge(block);
    }
}

/// One policy's rules, parsed from HCL or JSON (auto-detected: JSON if the text parses as a
/// JSON object). The top-level rules apply in partition `default`, namespace `default`
/// (all there is in Consul CE); Enterprise blocks are kept per scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// The top-level rules.
    pub top: RuleSet,
    /// Top-level `namespace` / `namespace_prefix` blocks (in partition `default`).
    pub namespaces: BTreeMap<(Match, String), NamespaceBlock>,
    /// `partition` / `partition_prefix` blocks.
    pub partitions: BTreeMap<(Match, String), PartitionBlock>,
}

impl Rules {
    /// Parses one policy's rules. Empty text is no rules. HCL syntax errors are
    /// `Failed to parse ACL rules: <the parser's message, with line and column>`; a bad
    /// level is Consul's `Invalid <rule> policy: ...` naming the rule; an unknown resource
    /// or field is an error naming it (Consul CE silently ignores those).
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        super::parse::parse(text)
    }

    /// Merges `other` into these rules, scope by scope and rule by rule (Consul's
    /// `MergePolicies`).
    pub fn merge(&mut self, other: &Rules) {
        self.top.merge(&other.top);
        merge_namespaces(&mut self.namespaces, &other.namespaces);
        for (key, block) in &other.partitions {
            self.partitions.entry(key.clone()).or_default().merge(block);
        }
    }

    /// The merge of several policies' rules.
    pub fn merged(policies: &[Rules]) -> Rules {
        let mut all = Rules::default();
        for p in policies {
            all.merge(p);
        }
        all
    }
}

/// The block for `name` among exact and prefix blocks: the exact one, else the longest
/// matching prefix.
pub(crate) fn select<'a, T>(blocks: &'a BTreeMap<(Match, String), T>, name: &str) -> Option<&'a T> {
    if blocks.is_empty() {
        return None;
    }
    if let Some(b) = blocks.get(&(Match::Exact, name.to_string())) {
        return Some(b);
    }
    (0..=name.len())
        .rev()
        .filter(|&end| name.is_char_boundary(end))
        .find_map(|end| blocks.get(&(Match::Prefix, name[..end].to_string())))
}
