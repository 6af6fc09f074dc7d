//! Stage 4, emit to git (`generate --git REPO --branch NAME`): commits a rendered `FileSet` as
//! the whole tree of a branch, with git2, without touching HEAD, the index or a working tree
//! (a bare repository works too). The branch's previous tip is the parent, so the branch is a
//! history of pristine generations that engineers merge into their own branch. `check`
//! compares a branch tip with what a spec renders now (drift).
//!
//! Everything that can refuse is checked before the first object is written: the repository,
//! the branch name, a branch not made by bulwark, a branch checked out in the repository or
//! one of its linked worktrees, a lock.

use crate::emit::{MANIFEST, Manifest};
use crate::render::FileSet;
use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Time, TreeWalkMode, TreeWalkResult};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The trailer that marks a commit as one of bulwark's generations.
const GENERATED_BY: &str = "Generated-by: bulwark";
/// Blob and tree modes.
const FILE_MODE: i32 = 0o100644;
const TREE_MODE: i32 = 0o040000;
/// At most this many paths of each kind are listed in a commit message.
const LISTED: usize = 20;

/// Where a generation goes.
#[derive(Clone, Debug)]
pub struct Target {
    pub repo: PathBuf,
    pub branch: String,
    /// A folder of the branch's tree to generate into (`services/billing`), or the root.
    pub prefix: Option<String>,
}

/// Who commits, and when (pinned for reproducible commits).
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// `Name <email>`; default: the repository's `user.name`/`user.email`, else bulwark.
    pub author: Option<String>,
    /// Default: the author.
    pub committer: Option<String>,
    /// Seconds since the epoch (UTC); default: now.
    pub time: Option<i64>,
}

/// What changed between the branch's previous tip and this generation.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// The result of `generate --git`.
#[derive(Clone, Debug, Serialize)]
pub struct Committed {
    /// The new commit, or `None` when the tree was unchanged (nothing committed).
    pub commit: Option<String>,
    /// The branch's tip before (and after, when nothing was committed).
    pub parent: Option<String>,
    pub branch: String,
    pub changes: Changes,
}

/// One path where a branch tip differs from what the spec renders now.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Drift {
    pub path: String,
    /// `differs`, `missing` (rendered, not on the branch) or `extra` (on the branch only).
    pub kind: &'static str,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GitError {
    #[error("`{path}` is not a git repository: {message}")]
    #[diagnostic(
        code(bulwark::git::not_a_repository),
        help("pass the path of an existing repository (`git init` creates one; a bare one works)")
    )]
    NotARepository { path: String, message: String },
    #[error("`{name}` is not a branch name git accepts")]
    #[diagnostic(
        code(bulwark::git::branch_name),
        help(
            "use a name like `bulwark/generated` (no spaces, `..`, `~`, `^`, `:` or trailing `.lock`)"
        )
    )]
    BranchName { name: String },
    #[error("branch `{name}` cannot be made beside branch `{other}`")]
    #[diagnostic(
        code(bulwark::git::branch_clash),
        help(
            "git keeps a branch `a` and a branch `a/b` as a file and a folder of one name, so both cannot exist: choose another name"
        )
    )]
    BranchClash { name: String, other: String },
    #[error("`{prefix}` is not a folder bulwark generates into")]
    #[diagnostic(
        code(bulwark::git::prefix),
        help("a relative path without `.`, `..` or `.git` components, like `services/billing`")
    )]
    Prefix { prefix: String },
    #[error("branch `{branch}` exists but its tip was not made by bulwark{detail}")]
    #[diagnostic(
        code(bulwark::git::foreign_branch),
        help("pick another branch name, or pass --force to add a generation on top of it anyway")
    )]
    ForeignBranch { branch: String, detail: String },
    #[error("branch `{branch}` is checked out in `{path}`")]
    #[diagnostic(
        code(bulwark::git::checked_out),
        help(
            "bulwark never touches a working tree: generate onto a branch that is not checked out, and merge it into yours"
        )
    )]
    CheckedOut { branch: String, path: String },
    #[error("the repository is locked: `{lock}` exists")]
    #[diagnostic(
        code(bulwark::git::locked),
        help(
            "another git process is updating it; if none is running, the lock is stale and can be removed"
        )
    )]
    Locked { lock: String },
    #[error("branch `{branch}` does not exist in `{path}`")]
    #[diagnostic(code(bulwark::git::no_branch), help("generate onto it first"))]
    NoBranch { branch: String, path: String },
    #[error("`{spec}` does not name a file at a revision: {message}")]
    #[diagnostic(
        code(bulwark::git::revision),
        help("write REVISION:PATH, e.g. `main:specs/app.yaml` or `HEAD~1:specs/app.yaml`")
    )]
    Revision { spec: String, message: String },
    #[error("`{value}` is not an identity: {message}")]
    #[diagnostic(code(bulwark::git::identity), help("write it as `Name <email>`"))]
    Identity { value: String, message: String },
    #[error("`SOURCE_DATE_EPOCH` is `{value}`, not a time")]
    #[diagnostic(
        code(bulwark::git::commit_time),
        help(
            "set it to whole seconds since 1970, at most 4294967295 (`git log -1 --format=%ct`), or unset it"
        )
    )]
    SourceDateEpoch { value: String },
    #[error("git: {0}")]
    #[diagnostic(code(bulwark::git::error))]
    Git(String),
    /// The previous generation on the branch tip cannot be built on (a migration edited
    /// there, say).
    #[error("on the branch tip: {0}")]
    #[diagnostic(transparent)]
    Previous(Box<crate::emit::EmitError>),
}

impl GitError {
    /// A refusal (exit 4), rather than bad input: `--force` overrides a foreign branch.
    pub fn is_refusal(&self) -> bool {
        match self {
            GitError::ForeignBranch { .. } => true,
            GitError::Previous(e) => e.is_refusal(),
            _ => false,
        }
    }
}

impl From<git2::Error> for GitError {
    fn from(e: git2::Error) -> Self {
        GitError::Git(e.message().to_owned())
    }
}

/// Commits `files` (and `manifest`) as the tree of `target`'s branch. With `force`, a branch
/// not made by bulwark gets the generation on top of its tip anyway.
pub fn commit_generation(
    target: &Target,
    files: &FileSet,
    manifest: &Manifest,
    identity: &Identity,
    app_name: &str,
    force: bool,
) -> Result<Committed, GitError> {
    let branch = Branch::open(target)?;
    let (repo, reference, prefix) = (&branch.repo, &branch.reference, &branch.prefix);
    let parent = branch.tip()?;
    if let Some(tip) = &parent
        && !force
        && let Some(detail) = not_generated(repo, tip, prefix)?
    {
        return Err(GitError::ForeignBranch {
            branch: target.branch.clone(),
            detail,
        });
    }
    if let Some(path) = checked_out_at(repo, reference) {
        return Err(GitError::CheckedOut {
            branch: target.branch.clone(),
            path,
        });
    }
    // A new branch whose name is a folder of another's, or the other way round, would fail
    // only after every object was written.
    if parent.is_none()
        && let Some(other) = clashing_branch(repo, reference)?
    {
        return Err(GitError::BranchClash {
            name: target.branch.clone(),
            other,
        });
    }
    let lock = repo.path().join(format!("{reference}.lock"));
    if lock.exists() {
        return Err(GitError::Locked {
            lock: lock.display().to_string(),
        });
    }
    let (author, committer) = signatures(repo, identity)?;

    let mut blobs = BTreeMap::new();
    let manifest_text = manifest.to_json();
    // Through the object database rather than `Repository::blob`, which opens a temporary
    // file for every blob before finding that it is already stored (most of them are, on a
    // regeneration): that was most of the commit's time.
    let odb = repo.odb()?;
    for (path, contents) in generation(prefix, files, &manifest_text) {
        let stored = blob_id(contents.as_bytes()).filter(|id| odb.exists(*id));
        let id = match stored {
            Some(id) => id,
            None => odb.write(git2::ObjectType::Blob, contents.as_bytes())?,
        };
        blobs.insert(path, id);
    }
    let tree = match &parent {
        // Under a prefix, the branch's other folders are someone else's: only the prefix's
        // folder is replaced.
        Some(tip) if !prefix.is_empty() => {
            let inside: BTreeMap<String, Oid> = blobs
                .iter()
                .map(|(path, id)| (path[prefix.len()..].to_owned(), *id))
                .collect();
            let folder = write_tree(repo, &inside)?;
            git2::build::TreeUpdateBuilder::new()
                .upsert(prefix.trim_end_matches('/'), folder, git2::FileMode::Tree)
                .create_updated(repo, &tip.tree()?)?
        }
        _ => write_tree(repo, &blobs)?,
    };
    let before = match &parent {
        Some(tip) => tree_blobs(&tip.tree()?)?,
        None => BTreeMap::new(),
    };
    let changes = changes(&before, &tree_blobs(&repo.find_tree(tree)?)?);
    let parent_id = parent.as_ref().map(|c| c.id().to_string());
    if parent.as_ref().is_some_and(|tip| tip.tree_id() == tree) {
        return Ok(Committed {
            commit: None,
            parent: parent_id,
            branch: target.branch.clone(),
            changes,
        });
    }
    let message = message(app_name, manifest, &changes);
    let tree = repo.find_tree(tree)?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    // Updating the branch checks that its tip is still `parent` (no lost update).
    let commit = repo
        .commit(
            Some(reference),
            &author,
            &committer,
            &message,
            &tree,
            &parents,
        )
        .map_err(|e| match e.code() {
            ErrorCode::Locked => GitError::Locked {
                lock: lock.display().to_string(),
            },
            _ => e.into(),
        })?;
    Ok(Committed {
        commit: Some(commit.to_string()),
        parent: parent_id,
        branch: target.branch.clone(),
        changes,
    })
}

/// The previous generation on `target`'s branch tip (its manifest's tables and its
/// migrations), if the branch exists and holds one; reads only.
pub fn previous(target: &Target) -> Result<Option<crate::evolve::Previous>, GitError> {
    let branch = Branch::open(target)?;
    let (repo, prefix) = (&branch.repo, &branch.prefix);
    let Some(tip) = branch.tip()? else {
        return Ok(None);
    };
    let tree = tip.tree()?;
    let read = |path: &Path| -> std::io::Result<String> {
        let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let entry = tree.get_path(path).map_err(|_| not_found())?;
        let blob = repo.find_blob(entry.id()).map_err(|_| not_found())?;
        String::from_utf8(blob.content().to_vec())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    let list = |folder: &Path| -> Vec<String> {
        let Ok(entry) = tree.get_path(folder) else {
            return Vec::new();
        };
        repo.find_tree(entry.id())
            .map(|folder| {
                folder
                    .iter()
                    .filter_map(|e| e.name().ok().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let base = Path::new(prefix.trim_end_matches('/'));
    crate::emit::previous_from(base, read, list).map_err(|e| GitError::Previous(Box::new(e)))
}

/// The paths where `target`'s branch tip differs from `files` and `manifest`; writes nothing.
pub fn check_branch(
    target: &Target,
    files: &FileSet,
    manifest: &Manifest,
) -> Result<Vec<Drift>, GitError> {
    let branch = Branch::open(target)?;
    let Some(tip) = branch.tip()? else {
        return Err(GitError::NoBranch {
            branch: target.branch.clone(),
            path: target.repo.display().to_string(),
        });
    };
    // Under a prefix, the branch's other folders are someone else's.
    let mut on_branch = tree_blobs(&tip.tree()?)?;
    on_branch.retain(|path, _| path.starts_with(&branch.prefix));
    let manifest_text = manifest.to_json();
    let mut expected = BTreeMap::new();
    for (path, contents) in generation(&branch.prefix, files, &manifest_text) {
        expected.insert(
            path,
            Oid::hash_object(ObjectType::Blob, contents.as_bytes())?,
        );
    }
    let mut drift = Vec::new();
    for (path, oid) in &expected {
        match on_branch.get(path) {
            Some(found) if found == oid => {}
            Some(_) => drift.push(Drift {
                path: path.clone(),
                kind: "differs",
            }),
            None => drift.push(Drift {
                path: path.clone(),
                kind: "missing",
            }),
        }
    }
    for path in on_branch.keys().filter(|p| !expected.contains_key(*p)) {
        drift.push(Drift {
            path: path.clone(),
            kind: "extra",
        });
    }
    // What the blobs alone do not show: a file made executable or a link, a submodule.
    for (path, kind) in not_plain_files(&tip.tree()?, &branch.prefix)? {
        drift.push(Drift { path, kind });
    }
    Ok(drift)
}

/// A target opened: its repository, its branch's reference name, its prefix (`dir/` or ``).
struct Branch {
    repo: Repository,
    reference: String,
    prefix: String,
}

impl Branch {
    fn open(target: &Target) -> Result<Branch, GitError> {
        let mut repo = open(&target.repo)?;
        // A linked worktree shares its branches, their locks and the list of checked-out
        // branches with the repository it was added to: work there.
        if repo.is_worktree() {
            repo = Repository::open(repo.commondir())?;
        }
        Ok(Branch {
            repo,
            reference: branch_ref(&target.branch)?,
            prefix: prefix(target.prefix.as_deref())?,
        })
    }

    /// The branch's tip, if the branch exists.
    fn tip(&self) -> Result<Option<git2::Commit<'_>>, GitError> {
        match self.repo.find_reference(&self.reference) {
            Ok(r) => Ok(Some(r.peel_to_commit()?)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A branch whose reference is a folder of `reference`'s (`refs/heads/a` for
/// `refs/heads/a/b`) or inside it, if there is one.
fn clashing_branch(repo: &Repository, reference: &str) -> Result<Option<String>, GitError> {
    let short = |name: &str| name.trim_start_matches("refs/heads/").to_owned();
    let mut folder = reference;
    while let Some((parent, _)) = folder.rsplit_once('/') {
        if parent == "refs/heads" {
            break;
        }
        if repo.find_reference(parent).is_ok() {
            return Ok(Some(short(parent)));
        }
        folder = parent;
    }
    let inside = format!("{reference}/");
    for name in repo.references()?.names() {
        let name = name?;
        if name.starts_with(&inside) {
            return Ok(Some(short(name)));
        }
    }
    Ok(None)
}

/// Every path of a generation in the branch's tree (under the prefix), with its contents:
/// the rendered files and the manifest.
fn generation<'a>(
    prefix: &'a str,
    files: &'a FileSet,
    manifest_text: &'a str,
) -> impl Iterator<Item = (String, &'a str)> {
    files
        .files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .chain(std::iter::once((MANIFEST, manifest_text)))
        .map(move |(path, contents)| (format!("{prefix}{path}"), contents))
}

/// The working tree where `reference` is checked out: the repository's own, or one of its
/// linked worktrees (`git worktree add`).
fn checked_out_at(repo: &Repository, reference: &str) -> Option<String> {
    let head = |r: &Repository| {
        r.find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_owned))
    };
    if !repo.is_bare() && head(repo).as_deref() == Some(reference) {
        return Some(repo.workdir().unwrap_or(repo.path()).display().to_string());
    }
    let names = repo.worktrees().ok()?;
    for name in names.iter().flatten().flatten() {
        if let Ok(worktree) = repo.find_worktree(name)
            && let Ok(linked) = Repository::open_from_worktree(&worktree)
            && head(&linked).as_deref() == Some(reference)
        {
            return Some(worktree.path().display().to_string());
        }
    }
    None
}

/// The text of the file `spec` names (`REVISION:PATH`) in the repository at `repo`.
pub fn read_at_revision(repo: &Path, spec: &str) -> Result<String, GitError> {
    let repo = open(repo)?;
    let bad = |message: String| GitError::Revision {
        spec: spec.to_owned(),
        message,
    };
    if !spec.contains(':') {
        return Err(bad("no `:PATH` part".into()));
    }
    let object = repo
        .revparse_single(spec)
        .map_err(|e| bad(e.message().to_owned()))?;
    let blob = object
        .peel_to_blob()
        .map_err(|_| bad("it is not a file".into()))?;
    String::from_utf8(blob.content().to_vec()).map_err(|_| bad("it is not UTF-8 text".into()))
}

fn open(path: &Path) -> Result<Repository, GitError> {
    // Exactly this repository: no search upwards, so a typo cannot commit into a parent.
    Repository::open_ext(
        path,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .map_err(|e| GitError::NotARepository {
        path: path.display().to_string(),
        message: e.message().to_owned(),
    })
}

fn branch_ref(branch: &str) -> Result<String, GitError> {
    let reference = format!("refs/heads/{branch}");
    // `HEAD` and `refs/...` are valid reference names that git refuses as branch names.
    if branch.is_empty()
        || branch.starts_with('-')
        || branch == "HEAD"
        || branch.starts_with("refs/")
        || !git2::Reference::is_valid_name(&reference)
    {
        return Err(GitError::BranchName {
            name: branch.to_owned(),
        });
    }
    Ok(reference)
}

/// `services/billing` → `services/billing/`; no prefix → ``.
fn prefix(prefix: Option<&str>) -> Result<String, GitError> {
    let Some(raw) = prefix else {
        return Ok(String::new());
    };
    let trimmed = raw.trim_end_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.starts_with('/')
        || trimmed.contains('\\')
        || trimmed.split('/').any(|part| {
            part.is_empty() || part == "." || part == ".." || part.eq_ignore_ascii_case(".git")
        });
    if bad {
        return Err(GitError::Prefix {
            prefix: raw.to_owned(),
        });
    }
    Ok(format!("{trimmed}/"))
}

/// Why `tip` is not one of bulwark's generations (for this prefix), if it is not: it lacks
/// the trailer, or what is under the prefix is not what its manifest records (a commit
/// amended or cherry-picked with a hand edit keeps the trailer). A tip with nothing under the
/// prefix is one (another prefix's generation on the same branch).
fn not_generated(
    repo: &Repository,
    tip: &git2::Commit,
    prefix: &str,
) -> Result<Option<String>, GitError> {
    let marked = tip
        .message()
        .is_ok_and(|m| m.lines().any(|l| l.starts_with(GENERATED_BY)));
    let commit = short(tip.id());
    if !marked {
        return Ok(Some(format!(
            " (commit {commit} has no `{GENERATED_BY}` trailer)"
        )));
    }
    let mut under: BTreeMap<String, Oid> = tree_blobs(&tip.tree()?)?
        .into_iter()
        .filter_map(|(path, oid)| Some((path.strip_prefix(prefix)?.to_owned(), oid)))
        .collect();
    let Some(manifest) = under.remove(MANIFEST) else {
        return Ok(
            (!under.is_empty()).then(|| format!(" (no `{prefix}{MANIFEST}` in commit {commit})"))
        );
    };
    let text = repo.find_blob(manifest)?;
    let Ok(manifest) = serde_json::from_slice::<Manifest>(text.content()) else {
        return Ok(Some(format!(
            " (`{prefix}{MANIFEST}` in commit {commit} cannot be read)"
        )));
    };
    for (path, recorded) in &manifest.files {
        let Some(oid) = under.remove(path) else {
            return Ok(Some(format!(
                " (`{prefix}{path}`, which its manifest lists, is missing from commit {commit})"
            )));
        };
        if crate::emit::sha256(repo.find_blob(oid)?.content()) != *recorded {
            return Ok(Some(format!(
                " (`{prefix}{path}` in commit {commit} is not what its manifest records: edited after bulwark made it)"
            )));
        }
    }
    if let Some((path, _)) = not_plain_files(&tip.tree()?, prefix)?.into_iter().next() {
        return Ok(Some(format!(
            " (`{path}` in commit {commit} is not a plain file as bulwark writes them)"
        )));
    }
    Ok(under.into_keys().next().map(|path| {
        format!(" (`{prefix}{path}` in commit {commit} is not in its manifest: added after bulwark made it)")
    }))
}

fn signatures(
    repo: &Repository,
    identity: &Identity,
) -> Result<(Signature<'static>, Signature<'static>), GitError> {
    let time = identity.time.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    });
    let make = |value: Option<&str>| -> Result<Signature<'static>, GitError> {
        let (name, email) = match value {
            Some(value) => parse_identity(value)?,
            None => match repo.signature() {
                Ok(configured) => (
                    configured.name().unwrap_or("bulwark").to_owned(),
                    configured.email().unwrap_or("bulwark@localhost").to_owned(),
                ),
                Err(_) => ("bulwark".to_owned(), "bulwark@localhost".to_owned()),
            },
        };
        Signature::new(&name, &email, &Time::new(time, 0)).map_err(|e| GitError::Identity {
            value: value.unwrap_or_default().to_owned(),
            message: e.message().to_owned(),
        })
    };
    let author = make(identity.author.as_deref())?;
    let committer = match identity.committer.as_deref() {
        Some(value) => make(Some(value))?,
        None => author.clone(),
    };
    Ok((author, committer))
}

/// `Name <email>` → (name, email).
fn parse_identity(value: &str) -> Result<(String, String), GitError> {
    let bad = |message: &str| GitError::Identity {
        value: value.to_owned(),
        message: message.to_owned(),
    };
    let (name, rest) = value.split_once('<').ok_or_else(|| bad("no `<email>`"))?;
    let email = rest
        .strip_suffix('>')
        .ok_or_else(|| bad("no closing `>`"))?;
    let name = name.trim();
    if name.is_empty() || email.is_empty() || email.contains(['<', '>']) {
        return Err(bad("a name and an email are both needed"));
    }
    Ok((name.to_owned(), email.to_owned()))
}

/// The id git gives a blob of `contents` (SHA-1 of its header and contents), if the
/// repository's ids are SHA-1. An object found under it is the same blob: that is what
/// libgit2 itself assumes when it finds the id stored.
fn blob_id(contents: &[u8]) -> Option<Oid> {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", contents.len()).as_bytes());
    hasher.update(contents);
    Oid::from_bytes(&hasher.finalize()).ok()
}

/// Writes the tree of `blobs` (path → blob), nested by folder; returns its id.
fn write_tree(repo: &Repository, blobs: &BTreeMap<String, Oid>) -> Result<Oid, GitError> {
    let mut folders: BTreeMap<&str, BTreeMap<String, Oid>> = BTreeMap::new();
    let mut builder = repo.treebuilder(None)?;
    for (path, oid) in blobs {
        match path.split_once('/') {
            Some((folder, rest)) => {
                folders
                    .entry(folder)
                    .or_default()
                    .insert(rest.to_owned(), *oid);
            }
            None => {
                builder.insert(path, *oid, FILE_MODE)?;
            }
        }
    }
    for (folder, inner) in folders {
        let oid = write_tree(repo, &inner)?;
        builder.insert(folder, oid, TREE_MODE)?;
    }
    Ok(builder.write()?)
}

/// The entries under `prefix` that are not plain files: `mode` for a file with another mode
/// than bulwark writes (executable, a link), `extra` for anything else (a submodule).
fn not_plain_files(
    tree: &git2::Tree,
    prefix: &str,
) -> Result<Vec<(String, &'static str)>, GitError> {
    let mut found = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |folder, entry| {
        let path = format!("{folder}{}", entry.name().unwrap_or_default());
        if path.starts_with(prefix) {
            match entry.kind() {
                Some(ObjectType::Blob) if entry.filemode() != i32::from(git2::FileMode::Blob) => {
                    found.push((path, "mode"));
                }
                Some(ObjectType::Blob | ObjectType::Tree) => {}
                _ => found.push((path, "extra")),
            }
        }
        TreeWalkResult::Ok
    })?;
    Ok(found)
}

/// Every blob of `tree`, by path.
fn tree_blobs(tree: &git2::Tree) -> Result<BTreeMap<String, Oid>, GitError> {
    let mut blobs = BTreeMap::new();
    tree.walk(TreeWalkMode::PreOrder, |folder, entry| {
        if entry.kind() == Some(ObjectType::Blob)
            && let Ok(name) = entry.name()
        {
            blobs.insert(format!("{folder}{name}"), entry.id());
        }
        TreeWalkResult::Ok
    })?;
    Ok(blobs)
}

fn changes(before: &BTreeMap<String, Oid>, after: &BTreeMap<String, Oid>) -> Changes {
    let mut changes = Changes::default();
    for (path, oid) in after {
        match before.get(path) {
            None => changes.added.push(path.clone()),
            Some(old) if old != oid => changes.modified.push(path.clone()),
            Some(_) => {}
        }
    }
    changes.removed = before
        .keys()
        .filter(|p| !after.contains_key(*p))
        .cloned()
        .collect();
    changes
}

/// The commit message: what was generated, what changed, and the trailers that mark it.
fn message(app_name: &str, manifest: &Manifest, changes: &Changes) -> String {
    let one_line = crate::render::escape::one_line(app_name);
    let mut text = format!(
        "Generate {one_line} from spec {} (bulwark {})\n\n{} added, {} changed, {} removed\n",
        &manifest.spec_sha256[..12.min(manifest.spec_sha256.len())],
        manifest.generator_version,
        changes.added.len(),
        changes.modified.len(),
        changes.removed.len()
    );
    for (mark, paths) in [
        ("A", &changes.added),
        ("M", &changes.modified),
        ("D", &changes.removed),
    ] {
        for path in paths.iter().take(LISTED) {
            text.push_str(&format!("{mark} {path}\n"));
        }
        if paths.len() > LISTED {
            text.push_str(&format!("{mark} … and {} more\n", paths.len() - LISTED));
        }
    }
    text.push_str(&format!(
        "\nSpec-SHA256: {}\n{GENERATED_BY} {}\n",
        manifest.spec_sha256, manifest.generator_version
    ));
    text
}

fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_gits() {
        for contents in [&b""[..], b"fn main() {}\n", "é\0\u{1F600}".as_bytes()] {
            assert_eq!(
                blob_id(contents),
                Oid::hash_object(ObjectType::Blob, contents).ok()
            );
        }
    }
}
