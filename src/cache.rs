//! The per-user cache (`BULWARK_CACHE_DIR`, `XDG_CACHE_HOME/bulwark` or `~/.cache/bulwark`):
//! what a regeneration need not work out again. The format stage keeps formatted files there
//! (`rustfmt/`), lowering the resources whose policies validated (`policies/`). Everything
//! in it is best effort: a cache that cannot be read or written only costs time.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

/// The cache's subdirectory `name`, created if need be; `None` when there is nowhere to
/// keep it.
pub fn dir(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("BULWARK_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("bulwark")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/bulwark")))?;
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
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
        let text = std::fs::read_to_string(&path).unwrap_or_default();
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
