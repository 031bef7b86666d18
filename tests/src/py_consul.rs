//! py-consul (Consul's Python client, from PyPI) against a real server: a virtual
//! environment with a pinned py-consul, made once per target directory, and a runner for
//! the scripts under `tests/py/`.
//!
//! The environment is `<dir>/py-consul-<version>` (tests pass `CARGO_TARGET_TMPDIR`, so
//! `cargo clean` removes it); it needs `python3` with the `venv` module and a network
//! that reaches PyPI the first time. Tests in several threads or processes may ask at
//! once: an exclusive `flock` on `<dir>/py-consul.lock` makes one build it, and a marker
//! file written last tells a finished environment from a half-built one, which is
//! removed and built again.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The py-consul release the tests use (the newest on PyPI when pinned).
pub const VERSION: &str = "1.8.0";

/// Why py-consul could not be installed or a script failed.
#[derive(Debug)]
pub enum PyError {
    /// A file operation on the environment.
    Io {
        /// What was being done.
        what: String,
        /// The error.
        error: std::io::Error,
    },
    /// A command (venv creation, pip, a script) exited with a failure.
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard output.
        stdout: String,
        /// Its standard error.
        stderr: String,
    },
}

impl std::fmt::Display for PyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PyError::Io { what, error } => write!(f, "{what}: {error}"),
            PyError::Failed {
                command,
                status,
                stdout,
                stderr,
            } => write!(
                f,
                "`{command}` failed ({status})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
            ),
        }
    }
}

impl std::error::Error for PyError {}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PyError {
    let what = what.into();
    move |error| PyError::Io { what, error }
}

/// A Python with py-consul [`VERSION`] installed.
#[derive(Debug, Clone)]
pub struct PyConsul {
    python: PathBuf,
}

/// The `tests/py/` directory of this crate, where the scripts are.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py")
}

fn run(mut cmd: Command) -> Result<Output, PyError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(io(format!("running {command}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(PyError::Failed {
            command,
            status: out.status.to_string(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Holds an exclusive `flock` on a file until dropped (also the cluster harness's, around
/// warming the shared plugin cache).
pub(crate) struct Locked(File);

impl Locked {
    pub(crate) fn new(path: &Path) -> Result<Locked, PyError> {
        let file = File::create(path).map_err(io(format!("creating {}", path.display())))?;
        // SAFETY: flock(2) on a descriptor this value owns; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(PyError::Io {
                what: format!("locking {}", path.display()),
                error: std::io::Error::last_os_error(),
            });
        }
        Ok(Locked(file))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release the lock too.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

impl PyConsul {
    /// The environment under `dir`, built first if it is not there (a few seconds to a
    /// minute: `python3 -m venv`, then `pip install py-consul==VERSION`).
    pub fn install(dir: &Path) -> Result<PyConsul, PyError> {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let _lock = Locked::new(&dir.join("py-consul.lock"))?;
        let venv = dir.join(format!("py-consul-{VERSION}"));
        let python = venv.join("bin").join("python");
        let marker = venv.join("fsmhost-tests-ready");
        if marker.exists() {
            return Ok(PyConsul { python });
        }
        if venv.exists() {
            fs::remove_dir_all(&venv)
                .map_err(io(format!("removing the half-built {}", venv.display())))?;
        }
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(&venv);
        run(cmd)?;
        let mut cmd = Command::new(&python);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("py-consul=={VERSION}"));
        run(cmd)?;
        fs::write(&marker, VERSION).map_err(io(format!("writing {}", marker.display())))?;
        Ok(PyConsul { python })
    }

    /// Runs `tests/py/<script>` with this Python, given the server's HTTP address
    /// (`host:port`) as its argument; its standard output when it exits with 0, else an
    /// error carrying everything it printed.
    pub fn run_script(&self, script: &str, http_addr: &str) -> Result<String, PyError> {
        self.run_script_with(script, &[http_addr])
    }

    /// Runs `tests/py/<script>` with `args`; its standard output when it exits with 0,
    /// else an error carrying everything it printed.
    pub fn run_script_with(&self, script: &str, args: &[&str]) -> Result<String, PyError> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(scripts_dir().join(script)).args(args);
        let out = run(cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
