//! Rules text to [`Rules`]: HCL through `hcl-rs` (an `hcl::Body`, walked) or JSON through
//! `serde_json`, both first turned into one tree of [`Node`]s, so one walker reads both and
//! the same rules in either form parse to equal [`Rules`].
//!
//! HCL's `key "foo" { policy = "read" }` and JSON's `{"key": {"foo": {"policy": "read"}}}`
//! are the same node: `key` → object with `foo` → object with `policy`, as in HCL 1, which
//! Consul decodes both with.

use std::collections::{BTreeMap, BTreeSet};

use super::rules::{Match, NamespaceBlock, PartitionBlock, RuleSet, Rules, SegmentRule};
use super::{Access, Bare, Resource, RulesError};

/// Deeper nesting than this is refused before parsing (real rules nest four deep:
/// partition, namespace, rule, sentinel), so no input can exhaust the stack.
const MAX_DEPTH: usize = 32;

/// A value of the rules text, whichever syntax it was written in.
enum Node {
    Str(String),
    Obj(Vec<(String, Node)>),
    Arr(Vec<Node>),
    /// Anything else (a number, a bool, an expression): its kind, for the message.
    Other(&'static str),
}

fn syntax(message: impl std::fmt::Display) -> RulesError {
    RulesError::new(format!("Failed to parse ACL rules: {message}"))
}

pub(super) fn parse(text: &str) -> Result<Rules, RulesError> {
    if text.trim().is_empty() {
        return Ok(Rules::default());
    }
    check_depth(text)?;
    let root = if text.trim_start().starts_with('{') {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value @ serde_json::Value::Object(_)) => from_json(value),
            Ok(_) => return Err(syntax("JSON rules must be an object")),
            Err(e) => return Err(syntax(e)),
        }
    } else {
        let body = match hcl::parse(text) {
            Ok(body) => body,
            // HCL 1 (Consul's parser) also takes blocks and attributes on one line:
            // `service "a" { policy = "read" intentions = "read" }`. Laid out one per line,
            // it is HCL 2; if that parses, it was HCL 1, else the error is the text's own.
            Err(e) => hcl::parse(&one_per_line(text)).map_err(|_| syntax(e))?,
        };
        from_hcl(body)?
    };
    let Node::Obj(items) = root else {
        return Err(syntax("the rules must be an object"));
    };
    let walked = walk(&items, Scope::Top, "")?;
    Ok(Rules {
        top: walked.rules,
        namespaces: walked.namespaces,
        partitions: walked.partitions,
    })
}

/// Refuses text nested deeper than [`MAX_DEPTH`] brackets, outside quoted strings.
fn check_depth(text: &str) -> Result<(), RulesError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' | '(' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(syntax(format!("nested more than {MAX_DEPTH} levels deep")));
                }
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `text` with a line break after every `{`, around every `}`, for every `,` outside
/// brackets, and between a quoted value and the name that follows it: HCL 1's one-line
/// forms laid out as HCL 2 needs them. Strings, comments and heredocs are kept as written
/// (text with a heredoc is left alone).
fn one_per_line(text: &str) -> String {
    if text.contains("<<") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut chars = text.chars().peekable();
    let (mut brackets, mut after_value) = (0usize, false);
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                let mut escaped = false;
                for d in chars.by_ref() {
                    out.push(d);
                    match (escaped, d) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {}
                    }
                }
                after_value = true;
                continue;
            }
            '#' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                out.push(c);
                let mut star = false;
                for d in chars.by_ref() {
                    out.push(d);
                    if star && d == '/' {
                        break;
                    }
                    star = d == '*';
                }
            }
            '{' => out.push_str("{\n"),
            '}' => out.push_str("\n}\n"),
            '[' => {
                brackets += 1;
                out.push(c);
            }
            ']' => {
                brackets = brackets.saturating_sub(1);
                out.push(c);
            }
            ',' if brackets == 0 => out.push('\n'),
            ' ' | '\t' => {
                out.push(c);
                continue;
            }
            c if after_value && (c.is_alphabetic() || c == '_') => {
                out.push('\n');
                out.push(c);
            }
            c => out.push(c),
        }
        after_value = false;
    }
    out
}

fn from_json(value: serde_json::Value) -> Node {
    use serde_json::Value;
    match value {
        Value::String(s) => Node::Str(s),
        Value::Object(map) => Node::Obj(map.into_iter().map(|(k, v)| (k, from_json(v))).collect()),
        Value::Array(items) => Node::Arr(items.into_iter().map(from_json).collect()),
        Value::Null => Node::Other("null"),
        Value::Bool(_) => Node::Other("a bool"),
        Value::Number(_) => Node::Other("a number"),
    }
}

fn from_hcl(body: hcl::Body) -> Result<Node, RulesError> {
    let mut items = Vec::new();
    let mut attributes = BTreeSet::new();
    for structure in body.into_inner() {
        match structure {
            hcl::Structure::Attribute(attr) => {
                let key = attr.key.as_str().to_string();
                if !attributes.insert(key.clone()) {
                    return Err(syntax(format!(
                        "The argument {key:?} was already set. Each argument can only be defined once"
                    )));
                }
                items.push((key, from_expr(attr.expr)?));
            }
            hcl::Structure::Block(block) => {
                let mut node = from_hcl(block.body)?;
                for label in block.labels.into_iter().rev() {
                    node = Node::Obj(vec![(label.as_str().to_string(), node)]);
                }
                items.push((block.identifier.as_str().to_string(), node));
            }
        }
    }
    Ok(Node::Obj(items))
}

fn from_expr(expr: hcl::Expression) -> Result<Node, RulesError> {
    use hcl::Expression as E;
    Ok(match expr {
        E::String(s) => Node::Str(s),
        E::Array(items) => Node::Arr(items.into_iter().map(from_expr).collect::<Result<_, _>>()?),
        E::Object(object) => {
            let mut items = Vec::new();
            for (key, value) in object {
                let key = match key {
                    hcl::ObjectKey::Identifier(i) => i.as_str().to_string(),
                    hcl::ObjectKey::Expression(E::String(s)) => s,
                    _ => {
                        return Err(syntax("an object key must be a name or a string"));
                    }
                };
                items.push((key, from_expr(value)?));
            }
            Node::Obj(items)
        }
        E::Parenthesis(inner) => from_expr(*inner)?,
        E::Null => Node::Other("null"),
        E::Bool(_) => Node::Other("a bool"),
        E::Number(_) => Node::Other("a number"),
        E::TemplateExpr(_) => Node::Other("a template (interpolation is not allowed)"),
        _ => Node::Other("an expression"),
    })
}

/// The entries of an object: names and values, in the order written.
type Entries = [(String, Node)];

/// Where a block of rules sits: what it may contain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Top,
    Partition,
    Namespace,
}

#[derive(Default)]
struct Walked {
    rules: RuleSet,
    policy: Option<Access>,
    namespaces: BTreeMap<(Match, String), NamespaceBlock>,
    partitions: BTreeMap<(Match, String), PartitionBlock>,
}

/// A segmented rule name: its resource (`None` for `identity`) and match.
fn segmented(name: &str) -> Option<(Option<Resource>, Match)> {
    let (base, how) = match name.strip_suffix("_prefix") {
        Some(base) => (base, Match::Prefix),
        None => (name, Match::Exact),
    };
    if base == "identity" {
        return Some((None, how));
    }
    Resource::ALL
        .into_iter()
        .find(|r| r.name() == base)
        .map(|r| (Some(r), how))
}

fn bare(name: &str) -> Option<Bare> {
    Bare::ALL.into_iter().find(|b| b.name() == name)
}

fn scoped(name: &str) -> Option<(bool, Match)> {
    match name {
        "namespace" => Some((true, Match::Exact)),
        "namespace_prefix" => Some((true, Match::Prefix)),
        "partition" => Some((false, Match::Exact)),
        "partition_prefix" => Some((false, Match::Prefix)),
        _ => None,
    }
}

/// `name "label" { ... }` entries of one name: a label → body object, or a list of them.
fn labelled<'a>(
    name: &str,
    value: &'a Node,
    within: &str,
) -> Result<Vec<(&'a str, &'a Entries)>, RulesError> {
    let mut out = Vec::new();
    let objects: Vec<&Node> = match value {
        Node::Arr(items) => items.iter().collect(),
        other => vec![other],
    };
    for object in objects {
        let Node::Obj(entries) = object else {
            return Err(syntax(format!(
                "{name}{within} must be a block with a label, as {name} \"<name>\" {{ ... }}"
            )));
        };
        for (label, body) in entries {
            let Node::Obj(body) = body else {
                return Err(syntax(format!("{name} {label:?}{within} must be a block")));
            };
            out.push((label.as_str(), body.as_slice()));
        }
    }
    Ok(out)
}

fn walk(items: &[(String, Node)], scope: Scope, within: &str) -> Result<Walked, RulesError> {
    let mut out = Walked::default();
    for (name, value) in items {
        if let Some(b) = bare(name) {
            let Node::Str(s) = value else {
                return Err(syntax(format!(
                    "{name}{within} must be a string, as {name} = \"read\""
                )));
            };
            if s.is_empty() {
                continue; // Consul: allowed to be empty, and then no rule.
            }
            match Access::from_policy(s) {
                Some(a) if a != Access::List => out.rules.set_bare(b, a),
                _ => {
                    return Err(RulesError::new(format!(
                        "Invalid {name} policy: {s:?}{within}"
                    )));
                }
            }
        } else if let Some((resource, how)) = segmented(name) {
            for (label, body) in labelled(name, value, within)? {
                let rule = segment_rule(name, resource, label, body, within)?;
                match resource {
                    Some(r) => out.rules.insert(r, how, label, rule),
                    None => out.rules.insert_identity(how, label, rule),
                }
            }
        } else if let Some((is_namespace, how)) = scoped(name) {
            let allowed = match scope {
                Scope::Top => true,
                Scope::Partition => is_namespace,
                Scope::Namespace => false,
            };
            if !allowed {
                return Err(syntax(format!("{name} blocks are not allowed{within}")));
            }
            for (label, body) in labelled(name, value, within)? {
                let inner = format!(" (in {name} {label:?})");
                let key = (how, label.to_string());
                if is_namespace {
                    let w = walk(body, Scope::Namespace, &inner)?;
                    let block = NamespaceBlock {
                        policy: w.policy,
                        rules: w.rules,
                    };
                    out.namespaces.entry(key).or_default().merge(&block);
                } else {
                    let w = walk(body, Scope::Partition, &inner)?;
                    let block = PartitionBlock {
                        rules: w.rules,
                        namespaces: w.namespaces,
                    };
                    out.partitions.entry(key).or_default().merge(&block);
                }
            }
        } else if name == "policy" && scope == Scope::Namespace {
            let level = match value {
                Node::Str(s) => Access::from_policy(s).filter(|a| *a != Access::List),
                _ => None,
            };
            match level {
                Some(a) => out.policy = Some(a),
                None => {
                    return Err(RulesError::new(format!(
                        "Invalid namespace policy: {}{within}",
                        show(value)
                    )));
                }
            }
        } else {
            return Err(syntax(format!("unknown rule {name:?}{within}")));
        }
    }
    Ok(out)
}

fn show(node: &Node) -> String {
    match node {
        Node::Str(s) => format!("{s:?}"),
        Node::Obj(_) => "a block".to_string(),
        Node::Arr(_) => "a list".to_string(),
        Node::Other(kind) => kind.to_string(),
    }
}

/// The body of `name "label" { policy = "..." ... }`.
fn segment_rule(
    name: &str,
    resource: Option<Resource>,
    label: &str,
    body: &[(String, Node)],
    within: &str,
) -> Result<SegmentRule, RulesError> {
    let takes_intentions = matches!(resource, None | Some(Resource::Service));
    let takes_sentinel = matches!(
        resource,
        Some(Resource::Key | Resource::Node | Resource::Service)
    );
    let mut policy = None;
    let mut intentions = None;
    let mut seen = BTreeSet::new();
    for (field, value) in body {
        if !seen.insert(field.as_str()) {
            return Err(syntax(format!(
                "The argument {field:?} was already set. Each argument can only be defined once ({name} {label:?}{within})"
            )));
        }
        match field.as_str() {
            "policy" => policy = Some(value),
            "intentions" if takes_intentions => intentions = Some(value),
            // Consul Enterprise's Sentinel code: accepted and ignored, as Consul CE does.
            "sentinel" if takes_sentinel => {}
            _ => {
                return Err(syntax(format!(
                    "unknown field {field:?} in {name} {label:?}{within}"
                )));
            }
        }
    }
    let rule_text = || {
        let mut s = format!(
            "{name} {label:?} {{ policy = {}",
            policy.map_or("\"\"".to_string(), show)
        );
        if let Some(i) = intentions {
            s.push_str(&format!(", intentions = {}", show(i)));
        }
        s.push_str(" }");
        s.push_str(within);
        s
    };
    let allow_list = resource == Some(Resource::Key);
    let level = |v: Option<&Node>| match v {
        Some(Node::Str(s)) => Access::from_policy(s).filter(|a| allow_list || *a != Access::List),
        _ => None,
    };
    let Some(access) = level(policy) else {
        return Err(RulesError::new(format!(
            "Invalid {name} policy: {}",
            rule_text()
        )));
    };
    let intentions = match intentions {
        None => None,
        Some(Node::Str(s)) if s.is_empty() => None,
        Some(v) => match level(Some(v)) {
            Some(a) if a != Access::List => Some(a),
            _ => {
                return Err(RulesError::new(format!(
                    "Invalid {name} intentions policy: {}",
                    rule_text()
                )));
            }
        },
    };
    Ok(SegmentRule { access, intentions })
}
