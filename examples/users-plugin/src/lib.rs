//! An fsmhost plugin written from scratch: a `users` table with a unique, prefix-capable
//! `id`, a unique `email` that may be missing, and a multi-valued `group` index.
//!
//! Build it as a component inside this workspace with `cargo test -p fsmhost-tests` (the
//! tests crate builds every crate under `examples/` and loads it), or on its own:
//!
//! ```text
//! cargo build -p example-users-plugin --release --target wasm32-unknown-unknown
//! # wrap target/wasm32-unknown-unknown/release/example_users_plugin.wasm as a component
//! # (the wit-component crate, or `wasm-tools component new`), then check it:
//! fsmhost plugin inspect users.wasm
//! ```

use fsmhost_guest::{Command, Ctx, Error, Index, Key, Plugin, Query, Table, Txn};
use serde::{Deserialize, Serialize};

/// A user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Unique name.
    pub name: String,
    /// Unique (case-insensitive) email, if any.
    pub email: Option<String>,
    /// Groups the user belongs to.
    pub groups: Vec<String>,
    /// Index of the command that created the user.
    pub create_index: u64,
}

/// `users.id`: the name; prefix lookups by name prefix.
pub static USERS_ID: Index<User, String> = Index::new(
    &USERS,
    "id",
    |u: &User, keys| keys.push(Key::new().string(&u.name)),
    |name: &String| Key::new().string(name).build(),
)
.unique()
.prefix(|p: &String| Key::new().raw(p.as_bytes()).build());

/// `users.email`: unique, case-insensitive, may be missing.
pub static USERS_EMAIL: Index<User, String> = Index::new(
    &USERS,
    "email",
    |u: &User, keys| {
        if let Some(e) = &u.email {
            keys.push(Key::new().string_lower(e))
        }
    },
    |email: &String| Key::new().string_lower(email).build(),
)
.unique()
.allow_missing();

/// `users.group`: one key per group.
pub static USERS_GROUP: Index<User, String> = Index::new(
    &USERS,
    "group",
    |u: &User, keys| {
        for g in &u.groups {
            keys.push(Key::new().string(g))
        }
    },
    |g: &String| Key::new().string(g).build(),
)
.multi()
.allow_missing();

/// The `users` table.
pub static USERS: Table<User> = Table::new("users", &[&USERS_ID, &USERS_EMAIL, &USERS_GROUP]);

/// `register`: creates a user.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Register {
    /// Name.
    pub name: String,
    /// Email.
    pub email: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
}

/// Creates a user; `false` if the name is taken. A duplicate email fails the command.
fn register(tx: &mut dyn Txn, ctx: &Ctx, req: Register) -> Result<bool, Error> {
    if USERS_ID.get(tx, &req.name)?.is_some() {
        return Ok(false);
    }
    let user = User {
        name: req.name,
        email: req.email,
        groups: req.groups,
        create_index: ctx.index,
    };
    USERS.insert(tx, &user)?;
    // Goes to the server's log as `agent.plugin.users: registered user ...`.
    fsmhost_guest::log(
        fsmhost_guest::LogLevel::Info,
        &format!("registered user {}", user.name),
    );
    Ok(true)
}

/// Users in a group, by name.
fn by_group(tx: &dyn Txn, group: String) -> Result<Vec<User>, Error> {
    USERS_GROUP.iter(tx, &group).collect()
}

/// Users whose name starts with a prefix.
fn by_prefix(tx: &dyn Txn, prefix: String) -> Result<Vec<User>, Error> {
    USERS_ID.iter_prefix(tx, &prefix)?.collect()
}

/// `register`: creates a user; `false` if the name is taken.
pub static REGISTER: Command<Register, bool> = Command::new("register", register);
/// `by-group`: the users in a group, by name.
pub static BY_GROUP: Query<String, Vec<User>> = Query::new("by-group", by_group);
/// `by-prefix`: the users whose name starts with a prefix.
pub static BY_PREFIX: Query<String, Vec<User>> = Query::new("by-prefix", by_prefix);

/// The plugin.
pub fn plugin() -> Plugin {
    Plugin::new("users", "0.1.0", "oss")
        .table(&USERS)
        .command(&REGISTER)
        .query(&BY_GROUP)
        .query(&BY_PREFIX)
}

fsmhost_guest::export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use fsmhost_guest::Harness;

    fn reg(name: &str, email: Option<&str>, groups: &[&str]) -> Register {
        Register {
            name: name.into(),
            email: email.map(Into::into),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn register_and_query() {
        let mut h = Harness::new(plugin()).unwrap();
        assert!(
            h.run(&REGISTER, &reg("ada", Some("ada@x"), &["ops", "dev"]))
                .unwrap()
        );
        assert!(h.run(&REGISTER, &reg("alan", None, &["dev"])).unwrap());
        assert!(!h.run(&REGISTER, &reg("ada", None, &[])).unwrap());
        let dev: Vec<User> = h.ask(&BY_GROUP, &"dev".to_string()).unwrap();
        assert_eq!(
            dev.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["ada", "alan"]
        );
        let a: Vec<User> = h.ask(&BY_PREFIX, &"al".to_string()).unwrap();
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn duplicate_email_writes_nothing() {
        let mut h = Harness::new(plugin()).unwrap();
        h.run(&REGISTER, &reg("ada", Some("ADA@x"), &[])).unwrap();
        let err = h
            .run(&REGISTER, &reg("bob", Some("ada@X"), &["ops"]))
            .unwrap_err();
        assert!(err.message.contains("unique index violation"), "{err}");
        assert_eq!(h.store().len("users"), 1);
        let ops: Vec<User> = h.ask(&BY_GROUP, &"ops".to_string()).unwrap();
        assert!(ops.is_empty());
    }
}
