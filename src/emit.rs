//! Stage 4, emit: writes a `FileSet` into a directory, with the manifest that records what
//! was generated.
//!
//! Everything is rendered, formatted and checked before anything is written: a refusal or a
//! bad path leaves the directory as it was. Files are then staged inside the directory and
//! renamed into place one by one, the manifest last, after a journal of the moves is written
//! beside them. A process killed in that last step leaves some files of the new generation
//! beside the old manifest (or none); the next generation into the directory first finishes
//! the moves from the journal ([`recover`]), unless a file they would replace has changed
//! since, and clears staging folders that runs killed earlier left.
//!
//! Regeneration adds new files and changes or removes only files the previous manifest
//! lists. It refuses, unless forced, when one of those was edited by hand (line endings
//! turned into CRLF by a checkout are no edit), and forced or not when a new file would
//! overwrite a file bulwark did not generate; even forced, it never deletes a file edited
//! by hand. It never writes through a symbolic link, and never touches
//! `.git`, `target` or anything else it did not generate. Generations into one directory take
//! turns ([`lock_dir`]).

use crate::render::FileSet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Held while one generation reads and writes a directory: generations into the same
/// directory take turns, since each plans its migrations and checks for hand edits against
/// the manifest the other may be replacing. Released when dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Takes the lock of generations into `dir`, calling `waiting` first if another holds it.
/// The lock is a file of the per-user cache named by the directory's canonical path, so
/// nothing is written into `dir` before the generation is complete, and `dir` need not
/// exist yet. `None` without a cache folder: a folder shared with other users (the
/// temporary one) would let them hold or plant the lock, so then nothing is locked, as
/// before there were locks.
pub fn lock_dir(dir: &Path, waiting: impl FnOnce()) -> Result<Option<DirLock>, EmitError> {
    let Some(locks) = crate::cache::dir("locks") else {
        return Ok(None);
    };
    let key = sha256(canonical(dir).as_os_str().as_encoded_bytes());
    let path = locks.join(key);
    let lock_error = |e: std::io::Error| EmitError::Lock {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            waiting();
            file.lock().map_err(lock_error)?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_error(e)),
    }
    Ok(Some(DirLock { _file: file }))
}

/// `dir` with its deepest existing ancestor resolved (links and `..` followed) and the rest
/// appended: the same for every spelling of one directory, whether it exists yet or not.
fn canonical(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut rest = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(resolved) = existing.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(resolved, |path, name| path.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Where the manifest lives inside a generated directory.
pub const MANIFEST: &str = ".bulwark/manifest.json";

/// In a staging folder: the moves still to make, written before the first one.
const JOURNAL: &str = "journal.json";
/// In a staging folder: locked by the generation using it, from before it stages anything to
/// the end (a lock a killed process no longer holds), so that [`recover`] never takes a
/// running generation's folder for an interrupted one (generations without the directory's
/// lock, or under another user's cache, run side by side).
const IN_USE: &str = ".lock";
/// In a staging folder: the journal of a generation that failed and undid its moves (renamed
/// so, which needs no space on a full disk). Files it could not put back stay in such a
/// folder, for their owner to sort out; [`recover`] leaves it alone.
const UNDONE: &str = "undone.json";

/// The moves of one generation into its directory ([`JOURNAL`]), enough to finish them.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// Each staged file's name in the staging folder, its path in the directory, and the
    /// SHA-256 of the file that was there when the generation checked it (none: none was).
    puts: Vec<(String, String, Option<String>)>,
    /// Each file to remove and the SHA-256 of what it held when checked.
    removals: Vec<(String, String)>,
    /// Whether the staged manifest replaces the directory's.
    manifest: bool,
}

/// Before a generation into `dir`: finishes the moves of generations that were killed while
/// moving their files into place, from their journals, and removes the staging folders of
/// runs killed before they moved anything. The number finished.
///
/// A file the moves would replace or remove that has changed since they were checked is not
/// touched: the directory is left as it is, with the journal, and a refusal names the files.
/// Folders a running generation holds (`.lock`), folders holding what a failed generation
/// could not put back, and set-aside files with no journal (left by older versions) are left
/// alone. Every generation does this first, so none completes over an unfinished one.
pub fn recover(dir: &Path) -> Result<usize, EmitError> {
    // Never through a link: what it leads to is not this directory's to finish or remove.
    no_symlink(dir, ".bulwark")?;
    let own = dir.join(".bulwark");
    let Ok(entries) = std::fs::read_dir(&own) else {
        return Ok(0);
    };
    let mut folders: Vec<PathBuf> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if name.starts_with("staging-") {
            folders.push(entry.path());
        } else if name.starts_with(DONE_PREFIX) {
            // Done with, and not removed when it was (see [`discard`]): litter.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    folders.sort();
    let mut finished = 0;
    for staging in folders {
        // Held while this looks at the folder: no generation can start using it meanwhile.
        let Some(in_use) = take_in_use(&staging)? else {
            continue;
        };
        if staging.join(UNDONE).exists() {
            continue;
        }
        let journal_path = staging.join(JOURNAL);
        match std::fs::read(&journal_path) {
            Ok(bytes) => {
                let unreadable = |message: String| EmitError::Journal {
                    staging: staging.display().to_string(),
                    message,
                };
                let journal: Journal =
                    serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
                let staged_names = journal.puts.iter().map(|(staged, ..)| staged);
                if let Some(bad) = staged_names
                    .clone()
                    .find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err(unreadable(format!(
                        "it names `{bad}` as a staged file, which is not one bulwark stages"
                    )));
                }
                let paths = journal.puts.iter().map(|(_, path, _)| path);
                if let Some(bad) = paths
                    .chain(journal.removals.iter().map(|(path, _)| path))
                    .find(|p| !is_generated_path(p))
                {
                    return Err(unreadable(format!(
                        "it names `{bad}`, which is not a plain path inside the directory"
                    )));
                }
                finish(dir, &staging, &journal)?;
                finished += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A run killed before it moved anything stages files, never sets any aside.
                if has_set_aside(&staging) {
                    continue;
                }
            }
            Err(e) => return Err(io(&journal_path)(e)),
        }
        discard(&staging, Some(in_use));
    }
    Ok(finished)
}

/// Prefix of staging folders done with, on their way out.
const DONE_PREFIX: &str = "done-";

/// Removes a staging folder done with: renamed first (`done-*`, which no generation takes
/// for a staging folder), then, its lock let go (a file held open inside a folder stops its
/// removal on NFS and FUSE), removed. What cannot be removed now, the next generation
/// removes.
fn discard(staging: &Path, in_use: Option<std::fs::File>) {
    let name = staging
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let done = staging.with_file_name(format!(
        "{DONE_PREFIX}{}",
        name.trim_start_matches("staging-")
    ));
    let gone = if std::fs::rename(staging, &done).is_ok() {
        done
    } else {
        staging.to_path_buf()
    };
    drop(in_use);
    let _ = std::fs::remove_dir_all(gone);
}

/// The lock of a staging folder ([`IN_USE`]), taken; `None` while a running generation holds
/// it.
fn take_in_use(staging: &Path) -> Result<Option<std::fs::File>, EmitError> {
    let path = staging.join(IN_USE);
    // Only a file of its own making: a link or a pipe planted there is not opened (a pipe
    // would block), and the folder is left alone.
    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
        return Ok(None);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

/// Whether a staging folder holds a file set aside (`previous-N`).
fn has_set_aside(staging: &Path) -> bool {
    std::fs::read_dir(staging).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("previous-"))
    })
}

/// Makes the moves of `journal` that were not made, once none of them would replace or
/// remove a file that changed since the generation checked it.
fn finish(dir: &Path, staging: &Path, journal: &Journal) -> Result<(), EmitError> {
    let hash_at = |path: &str| -> Result<Option<String>, EmitError> {
        no_symlink(dir, path)?;
        let target = dir.join(path);
        match std::fs::read(&target) {
            Ok(bytes) => Ok(Some(sha256(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&target)(e)),
        }
    };
    let mut changed = Vec::new();
    for (staged, path, before) in &journal.puts {
        // Still staged: the file there is the one checked, or was set aside (none there).
        if staging.join(staged).exists() {
            let now = hash_at(path)?;
            if now.is_some() && now != *before {
                changed.push(path.clone());
            }
        }
    }
    for (path, before) in &journal.removals {
        if hash_at(path)?.is_some_and(|now| now != *before) {
            changed.push(path.clone());
        }
    }
    if !changed.is_empty() {
        changed.sort();
        return Err(EmitError::Interrupted {
            staging: staging.display().to_string(),
            paths: changed,
        });
    }
    let mut moves: Vec<(PathBuf, PathBuf)> = journal
        .puts
        .iter()
        .map(|(staged, path, _)| (staging.join(staged), dir.join(path)))
        .collect();
    if journal.manifest {
        moves.push((staging.join("manifest"), dir.join(MANIFEST)));
    }
    for (from, to) in moves.iter().filter(|(from, _)| from.exists()) {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::rename(from, to).map_err(io(to))?;
    }
    for (path, _) in &journal.removals {
        let target = dir.join(path);
        match std::fs::remove_file(&target) {
            Ok(()) => remove_empty_parents(dir, &target),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&target)(e)),
        }
    }
    Ok(())
}

/// What one generation produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub generator: String,
    pub generator_version: String,
    pub spec_sha256: String,
    pub rustfmt: String,
    /// Relative path → SHA-256 of the contents written.
    pub files: BTreeMap<String, String>,
    /// The tables the migrations create, for the next generation's migration; absent from
    /// the manifests of bulwark versions that did not record them (`None`), empty for an
    /// application without resources.
    #[serde(default)]
    pub schema: Option<Vec<crate::render::sql::TableRecord>>,
    /// What each API version served, the current one first, for the next generation's
    /// deprecated versions (`crate::versions`).
    #[serde(default)]
    pub api: Vec<crate::versions::ApiShape>,
}

impl Manifest {
    pub fn new(
        files: &FileSet,
        spec_sha256: String,
        generator_version: String,
        rustfmt: String,
        schema: Vec<crate::render::sql::TableRecord>,
        api: Vec<crate::versions::ApiShape>,
    ) -> Self {
        Manifest {
            generator: "bulwark".into(),
            generator_version,
            spec_sha256,
            rustfmt,
            schema: Some(schema),
            api,
            files: files
                .files
                .iter()
                .map(|(p, c)| (p.clone(), sha256(c.as_bytes())))
                .collect(),
        }
    }

    /// Whether `self` records what `other` does, but for the rustfmt version: the same
    /// files, made by another rustfmt release that formats them alike.
    pub fn same_but_rustfmt(&self, other: &Manifest) -> bool {
        let mut same = self.clone();
        same.rustfmt.clone_from(&other.rustfmt);
        same == *other
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `bytes` with CRLF line endings turned back into LF, when there are any: what a checkout
/// with `core.autocrlf` makes of a generated file is no edit of anyone's.
fn lf(bytes: &[u8]) -> Option<Vec<u8>> {
    bytes.windows(2).any(|pair| pair == b"\r\n").then(|| {
        let mut text = Vec::with_capacity(bytes.len());
        for (i, &byte) in bytes.iter().enumerate() {
            if !(byte == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
                text.push(byte);
            }
        }
        text
    })
}

/// Whether a file on disk holds `text`, byte for byte or but for CRLF line endings.
fn holds(bytes: &[u8], text: &str) -> bool {
    bytes == text.as_bytes() || lf(bytes).is_some_and(|bytes| bytes == text.as_bytes())
}

/// Whether a file on disk holds what the manifest recorded (its digest), byte for byte or
/// but for CRLF line endings.
fn as_recorded(bytes: &[u8], recorded: &str) -> bool {
    sha256(bytes) == recorded || lf(bytes).is_some_and(|bytes| sha256(&bytes) == recorded)
}

/// What a write changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    pub written: Vec<String>,
    pub removed: Vec<String>,
    /// Files no longer generated but edited by hand: left in place (only with `--force`).
    pub kept: Vec<String>,
    pub unchanged: usize,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EmitError {
    #[error("{} edited by hand since bulwark generated {}", edited(.paths), if .paths.len() == 1 { "it" } else { "them" })]
    #[diagnostic(
        code(bulwark::emit::modified),
        help(
            "keep the edits on your branch and merge regenerated output into it, or pass --force to overwrite"
        )
    )]
    Modified { paths: Vec<String> },
    #[error("`{path}` exists and was not generated by bulwark")]
    #[diagnostic(
        code(bulwark::emit::foreign),
        help("move it away: bulwark never overwrites a file it did not generate, --force or not")
    )]
    Foreign { path: String },
    #[error("`{path}` {reason}")]
    #[diagnostic(
        code(bulwark::emit::migration),
        help(
            "bulwark never rewrites a migration (databases may have applied it as it was): restore it from version control, and put a change of your own in a new file under `migrations/`, which bulwark numbers its next migration after"
        )
    )]
    Migration { path: String, reason: String },
    #[error("the manifest `{path}` cannot be read: {message}")]
    #[diagnostic(
        code(bulwark::emit::manifest),
        help("restore it from version control, or delete the directory and generate again")
    )]
    BadManifest { path: String, message: String },
    #[error("`{path}` is a symbolic link")]
    #[diagnostic(
        code(bulwark::emit::symlink),
        help(
            "bulwark never writes through links inside the output directory: replace the link with the folder or file it stands for, or move it away"
        )
    )]
    Symlink { path: String },
    #[error("`{path}` is not a directory")]
    #[diagnostic(
        code(bulwark::emit::not_a_directory),
        help("pass a directory to --out (it is created if missing)")
    )]
    NotADirectory { path: String },
    #[error("a generation into this directory was interrupted while moving its files into place, and {} changed since, so it cannot be finished", named(.paths, "has", "have"))]
    #[diagnostic(
        code(bulwark::emit::interrupted),
        help(
            "its files and journal are in `{staging}`: put the files named back as they were, or move them away, and generate again (it finishes the interrupted generation first, then does its own)"
        )
    )]
    Interrupted { staging: String, paths: Vec<String> },
    #[error("cannot write `{path}`: {message}")]
    #[diagnostic(code(bulwark::emit::io))]
    Io { path: String, message: String },
    #[error(
        "the journal of an interrupted generation in `{staging}` cannot be followed: {message}"
    )]
    #[diagnostic(
        code(bulwark::emit::journal),
        help(
            "bulwark did not write it so: move that folder out of `.bulwark` (look at what it holds first) and generate again"
        )
    )]
    Journal { staging: String, message: String },
    #[error("cannot take the lock `{path}` of generations into this directory: {message}")]
    #[diagnostic(
        code(bulwark::emit::lock),
        help(
            "the lock lives in bulwark's per-user cache folder: make it writable, or set BULWARK_CACHE_DIR to a folder you can write"
        )
    )]
    Lock { path: String, message: String },
}

/// "`a` was", or "`a`, `b` and `c` were": every file edited, named at once.
fn edited(paths: &[String]) -> String {
    named(paths, "was", "were")
}

/// Every path, quoted and listed, then `one` or `many` as the verb agrees with them.
fn named(paths: &[String], one: &str, many: &str) -> String {
    let quoted: Vec<String> = paths.iter().map(|p| format!("`{p}`")).collect();
    match quoted.as_slice() {
        [single] => format!("{single} {one}"),
        [rest @ .., last] => format!("{} and {last} {many}", rest.join(", ")),
        [] => format!("nothing {one}"),
    }
}

impl EmitError {
    /// Whether this is a refusal (exit 4): `--force` gets past a hand edit's only.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            EmitError::Modified { .. }
                | EmitError::Foreign { .. }
                | EmitError::Migration { .. }
                | EmitError::Symlink { .. }
                | EmitError::Interrupted { .. }
        )
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmitError + '_ {
    move |e| EmitError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads the manifest of a previous generation in `dir`, if there is one.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, EmitError> {
    read_manifest_from(dir, &|path: &Path| std::fs::read_to_string(path))
}

/// The previous generation in `dir`: its recorded schema and its migrations as they are on
/// disk (never rewritten), if a manifest is there.
pub fn previous_in_dir(dir: &Path) -> Result<Option<crate::evolve::Previous>, EmitError> {
    // Not a directory (yet): nothing generated there; writing reports what is in the way.
    if !dir.is_dir() {
        return Ok(None);
    }
    let list = |folder: &Path| -> Vec<String> {
        std::fs::read_dir(folder)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    previous_from(dir, |path| std::fs::read_to_string(path), list)
}

/// The previous generation under `base`, read by `read` (from a directory or a git tree),
/// whose folders `list` names the files of.
pub fn previous_from(
    base: &Path,
    read: impl Fn(&Path) -> std::io::Result<String>,
    list: impl Fn(&Path) -> Vec<String>,
) -> Result<Option<crate::evolve::Previous>, EmitError> {
    let Some(manifest) = read_manifest_from(base, &read)? else {
        return Ok(None);
    };
    let mut migrations = BTreeMap::new();
    for path in manifest
        .files
        .keys()
        .filter(|p| crate::evolve::is_migration(p))
    {
        let full = base.join(path);
        match read(&full) {
            // The migration as generated: it is kept byte for byte, so an edit would pass
            // for generated output from then on (and a lost `FORCE ROW LEVEL SECURITY`
            // with it).
            // (A checkout that turned line endings into CRLF changed no statement.)
            Ok(text) if !as_recorded(text.as_bytes(), &manifest.files[path]) => {
                return Err(EmitError::Migration {
                    path: path.clone(),
                    reason: "was edited by hand since bulwark generated it".into(),
                });
            }
            // As generated: with LF line endings, whatever a checkout made of them.
            Ok(text) => {
                let generated = if sha256(text.as_bytes()) == manifest.files[path] {
                    text
                } else {
                    text.replace("\r\n", "\n")
                };
                migrations.insert(path.clone(), generated);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EmitError::BadManifest {
                    path: base.join(MANIFEST).display().to_string(),
                    message: format!(
                        "it lists `{path}`, which is missing: restore it (databases have applied it, and bulwark never rewrites a migration)"
                    ),
                });
            }
            Err(e) => return Err(io(&full)(e)),
        }
    }
    let mut unrecorded = BTreeMap::new();
    for path in list(&base.join("migrations"))
        .into_iter()
        .map(|name| format!("migrations/{name}"))
        .filter(|path| crate::evolve::is_migration(path) && !migrations.contains_key(path))
    {
        let full = base.join(&path);
        // Unreadable as text (not UTF-8, say): its number is still taken. With LF line
        // endings, so that one an interrupted run wrote is still recognised after a checkout.
        let text = match read(&full) {
            Ok(text) => text.replace("\r\n", "\n"),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => String::new(),
            Err(e) => return Err(io(&full)(e)),
        };
        unrecorded.insert(path, text);
    }
    Ok(Some(crate::evolve::Previous {
        schema: manifest.schema.clone(),
        api: manifest.api.clone(),
        migrations,
        unrecorded,
        manifest,
    }))
}

/// Parses a manifest read by `read` (from a directory or a git tree), checking its paths.
pub fn read_manifest_from(
    dir: &Path,
    read: &impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Option<Manifest>, EmitError> {
    let path = dir.join(MANIFEST);
    match read(&path) {
        Ok(text) => {
            let bad = |message: String| EmitError::BadManifest {
                path: path.display().to_string(),
                message,
            };
            let manifest: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            // The manifest decides what may be overwritten or removed: a path that could
            // leave the directory is never trusted.
            if let Some(escaping) = manifest.files.keys().find(|p| !is_generated_path(p)) {
                return Err(bad(format!(
                    "it lists `{escaping}`, which is not a plain path inside the directory"
                )));
            }
            Ok(Some(manifest))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// A path bulwark could have generated: relative, of normal components only (no `..`, no
/// root), and outside the places that are never generated (`.git`, `target`, `.bulwark`).
fn is_generated_path(path: &str) -> bool {
    let path = Path::new(path);
    let normal = path
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let first = path
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    normal
        && !matches!(
            first.as_deref(),
            None | Some(".git" | "target" | ".bulwark")
        )
}

/// What bulwark did not make stands where `path` goes: a folder in a file's place, or a file
/// in the place of one of its folders.
fn in_the_way(dir: &Path, path: &str) -> Option<EmitError> {
    let mut current = dir.to_path_buf();
    let components: Vec<_> = Path::new(path).components().collect();
    for (index, component) in components.iter().enumerate() {
        current.push(component);
        let last = index + 1 == components.len();
        let meta = std::fs::symlink_metadata(&current).ok()?;
        if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return Some(EmitError::Foreign {
                path: current
                    .strip_prefix(dir)
                    .unwrap_or(&current)
                    .display()
                    .to_string(),
            });
        }
    }
    None
}

/// Refuses a path that passes through a symbolic link below `dir`: writing or deleting there
/// would reach outside the directory.
fn no_symlink(dir: &Path, path: &str) -> Result<(), EmitError> {
    let mut current = dir.to_path_buf();
    for component in Path::new(path).components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(EmitError::Symlink {
                    path: current.display().to_string(),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// Writes `files` and `manifest` into `dir`.
pub fn write_dir(
    dir: &Path,
    files: &FileSet,
    manifest: &Manifest,
    force: bool,
) -> Result<Outcome, EmitError> {
    if dir.exists() && !dir.is_dir() {
        return Err(EmitError::NotADirectory {
            path: dir.display().to_string(),
        });
    }
    let previous = read_manifest(dir)?;
    let previous_files = previous
        .as_ref()
        .map(|m| m.files.clone())
        .unwrap_or_default();

    // Check everything before writing anything.
    // Each file to write, with the SHA-256 of the file there now (for the journal).
    let mut plan: Vec<(&String, &String, Option<String>)> = Vec::new();
    let mut outcome = Outcome::default();
    // Files edited by hand, all named in one refusal.
    let mut edits: Vec<String> = Vec::new();
    no_symlink(dir, ".bulwark")?;
    for (path, contents) in &files.files {
        no_symlink(dir, path)?;
        let target = dir.join(path);
        let on_disk = match std::fs::read(&target) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(in_the_way(dir, path).unwrap_or_else(|| io(&target)(e))),
        };
        match (&on_disk, previous_files.get(path)) {
            // Kept as it is, line endings too.
            (Some(bytes), _) if holds(bytes, contents) => {
                outcome.unchanged += 1;
                continue;
            }
            // Not even forced: a migration on disk may have been applied as it is (here the
            // manifest that would have kept it is gone, or never listed it).
            (Some(_), _) if crate::evolve::is_migration(path) => {
                return Err(EmitError::Migration {
                    path: path.clone(),
                    reason: "exists and differs from the migration this spec renders".into(),
                });
            }
            (Some(bytes), Some(recorded)) if !force && !as_recorded(bytes, recorded) => {
                edits.push(path.clone());
                continue;
            }
            // Not even forced: `--force` takes back files bulwark generated, never others.
            (Some(_), None) => return Err(EmitError::Foreign { path: path.clone() }),
            _ => {}
        }
        plan.push((path, contents, on_disk.as_deref().map(sha256)));
    }
    let mut removals = Vec::new();
    for (path, recorded) in &previous_files {
        if files.files.contains_key(path) {
            continue;
        }
        no_symlink(dir, path)?;
        let target = dir.join(path);
        match std::fs::read(&target) {
            Ok(bytes) if !as_recorded(&bytes, recorded) => {
                if !force {
                    edits.push(path.clone());
                }
                outcome.kept.push(path.clone());
            }
            Ok(bytes) => removals.push((path.clone(), sha256(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(in_the_way(dir, path).unwrap_or_else(|| io(&target)(e))),
        }
    }
    if !edits.is_empty() {
        edits.sort();
        return Err(EmitError::Modified { paths: edits });
    }

    // Stage inside the target so the final renames stay on one filesystem. A failure
    // removes the folders made for it again: the directory itself and any of its parents
    // this made too, deepest first.
    let own = dir.join(".bulwark");
    let made: Vec<PathBuf> = std::iter::once(own.as_path())
        .chain(dir.ancestors())
        .take_while(|folder| !folder.as_os_str().is_empty() && !folder.exists())
        .map(Path::to_path_buf)
        .collect();
    let created = std::fs::create_dir_all(&own).map_err(io(dir));
    let written = created.and_then(|()| {
        write_staged(
            dir,
            &plan,
            &removals,
            manifest,
            previous.as_ref(),
            &mut outcome,
        )
    });
    if written.is_err() {
        for folder in &made {
            let _ = std::fs::remove_dir(folder);
        }
    }
    written.map(|()| outcome)
}

/// Stages the `plan`'s files and the manifest in `dir/.bulwark`, then moves them into place
/// and removes the `removals`; on a failure, undoes every change made.
fn write_staged(
    dir: &Path,
    plan: &[(&String, &String, Option<String>)],
    removals: &[(String, String)],
    manifest: &Manifest,
    previous: Option<&Manifest>,
    outcome: &mut Outcome,
) -> Result<(), EmitError> {
    let staging = tempfile::Builder::new()
        .prefix("staging-")
        .tempdir_in(dir.join(".bulwark"))
        .map_err(io(dir))?;
    let Some(in_use) = take_in_use(staging.path())? else {
        return Err(io(staging.path())(std::io::Error::other(
            "the new staging folder was taken by another process",
        )));
    };
    let mut staged: Vec<(PathBuf, PathBuf, &String)> = Vec::new();
    for (index, (path, contents, _)) in plan.iter().enumerate() {
        let staged_path = staging.path().join(index.to_string());
        std::fs::write(&staged_path, contents.as_bytes()).map_err(io(&staged_path))?;
        staged.push((staged_path, dir.join(path), path));
    }
    let manifest_staged = staging.path().join("manifest");
    std::fs::write(&manifest_staged, manifest.to_json()).map_err(io(&manifest_staged))?;
    // An unchanged manifest is left alone, like every unchanged file.
    let new_manifest = previous != Some(manifest);
    // The journal appears whole (renamed into place) before the first move, so a process
    // killed part way leaves what the next generation needs to finish ([`recover`]).
    let journal = Journal {
        puts: plan
            .iter()
            .enumerate()
            .map(|(index, (path, _, before))| (index.to_string(), (*path).clone(), before.clone()))
            .collect(),
        removals: removals.to_vec(),
        manifest: new_manifest,
    };
    let journal_path = staging.path().join(JOURNAL);
    let written = staging.path().join("journal.part");
    let json = serde_json::to_vec(&journal).map_err(|e| io(&written)(std::io::Error::other(e)))?;
    std::fs::write(&written, json).map_err(io(&written))?;
    std::fs::rename(&written, &journal_path).map_err(io(&journal_path))?;

    // Every change is undone if a later one fails: the directory is left as it was.
    let mut changes = Changes::new(staging.path());
    let rename: Rename = &|from, to| {
        // Tests (debug builds only) kill the process here, as a kill part way through the
        // moves would: before the rename onto a path ending with the variable's value.
        #[cfg(debug_assertions)]
        if std::env::var_os("BULWARK_TEST_ABORT_BEFORE_RENAME_TO").is_some_and(|end| {
            to.as_os_str()
                .as_encoded_bytes()
                .ends_with(end.as_encoded_bytes())
        }) {
            std::process::abort();
        }
        std::fs::rename(from, to)
    };
    let applied = (|| {
        for (from, to, path) in &staged {
            changes.put(from, to, rename)?;
            outcome.written.push((*path).clone());
        }
        for (path, _) in removals {
            changes.remove(&dir.join(path), rename)?;
            outcome.removed.push(path.clone());
        }
        if new_manifest {
            changes.put(&manifest_staged, &dir.join(MANIFEST), rename)?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => {
            for (path, _) in removals {
                remove_empty_parents(dir, &dir.join(path));
            }
            discard(&staging.keep(), Some(in_use));
            Ok(())
        }
        Err(error) => {
            // Undone, not to be finished: marked so before the undoing starts, so that
            // whatever happens next no later generation finishes these moves, or takes the
            // folder (which may hold files that could not be put back) for litter.
            let _ = std::fs::rename(&journal_path, staging.path().join(UNDONE));
            if changes.undo(dir) {
                discard(&staging.keep(), Some(in_use));
                return Err(error);
            }
            // A previous file that could not be put back is still in the staging folder:
            // keep it, and say where.
            let kept = staging.keep();
            Err(EmitError::Io {
                path: dir.display().to_string(),
                message: format!(
                    "{error}; undoing it failed too: the files it replaced are in `{}`",
                    kept.display()
                ),
            })
        }
    }
}

/// The changes made to a directory so far, each with what it replaced (moved aside into
/// the staging directory), so that they can be undone.
struct Changes<'a> {
    aside: &'a Path,
    /// A path written or removed, and where its previous file now is (none: it had none).
    done: Vec<(PathBuf, Option<PathBuf>)>,
    /// Directories created, to remove again if empty.
    created: Vec<PathBuf>,
}

type Rename<'r> = &'r dyn Fn(&Path, &Path) -> std::io::Result<()>;

impl<'a> Changes<'a> {
    fn new(aside: &'a Path) -> Self {
        Changes {
            aside,
            done: Vec::new(),
            created: Vec::new(),
        }
    }

    /// Moves the file at `to` aside, if any.
    fn set_aside(&mut self, to: &Path, rename: Rename<'_>) -> Result<Option<PathBuf>, EmitError> {
        if std::fs::symlink_metadata(to).is_err() {
            return Ok(None);
        }
        let aside = self.aside.join(format!("previous-{}", self.done.len()));
        rename(to, &aside).map_err(io(to))?;
        Ok(Some(aside))
    }

    /// Puts the staged file `from` at `to`.
    fn put(&mut self, from: &Path, to: &Path, rename: Rename<'_>) -> Result<(), EmitError> {
        if let Some(parent) = to.parent() {
            let mut missing = Vec::new();
            let mut ancestor = Some(parent);
            while let Some(dir) = ancestor.filter(|d| !d.exists()) {
                missing.push(dir.to_path_buf());
                ancestor = dir.parent();
            }
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            self.created.extend(missing.into_iter().rev());
        }
        let previous = self.set_aside(to, rename)?;
        let put = rename(from, to).map_err(io(to));
        self.done.push((to.to_path_buf(), previous));
        put
    }

    /// Removes the file at `path` (moved aside, in case it must come back).
    fn remove(&mut self, path: &Path, rename: Rename<'_>) -> Result<(), EmitError> {
        let previous = self.set_aside(path, rename)?;
        self.done.push((path.to_path_buf(), previous));
        Ok(())
    }

    /// Undoes every change, latest first: each path gets its previous file back, or none.
    /// Best effort: whether every previous file is back (what is not stays in the staging
    /// directory).
    fn undo(self, root: &Path) -> bool {
        let mut restored = true;
        for (path, previous) in self.done.into_iter().rev() {
            match previous {
                Some(previous) => {
                    restored &= std::fs::rename(&previous, &path).is_ok();
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        for dir in self.created.iter().rev() {
            if dir.starts_with(root) {
                let _ = std::fs::remove_dir(dir);
            }
        }
        restored
    }
}

fn remove_empty_parents(root: &Path, file: &Path) {
    let mut current = file.parent();
    while let Some(dir) = current {
        if dir == root || !dir.starts_with(root) || std::fs::remove_dir(dir).is_err() {
            break;
        }
        current = dir.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_generation_into_a_directory_waits_for_the_first() {
        let tmp = tempfile::tempdir().expect("a scratch directory");
        // Not created yet, and named another way by the second generation.
        let dir = tmp.path().join("out");
        let other = tmp.path().join("sub/../out");
        std::fs::create_dir(tmp.path().join("sub")).expect("a folder");
        let first = lock_dir(&dir, || panic!("nobody held the lock")).expect("the lock");
        assert!(first.is_some(), "no cache folder to lock in");
        let (waited, took) = std::sync::mpsc::channel();
        let second = std::thread::spawn(move || {
            let lock = lock_dir(&other, || waited.send("waiting").expect("sent"));
            lock.expect("the lock, once the first let go")
        });
        assert_eq!(took.recv().expect("the second waits"), "waiting");
        // Time enough for a lock that did not wait to let the second through.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !second.is_finished(),
            "the second went ahead while the first held the lock"
        );
        drop(first);
        second.join().expect("the second took the lock");
        assert!(!dir.exists(), "taking the lock wrote into the directory");
    }

    fn tree(root: &Path) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).expect("a directory").flatten() {
                let path = entry.path();
                let name = path
                    .strip_prefix(root)
                    .expect("inside")
                    .display()
                    .to_string();
                if path.is_dir() {
                    files.insert(format!("{name}/"), String::new());
                    pending.push(path);
                } else {
                    files.insert(name, std::fs::read_to_string(&path).expect("text"));
                }
            }
        }
        files
    }

    #[test]
    fn a_failure_part_way_leaves_the_directory_as_it_was() {
        let root = tempfile::tempdir().expect("a directory");
        let (dir, aside) = (root.path().join("out"), root.path().join("aside"));
        for path in [&dir, &aside] {
            std::fs::create_dir(path).expect("a directory");
        }
        std::fs::write(dir.join("kept.rs"), "old kept").expect("a file");
        std::fs::write(dir.join("gone.rs"), "old gone").expect("a file");
        let before = tree(&dir);
        let staged: Vec<PathBuf> = (0..3).map(|i| aside.join(format!("new-{i}"))).collect();
        for (i, path) in staged.iter().enumerate() {
            std::fs::write(path, format!("new {i}")).expect("a staged file");
        }
        // The fifth rename fails: two writes (one over a file, one into a new directory)
        // and a removal are done by then.
        let calls = std::cell::Cell::new(0);
        let rename = |from: &Path, to: &Path| {
            calls.set(calls.get() + 1);
            if calls.get() == 5 {
                return Err(std::io::Error::other("disk full"));
            }
            std::fs::rename(from, to)
        };
        let mut changes = Changes::new(&aside);
        changes
            .put(&staged[0], &dir.join("kept.rs"), &rename)
            .expect("a write");
        changes
            .put(&staged[1], &dir.join("new/deep/file.rs"), &rename)
            .expect("a write");
        changes
            .remove(&dir.join("gone.rs"), &rename)
            .expect("a removal");
        assert_ne!(tree(&dir), before);
        assert!(
            changes
                .put(&staged[2], &dir.join("third.rs"), &rename)
                .is_err()
        );
        assert!(changes.undo(&dir), "every previous file is back");
        assert_eq!(tree(&dir), before);
    }

    /// A write into a directory that did not exist, failing part way (a file where a folder
    /// must go), leaves no directory behind: not the output's, not `.bulwark`.
    #[test]
    fn a_failed_first_write_leaves_no_directory() {
        let root = tempfile::tempdir().expect("a directory");
        // Two parents made for it go too.
        let dir = root.path().join("new/parent/out");
        let mut files = FileSet::default();
        files.insert("a", "a file".into());
        files.insert("a/b", "a file under it".into());
        let manifest = Manifest::new(
            &files,
            String::new(),
            String::new(),
            String::new(),
            Vec::new(),
            Vec::new(),
        );
        assert!(write_dir(&dir, &files, &manifest, false).is_err());
        assert!(!root.path().join("new").exists(), "{:?}", tree(root.path()));
    }
}
