//! The replicated ACL state: policies, roles and tokens in Consul's shapes (`ID`,
//! `AccessorID`, `SecretID`, ...), and the log operations ([`AclOp`]) that change them.
//!
//! Owns: what is stored and the rules every server applies identically. Whether a caller
//! may make a change, and checking a policy's rules, happen before the operation is
//! proposed (`server/acl.rs`); [`AclState::apply`] re-checks only what a concurrent
//! write could have made stale (a name taken, a link to something deleted, bootstrap
//! done), so two servers can never disagree.
//!
//! Invariant (enforced in `apply`): names of policies and of roles are unique; every
//! token's secret maps to exactly one accessor (`secrets`); links name existing policies
//! and roles (a delete removes the links to it, as Consul does).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The ID of the built-in `global-management` policy (Consul's).
pub const MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// The name of the built-in management policy.
pub const MANAGEMENT_POLICY_NAME: &str = "global-management";
/// The accessor of the anonymous token (Consul's), used when a request names no token.
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
/// The anonymous token's secret.
pub const ANONYMOUS_SECRET: &str = "anonymous";

/// A link from a token or role to a policy or role: by ID (the name is filled in when
/// read, so a rename shows everywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Link {
    /// The linked item's ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name (as of the read).
    #[serde(default)]
    pub name: String,
}

/// A policy: a name and rules in Consul's language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    /// Its ID (a UUID).
    #[serde(rename = "ID")]
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The rules (HCL or JSON).
    #[serde(default)]
    pub rules: String,
    /// Datacenters it is valid in (empty: all).
    #[serde(default)]
    pub datacenters: Vec<String>,
    /// The raft index that created it.
    #[serde(default)]
    pub create_index: u64,
    /// The raft index of its last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// A role: a named set of policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Role {
    /// Its ID (a UUID).
    #[serde(rename = "ID")]
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Its policies.
    #[serde(default)]
    pub policies: Vec<Link>,
    /// The raft index that created it.
    #[serde(default)]
    pub create_index: u64,
    /// The raft index of its last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// A token: what a request presents (`SecretID`) and what an operator manages it by
/// (`AccessorID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Token {
    /// The public identifier.
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// The secret a request presents.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Its policies.
    #[serde(default)]
    pub policies: Vec<Link>,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<Link>,
    /// Valid in this datacenter only (Consul's local tokens); recorded, not replicated
    /// elsewhere (fsmhost has one datacenter).
    #[serde(default)]
    pub local: bool,
    /// When it stops being valid (RFC 3339), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// When it expires, as milliseconds since the epoch (from `ExpirationTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// When it was created (RFC 3339, the leader's clock).
    #[serde(default)]
    pub create_time: String,
    /// The raft index that created it.
    #[serde(default)]
    pub create_index: u64,
    /// The raft index of its last change.
    #[serde(default)]
    pub modify_index: u64,
}

impl Token {
    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|t| t <= now_ms)
    }
}

/// One change to the ACL state: what a log entry carries. IDs, secrets and times are
/// chosen by the leader before it proposes, so applying is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclOp {
    /// `PUT /v1/acl/bootstrap`: the first management token; refused once done.
    Bootstrap(Token),
    /// The configured `acl.tokens.initial_management` token, made by a leader when no
    /// token has its secret (idempotent).
    InitialManagement(Token),
    /// Creates or replaces a policy.
    SetPolicy(Policy),
    /// Deletes a policy (and every link to it).
    DeletePolicy(String),
    /// Creates or replaces a role.
    SetRole(Role),
    /// Deletes a role (and every link to it).
    DeleteRole(String),
    /// Creates or replaces a token.
    SetToken(Token),
    /// Deletes a token by accessor.
    DeleteToken(String),
}

/// What an applied [`AclOp`] gives back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclAnswer {
    /// The policy as stored.
    Policy(Policy),
    /// The role as stored.
    Role(Role),
    /// The token as stored.
    Token(Token),
    /// A delete, or an initial-management token that already existed.
    Done,
}

/// The whole ACL state, as it travels in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AclState {
    /// Policies by ID.
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
    /// Roles by ID.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// Tokens by accessor.
    #[serde(default)]
    pub tokens: BTreeMap<String, Token>,
    /// Accessor by secret.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// The raft index of the bootstrap, once done (Consul's reset index).
    #[serde(default)]
    pub bootstrapped: Option<u64>,
    /// The raft index of the last change (0: never changed).
    #[serde(default)]
    pub modify_index: u64,
}

impl AclState {
    /// Whether nothing was ever stored.
    pub fn is_empty(&self) -> bool {
        self.modify_index == 0
    }

    /// The token whose secret is `secret`.
    pub fn token_by_secret(&self, secret: &str) -> Option<&Token> {
        self.secrets.get(secret).and_then(|a| self.tokens.get(a))
    }

    /// A policy by name.
    pub fn policy_by_name(&self, name: &str) -> Option<&Policy> {
        self.policies.values().find(|p| p.name == name)
    }

    /// A role by name.
    pub fn role_by_name(&self, name: &str) -> Option<&Role> {
        self.roles.values().find(|r| r.name == name)
    }

    /// `links` with each name filled in from the current policies (or roles); links to
    /// what no longer exists are dropped.
    pub fn named_policies(&self, links: &[Link]) -> Vec<Link> {
        links
            .iter()
            .filter_map(|l| {
                self.policies.get(&l.id).map(|p| Link {
                    id: p.id.clone(),
                    name: p.name.clone(),
                })
            })
            .collect()
    }

    /// As [`AclState::named_policies`], for roles.
    pub fn named_roles(&self, links: &[Link]) -> Vec<Link> {
        links
            .iter()
            .filter_map(|l| {
                self.roles.get(&l.id).map(|r| Link {
                    id: r.id.clone(),
                    name: r.name.clone(),
                })
            })
            .collect()
    }

    /// Applies `op` at `raft_index`: the stored item, or why it was refused (Consul's
    /// message). A refused operation changes nothing.
    pub fn apply(&mut self, op: AclOp, raft_index: u64) -> Result<AclAnswer, String> {
        let mut next = self.clone();
        let answer = next.apply_in_place(op, raft_index)?;
        next.modify_index = raft_index;
        *self = next;
        Ok(answer)
    }

    fn apply_in_place(&mut self, op: AclOp, raft_index: u64) -> Result<AclAnswer, String> {
        Ok(match op {
            AclOp::Bootstrap(token) => {
                if let Some(at) = self.bootstrapped {
                    return Err(format!(
                        "ACL bootstrap no longer allowed (reset index: {at})"
                    ));
                }
                self.ensure_management_policy(raft_index);
                self.bootstrapped = Some(raft_index);
                AclAnswer::Token(self.put_token(token, raft_index)?)
            }
            AclOp::InitialManagement(token) => {
                self.ensure_management_policy(raft_index);
                if self.secrets.contains_key(&token.secret_id) {
                    AclAnswer::Done
                } else {
                    AclAnswer::Token(self.put_token(token, raft_index)?)
                }
            }
            AclOp::SetPolicy(mut policy) => {
                if self
                    .policy_by_name(&policy.name)
                    .is_some_and(|p| p.id != policy.id)
                {
                    return Err(format!(
                        "Invalid Policy: A Policy with Name {:?} already exists",
                        policy.name
                    ));
                }
                policy.create_index = self
                    .policies
                    .get(&policy.id)
                    .map_or(raft_index, |p| p.create_index);
                policy.modify_index = raft_index;
                self.policies.insert(policy.id.clone(), policy.clone());
                AclAnswer::Policy(policy)
            }
            AclOp::DeletePolicy(id) => {
                if id == MANAGEMENT_POLICY_ID {
                    return Err(
                        "Delete of the builtin global-management policy is not permitted".into(),
                    );
                }
                if self.policies.remove(&id).is_none() {
                    return Err(format!("Cannot find policy {id}"));
                }
                for r in self.roles.values_mut() {
                    r.policies.retain(|l| l.id != id);
                }
                for t in self.tokens.values_mut() {
                    t.policies.retain(|l| l.id != id);
                }
                AclAnswer::Done
            }
            AclOp::SetRole(mut role) => {
                if self
                    .role_by_name(&role.name)
                    .is_some_and(|r| r.id != role.id)
                {
                    return Err(format!(
                        "Invalid Role: A Role with Name {:?} already exists",
                        role.name
                    ));
                }
                self.check_policies(&role.policies)?;
                role.create_index = self
                    .roles
                    .get(&role.id)
                    .map_or(raft_index, |r| r.create_index);
                role.modify_index = raft_index;
                self.roles.insert(role.id.clone(), role.clone());
                AclAnswer::Role(role)
            }
            AclOp::DeleteRole(id) => {
                if self.roles.remove(&id).is_none() {
                    return Err(format!("Cannot find role {id}"));
                }
                for t in self.tokens.values_mut() {
                    t.roles.retain(|l| l.id != id);
                }
                AclAnswer::Done
            }
            AclOp::SetToken(token) => AclAnswer::Token(self.put_token(token, raft_index)?),
            AclOp::DeleteToken(accessor) => {
                let Some(token) = self.tokens.remove(&accessor) else {
                    return Err(format!("Cannot find token to delete: {accessor}"));
                };
                self.secrets.remove(&token.secret_id);
                AclAnswer::Done
            }
        })
    }

    fn check_policies(&self, links: &[Link]) -> Result<(), String> {
        match links.iter().find(|l| !self.policies.contains_key(&l.id)) {
            Some(l) => Err(format!("cannot find policy {}", l.id)),
            None => Ok(()),
        }
    }

    fn ensure_management_policy(&mut self, raft_index: u64) {
        self.policies
            .entry(MANAGEMENT_POLICY_ID.to_string())
            .or_insert_with(|| Policy {
                id: MANAGEMENT_POLICY_ID.into(),
                name: MANAGEMENT_POLICY_NAME.into(),
                description: "Builtin Policy that grants unlimited access".into(),
                rules: String::new(),
                datacenters: Vec::new(),
                create_index: raft_index,
                modify_index: raft_index,
            });
    }

    fn put_token(&mut self, mut token: Token, raft_index: u64) -> Result<Token, String> {
        if let Some(other) = self.secrets.get(&token.secret_id)
            && *other != token.accessor_id
        {
            return Err("Invalid Token: SecretID is already in use".into());
        }
        self.check_policies(&token.policies)?;
        if let Some(l) = token.roles.iter().find(|l| !self.roles.contains_key(&l.id)) {
            return Err(format!("cannot find role {}", l.id));
        }
        if let Some(old) = self.tokens.get(&token.accessor_id) {
            if old.secret_id != token.secret_id {
                return Err("Changing a token's SecretID is not permitted".into());
            }
            token.create_index = old.create_index;
            token.create_time = old.create_time.clone();
        } else {
            token.create_index = raft_index;
        }
        token.modify_index = raft_index;
        self.secrets
            .insert(token.secret_id.clone(), token.accessor_id.clone());
        self.tokens.insert(token.accessor_id.clone(), token.clone());
        Ok(token)
    }
}

#[cfg(test)]
mod tests;
