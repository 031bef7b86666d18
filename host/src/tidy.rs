//! Tidy checks of the source tree, run as unit tests: the architecture invariants of
//! ARCHITECTURE.md that the compiler does not check.
//!
//! - No import cycle among the top-level modules of `host/src`, nor among the files of
//!   `server/` (its endpoint modules under `server/http/` count as `http`).
//! - No file in `host/src` over 600 lines, unless its module doc gives the reason on a line
//!   starting with `//! Over 600 lines:`.
//!
//! Imports are read as text: `crate::m` and `use crate::{m, ...}` name module `m`;
//! `super::f` in a `server/` file names its sibling `f`. Test code (`tests.rs`, `tests/`,
//! and a file's tail from `#[cfg(test)]`) is left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn files(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("host/src is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(src())
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("a source file is UTF-8");
            out.push((rel, text));
        }
    }
}

fn is_test(rel: &str) -> bool {
    rel.ends_with("/tests.rs") || rel.contains("/tests/") || rel == "tidy.rs"
}

/// The text of a file without its test tail.
fn code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// The modules `text` names through `crate::`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.insert(ident(item.trim()));
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The modules of `edges` that lie on a cycle, if any.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search with colours; returns the first cycle found, as a path.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == m).unwrap_or(0);
                    let mut c = path[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn sources() -> Vec<(String, String)> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    all
}

#[test]
fn no_import_cycle_among_host_modules() {
    let all = sources();
    let modules: BTreeSet<String> = all
        .iter()
        .filter_map(|(rel, _)| {
            let first = rel.split('/').next()?;
            let m = first.trim_end_matches(".rs");
            (m != "lib" && m != "main").then(|| m.to_string())
        })
        .collect();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut server: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in all.iter().filter(|(rel, _)| !is_test(rel)) {
        let parts: Vec<&str> = rel.split('/').collect();
        let from = parts[0].trim_end_matches(".rs").to_string();
        if !modules.contains(&from) {
            continue;
        }
        let text = code(text);
        for m in crate_refs(text) {
            if modules.contains(&m) && m != from {
                top.entry(from.clone()).or_default().insert(m);
            }
        }
        if from == "server" && parts.len() > 1 {
            let file = parts[1].trim_end_matches(".rs").to_string();
            let siblings = |name: &str| {
                all.iter().any(|(r, _)| {
                    r == &format!("server/{name}.rs") || r.starts_with(&format!("server/{name}/"))
                })
            };
            let mut named = BTreeSet::new();
            for (i, _) in text.match_indices("crate::server::") {
                named.insert(ident(&text[i + "crate::server::".len()..]));
            }
            if parts.len() == 2 {
                for (i, _) in text.match_indices("super::") {
                    named.insert(ident(&text[i + "super::".len()..]));
                }
            }
            for n in named {
                if n != file && n != "mod" && siblings(&n) {
                    server.entry(file.clone()).or_default().insert(n);
                }
            }
        }
    }
    assert!(
        top.contains_key("server") && top.contains_key("raft"),
        "the import graph was not read: {top:?}"
    );
    if let Some(c) = cycle(&top) {
        panic!("import cycle among host modules: {}", c.join(" -> "));
    }
    if let Some(c) = cycle(&server) {
        panic!("import cycle among server/ files: {}", c.join(" -> "));
    }
}

#[test]
fn no_source_file_is_over_600_lines_without_a_reason() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .filter(|(_, text)| !text.lines().any(|l| l.starts_with("//! Over 600 lines:")))
        .map(|(rel, text)| format!("{rel} ({} lines)", text.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "split these files along their seams, or give the reason in their module doc \
         (`//! Over 600 lines: ...`): {long:?}"
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_only_a_cycle() {
    let graph = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert_eq!(cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    let found = cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).expect("a cycle");
    assert_eq!(found.first(), found.last());
    assert_eq!(
        crate_refs("use crate::{fsm::X, plugin}; crate::raft::Y"),
        ["fsm", "plugin", "raft"].map(String::from).into()
    );
}
