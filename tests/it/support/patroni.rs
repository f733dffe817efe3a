//! Real Patroni for the interoperability tests: a venv of the system Python (readable by the
//! `postgres` user, unlike a pyenv under /root) with Patroni from PyPI, built once per target
//! directory under a file lock.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Patroni release the interoperability tests drive.
pub const PATRONI_VERSION: &str = "4.1.5";

/// The venv `patroni-<version>-<name>-venv` with `packages` installed by pip (e.g.
/// `patroni[etcd3,psycopg3]==4.1.5`). Returns the venv directory; `None` with a SKIP message when it
/// cannot be built locally; panics when `CI=true`.
pub fn venv(name: &str, packages: &[&str]) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join(format!("patroni-{PATRONI_VERSION}-{name}-venv"));
    match build(&root, &venv, name, packages) {
        Ok(()) => Some(venv),
        Err(e) if super::in_ci() => {
            panic!("cannot build the Patroni {PATRONI_VERSION} venv (CI=true: not skipping): {e}")
        }
        Err(e) => {
            eprintln!("SKIP: cannot build the Patroni {PATRONI_VERSION} venv: {e}");
            None
        }
    }
}

fn build(root: &Path, venv: &Path, name: &str, packages: &[&str]) -> Result<(), String> {
    std::fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
    let lock_path = root.join(format!("patroni-{name}-venv.lock"));
    let lock_file =
        std::fs::File::create(&lock_path).map_err(|e| format!("create {}: {e}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("lock {}: {e}", lock_path.display()))?;
    let ready = venv.join(".praetor-ready");
    if ready.is_file() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(venv);
    run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages))?;
    // The postgres user runs Patroni from here.
    for dir in [root, venv] {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    std::fs::write(&ready, PATRONI_VERSION).map_err(|e| format!("write {}: {e}", ready.display()))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}
