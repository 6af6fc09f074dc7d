//! Finishing the rendered Rust with the toolchain's rustfmt, so the output passes
//! `cargo fmt --check` exactly as engineers' tools see it (prettyplease alone does not match
//! rustfmt everywhere).
//!
//! rustfmt runs with the workspace's own `rustfmt.toml` (so no configuration of the machine
//! leaks in) on a scratch copy of the layout (kept in the cache between generations, see
//! [`Scratch`]) and prints what it formats. Formatted text is cached per user, keyed by the
//! rustfmt version, its configuration and the printed text, so regenerating after a small
//! spec change formats only what changed. (Never the output directory itself: what is there
//! may have been edited, and `--force` must restore what bulwark generates.) The files not
//! cached go through one rustfmt process per core, each formatting its share of them.

use crate::render::FileSet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::render::RUSTFMT_TOML;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FormatError {
    #[error("rustfmt was not found")]
    #[diagnostic(
        code(bulwark::rustfmt::missing),
        help("install it with `rustup component add rustfmt`, or point BULWARK_RUSTFMT at it")
    )]
    Missing,
    #[error("rustfmt cannot run: {0}")]
    #[diagnostic(
        code(bulwark::rustfmt::unusable),
        help(
            "`rustfmt --version` fails the same way: fix what it says (for instance a working directory that no longer exists, or a toolchain without the rustfmt component)"
        )
    )]
    Unusable(String),
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
    // It was found but cannot run: say why, in its own words (its first line).
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        let exit = output
            .status
            .code()
            .map_or("a signal".to_owned(), |code| format!("code {code}"));
        return Err(FormatError::Unusable(format!(
            "`{} --version` exited with {exit}: {}",
            rustfmt().display(),
            reason.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The per-user cache of formatted files: the finished text of each file formatted, under
/// two keys, its printed text and (for the running build) the tokens it was printed from;
/// each run's new texts go into one pack ([`crate::cache::Packs`]).
#[derive(Clone, Debug)]
pub struct Cache {
    packs: std::sync::Arc<crate::cache::Packs>,
    salt: String,
    /// The running build of bulwark (its size and modification time): what it prints from
    /// given tokens may change with it, so finished text is kept per build. `None` when it
    /// cannot be told, which keeps no finished text.
    build: Option<String>,
}

impl Cache {
    /// The cache for this rustfmt, under `BULWARK_CACHE_DIR`, `XDG_CACHE_HOME/bulwark` or
    /// `~/.cache/bulwark`; `None` when none of them can be used (formatting still works).
    pub fn open(rustfmt_version: &str) -> Option<Cache> {
        Some(Cache {
            packs: std::sync::Arc::new(crate::cache::Packs::open("rustfmt-packs")?),
            salt: format!("{rustfmt_version}\n{RUSTFMT_TOML}"),
            build: crate::cache::build_fingerprint(),
        })
    }

    /// The key of the finished text printed from tokens with `digest`.
    fn finished_key(&self, digest: &str) -> Option<String> {
        let build = self.build.as_deref()?;
        let key = format!("finished\n{}\n{build}\n{digest}", self.salt);
        Some(crate::emit::sha256(key.as_bytes()))
    }

    /// The key of the finished text of `printed`.
    fn key(&self, printed: &str) -> String {
        crate::emit::sha256(format!("{}\n{printed}", self.salt).as_bytes())
    }
}

impl crate::render::Printed for Cache {
    fn finished(&self, digest: &str) -> Option<String> {
        self.packs.get(&self.finished_key(digest)?)
    }
}

/// Formats every `.rs` file of `files` in place, through `cache` when there is one.
pub fn format_rust(files: &mut FileSet, cache: Option<&Cache>) -> Result<(), FormatError> {
    let mut changed = Vec::new();
    // Each printed file's key in the cache (by its printed text).
    let mut keys = BTreeMap::new();
    for path in files.rust_paths().cloned().collect::<Vec<_>>() {
        if files.finished.contains(&path) {
            continue;
        }
        let key = cache.map(|c| c.key(&files.files[&path]));
        match cache
            .zip(key.as_deref())
            .and_then(|(c, key)| c.packs.get(key))
        {
            Some(text) => {
                files.files.insert(path.clone(), text);
            }
            None => changed.push(path.clone()),
        }
        if let Some(key) = key {
            keys.insert(path, key);
        }
    }
    if !changed.is_empty() {
        format_groups(files, &changed)?;
    }
    if let Some(cache) = cache {
        // The texts formatted now, under their printed key and, printed now, their tokens'.
        let new = changed.iter().filter_map(|path| {
            let finished = files.digests.get(path).and_then(|d| cache.finished_key(d));
            let keys = keys
                .get(path)
                .cloned()
                .into_iter()
                .chain(finished)
                .collect();
            Some((keys, files.files.get(path)?.as_str()))
        });
        // And the finished text of files found by printed text, printed now.
        let formatted: std::collections::BTreeSet<&String> = changed.iter().collect();
        let found = files
            .digests
            .iter()
            .filter(|(path, _)| !formatted.contains(path))
            .filter_map(|(path, digest)| {
                Some((
                    vec![cache.finished_key(digest)?],
                    files.files.get(path)?.as_str(),
                ))
            });
        cache.packs.put(new.chain(found));
    }
    Ok(())
}

/// Formats the `changed` files, each exactly once, on every core. They are dealt into one
/// group per core by size; each group is formatted by one rustfmt process in a scratch
/// directory holding the group's files at their paths and, empty, the module files they
/// declare outside the group, so `mod x;` still resolves and nothing else is written. A file
/// is named to rustfmt unless the file declaring it is in the same group (rustfmt reaches it
/// from there).
fn format_groups(files: &mut FileSet, changed: &[String]) -> Result<(), FormatError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let parents = declaring_files(files);
    let mut by_size: Vec<&String> = changed.iter().collect();
    by_size.sort_by_key(|path| std::cmp::Reverse(files.files[*path].len()));
    let mut groups: Vec<(usize, Vec<&String>)> = vec![(0, Vec::new()); threads.clamp(1, 16)];
    for path in by_size {
        if let Some(lightest) = groups.iter_mut().min_by_key(|(size, _)| *size) {
            lightest.0 += files.files[path].len();
            lightest.1.push(path);
        }
    }
    groups.retain(|(_, group)| !group.is_empty());
    let formatted = parallel(&groups, groups.len(), |(_, group)| {
        format_group(files, group, &parents)
    })?;
    for (path, text) in formatted.into_iter().flatten() {
        files.files.insert(path, text);
    }
    Ok(())
}

fn format_group(
    files: &FileSet,
    group: &[&String],
    parents: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, FormatError> {
    let member = |path: &String| group.contains(&path);
    let children = parents
        .iter()
        .filter(|(child, parent)| member(parent) && !member(child))
        .map(|(child, _)| (child.as_str(), ""));
    let members = group
        .iter()
        .map(|path| (path.as_str(), files.files[*path].as_str()));
    let texts: BTreeMap<&str, &str> = members
        .chain(children)
        .chain([("rustfmt.toml", RUSTFMT_TOML)])
        .collect();
    let mut scratch = Scratch::take()?;
    if let Err(error) = scratch.hold(&texts) {
        // A kept folder is only a saving: one that cannot be used (a full disk, files
        // another user left) gives way to a temporary one.
        if matches!(scratch, Scratch::Temporary(_)) {
            return Err(error);
        }
        scratch = Scratch::Temporary(tempfile::tempdir()?);
        scratch.hold(&texts)?;
    }
    // rustfmt names each file it prints by its canonical path (links resolved), so the
    // files are named to it that way too (a cache folder may be reached through a link).
    let root = std::fs::canonicalize(scratch.path())?;
    let named = group
        .iter()
        .filter(|path| {
            parents
                .get(path.as_str())
                .is_none_or(|parent| !member(parent))
        })
        .map(|path| root.join(path));
    // Printed rather than written back: rewriting hundreds of files costs more than
    // reading them from a pipe.
    let output = run(Command::new(rustfmt())
        .arg("--config-path")
        .arg(root.join("rustfmt.toml"))
        .args(["--emit", "stdout"])
        .args(named))?;
    let printed = String::from_utf8(output.stdout)
        .map_err(|_| FormatError::Failed("rustfmt printed text that is not UTF-8".into()))?;
    let by_path: BTreeMap<String, &str> = texts
        .keys()
        .filter(|path| **path != "rustfmt.toml")
        .map(|path| (root.join(path).display().to_string(), *path))
        .collect();
    let mut formatted = split_printed(&printed, &by_path)?;
    group
        .iter()
        .map(|path| {
            let text = formatted.remove(path.as_str()).ok_or_else(|| {
                FormatError::Failed(format!("rustfmt printed nothing for {path}"))
            })?;
            Ok(((*path).clone(), text.to_owned()))
        })
        .collect()
}

/// The files in what `rustfmt --emit stdout` printed: each after a line naming it (`PATH:`,
/// one of `by_path`, which gives the file each names) and an empty line. No Rust line
/// starts with a single `/` (the scratch folder's absolute path does), so only a header
/// names a file; a file printed twice differently is refused all the same.
fn split_printed<'a>(
    printed: &'a str,
    by_path: &BTreeMap<String, &'a str>,
) -> Result<BTreeMap<&'a str, &'a str>, FormatError> {
    let mut files = BTreeMap::new();
    // The file being read and where its text starts.
    let mut current: Option<(&str, usize)> = None;
    let mut offset = 0;
    for line in printed.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let header = line
            .strip_suffix(":\n")
            .and_then(|path| by_path.get(path))
            .filter(|_| printed[offset..].starts_with('\n'));
        let Some(file) = header else { continue };
        if let Some((previous, from)) = current.take() {
            add(&mut files, previous, &printed[from..start])?;
        }
        current = Some((file, offset + 1));
    }
    if let Some((last, from)) = current {
        add(&mut files, last, &printed[from.min(printed.len())..])?;
    }
    Ok(files)
}

/// Adds a printed file; one printed twice (a module two roots declare) must read the same.
fn add<'a>(
    files: &mut BTreeMap<&'a str, &'a str>,
    file: &'a str,
    text: &'a str,
) -> Result<(), FormatError> {
    match files.insert(file, text) {
        Some(before) if before != text => Err(FormatError::Failed(format!(
            "rustfmt printed {file} twice, differently"
        ))),
        _ => Ok(()),
    }
}

/// At most this many kept scratch folders (one per rustfmt process running at once).
const KEPT_SCRATCH: usize = 16;

/// The folder one rustfmt process formats in: one kept in the cache between generations
/// (`rustfmt-scratch/N`, held through the lock on `N.lock` while in use), or a temporary one
/// when there is no cache or no kept folder is free and usable.
///
/// Kept because its files are then overwritten in place rather than created and removed:
/// on a file system that must look past recently removed inodes to create a file (ext4
/// without a journal, as on the machine of `BENCHMARKS.md`), creating a generation's ~600
/// files where the last one removed as many took longer than formatting them.
enum Scratch {
    Kept { dir: PathBuf, _lock: std::fs::File },
    Temporary(tempfile::TempDir),
}

impl Scratch {
    fn take() -> Result<Scratch, FormatError> {
        Scratch::take_in(crate::cache::dir("rustfmt-scratch"))
    }

    /// The first kept folder of `base` not in use, else a temporary one.
    fn take_in(base: Option<PathBuf>) -> Result<Scratch, FormatError> {
        if let Some(base) = base {
            for n in 0..KEPT_SCRATCH {
                let Ok(lock) = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(base.join(format!("{n}.lock")))
                else {
                    continue;
                };
                if lock.try_lock().is_ok() {
                    let dir = base.join(n.to_string());
                    let _ = std::fs::create_dir(&dir);
                    // A real folder, not a link: what is in it gets removed.
                    if std::fs::symlink_metadata(&dir).is_ok_and(|meta| meta.is_dir()) {
                        return Ok(Scratch::Kept { dir, _lock: lock });
                    }
                }
            }
        }
        Ok(Scratch::Temporary(tempfile::tempdir()?))
    }

    fn path(&self) -> &Path {
        match self {
            Scratch::Kept { dir, .. } => dir,
            Scratch::Temporary(dir) => dir.path(),
        }
    }

    /// Makes the folder hold exactly `texts` (by path): each written in place, and whatever
    /// an earlier generation left removed, so rustfmt resolves `mod x;` only to this one's
    /// files.
    fn hold(&self, texts: &BTreeMap<&str, &str>) -> Result<(), FormatError> {
        let root = self.path();
        if let Scratch::Kept { dir, .. } = self {
            remove_others(dir, Path::new(""), texts)?;
        }
        for (path, text) in texts {
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            overwrite(&target, text)?;
        }
        Ok(())
    }
}

/// Removes every file under `dir` (at `relative` from the scratch folder) not in `keep`.
fn remove_others(
    dir: &Path,
    relative: &Path,
    keep: &BTreeMap<&str, &str>,
) -> Result<(), FormatError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            remove_others(&entry.path(), &path, keep)?;
        } else if !kind.is_file() || path.to_str().is_none_or(|path| !keep.contains_key(path)) {
            // Links go too, kept names or not: nothing is written through one.
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Writes `text` to `path` over what is there, without truncating it first (a file
/// truncated to nothing and written again is flushed on close by ext4).
fn overwrite(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.set_len(text.len() as u64)
}

/// The file declaring each module file of the layout (with `mod name;`), found the way
/// rustfmt resolves it: next to a crate root or `mod.rs`, in a directory named after any other
/// file.
fn declaring_files(files: &FileSet) -> BTreeMap<String, String> {
    let mut parents = BTreeMap::new();
    for path in files.rust_paths() {
        let dir = match path.rsplit_once('/') {
            Some((dir, "mod.rs")) => dir.to_owned(),
            Some((dir, _)) if is_root(path) => dir.to_owned(),
            _ => path.trim_end_matches(".rs").to_owned(),
        };
        for name in files.files[path].lines().filter_map(declared_module) {
            for child in [format!("{dir}/{name}.rs"), format!("{dir}/{name}/mod.rs")] {
                if files.files.contains_key(&child) {
                    parents.insert(child, path.clone());
                }
            }
        }
    }
    parents
}

/// The name in a `mod name;` line (with any visibility).
fn declared_module(line: &str) -> Option<&str> {
    let line = line.trim();
    let line = match line.strip_prefix("pub") {
        Some(rest) if rest.starts_with(' ') => rest.trim_start(),
        Some(rest) if rest.starts_with('(') => rest.split_once(')')?.1.trim_start(),
        _ => line,
    };
    let name = line.strip_prefix("mod ")?.strip_suffix(';')?.trim();
    let name = name.strip_prefix("r#").unwrap_or(name);
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(name)
}

/// Crate roots of the generated layout: `src/lib.rs`, `src/main.rs`, and each file directly
/// in `tests/`, `benches/` or `src/bin/`.
fn is_root(path: &str) -> bool {
    let path = Path::new(path);
    let parent = path.parent().and_then(Path::file_name);
    path.ends_with("src/lib.rs")
        || path.ends_with("src/main.rs")
        || parent.is_some_and(|p| p == "tests" || p == "benches" || p == "bin")
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
        assert_eq!(declared_module("pub mod invoice;"), Some("invoice"));
        assert_eq!(declared_module("pub(crate) mod r#type;"), Some("type"));
        assert_eq!(declared_module("mod tests {"), None);
        assert_eq!(declared_module("// mod x;"), None);
    }

    #[test]
    fn printed_files_are_split_at_the_lines_naming_them() {
        let by_path: BTreeMap<String, &str> = [
            ("/s/src/lib.rs".to_owned(), "src/lib.rs"),
            ("/s/src/a.rs".to_owned(), "src/a.rs"),
            ("/s/src/b.rs".to_owned(), "src/b.rs"),
        ]
        .into();
        // A line naming a file without the empty line after it is text, as is a path that
        // names none of them.
        let printed = "/s/src/lib.rs:\n\nmod a;\n/s/src/a.rs:\nfn x() {}\n/s/src/c.rs:\n\n/s/src/a.rs:\n\n/s/src/b.rs:\n\n";
        let files = split_printed(printed, &by_path).expect("split");
        assert_eq!(
            files,
            BTreeMap::from([
                (
                    "src/lib.rs",
                    "mod a;\n/s/src/a.rs:\nfn x() {}\n/s/src/c.rs:\n\n"
                ),
                ("src/a.rs", ""),
                ("src/b.rs", ""),
            ])
        );
        let last = "/s/src/a.rs:\n\n/s/src/b.rs:\n\nfn b() {}\n";
        assert_eq!(
            split_printed(last, &by_path).expect("split"),
            BTreeMap::from([("src/a.rs", ""), ("src/b.rs", "fn b() {}\n")])
        );
        let same = "/s/src/a.rs:\n\nfn x() {}\n/s/src/b.rs:\n\n/s/src/a.rs:\n\nfn x() {}\n";
        assert_eq!(
            split_printed(same, &by_path).expect("split")["src/a.rs"],
            "fn x() {}\n"
        );
        let twice = "/s/src/a.rs:\n\nfn x() {}\n/s/src/a.rs:\n\nfn y() {}\n";
        assert!(matches!(
            split_printed(twice, &by_path),
            Err(FormatError::Failed(message)) if message.contains("twice, differently")
        ));
        assert!(split_printed("", &by_path).expect("split").is_empty());
    }

    #[test]
    fn a_kept_scratch_folder_holds_only_the_files_given_and_one_generation_at_a_time() {
        let base = tempfile::tempdir().expect("a temporary folder");
        let first = Scratch::take_in(Some(base.path().to_path_buf())).expect("a folder");
        let Scratch::Kept { dir, .. } = &first else {
            panic!("a kept folder")
        };
        assert_eq!(dir, &base.path().join("0"));
        first
            .hold(&BTreeMap::from([
                ("src/lib.rs", "mod old;\nfn long_name_of_a_function() {}\n"),
                ("src/old.rs", "fn old() {}\n"),
            ]))
            .expect("written");
        // In use: the next one is another folder.
        let second = Scratch::take_in(Some(base.path().to_path_buf())).expect("a folder");
        assert_eq!(second.path(), base.path().join("1"));
        drop(second);
        drop(first);
        // Free again: the first folder, now holding the new files only, each whole.
        let again = Scratch::take_in(Some(base.path().to_path_buf())).expect("a folder");
        assert_eq!(again.path(), base.path().join("0"));
        // A link planted at a kept name is removed, not written through.
        let outside = base.path().join("outside.rs");
        std::fs::write(&outside, "untouched").expect("written");
        std::fs::remove_file(again.path().join("src/lib.rs")).expect("removed");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, again.path().join("src/lib.rs")).expect("a link");
        again
            .hold(&BTreeMap::from([
                ("src/lib.rs", "fn f() {}\n"),
                ("src/new/mod.rs", ""),
            ]))
            .expect("written");
        let read = |path: &str| std::fs::read_to_string(again.path().join(path)).expect("written");
        assert_eq!(read("src/lib.rs"), "fn f() {}\n");
        assert_eq!(read("src/new/mod.rs"), "");
        assert!(!again.path().join("src/old.rs").exists());
        assert_eq!(
            std::fs::read_to_string(&outside).expect("a file"),
            "untouched"
        );
        drop(again);
        // A kept folder that is a link is passed over.
        #[cfg(unix)]
        {
            std::fs::remove_dir_all(base.path().join("0")).expect("removed");
            std::os::unix::fs::symlink(base.path().join("1"), base.path().join("0"))
                .expect("a link");
            let next = Scratch::take_in(Some(base.path().to_path_buf())).expect("a folder");
            assert_eq!(next.path(), base.path().join("1"));
        }
        // No cache: a temporary folder.
        assert!(matches!(
            Scratch::take_in(None).expect("a folder"),
            Scratch::Temporary(_)
        ));
    }
}
