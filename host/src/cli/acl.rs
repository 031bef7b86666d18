//! `fsmhost acl ...`: Consul's `consul acl` commands (bootstrap; tokens, policies and
//! roles: create, read, list, delete), through the server's `/v1/acl/` API.
//!
//! Output is Consul's: `Field: value` lines per item (`-format json` for the JSON the API
//! answered).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Api;
use super::operator::http_maybe;

/// `fsmhost acl ...`
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Makes the first management token (once per cluster) and prints it.
    Bootstrap(Common),
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Roles.
    #[command(subcommand)]
    Role(RoleCommand),
}

/// What every `acl` command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// `pretty` (default) or `json`.
    #[arg(long, default_value = "pretty", value_parser = ["pretty", "json"])]
    format: String,
    /// The server to ask: address, TLS and token.
    #[command(flatten)]
    api: Api,
}

/// `fsmhost acl token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a token.
    Create {
        /// Its description.
        #[arg(long, default_value = "")]
        description: String,
        /// A policy by name (repeatable).
        #[arg(long)]
        policy_name: Vec<String>,
        /// A policy by ID (repeatable).
        #[arg(long)]
        policy_id: Vec<String>,
        /// A role by name (repeatable).
        #[arg(long)]
        role_name: Vec<String>,
        /// How long until it expires (e.g. 1h).
        #[arg(long)]
        expires_ttl: Option<String>,
        /// Its SecretID (default: a new random one).
        #[arg(long)]
        secret: Option<String>,
        /// Common flags.
        #[command(flatten)]
        common: Common,
    },
    /// Prints a token (`-self`: the token the request uses).
    Read {
        /// Its AccessorID.
        #[arg(long)]
        accessor_id: Option<String>,
        /// The caller's own token.
        #[arg(long = "self")]
        own: bool,
        /// Common flags.
        #[command(flatten)]
        common: Common,
    },
    /// Lists every token.
    List(Common),
    /// Deletes a token.
    Delete {
        /// Its AccessorID.
        #[arg(long)]
        accessor_id: String,
        /// Common flags.
        #[command(flatten)]
        common: Common,
    },
}

/// `fsmhost acl policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Creates a policy.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// Its description.
        #[arg(long, default_value = "")]
        description: String,
        /// Its rules (HCL or JSON), or `@FILE`.
        #[arg(long, default_value = "")]
        rules: String,
        /// Common flags.
        #[command(flatten)]
        common: Common,
    },
    /// Prints a policy.
    Read {
        /// Its ID.
        #[arg(long)]
        id: Option<String>,
        /// Its name.
        #[arg(long)]
        name: Option<String>,
        /// Common flags.
        #[command(flatten)]
        common: Common,
    },
    /// Lists every policy.
    List(Common),
    /// Deletes a policy.
    Delete {
        /// Its ID.
        #[arg(long)]
        id: String,
        /// Common flags.
        #[command(flatten)]
        common: Common,
    },
}

/// `fsmhost acl role ...`
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Creates a role.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// Its description.
        #[arg(long, default_value = "")]
        description: String,
        /// A policy by name (repeatable).
        #[arg(long)]
        policy_name: Vec<String>,
        /// Common flags.
        #[command(flatten)]
        common: Common,
    },
    /// Lists every role.
    List(Common),
    /// Deletes a role.
    Delete {
        /// Its ID.
        #[arg(long)]
        id: String,
        /// Common flags.
        #[command(flatten)]
        common: Common,
    },
}

/// Runs an `acl` command.
pub fn run(cmd: AclCommand) -> Result<(), String> {
    match cmd {
        AclCommand::Bootstrap(c) => show(&c, call(&c, "PUT", "/v1/acl/bootstrap", None)?),
        AclCommand::Token(t) => token(t),
        AclCommand::Policy(p) => policy(p),
        AclCommand::Role(r) => role(r),
    }
}

fn token(cmd: TokenCommand) -> Result<(), String> {
    match cmd {
        TokenCommand::Create {
            description,
            policy_name,
            policy_id,
            role_name,
            expires_ttl,
            secret,
            common,
        } => {
            let mut policies: Vec<Value> =
                policy_name.iter().map(|n| json!({ "Name": n })).collect();
            policies.extend(policy_id.iter().map(|id| json!({ "ID": id })));
            let roles: Vec<Value> = role_name.iter().map(|n| json!({ "Name": n })).collect();
            let mut body = json!({
                "Description": description,
                "Policies": policies,
                "Roles": roles,
            });
            if let Some(o) = body.as_object_mut() {
                if let Some(ttl) = expires_ttl {
                    o.insert("ExpirationTTL".into(), json!(ttl));
                }
                if let Some(s) = secret {
                    o.insert("SecretID".into(), json!(s));
                }
            }
            show(&common, call(&common, "PUT", "/v1/acl/token", Some(body))?)
        }
        TokenCommand::Read {
            accessor_id,
            own,
            common,
        } => {
            let path = match (own, accessor_id) {
                (true, None) => "/v1/acl/token/self".to_string(),
                (false, Some(id)) => format!("/v1/acl/token/{id}"),
                _ => return Err("give exactly one of -accessor-id or -self".into()),
            };
            show(&common, call(&common, "GET", &path, None)?)
        }
        TokenCommand::List(c) => show_list(&c, call(&c, "GET", "/v1/acl/tokens", None)?),
        TokenCommand::Delete {
            accessor_id,
            common,
        } => {
            call(
                &common,
                "DELETE",
                &format!("/v1/acl/token/{accessor_id}"),
                None,
            )?;
            println!("Token {accessor_id:?} deleted successfully");
            Ok(())
        }
    }
}

fn policy(cmd: PolicyCommand) -> Result<(), String> {
    match cmd {
        PolicyCommand::Create {
            name,
            description,
            rules,
            common,
        } => {
            let rules = match rules.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| format!("-rules: reading {file}: {e}"))?,
                None => rules,
            };
            let body = json!({ "Name": name, "Description": description, "Rules": rules });
            show(&common, call(&common, "PUT", "/v1/acl/policy", Some(body))?)
        }
        PolicyCommand::Read { id, name, common } => {
            let path = match (id, name) {
                (Some(id), None) => format!("/v1/acl/policy/{id}"),
                (None, Some(name)) => format!("/v1/acl/policy/name/{name}"),
                _ => return Err("give exactly one of -id or -name".into()),
            };
            show(&common, call(&common, "GET", &path, None)?)
        }
        PolicyCommand::List(c) => show_list(&c, call(&c, "GET", "/v1/acl/policies", None)?),
        PolicyCommand::Delete { id, common } => {
            call(&common, "DELETE", &format!("/v1/acl/policy/{id}"), None)?;
            println!("Policy {id:?} deleted successfully");
            Ok(())
        }
    }
}

fn role(cmd: RoleCommand) -> Result<(), String> {
    match cmd {
        RoleCommand::Create {
            name,
            description,
            policy_name,
            common,
        } => {
            let policies: Vec<Value> = policy_name.iter().map(|n| json!({ "Name": n })).collect();
            let body = json!({ "Name": name, "Description": description, "Policies": policies });
            show(&common, call(&common, "PUT", "/v1/acl/role", Some(body))?)
        }
        RoleCommand::List(c) => show_list(&c, call(&c, "GET", "/v1/acl/roles", None)?),
        RoleCommand::Delete { id, common } => {
            call(&common, "DELETE", &format!("/v1/acl/role/{id}"), None)?;
            println!("Role {id:?} deleted successfully");
            Ok(())
        }
    }
}

/// One request; its JSON answer.
fn call(c: &Common, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let answer = http_maybe(method, &c.api, path, body)?
        .ok_or_else(|| format!("{} answered 404 for {path}", c.api))?;
    serde_json::from_slice(&answer)
        .map_err(|e| format!("{} answered something that is not JSON: {e}", c.api))
}

fn show_list(c: &Common, v: Value) -> Result<(), String> {
    if c.format == "json" {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    for item in v.as_array().into_iter().flatten() {
        print_item(item);
        println!();
    }
    Ok(())
}

fn show(c: &Common, v: Value) -> Result<(), String> {
    if c.format == "json" {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_item(&v);
    }
    Ok(())
}

/// Consul's `Field: value` lines; links as `ID - Name` under their heading.
fn print_item(v: &Value) {
    let Some(o) = v.as_object() else {
        println!("{v}");
        return;
    };
    for (field, label) in [
        ("AccessorID", "AccessorID"),
        ("SecretID", "SecretID"),
        ("ID", "ID"),
        ("Name", "Name"),
        ("Description", "Description"),
        ("Local", "Local"),
        ("CreateTime", "Create Time"),
        ("ExpirationTime", "Expiration Time"),
        ("Rules", "Rules"),
    ] {
        match o.get(field) {
            Some(Value::String(s)) => println!("{label}:  {s}"),
            Some(Value::Bool(b)) => println!("{label}:  {b}"),
            _ => {}
        }
    }
    for (field, label) in [("Policies", "Policies"), ("Roles", "Roles")] {
        if let Some(list) = o.get(field).and_then(Value::as_array)
            && !list.is_empty()
        {
            println!("{label}:");
            for l in list {
                println!(
                    "   {} - {}",
                    l["ID"].as_str().unwrap_or(""),
                    l["Name"].as_str().unwrap_or("")
                );
            }
        }
    }
}
