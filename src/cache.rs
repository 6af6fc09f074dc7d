//! The per-user cache (`BULWARK_CACHE_DIR`, `XDG_CACHE_HOME/bulwark` or `~/.cache/bulwark`):
//! what a regeneration need not work out again. The format stage keeps formatted files there
//! in [`Packs`] (`rustfmt-packs/`), lowering the resources whose policies validated
//! (`policies/`). Everything in it is best effort: a cache that cannot be read or written
//! only costs time. Entries unused for [`UNUSED_FOR`] are swept away ([`sweep`]), so the
//! cache does not grow without end on a machine that generates for years. (`locks/` holds
//! one empty file per output directory, which generations into it lock in turn; it is never
//! swept, since a lock file removed while held would let a second generation in; nor is
//! `rustfmt-scratch/`, the folders rustfmt formats in, each holding only the files of the
//! last rustfmt process that used it.)

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// An entry not read or written for this long is removed by the next sweep.
const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// The cache is swept at most this often; an entry's use is recorded at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(24 * 3600);
/// The file whose modification time says when the cache was last swept.
const SWEPT: &str = ".swept";
/// The cache's own folders: a sweep looks nowhere else (`BULWARK_CACHE_DIR` may name a
/// folder that holds other things too). `rustfmt` held a file per formatted file before
/// [`Packs`]; its entries are swept like the rest.
const FOLDERS: [&str; 3] = ["rustfmt-packs", "rustfmt", "policies"];

fn base() -> Option<PathBuf> {
    // An empty variable names no folder, and the XDG base directories ignore relative ones:
    // either would put the cache in whatever directory bulwark runs in.
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let absolute = |name: &str| var(name).map(PathBuf::from).filter(|p| p.is_absolute());
    var("BULWARK_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| absolute("XDG_CACHE_HOME").map(|d| d.join("bulwark")))
        .or_else(|| absolute("HOME").map(|d| d.join(".cache/bulwark")))
}

/// The cache's subdirectory `name`, created if need be; `None` when there is nowhere to
/// keep it.
pub fn dir(name: &str) -> Option<PathBuf> {
    let dir = base()?.join(name);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// The text of the entry at `path`, marking it used: its modification time is brought to
/// now when older than a day, so that a sweep keeps what is still read.
pub fn read_entry(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let now = SystemTime::now();
    if file
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|at| older_than(at, now, SWEEP_EVERY))
    {
        let _ = file.set_modified(now);
    }
    Some(text)
}

/// Removes the entries of the cache not used for [`UNUSED_FOR`] (left-over partial files
/// too), at most once a day. Best effort.
pub fn sweep() {
    if let Some(base) = base() {
        sweep_in(&base, SystemTime::now());
    }
}

fn sweep_in(base: &Path, now: SystemTime) {
    let marker = base.join(SWEPT);
    let last = std::fs::metadata(&marker).and_then(|m| m.modified());
    if last.is_ok_and(|at| !older_than(at, now, SWEEP_EVERY)) {
        return;
    }
    // Marked first: two generations at once sweep once.
    if std::fs::File::create(&marker)
        .and_then(|f| f.set_modified(now))
        .is_err()
    {
        return;
    }
    for folder in FOLDERS {
        let Ok(entries) = std::fs::read_dir(base.join(folder)) else {
            continue;
        };
        for entry in entries.flatten().filter(|e| is_entry_name(&e.file_name())) {
            // Not followed: a link is nothing the cache wrote.
            let unused = entry.metadata().is_ok_and(|m| {
                m.is_file() && m.modified().is_ok_and(|at| older_than(at, now, UNUSED_FOR))
            });
            if unused {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether `name` is one the cache gives its entries: a SHA-256 digest in hex, maybe with
/// a `.partial-PID` of a write cut short.
fn is_entry_name(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let (digest, rest) = name.split_at_checked(64).unwrap_or((name, ""));
    let hex = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    let partial = rest.is_empty()
        || rest
            .strip_prefix(".partial-")
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    hex && partial
}

/// Whether `at` is more than `age` before `now`.
fn older_than(at: SystemTime, now: SystemTime, age: Duration) -> bool {
    now.duration_since(at).is_ok_and(|elapsed| elapsed > age)
}

/// Texts by key, kept in packs: each run that has something to keep writes one pack, a
/// single file holding all of it, since creating a file per entry (hundreds on a first
/// generation) cost more than the formatting it saved on a busy disk. A pack starts with
/// [`PACK_HEADER`], then a line `KEY START LENGTH` for each key (a text may have several
/// keys), a blank line, and the texts (START and LENGTH are bytes into them). Packs are
/// named by the digest of their content and never change once in place, so a pack whose
/// content does not match its name is damaged and unused. Reading one marks it used; a run
/// that writes a pack then removes all but the [`MAX_PACKS`] used last (never one it read),
/// besides the sweep.
#[derive(Debug)]
pub struct Packs {
    folder: PathBuf,
    /// Each key found: which pack (an index into `packs`), and where its text is.
    index: HashMap<String, (usize, Span)>,
    /// Each pack's path and where its texts start, and its texts, read at the first lookup
    /// that needs them (`None`: it could not be read).
    packs: Vec<(PathBuf, usize, OnceLock<Option<String>>)>,
}

/// Where a text is among a pack's texts: its start and length, in bytes.
type Span = (usize, usize);

/// The first line of a pack.
const PACK_HEADER: &str = "bulwark pack 1";
/// The packs kept, the most recently used: a few generations' worth of each of many
/// projects (each run reads the index of every pack, so not without end).
const MAX_PACKS: usize = 128;

impl Packs {
    /// The packs in the cache's folder `name`; `None` when there is no cache.
    pub fn open(name: &str) -> Option<Packs> {
        Packs::open_in(dir(name)?)
    }

    fn open_in(folder: PathBuf) -> Option<Packs> {
        // Where two packs hold a key, the one used last answers.
        let found = by_use(&folder)?;
        let mut packs = Packs {
            folder,
            index: HashMap::new(),
            packs: Vec::new(),
        };
        for (_, path) in found {
            let Some((keys, start)) = read_pack_index(&path) else {
                continue;
            };
            let number = packs.packs.len();
            for (key, span) in keys {
                packs.index.entry(key).or_insert((number, span));
            }
            packs.packs.push((path, start, OnceLock::new()));
        }
        Some(packs)
    }

    /// The text kept under `key`, if any (its pack marked used).
    pub fn get(&self, key: &str) -> Option<String> {
        let &(number, (from, len)) = self.index.get(key)?;
        let (path, start, text) = self.packs.get(number)?;
        let text = text.get_or_init(|| {
            let bytes = std::fs::read(path).ok()?;
            let named = path.file_name().and_then(|name| name.to_str());
            if named != Some(crate::emit::sha256(&bytes).as_str()) {
                return None;
            }
            let _ = std::fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()));
            String::from_utf8(bytes).ok()
        });
        let begin = start.checked_add(from)?;
        text.as_deref()?
            .get(begin..begin.checked_add(len)?)
            .map(str::to_owned)
    }

    /// Keeps `texts`, each under its keys (digests: a key that is empty or holds white space
    /// is left out, since the index is lines of words), in one new pack. Best effort.
    pub fn put<'a>(&self, texts: impl IntoIterator<Item = (Vec<String>, &'a str)>) {
        let mut index = String::new();
        let mut body = String::new();
        for (keys, text) in texts {
            let keys = keys
                .into_iter()
                .filter(|key| !key.is_empty() && !key.contains(char::is_whitespace));
            for key in keys {
                index.push_str(&format!("{key} {} {}\n", body.len(), text.len()));
            }
            body.push_str(text);
        }
        if index.is_empty() {
            return;
        }
        let pack = format!("{PACK_HEADER}\n{index}\n{body}");
        let path = self.folder.join(crate::emit::sha256(pack.as_bytes()));
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        if std::fs::write(&partial, pack).is_ok() && std::fs::rename(&partial, &path).is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        self.prune(&path);
    }

    /// Removes the packs past the [`MAX_PACKS`] used last, except `written` and those read
    /// in this run. (A pack another run is reading only costs that run a miss.)
    fn prune(&self, written: &Path) {
        let read: Vec<&PathBuf> = self
            .packs
            .iter()
            .filter(|(_, _, text)| matches!(text.get(), Some(Some(_))))
            .map(|(path, _, _)| path)
            .collect();
        let others = by_use(&self.folder)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, path)| path != written && !read.contains(&path));
        for (_, stale) in others.skip(MAX_PACKS.saturating_sub(1 + read.len())) {
            let _ = std::fs::remove_file(stale);
        }
    }
}

/// The packs in `folder` (files named by a digest, no partial ones), the most recently used
/// first.
fn by_use(folder: &Path) -> Option<Vec<(SystemTime, PathBuf)>> {
    let mut found: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(folder)
        .ok()?
        .flatten()
        .filter(|e| is_entry_name(&e.file_name()) && e.file_name().len() == 64)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    Some(found)
}

/// The keys of the pack at `path` with where their texts are, and where its texts start;
/// `None` when it is not a whole pack.
fn read_pack_index(path: &Path) -> Option<(Vec<(String, Span)>, usize)> {
    let file = std::fs::File::open(path).ok()?;
    let size = usize::try_from(file.metadata().ok()?.len()).ok()?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if line.trim_end_matches('\n') != PACK_HEADER {
        return None;
    }
    let mut start = line.len();
    let mut keys = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        start += line.len();
        let entry = line.trim_end_matches('\n');
        if entry.is_empty() {
            let texts = size.checked_sub(start)?;
            let inside = |&(_, (from, len)): &(String, Span)| {
                from.checked_add(len).is_some_and(|end| end <= texts)
            };
            return keys.iter().all(inside).then_some((keys, start));
        }
        let mut parts = entry.split(' ');
        let (key, from, len) = (parts.next()?, parts.next()?, parts.next()?);
        keys.push((key.to_owned(), (from.parse().ok()?, len.parse().ok()?)));
    }
}

/// The running executable's size and modification time: what a record was made by. A new
/// build of bulwark may work differently, so records are kept per build.
pub fn build_fingerprint() -> Option<String> {
    let metadata = std::fs::metadata(std::env::current_exe().ok()?).ok()?;
    let modified = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("{} {}", metadata.len(), modified.as_nanos()))
}

/// The resources whose policies this build of bulwark found valid, by digest
/// ([`crate::policy::Validated`]): one file per build, read once and written once (a file
/// per resource cost more to create than validating took).
pub struct ValidPolicies {
    path: PathBuf,
    known: BTreeSet<String>,
    /// Digests known or found valid in this run.
    used: Mutex<BTreeSet<String>>,
}

/// Above this many digests, the record keeps only those of the last run.
const MAX_VALID: usize = 50_000;

impl ValidPolicies {
    /// `None` when there is no cache, or the build cannot be told.
    pub fn open() -> Option<ValidPolicies> {
        let build = build_fingerprint()?;
        let path = dir("policies")?.join(crate::emit::sha256(format!("valid\n{build}").as_bytes()));
        let text = read_entry(&path).unwrap_or_default();
        Some(ValidPolicies {
            path,
            known: text.lines().map(str::to_owned).collect(),
            used: Mutex::default(),
        })
    }

    /// Writes the record back when this run found resources valid that it did not know.
    pub fn save(&self) {
        let used = self
            .used
            .lock()
            .map(|used| used.clone())
            .unwrap_or_default();
        if used.is_subset(&self.known) {
            return;
        }
        let mut all = used.clone();
        if self.known.len() + used.len() <= MAX_VALID {
            all.extend(self.known.iter().cloned());
        }
        let text: String = all.iter().map(|digest| format!("{digest}\n")).collect();
        let partial = self
            .path
            .with_extension(format!("partial-{}", std::process::id()));
        if std::fs::write(&partial, text).is_ok() && std::fs::rename(&partial, &self.path).is_err()
        {
            let _ = std::fs::remove_file(&partial);
        }
    }
}

impl crate::policy::Validated for ValidPolicies {
    fn known(&self, digest: &str) -> bool {
        let known = self.known.contains(digest);
        if known && let Ok(mut used) = self.used.lock() {
            used.insert(digest.to_owned());
        }
        known
    }

    fn remember(&self, digest: &str) {
        if let Ok(mut used) = self.used.lock() {
            used.insert(digest.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn file_at(path: &Path, at: SystemTime) {
        std::fs::write(path, "x").expect("a cache file");
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(at))
            .expect("a time");
    }

    #[test]
    fn a_sweep_removes_what_was_not_used_for_a_month_once_a_day() {
        let base = tempfile::tempdir().expect("a directory");
        let folder = base.path().join("rustfmt");
        std::fs::create_dir(&folder).expect("a folder");
        let now = SystemTime::now();
        let (old, recent) = (folder.join("a".repeat(64)), folder.join("b".repeat(64)));
        file_at(&old, now - 31 * DAY);
        file_at(&recent, now - 20 * DAY);
        sweep_in(base.path(), now);
        assert!(!old.exists() && recent.exists());
        // Swept today: not again.
        file_at(&old, now - 31 * DAY);
        sweep_in(base.path(), now + DAY / 2);
        assert!(old.exists());
        // A day later it is.
        sweep_in(base.path(), now + 2 * DAY);
        assert!(!old.exists() && recent.exists());
    }

    #[test]
    fn a_sweep_removes_only_the_caches_own_entries() {
        let base = tempfile::tempdir().expect("a directory");
        let now = SystemTime::now();
        let old = now - 40 * DAY;
        let digest = "0123456789abcdef".repeat(4);
        for folder in ["rustfmt", "policies", "notes", "pip"] {
            std::fs::create_dir(base.path().join(folder)).expect("a folder");
        }
        let ours = [
            base.path().join("rustfmt").join(&digest),
            base.path()
                .join("policies")
                .join(format!("{digest}.partial-42")),
        ];
        let theirs = [
            base.path().join("notes").join(&digest),
            base.path().join("pip").join("old.whl"),
            base.path().join("rustfmt").join("notes.txt"),
            base.path().join("rustfmt").join(format!("{digest}.bak")),
            base.path().join("main.rs"),
        ];
        for path in ours.iter().chain(&theirs) {
            file_at(path, old);
        }
        sweep_in(base.path(), now);
        for path in &ours {
            assert!(!path.exists(), "{} stayed", path.display());
        }
        for path in &theirs {
            assert!(path.exists(), "{} was removed", path.display());
        }
    }

    /// The packs in `folder`, newest first.
    fn packs_in(folder: &Path) -> Vec<PathBuf> {
        by_use(folder)
            .expect("a folder")
            .into_iter()
            .map(|(_, path)| path)
            .collect()
    }

    fn used_at(path: &Path, at: SystemTime) {
        std::fs::File::open(path)
            .and_then(|f| f.set_modified(at))
            .expect("a time");
    }

    #[test]
    fn packs_keep_texts_under_each_of_their_keys() {
        let folder = tempfile::tempdir().expect("a directory");
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        packs.put([
            (vec!["a".into(), "b".into()], "first text\n"),
            (vec!["c".into()], "é second"),
            (vec!["after".into()], "ü after multi-byte text"),
            (vec![], "kept under no key"),
            (
                vec!["two words".into(), String::new()],
                "under no usable key",
            ),
        ]);
        packs.put([(vec!["d".into()], "")]);
        packs.put(std::iter::empty());
        // An empty put writes nothing: two packs.
        assert_eq!(packs_in(folder.path()).len(), 2);
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        assert_eq!(packs.get("a").as_deref(), Some("first text\n"));
        assert_eq!(packs.get("b").as_deref(), Some("first text\n"));
        assert_eq!(packs.get("c").as_deref(), Some("é second"));
        assert_eq!(
            packs.get("after").as_deref(),
            Some("ü after multi-byte text")
        );
        assert_eq!(packs.get("d").as_deref(), Some(""));
        assert_eq!(packs.get("e"), None);
        assert_eq!(packs.get("two words"), None);
        assert_eq!(packs.get(""), None);
    }

    #[test]
    fn a_key_in_two_packs_is_answered_by_the_one_used_last() {
        let folder = tempfile::tempdir().expect("a directory");
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        packs.put([(vec!["k".into()], "older")]);
        used_at(&packs_in(folder.path())[0], SystemTime::now() - DAY);
        packs.put([(vec!["k".into()], "newer")]);
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        assert_eq!(packs.get("k").as_deref(), Some("newer"));
    }

    #[test]
    fn a_run_that_writes_a_pack_keeps_only_those_used_last() {
        let folder = tempfile::tempdir().expect("a directory");
        let now = SystemTime::now();
        for n in 0..MAX_PACKS + 2 {
            let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
            packs.put([(vec![format!("key{n}")], format!("text {n}").as_str())]);
            // Used in the order written, a minute apart.
            let newest = packs_in(folder.path())[0].clone();
            used_at(
                &newest,
                now - Duration::from_secs(60 * (MAX_PACKS + 2 - n) as u64),
            );
        }
        assert_eq!(packs_in(folder.path()).len(), MAX_PACKS);
        // A run reads the oldest pack left, then writes: the oldest other one goes, not the
        // one it read.
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        assert_eq!(packs.get("key0"), None);
        assert_eq!(packs.get("key1"), None);
        assert_eq!(packs.get("key2").as_deref(), Some("text 2"));
        packs.put([(vec!["last".into()], "last text")]);
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        assert_eq!(packs.get("key2").as_deref(), Some("text 2"));
        assert_eq!(packs.get("key3"), None);
        assert_eq!(packs.get("key4").as_deref(), Some("text 4"));
        assert_eq!(packs.get("last").as_deref(), Some("last text"));
        assert_eq!(packs_in(folder.path()).len(), MAX_PACKS);
    }

    #[test]
    fn a_damaged_pack_is_none_and_answers_nothing() {
        let folder = tempfile::tempdir().expect("a directory");
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        packs.put([(vec!["k1".into()], "first"), (vec!["k2".into()], "second")]);
        let pack = packs_in(folder.path())[0].clone();
        // The same length, one text changed: the index still fits, the digest does not.
        let text = std::fs::read_to_string(&pack).expect("the pack");
        std::fs::write(&pack, text.replace("second", "SECOND")).expect("damaged");
        // Not packs at all: a digest-named file of something else, an index cut short, and
        // a span past the end of the texts.
        let digest = |n: u8| folder.path().join(format!("{n:02x}").repeat(32));
        std::fs::write(digest(1), "not a pack").expect("a file");
        std::fs::write(digest(2), format!("{PACK_HEADER}\nk3 0 3")).expect("a file");
        std::fs::write(digest(3), format!("{PACK_HEADER}\nk4 0 99\n\nshort")).expect("a file");
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        for key in ["k1", "k2", "k3", "k4"] {
            assert_eq!(packs.get(key), None, "{key}");
        }
    }

    #[test]
    fn a_pack_read_is_marked_used_and_one_gone_is_a_miss() {
        let folder = tempfile::tempdir().expect("a directory");
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        packs.put([(vec!["kept".into()], "text")]);
        packs.put([(vec!["gone".into()], "other")]);
        let paths = packs_in(folder.path());
        for path in &paths {
            used_at(path, SystemTime::now() - 30 * DAY);
        }
        let packs = Packs::open_in(folder.path().to_owned()).expect("packs");
        for path in &paths {
            if std::fs::read_to_string(path).is_ok_and(|t| t.contains("gone")) {
                std::fs::remove_file(path).expect("removed");
            }
        }
        assert_eq!(packs.get("gone"), None);
        assert_eq!(packs.get("kept").as_deref(), Some("text"));
        let used = paths.iter().find(|p| p.exists()).expect("the pack read");
        let at = std::fs::metadata(used)
            .and_then(|m| m.modified())
            .expect("a time");
        assert!(!older_than(at, SystemTime::now(), DAY));
    }

    #[test]
    fn reading_an_entry_marks_it_used() {
        let base = tempfile::tempdir().expect("a directory");
        let entry = base.path().join("entry");
        file_at(&entry, SystemTime::now() - 20 * DAY);
        assert_eq!(read_entry(&entry).as_deref(), Some("x"));
        let at = std::fs::metadata(&entry)
            .and_then(|m| m.modified())
            .expect("a time");
        assert!(!older_than(at, SystemTime::now(), DAY));
    }
}
