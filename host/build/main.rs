//! The host's build script: builds the bundled plugins (`plugins/*`) as components and
//! generates `bundled.rs`, the default plugin set embedded in the binary.

mod wasm_components;

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.parent().expect("host/ has a parent").to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let dirs = wasm_components::crate_dirs(&workspace.join("plugins"));
    let built = wasm_components::build(&workspace, &dirs, &out_dir);

    let mut src = String::from("/// The bundled plugins: (name, component bytes).\n");
    src.push_str("pub static BUNDLED: &[(&str, &[u8])] = &[\n");
    for b in &built {
        writeln!(src, "    ({:?}, include_bytes!({:?})),", b.name, b.path).expect("string write");
    }
    src.push_str("];\n");
    std::fs::write(out_dir.join("bundled.rs"), src).expect("writing bundled.rs");
}
