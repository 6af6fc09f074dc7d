//! Helpers shared by the integration tests.

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

/// The text of `specs/ledgerly.yaml`, for tests that change it.
pub fn ledgerly() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml"))
        .unwrap()
}

/// The PostgreSQL server the tests use (a role that may create databases and roles).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}
