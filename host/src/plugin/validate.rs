//! Load-time checks: a component imports only the contract, and its description is
//! consistent. Every refusal names the plugin and the item.

use std::collections::BTreeSet;

use super::{CONTRACT_VERSION, Description, LoadError};

/// Interfaces of `fsmhost:plugin` a component may import.
const ALLOWED_INTERFACES: [&str; 4] = ["types", "state", "log", "acl"];

/// Refuses an import outside `fsmhost:plugin@CONTRACT_VERSION`.
pub(crate) fn import(plugin: &str, name: &str) -> Result<(), LoadError> {
    let allowed = name
        .strip_prefix("fsmhost:plugin/")
        .and_then(|rest| rest.strip_suffix(&format!("@{CONTRACT_VERSION}")))
        .is_some_and(|iface| ALLOWED_INTERFACES.contains(&iface));
    if allowed {
        Ok(())
    } else {
        Err(LoadError::ForbiddenImport {
            plugin: plugin.to_string(),
            import: name.to_string(),
            contract: CONTRACT_VERSION,
        })
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && s.len() <= 64
}

fn valid_version(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn unique<'a>(what: &str, names: impl IntoIterator<Item = &'a String>) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for n in names {
        if !valid_name(n) {
            return Err(format!(
                "{what} name {n:?} is not valid (lowercase letters, digits, - and _; starts with a letter)"
            ));
        }
        if !seen.insert(n) {
            return Err(format!("{what} {n} is declared twice"));
        }
    }
    Ok(())
}

/// Checks one plugin's description on its own.
pub(crate) fn description(origin: &str, d: &Description) -> Result<(), LoadError> {
    let invalid = |plugin: &str, problem: String| LoadError::InvalidDescription {
        plugin: plugin.to_string(),
        problem,
    };
    if !valid_name(&d.name) {
        return Err(invalid(
            origin,
            format!("plugin name {:?} is not valid", d.name),
        ));
    }
    let name = d.name.as_str();
    if !valid_version(&d.version) {
        return Err(invalid(
            name,
            format!("version {:?} is not semver (x.y.z)", d.version),
        ));
    }
    if !valid_name(&d.edition) {
        return Err(invalid(
            name,
            format!("edition {:?} is not valid", d.edition),
        ));
    }
    unique("table", d.tables.iter().map(|t| &t.name)).map_err(|p| invalid(name, p))?;
    unique("command", &d.commands).map_err(|p| invalid(name, p))?;
    unique("query", &d.queries).map_err(|p| invalid(name, p))?;
    for t in &d.tables {
        unique(
            &format!("index of table {}", t.name),
            t.indexes.iter().map(|i| &i.name),
        )
        .map_err(|p| invalid(name, p))?;
        let id = t
            .indexes
            .iter()
            .find(|i| i.name == "id")
            .ok_or_else(|| invalid(name, format!("table {} has no index named id", t.name)))?;
        if !id.unique || id.multi || id.allow_missing {
            return Err(invalid(
                name,
                format!(
                    "table {}: index id must be unique, single-valued and not allow missing \
                     values (unique={}, multi={}, allow-missing={})",
                    t.name, id.unique, id.multi, id.allow_missing
                ),
            ));
        }
        if t.layout == 0 {
            return Err(invalid(
                name,
                format!("table {}: layout 0; layouts count from 1", t.name),
            ));
        }
    }
    let mut migrations = BTreeSet::new();
    for m in &d.migrations {
        if !migrations.insert((&m.table, m.from_layout)) {
            return Err(invalid(
                name,
                format!(
                    "the migration of table {} from layout {} is declared twice",
                    m.table, m.from_layout
                ),
            ));
        }
        if d.tables
            .iter()
            .any(|t| t.name == m.table && t.layout <= m.from_layout)
        {
            return Err(invalid(
                name,
                format!(
                    "a migration of table {} from layout {} is declared, but the table's \
                     layout is not higher than that",
                    m.table, m.from_layout
                ),
            ));
        }
    }
    unique("read of table", d.reads.iter().map(|r| &r.table)).map_err(|p| invalid(name, p))?;
    if let Some(r) = d
        .reads
        .iter()
        .find(|r| d.tables.iter().any(|t| t.name == r.table))
    {
        return Err(invalid(
            name,
            format!("it declares a read of table {}, which it owns", r.table),
        ));
    }
    let mut sends = BTreeSet::new();
    for t in &d.sends {
        if t.plugin == d.name {
            return Err(invalid(
                name,
                format!("it declares messages to its own command {}", t.command),
            ));
        }
        if !sends.insert(t) {
            return Err(invalid(
                name,
                format!("messages to {}/{} are declared twice", t.plugin, t.command),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_contract_imports_pass() {
        assert!(import("p", &format!("fsmhost:plugin/state@{CONTRACT_VERSION}")).is_ok());
        let err = import("p", "wasi:cli/environment@0.2.0").unwrap_err();
        assert!(
            err.to_string()
                .contains("imports `wasi:cli/environment@0.2.0`"),
            "{err}"
        );
        assert!(
            import("p", "fsmhost:plugin/state@9.0.0").is_err(),
            "other contract version"
        );
        assert!(import("p", &format!("fsmhost:plugin/admin@{CONTRACT_VERSION}")).is_err());
    }

    #[test]
    fn versions() {
        assert!(valid_version("1.2.3"));
        assert!(valid_version("0.1.0-rc.1"));
        assert!(!valid_version("1.2"));
        assert!(!valid_version("a.b.c"));
    }
}
