//! Builds plugin crates for `wasm32-unknown-unknown` and wraps each core module as a
//! component with the `wit-component` crate. Shared by the host's build script (the bundled
//! plugins under `plugins/`) and the tests crate's (the fixtures under `tests/fixtures/`),
//! so a plain `cargo build` / `cargo test` produces every component; there is no extra step.
//!
//! The nested cargo runs with its own target directory (beside the outer one), so it never
//! waits on the outer build's lock, and always in release: the components are what the host
//! runs and benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Shadow-stack size of every built plugin, in bytes. Overflowing it traps (the stack is
/// placed first in memory), deterministically.
const GUEST_STACK: u32 = 64 << 10;

/// One built component.
pub struct Built {
    /// The crate's directory name, e.g. `kv`.
    pub name: String,
    /// Where the component was written.
    pub path: PathBuf,
}

/// The crate directories (those with a Cargo.toml) directly under `dir`, sorted.
pub fn crate_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn package_name(dir: &Path) -> String {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("reading {}/Cargo.toml: {e}", dir.display()));
    manifest
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("{}/Cargo.toml has no package name", dir.display()))
}

fn sysroot_has_target(rustc: &str) -> bool {
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .is_some_and(|root| {
            Path::new(&root)
                .join("lib/rustlib")
                .join(WASM_TARGET)
                .is_dir()
        })
}

/// Installs the wasm target into the active toolchain if it is missing. rustup applies
/// `rust-toolchain.toml`'s `targets` only when it installs the toolchain, so a machine that
/// already had the toolchain would otherwise fail here.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if sysroot_has_target(&rustc) {
        return;
    }
    // The host's and the tests' build scripts may get here at once: one rustup at a time.
    let lock_path = std::env::temp_dir().join("fsmhost-wasm-target.lock");
    let _lock = std::fs::File::create(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .unwrap_or_else(|e| panic!("locking {}: {e}", lock_path.display()));
    if sysroot_has_target(&rustc) {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!(
            "the {WASM_TARGET} target is missing and `rustup target add {WASM_TARGET}` failed \
             ({other:?}); install it and build again"
        ),
    }
}

/// Builds the crates in `dirs` for wasm and writes `<out_dir>/<dir name>.wasm` components.
pub fn build(workspace: &Path, dirs: &[PathBuf], out_dir: &Path) -> Vec<Built> {
    build_variant(workspace, dirs, out_dir, &[], "")
}

/// Builds the crates in `dirs` with cargo `features` (`package/feature`) and writes
/// `<out_dir>/<dir name><suffix>.wasm` components: another edition or version of the same
/// source (`kv` with `fsmhost-plugin-kv/enterprise` as `kv-enterprise`).
pub fn build_variant(
    workspace: &Path,
    dirs: &[PathBuf],
    out_dir: &Path,
    features: &[&str],
    suffix: &str,
) -> Vec<Built> {
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("guest-sdk").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    for d in dirs {
        println!("cargo:rerun-if-changed={}", d.display());
    }
    if dirs.is_empty() {
        return Vec::new();
    }
    ensure_wasm_target();

    // <target>/<profile>/build/<pkg>-<hash>/out -> <target>/wasm-components
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(out_dir)
        .join("wasm-components");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the host, not for wasm; a clippy run must not lint
        // the nested build.
        .env_remove("RUSTFLAGS")
        // A small stack: every call's instance is reset in proportion to the memory it
        // touched (see BENCHMARKS.md), and Rust's default 1 MiB stack was most of it.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("-Clink-arg=-zstack-size={GUEST_STACK}"),
        )
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    let packages: Vec<String> = dirs.iter().map(|d| package_name(d)).collect();
    for p in &packages {
        cmd.args(["-p", p]);
    }
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo for the wasm plugins: {e}"));
    assert!(
        status.success(),
        "building the wasm plugins failed: {packages:?}"
    );

    dirs.iter()
        .zip(&packages)
        .map(|(dir, package)| {
            let module_path = target_dir
                .join(WASM_TARGET)
                .join("release")
                .join(format!("{}.wasm", package.replace('-', "_")));
            let module = std::fs::read(&module_path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", module_path.display()));
            let component = wit_component::ComponentEncoder::default()
                .module(&module)
                .and_then(|e| e.validate(true).encode())
                .unwrap_or_else(|e| panic!("wrapping {package} as a component: {e:#}"));
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| package.clone())
                + suffix;
            let path = out_dir.join(format!("{name}.wasm"));
            std::fs::write(&path, component)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            Built { name, path }
        })
        .collect()
}
