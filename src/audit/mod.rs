//! `bulwark audit DIR [--spec SPEC]`: proof that every route of a generated project goes
//! through the guard, including in code edited by hand.
//!
//! Every `.rs` file under DIR (except the root's `target/` and `.git/`) is parsed with syn.
//! A finding is: outside the guard module, any use of an axum call that attaches a handler or
//! a layer (`route`, `nest`, `merge`, `fallback`, `layer`, `from_fn`, … as a method, a path
//! or an import, raw identifiers included); a name this audit follows imported under another
//! (`use axum::serve as start`); a `serve` or service conversion outside the server's main
//! (and the server crate's benchmarks, which serve the guarded router on loopback), or more
//! than one `serve`; in that main, `serve` other than called on `server::router(..)` (or a
//! name only a plain `let` bound to it), anything declared there named `server`, or a glob
//! import; a socket listening outside it, or connections taken off one (`accept`, `incoming`)
//! anywhere (the test and benchmark targets of the crates under `crates/` aside); an
//! implementation of tower's `Service` or `Layer`, or of axum's `Handler`, outside the guard;
//! hyper used directly, or a dependency on a crate that serves HTTP by itself, attaches
//! handlers its own way, opens sockets below tokio or builds names out of pieces (`paste`); a
//! manifest bringing in code from outside the project (a `path` leading out of it, a `git`
//! source), a crate inside a test or benchmark folder, or a target compiled from a file that
//! is not where Cargo looks for that kind of target, not `.rs`, or under `.git` or `target`;
//! a macro whose tokens mention any of these (its expansion cannot be checked); code the
//! compiler reads that this audit cannot see (`#[path]`, `include!`, build scripts under any
//! name, procedural-macro crates, symbolic links, a toolchain named by its folder, Cargo
//! configuration that sets a compiler); an `Operation` declared outside the generated
//! resource and members modules, other than as a literal, or under an alias, and one
//! registered that is not a constant declared so; a file that does not parse; and a guard
//! module that differs from the one this bulwark generates (it holds the fallbacks too).
//! With `--spec`, every declared operation must also be exactly one of the spec's, roles and
//! second factor included. With `--database`, the [`database`] side is audited too.

pub mod database;

use crate::model::App;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::ext::IdentExt;
use syn::visit::Visit;

/// The only module allowed to attach handlers, relative to the project root.
pub const GUARD_MODULE: &str = "crates/server/src/guard.rs";
/// The only file allowed to start serving.
pub const SERVER_MAIN: &str = "crates/server/src/main.rs";
/// Where the generated operations are declared.
const RESOURCE_MODULES: &str = "crates/server/src/resources/";
/// The server crate, whose benchmarks (`benches/`) may serve the guarded router on loopback
/// (they are not part of the service, and attaching a handler is refused there as anywhere).
const SERVER_CRATE: &str = "crates/server";
/// Where the built-in operations (memberships, sessions) are declared.
const MEMBERS_MODULE: &str = "crates/server/src/members.rs";

/// Calls that attach a handler, a service or a layer to a router (axum, tower), and axum's
/// way of serving a handler without any router.
const ATTACHING: [&str; 24] = [
    "route",
    "route_with_tsr",
    "route_service_with_tsr",
    "MethodRouter",
    "route_service",
    "route_layer",
    "nest",
    "nest_service",
    "merge",
    "fallback",
    "fallback_service",
    "method_not_allowed_fallback",
    "layer",
    "from_fn",
    "from_fn_with_state",
    "map_request",
    "map_request_with_state",
    "map_response",
    "map_response_with_state",
    "service_fn",
    "on_service",
    "Handler",
    "HandlerWithoutStateExt",
    "HandlerService",
];

/// Sockets that accept connections: outside the service's main (and tests and benchmarks,
/// which serve their own loopback peers), a server built on one would bypass the router.
const LISTENING: [&str; 3] = ["TcpListener", "UnixListener", "TcpSocket"];

/// Crates that serve HTTP by themselves, attach handlers in ways of their own (axum-extra's
/// typed routes), or open sockets below tokio: a dependency on one is a way around the
/// guarded router (compared with `_` read as `-`).
const HTTP_SERVERS: [&str; 32] = [
    "actix-web",
    "actix-http",
    "actix-server",
    "astra",
    "axum-extra",
    "axum-server",
    "gotham",
    "h2",
    "h3",
    "hyper",
    "hyper-util",
    "jsonrpsee",
    "libc",
    "may-minihttp",
    "mio",
    "nix",
    "ntex",
    "ohkami",
    "poem",
    "quinn",
    "rocket",
    "rouille",
    "salvo",
    "socket2",
    "thruster",
    "tide",
    "tiny-http",
    "tonic",
    "trillium",
    "viz",
    "warp",
    "xitca-web",
];

/// Crates whose macros build identifiers out of pieces (`paste!(r.[<rou te>](..))`), which no
/// reading of the tokens can see through.
const IDENT_BUILDERS: [&str; 3] = ["paste", "pastey", "concat-idents"];

/// Calls that turn a router into something a server runs, or run it.
const SERVING: [&str; 6] = [
    "serve",
    "into_make_service",
    "into_make_service_with_connect_info",
    "into_service",
    "serve_connection",
    "serve_connection_with_upgrades",
];

/// Calls that take connections off a listening socket: a server of one's own.
const ACCEPTING: [&str; 4] = ["accept", "incoming", "poll_accept", "accept_raw"];

/// Traits whose implementations are services or layers: a type of one's own could answer
/// requests before, or instead of, the guarded router.
const SERVICE_TRAITS: [&str; 3] = ["Service", "Layer", "MakeService"];

/// How the server's main turns the router into what `serve` takes.
const MAKE_SERVICE: [&str; 2] = ["into_make_service", "into_make_service_with_connect_info"];

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AuditError {
    #[error("`{path}` is not a directory")]
    #[diagnostic(
        code(bulwark::audit::not_a_directory),
        help("pass the root of a generated project")
    )]
    NotADirectory { path: String },
    #[error("cannot read `{path}`: {message}")]
    #[diagnostic(code(bulwark::audit::io))]
    Io { path: String, message: String },
    #[error("cannot render the expected guard module: {0}")]
    #[diagnostic(code(bulwark::audit::guard))]
    Guard(String),
}

/// Audits the project at `dir`; with `spec`, operations are also checked against the spec's.
/// Findings are sorted by file and position.
pub fn audit_dir(dir: &Path, spec: Option<&App>) -> Result<Vec<Finding>, AuditError> {
    if !dir.is_dir() {
        return Err(AuditError::NotADirectory {
            path: dir.display().to_string(),
        });
    }
    let mut files = Vec::new();
    let mut findings = Vec::new();
    collect(dir, dir, &mut files, &mut findings)?;
    let mut serves = Vec::new();
    let mut operations = Vec::new();
    let mut registered = Vec::new();
    for relative in &files {
        let name = relative.to_string_lossy().replace('\\', "/");
        let path = dir.join(relative);
        let source = std::fs::read_to_string(&path).map_err(|e| AuditError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if name.ends_with("build.rs") {
            findings.push(at(
                &name,
                1,
                1,
                "a build script can generate code this audit cannot see",
            ));
        }
        let file = match syn::parse_file(&source) {
            Ok(file) => file,
            Err(e) => {
                let start = e.span().start();
                findings.push(at(
                    &name,
                    start.line,
                    start.column + 1,
                    &format!("cannot be parsed, so it cannot be checked: {e}"),
                ));
                continue;
            }
        };
        let in_main = name == SERVER_MAIN;
        let (package, within_package) = package_of(dir, relative);
        let mut visitor = Visitor {
            file: &name,
            in_guard: name == GUARD_MODULE,
            in_main,
            in_bench: package == Path::new(SERVER_CRATE) && within_package.starts_with("benches"),
            // Only the test and benchmark targets of a crate under `crates/` (a module named
            // `tests` inside a crate's source is compiled into it).
            in_tests: package.starts_with("crates")
                && package.components().count() == 2
                && (within_package.starts_with("tests") || within_package.starts_with("benches")),
            router_names: BTreeSet::new(),
            rebound: if in_main {
                let mut rebound = Rebound::default();
                rebound.visit_file(&file);
                rebound.0
            } else {
                BTreeSet::new()
            },
            findings: &mut findings,
            serves: &mut serves,
            operations: &mut operations,
            naming: None,
            registered: &mut registered,
        };
        visitor.visit_file(&file);
    }
    // What `GuardedRouter::operation` is given must be one of the operations declared as
    // literals (which `--spec` compares with the spec), by name.
    let declared: BTreeSet<&str> = operations
        .iter()
        .filter_map(|o| o.name.as_deref())
        .collect();
    for (at, name) in &registered {
        if !declared.contains(name.as_str()) {
            findings.push(Finding {
                message: format!("registers `{name}`, which is not an operation declared as an `Operation {{ .. }}` literal in the generated resource and members modules"),
                ..at.clone()
            });
        }
    }
    for extra in serves.iter().skip(1) {
        findings.push(Finding {
            message: "starts a second server".into(),
            ..extra.clone()
        });
    }
    check_guard_module(dir, &mut findings)?;
    if let Some(app) = spec {
        check_operations(app, &operations, &mut findings);
    }
    findings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    findings.dedup();
    Ok(findings)
}

/// The folder of the package `relative` (a file under `root`) belongs to, the nearest one
/// holding a `Cargo.toml`, and the file's path within it; both relative to `root`.
fn package_of(root: &Path, relative: &Path) -> (PathBuf, PathBuf) {
    let package = relative
        .ancestors()
        .skip(1)
        .find(|folder| root.join(folder).join("Cargo.toml").is_file())
        .unwrap_or(Path::new(""));
    let within = relative.strip_prefix(package).unwrap_or(relative);
    (package.to_path_buf(), within.to_path_buf())
}

fn at(file: &str, line: usize, column: usize, message: &str) -> Finding {
    Finding {
        file: file.to_owned(),
        line,
        column,
        message: message.to_owned(),
    }
}

/// The guard module must be exactly the one this bulwark generates (it takes nothing from
/// the spec, so the expected text is known without it).
fn check_guard_module(dir: &Path, findings: &mut Vec<Finding>) -> Result<(), AuditError> {
    let expected = crate::render::rust::server::guard_module()
        .map_err(|e| AuditError::Guard(e.to_string()))?;
    let mut files = crate::render::FileSet::default();
    files.insert(GUARD_MODULE, expected);
    crate::format::format_rust(&mut files, None).map_err(|e| AuditError::Guard(e.to_string()))?;
    match std::fs::read_to_string(dir.join(GUARD_MODULE)) {
        // Line endings a checkout turned into CRLF change nothing.
        Ok(text) if Some(&text.replace("\r\n", "\n")) == files.files.get(GUARD_MODULE) => {}
        Ok(_) => findings.push(at(
            GUARD_MODULE,
            1,
            1,
            "the guard module differs from the one this bulwark generates",
        )),
        Err(_) => findings.push(at(GUARD_MODULE, 1, 1, "the guard module is missing")),
    }
    Ok(())
}

/// An `Operation { .. }` literal as written in the code.
#[derive(Debug)]
struct Declared {
    at: Finding,
    /// The constant it is the value of, in the generated resource and members modules.
    name: Option<String>,
    fields: BTreeMap<String, String>,
}

/// Every declared operation must be one of the spec's, field for field, and every one of the
/// spec's must be declared.
fn check_operations(app: &App, declared: &[Declared], findings: &mut Vec<Finding>) {
    let mut expected: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for resource in &app.resources {
        for action in &resource.actions {
            let id = format!("{}.{}", resource.name, action.name);
            let mut fields = BTreeMap::new();
            fields.insert("id".to_owned(), format!("{id:?}"));
            fields.insert("method".to_owned(), format!("{:?}", action.method.as_str()));
            fields.insert("path".to_owned(), format!("{:?}", action.path));
            fields.insert("public".to_owned(), action.public.is_some().to_string());
            // Nor may a hand edit widen who gets past the guard's role check, or drop the
            // second factor it asks of them.
            fields.insert("roles".to_owned(), role_list(&action.roles));
            fields.insert("mfa".to_owned(), action.mfa_required.to_string());
            // A hand-set machine scope would open the operation to callers without a tenant.
            fields.insert("machine_scope".to_owned(), "None".into());
            // Nor may a hand edit lift its throttling.
            fields.insert(
                "rate_limit".to_owned(),
                action.rate_limit.map_or("None".into(), |l| {
                    format!("Some(({}u32,{}u32))", l.requests, l.per_secs)
                }),
            );
            fields.insert(
                "class".to_owned(),
                format!("RouteClass::{}", app.route_class(action).variant()),
            );
            fields.insert(
                "scope".to_owned(),
                action
                    .scope
                    .as_ref()
                    .map_or("None".into(), |s| format!("Some({s:?})")),
            );
            expected.insert(id, fields);
        }
    }
    for builtin in app.builtin_operations() {
        let mut fields = BTreeMap::new();
        fields.insert("id".to_owned(), format!("{:?}", builtin.id));
        fields.insert("method".to_owned(), format!("{:?}", builtin.method));
        fields.insert("path".to_owned(), format!("{:?}", builtin.path));
        fields.insert("public".to_owned(), "false".into());
        fields.insert("roles".to_owned(), role_list(&builtin.roles));
        let mfa = app.builtin_needs_mfa(&builtin);
        fields.insert("mfa".to_owned(), mfa.to_string());
        let optional = |scope: &Option<String>| {
            scope
                .as_ref()
                .map_or("None".into(), |s| format!("Some({s:?})"))
        };
        fields.insert("scope".to_owned(), optional(&builtin.scope));
        fields.insert("machine_scope".to_owned(), optional(&builtin.machine_scope));
        fields.insert("rate_limit".to_owned(), "None".into());
        fields.insert("class".to_owned(), "RouteClass::Sensitive".into());
        expected.insert(builtin.id.to_owned(), fields);
    }
    let mut seen = std::collections::BTreeSet::new();
    for operation in declared {
        let id = operation
            .fields
            .get("id")
            .and_then(|v| serde_json::from_str::<String>(v).ok());
        let Some(wanted) = id.as_ref().and_then(|id| expected.get(id)) else {
            findings.push(Finding {
                message: "declares an operation the spec does not have".into(),
                ..operation.at.clone()
            });
            continue;
        };
        if let Some(id) = id.clone() {
            seen.insert(id);
        }
        for (key, value) in wanted {
            let written = operation.fields.get(key).map(|v| v.replace(' ', ""));
            if written.as_deref() != Some(&value.replace(' ', "")) {
                findings.push(Finding {
                    message: format!(
                        "operation `{}` has `{key}` other than the spec says ({value})",
                        id.clone().unwrap_or_default()
                    ),
                    ..operation.at.clone()
                });
            }
        }
    }
    for id in expected.keys().filter(|id| !seen.contains(*id)) {
        findings.push(at(
            RESOURCE_MODULES,
            1,
            1,
            &format!("operation `{id}` of the spec is not declared"),
        ));
    }
}

/// Whether a name attaches a handler or layer: one of [`ATTACHING`], or axum-extra's typed
/// routes (`typed_get`, …) whatever the crate is called.
fn attaches(word: &str) -> bool {
    ATTACHING.contains(&word) || word.starts_with("typed_")
}

/// Roles as the generated `Operation` literal writes them (`&["a", "b"]`).
fn role_list(roles: &[String]) -> String {
    let quoted: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    format!("&[{}]", quoted.join(","))
}

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Vec<PathBuf>,
    findings: &mut Vec<Finding>,
) -> Result<(), AuditError> {
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let shown = relative.to_string_lossy().replace('\\', "/");
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            findings.push(at(
                &shown,
                1,
                1,
                "a symbolic link: what it points to is not checked",
            ));
        } else if kind.is_dir() {
            // The project's own history and build output; a `.git` folder deeper down is
            // read like any other (a manifest can compile a file from it).
            if dir == root && (name == ".git" || name == "target") {
                continue;
            }
            collect(root, &path, out, findings)?;
        } else if name.ends_with(".rs") {
            out.push(relative);
        } else if name == "Cargo.toml" {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            check_manifest(root, dir, &shown, &text, findings);
        } else if dir.file_name().is_some_and(|d| d == ".cargo")
            && (name == "config.toml" || name == "config")
        {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            check_cargo_config(root, dir, &shown, &text, findings);
        } else if name == "rust-toolchain.toml" || name == "rust-toolchain" {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            check_toolchain(&shown, &text, findings);
        }
    }
    Ok(())
}

/// What a Cargo manifest in `dir` brings in that the audit cannot see: code outside the
/// project or under `target/` (a `path`, a workspace member), a `git` source, a crate that
/// serves HTTP by itself (under any name it is renamed to), a procedural-macro crate, a
/// replaced dependency (`[patch]`, `[replace]`), or a target compiled from a file other
/// than where the audit expects that kind of target (its checks depend on it). Parsed as
/// TOML, so every spelling of a key counts.
fn check_manifest(root: &Path, dir: &Path, shown: &str, text: &str, findings: &mut Vec<Finding>) {
    let Some(manifest) = parse_toml(shown, text, findings) else {
        return;
    };
    let mut found = |needle: &str, message: String| {
        let (line, column) = position(text, needle);
        findings.push(at(shown, line, column, &message));
    };
    walk_paths(&manifest, root, dir, &mut found);
    for key in ["patch", "replace"] {
        if manifest.contains_key(key) {
            found(
                key,
                format!(
                    "`[{key}]` replaces a dependency's source with code this audit does not check as the project's"
                ),
            );
        }
    }
    if let Some(name) = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
    {
        refused_crate(name, &mut found);
    }
    // A build script under any name (`build = "src/setup.rs"`) writes code before compiling.
    if let Some(build) = manifest.get("package").and_then(|p| p.get("build"))
        && build.as_bool() != Some(false)
    {
        found(
            "build",
            "`build` names a build script, which can generate code this audit cannot see".into(),
        );
    }
    // A crate in a test or benchmark folder would share their exemptions (serving, sockets).
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.len() > 2 && parts[0] == "crates" && (parts[2] == "tests" || parts[2] == "benches") {
        found(
            "[",
            "a crate inside a test or benchmark folder would share their exemptions from this audit".into(),
        );
    }
    let lib = manifest.get("lib");
    if ["proc-macro", "proc_macro"]
        .iter()
        .any(|key| lib.and_then(|l| l.get(key)).and_then(toml::Value::as_bool) == Some(true))
    {
        found(
            "proc",
            "a procedural-macro crate can generate code this audit cannot see".into(),
        );
    }
    // Targets where the audit's file roles hold: the library's and main's own files, bins,
    // tests, benchmarks and examples in their folders.
    let targets = [
        ("lib", "src/lib.rs"),
        ("bin", "src/"),
        ("test", "tests/"),
        ("bench", "benches/"),
        ("example", "examples/"),
    ];
    for (kind, expected) in targets {
        let listed: Vec<&toml::Value> = match manifest.get(kind) {
            Some(toml::Value::Array(items)) => items.iter().collect(),
            Some(table) => vec![table],
            None => Vec::new(),
        };
        for target in listed {
            let Some(path) = target.get("path").and_then(toml::Value::as_str) else {
                continue;
            };
            let expected_here = match kind {
                "lib" => path == expected,
                "bin" => path == "src/main.rs" || path.starts_with("src/bin/"),
                _ => path.starts_with(expected),
            };
            // Only `.rs` files are read, and none under a `.git` or `target` folder.
            let read = path.ends_with(".rs")
                && !path
                    .split(['/', '\\'])
                    .any(|part| matches!(part, ".." | ".git" | "target"));
            if !expected_here || !read {
                found(
                    path,
                    format!(
                        "a {kind} target compiled from `{path}`: the audit checks a file by where Cargo finds that kind of target by default"
                    ),
                );
            }
        }
    }
    for (table, name, spec) in dependencies(&manifest) {
        let package = spec
            .get("package")
            .and_then(toml::Value::as_str)
            .unwrap_or(name);
        if !table.ends_with("dev-dependencies") {
            refused_crate(package, &mut found);
        }
    }
}

/// Cargo configuration (`.cargo/config.toml`) that changes what is compiled or from where:
/// a compiler or wrapper (which could compile other code than the files checked), compiler
/// flags, linkers and runners, replaced sources, and paths.
fn check_cargo_config(
    root: &Path,
    dir: &Path,
    shown: &str,
    text: &str,
    findings: &mut Vec<Finding>,
) {
    let Some(config) = parse_toml(shown, text, findings) else {
        return;
    };
    const KEYS: [&str; 10] = [
        "rustc",
        "rustc-wrapper",
        "rustc-workspace-wrapper",
        "rustflags",
        "rustdocflags",
        "linker",
        "runner",
        "source",
        "patch",
        "paths",
    ];
    fn keys(value: &toml::Value, out: &mut BTreeSet<String>) {
        if let toml::Value::Table(table) = value {
            for (key, inner) in table {
                out.insert(key.clone());
                keys(inner, out);
            }
        }
    }
    let mut present = BTreeSet::new();
    keys(&toml::Value::Table(config.clone()), &mut present);
    for key in KEYS.iter().filter(|k| present.contains(**k)) {
        let (line, column) = position(text, key);
        findings.push(at(shown, line, column, &format!("Cargo configuration `{key}` changes what is compiled or how, which this audit cannot see")));
    }
    let mut found = |needle: &str, message: String| {
        let (line, column) = position(text, needle);
        findings.push(at(shown, line, column, &message));
    };
    walk_paths(&config, root, dir, &mut found);
}

/// A toolchain file naming a toolchain by its folder (`path`): a compiler of any making,
/// which could compile other code than the files checked. A channel alone is no finding (the
/// file's older form, a bare channel name, is not TOML and names none).
fn check_toolchain(shown: &str, text: &str, findings: &mut Vec<Finding>) {
    let Ok(file) = text.parse::<toml::Table>() else {
        return;
    };
    if file.get("toolchain").and_then(|t| t.get("path")).is_some() {
        let (line, column) = position(text, "path");
        findings.push(at(
            shown,
            line,
            column,
            "the toolchain's `path` names a compiler this audit cannot vouch for",
        ));
    }
}

/// The manifest as TOML, or a finding where it cannot be read.
fn parse_toml(shown: &str, text: &str, findings: &mut Vec<Finding>) -> Option<toml::Table> {
    match text.parse::<toml::Table>() {
        Ok(table) => Some(table),
        Err(e) => {
            let offset = e.span().map_or(0, |span| span.start);
            let line = text
                .get(..offset)
                .map_or(1, |before| before.lines().count().max(1));
            findings.push(at(
                shown,
                line,
                1,
                &format!(
                    "cannot be parsed as TOML, so it cannot be checked: {}",
                    e.message()
                ),
            ));
            None
        }
    }
}

/// Line and column of the first occurrence of `needle` in `text` (1:1 if none).
fn position(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(index, line)| line.find(needle).map(|column| (index + 1, column + 1)))
        .unwrap_or((1, 1))
}

/// Every `path`, `paths`, `members`, `directory` or `local-registry` string (arrays
/// included) that leads outside the project or into its `target/`, and every `git` key.
fn walk_paths(table: &toml::Table, root: &Path, dir: &Path, found: &mut impl FnMut(&str, String)) {
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => walk_paths(inner, root, dir, found),
            toml::Value::Array(items) => {
                for item in items {
                    match item {
                        toml::Value::Table(inner) => walk_paths(inner, root, dir, found),
                        toml::Value::String(text) => path_value(key, text, root, dir, found),
                        _ => {}
                    }
                }
            }
            toml::Value::String(text) => path_value(key, text, root, dir, found),
            _ => {}
        }
        if key == "git" {
            found(
                "git",
                "a `git` source brings in code outside the project, which this audit cannot see"
                    .into(),
            );
        }
    }
}

fn path_value(
    key: &str,
    value: &str,
    root: &Path,
    dir: &Path,
    found: &mut impl FnMut(&str, String),
) {
    if !matches!(
        key,
        "path" | "paths" | "members" | "directory" | "local-registry"
    ) {
        return;
    }
    let Some(resolved) = within(root, dir, value) else {
        found(
            value,
            format!("brings in code outside the project (`{value}`), which this audit cannot see"),
        );
        return;
    };
    if resolved.starts_with("target") {
        found(
            value,
            format!("brings in code under `target/` (`{value}`), which this audit does not read"),
        );
    }
}

/// Every dependency of a manifest: (its table, its name, its specification), from
/// `[dependencies]`, `[dev-dependencies]`, `[build-dependencies]`, `[workspace.dependencies]`
/// and their `[target.'cfg'.…]` forms.
fn dependencies(manifest: &toml::Table) -> Vec<(String, &str, &toml::Value)> {
    let mut found = Vec::new();
    let mut tables: Vec<(String, &toml::Table)> = vec![(String::new(), manifest)];
    if let Some(toml::Value::Table(workspace)) = manifest.get("workspace") {
        tables.push(("workspace.".into(), workspace));
    }
    if let Some(toml::Value::Table(targets)) = manifest.get("target") {
        for (cfg, target) in targets {
            if let toml::Value::Table(target) = target {
                tables.push((format!("target.{cfg}."), target));
            }
        }
    }
    for (prefix, table) in tables {
        for (key, value) in table {
            if let (true, toml::Value::Table(entries)) = (key.ends_with("dependencies"), value) {
                for (name, spec) in entries {
                    found.push((format!("{prefix}{key}"), name.as_str(), spec));
                }
            }
        }
    }
    found
}

/// Where `relative` (from `dir`) leads, relative to `root`, if it stays inside. Only `root`
/// and `dir` are resolved (they exist); `relative` is followed by its parts, as Cargo reads
/// it.
fn within(root: &Path, dir: &Path, relative: &str) -> Option<PathBuf> {
    let (Ok(root), Ok(dir)) = (root.canonicalize(), dir.canonicalize()) else {
        return None;
    };
    let mut parts: Vec<std::path::Component<'_>> = Vec::new();
    let joined = dir.join(relative);
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            std::path::Component::CurDir => {}
            other => parts.push(other),
        }
    }
    parts
        .iter()
        .collect::<PathBuf>()
        .strip_prefix(&root)
        .ok()
        .map(Path::to_path_buf)
}

/// A crate that serves HTTP by itself ([`HTTP_SERVERS`]) or builds names out of pieces
/// ([`IDENT_BUILDERS`]), compared with `_` read as `-`.
fn refused_crate(name: &str, found: &mut impl FnMut(&str, String)) {
    let package = name.replace('_', "-");
    if HTTP_SERVERS.contains(&package.as_str()) {
        found(
            name,
            format!("depends on `{name}`, which serves HTTP without the guarded router"),
        );
    }
    if IDENT_BUILDERS.contains(&package.as_str()) {
        found(
            name,
            format!(
                "depends on `{name}`, whose macros build names out of pieces this audit cannot read (a `route` among them)"
            ),
        );
    }
}

struct Visitor<'a> {
    file: &'a str,
    in_guard: bool,
    in_main: bool,
    /// A benchmark's own loopback server may serve (see [`SERVER_CRATE`]).
    in_bench: bool,
    /// Tests and benchmarks, which may listen for their own loopback peers.
    in_tests: bool,
    /// In the server's main: the names bound to the guarded router (or its service).
    router_names: BTreeSet<String>,
    /// In the server's main: names bound other than by a plain `let` (see [`Rebound`]).
    rebound: BTreeSet<String>,
    findings: &'a mut Vec<Finding>,
    serves: &'a mut Vec<Finding>,
    operations: &'a mut Vec<Declared>,
    /// The constant whose value is being visited, if it may declare an operation.
    naming: Option<String>,
    /// Where `GuardedRouter::operation` is called, and the name of the operation given.
    registered: &'a mut Vec<(Finding, String)>,
}

/// In the server's main, every name bound other than by a plain `let NAME = ..`: by a
/// pattern, a parameter, an item, or inside a macro (whose expansion is unseen). Such a name
/// is never taken for the guarded router, whatever a `let` also bound it to, since which of
/// its bindings a use refers to is the compiler's business.
#[derive(Default)]
struct Rebound(BTreeSet<String>);

impl<'ast> Visit<'ast> for Rebound {
    fn visit_local(&mut self, local: &'ast syn::Local) {
        match &local.pat {
            syn::Pat::Ident(binding) if binding.subpat.is_none() => {}
            pattern => self.visit_pat(pattern),
        }
        if let Some(init) = &local.init {
            self.visit_local_init(init);
        }
    }

    fn visit_pat_ident(&mut self, binding: &'ast syn::PatIdent) {
        self.0.insert(binding.ident.unraw().to_string());
        syn::visit::visit_pat_ident(self, binding);
    }

    fn visit_item(&mut self, item: &'ast syn::Item) {
        if let Some(ident) = item_ident(item) {
            self.0.insert(ident.unraw().to_string());
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        fn idents(tokens: proc_macro2::TokenStream, out: &mut BTreeSet<String>) {
            for tree in tokens {
                match tree {
                    proc_macro2::TokenTree::Ident(ident) => {
                        out.insert(ident.unraw().to_string());
                    }
                    proc_macro2::TokenTree::Group(group) => idents(group.stream(), out),
                    _ => {}
                }
            }
        }
        idents(mac.tokens.clone(), &mut self.0);
    }
}

/// The name an item declares, if any.
fn item_ident(item: &syn::Item) -> Option<&syn::Ident> {
    match item {
        syn::Item::Const(i) => Some(&i.ident),
        syn::Item::Enum(i) => Some(&i.ident),
        syn::Item::ExternCrate(i) => Some(i.rename.as_ref().map_or(&i.ident, |(_, r)| r)),
        syn::Item::Fn(i) => Some(&i.sig.ident),
        syn::Item::Macro(i) => i.ident.as_ref(),
        syn::Item::Mod(i) => Some(&i.ident),
        syn::Item::Static(i) => Some(&i.ident),
        syn::Item::Struct(i) => Some(&i.ident),
        syn::Item::Trait(i) => Some(&i.ident),
        syn::Item::TraitAlias(i) => Some(&i.ident),
        syn::Item::Type(i) => Some(&i.ident),
        syn::Item::Union(i) => Some(&i.ident),
        _ => None,
    }
}

/// Names the audit follows: renamed on import, any of them would hide what it looks for.
fn followed(word: &str) -> bool {
    attaches(word)
        || SERVING.contains(&word)
        || LISTENING.contains(&word)
        || ACCEPTING.contains(&word)
        || SERVICE_TRAITS.contains(&word)
        || matches!(
            word,
            "Operation"
                | "GuardedRouter"
                | "router"
                | "server"
                | "hyper"
                | "hyper_util"
                | "include"
        )
}

/// The names a pattern binds.
#[derive(Default)]
struct Bindings(Vec<String>);

impl<'ast> Visit<'ast> for Bindings {
    fn visit_pat_ident(&mut self, binding: &'ast syn::PatIdent) {
        self.0.push(binding.ident.to_string());
        syn::visit::visit_pat_ident(self, binding);
    }
}

/// Whether `tokens` hold the identifier `word`, at any depth.
fn mentions(tokens: &proc_macro2::TokenStream, word: &str) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(ident) => ident == word,
        proc_macro2::TokenTree::Group(group) => mentions(&group.stream(), word),
        _ => false,
    })
}

impl Visitor<'_> {
    /// In the server's main, `server` names the server crate, whose `router` is the guarded
    /// one: an item or import of that name there would stand in for it.
    fn shadows_server(&mut self, ident: &syn::Ident) {
        if self.in_main && ident == "server" {
            self.finding(
                ident.span(),
                "declares `server` in the service's main, where the name must be the server crate (its `router` is the guarded one)".into(),
            );
        }
    }

    /// A `static`, `const` or function of type `Operation` outside the generated resource
    /// and members modules and the guard.
    fn operation_item(&mut self, ty: &syn::Type, ident: &syn::Ident, value: Option<&syn::Expr>) {
        let is_operation = matches!(ty, syn::Type::Path(p)
            if p.path.segments.last().is_some_and(|s| s.ident == "Operation"));
        // Written out field by field, so that `--spec` compares every field: one copied from
        // another and changed (`let mut op = LIST_OP; op.public = true; op`) would not be.
        let literal = matches!(value, Some(syn::Expr::Struct(e))
            if e.rest.is_none() && e.path.segments.last().is_some_and(|s| s.ident == "Operation"));
        if is_operation && !literal && !self.in_tests {
            self.finding(
                ident.span(),
                "an operation must be declared as an `Operation { .. }` literal, every field written out".into(),
            );
        }
        if is_operation
            && !self.in_guard
            && !self.in_tests
            && !self.file.starts_with(RESOURCE_MODULES)
            && self.file != MEMBERS_MODULE
        {
            self.finding(
                ident.span(),
                "declares an operation outside the generated resource and members modules".into(),
            );
        }
    }

    /// An import or crate renamed: a name this audit follows, under another, would be
    /// hidden from it (`use axum::serve as start`).
    fn renamed(&mut self, original: &syn::Ident, rename: &syn::Ident) {
        let word = original.unraw().to_string();
        if followed(&word) && !self.in_tests && rename.unraw() != word {
            self.finding(
                rename.span(),
                format!("imports `{word}` as `{rename}`: renamed, it would be hidden from this audit; use it by its own name"),
            );
        }
    }

    fn finding(&mut self, span: proc_macro2::Span, message: String) {
        let start = span.start();
        self.findings.push(Finding {
            file: self.file.to_owned(),
            line: start.line,
            column: start.column + 1,
            message,
        });
    }

    /// Checks one name used as a method, a path segment or an import.
    fn check_name(&mut self, ident: &syn::Ident, how: &str) {
        let word = ident.unraw().to_string();
        if attaches(&word) && !self.in_guard {
            self.finding(
                ident.span(),
                format!("{how} `{word}` attaches a handler or layer outside the guarded router; register it with `GuardedRouter::operation` and an operation of the spec"),
            );
        }
        if SERVING.contains(&word.as_str()) && !self.in_bench {
            if !self.in_main {
                self.finding(
                    ident.span(),
                    format!("{how} `{word}` serves a router outside the service's main"),
                );
            } else if word == "serve" {
                let start = ident.span().start();
                self.serves.push(Finding {
                    file: self.file.to_owned(),
                    line: start.line,
                    column: start.column + 1,
                    message: String::new(),
                });
                // Called, what it serves is checked (`visit_expr_call`); taken as a value or
                // imported, it could be called on anything under another name.
                if how != "call" {
                    self.finding(
                        ident.span(),
                        format!("{how} `serve` in the service's main: call `axum::serve(listener, ..)` on the guarded router directly"),
                    );
                }
            }
        }
        if LISTENING.contains(&word.as_str()) && !self.in_main && !self.in_tests {
            self.finding(
                ident.span(),
                format!("{how} `{word}` accepts connections outside the service's main, where no guarded router is in the way"),
            );
        }
        if word == "include" {
            self.finding(
                ident.span(),
                format!("{how} `include` brings in code this audit cannot see"),
            );
        }
        if word == "hyper" || word == "hyper_util" {
            self.finding(
                ident.span(),
                format!("{how} `{word}` serves HTTP without the guarded router"),
            );
        }
    }

    /// A call taking connections off a socket (a method, or a function path): outside tests
    /// and benchmarks, a server of its own.
    fn accepting(&mut self, ident: &syn::Ident) {
        let word = ident.unraw().to_string();
        if ACCEPTING.contains(&word.as_str()) && !self.in_tests {
            self.finding(
                ident.span(),
                format!("`{word}` takes connections off a socket: a server of its own, without the guarded router"),
            );
        }
    }

    /// Whether `expr`, in the server's main, is the guarded router (`server::router(..)`), a
    /// name bound to it, or the service made of it (`into_make_service*`).
    fn is_router(&self, expr: &syn::Expr) -> bool {
        match expr {
            syn::Expr::Call(call) => matches!(&*call.func, syn::Expr::Path(p)
                if p.path.segments.iter().map(|s| s.ident.to_string()).eq(["server", "router"])),
            syn::Expr::MethodCall(call) => {
                MAKE_SERVICE.contains(&call.method.to_string().as_str())
                    && self.is_router(&call.receiver)
            }
            syn::Expr::Path(p) => p
                .path
                .get_ident()
                .is_some_and(|name| self.router_names.contains(&name.unraw().to_string())),
            syn::Expr::Paren(inner) => self.is_router(&inner.expr),
            syn::Expr::Group(inner) => self.is_router(&inner.expr),
            _ => false,
        }
    }

    /// Tokens of a macro: checked for every name above, since what the macro expands to
    /// cannot be seen here.
    fn check_tokens(&mut self, tokens: &proc_macro2::TokenStream, name: &str) {
        for tree in tokens.clone() {
            match tree {
                proc_macro2::TokenTree::Ident(ident) => {
                    let word = ident.unraw().to_string();
                    // Serving inside a macro is a finding in main too: what it expands to is
                    // neither the one `serve` nor checked to serve the guarded router.
                    let flagged = (attaches(&word) && !self.in_guard)
                        || (SERVING.contains(&word.as_str()) && !self.in_bench)
                        || ((LISTENING.contains(&word.as_str())
                            || ACCEPTING.contains(&word.as_str()))
                            && !self.in_tests)
                        || (SERVICE_TRAITS.contains(&word.as_str())
                            && !self.in_guard
                            && !self.in_tests)
                        || matches!(
                            word.as_str(),
                            "Operation" | "include" | "hyper" | "hyper_util"
                        );
                    if flagged {
                        self.finding(ident.span(), format!("macro `{name}!` mentions `{word}`; handlers must be attached through the guarded router, outside macros"));
                    }
                }
                proc_macro2::TokenTree::Group(group) => self.check_tokens(&group.stream(), name),
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Visitor<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        self.check_name(&call.method, "method");
        self.accepting(&call.method);
        // An operation registered is one the generated modules declare, by name (checked
        // once every file is read).
        if call.method == "operation" && !self.in_guard && !self.in_tests {
            let name = match call.args.first() {
                Some(syn::Expr::Reference(r)) => match &*r.expr {
                    syn::Expr::Path(p) => {
                        p.path.segments.last().map(|s| s.ident.unraw().to_string())
                    }
                    _ => None,
                },
                _ => None,
            };
            match name {
                Some(name) => {
                    let start = call.method.span().start();
                    self.registered.push((at(self.file, start.line, start.column + 1, ""), name));
                }
                None => self.finding(
                    call.method.span(),
                    "registers an operation other than a declared `…_OP` constant of the generated modules".into(),
                ),
            }
        }
        if self.in_main
            && MAKE_SERVICE.contains(&call.method.to_string().as_str())
            && !self.is_router(&call.receiver)
        {
            self.finding(
                call.method.span(),
                format!("`{}` turns something other than the guarded router (`server::router`) into a service", call.method),
            );
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    /// In the server's main, what `serve` runs must be the guarded router.
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let (true, syn::Expr::Path(func)) = (self.in_main, &*call.func)
            && let Some(last) = func.path.segments.last()
            && last.ident.unraw() == "serve"
        {
            if !call
                .args
                .iter()
                .nth(1)
                .is_some_and(|app| self.is_router(app))
            {
                self.finding(
                    last.ident.span(),
                    "serves something other than the guarded router (`server::router`)".into(),
                );
            }
            let count = func.path.segments.len();
            for (index, segment) in func.path.segments.iter().enumerate() {
                let how = if index + 1 == count { "call" } else { "path" };
                self.check_name(&segment.ident, how);
                self.visit_path_arguments(&segment.arguments);
            }
            for arg in &call.args {
                self.visit_expr(arg);
            }
            return;
        }
        syn::visit::visit_expr_call(self, call);
    }

    /// In the server's main, remembers which names hold the guarded router.
    /// Any other binding of a name (typed, in a tuple, shadowed) forgets it.
    fn visit_local(&mut self, local: &'ast syn::Local) {
        if self.in_main {
            let router = local
                .init
                .as_ref()
                .is_some_and(|init| self.is_router(&init.expr));
            let mut bound = Bindings::default();
            bound.visit_pat(&local.pat);
            for name in bound.0 {
                self.router_names.remove(&name);
            }
            if let (true, syn::Pat::Ident(binding)) = (router, &local.pat)
                && !self.rebound.contains(&binding.ident.unraw().to_string())
            {
                self.router_names.insert(binding.ident.unraw().to_string());
            }
        }
        syn::visit::visit_local(self, local);
    }

    /// Type names are checked like the other names (`type Port = TcpListener`, a `Handler`
    /// bound).
    fn visit_type_path(&mut self, path: &'ast syn::TypePath) {
        for segment in &path.path.segments {
            self.check_name(&segment.ident, "type");
        }
        syn::visit::visit_type_path(self, path);
    }

    fn visit_item_extern_crate(&mut self, item: &'ast syn::ItemExternCrate) {
        self.check_name(&item.ident, "crate");
        if let Some((_, rename)) = &item.rename {
            self.check_name(rename, "crate renamed to");
            self.renamed(&item.ident, rename);
        }
        syn::visit::visit_item_extern_crate(self, item);
    }

    /// Operations are declared only as the generated modules declare them: a `static`,
    /// `const` or function of type `Operation` elsewhere could register a route the spec
    /// does not have.
    fn visit_item_static(&mut self, item: &'ast syn::ItemStatic) {
        self.operation_item(&item.ty, &item.ident, Some(&item.expr));
        syn::visit::visit_item_static(self, item);
    }

    fn visit_item_const(&mut self, item: &'ast syn::ItemConst) {
        self.operation_item(&item.ty, &item.ident, Some(&item.expr));
        // The literal that is its whole value declares an operation under its name.
        self.naming =
            matches!(&*item.expr, syn::Expr::Struct(_)).then(|| item.ident.unraw().to_string());
        syn::visit::visit_item_const(self, item);
        self.naming = None;
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if let syn::ReturnType::Type(_, ty) = &item.sig.output {
            self.operation_item(ty, &item.sig.ident, None);
        }
        syn::visit::visit_item_fn(self, item);
    }

    /// Associated constants and functions are held to the same rule as items.
    fn visit_impl_item_const(&mut self, item: &'ast syn::ImplItemConst) {
        self.operation_item(&item.ty, &item.ident, Some(&item.expr));
        syn::visit::visit_impl_item_const(self, item);
    }

    fn visit_trait_item_const(&mut self, item: &'ast syn::TraitItemConst) {
        let value = item.default.as_ref().map(|(_, expr)| expr);
        self.operation_item(&item.ty, &item.ident, value);
        syn::visit::visit_trait_item_const(self, item);
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if let syn::ReturnType::Type(_, ty) = &item.sig.output {
            self.operation_item(ty, &item.sig.ident, None);
        }
        syn::visit::visit_impl_item_fn(self, item);
    }

    /// Any item named `server` in the service's main (a module, a struct with a `router`
    /// function, …) would stand in for the server crate.
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if let Some(ident) = item_ident(item) {
            self.shadows_server(ident);
        }
        syn::visit::visit_item(self, item);
    }

    /// So would a generic parameter of that name (`fn run<server: Make>()`).
    fn visit_generic_param(&mut self, param: &'ast syn::GenericParam) {
        match param {
            syn::GenericParam::Type(t) => self.shadows_server(&t.ident),
            syn::GenericParam::Const(c) => self.shadows_server(&c.ident),
            syn::GenericParam::Lifetime(_) => {}
        }
        syn::visit::visit_generic_param(self, param);
    }

    /// An alias of `Operation` would declare operations this audit does not see as such.
    fn visit_item_type(&mut self, item: &'ast syn::ItemType) {
        if !self.in_guard && mentions(&quote::ToTokens::to_token_stream(&item.ty), "Operation") {
            self.finding(
                item.ident.span(),
                "an alias of `Operation`: operations must be declared under that name".into(),
            );
        }
        syn::visit::visit_item_type(self, item);
    }

    fn visit_expr_path(&mut self, path: &'ast syn::ExprPath) {
        for segment in &path.path.segments {
            self.check_name(&segment.ident, "path");
        }
        // `TcpListener::accept(&l)`; a lone `incoming` is a variable like any other.
        if path.path.segments.len() > 1
            && let Some(last) = path.path.segments.last()
        {
            self.accepting(&last.ident);
        }
        syn::visit::visit_expr_path(self, path);
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => self.check_name(&p.ident, "import of"),
            syn::UseTree::Name(n) => {
                self.check_name(&n.ident, "import of");
                self.shadows_server(&n.ident);
            }
            syn::UseTree::Rename(r) => {
                self.check_name(&r.ident, "import of");
                self.check_name(&r.rename, "import as");
                self.renamed(&r.ident, &r.rename);
                self.shadows_server(&r.rename);
            }
            // What a glob brings into the service's main is unseen: a `server` among it
            // would stand in for the server crate.
            syn::UseTree::Glob(glob) if self.in_main => self.finding(
                glob.star_token.span,
                "a glob import in the service's main: import names one by one".into(),
            ),
            _ => {}
        }
        syn::visit::visit_use_tree(self, tree);
    }

    fn visit_expr_struct(&mut self, expr: &'ast syn::ExprStruct) {
        if expr
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Operation")
        {
            let span = expr
                .path
                .segments
                .last()
                .map_or_else(proc_macro2::Span::call_site, |s| s.ident.span());
            let start = span.start();
            let at = Finding {
                file: self.file.to_owned(),
                line: start.line,
                column: start.column + 1,
                message: String::new(),
            };
            if !self.file.starts_with(RESOURCE_MODULES) && self.file != MEMBERS_MODULE {
                self.findings.push(Finding {
                    message:
                        "declares an operation outside the generated resource and members modules"
                            .into(),
                    ..at.clone()
                });
            }
            let name = self
                .naming
                .take()
                .filter(|_| self.file.starts_with(RESOURCE_MODULES) || self.file == MEMBERS_MODULE);
            let fields = expr
                .fields
                .iter()
                .filter_map(|f| match &f.member {
                    syn::Member::Named(name) => {
                        let value = &f.expr;
                        Some((name.unraw().to_string(), quote::quote!(#value).to_string()))
                    }
                    syn::Member::Unnamed(_) => None,
                })
                .collect();
            self.operations.push(Declared { at, name, fields });
        }
        syn::visit::visit_expr_struct(self, expr);
    }

    /// A service or layer of one's own (`impl Service for ..`) could answer requests
    /// before, or instead of, the guarded router it wraps.
    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if let Some((path, _)) = &item.trait_
            && let Some(last) = path.segments.last()
            && (SERVICE_TRAITS.contains(&last.ident.unraw().to_string().as_str())
                || last.ident.unraw() == "Handler")
            && !self.in_guard
            && !self.in_tests
        {
            self.finding(
                last.ident.span(),
                format!("implements `{}`: a service or layer of its own could answer requests without the guarded router", last.ident),
            );
        }
        syn::visit::visit_item_impl(self, item);
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        // `#[path]`, also inside `#[cfg_attr(.., path = "..")]` however nested.
        let names_path = |attr: &syn::Attribute| {
            attr.path().is_ident("path")
                || (attr.path().is_ident("cfg_attr")
                    && mentions(&quote::ToTokens::to_token_stream(&attr.meta), "path"))
        };
        if module.attrs.iter().any(names_path) {
            self.finding(
                module.ident.span(),
                "`#[path]` points the compiler at a file this audit may not read".into(),
            );
        }
        syn::visit::visit_item_mod(self, module);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let name = mac
            .path
            .segments
            .last()
            .map_or_else(String::new, |s| s.ident.unraw().to_string());
        if name == "include" {
            self.finding(
                mac.path.segments[0].ident.span(),
                "`include!` brings in code this audit cannot see".into(),
            );
        }
        self.check_tokens(&mac.tokens, &name);
        syn::visit::visit_macro(self, mac);
    }
}
