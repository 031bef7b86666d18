//! Builds the fixture plugins (`tests/fixtures/*`), the example plugins (`examples/*`) and
//! other editions and versions of the bundled plugins as components, with the same pipeline
//! as the bundled plugins, and generates `fixtures.rs`.

#[path = "../host/build/wasm_components.rs"]
mod wasm_components;

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let mut dirs = wasm_components::crate_dirs(&manifest.join("fixtures"));
    dirs.extend(wasm_components::crate_dirs(&workspace.join("examples")));
    let mut built = wasm_components::build(&workspace, &dirs, &out_dir);
    // Other editions and versions of the bundled plugins, from the same source: the
    // enterprise kv and catalog (`kv-enterprise`, `catalog-enterprise`), and the next kv
    // release (`kv-v2`, which adds an index) that the upgrade tests install.
    let plugins = workspace.join("plugins");
    let (kv, catalog) = (plugins.join("kv"), plugins.join("catalog"));
    built.extend(wasm_components::build_variant(
        &workspace,
        &[catalog, kv.clone()],
        &out_dir,
        &[
            "fsmhost-plugin-kv/enterprise",
            "fsmhost-plugin-catalog/enterprise",
        ],
        "-enterprise",
    ));
    built.extend(wasm_components::build_variant(
        &workspace,
        &[kv],
        &out_dir,
        &["fsmhost-plugin-kv/v2"],
        "-v2",
    ));
    // The second release of the `notes` fixture, which migrates its tables, the same
    // release without its migrations, and one whose migration writes another plugin's
    // table.
    let notes = [manifest.join("fixtures").join("notes")];
    built.extend(wasm_components::build_variant(
        &workspace,
        &notes,
        &out_dir,
        &["fixture-notes/v2"],
        "-v2",
    ));
    built.extend(wasm_components::build_variant(
        &workspace,
        &notes,
        &out_dir,
        &["fixture-notes/unmigrated"],
        "-unmigrated",
    ));
    built.extend(wasm_components::build_variant(
        &workspace,
        &notes,
        &out_dir,
        &["fixture-notes/hostile"],
        "-hostile",
    ));

    let mut src = String::from("/// The fixture plugins: (name, component bytes).\n");
    src.push_str("pub static FIXTURES: &[(&str, &[u8])] = &[\n");
    for b in &built {
        writeln!(src, "    ({:?}, include_bytes!({:?})),", b.name, b.path).expect("string write");
    }
    src.push_str("];\n");
    std::fs::write(out_dir.join("fixtures.rs"), src).expect("writing fixtures.rs");
}
