#![allow(clippy::unwrap_used)]
//! Integration tests of the `bulwark` binary: exit codes, messages, JSON output, and what
//! `generate` does (and refuses to do) to an output directory.
//!
//! Every test works inside its own temporary directory; none writes anywhere else.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const EXIT_OK: i32 = 0;
const EXIT_INVALID_SPEC: i32 = 1;
const EXIT_USAGE_OR_IO: i32 = 2;
const EXIT_REFUSED: i32 = 4;

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it does not match.
    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Stdout as exactly one JSON document (and nothing else).
    #[track_caller]
    fn json(&self) -> Value {
        let docs: Vec<Value> = serde_json::Deserializer::from_str(&self.stdout)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout));
        assert_eq!(
            docs.len(),
            1,
            "stdout must hold exactly one JSON document:\n{}",
            self.stdout
        );
        docs.into_iter().next().unwrap()
    }
}

/// A `bulwark` command with a predictable environment (the real rustfmt, whatever the
/// caller's environment says).
fn command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulwark"));
    cmd.args(args).env_remove("BULWARK_RUSTFMT");
    cmd
}

fn output(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("the bulwark binary runs");
    Run {
        code: out.status.code().expect("bulwark exited normally"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn bulwark<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    output(&mut command(args))
}

/// The command `bulwark --format json generate SPEC --out OUT`, to run as it is or with
/// more set (environment, pipes).
fn generate_json_command(spec: &Path, out: &Path) -> Command {
    command([
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("generate"),
        spec.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
}

/// `bulwark --format json generate SPEC --out OUT [extra…]`.
fn generate_json(spec: &Path, out: &Path, extra: &[&str]) -> Run {
    output(generate_json_command(spec, out).args(extra))
}

/// `bulwark generate SPEC --out OUT` (human output).
fn generate_human(spec: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("generate"),
        spec.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    bulwark(args)
}

fn spec(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("specs")
        .join(name)
}

fn invalid_spec(name: &str) -> PathBuf {
    spec("invalid").join(name)
}

const EXAMPLE_SPECS: [&str; 3] = ["ledgerly.yaml", "tracker.yaml", "hostile.yaml"];

/// The files of the `time_entry` resource of tracker.yaml (nothing references it).
const TIME_ENTRY_FILES: [&str; 3] = [
    "crates/api/src/time_entry.rs",
    "crates/server/src/resources/time_entry.rs",
    "crates/server/tests/samples/time_entry.rs",
];

/// tracker.yaml without its last resource, `time_entry`, written into `dir`.
fn tracker_without_time_entry(dir: &Path) -> PathBuf {
    let source = fs::read_to_string(spec("tracker.yaml")).unwrap();
    let marker = "\n  time_entry:\n";
    let start = source
        .find(marker)
        .expect("tracker.yaml defines the time_entry resource");
    // Everything after the marker belongs to time_entry (is indented deeper).
    assert!(
        source[start + marker.len()..]
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with("    ")),
        "time_entry must be the last resource of tracker.yaml"
    );
    assert!(
        !source[..start].contains("to: time_entry"),
        "nothing may reference time_entry"
    );
    let path = dir.join("tracker-without-time-entry.yaml");
    // Dropping its table (and rows) is acknowledged, as the next migration requires; v1,
    // which still serves it, is retired (else `generate` refuses to break it).
    let deprecated = "  deprecated:\n    v1: { since: 2026-11-01, sunset: 2027-05-01 }\n";
    assert!(source.contains(deprecated), "tracker.yaml deprecates v1");
    let kept = source[..=start].replace(deprecated, "");
    let text = format!("{kept}\nmigrations:\n  drop: [time_entry]\n");
    fs::write(&path, text).unwrap();
    path
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Relative path (with `/`) → contents, or `None` for a directory.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if entry.file_type().unwrap().is_dir() {
                tree.insert(relative, None);
                stack.push(path);
            } else {
                tree.insert(relative, Some(fs::read(&path).unwrap()));
            }
        }
    }
    tree
}

/// Relative paths of the regular files of a tree.
fn files_of(tree: &Tree) -> Vec<&str> {
    tree.iter()
        .filter(|(_, c)| c.is_some())
        .map(|(p, _)| p.as_str())
        .collect()
}

/// Asserts two trees are identical, naming every difference.
#[track_caller]
fn assert_same_tree(before: &Tree, after: &Tree, what: &str) {
    let mut differences = Vec::new();
    for (path, contents) in before {
        match after.get(path) {
            None => differences.push(format!("gone: {path}")),
            Some(c) if c != contents => differences.push(format!("changed: {path}")),
            Some(_) => {}
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            differences.push(format!("new: {path}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{what}: trees differ:\n{}",
        differences.join("\n")
    );
}

fn mtimes(root: &Path) -> BTreeMap<String, SystemTime> {
    snapshot(root)
        .into_iter()
        .filter(|(_, c)| c.is_some())
        .map(|(p, _)| {
            let time = fs::metadata(root.join(&p)).unwrap().modified().unwrap();
            (p, time)
        })
        .collect()
}

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&fs::read(out.join(".bulwark/manifest.json")).unwrap()).unwrap()
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a JSON failure document: `ok: false`, the error kind, a message containing `needle`.
#[track_caller]
fn assert_json_error(doc: &Value, kind: &str, needle: &str) {
    assert_eq!(doc["ok"], Value::Bool(false), "{doc}");
    assert_eq!(doc["error"]["kind"], kind, "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "message `{message}` should mention `{needle}`"
    );
}

fn tempdir() -> TempDir {
    tempfile::tempdir().unwrap()
}

// ---------------------------------------------------------------------------------------
// generate: the good path
// ---------------------------------------------------------------------------------------

#[test]
fn generate_into_fresh_dir_writes_workspace_and_a_manifest_that_matches_it() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let spec_path = spec("ledgerly.yaml");
    let run = generate_json(&spec_path, &out, &[]);
    run.expect_code(EXIT_OK);
    assert_eq!(run.stderr, "");
    let report = run.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["out"], out.display().to_string());
    assert_eq!(string_list(&report["removed"]), Vec::<String>::new());
    assert_eq!(report["unchanged"], 0);

    for required in [
        "Cargo.toml",
        "Cargo.lock",
        "openapi.json",
        "migrations/0001_init.sql",
        "crates/server/src/lib.rs",
        ".bulwark/manifest.json",
    ] {
        assert!(out.join(required).is_file(), "{required} is missing");
    }

    let manifest = manifest(&out);
    assert_eq!(manifest["generator"], "bulwark");
    let spec_sha = sha256_hex(&fs::read(&spec_path).unwrap());
    assert_eq!(manifest["spec_sha256"], spec_sha.as_str());
    assert_eq!(report["spec_sha256"], spec_sha.as_str());
    assert!(
        manifest["rustfmt"].as_str().unwrap().starts_with("rustfmt"),
        "{}",
        manifest["rustfmt"]
    );
    let listed = manifest["files"].as_object().unwrap();
    assert!(!listed.is_empty());

    // Every listed file exists with the recorded hash…
    for (path, recorded) in listed {
        let bytes = fs::read(out.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            sha256_hex(&bytes),
            recorded.as_str().unwrap(),
            "hash of {path}"
        );
    }
    // …every file on disk (but the manifest) is listed, and nothing else was left behind
    // (no staging directory)…
    let tree = snapshot(&out);
    let on_disk: Vec<&str> = files_of(&tree)
        .into_iter()
        .filter(|p| *p != ".bulwark/manifest.json")
        .collect();
    let listed_paths: Vec<&str> = listed.keys().map(String::as_str).collect();
    assert_eq!(on_disk, listed_paths);
    let bulwark_dir: Vec<_> = fs::read_dir(out.join(".bulwark"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(bulwark_dir, ["manifest.json"]);
    // …and the JSON report lists exactly those files as written.
    assert_eq!(string_list(&report["written"]), listed_paths);

    // Every source-like file says it is generated, near its top.
    let mut checked = 0;
    for path in listed.keys() {
        if [".rs", ".toml", ".sql", ".md"]
            .iter()
            .any(|ext| path.ends_with(ext))
        {
            let text = fs::read_to_string(out.join(path)).unwrap();
            assert!(
                text.lines().take(3).any(|l| l.contains("@generated")),
                "{path} lacks an @generated marker in its first 3 lines"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} marked files");
}

#[test]
fn files_reused_from_the_cache_are_those_printing_and_formatting_give() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let generate = |out: &str| {
        let run = output(
            generate_json_command(&spec("hostile.yaml"), &tmp.path().join(out))
                .env("BULWARK_CACHE_DIR", &cache),
        );
        run.expect_code(EXIT_OK);
        let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
        report["timings"]["reused_rust_files"]
            .as_u64()
            .expect("a count of reused files")
    };
    assert_eq!(generate("printed"), 0, "an empty cache reuses nothing");
    let reused = generate("reused");
    let rust_files = snapshot(&tmp.path().join("printed"))
        .keys()
        .filter(|path| path.ends_with(".rs"))
        .count();
    assert_eq!(
        reused as usize, rust_files,
        "every Rust file comes from the cache"
    );
    assert_same_tree(
        &snapshot(&tmp.path().join("printed")),
        &snapshot(&tmp.path().join("reused")),
        "printed and reused",
    );
}

/// rustfmt names the files it prints by their canonical paths: a cache folder reached
/// through a link, and named by a relative path, formats as any other.
#[cfg(unix)]
#[test]
fn a_cache_reached_through_a_link_by_a_relative_path_formats_the_same() {
    let tmp = tempdir();
    std::fs::create_dir(tmp.path().join("real")).expect("a folder");
    std::os::unix::fs::symlink("real", tmp.path().join("link")).expect("a link");
    let generate = |out: &str, cache: &str| {
        output(
            generate_json_command(&spec("tracker.yaml"), &tmp.path().join(out))
                .current_dir(tmp.path())
                .env("BULWARK_CACHE_DIR", cache),
        )
        .expect_code(EXIT_OK);
    };
    generate("linked", "link/cache");
    assert!(
        tmp.path().join("real/cache/rustfmt-scratch/0").is_dir(),
        "rustfmt worked in the kept folder"
    );
    generate(
        "plain",
        &tmp.path().join("plain-cache").display().to_string(),
    );
    assert_same_tree(
        &snapshot(&tmp.path().join("plain")),
        &snapshot(&tmp.path().join("linked")),
        "plain and linked cache",
    );
}

/// `bulwark --format json generate … | head -c 1` closes the pipe before bulwark writes its
/// report: the generation still completes and exits 0, without a panic.
#[test]
fn a_reader_that_closes_the_pipe_early_is_not_a_failure() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let mut child = generate_json_command(&spec("ledgerly.yaml"), &out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the bulwark binary runs");
    // Generation takes far longer than this: the report meets a closed pipe.
    drop(child.stdout.take());
    let done = child.wait_with_output().expect("bulwark finishes");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(done.status.code(), Some(EXIT_OK), "stderr: {stderr}");
    assert!(out.join(".bulwark/manifest.json").is_file());
}

#[test]
fn generate_is_deterministic_across_output_dirs_and_spec_locations() {
    let tmp = tempdir();
    let first = tmp.path().join("first");
    let second = tmp.path().join("elsewhere").join("second");
    // The same spec text under another name and directory, run from another cwd.
    let copy = tmp.path().join("copy-of-hostile.yml");
    fs::copy(spec("hostile.yaml"), &copy).unwrap();

    generate_json(&spec("hostile.yaml"), &first, &[]).expect_code(EXIT_OK);
    let run = output(
        command([
            OsStr::new("generate"),
            OsStr::new("copy-of-hostile.yml"),
            OsStr::new("--out"),
            second.as_os_str(),
        ])
        .current_dir(tmp.path()),
    );
    run.expect_code(EXIT_OK);
    // Human output: one summary line on stdout, nothing on stderr.
    assert_eq!(run.stderr, "");
    assert!(
        run.stdout.starts_with("generated ") && run.stdout.lines().count() == 1,
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(" written, 0 removed, 0 unchanged"));

    assert_same_tree(&snapshot(&first), &snapshot(&second), "two generations");
}

#[test]
fn regenerating_the_same_spec_writes_nothing_and_keeps_mtimes() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let spec_path = spec("tracker.yaml");
    generate_json(&spec_path, &out, &[]).expect_code(EXIT_OK);
    let before = snapshot(&out);
    let times_before = mtimes(&out);

    let run = generate_json(&spec_path, &out, &[]);
    run.expect_code(EXIT_OK);
    let report = run.json();
    assert_eq!(report["ok"], true);
    assert_eq!(string_list(&report["written"]), Vec::<String>::new());
    assert_eq!(string_list(&report["removed"]), Vec::<String>::new());
    let generated = manifest(&out)["files"].as_object().unwrap().len();
    assert_eq!(report["unchanged"], generated);

    assert_same_tree(&before, &snapshot(&out), "regeneration");
    let times_after = mtimes(&out);
    for (path, time) in &times_before {
        assert_eq!(time, &times_after[path], "{path} was rewritten");
    }
}

#[test]

fn regenerating_the_same_spec_leaves_the_manifest_mtime_alone() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    let path = out.join(".bulwark/manifest.json");
    let before = fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    assert_eq!(before, fs::metadata(&path).unwrap().modified().unwrap());
}

// ---------------------------------------------------------------------------------------
// generate: refusals
// ---------------------------------------------------------------------------------------

#[test]
fn hand_edited_file_refuses_regeneration_and_force_restores_it() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let spec_path = spec("tracker.yaml");
    generate_json(&spec_path, &out, &[]).expect_code(EXIT_OK);
    let pristine = snapshot(&out);

    let edited = out.join("crates/server/src/lib.rs");
    let mut text = fs::read_to_string(&edited).unwrap();
    text.push_str("// a hand edit\n");
    fs::write(&edited, &text).unwrap();
    let before = snapshot(&out);

    // Same spec, JSON output.
    let run = generate_json(&spec_path, &out, &[]);
    run.expect_code(EXIT_REFUSED);
    assert_eq!(run.stderr, "");
    let doc = run.json();
    assert_json_error(&doc, "refused", "crates/server/src/lib.rs");
    assert!(doc["error"]["help"].as_str().unwrap().contains("--force"));
    assert_same_tree(&before, &snapshot(&out), "refused regeneration");

    // A changed spec (which would rewrite and remove other files), human output: still
    // nothing at all changes.
    let smaller = tracker_without_time_entry(tmp.path());
    let run = generate_human(&smaller, &out, &[]);
    run.expect_code(EXIT_REFUSED);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("crates/server/src/lib.rs"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("edited by hand"), "{}", run.stderr);
    assert_same_tree(
        &before,
        &snapshot(&out),
        "refused regeneration (changed spec)",
    );
    assert_eq!(fs::read_to_string(&edited).unwrap(), text);

    // --force overwrites exactly the edited file.
    let run = generate_json(&spec_path, &out, &["--force"]);
    run.expect_code(EXIT_OK);
    let report = run.json();
    assert_eq!(
        string_list(&report["written"]),
        ["crates/server/src/lib.rs"]
    );
    assert_eq!(string_list(&report["removed"]), Vec::<String>::new());
    assert_same_tree(&pristine, &snapshot(&out), "forced regeneration");
}

#[test]
fn every_hand_edited_file_is_named_in_one_refusal() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    for path in ["README.md", "crates/server/src/lib.rs", TIME_ENTRY_FILES[0]] {
        let mut text = fs::read_to_string(out.join(path)).unwrap();
        text.push_str("// a hand edit\n");
        fs::write(out.join(path), text).unwrap();
    }
    let before = snapshot(&out);
    let smaller = tracker_without_time_entry(tmp.path());
    let run = generate_json(&smaller, &out, &[]);
    run.expect_code(EXIT_REFUSED);
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    for path in ["README.md", "crates/server/src/lib.rs", TIME_ENTRY_FILES[0]] {
        assert!(message.contains(&format!("`{path}`")), "{path}: {message}");
    }
    assert!(message.contains(" were edited by hand"), "{message}");
    assert_same_tree(&before, &snapshot(&out), "refused regeneration");
}

#[test]
fn something_bulwark_did_not_make_in_the_way_is_refused_not_an_io_error() {
    let tmp = tempdir();
    // A folder where a file goes.
    let out = tmp.path().join("folder");
    fs::create_dir_all(out.join("README.md")).unwrap();
    let run = generate_json(&spec("tracker.yaml"), &out, &[]);
    run.expect_code(EXIT_REFUSED);
    assert_json_error(
        &run.json(),
        "refused",
        "`README.md` exists and was not generated",
    );
    // A file where a folder goes.
    let out = tmp.path().join("file");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("crates"), "mine").unwrap();
    let run = generate_json(&spec("tracker.yaml"), &out, &["--force"]);
    run.expect_code(EXIT_REFUSED);
    assert_json_error(
        &run.json(),
        "refused",
        "`crates` exists and was not generated",
    );
    assert_eq!(fs::read_to_string(out.join("crates")).unwrap(), "mine");
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        1,
        "something was written"
    );
}

#[test]
fn line_endings_a_checkout_turned_into_crlf_are_no_hand_edit() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    // As `git checkout` with `core.autocrlf` leaves them: every file, the manifest too.
    for (path, contents) in snapshot(&out) {
        if let Some(bytes) = contents {
            let text = String::from_utf8(bytes).unwrap();
            assert!(!text.contains('\r'), "{path} holds a carriage return");
            fs::write(out.join(&path), text.replace('\n', "\r\n")).unwrap();
        }
    }
    let checked_out = snapshot(&out);

    // The same spec: nothing to do, and the line endings stay as the checkout made them.
    let run = generate_json(&spec("tracker.yaml"), &out, &[]);
    run.expect_code(EXIT_OK);
    assert_eq!(string_list(&run.json()["written"]), Vec::<String>::new());
    assert_same_tree(
        &checked_out,
        &snapshot(&out),
        "regeneration of the same spec",
    );

    // A real edit among them is still one.
    let edited = out.join("crates/server/src/lib.rs");
    let mut text = fs::read_to_string(&edited).unwrap();
    text.push_str("// a hand edit\r\n");
    fs::write(&edited, &text).unwrap();
    let smaller = tracker_without_time_entry(tmp.path());
    let run = generate_json(&smaller, &out, &[]);
    run.expect_code(EXIT_REFUSED);
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("`crates/server/src/lib.rs` was edited by hand"),
        "{message}"
    );

    // Without it, a changed spec removes the dropped resource's files and rewrites the
    // changed ones.
    let restored = checked_out["crates/server/src/lib.rs"].as_deref().unwrap();
    fs::write(&edited, restored).unwrap();
    let run = generate_json(&smaller, &out, &[]);
    run.expect_code(EXIT_OK);
    let doc = run.json();
    let mut removed = string_list(&doc["removed"]);
    removed.sort();
    assert_eq!(removed, TIME_ENTRY_FILES);
    assert!(string_list(&doc["kept"]).is_empty(), "{doc}");
    assert!(!string_list(&doc["written"]).is_empty(), "{doc}");
    for path in string_list(&doc["written"]) {
        assert!(
            !fs::read_to_string(out.join(&path)).unwrap().contains('\r'),
            "{path}"
        );
    }
}

#[test]
fn hand_edited_file_that_the_new_spec_drops_refuses_regeneration() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    let edited = out.join(TIME_ENTRY_FILES[0]);
    let mut text = fs::read_to_string(&edited).unwrap();
    text.push_str("// keep me\n");
    fs::write(&edited, &text).unwrap();
    let before = snapshot(&out);

    let smaller = tracker_without_time_entry(tmp.path());
    let run = generate_json(&smaller, &out, &[]);
    run.expect_code(EXIT_REFUSED);
    assert_json_error(&run.json(), "refused", TIME_ENTRY_FILES[0]);
    assert_same_tree(&before, &snapshot(&out), "refused removal");
}

#[test]
fn foreign_file_refuses_first_generation_and_nothing_is_written() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let readme = out.join("README.md");
    fs::write(&readme, "# My project\n\nmine, not bulwark's\n").unwrap();
    let before = snapshot(&out);

    let run = generate_json(&spec("tracker.yaml"), &out, &[]);
    run.expect_code(EXIT_REFUSED);
    assert_eq!(run.stderr, "");
    let doc = run.json();
    assert_json_error(&doc, "refused", "README.md");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not generated by bulwark")
    );
    // The strongest property: the directory holds exactly what it held before — not even
    // an empty `.bulwark` directory or a staging leftover.
    assert_same_tree(&before, &snapshot(&out), "refused first generation");
    assert_eq!(files_of(&snapshot(&out)), ["README.md"]);

    // Nor does --force take it over: it is not bulwark's to overwrite.
    generate_json(&spec("tracker.yaml"), &out, &["--force"]).expect_code(EXIT_REFUSED);
    assert_same_tree(&before, &snapshot(&out), "forced first generation");
    // Moved away, it is generated.
    fs::remove_file(&readme).unwrap();
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    let text = fs::read_to_string(&readme).unwrap();
    assert!(text.contains("@generated"), "{text}");
    assert!(
        manifest(&out)["files"]
            .as_object()
            .unwrap()
            .contains_key("README.md")
    );
}

#[test]
fn corrupt_manifest_fails_without_touching_the_directory() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    fs::write(out.join(".bulwark/manifest.json"), "{not json").unwrap();
    let before = snapshot(&out);

    let run = generate_json(&spec("tracker.yaml"), &out, &[]);
    run.expect_code(EXIT_USAGE_OR_IO);
    let doc = run.json();
    assert_eq!(doc["ok"], false);
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains(".bulwark/manifest.json"),
        "{doc}"
    );
    assert_same_tree(&before, &snapshot(&out), "corrupt manifest");
}

#[test]

fn manifest_paths_outside_the_output_dir_are_never_touched() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let victim_dir = tmp.path().join("victim");
    fs::create_dir(&victim_dir).unwrap();
    let victim = victim_dir.join("precious.txt");
    fs::write(&victim, "precious\n").unwrap();

    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    // A manifest tampered with (or from a malicious repository) claims a file outside.
    let manifest_path = out.join(".bulwark/manifest.json");
    let mut manifest = manifest(&out);
    manifest["files"]["../victim/precious.txt"] = Value::String(sha256_hex(b"precious\n"));
    fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();

    let run = generate_json(&spec("tracker.yaml"), &out, &[]);
    // Refusing or ignoring the entry are both fine; deleting the file is not.
    assert!(
        victim.is_file(),
        "a file outside --out was deleted: {}",
        run.stdout
    );
}

#[test]
fn manifest_entries_for_git_or_target_are_refused() {
    for listed in [".git/config", "target/debug/app", ".bulwark/other"] {
        let tmp = tempdir();
        let out = tmp.path().join("out");
        generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
        let precious = out.join(listed);
        fs::create_dir_all(precious.parent().unwrap()).unwrap();
        fs::write(&precious, "precious\n").unwrap();
        let mut manifest = manifest(&out);
        manifest["files"][listed] = Value::String(sha256_hex(b"precious\n"));
        fs::write(
            out.join(".bulwark/manifest.json"),
            serde_json::to_string_pretty(&manifest).unwrap(),
        )
        .unwrap();
        let run = generate_json(&spec("tracker.yaml"), &out, &["--force"]);
        run.expect_code(EXIT_USAGE_OR_IO);
        assert!(run.stdout.contains(listed), "{}", run.stdout);
        assert_eq!(fs::read_to_string(&precious).unwrap(), "precious\n");
    }
}

#[test]
fn symbolic_links_inside_the_output_are_never_followed() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::remove_dir_all(out.join("crates")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("crates")).unwrap();
    let manifest_before = fs::read(out.join(".bulwark/manifest.json")).unwrap();
    let run = generate_json(&spec("tracker.yaml"), &out, &["--force"]);
    run.expect_code(EXIT_REFUSED);
    assert!(run.stdout.contains("symbolic link"), "{}", run.stdout);
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "wrote through the link"
    );
    assert!(
        fs::symlink_metadata(out.join("crates"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read(out.join(".bulwark/manifest.json")).unwrap(),
        manifest_before
    );
}

#[test]
fn force_never_deletes_a_hand_edited_file_the_spec_dropped() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    let edited = out.join(TIME_ENTRY_FILES[0]);
    let mut text = fs::read_to_string(&edited).unwrap();
    text.push_str("// my change\n");
    fs::write(&edited, &text).unwrap();
    let smaller = tracker_without_time_entry(tmp.path());
    let run = generate_json(&smaller, &out, &["--force"]);
    run.expect_code(EXIT_OK);
    let doc = run.json();
    assert_eq!(string_list(&doc["kept"]), [TIME_ENTRY_FILES[0]]);
    assert_eq!(fs::read_to_string(&edited).unwrap(), text);
}

// ---------------------------------------------------------------------------------------
// generate: a generation killed while moving its files into place
// ---------------------------------------------------------------------------------------

/// Generates `spec` into `out` as `generate_json` does, the (debug) process killed before it
/// renames anything onto a path ending with `before`, as a kill part way through would.
fn generate_killed(spec: &Path, out: &Path, before: &str) {
    let status = generate_json_command(spec, out)
        .env("BULWARK_TEST_ABORT_BEFORE_RENAME_TO", before)
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), None, "killed before renaming onto {before}");
}

/// The staging folders left in `out`.
fn staging_folders(out: &Path) -> Vec<PathBuf> {
    fs::read_dir(out.join(".bulwark"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("staging-")
        })
        .collect()
}

/// tracker.yaml, then tracker without `time_entry` (files changed, added and removed), killed
/// part way: the next generation finishes the moves first, and the directory ends up as a
/// generation that was never interrupted, whether the kill left a file missing or no
/// manifest at all.
#[test]
fn a_generation_killed_while_moving_is_finished_by_the_next() {
    let tmp = tempdir();
    let smaller = tracker_without_time_entry(tmp.path());
    let clean = tmp.path().join("clean");
    assert_eq!(generate_json(&spec("tracker.yaml"), &clean, &[]).code, 0);
    assert_eq!(generate_json(&smaller, &clean, &[]).code, 0);
    for before in ["crates/server/src/routes.rs", ".bulwark/manifest.json"] {
        let out = tmp.path().join(format!("out-{}", before.len()));
        assert_eq!(generate_json(&spec("tracker.yaml"), &out, &[]).code, 0);
        generate_killed(&smaller, &out, before);
        assert!(!out.join(before).exists(), "the kill left {before} missing");
        let staging = staging_folders(&out);
        assert_eq!(staging.len(), 1, "{staging:?}");
        assert!(staging[0].join("journal.json").is_file());

        let run = generate_json(&smaller, &out, &[]);
        assert_eq!(run.code, 0, "{}", run.stdout);
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(doc["interrupted_finished"], 1, "{doc}");
        assert_eq!(doc["written"], Value::Array(Vec::new()), "{doc}");
        assert_same_tree(&snapshot(&clean), &snapshot(&out), before);
    }
}

/// A file the interrupted moves would still replace, edited since: nothing is touched, the
/// refusal names it (exit 4), and once it is put back the next generation finishes.
/// Staging folders of runs killed before any move are litter, removed; one that kept files
/// a failed generation could not put back is left alone.
#[test]
fn an_interrupted_generation_is_not_finished_over_an_edit() {
    let tmp = tempdir();
    let smaller = tracker_without_time_entry(tmp.path());
    let out = tmp.path().join("out");
    assert_eq!(generate_json(&spec("tracker.yaml"), &out, &[]).code, 0);
    let edited = "crates/server/tests/service.rs";
    let original = fs::read_to_string(out.join(edited)).unwrap();
    generate_killed(&smaller, &out, "crates/server/src/routes.rs");
    fs::write(out.join(edited), format!("{original}// mine\n")).unwrap();
    let before = snapshot(&out);

    let run = generate_json(&smaller, &out, &[]);
    assert_eq!(run.code, 4, "{}", run.stdout);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_json_error(&doc, "refused", edited);
    assert_eq!(doc["error"]["code"], "bulwark::emit::interrupted", "{doc}");
    assert_same_tree(&before, &snapshot(&out), "refused");

    fs::write(out.join(edited), original).unwrap();
    let litter = out.join(".bulwark/staging-litter");
    fs::create_dir(&litter).unwrap();
    fs::write(litter.join("0"), "staged, never moved").unwrap();
    let kept = out.join(".bulwark/staging-kept");
    fs::create_dir(&kept).unwrap();
    fs::write(kept.join("undone.json"), "{}").unwrap();
    fs::write(
        kept.join("previous-0"),
        "a file a failed generation could not put back",
    )
    .unwrap();
    let run = generate_json(&smaller, &out, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["interrupted_finished"], 1, "{doc}");
    assert_eq!(staging_folders(&out), vec![kept]);
}

/// A journal is followed by any generation, locked or not, and only inside the directory:
/// one naming a path outside is an error that moves nothing. Set-aside files with no
/// journal are left alone.
#[test]
fn a_journal_is_followed_by_every_generation_and_only_inside_the_directory() {
    let tmp = tempdir();
    let smaller = tracker_without_time_entry(tmp.path());

    // Without a cache (so without the directory's lock), the interrupted generation is
    // finished all the same before this one, which then takes the directory back.
    let out = tmp.path().join("out");
    let back = tmp.path().join("back");
    assert_eq!(generate_json(&spec("tracker.yaml"), &back, &[]).code, 0);
    assert_eq!(generate_json(&smaller, &back, &[]).code, 0);
    assert_eq!(generate_json(&spec("tracker.yaml"), &back, &[]).code, 0);
    assert_eq!(generate_json(&spec("tracker.yaml"), &out, &[]).code, 0);
    generate_killed(&smaller, &out, "crates/server/src/routes.rs");
    let no_cache = tmp.path().join("not-a-folder");
    fs::write(&no_cache, "").unwrap();
    let run = output(
        generate_json_command(&spec("tracker.yaml"), &out).env("BULWARK_CACHE_DIR", &no_cache),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["interrupted_finished"], 1, "{doc}");
    assert_same_tree(
        &snapshot(&back),
        &snapshot(&out),
        "finished, then taken back",
    );

    // Planted: a journal naming a file outside the directory.
    let planted = out.join(".bulwark/staging-planted");
    fs::create_dir(&planted).unwrap();
    fs::write(planted.join("0"), "outside").unwrap();
    fs::write(
        planted.join("journal.json"),
        r#"{"puts":[["0","../escaped.txt",null]],"removals":[],"manifest":false}"#,
    )
    .unwrap();
    let run = generate_json(&smaller, &out, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_json_error(&doc, "io", "not a plain path inside the directory");
    assert!(!tmp.path().join("escaped.txt").exists());
    fs::remove_dir_all(&planted).unwrap();

    // `.bulwark` a link to a folder outside: nothing there is finished or removed.
    let linked = tmp.path().join("linked");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("staging-important")).unwrap();
    fs::write(outside.join("staging-important/notes.txt"), "mine").unwrap();
    fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(&outside, linked.join(".bulwark")).unwrap();
    let run = generate_json(&smaller, &linked, &[]);
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert!(outside.join("staging-important/notes.txt").is_file());

    // Set aside by an older version, with no journal: left for its owner.
    let older = out.join(".bulwark/staging-older");
    fs::create_dir(&older).unwrap();
    fs::write(older.join("previous-0"), "a file set aside").unwrap();
    assert_eq!(generate_json(&smaller, &out, &[]).code, 0);
    assert!(older.join("previous-0").is_file());
}

// ---------------------------------------------------------------------------------------
// generate: files bulwark does not own
// ---------------------------------------------------------------------------------------

#[test]
fn regeneration_keeps_unmanaged_files_and_removes_dropped_resources() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    generate_json(&spec("tracker.yaml"), &out, &[]).expect_code(EXIT_OK);
    for path in TIME_ENTRY_FILES {
        assert!(out.join(path).is_file(), "{path}");
    }

    let unmanaged: [(&str, &str); 3] = [
        ("notes.txt", "my notes\n"),
        ("target/x", "build output\n"),
        ("crates/server/src/extra.rs", "// mine\n"),
    ];
    for (path, contents) in unmanaged {
        let path = out.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    // Same spec: nothing written, the unmanaged files untouched.
    let run = generate_json(&spec("tracker.yaml"), &out, &[]);
    run.expect_code(EXIT_OK);
    let report = run.json();
    assert_eq!(string_list(&report["written"]), Vec::<String>::new());
    assert_eq!(string_list(&report["removed"]), Vec::<String>::new());
    for (path, contents) in unmanaged {
        assert_eq!(fs::read_to_string(out.join(path)).unwrap(), contents);
    }

    // A spec without `time_entry`: its files go, and only they.
    let smaller = tracker_without_time_entry(tmp.path());
    let before = snapshot(&out);
    let run = generate_json(&smaller, &out, &[]);
    run.expect_code(EXIT_OK);
    let report = run.json();
    assert_eq!(string_list(&report["removed"]), TIME_ENTRY_FILES);
    let written = string_list(&report["written"]);
    assert!(!written.is_empty());
    // Its table goes by a new migration (the spec acknowledges the drop).
    let is_file_of = |p: &String| p.contains("time_entry") && !p.starts_with("migrations/");
    assert!(!written.iter().any(is_file_of), "{written:?}");
    assert!(
        written.contains(&"migrations/0002_drop_time_entry.sql".to_owned()),
        "{written:?}"
    );
    for path in TIME_ENTRY_FILES {
        assert!(!out.join(path).exists(), "{path} survived");
    }
    for (path, contents) in unmanaged {
        assert_eq!(fs::read_to_string(out.join(path)).unwrap(), contents);
    }
    let listed = manifest(&out)["files"].as_object().unwrap().clone();
    assert!(!listed.keys().any(is_file_of));

    // Everything else: either rewritten (and reported), or byte-identical.
    let after = snapshot(&out);
    for (path, contents) in &before {
        if contents.is_none() || path == ".bulwark/manifest.json" {
            continue;
        }
        if TIME_ENTRY_FILES.contains(&path.as_str()) {
            continue;
        }
        if after.get(path) != Some(contents) {
            assert!(written.contains(path), "{path} changed but is not reported");
        }
    }
    for (path, recorded) in &listed {
        assert_eq!(
            sha256_hex(after[path].as_ref().unwrap()),
            recorded.as_str().unwrap(),
            "{path}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// generate: failures that write nothing
// ---------------------------------------------------------------------------------------

/// A lock that cannot be taken (here its file is a folder) stops the generation before
/// anything is written, and says where the lock lives and what to do.
#[test]
fn a_lock_that_cannot_be_taken_is_a_clear_error() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    let key = sha256_hex(
        tmp.path()
            .canonicalize()
            .unwrap()
            .join("out")
            .as_os_str()
            .as_encoded_bytes(),
    );
    fs::create_dir_all(cache.join("locks").join(&key)).unwrap();
    let run = output(
        generate_json_command(&spec("ledgerly.yaml"), &out).env("BULWARK_CACHE_DIR", &cache),
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_json_error(&doc, "io", &key);
    assert_eq!(doc["error"]["code"], "bulwark::emit::lock", "{doc}");
    assert!(
        doc["error"]["help"]
            .as_str()
            .unwrap()
            .contains("BULWARK_CACHE_DIR"),
        "{doc}"
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn invalid_spec_exits_1_and_creates_no_output_dir() {
    let tmp = tempdir();
    for name in [
        "01-yaml-unclosed-bracket.yaml",
        "05-empty-spec.yaml",
        "24-undefined-role.yaml",
        "multi-01-fields-and-roles.yaml",
    ] {
        let out = tmp.path().join(name).join("out");
        let run = generate_human(&invalid_spec(name), &out, &[]);
        run.expect_code(EXIT_INVALID_SPEC);
        assert_eq!(run.stdout, "", "{name}");
        assert!(!run.stderr.is_empty(), "{name}");
        assert!(!out.exists(), "{name}: {} was created", out.display());
        assert!(!tmp.path().join(name).exists(), "{name}: parent created");

        let run = generate_json(&invalid_spec(name), &out, &[]);
        run.expect_code(EXIT_INVALID_SPEC);
        let doc = run.json();
        assert_eq!(doc["ok"], false);
        assert!(!doc["diagnostics"].as_array().unwrap().is_empty(), "{name}");
        assert!(!out.exists(), "{name}: {} was created", out.display());
    }

    // An existing (empty) output directory stays empty.
    let out = tmp.path().join("existing");
    fs::create_dir(&out).unwrap();
    generate_json(&invalid_spec("24-undefined-role.yaml"), &out, &[])
        .expect_code(EXIT_INVALID_SPEC);
    assert!(snapshot(&out).is_empty());
}

#[test]
fn missing_spec_exits_2_naming_the_path_on_stderr() {
    let tmp = tempdir();
    let missing = tmp.path().join("no-such-spec.yaml");
    let out = tmp.path().join("out");

    let run = generate_human(&missing, &out, &[]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    assert!(!out.exists());

    let run = bulwark([OsStr::new("validate"), missing.as_os_str()]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains(&missing.display().to_string()));

    let run = bulwark([
        OsStr::new("validate"),
        missing.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("json"),
    ]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stderr, "");
    assert_json_error(&run.json(), "io", &missing.display().to_string());
}

#[test]
fn check_without_a_branch_is_a_usage_error_naming_the_flag() {
    let tmp = tempdir();
    let run = bulwark([
        OsStr::new("check"),
        spec("ledgerly.yaml").as_os_str(),
        OsStr::new("--git"),
        tmp.path().as_os_str(),
    ]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert!(run.stderr.contains("--branch"), "{}", run.stderr);
}

#[test]
fn a_branch_beside_out_is_a_usage_error_not_ignored() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let run = bulwark([
        OsStr::new("generate"),
        spec("tracker.yaml").as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
        OsStr::new("--branch"),
        OsStr::new("generated"),
    ]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert!(run.stderr.contains("--branch"), "{}", run.stderr);
    assert!(!out.exists());
}

#[test]
fn terminal_control_characters_from_a_spec_are_never_printed_raw() {
    let tmp = tempdir();
    let tracker = fs::read_to_string(spec("tracker.yaml")).unwrap();
    // An undefined role whose name would retitle the terminal, and an app name that would
    // colour it.
    let hostile = tracker
        .replacen(
            "create: { roles: [admin, manager], scope: projects.write, rate_limit: 30/min }",
            "create: { roles: [\"adm\\e]0;PWNED\\ain\"], scope: projects.write, rate_limit: 30/min }",
            1,
        )
        .replacen("name: tracker", "name: \"track\\e[31mer\"", 1);
    assert_ne!(hostile, tracker);
    let path = tmp.path().join("escapes.yaml");
    fs::write(&path, hostile).unwrap();
    let run = bulwark([OsStr::new("validate"), path.as_os_str()]);
    run.expect_code(EXIT_INVALID_SPEC);
    assert!(
        !run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{7}'),
        "{:?}",
        run.stderr
    );
    assert!(run.stderr.contains("<U+001B>"), "{}", run.stderr);
    assert!(run.stderr.contains("app name"), "{}", run.stderr);
}

#[test]
fn a_spec_that_is_not_utf8_is_an_invalid_spec_located_at_the_byte() {
    let tmp = tempdir();
    let path = tmp.path().join("latin1.yaml");
    fs::write(&path, b"bulwark: 1\napp:\n  name: caf\xe9\n").unwrap();
    let out = tmp.path().join("out");
    let run = generate_json(&path, &out, &[]);
    run.expect_code(EXIT_INVALID_SPEC);
    let doc = run.json();
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "not-utf8", "{doc}");
    assert_eq!(d["location"]["line"], 3, "{doc}");
    assert_eq!(d["location"]["column"], 12, "{doc}");
    assert!(!out.exists());
}

#[test]
fn a_huge_input_is_refused_unread() {
    let run = bulwark(["--format", "json", "validate", "/dev/zero"]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.json()["error"]["code"], "bulwark::io::too_large");
}

#[test]
fn a_second_yaml_document_is_named_as_such() {
    let tmp = tempdir();
    let path = tmp.path().join("two.yaml");
    fs::write(&path, "bulwark: 1\napp: { name: x }\n---\nb: 2\n").unwrap();
    let run = bulwark([
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("validate"),
        path.as_os_str(),
    ]);
    run.expect_code(EXIT_INVALID_SPEC);
    let message = run.json()["diagnostics"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("second document"), "{message}");
    assert!(!message.contains("from_str"), "{message}");
}

#[test]
fn options_of_a_commit_beside_out_are_usage_errors_not_ignored() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    for (option, value) in [
        ("--author", "A <a@example.com>"),
        ("--committer", "C <c@example.com>"),
        ("--commit-time", "3"),
        ("--prefix", "service"),
    ] {
        let run = bulwark([
            OsStr::new("generate"),
            spec("tracker.yaml").as_os_str(),
            OsStr::new("--out"),
            out.as_os_str(),
            OsStr::new(option),
            OsStr::new(value),
        ]);
        run.expect_code(EXIT_USAGE_OR_IO);
        assert!(run.stderr.contains(option), "{option}: {}", run.stderr);
        assert!(!out.exists(), "{option}");
    }
}

#[test]
fn an_argument_that_is_not_utf8_gets_a_usage_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt as _;
    let odd = OsStr::from_bytes(b"\xff.yaml");
    let run = bulwark([odd]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let run = bulwark([
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("validate"),
        odd,
        OsStr::new("extra"),
    ]);
    run.expect_code(EXIT_USAGE_OR_IO);
    let doc = run.json();
    assert_eq!(doc["error"]["kind"], "usage", "{doc}");
    assert_eq!(doc["error"]["code"], "bulwark::usage", "{doc}");
}

#[test]
fn the_last_format_given_decides_how_a_usage_error_is_printed() {
    let tracker = spec("tracker.yaml");
    let tracker = tracker.to_str().unwrap();
    let run = bulwark([
        "--format", "json", "validate", tracker, "--format", "human", "--bogus",
    ]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("--bogus"), "{}", run.stderr);
    let run = bulwark([
        "--format",
        "human",
        "validate",
        tracker,
        "--format=json",
        "--bogus",
    ]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.json()["error"]["kind"], "usage");
}

#[test]
fn unreadable_spec_a_directory_exits_2_naming_the_path() {
    let tmp = tempdir();
    let dir_spec = tmp.path().join("a-directory.yaml");
    fs::create_dir(&dir_spec).unwrap();
    let out = tmp.path().join("out");

    let run = generate_human(&dir_spec, &out, &[]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains(&dir_spec.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(!out.exists());

    let run = bulwark([OsStr::new("validate"), dir_spec.as_os_str()]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains(&dir_spec.display().to_string()));
}

#[test]
fn out_pointing_at_a_regular_file_exits_2_and_leaves_it_alone() {
    let tmp = tempdir();
    let out = tmp.path().join("not-a-dir");
    fs::write(&out, "precious\n").unwrap();

    let run = generate_json(&spec("tracker.yaml"), &out, &[]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stderr, "");
    let doc = run.json();
    assert_json_error(&doc, "io", &out.display().to_string());
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not a directory"),
        "{doc}"
    );

    let run = generate_human(&spec("tracker.yaml"), &out, &["--force"]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains(&out.display().to_string()));

    assert_eq!(fs::read_to_string(&out).unwrap(), "precious\n");
    assert_eq!(files_of(&snapshot(tmp.path())), ["not-a-dir"]);
}

#[test]
fn a_rustfmt_that_cannot_run_is_reported_in_its_own_words() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let broken = tmp.path().join("rustfmt");
    fs::write(
        &broken,
        "#!/bin/sh\necho 'error: Unable to proceed. Could not locate working directory.' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&broken, fs::Permissions::from_mode(0o755)).unwrap();
    let run =
        output(generate_json_command(&spec("tracker.yaml"), &out).env("BULWARK_RUSTFMT", &broken));
    run.expect_code(EXIT_USAGE_OR_IO);
    let report = run.json();
    assert_json_error(&report, "rustfmt", "rustfmt cannot run");
    assert_json_error(
        &report,
        "rustfmt",
        "exited with code 1: error: Unable to proceed. Could not locate working directory.",
    );
    assert!(!out.exists());
}

#[test]
fn missing_rustfmt_exits_2_and_writes_nothing() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let spec_path = spec("tracker.yaml");

    let run = output(
        command([
            OsStr::new("generate"),
            spec_path.as_os_str(),
            OsStr::new("--out"),
            out.as_os_str(),
        ])
        .env("BULWARK_RUSTFMT", "/nonexistent/rustfmt"),
    );
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("rustfmt"), "{}", run.stderr);
    assert!(run.stderr.contains("BULWARK_RUSTFMT"), "{}", run.stderr);
    assert!(!out.exists());

    let run = output(
        generate_json_command(&spec_path, &out).env("BULWARK_RUSTFMT", "/nonexistent/rustfmt"),
    );
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stderr, "");
    assert_json_error(&run.json(), "rustfmt", "rustfmt");
    assert!(!out.exists());
    assert!(snapshot(tmp.path()).is_empty());
}

// ---------------------------------------------------------------------------------------
// Usage errors
// ---------------------------------------------------------------------------------------

#[track_caller]
fn assert_usage_error(args: &[&str], needle: &str) {
    let run = bulwark(args);
    run.expect_code(EXIT_USAGE_OR_IO);
    if args.windows(2).any(|w| w == ["--format", "json"]) {
        // Programs asked for JSON: the usage error is a JSON document on stdout.
        assert_eq!(run.stderr, "", "{args:?}");
        let doc = run.json();
        assert_eq!(doc["ok"], false, "{doc}");
        assert_eq!(doc["error"]["kind"], "usage", "{doc}");
        assert!(
            doc["error"]["detail"].as_str().unwrap().contains(needle),
            "{args:?}: {doc}"
        );
        return;
    }
    assert_eq!(run.stdout, "", "{args:?}");
    assert!(
        run.stderr.contains(needle),
        "{args:?}: stderr should mention `{needle}`:\n{}",
        run.stderr
    );
}

#[test]
fn usage_error_no_subcommand_exits_2() {
    // Without arguments clap prints the help (to stderr) instead of an error line.
    assert_usage_error(&[], "Usage: bulwark");
    assert_usage_error(&["--format", "json"], "requires a subcommand");
}

#[test]
fn usage_error_unknown_flag_exits_2() {
    let tracker = spec("tracker.yaml");
    let tracker = tracker.to_str().unwrap();
    assert_usage_error(&["--bogus", "validate", tracker], "--bogus");
    assert_usage_error(&["validate", tracker, "--bogus"], "--bogus");
}

#[test]
fn usage_error_generate_without_out_exits_2() {
    let tmp = tempdir();
    let tracker = spec("tracker.yaml");
    let run =
        output(command([OsStr::new("generate"), tracker.as_os_str()]).current_dir(tmp.path()));
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("--out"), "{}", run.stderr);
    assert!(snapshot(tmp.path()).is_empty());
}

#[test]
fn usage_error_unknown_format_exits_2() {
    let tracker = spec("tracker.yaml");
    let tracker = tracker.to_str().unwrap();
    assert_usage_error(&["validate", tracker, "--format", "xml"], "xml");
    assert_usage_error(&["--format", "xml", "schema"], "xml");
}

#[test]
fn usage_error_unknown_subcommand_exits_2() {
    assert_usage_error(&["frobnicate"], "frobnicate");
}

// ---------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------

#[test]
fn validate_accepts_every_example_spec() {
    for name in EXAMPLE_SPECS {
        let path = spec(name);
        let run = bulwark([
            OsStr::new("--format"),
            OsStr::new("json"),
            OsStr::new("validate"),
            path.as_os_str(),
        ]);
        run.expect_code(EXIT_OK);
        assert_eq!(run.stderr, "", "{name}");
        let doc = run.json();
        assert_eq!(doc["ok"], true, "{name}");
        assert_eq!(doc["file"], path.display().to_string());
        assert!(doc["resources"].as_u64().unwrap() > 0, "{name}: {doc}");
        assert!(doc["operations"].as_u64().unwrap() > 0, "{name}: {doc}");

        let run = bulwark([OsStr::new("validate"), path.as_os_str()]);
        run.expect_code(EXIT_OK);
        assert_eq!(run.stderr, "", "{name}");
        assert!(run.stdout.contains(": valid ("), "{name}: {}", run.stdout);
    }
}

#[test]
fn validate_invalid_spec_reports_located_diagnostics_as_json() {
    let path = invalid_spec("24-undefined-role.yaml");
    let run = bulwark([
        OsStr::new("validate"),
        path.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("json"),
    ]);
    run.expect_code(EXIT_INVALID_SPEC);
    assert_eq!(run.stderr, "");
    let doc = run.json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["file"], path.display().to_string());
    let diagnostics = doc["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{doc}");
    let d = &diagnostics[0];
    assert_eq!(d["code"], "undefined-role");
    assert!(d["message"].as_str().unwrap().contains("editor"), "{d}");
    assert_eq!(d["location"]["line"], 32);
    assert_eq!(d["location"]["column"], 32);
}

#[test]
fn validate_reports_every_problem_in_source_order() {
    let path = invalid_spec("multi-01-fields-and-roles.yaml");
    let run = bulwark([
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("validate"),
        path.as_os_str(),
    ]);
    run.expect_code(EXIT_INVALID_SPEC);
    assert_eq!(run.stderr, "");
    let doc = run.json();
    let diagnostics = doc["diagnostics"].as_array().unwrap();
    assert!(diagnostics.len() > 1, "{doc}");
    let mut positions = Vec::new();
    for d in diagnostics {
        assert!(d["code"].as_str().is_some_and(|c| !c.is_empty()), "{d}");
        assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
        let line = d["location"]["line"].as_u64().unwrap();
        let column = d["location"]["column"].as_u64().unwrap();
        assert!(line >= 1 && column >= 1, "{d}");
        positions.push((line, column));
    }
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
}

#[test]
fn validate_invalid_spec_human_output_goes_to_stderr() {
    let path = invalid_spec("24-undefined-role.yaml");
    let run = bulwark([OsStr::new("validate"), path.as_os_str()]);
    run.expect_code(EXIT_INVALID_SPEC);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("undefined role `editor`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(":32:32"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------
// schema
// ---------------------------------------------------------------------------------------

#[test]
fn schema_prints_the_json_schema_of_the_spec() {
    let run = bulwark(["schema"]);
    run.expect_code(EXIT_OK);
    assert_eq!(run.stderr, "");
    let schema = run.json();
    assert!(schema["properties"]["resources"].is_object(), "{schema}");
    assert!(schema["properties"]["api"].is_object(), "{schema}");
    assert!(
        schema["$schema"]
            .as_str()
            .unwrap()
            .contains("json-schema.org")
    );

    // The output format does not change the schema.
    let run = bulwark(["--format", "json", "schema"]);
    run.expect_code(EXIT_OK);
    assert_eq!(run.json(), schema);
}

#[test]
fn schema_matches_the_committed_schema_file() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/bulwark.schema.json");
    let committed: Value = serde_json::from_slice(
        &fs::read(&committed).unwrap_or_else(|e| panic!("{}: {e}", committed.display())),
    )
    .unwrap();
    let run = bulwark(["schema"]);
    run.expect_code(EXIT_OK);
    assert_eq!(
        run.json(),
        committed,
        "run `bulwark schema > schema/bulwark.schema.json`"
    );
}

/// The schema an editor applies (each spec's `$schema` line) accepts what the loader
/// accepts: every example spec, and the starter `init` writes.
#[test]
fn every_example_spec_and_the_starter_validate_against_the_schema() {
    let schema: Value = bulwark(["schema"]).json();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let starter = bulwark(["--format", "json", "init", "-"]).json()["spec"]
        .as_str()
        .expect("the starter spec")
        .to_owned();
    let mut specs = vec![("init".to_owned(), starter)];
    for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            specs.push((
                path.display().to_string(),
                fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    assert!(specs.len() >= 4, "{specs:?}");
    for (name, text) in specs {
        let document: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name} does not fit the schema: {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

#[test]
fn init_writes_a_starter_spec_that_validates() {
    let tmp = tempdir();
    let path = tmp.path().join("starter.yaml");
    let run = bulwark([OsStr::new("init"), path.as_os_str()]);
    run.expect_code(EXIT_OK);
    assert_eq!(run.stderr, "");
    assert!(run.stdout.contains(&path.display().to_string()));
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("bulwark: 1"), "{text}");

    let run = bulwark([
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("validate"),
        path.as_os_str(),
    ]);
    run.expect_code(EXIT_OK);
    let doc = run.json();
    assert_eq!(doc["ok"], true);
    assert!(doc["resources"].as_u64().unwrap() > 0);
    assert!(doc["operations"].as_u64().unwrap() > 0);
}

#[test]
fn init_refuses_an_existing_file_unless_forced() {
    let tmp = tempdir();
    let path = tmp.path().join("bulwark.yaml");
    bulwark([OsStr::new("init"), path.as_os_str()]).expect_code(EXIT_OK);
    let starter = fs::read_to_string(&path).unwrap();
    fs::write(&path, "# my own spec\n").unwrap();

    let run = bulwark([OsStr::new("init"), path.as_os_str()]);
    run.expect_code(EXIT_REFUSED);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(fs::read_to_string(&path).unwrap(), "# my own spec\n");

    let run = bulwark([
        OsStr::new("init"),
        path.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("json"),
    ]);
    run.expect_code(EXIT_REFUSED);
    assert_json_error(&run.json(), "refused", &path.display().to_string());
    assert_eq!(fs::read_to_string(&path).unwrap(), "# my own spec\n");

    let run = bulwark([
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("init"),
        path.as_os_str(),
        OsStr::new("--force"),
    ]);
    run.expect_code(EXIT_OK);
    let doc = run.json();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["written"], path.display().to_string());
    assert_eq!(fs::read_to_string(&path).unwrap(), starter);
}

#[test]
#[cfg(unix)]
fn init_never_writes_through_a_link() {
    let tmp = tempdir();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let path = tmp.path().join("bulwark.yaml");
    // A link to nothing yet: refused, and nothing is created where it points.
    std::os::unix::fs::symlink(outside.join("created.yaml"), &path).unwrap();
    bulwark([OsStr::new("init"), path.as_os_str()]).expect_code(EXIT_REFUSED);
    assert!(snapshot(&outside).is_empty(), "init wrote through the link");
    // `--force` replaces the link itself, and the starter is readable by others.
    bulwark([OsStr::new("init"), path.as_os_str(), OsStr::new("--force")]).expect_code(EXIT_OK);
    assert!(
        snapshot(&outside).is_empty(),
        "init --force wrote through the link"
    );
    let metadata = fs::symlink_metadata(&path).unwrap();
    assert!(metadata.is_file());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(metadata.permissions().mode() & 0o444, 0o444);
}

#[test]
fn init_dash_prints_the_starter_spec_to_stdout() {
    let tmp = tempdir();
    let run = output(command(["init", "-"]).current_dir(tmp.path()));
    run.expect_code(EXIT_OK);
    assert_eq!(run.stderr, "");
    assert!(snapshot(tmp.path()).is_empty(), "init - wrote a file");

    let path = tmp.path().join("written.yaml");
    bulwark([OsStr::new("init"), path.as_os_str()]).expect_code(EXIT_OK);
    assert_eq!(run.stdout, fs::read_to_string(&path).unwrap());
}

#[test]
fn init_without_a_path_writes_bulwark_yaml_in_the_current_dir() {
    let tmp = tempdir();
    let run = output(command(["init"]).current_dir(tmp.path()));
    run.expect_code(EXIT_OK);
    assert_eq!(files_of(&snapshot(tmp.path())), ["bulwark.yaml"]);
    let run = output(command(["validate", "bulwark.yaml"]).current_dir(tmp.path()));
    run.expect_code(EXIT_OK);
}

#[test]
fn init_into_a_missing_directory_exits_2() {
    let tmp = tempdir();
    let path = tmp.path().join("no-such-dir").join("bulwark.yaml");
    let run = bulwark([
        OsStr::new("--format"),
        OsStr::new("json"),
        OsStr::new("init"),
        path.as_os_str(),
    ]);
    run.expect_code(EXIT_USAGE_OR_IO);
    assert_json_error(&run.json(), "io", &path.display().to_string());
    assert!(snapshot(tmp.path()).is_empty());
}

// ---------------------------------------------------------------------------------------
// --format json: one document on stdout, nothing on stderr, for every command
// ---------------------------------------------------------------------------------------

#[test]
fn json_output_is_a_single_document_for_every_command() {
    let tmp = tempdir();
    let tracker = spec("tracker.yaml");
    let invalid = invalid_spec("multi-02-payments.yaml");
    let missing = tmp.path().join("missing.yaml");
    let out = tmp.path().join("out");
    let file_out = tmp.path().join("file-out");
    fs::write(&file_out, "x").unwrap();
    let init_path = tmp.path().join("init.yaml");

    let cases: Vec<(Vec<&OsStr>, i32)> = vec![
        (vec!["validate".as_ref(), tracker.as_os_str()], EXIT_OK),
        (
            vec!["validate".as_ref(), invalid.as_os_str()],
            EXIT_INVALID_SPEC,
        ),
        (
            vec!["validate".as_ref(), missing.as_os_str()],
            EXIT_USAGE_OR_IO,
        ),
        (
            vec![
                "generate".as_ref(),
                tracker.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
            EXIT_OK,
        ),
        (
            vec![
                "generate".as_ref(),
                invalid.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
            EXIT_INVALID_SPEC,
        ),
        (
            vec![
                "generate".as_ref(),
                tracker.as_os_str(),
                "--out".as_ref(),
                file_out.as_os_str(),
            ],
            EXIT_USAGE_OR_IO,
        ),
        (vec!["init".as_ref(), init_path.as_os_str()], EXIT_OK),
        (vec!["init".as_ref(), init_path.as_os_str()], EXIT_REFUSED),
        (vec!["schema".as_ref()], EXIT_OK),
    ];
    for (args, code) in cases {
        let mut full: Vec<&OsStr> = vec!["--format".as_ref(), "json".as_ref()];
        full.extend(args.iter().copied());
        let run = bulwark(&full);
        run.expect_code(code);
        assert_eq!(run.stderr, "", "{args:?}: stderr must be empty");
        let doc = run.json();
        assert!(doc.is_object(), "{args:?}: {doc}");
        if args[0] != "schema" {
            assert_eq!(doc["ok"], code == EXIT_OK, "{args:?}: {doc}");
        }
    }
}

#[test]

fn init_dash_with_json_format_still_prints_json() {
    let run = bulwark(["--format", "json", "init", "-"]);
    run.expect_code(EXIT_OK);
    run.json();
}

#[test]
fn help_and_version_are_json_when_json_is_asked_for() {
    let run = bulwark(["--format", "json", "--version"]);
    run.expect_code(EXIT_OK);
    assert!(
        run.json()["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("bulwark "))
    );
    let run = bulwark(["--format", "json", "generate", "--help"]);
    run.expect_code(EXIT_OK);
    let doc = run.json();
    assert_eq!(doc["ok"], true);
    assert!(
        doc["help"]
            .as_str()
            .is_some_and(|h| h.contains("Usage: bulwark generate")),
        "{doc}"
    );
    let run = bulwark(["--version"]);
    run.expect_code(EXIT_OK);
    assert!(run.stdout.starts_with("bulwark "), "{}", run.stdout);
}
