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

/// Writes `spec` beside `out` and generates it into `out` with `--format json`: the exit
/// code and the JSON printed.
pub fn generate_json(spec: &str, out: &Path) -> (i32, serde_json::Value) {
    generate_with(spec, out, &[])
}

/// The same with `extra` arguments (`--force`).
pub fn generate_with(spec: &str, out: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let file = out.with_extension("yaml");
    std::fs::write(&file, spec).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["--format", "json", "generate"])
        .arg(&file)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap(), json)
}

/// ledgerly with `customer` renamed to `client`, and its `vat_id` to `tax_id`.
pub fn ledgerly_client() -> String {
    ledgerly()
        .replace(
            "  customer:\n    description: A client of the agency\n",
            "  client:\n    description: A client of the agency\n",
        )
        .replace("to: customer }", "to: client }")
        .replace(
            "      vat_id: { type: string, max: 32, optional: true }\n",
            "      tax_id: { type: string, max: 32, optional: true }\n",
        )
        .replace(
            "payments:",
            "migrations:\n  rename:\n    customer: client\n    client.vat_id: tax_id\n\npayments:",
        )
}

/// Runs git in `repo`; its standard output (it must succeed).
pub fn git(repo: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The PostgreSQL server the tests use (a role that may create databases and roles).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// ledgerly at API version v2, v1 still served (deprecated): `customer` renamed to `client`
/// and its `vat_id` to `tax_id`, a new optional `client.notes`. Generated on top of ledgerly,
/// v1 keeps its paths and property names.
pub fn ledgerly_bumped() -> String {
    ledgerly_client()
        .replace(
            "      tax_id: { type: string, max: 32, optional: true }\n",
            "      tax_id: { type: string, max: 32, optional: true }\n      notes: { type: text, optional: true }\n",
        )
        .replacen(
            "  version: v1\n",
            "  version: v2\n  deprecated:\n    v1: { since: 2026-11-01, sunset: 2027-06-01 }\n",
            1,
        )
}

/// The text of `specs/hostile.yaml`.
pub fn hostile() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/hostile.yaml"))
        .unwrap()
}

/// The hostile spec at API version v2, v1 still served (deprecated): `type.super` renamed to
/// `superb`, a new optional `type.ref`, `café` renamed to `bistro`. Generated on top of the
/// hostile spec, v1 keeps its hostile names, paths and property names.
pub fn hostile_bumped() -> String {
    let text = hostile()
        .replacen(
            "  version: v1\n",
            "  version: v2\n  deprecated:\n    v1: { since: 2026-11-01, sunset: 2027-06-01 }\n",
            1,
        )
        .replacen(
            "      super: { type: string, max: 10, optional: true }\n",
            "      superb: { type: string, max: 10, optional: true }\n      ref: { type: text, optional: true }\n",
            1,
        )
        .replacen("\n  café:\n", "\n  bistro:\n", 1);
    assert!(
        !text.contains("\nmigrations:"),
        "hostile.yaml has no migrations yet"
    );
    format!(
        "{}\n\nmigrations:\n  rename:\n    type.super: superb\n    café: bistro\n",
        text.trim_end()
    )
}
