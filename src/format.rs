//! Finishing the rendered Rust with the toolchain's rustfmt, so the output passes
//! `cargo fmt --check` exactly as engineers' tools see it (prettyplease alone does not match
//! rustfmt everywhere).
//!
//! rustfmt runs with the workspace's own `rustfmt.toml` (so no configuration of the machine
//! leaks in) on a scratch copy of the layout. Formatted text is cached per user, keyed by the
//! rustfmt version, its configuration and the printed text, so regenerating after a small
//! spec change formats only what changed. (Never the output directory itself: what is there
//! may have been edited, and `--force` must restore what bulwark generates.) Of the files not
//! cached, whole crates go through one rustfmt process per crate root, in parallel; a few
//! go through standard input one by one.

use crate::render::FileSet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::render::RUSTFMT_TOML;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FormatError {
    #[error("rustfmt was not found")]
    #[diagnostic(
        code(bulwark::rustfmt::missing),
        help("install it with `rustup component add rustfmt`, or point BULWARK_RUSTFMT at it")
    )]
    Missing,
    #[error("rustfmt failed: {0}")]
    #[diagnostic(
        code(bulwark::rustfmt::failed),
        help("this is likely a bug in bulwark; please report it with the spec")
    )]
    Failed(String),
    #[error("scratch directory for rustfmt: {0}")]
    #[diagnostic(code(bulwark::rustfmt::io))]
    Io(#[from] std::io::Error),
}

fn rustfmt() -> PathBuf {
    std::env::var_os("BULWARK_RUSTFMT").map_or_else(|| PathBuf::from("rustfmt"), PathBuf::from)
}

/// The rustfmt version line, recorded in the manifest.
pub fn rustfmt_version() -> Result<String, FormatError> {
    let output = Command::new(rustfmt())
        .arg("--version")
        .output()
        .map_err(|_| FormatError::Missing)?;
    if !output.status.success() {
        return Err(FormatError::Missing);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The per-user cache of formatted files.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
    salt: String,
}

impl Cache {
    /// The cache for this rustfmt, under `BULWARK_CACHE_DIR`, `XDG_CACHE_HOME/bulwark` or
    /// `~/.cache/bulwark`; `None` when none of them can be used (formatting still works).
    pub fn open(rustfmt_version: &str) -> Option<Cache> {
        let base = std::env::var_os("BULWARK_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("bulwark"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/bulwark"))
            })?;
        let dir = base.join("rustfmt");
        std::fs::create_dir_all(&dir).ok()?;
        Some(Cache {
            dir,
            salt: format!("{rustfmt_version}\n{RUSTFMT_TOML}"),
        })
    }

    fn key(&self, printed: &str) -> PathBuf {
        self.dir.join(crate::emit::sha256(
            format!("{}\n{printed}", self.salt).as_bytes(),
        ))
    }

    fn get(&self, printed: &str) -> Option<String> {
        std::fs::read_to_string(self.key(printed)).ok()
    }

    /// Best effort: a cache that cannot be written only costs time.
    fn put(&self, printed: &str, formatted: &str) {
        let key = self.key(printed);
        let partial = key.with_extension(format!("partial-{}", std::process::id()));
        if std::fs::write(&partial, formatted).is_ok() && std::fs::rename(&partial, &key).is_err() {
            let _ = std::fs::remove_file(&partial);
        }
    }
}

/// Up to this many changed files are formatted one by one through standard input; more, and
/// their crates are formatted whole.
const FEW: usize = 8;

/// Formats every `.rs` file of `files` in place, through `cache` when there is one.
pub fn format_rust(files: &mut FileSet, cache: Option<&Cache>) -> Result<(), FormatError> {
    let mut changed = Vec::new();
    let mut printed = BTreeMap::new();
    for path in files.rust_paths().cloned().collect::<Vec<_>>() {
        match cache.and_then(|c| c.get(&files.files[&path])) {
            Some(text) => {
                files.files.insert(path, text);
            }
            None => {
                printed.insert(path.clone(), files.files[&path].clone());
                changed.push(path);
            }
        }
    }
    if changed.len() <= FEW {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let formatted = parallel(&changed, threads, |path| format_stdin(&files.files[path]))?;
        for (path, text) in changed.iter().zip(formatted) {
            files.files.insert(path.clone(), text);
        }
    } else {
        format_crates(files, &changed)?;
    }
    if let Some(cache) = cache {
        for (path, text) in &printed {
            cache.put(text, &files.files[path]);
        }
    }
    Ok(())
}

/// Formats the crates holding `changed`, whole, one rustfmt process per crate root.
fn format_crates(files: &mut FileSet, changed: &[String]) -> Result<(), FormatError> {
    let scratch = tempfile::tempdir()?;
    std::fs::write(scratch.path().join("rustfmt.toml"), RUSTFMT_TOML)?;
    // The real layout, so rustfmt resolves `mod x;` to the right files.
    for path in files.rust_paths() {
        let target = scratch.path().join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &files.files[path])?;
    }
    let roots: Vec<String> = files
        .rust_paths()
        .filter(|p| is_root(p) && changed.iter().any(|c| root_of(c) == root_of(p)))
        .cloned()
        .collect();
    let config = scratch.path().join("rustfmt.toml");
    // One process per crate: they differ in size, and the system spreads them over the cores.
    parallel(&roots, roots.len(), |root| {
        run(Command::new(rustfmt())
            .arg("--config-path")
            .arg(&config)
            .arg(scratch.path().join(root)))
        .map(drop)
    })?;
    for path in changed {
        let text = std::fs::read_to_string(scratch.path().join(path))?;
        files.files.insert(path.clone(), text);
    }
    Ok(())
}

/// Crate roots of the generated layout: `src/lib.rs`, `src/main.rs`, and each file directly
/// in `tests/`, `benches/` or `src/bin/`. Every other file is a module reached from one of them.
fn is_root(path: &str) -> bool {
    let path = Path::new(path);
    let parent = path.parent().and_then(Path::file_name);
    path.ends_with("src/lib.rs")
        || path.ends_with("src/main.rs")
        || parent.is_some_and(|p| p == "tests" || p == "benches" || p == "bin")
}

/// The root a file is formatted through (its crate's `src/lib.rs` for modules).
fn root_of(path: &str) -> String {
    if is_root(path) {
        return path.to_owned();
    }
    match path.split_once("/src/") {
        Some((krate, _)) => format!("{krate}/src/lib.rs"),
        None => path.to_owned(),
    }
}

fn format_stdin(text: &str) -> Result<String, FormatError> {
    let scratch = tempfile::tempdir()?;
    let config = scratch.path().join("rustfmt.toml");
    std::fs::write(&config, RUSTFMT_TOML)?;
    let mut child = Command::new(rustfmt())
        .arg("--config-path")
        .arg(&config)
        .args(["--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|_| FormatError::Missing)?;
    let mut stdin = child.stdin.take().ok_or(FormatError::Missing)?;
    // Write from a thread: rustfmt may fill its output pipe before it has read all input.
    let input = text.to_owned();
    let writer =
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, input.as_bytes()));
    let output = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| FormatError::Failed("writing to rustfmt failed".into()))??;
    check(&output)?;
    String::from_utf8(output.stdout).map_err(|e| FormatError::Failed(e.to_string()))
}

fn run(command: &mut Command) -> Result<std::process::Output, FormatError> {
    let output = command.output().map_err(|_| FormatError::Missing)?;
    check(&output)?;
    Ok(output)
}

fn check(output: &std::process::Output) -> Result<(), FormatError> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(FormatError::Failed(
        stderr.lines().take(20).collect::<Vec<_>>().join("\n"),
    ))
}

/// Runs `job` on every item on up to `threads` threads; results in input order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    job: impl Fn(&T) -> Result<R, FormatError> + Sync,
) -> Result<Vec<R>, FormatError> {
    let chunk = items.len().div_ceil(threads.clamp(1, 16)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&job).collect::<Result<Vec<R>, _>>()))
            .collect();
        let mut results = Vec::with_capacity(items.len());
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| FormatError::Failed("a formatting thread panicked".into()))??;
            results.extend(part);
        }
        Ok(results)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_modules() {
        assert!(is_root("crates/api/src/lib.rs"));
        assert!(is_root("crates/server/tests/service.rs"));
        assert!(!is_root("crates/server/src/resources/invoice.rs"));
        assert!(is_root("crates/server/src/bin/dev-token.rs"));
        assert!(is_root("crates/server/benches/guard.rs"));
        assert_eq!(
            root_of("crates/server/src/resources/invoice.rs"),
            "crates/server/src/lib.rs"
        );
        assert_eq!(
            root_of("crates/server/src/main.rs"),
            "crates/server/src/main.rs"
        );
    }
}
