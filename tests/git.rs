//! `generate --git` and `check` on temporary repositories: commits that leave HEAD, the index
//! and the working tree alone, a branch of pristine generations, reproducible commits, drift
//! found, bad input refused with the repository byte for byte untouched, and the documented
//! merge workflow keeping hand edits (and raising conflicts) across regenerations.

#![allow(clippy::unwrap_used)]

mod common;

use common::ledgerly;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BRANCH: &str = "bulwark/generated";

/// Writes `text` as a spec file in `dir` (the schema line points nowhere; it is a comment).
fn spec_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn bulwark(args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (
        output.status.code().unwrap(),
        json,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn generate(spec: &Path, repo: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "generate",
        spec.to_str().unwrap(),
        "--git",
        repo.to_str().unwrap(),
        "--branch",
        BRANCH,
    ];
    args.extend_from_slice(extra);
    let (code, json, _) = bulwark(&args);
    (code, json)
}

/// `bulwark check SPEC --git REPO --branch BRANCH [--prefix PREFIX]`: exit code and JSON.
fn check_on(spec: &Path, repo: &Path, prefix: Option<&str>) -> (i32, Value) {
    let mut args = vec![
        "check",
        spec.to_str().unwrap(),
        "--git",
        repo.to_str().unwrap(),
        "--branch",
        BRANCH,
    ];
    if let Some(prefix) = prefix {
        args.extend(["--prefix", prefix]);
    }
    let (code, json, _) = bulwark(&args);
    (code, json)
}

/// Runs git in `dir` with a fixed identity; panics unless it succeeds.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_status(dir, args);
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn git_status(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "merge.conflictStyle=merge",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// A repository with a history of its own, a staged change and an unstaged one.
fn existing_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join("README.md"), "Our product\n").unwrap();
    std::fs::write(dir.path().join("app.txt"), "one\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-qm", "our history"]);
    std::fs::write(dir.path().join("app.txt"), "one\ntwo\n").unwrap();
    git(dir.path(), &["add", "app.txt"]);
    std::fs::write(dir.path().join("README.md"), "Our product, edited\n").unwrap();
    dir
}

/// Every file under `dir` (the whole `.git` included) with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn a_generation_is_committed_without_touching_head_the_index_or_the_working_tree() {
    let repo = existing_repo();
    let head = git(repo.path(), &["rev-parse", "HEAD"]);
    let status = git(repo.path(), &["status", "--porcelain"]);
    let index = std::fs::read(repo.path().join(".git/index")).unwrap();
    let (code, json) = generate(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml"),
        repo.path(),
        &["--prefix", "service"],
    );
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["unchanged"], false);
    let commit = json["commit"].as_str().unwrap().to_owned();
    assert_eq!(git(repo.path(), &["rev-parse", BRANCH]), commit);
    assert_eq!(git(repo.path(), &["rev-parse", "HEAD"]), head);
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), status);
    assert_eq!(
        std::fs::read(repo.path().join(".git/index")).unwrap(),
        index
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("README.md")).unwrap(),
        "Our product, edited\n"
    );
    assert!(!repo.path().join("service").exists());
    // The tree: the generation under the prefix, with its manifest, and nothing else.
    let paths = git(repo.path(), &["ls-tree", "-r", "--name-only", BRANCH]);
    assert!(paths.lines().all(|p| p.starts_with("service/")), "{paths}");
    for expected in [
        "service/.bulwark/manifest.json",
        "service/PERMISSIONS.md",
        "service/crates/server/src/guard.rs",
        "service/migrations/0001_init.sql",
    ] {
        assert!(paths.lines().any(|p| p == expected), "{expected}");
    }
    // The first generation has no parent; its message names the spec and bulwark.
    assert_eq!(git(repo.path(), &["rev-list", "--count", BRANCH]), "1");
    let message = git(repo.path(), &["log", "-1", "--format=%B", BRANCH]);
    let sha = json["spec_sha256"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("Generate ledgerly from spec {}", &sha[..12])),
        "{message}"
    );
    assert!(
        message.contains(&format!("Spec-SHA256: {sha}")),
        "{message}"
    );
    assert!(message.contains("Generated-by: bulwark "), "{message}");
    assert!(
        message.contains("A service/.bulwark/manifest.json"),
        "{message}"
    );
    assert!(message.contains("A … and 29 more"), "{message}");
    // A bare repository works the same.
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["init", "-q", "--bare"]);
    let (code, json) = generate(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml"),
        bare.path(),
        &[],
    );
    assert_eq!(code, 0, "{json}");
    let paths = git(bare.path(), &["ls-tree", "-r", "--name-only", BRANCH]);
    assert!(paths.lines().any(|p| p == "crates/server/src/guard.rs"));
}

#[test]
fn an_unchanged_generation_commits_nothing_and_a_change_builds_on_the_tip() {
    let work = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "--bare"]);
    let v1 = spec_file(work.path(), "v1.yaml", &ledgerly());
    let (code, first) = generate(&v1, repo.path(), &[]);
    assert_eq!(code, 0, "{first}");
    let (code, again) = generate(&v1, repo.path(), &[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["unchanged"], true);
    assert_eq!(again["commit"], Value::Null);
    assert_eq!(again["parent"], first["commit"]);
    assert_eq!(git(repo.path(), &["rev-list", "--count", BRANCH]), "1");
    // Human output says so too.
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["generate", v1.to_str().unwrap(), "--git"])
        .arg(repo.path())
        .args(["--branch", BRANCH])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing committed"));

    let v2 = spec_file(
        work.path(),
        "v2.yaml",
        &ledgerly().replace(
            "      country: { type: string, max: 2 }\n",
            "      country: { type: string, max: 2 }\n      notes: { type: text, optional: true, description: Free notes }\n",
        ),
    );
    let (code, second) = generate(&v2, repo.path(), &[]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(
        git(repo.path(), &["rev-parse", &format!("{BRANCH}^")]),
        first["commit"].as_str().unwrap()
    );
    let modified: Vec<&str> = second["changes"]["modified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        modified.contains(&"crates/api/src/customer.rs"),
        "{modified:?}"
    );
    assert!(modified.contains(&".bulwark/manifest.json"), "{modified:?}");
    assert!(
        !modified.contains(&"crates/server/src/guard.rs"),
        "{modified:?}"
    );
}

#[test]
fn commits_with_a_pinned_time_and_identity_are_reproducible() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/tracker.yaml");
    let pinned = [
        "--commit-time",
        "1700000000",
        "--author",
        "Export Bot <bot@example.com>",
    ];
    let mut commits = Vec::new();
    for _ in 0..2 {
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q", "--bare"]);
        let (code, json) = generate(&spec, repo.path(), &pinned);
        assert_eq!(code, 0, "{json}");
        let author = git(
            repo.path(),
            &["log", "-1", "--format=%an <%ae> %at %cn", BRANCH],
        );
        assert_eq!(author, "Export Bot <bot@example.com> 1700000000 Export Bot");
        commits.push(json["commit"].as_str().unwrap().to_owned());
    }
    assert_eq!(commits[0], commits[1]);
}

#[test]
fn bad_input_is_refused_and_leaves_the_repository_untouched() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml");
    let repo = existing_repo();
    // A branch of the team's own, not made by bulwark.
    git(repo.path(), &["branch", "feature"]);

    let refused = |extra: &[&str], spec: &Path, code: i32, needle: &str| {
        let before = snapshot(repo.path());
        let mut args = vec!["generate", spec.to_str().unwrap(), "--git"];
        args.push(repo.path().to_str().unwrap());
        args.extend_from_slice(extra);
        let (status, json, _) = bulwark(&args);
        assert_eq!(status, code, "{extra:?}: {json}");
        assert!(json.to_string().contains(needle), "{extra:?}: {json}");
        assert!(
            snapshot(repo.path()) == before,
            "{extra:?} changed the repository"
        );
    };
    refused(&["--branch", "a..b"], &spec, 2, "not a branch name");
    refused(&["--branch=-x"], &spec, 2, "not a branch name");
    refused(&["--branch", "HEAD"], &spec, 2, "not a branch name");
    refused(&["--branch", "refs/heads/x"], &spec, 2, "not a branch name");
    refused(
        &["--branch", BRANCH, "--prefix", "../out"],
        &spec,
        2,
        "not a folder",
    );
    refused(
        &["--branch", BRANCH, "--prefix", "a/.git/b"],
        &spec,
        2,
        "not a folder",
    );
    refused(&["--branch", "feature"], &spec, 4, "not made by bulwark");
    refused(&["--branch", "main"], &spec, 4, "not made by bulwark");
    refused(
        &["--branch", BRANCH, "--author", "nobody"],
        &spec,
        2,
        "not an identity",
    );
    let work = tempfile::tempdir().unwrap();
    let broken = spec_file(work.path(), "broken.yaml", "bulwark: 1\napp: [\n");
    refused(&["--branch", BRANCH], &broken, 1, "");
    let invalid = spec_file(
        work.path(),
        "invalid.yaml",
        &ledgerly().replace(
            "roles: [owner], scope: invoices.write, rate_limit",
            "roles: [nobody], scope: invoices.write, rate_limit",
        ),
    );
    refused(&["--branch", BRANCH], &invalid, 1, "nobody");
    // The checked-out branch, even one bulwark made, is never moved under a working tree.
    let (code, json) = generate(&spec, repo.path(), &[]);
    assert_eq!(code, 0, "{json}");
    git(repo.path(), &["stash", "-q"]);
    git(repo.path(), &["checkout", "-q", BRANCH]);
    refused(&["--branch", BRANCH], &spec, 2, "checked out");
    git(repo.path(), &["checkout", "-q", "main"]);
    git(repo.path(), &["stash", "pop", "-q"]);
    // Nor under a linked worktree.
    let linked = tempfile::tempdir().unwrap();
    let linked_path = linked.path().join("wt");
    git(
        repo.path(),
        &[
            "worktree",
            "add",
            "-q",
            linked_path.to_str().unwrap(),
            BRANCH,
        ],
    );
    refused(&["--branch", BRANCH], &spec, 2, "checked out");
    let remove_worktree = || {
        let path = linked_path.to_str().unwrap();
        git(repo.path(), &["worktree", "remove", "--force", path]);
    };
    remove_worktree();
    // Nor when the repository is named by a linked worktree of it: the branch checked out
    // in the main working tree is still refused.
    git(
        repo.path(),
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "elsewhere",
            linked_path.to_str().unwrap(),
        ],
    );
    git(repo.path(), &["stash", "-q"]);
    git(repo.path(), &["checkout", "-q", BRANCH]);
    let before = snapshot(repo.path());
    let (code, json) = generate(&spec, &linked_path, &[]);
    assert_eq!(code, 2, "{json}");
    assert!(json.to_string().contains("checked out"), "{json}");
    assert!(
        snapshot(repo.path()) == before,
        "a worktree's generation changed the repository"
    );
    git(repo.path(), &["checkout", "-q", "main"]);
    git(repo.path(), &["stash", "pop", "-q"]);
    // And a lock is found where the branches are, whichever worktree names the repository.
    let lock = repo.path().join(format!(".git/refs/heads/{BRANCH}.lock"));
    std::fs::write(&lock, "").unwrap();
    let (code, json) = generate(&spec, &linked_path, &[]);
    assert_eq!(code, 2, "{json}");
    assert!(json.to_string().contains("locked"), "{json}");
    std::fs::remove_file(&lock).unwrap();
    remove_worktree();
    // A lock left by another git process.
    let lock = repo.path().join(format!(".git/refs/heads/{BRANCH}.lock"));
    std::fs::write(&lock, "").unwrap();
    refused(&["--branch", BRANCH], &spec, 2, "locked");
    std::fs::remove_file(&lock).unwrap();
    // Not a repository: nothing is created there.
    let plain = tempfile::tempdir().unwrap();
    let (code, json) = generate(&spec, plain.path(), &[]);
    assert_eq!(code, 2, "{json}");
    assert!(json.to_string().contains("not a git repository"), "{json}");
    assert_eq!(std::fs::read_dir(plain.path()).unwrap().count(), 0);
    // A subfolder of a repository is not that repository.
    std::fs::create_dir(repo.path().join("sub")).unwrap();
    let (code, _) = generate(&spec, &repo.path().join("sub"), &[]);
    assert_eq!(code, 2);
    // `--force` builds on a branch bulwark did not make.
    let (code, json) = generate(&spec, repo.path(), &["--force"]);
    assert_eq!(code, 0, "{json}");
    let (code, json, _) = bulwark(&[
        "generate",
        spec.to_str().unwrap(),
        "--git",
        repo.path().to_str().unwrap(),
        "--branch",
        "feature",
        "--force",
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        git(repo.path(), &["rev-parse", "feature^"]),
        git(repo.path(), &["rev-parse", "main"])
    );
    // Flags that make no sense together are usage errors.
    let (code, _, _) = bulwark(&["generate", spec.to_str().unwrap(), "--git", "x"]);
    assert_eq!(code, 2, "--git without --branch");
    let (code, _, _) = bulwark(&[
        "generate",
        spec.to_str().unwrap(),
        "--out",
        "x",
        "--git",
        "y",
        "--branch",
        "b",
    ]);
    assert_eq!(code, 2, "--out with --git");
}

#[test]
fn check_finds_a_branch_that_drifted_from_the_spec() {
    let work = tempfile::tempdir().unwrap();
    let repo = existing_repo();
    git(repo.path(), &["stash", "-q"]);
    let spec = spec_file(work.path(), "spec.yaml", &ledgerly());
    let check = |spec: &Path| check_on(spec, repo.path(), Some("service"));
    let (code, json) = check(&spec);
    assert_eq!(code, 2, "no branch yet: {json}");
    assert!(json.to_string().contains("does not exist"), "{json}");
    let (code, json) = generate(&spec, repo.path(), &["--prefix", "service"]);
    assert_eq!(code, 0, "{json}");
    let (code, json) = check(&spec);
    assert_eq!((code, json["ok"].clone()), (0, Value::Bool(true)), "{json}");
    // Someone edits the generated branch directly.
    git(repo.path(), &["checkout", "-q", BRANCH]);
    std::fs::write(repo.path().join("service/notes.txt"), "mine\n").unwrap();
    let readme = repo.path().join("service/README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    std::fs::write(&readme, format!("{text}\nedited\n")).unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "edit the generated branch"]);
    git(repo.path(), &["checkout", "-q", "main"]);
    let (code, json) = check(&spec);
    assert_eq!(code, 3, "{json}");
    assert_eq!(
        json["drift"],
        serde_json::json!([
            {"path": "service/README.md", "kind": "differs"},
            {"path": "service/notes.txt", "kind": "extra"},
        ])
    );
    // The spec changed and nobody regenerated.
    let changed = spec_file(
        work.path(),
        "changed.yaml",
        &ledgerly().replace(
            "Invoicing for agencies and their clients",
            "Invoicing for agencies",
        ),
    );
    let (code, json) = check(&changed);
    assert_eq!(code, 3, "{json}");
    assert!(
        json["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["path"] == "service/.bulwark/manifest.json"),
        "{json}"
    );
}

/// The documented workflow: generate onto `bulwark/generated`, merge it into your branch.
#[test]
fn hand_edits_survive_regeneration_merges_and_conflicts_are_raised() {
    let work = tempfile::tempdir().unwrap();
    let repo = existing_repo();
    git(repo.path(), &["commit", "-qam", "our work in progress"]);
    let merge = |repo: &Path| git_status(repo, &["merge", "--no-edit", BRANCH]);

    // Generation 1, merged into a repository with its own, unrelated history.
    let v1 = spec_file(work.path(), "v1.yaml", &ledgerly());
    assert_eq!(generate(&v1, repo.path(), &["--prefix", "service"]).0, 0);
    git(
        repo.path(),
        &["merge", "--no-edit", "--allow-unrelated-histories", BRANCH],
    );
    assert!(
        repo.path()
            .join("service/crates/api/src/customer.rs")
            .exists()
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("app.txt")).unwrap(),
        "one\ntwo\n"
    );

    // Hand edits: a generated file, a new hand-written file.
    let customer = repo.path().join("service/crates/api/src/customer.rs");
    let mut text = std::fs::read_to_string(&customer).unwrap();
    text.push_str("\n/// Written by hand.\npub fn hand_written() -> u8 {\n    7\n}\n");
    std::fs::write(&customer, &text).unwrap();
    let extra = repo.path().join("service/crates/server/src/extra.rs");
    std::fs::write(&extra, "//! Ours.\n").unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "hand edits"]);

    // Generation 2: a new field, and the exchange_rate resource removed.
    let start = ledgerly().find("  exchange_rate:").unwrap();
    let end = ledgerly().find("payments:").unwrap();
    let mut v2_text = ledgerly();
    v2_text.replace_range(
        start..end,
        "migrations:\n  drop: [exchange_rate, invoice.rate]\n\n",
    );
    let v2_text = v2_text.replace(
        "      rate:     { type: reference, to: exchange_rate, optional: true }\n",
        "",
    );
    let v2_text = v2_text.replace(
        "      country: { type: string, max: 2 }\n",
        "      country: { type: string, max: 2 }\n      notes: { type: text, optional: true, description: Free notes }\n",
    );
    let v2 = spec_file(work.path(), "v2.yaml", &v2_text);
    assert_eq!(generate(&v2, repo.path(), &["--prefix", "service"]).0, 0);
    let merged = merge(repo.path());
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stdout)
    );
    let text = std::fs::read_to_string(&customer).unwrap();
    assert!(
        text.contains("pub fn hand_written()"),
        "the hand edit survived"
    );
    assert!(text.contains("Free notes"), "the spec change arrived");
    assert!(extra.exists(), "the hand-written file survived");
    assert!(
        !repo
            .path()
            .join("service/crates/api/src/exchange_rate.rs")
            .exists(),
        "the removed resource is gone"
    );
    // Its table is dropped by a new migration; the first one is as it was.
    let migration = std::fs::read_to_string(
        repo.path()
            .join("service/migrations/0002_add_customer_notes_and_more.sql"),
    )
    .unwrap();
    assert!(
        migration.contains("DROP TABLE \"exchange_rate\";"),
        "{migration}"
    );

    // Generation 3 changes a line the team also changed: a normal conflict, nothing dropped.
    let text = std::fs::read_to_string(&customer).unwrap();
    std::fs::write(&customer, text.replace("Free notes", "Notes, by hand")).unwrap();
    git(repo.path(), &["commit", "-qam", "our wording"]);
    let v3_text = v2_text.replace("Free notes", "Free-form notes");
    let v3 = spec_file(work.path(), "v3.yaml", &v3_text);
    assert_eq!(generate(&v3, repo.path(), &["--prefix", "service"]).0, 0);
    let merged = merge(repo.path());
    assert!(!merged.status.success(), "a conflicting edit is a conflict");
    let text = std::fs::read_to_string(&customer).unwrap();
    assert!(
        text.contains("<<<<<<<")
            && text.contains("Notes, by hand")
            && text.contains("Free-form notes"),
        "{text}"
    );
    let conflicted = git(repo.path(), &["diff", "--name-only", "--diff-filter=U"]);
    assert_eq!(conflicted, "service/crates/api/src/customer.rs");
}

/// A resource renamed in the spec (a drop and an add for the database): git's rename
/// detection carries the team's edit of its file over to the renamed file.
#[test]
fn a_hand_edit_follows_a_renamed_resource() {
    let work = tempfile::tempdir().unwrap();
    let repo = existing_repo();
    git(repo.path(), &["commit", "-qam", "our work in progress"]);
    let tracker =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/tracker.yaml"))
            .unwrap();
    let v1 = spec_file(work.path(), "v1.yaml", &tracker);
    assert_eq!(generate(&v1, repo.path(), &["--prefix", "service"]).0, 0);
    git(
        repo.path(),
        &["merge", "--no-edit", "--allow-unrelated-histories", BRANCH],
    );
    let edited = repo
        .path()
        .join("service/crates/server/src/resources/time_entry.rs");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(
        &edited,
        format!("{text}\n// Ours: rounding rules agreed with finance.\n"),
    )
    .unwrap();
    git(repo.path(), &["commit", "-qam", "hand edit"]);

    // `time_entry` becomes `work_log` (nothing references it); its table is dropped, and v1,
    // which still serves `time_entry`, is retired.
    assert!(tracker.contains("\n  time_entry:\n") && !tracker.contains("to: time_entry"));
    let deprecated = "  deprecated:\n    v1: { since: 2026-11-01, sunset: 2027-05-01 }\n";
    assert!(tracker.contains(deprecated));
    let renamed = format!(
        "{}\nmigrations:\n  drop: [time_entry]\n",
        tracker
            .replace("\n  time_entry:\n", "\n  work_log:\n")
            .replace(deprecated, "")
            .trim_end()
    );
    let v2 = spec_file(work.path(), "v2.yaml", &renamed);
    let (code, json) = generate(&v2, repo.path(), &["--prefix", "service"]);
    assert_eq!(code, 0, "{json}");
    let merged = git_status(repo.path(), &["merge", "--no-edit", BRANCH]);
    // git follows the rename: the hand edit lands in the renamed file, merged with the
    // generator's changes to it; the old file is gone. Nothing is dropped.
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stdout)
    );
    assert!(!edited.exists());
    let moved = std::fs::read_to_string(
        repo.path()
            .join("service/crates/server/src/resources/work_log.rs"),
    )
    .unwrap();
    assert!(
        moved.contains("rounding rules"),
        "the hand edit followed the rename"
    );
    assert!(
        moved.contains("WorkLog"),
        "with the generator's renamed code"
    );
    assert!(!moved.contains("TimeEntry"), "and none of the old names");
}

/// The generated project's CI workflow checks drift and the guard: its `bulwark` lines, run as
/// written with the workflow's own settings, pass in a repository that merged the branch of
/// generations, and the drift check fails (exit 3) once the spec changes without a
/// regeneration.
#[test]
fn the_generated_ci_workflow_checks_drift_and_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    let spec = spec_file(repo, "bulwark.yaml", &ledgerly());
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "the spec"]);
    assert_eq!(generate(&spec, repo, &[]).0, 0);
    git(
        repo,
        &[
            "merge",
            "-q",
            "--allow-unrelated-histories",
            "-m",
            "merge the generation",
            BRANCH,
        ],
    );
    let text = std::fs::read_to_string(repo.join(".github/workflows/ci.yml")).unwrap();
    let workflow: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(workflow["env"]["BULWARK_SPEC"], "bulwark.yaml");
    assert_eq!(workflow["env"]["BULWARK_BRANCH"], BRANCH);
    let lines: Vec<String> = workflow["jobs"]["bulwark"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|step| step["run"].as_str())
        .flat_map(str::lines)
        .filter(|line| line.starts_with("bulwark "))
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let bin = Path::new(env!("CARGO_BIN_EXE_bulwark")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let run = |line: &str| {
        let output = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(repo)
            .env("PATH", &path)
            .env(
                "BULWARK_SPEC",
                workflow["env"]["BULWARK_SPEC"].as_str().unwrap(),
            )
            .env("BULWARK_BRANCH", BRANCH)
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for line in &lines {
        let (code, stderr) = run(line);
        assert_eq!(code, 0, "{line}: {stderr}");
    }
    // The spec changes (its description) but nobody regenerates: the check line fails.
    let changed = ledgerly().replacen("description:", "description: Changed.", 1);
    assert_ne!(changed, ledgerly());
    std::fs::write(&spec, changed).unwrap();
    let check = lines.iter().find(|l| l.contains(" check ")).unwrap();
    let (code, stderr) = run(check);
    assert_eq!(code, 3, "{stderr}");
}

#[test]
fn a_generation_under_a_prefix_keeps_the_rest_of_the_branch() {
    let work = tempfile::tempdir().unwrap();
    let repo = existing_repo();
    let spec = spec_file(work.path(), "spec.yaml", &ledgerly());
    // A branch of the product, with an executable script beside its files.
    git(repo.path(), &["branch", "product", "main"]);
    let files = |branch: &str| git(repo.path(), &["ls-tree", "-r", "--name-only", branch]);
    let generate_into = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            spec.to_str().unwrap(),
            "--git",
            repo.path().to_str().unwrap(),
            "--branch",
            "product",
            "--prefix",
            "services/billing",
        ];
        args.extend_from_slice(extra);
        let (code, json, _) = bulwark(&args);
        (code, json)
    };
    // Not made by bulwark: refused without `--force`, and with it added on top.
    assert_eq!(generate_into(&[]).0, 4);
    let (code, json) = generate_into(&["--force"]);
    assert_eq!(code, 0, "{json}");
    let listed = files("product");
    for kept in ["README.md", "app.txt"] {
        assert!(
            listed.lines().any(|l| l == kept),
            "{kept} is gone: {listed}"
        );
    }
    assert!(
        listed.contains("services/billing/.bulwark/manifest.json"),
        "{listed}"
    );
    assert!(
        json["changes"]["removed"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{json}"
    );
    // A regeneration on top of the product's own later commit (its tip is no longer
    // bulwark's: `--force`) keeps that commit's change.
    git(repo.path(), &["stash", "-q"]);
    git(repo.path(), &["checkout", "-q", "product"]);
    std::fs::write(repo.path().join("app.txt"), "one\nthree\n").unwrap();
    git(repo.path(), &["commit", "-qam", "our change"]);
    git(repo.path(), &["checkout", "-q", "main"]);
    let (code, json) = generate_into(&["--force"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(git(repo.path(), &["show", "product:app.txt"]), "one\nthree");
    assert!(files("product").lines().any(|l| l == "README.md"));
}

/// Two services generated into folders of one branch: each generation and each check sees
/// its own folder only. A generation commit amended with a hand edit keeps bulwark's trailer
/// but is no longer bulwark's: refused, naming the file.
#[test]
fn generations_under_two_prefixes_share_a_branch_and_an_amended_tip_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let repo = existing_repo();
    git(repo.path(), &["stash", "-q"]);
    let billing = spec_file(work.path(), "billing.yaml", &ledgerly());
    let tracker =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/tracker.yaml"))
            .unwrap();
    let projects = spec_file(work.path(), "projects.yaml", &tracker);
    let check = |spec: &Path, prefix: &str| check_on(spec, repo.path(), Some(prefix));
    let (code, json) = generate(&billing, repo.path(), &["--prefix", "billing"]);
    assert_eq!(code, 0, "{json}");
    let (code, json) = generate(&projects, repo.path(), &["--prefix", "projects"]);
    assert_eq!(code, 0, "a second folder on bulwark's branch: {json}");
    for (spec, prefix) in [(&billing, "billing"), (&projects, "projects")] {
        let (code, json) = check(spec, prefix);
        assert_eq!(code, 0, "{prefix}: {json}");
    }
    let (code, json) = generate(&billing, repo.path(), &["--prefix", "billing"]);
    assert_eq!(code, 0, "{json}");

    git(repo.path(), &["checkout", "-q", BRANCH]);
    let readme = repo.path().join("billing/README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    std::fs::write(&readme, format!("{text}\nedited\n")).unwrap();
    git(repo.path(), &["commit", "-qa", "--amend", "--no-edit"]);
    git(repo.path(), &["checkout", "-q", "main"]);
    let tip = git(repo.path(), &["rev-parse", BRANCH]);
    let (code, json) = generate(&billing, repo.path(), &["--prefix", "billing"]);
    assert_eq!(code, 4, "{json}");
    assert!(
        json.to_string().contains("billing/README.md"),
        "names the edited file: {json}"
    );
    assert_eq!(git(repo.path(), &["rev-parse", BRANCH]), tip);
    let (code, json) = check(&billing, "billing");
    assert_eq!(code, 3, "{json}");
    assert_eq!(
        json["drift"],
        serde_json::json!([{"path": "billing/README.md", "kind": "differs"}])
    );
}

/// Refused before any object is written: a branch whose name is a folder of another's (or
/// holds another), and a `SOURCE_DATE_EPOCH` that is not a time (a reproducible commit was
/// asked for: never one made now instead).
#[test]
fn a_clashing_branch_name_and_a_bad_source_date_are_refused_before_writing() {
    let work = tempfile::tempdir().unwrap();
    let repo = existing_repo();
    let spec = spec_file(work.path(), "spec.yaml", &ledgerly());
    assert_eq!(generate(&spec, repo.path(), &[]).0, 0);
    let before = snapshot(repo.path());
    let (spec, repo_path) = (spec.to_str().unwrap(), repo.path().to_str().unwrap());
    for branch in ["bulwark/generated/next", "bulwark"] {
        let (code, json, _) = bulwark(&["generate", spec, "--git", repo_path, "--branch", branch]);
        assert_eq!(code, 2, "{branch}: {json}");
        assert!(
            json.to_string().contains("cannot be made beside branch"),
            "{json}"
        );
        assert!(snapshot(repo.path()) == before, "{branch}: nothing written");
    }
    // Nor a time libgit2 would write wrapped around 2^32 (5000000000 became 1992), from the
    // variable or the flag.
    for epoch in ["yesterday", "5000000000", "-1"] {
        let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .env("SOURCE_DATE_EPOCH", epoch)
            .args(["--format", "json", "generate", spec, "--git", repo_path])
            .args(["--branch", "elsewhere"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{epoch}");
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(json.to_string().contains("SOURCE_DATE_EPOCH"), "{json}");
        assert!(snapshot(repo.path()) == before, "{epoch}: nothing written");
    }
    let (code, json, _) = bulwark(&[
        "generate",
        spec,
        "--git",
        repo_path,
        "--branch",
        "elsewhere",
        "--commit-time",
        "4294967296",
    ]);
    assert_eq!(code, 2, "{json}");
    assert!(json.to_string().contains("0..=4294967295"), "{json}");
    assert!(snapshot(repo.path()) == before, "nothing written");
}

/// A rustfmt of another release that formats every file alike is no drift: `check` passes
/// and a regeneration commits nothing (the manifest keeps the version it recorded).
#[test]
fn another_rustfmt_release_formatting_alike_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let repo = existing_repo();
    let spec = spec_file(work.path(), "spec.yaml", &ledgerly());
    assert_eq!(generate(&spec, repo.path(), &[]).0, 0);
    let tip = git(repo.path(), &["rev-parse", BRANCH]);
    let other = work.path().join("rustfmt-next");
    std::fs::write(
        &other,
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'rustfmt 99.0.0-stable'; else exec rustfmt \"$@\"; fi\n",
    )
    .unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (spec, repo_path) = (spec.to_str().unwrap(), repo.path().to_str().unwrap());
    for command in ["check", "generate"] {
        let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .env("BULWARK_RUSTFMT", &other)
            .env("BULWARK_CACHE_DIR", cache.path())
            .args(["--format", "json", command, spec, "--git", repo_path])
            .args(["--branch", BRANCH])
            .output()
            .unwrap();
        let json: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        assert_eq!(output.status.code(), Some(0), "{command}: {json}");
    }
    assert_eq!(git(repo.path(), &["rev-parse", BRANCH]), tip);
}

/// A generated file made executable on the branch is drift (`mode`), and the tip no longer
/// counts as bulwark's: the blobs alone would not show it.
#[test]
fn a_file_mode_changed_on_the_branch_is_drift() {
    let work = tempfile::tempdir().unwrap();
    let repo = existing_repo();
    git(repo.path(), &["stash", "-q"]);
    let spec = spec_file(work.path(), "spec.yaml", &ledgerly());
    assert_eq!(generate(&spec, repo.path(), &[]).0, 0);
    git(repo.path(), &["checkout", "-q", BRANCH]);
    std::fs::set_permissions(
        repo.path().join("README.md"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    git(repo.path(), &["commit", "-qam", "make it executable"]);
    git(repo.path(), &["checkout", "-q", "main"]);
    let (code, json) = check_on(&spec, repo.path(), None);
    assert_eq!(code, 3, "{json}");
    assert_eq!(
        json["drift"],
        serde_json::json!([{"path": "README.md", "kind": "mode"}])
    );
}
