//! Every spec in `specs/invalid/` states the diagnostics it must produce (`# expect: CODE
//! LINE:COL` lines), and may state words their messages or help texts must hold
//! (`# message: TEXT` and `# help: TEXT` lines, written last so they move no line). Each must be reported exactly, with a non-zero exit,
//! and nothing may be written.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `(code, Some((line, column)))`, or no location for errors the parser places.
type Expected = Vec<(String, Option<(u64, u64)>)>;

fn expectations(path: &Path) -> Expected {
    let text = std::fs::read_to_string(path).unwrap();
    let mut expected: Expected = text
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let mut parts = rest.split_whitespace();
            let code = parts.next().unwrap().to_owned();
            let location = parts.next().map(|lc| {
                let (l, c) = lc.split_once(':').unwrap();
                (l.parse().unwrap(), c.parse().unwrap())
            });
            (code, location)
        })
        .collect();
    expected.sort();
    expected
}

/// The `# message:` (or, with `prefix` `# help: `, help) texts of the spec at `path`: each
/// must be part of some diagnostic's.
fn said_lines(path: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(str::to_owned)
        .collect()
}

fn invalid_specs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/invalid"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
    files.sort();
    files
}

#[test]
fn the_corpus_is_large_enough() {
    let files = invalid_specs();
    let single = files.iter().filter(|f| expectations(f).len() == 1).count();
    let multi = files.iter().filter(|f| expectations(f).len() >= 3).count();
    assert!(single >= 30, "{single} single-mistake specs");
    assert!(multi >= 5, "{multi} specs with several mistakes");
    for file in &files {
        assert!(
            !expectations(file).is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
    }
}

#[test]
fn every_invalid_spec_is_reported_exactly_and_writes_nothing() {
    let mut failures = BTreeMap::new();
    for file in invalid_specs() {
        let expected = expectations(&file);
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        let run = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(["--format", "json", "generate"])
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if run.status.code() != Some(1) {
            failures.insert(name.clone(), format!("exit code {:?}", run.status.code()));
        }
        if out.exists() {
            failures.insert(name.clone(), "wrote into the output directory".into());
        }
        let json: serde_json::Value = match serde_json::from_slice(&run.stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.insert(name, format!("stdout is not JSON: {e}"));
                continue;
            }
        };
        let mut got: Expected = json["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let code = d["code"].as_str().unwrap().to_owned();
                let loc = &d["location"];
                let location = loc["line"].as_u64().zip(loc["column"].as_u64());
                (code, location)
            })
            .collect();
        got.sort();
        // An expectation without a location matches the code wherever the parser put it.
        let matches = got.len() == expected.len()
            && got
                .iter()
                .zip(&expected)
                .all(|(g, e)| g.0 == e.0 && (e.1.is_none() || g.1 == e.1));
        if !matches {
            failures.insert(name.clone(), format!("expected {expected:?}, got {got:?}"));
        }
        for (key, prefix) in [("message", "# message: "), ("help", "# help: ")] {
            let said: Vec<&str> = json["diagnostics"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|d| d[key].as_str())
                .collect();
            for text in said_lines(&file, prefix) {
                if !said.iter().any(|m| m.contains(&text)) {
                    failures.insert(name.clone(), format!("no {key} says `{text}`: {said:?}"));
                }
            }
        }
        for diagnostic in json["diagnostics"].as_array().unwrap() {
            let message = diagnostic["message"].as_str().unwrap_or_default();
            assert!(
                !message.is_empty() && message.chars().next().is_some_and(|c| !c.is_uppercase()),
                "{message}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} specs misreported:\n{failures:#?}",
        failures.len()
    );
}

#[test]
fn human_output_points_at_file_line_and_column() {
    for file in invalid_specs() {
        let run = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(1), "{}", file.display());
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.stdout.is_empty(), "{}", file.display());
        for (code, location) in expectations(&file) {
            assert!(
                stderr.contains(&code),
                "{}: no `{code}` in\n{stderr}",
                file.display()
            );
            if let Some((line, column)) = location {
                let at = format!("{}:{line}:{column}", file.display());
                assert!(
                    stderr.contains(&at),
                    "{}: no `{at}` in\n{stderr}",
                    file.display()
                );
            }
        }
        assert!(stderr.contains("help"), "{}: no help text", file.display());
    }
}
