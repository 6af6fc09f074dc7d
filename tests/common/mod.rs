//! Helpers shared by the audit tests.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::process::Command;

/// A freshly generated ledgerly project.
pub fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml");
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .arg("generate")
        .arg(spec)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    dir
}
