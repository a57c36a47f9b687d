//! Prerequisites: the `ferry` binary, the interop Python environment,
//! third-party tools and root. A missing one fails the test with the
//! command that installs it (`./scripts/test` installs them all); nothing
//! is ever skipped silently.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The cargo target profile directory this test binary was built into
/// (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test>-<hash>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The `ferry` binary: `$FERRY_BIN`, or `ferry` next to this test binary
/// (`cargo test --workspace` builds it; alone: `cargo build --bin ferry`).
pub fn ferry_bin() -> PathBuf {
    let path = std::env::var_os("FERRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("ferry"));
    assert!(
        path.is_file(),
        "the ferry binary is missing at {}: build it first with `cargo build --bin ferry` \
         (`cargo test --workspace --all-targets` builds it), or set FERRY_BIN",
        path.display()
    );
    path
}

/// The directory of the interop Python environment.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("FERRY_INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            profile_dir()
                .parent()
                .expect("target dir")
                .join("interop-venv")
        })
}

/// The command that (re)creates the interop Python environment.
pub fn venv_install_hint() -> String {
    let v = venv_dir();
    format!(
        "./scripts/test installs it; by hand: python3 -m venv {v} && {v}/bin/pip install aioquic h2 grpcio",
        v = v.display()
    )
}

/// The interop Python interpreter, checked to import `modules`.
pub fn python(modules: &[&str]) -> PathBuf {
    let py = venv_dir().join("bin").join("python3");
    assert!(
        py.is_file(),
        "the interop Python environment is missing ({}): {}",
        py.display(),
        venv_install_hint()
    );
    let imports = format!("import {}", modules.join(", "));
    let out = Command::new(&py)
        .args(["-c", &imports])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", py.display()));
    assert!(
        out.status.success(),
        "{} cannot `{imports}` ({}): {}",
        py.display(),
        String::from_utf8_lossy(&out.stderr).trim(),
        venv_install_hint()
    );
    py
}

/// The interop Python scripts (`interop-tests/py/<name>`).
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(name)
}

/// Fails unless `tool` is on PATH, naming the Debian package to install.
pub fn tool(tool: &str, debian_package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "missing prerequisite `{tool}`: apt-get install {debian_package} (./scripts/test installs it)"
    );
}

/// Fails unless running as root (namespaces, veth, iptables).
pub fn root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this test needs root (network namespaces, veth, iptables); CI runs it as root"
    );
    for (t, p) in [("ip", "iproute2"), ("iptables", "iptables")] {
        tool(t, p);
    }
}
