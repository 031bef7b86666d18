//! Consul's rule language: one policy's rules, parsed from HCL (with the `hcl-rs` crate,
//! whose serde form of blocks is exactly Consul's JSON form) or JSON into [`Rules`].
//!
//! ```text
//! key_prefix "" { policy = "read" }          {"key_prefix": {"": {"policy": "read"}},
//! key "app/config" { policy = "write" }       "key": {"app/config": {"policy": "write"}},
//! operator = "read"                           "operator": "read"}
//! namespace "team" { service_prefix "" { policy = "write" } }   (enterprise editions)
//! ```

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::{Access, Bare, Resource, RulesError};

/// The rules of one scope (a namespace, or the top level): exact and prefix rules per
/// resource, and the bare resources' levels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// `key "a"`-style rules.
    pub exact: BTreeMap<(Resource, String), Access>,
    /// `key_prefix "a"`-style rules.
    pub prefix: BTreeMap<(Resource, String), Access>,
    /// `operator = "read"`-style rules.
    pub bare: BTreeMap<Bare, Access>,
}

/// Which namespaces a `namespace` or `namespace_prefix` block is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NamespaceMatch {
    /// `namespace "name"`.
    Exact(String),
    /// `namespace_prefix "prefix"`.
    Prefix(String),
}

/// One policy's rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// The top level: the `default` partition's `default` namespace (all of OSS).
    pub scope: Scope,
    /// Enterprise blocks: (partition, which namespaces) to their rules. Top-level
    /// `namespace` blocks are in partition `default`; a `partition "p"` block's own rules
    /// are `(p, Exact("default"))`.
    pub namespaces: BTreeMap<(String, NamespaceMatch), Scope>,
}

fn err(m: impl Into<String>) -> RulesError {
    RulesError(m.into())
}

impl Rules {
    /// Parses rules in HCL or JSON (JSON when the text is a JSON object). Empty text is no
    /// rules. Errors name the rule.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        if text.trim().is_empty() {
            return Ok(Rules::default());
        }
        let value: Value = match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => hcl::from_str(text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))?,
        };
        let Value::Object(top) = value else {
            return Err(err("the rules are not a set of blocks and attributes"));
        };
        let mut rules = Rules::default();
        let mut scope = Scope::default();
        for (word, v) in &top {
            match word.as_str() {
                "namespace" | "namespace_prefix" => {
                    namespace_blocks(&mut rules, "default", word, v)?;
                }
                "partition" | "partition_prefix" => {
                    for (partition, body) in blocks(word, v)? {
                        let body = object(word, &partition, &body)?;
                        let mut own = Scope::default();
                        for (w, inner) in body {
                            match w.as_str() {
                                "namespace" | "namespace_prefix" => {
                                    namespace_blocks(&mut rules, &partition, w, inner)?
                                }
                                _ => rule(&mut own, w, inner)?,
                            }
                        }
                        rules
                            .namespaces
                            .insert((partition, NamespaceMatch::Exact("default".into())), own);
                    }
                }
                _ => rule(&mut scope, word, v)?,
            }
        }
        rules.scope = scope;
        Ok(rules)
    }
}

/// The `name { body }` pairs of a block word: an object of labels, or (JSON) a list of
/// such objects.
fn blocks(word: &str, v: &Value) -> Result<Vec<(String, Value)>, RulesError> {
    match v {
        Value::Object(m) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Value::Array(list) => {
            let mut out = Vec::new();
            for item in list {
                out.extend(blocks(word, item)?);
            }
            Ok(out)
        }
        other => Err(err(format!(
            "{word} must be a block with a name (e.g. {word} \"name\" {{ ... }}), not {other}"
        ))),
    }
}

fn object<'a>(word: &str, name: &str, v: &'a Value) -> Result<&'a Map<String, Value>, RulesError> {
    v.as_object()
        .ok_or_else(|| err(format!("{word} {name:?} must be a block")))
}

fn namespace_blocks(
    rules: &mut Rules,
    partition: &str,
    word: &str,
    v: &Value,
) -> Result<(), RulesError> {
    for (name, body) in blocks(word, v)? {
        let mut scope = Scope::default();
        for (w, inner) in object(word, &name, &body)? {
            rule(&mut scope, w, inner)?;
        }
        let which = if word == "namespace" {
            NamespaceMatch::Exact(name)
        } else {
            NamespaceMatch::Prefix(name)
        };
        rules
            .namespaces
            .insert((partition.to_string(), which), scope);
    }
    Ok(())
}

/// A level word, or Consul's error for `resource`.
fn level(resource: &str, v: &Value) -> Result<Access, RulesError> {
    v.as_str()
        .and_then(Access::parse)
        .ok_or_else(|| err(format!("Invalid {resource} policy: {v}")))
}

/// Adds one top-level rule (`operator = ...`, `key "x" { ... }`, `key_prefix ...`).
fn rule(scope: &mut Scope, word: &str, v: &Value) -> Result<(), RulesError> {
    if let Some((bare, _)) = Bare::ALL.iter().find(|(_, w)| *w == word) {
        scope.bare.insert(*bare, level(word, v)?);
        return Ok(());
    }
    let (base, is_prefix) = match word.strip_suffix("_prefix") {
        Some(base) => (base, true),
        None => (word, false),
    };
    let Some((resource, _)) = Resource::ALL.iter().find(|(_, w)| *w == base) else {
        return Err(err(format!("unknown rule {word:?}")));
    };
    for (segment, body) in blocks(word, v)? {
        let body = object(word, &segment, &body)?;
        let policy = body
            .get("policy")
            .ok_or_else(|| err(format!("{word} {segment:?} has no policy")))?;
        for field in body.keys() {
            // `intentions` (service rules) is Consul Connect's; accepted, not used here.
            if field != "policy" && !(base == "service" && field == "intentions") {
                return Err(err(format!("{word} {segment:?}: unknown field {field:?}")));
            }
        }
        let access = level(base, policy)?;
        if access == Access::List && *resource != Resource::Key {
            return Err(err(format!(
                "Invalid {base} policy: \"list\" (list is for keys only)"
            )));
        }
        let map = if is_prefix {
            &mut scope.prefix
        } else {
            &mut scope.exact
        };
        map.insert((*resource, segment), access);
    }
    Ok(())
}
