//! The generated workspace of every example spec builds, passes clippy with `-D warnings`
//! and `cargo fmt --check`, and its own tests (for ledgerly also the hand-written golden
//! table in `tests/golden/`) pass against the PostgreSQL at `DATABASE_URL` (default: the
//! local server). So does the hostile spec regenerated at API version v2 with v1 still
//! served (`hostile-v2`: v1 with its own paths and bodies, under hostile names). Workspaces build one after another and
//! share one target directory, apart from bulwark's own, so their dependencies compile once.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs cargo in a generated workspace; its output is shown only when it fails, so this
/// suite's own results stay readable.
fn cargo(dir: &Path, args: &[&str]) {
    let target = root().join("target/generated-target");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        // The generated workspace has its own lints and profile; nothing of bulwark's build leaks in.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "`cargo {}` failed in {}:\n{}\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn generated_workspaces_build_lint_and_pass_their_tests() {
    let bumped = root().join("target/generated-workspaces/hostile-v2.yaml");
    std::fs::create_dir_all(bumped.parent().unwrap()).unwrap();
    std::fs::write(&bumped, common::hostile_bumped()).unwrap();
    let example = |name: &str| root().join(format!("specs/{name}.yaml"));
    let workspaces: [(&str, Vec<PathBuf>); 4] = [
        ("ledgerly", vec![example("ledgerly")]),
        ("tracker", vec![example("tracker")]),
        ("hostile", vec![example("hostile")]),
        // A version bump on top of a first generation, whose manifest recorded v1.
        ("hostile-v2", vec![example("hostile"), bumped.clone()]),
    ];
    for (spec, generations) in workspaces {
        let out: PathBuf = root().join("target/generated-workspaces").join(spec);
        // A first generation each time (a previous one would be evolved from, not replaced).
        if out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        for generation in &generations {
            let status = Command::new(env!("CARGO_BIN_EXE_bulwark"))
                .arg("generate")
                .arg(generation)
                .arg("--out")
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success(), "generate {}", generation.display());
        }
        let last = generations.last().unwrap();
        // Routes through the guard, operations of the spec, and the migrations' catalog.
        let database = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let audit = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .arg("audit")
            .arg(&out)
            .arg("--spec")
            .arg(last)
            .args(["--database", &database])
            .output()
            .unwrap();
        assert!(
            audit.status.success(),
            "audit {spec}: {}",
            String::from_utf8_lossy(&audit.stderr)
        );
        // The hand-written golden table of ledgerly's permissions runs with its own tests.
        if spec == "ledgerly" {
            std::fs::copy(
                root().join("tests/golden/ledgerly.rs"),
                out.join("crates/server/tests/golden.rs"),
            )
            .unwrap();
        }
        cargo(&out, &["fmt", "--check"]);
        cargo(
            &out,
            &[
                "clippy",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        );
        cargo(&out, &["test", "--locked"]);
    }
}
