//! `bulwark audit DIR [--spec SPEC]`: proof that every route of a generated project goes
//! through the guard, including in code edited by hand.
//!
//! Every `.rs` file under DIR (except the root's `target/` and `.git/`) is parsed with syn.
//! The guard module is the one place that attaches handlers, listens and serves
//! (`guard::serve`, which the server's main calls), and it must be exactly the one this
//! bulwark generates. Outside it, a finding is:
//!
//! - attaching: an axum call that attaches a handler or a layer (`route`, `nest`, `merge`,
//!   `fallback`, `layer`, `from_fn`, … as a method, a path or an import, raw identifiers
//!   included); an implementation of tower's `Service` or `Layer`, or of axum's `Handler`
//!   or `serve::Listener`;
//! - serving and listening: `serve` or a service conversion other than by calling
//!   `server::guard::serve`; a listening socket, or connections taken off one (`accept`,
//!   `incoming`, tokio-stream's listener streams); unsafe code, `extern` blocks and
//!   functions, and attributes placing symbols or linking libraries (sockets below every
//!   name followed); hyper used directly, or a dependency on a crate that serves HTTP by
//!   itself, attaches handlers its own way, opens sockets below tokio or builds names out
//!   of pieces (`paste`);
//! - hiding a name: one this audit follows imported under another (`use axum::serve as
//!   start`), or by a glob from a crate whose names it follows (`use axum::*`); a macro whose
//!   tokens mention any of these or call `operation` or `previous` (in tracing's macros
//!   only calls count);
//! - changing what the guard module's words mean: a dependency named like a crate it uses
//!   (axum, tokio, tracing, governor, ipnet, serde_json, uuid) that is not that crate from
//!   the registry, `extern crate .. as ..`, a `macro_rules!` named like a standard or
//!   tracing macro, `#[macro_use]`, an item or import named `tracing`, a trait named like
//!   something it imports;
//! - code the compiler reads that this audit cannot see: `#[path]`, `include!`, build
//!   scripts under any name, procedural-macro crates, symbolic links, a toolchain named by
//!   its folder, Cargo configuration that sets a compiler, a manifest bringing in code from
//!   outside the project (a `path` leading out of it, a `git` source), a crate inside a test
//!   or benchmark folder, a target compiled from a file that is not where Cargo looks for
//!   that kind of target, not `.rs`, or under `.git` or `target`; a file that does not
//!   parse;
//! - operations: an `Operation` declared outside the generated resource and members
//!   modules, other than as a literal, or under an alias; a route registered
//!   (`GuardedRouter::operation`, `previous`) outside those modules, other than as a method,
//!   or with anything but `&NAME` of an operation its module declares as a literal at its
//!   top under a name nothing else there has; in those modules (their `#[cfg(test)]`
//!   modules aside), anything declared or imported as `Some`, `None`, `Operation`,
//!   `RouteClass`, `tracing` or `serde_json` but the usual ones, glob imports, macros where
//!   an item or a statement goes (tracing's and the standard ones aside) and names that are
//!   not ASCII.
//!
//! The test and benchmark targets of the crates under `crates/`, compiled apart from the
//! service, may attach, serve and listen (mock servers). A lone name (a variable, or a
//! function imported by name, the import being checked) and `tracing_subscriber`'s layers
//! are no findings. With `--spec`, every declared operation must also be exactly one of the
//! spec's, roles and second factor included, and every route of a previous API version one
//! the spec's deprecated versions serve. With `--database`, the [`database`] side is
//! audited too.

pub mod database;

use crate::model::App;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::ext::IdentExt;
use syn::visit::Visit;

/// The only module allowed to attach handlers, relative to the project root.
pub const GUARD_MODULE: &str = "crates/server/src/guard.rs";
/// Where the generated operations are declared.
const RESOURCE_MODULES: &str = "crates/server/src/resources/";
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

/// Sockets that accept connections: outside the guard module's `serve` (and tests and
/// benchmarks, which serve their own loopback peers), a server built on one would bypass the
/// router.
const LISTENING: [&str; 5] = [
    "TcpListener",
    "UnixListener",
    "TcpSocket",
    // tokio-stream's adapters, which take connections off a listener as a stream.
    "TcpListenerStream",
    "UnixListenerStream",
];

/// Crates that serve HTTP by themselves, attach handlers in ways of their own (axum-extra's
/// typed routes), or open sockets below tokio: a dependency on one is a way around the
/// guarded router (compared with `_` read as `-`).
const HTTP_SERVERS: [&str; 38] = [
    "actix-http",
    "actix-server",
    "actix-web",
    "astra",
    "async-io",
    "async-net",
    "async-std",
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
    "rustix",
    "salvo",
    "smol",
    "socket2",
    "thruster",
    "tide",
    "tiny-http",
    "tokio-vsock",
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
    let mut operations = Vec::new();
    let mut previous = Vec::new();
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
        let (package, within_package) = package_of(dir, relative);
        let mut visitor = Visitor {
            file: &name,
            in_guard: name == GUARD_MODULE,
            // Only the test and benchmark targets of a crate under `crates/` (a module named
            // `tests` inside a crate's source is compiled into it).
            in_tests: package.starts_with("crates")
                && package.components().count() == 2
                && (within_package.starts_with("tests") || within_package.starts_with("benches")),
            findings: &mut findings,
            operations: &mut operations,
            cfg_test: 0,
            previous: &mut previous,
            declared: declared_here(&file),
        };
        visitor.visit_file(&file);
    }
    check_guard_module(dir, &mut findings)?;
    if let Some(app) = spec {
        check_operations(app, &operations, &mut findings);
        check_previous(app, &previous, &mut findings);
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

/// Every route of a previous API version registered must be one the spec's deprecated
/// versions serve (operation, version and path), and every one of those registered.
fn check_previous(app: &App, registered: &[Previous], findings: &mut Vec<Finding>) {
    let mut expected = BTreeSet::new();
    for (index, version) in app.deprecated_versions.iter().enumerate() {
        for resource in &app.resources {
            let Some(served) = version.serves(resource) else {
                continue;
            };
            for action in served
                .actions
                .iter()
                .filter(|a| !served.unchanged(resource, a))
            {
                let id = format!("{}.{}", resource.name, action.name);
                expected.insert((id, index, version.path_of(app, resource, &served, action)));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for route in registered {
        let key = (route.id.clone(), route.version, route.path.clone());
        if !expected.contains(&key) {
            findings.push(Finding {
                message: format!(
                    "registers `{}` at `{}` for previous version {}, which the spec's deprecated versions do not serve",
                    route.id, route.path, route.version
                ),
                ..route.at.clone()
            });
        }
        seen.insert(key);
    }
    for (id, version, path) in expected.difference(&seen) {
        findings.push(at(
            RESOURCE_MODULES,
            1,
            1,
            &format!(
                "operation `{id}` of previous version {version} at `{path}` is not registered"
            ),
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
        // The guard module is checked word for word, and its words mean what these crates
        // say: under their names, only the registry's crates of those names.
        let key = name.replace('-', "_");
        if GUARD_CRATES.contains(&key.as_str())
            && (spec.get("path").is_some() || package.replace('-', "_") != key)
        {
            found(
                name,
                format!(
                    "`{name}` is not the registry's crate of that name, and the guard module's code means what that crate says"
                ),
            );
        }
    }
}

/// What the guard module imports from the crate's own modules.
const GUARD_IMPORTS: [&str; 9] = [
    "Event",
    "Outcome",
    "Authority",
    "identity",
    "Problem",
    "Machine",
    "Principal",
    "TenantId",
    "standing",
];

/// The crates the guard module's code names.
const GUARD_CRATES: [&str; 7] = [
    "axum",
    "governor",
    "ipnet",
    "serde_json",
    "tokio",
    "tracing",
    "uuid",
];

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
    /// Tests and benchmarks, which may listen for their own loopback peers.
    in_tests: bool,
    findings: &'a mut Vec<Finding>,
    operations: &'a mut Vec<Declared>,
    /// How deep in `#[cfg(test)]` modules the visit is.
    cfg_test: usize,
    /// Routes of previous API versions registered (`GuardedRouter::previous`).
    previous: &'a mut Vec<Previous>,
    /// The operations this file declares at its top, as `Operation { .. }` literals, by
    /// constant name (with their `id`), that nothing else in the file is named after: the
    /// only ones it may register.
    declared: BTreeMap<String, String>,
}

/// Crates whose names this audit follows (serving, listening, attaching): a glob import from
/// one would bring them in unnamed.
const GLOB_REFUSED: [&str; 7] = [
    "axum",
    "tower",
    "tokio",
    "tokio_stream",
    "hyper",
    "hyper_util",
    "mio",
];

/// Macros a module may use in statement position even where declarations are watched: the
/// standard ones and tracing's (whose names no `macro_rules!` of the project may take).
const KNOWN_MACROS: [&str; 27] = [
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "dbg",
    "eprint",
    "eprintln",
    "format",
    "format_args",
    "matches",
    "panic",
    "print",
    "println",
    "todo",
    "unimplemented",
    "unreachable",
    "vec",
    "write",
    "writeln",
    "trace",
    "debug",
    "info",
    "warn",
    "error",
    "event",
];

/// The methods of `GuardedRouter` that register a route.
const REGISTERING: [&str; 2] = ["operation", "previous"];

/// A route of a previous API version, as registered: its operation's id, the version's index
/// in `PREVIOUS_VERSIONS`, and its path.
#[derive(Debug)]
struct Previous {
    at: Finding,
    id: String,
    version: usize,
    path: String,
}

/// The operations a file declares at its top as `const NAME: Operation = Operation { .. }`,
/// by name, with their `id`, leaving out any name something else in the file also binds (an
/// item, a binding, an import, a macro's tokens), which could stand in for it.
fn declared_here(file: &syn::File) -> BTreeMap<String, String> {
    #[derive(Default)]
    struct Names(BTreeMap<String, usize>);
    impl Names {
        fn add(&mut self, ident: &syn::Ident) {
            *self.0.entry(ident.unraw().to_string()).or_default() += 1;
        }
    }
    impl<'ast> Visit<'ast> for Names {
        fn visit_item(&mut self, item: &'ast syn::Item) {
            if let Some(ident) = item_ident(item) {
                self.add(ident);
            }
            syn::visit::visit_item(self, item);
        }
        fn visit_impl_item_const(&mut self, item: &'ast syn::ImplItemConst) {
            self.add(&item.ident);
            syn::visit::visit_impl_item_const(self, item);
        }
        fn visit_trait_item_const(&mut self, item: &'ast syn::TraitItemConst) {
            self.add(&item.ident);
            syn::visit::visit_trait_item_const(self, item);
        }
        fn visit_pat_ident(&mut self, binding: &'ast syn::PatIdent) {
            self.add(&binding.ident);
            syn::visit::visit_pat_ident(self, binding);
        }
        fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
            match tree {
                syn::UseTree::Name(n) => self.add(&n.ident),
                syn::UseTree::Rename(r) => self.add(&r.rename),
                _ => {}
            }
            syn::visit::visit_use_tree(self, tree);
        }
    }
    let mut names = Names::default();
    names.visit_file(file);
    // `Operation` itself, the guard's (its import is checked), not a type of that name
    // elsewhere (`crate::tenant::Operation`).
    let is_operation = |path: &syn::Path| path.is_ident("Operation");
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Const(c) => match (&*c.ty, &*c.expr) {
                (syn::Type::Path(ty), syn::Expr::Struct(literal))
                    if ty.qself.is_none()
                        && is_operation(&ty.path)
                        && is_operation(&literal.path)
                        && literal.rest.is_none() =>
                {
                    let id = literal
                        .fields
                        .iter()
                        .find_map(|f| match (&f.member, &f.expr) {
                            (
                                syn::Member::Named(name),
                                syn::Expr::Lit(syn::ExprLit {
                                    lit: syn::Lit::Str(id),
                                    ..
                                }),
                            ) if name == "id" => Some(id.value()),
                            _ => None,
                        })?;
                    Some((c.ident.unraw().to_string(), id))
                }
                _ => None,
            },
            _ => None,
        })
        .filter(|(name, _)| names.0.get(name) == Some(&1))
        .collect()
}

/// Names the `Operation` literals use, which nothing in a module declaring them may
/// redeclare.
const PROTECTED: [&str; 6] = [
    "Some",
    "None",
    "Operation",
    "RouteClass",
    "tracing",
    "serde_json",
];

/// One name a `use` brings in: the original and the name bound, or a glob.
enum Leaf<'a> {
    Name(&'a syn::Ident, &'a syn::Ident),
    Glob(proc_macro2::Span),
}

/// Every name a use tree brings in, with the path before it.
fn use_leaves<'a>(
    tree: &'a syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, Leaf<'a>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.unraw().to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => out.push((prefix.clone(), Leaf::Name(&n.ident, &n.ident))),
        syn::UseTree::Rename(r) => out.push((prefix.clone(), Leaf::Name(&r.ident, &r.rename))),
        syn::UseTree::Glob(g) => out.push((prefix.clone(), Leaf::Glob(g.star_token.span))),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                use_leaves(tree, prefix, out);
            }
        }
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
            "Operation" | "GuardedRouter" | "RouteClass" | "hyper" | "hyper_util" | "include"
        )
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

    /// `router.operation(&OP, handler)` or `router.previous(&OP, &crate::routes::PREVIOUS_VERSIONS[N],
    /// "/path", handler)`: only in the modules declaring operations, and only with an
    /// operation this file declares as a literal at its top ([`declared_here`]).
    fn registration(&mut self, call: &syn::ExprMethodCall) {
        let method = call.method.unraw().to_string();
        if !self.declares_operations() {
            self.finding(
                call.method.span(),
                format!("`{method}` registers a route outside the generated resource and members modules"),
            );
            return;
        }
        let args: Vec<&syn::Expr> = call.args.iter().collect();
        let named = match args.first() {
            Some(syn::Expr::Reference(r)) => match &*r.expr {
                syn::Expr::Path(p) if p.qself.is_none() => p.path.get_ident(),
                _ => None,
            },
            _ => None,
        };
        let Some((name, id)) = named.and_then(|name| {
            let name = name.unraw().to_string();
            self.declared.get(&name).map(|id| (name, id.clone()))
        }) else {
            self.finding(
                call.method.span(),
                format!("`{method}` is given something other than `&NAME` of an operation this module declares as an `Operation {{ .. }}` literal at its top, under a name nothing else in it has"),
            );
            return;
        };
        if method == "previous" {
            // The version by its index in the generated table, the path written out.
            let version = match args.get(1) {
                Some(syn::Expr::Reference(r)) => match &*r.expr {
                    syn::Expr::Index(index) => match (&*index.expr, &*index.index) {
                        (
                            syn::Expr::Path(table),
                            syn::Expr::Lit(syn::ExprLit {
                                lit: syn::Lit::Int(n),
                                ..
                            }),
                        ) if table.path.segments.iter().map(|s| s.ident.to_string()).eq([
                            "crate",
                            "routes",
                            "PREVIOUS_VERSIONS",
                        ]) =>
                        {
                            n.base10_parse::<usize>().ok()
                        }
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            };
            let path = match args.get(2) {
                Some(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(path),
                    ..
                })) => Some(path.value()),
                _ => None,
            };
            let (Some(version), Some(path)) = (version, path) else {
                self.finding(
                    call.method.span(),
                    format!("`previous` of `{name}` must name its version as `&crate::routes::PREVIOUS_VERSIONS[N]` and its path as a string"),
                );
                return;
            };
            let start = call.method.span().start();
            self.previous.push(Previous {
                at: at(self.file, start.line, start.column + 1, ""),
                id,
                version,
                path,
            });
        }
    }

    /// An item or import named `tracing`: `tracing::info!(..)` would be its macro, whose
    /// tokens are read only for calls (see [`Visitor::check_tokens`]).
    fn stands_in_for_tracing(&mut self, ident: &syn::Ident) {
        if ident.unraw() == "tracing" && !self.in_tests {
            self.finding(
                ident.span(),
                "declares or imports a `tracing` of its own, which would stand in for the logging crate".into(),
            );
        }
    }

    /// Unsafe code, a foreign function or a symbol of one's own (`extern "C"`, `no_mangle`):
    /// sockets and servers below every name this audit follows.
    fn unsafe_code(&mut self, span: proc_macro2::Span, what: &str) {
        if !self.in_tests {
            self.finding(
                span,
                format!("{what}: code below the names this audit follows (a socket made through libc, say) cannot be checked"),
            );
        }
    }

    /// Whether this file is one of the generated modules that declare operations.
    fn declares_operations(&self) -> bool {
        self.file.starts_with(RESOURCE_MODULES) || self.file == MEMBERS_MODULE
    }

    /// Whether the rules of those modules hold here: anywhere in them but a `#[cfg(test)]`
    /// module, which is compiled for tests only and declares nothing outside itself.
    fn restricted(&self) -> bool {
        self.declares_operations() && self.cfg_test == 0
    }

    /// A declaration of `ident` in a module declaring operations, where it must not be one of
    /// [`PROTECTED`].
    fn protected(&mut self, ident: &syn::Ident) {
        let word = ident.unraw().to_string();
        if self.restricted() && PROTECTED.contains(&word.as_str()) {
            self.finding(
                ident.span(),
                format!("declares `{word}` in a module declaring operations, where the operation literals' `{word}` must be the usual one"),
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
        if attaches(&word) && !self.in_guard && !self.in_tests {
            self.finding(
                ident.span(),
                format!("{how} `{word}` attaches a handler or layer outside the guarded router; register it with `GuardedRouter::operation` and an operation of the spec"),
            );
        }
        // Serving and listening happen in `guard::serve` only (and a benchmark's loopback
        // server): anywhere else, a server the guarded router may not be in front of.
        if SERVING.contains(&word.as_str()) && !self.in_guard && !self.in_tests {
            self.finding(
                ident.span(),
                format!("{how} `{word}` serves outside the guard module; the service is served by `guard::serve` alone"),
            );
        }
        if LISTENING.contains(&word.as_str()) && !self.in_guard && !self.in_tests {
            self.finding(
                ident.span(),
                format!("{how} `{word}` listens for connections outside the guard module, where no guarded router is in the way"),
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

    /// Tokens of a macro: checked for every name above, since what the macro expands to
    /// cannot be seen here. With `called_only` (tracing's macros, whose fields are often
    /// named `route` or `operation`), and always for `operation` and `previous`, a name
    /// counts where it is called or a path goes through it (`x.route(..)`, `serve(..)`,
    /// `TcpListener::bind`), not as a field name.
    fn check_tokens(&mut self, tokens: &proc_macro2::TokenStream, name: &str, called_only: bool) {
        let trees: Vec<proc_macro2::TokenTree> = tokens.clone().into_iter().collect();
        for (index, tree) in trees.iter().enumerate() {
            match tree {
                proc_macro2::TokenTree::Ident(ident) => {
                    let word = ident.unraw().to_string();
                    let punct = |tree: Option<&proc_macro2::TokenTree>, c: char| matches!(tree, Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == c);
                    let next = trees.get(index + 1);
                    let previous = index.checked_sub(1).and_then(|i| trees.get(i));
                    let called = matches!(next, Some(proc_macro2::TokenTree::Group(g))
                            if g.delimiter() == proc_macro2::Delimiter::Parenthesis)
                        || punct(next, '!')
                        || punct(next, ':')
                        || punct(previous, '.')
                        || punct(previous, ':');
                    if called_only && !called {
                        continue;
                    }
                    let outside = !self.in_guard && !self.in_tests;
                    // Serving or listening inside a macro is a finding even where the names
                    // alone are not: what it expands to cannot be checked.
                    let followed = attaches(&word)
                        || SERVING.contains(&word.as_str())
                        || LISTENING.contains(&word.as_str())
                        || ACCEPTING.contains(&word.as_str())
                        || SERVICE_TRAITS.contains(&word.as_str())
                        || (REGISTERING.contains(&word.as_str()) && called);
                    let flagged = (followed && outside)
                        || matches!(
                            word.as_str(),
                            "Operation" | "include" | "hyper" | "hyper_util"
                        );
                    if flagged {
                        self.finding(ident.span(), format!("macro `{name}!` mentions `{word}`; handlers must be attached through the guarded router, outside macros"));
                    }
                }
                proc_macro2::TokenTree::Group(group) => {
                    self.check_tokens(&group.stream(), name, called_only)
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Visitor<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        self.check_name(&call.method, "method");
        self.accepting(&call.method);
        if REGISTERING.contains(&call.method.unraw().to_string().as_str())
            && !self.in_guard
            && !self.in_tests
        {
            self.registration(call);
        }
        syn::visit::visit_expr_method_call(self, call);
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
            // It joins every module's crate names (`extern crate self as axum`), the guard
            // module's included.
            if !self.in_tests {
                self.finding(
                    rename.span(),
                    format!("`extern crate {} as {rename}` changes what `{rename}` means in every module, the guard module's included", item.ident),
                );
            }
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
        syn::visit::visit_item_const(self, item);
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

    /// In the modules declaring operations, an item named like what their literals use
    /// (`Some`, `RouteClass`, …) would change what a literal means while its text, which
    /// `--spec` compares, stays the same; a macro of their own could declare anything.
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if let Some(ident) = item_ident(item) {
            self.protected(ident);
            self.stands_in_for_tracing(ident);
        }
        if let syn::Item::Macro(mac) = item
            && mac.mac.path.is_ident("macro_rules")
            && let Some(name) = &mac.ident
            && KNOWN_MACROS.contains(&name.unraw().to_string().as_str())
            && !self.in_tests
        {
            self.finding(
                name.span(),
                format!("a `macro_rules! {name}` would stand in for the standard `{name}!` in the modules after it, the guard module's included"),
            );
        }
        let macro_use =
            |attrs: &[syn::Attribute]| attrs.iter().any(|a| a.path().is_ident("macro_use"));
        let brings_macros = match item {
            syn::Item::ExternCrate(i) => macro_use(&i.attrs),
            syn::Item::Mod(i) => macro_use(&i.attrs),
            _ => false,
        };
        if brings_macros && !self.in_tests {
            self.finding(
                item_ident(item).map_or_else(proc_macro2::Span::call_site, |i| i.span()),
                "`#[macro_use]` brings macros into the modules after it unseen, the guard module's included".into(),
            );
        }
        if let syn::Item::Macro(mac) = item
            && self.restricted()
        {
            self.finding(
                mac.mac.path.segments[0].ident.span(),
                "a macro where an item goes in a module declaring operations: what it declares cannot be checked".into(),
            );
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_generic_param(&mut self, param: &'ast syn::GenericParam) {
        match param {
            syn::GenericParam::Type(t) => self.protected(&t.ident),
            syn::GenericParam::Const(c) => self.protected(&c.ident),
            syn::GenericParam::Lifetime(_) => {}
        }
        syn::visit::visit_generic_param(self, param);
    }

    /// Imports into a module declaring operations: `Operation` and `RouteClass` from the
    /// guard module only, nothing named `Some` or `None`, and no globs (what they bring is
    /// unseen).
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if !self.in_guard && !self.in_tests {
            let mut leaves = Vec::new();
            use_leaves(&item.tree, &mut Vec::new(), &mut leaves);
            for (path, leaf) in &leaves {
                let from = path.first().map(String::as_str).unwrap_or_default();
                let followed = GLOB_REFUSED.contains(&from)
                    || matches!(path.as_slice(), [std, net, ..] if (std == "std" || std == "core") && net == "net");
                if let (Leaf::Glob(span), true) = (leaf, followed) {
                    self.finding(
                        *span,
                        format!("a glob import from `{}` hides the names this audit follows: import them by name", path.join("::")),
                    );
                }
            }
        }
        if self.restricted() {
            let mut leaves = Vec::new();
            use_leaves(&item.tree, &mut Vec::new(), &mut leaves);
            for (path, leaf) in leaves {
                match leaf {
                    Leaf::Glob(span) => self.finding(
                        span,
                        "a glob import in a module declaring operations: import names one by one"
                            .into(),
                    ),
                    Leaf::Name(original, bound) => {
                        let word = bound.unraw().to_string();
                        let guards = path == ["crate", "guard"]
                            && original == bound
                            && matches!(word.as_str(), "Operation" | "RouteClass");
                        if PROTECTED.contains(&word.as_str()) && !guards {
                            self.finding(
                                bound.span(),
                                format!("imports `{word}` other than the guard module's own: the operation literals' `{word}` must be the usual one"),
                            );
                        }
                    }
                }
            }
        }
        syn::visit::visit_item_use(self, item);
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
        let segments: Vec<&syn::PathSegment> = path.path.segments.iter().collect();
        for (index, segment) in segments.iter().enumerate() {
            // `server::guard::serve(..)`: the guard module's own, the one way to serve.
            let guards_own = segment.ident == "serve"
                && index == 2
                && segments.len() == 3
                && segments[1].ident == "guard"
                && (segments[0].ident == "server" || segments[0].ident == "crate")
                && path.qself.is_none();
            // A lone name is a variable or a function of this crate's (`let fallback = 50`):
            // what it refers to was imported by name, and imports are checked.
            let lone = segments.len() == 1 && path.qself.is_none();
            // Logging layers are no handlers (`tracing_subscriber::fmt::layer()`).
            let logging = segments[0].ident == "tracing_subscriber";
            if !guards_own && !lone && !logging {
                self.check_name(&segment.ident, "path");
            }
        }
        // `GuardedRouter::operation(router, ..)`: registered as a method only, where the
        // operation it is given is checked. (A lone `operation` is a variable.)
        if let Some(last) = path.path.segments.last()
            && REGISTERING.contains(&last.ident.unraw().to_string().as_str())
            && (path.path.segments.len() > 1 || path.qself.is_some())
            && !self.in_guard
        {
            self.finding(
                last.ident.span(),
                format!(
                    "path `{}`: register operations as `router.{}(&OPERATION, handler)`",
                    last.ident, last.ident
                ),
            );
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
                self.accepting(&n.ident);
            }
            syn::UseTree::Rename(r) => {
                self.check_name(&r.ident, "import of");
                self.accepting(&r.ident);
                self.check_name(&r.rename, "import as");
                self.renamed(&r.ident, &r.rename);
                self.stands_in_for_tracing(&r.rename);
            }
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
            // Each field once and as written: a field under `#[cfg]` would leave the text
            // compared and the value compiled apart.
            let mut fields = BTreeMap::new();
            for field in &expr.fields {
                let syn::Member::Named(name) = &field.member else {
                    continue;
                };
                let name = name.unraw().to_string();
                let value = &field.expr;
                let written = quote::quote!(#value).to_string();
                if !field.attrs.is_empty() || fields.insert(name.clone(), written).is_some() {
                    self.findings.push(Finding {
                        message: format!(
                            "an operation's `{name}` must be written once, with no attribute"
                        ),
                        ..at.clone()
                    });
                }
            }
            self.operations.push(Declared { at, fields });
        }
        syn::visit::visit_expr_struct(self, expr);
    }

    /// A service or layer of one's own (`impl Service for ..`) could answer requests
    /// before, or instead of, the guarded router it wraps.
    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if let Some(token) = &item.unsafety {
            self.unsafe_code(token.span, "an `unsafe impl`");
        }
        let logging = item.trait_.as_ref().is_some_and(|(path, _)| {
            path.segments
                .first()
                .is_some_and(|s| s.ident == "tracing_subscriber")
        });
        if let Some((path, _)) = &item.trait_
            && !logging
        {
            for segment in &path.segments {
                self.check_name(&segment.ident, "trait");
            }
        }
        if let Some((path, _)) = &item.trait_
            && let Some(last) = path.segments.last()
            && (SERVICE_TRAITS.contains(&last.ident.unraw().to_string().as_str())
                || matches!(
                    last.ident.unraw().to_string().as_str(),
                    "Handler" | "Listener"
                ))
            && !logging
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

    fn visit_expr_unsafe(&mut self, expr: &'ast syn::ExprUnsafe) {
        self.unsafe_code(expr.unsafe_token.span, "an `unsafe` block");
        syn::visit::visit_expr_unsafe(self, expr);
    }

    fn visit_signature(&mut self, sig: &'ast syn::Signature) {
        if let syn::Safety::Unsafe(token) = &sig.safety {
            self.unsafe_code(token.span, "an `unsafe fn`");
        }
        if let Some(abi) = &sig.abi {
            self.unsafe_code(abi.extern_token.span, "a function with a foreign ABI");
        }
        syn::visit::visit_signature(self, sig);
    }

    fn visit_item_foreign_mod(&mut self, item: &'ast syn::ItemForeignMod) {
        self.unsafe_code(item.abi.extern_token.span, "an `extern` block");
        syn::visit::visit_item_foreign_mod(self, item);
    }

    fn visit_item_trait(&mut self, item: &'ast syn::ItemTrait) {
        if let Some(token) = &item.unsafety {
            self.unsafe_code(token.span, "an `unsafe trait`");
        }
        // A trait named like something the guard module imports comes in with it, and its
        // methods can win over the ones the guard means (`standing` on `Vec<String>`).
        if GUARD_IMPORTS.contains(&item.ident.unraw().to_string().as_str()) && !self.in_tests {
            self.finding(
                item.ident.span(),
                format!("a trait named `{}`, which the guard module imports: its methods would join the guard's", item.ident),
            );
        }
        syn::visit::visit_item_trait(self, item);
    }

    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        let path = attr.path();
        if path.is_ident("unsafe")
            || path.is_ident("no_mangle")
            || path.is_ident("export_name")
            || path.is_ident("link_section")
            || path.is_ident("link")
        {
            self.unsafe_code(
                path.segments
                    .first()
                    .map_or_else(proc_macro2::Span::call_site, |s| s.ident.span()),
                "an attribute placing a symbol or linking a library",
            );
        }
        syn::visit::visit_attribute(self, attr);
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
        // Exactly `#[cfg(test)]`: compiled for tests only (`cfg(any(test, ..))` is not).
        let cfg_test = module.attrs.iter().any(|a| {
            quote::ToTokens::to_token_stream(&a.meta)
                .to_string()
                .replace(' ', "")
                == "cfg(test)"
        });
        self.cfg_test += usize::from(cfg_test);
        syn::visit::visit_item_mod(self, module);
        self.cfg_test -= usize::from(cfg_test);
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
        // tracing's logging macros name fields freely (`route = ..`): only calls count.
        let logging = mac.path.segments.len() == 2 && mac.path.segments[0].ident == "tracing";
        self.check_tokens(&mac.tokens, &name, logging);
        syn::visit::visit_macro(self, mac);
    }

    /// In a module declaring operations, a macro where an item or a statement goes could
    /// declare a stand-in for an operation, or for `Some`, unseen: only tracing's, by path.
    fn visit_stmt_macro(&mut self, stmt: &'ast syn::StmtMacro) {
        let segments = &stmt.mac.path.segments;
        // tracing's by path, and the standard ones (which no `macro_rules!` of the project
        // may stand in for: see `visit_item`).
        let known = (segments.len() == 2 && segments[0].ident == "tracing")
            || (segments.len() == 1
                && KNOWN_MACROS.contains(&segments[0].ident.unraw().to_string().as_str()));
        if self.restricted() && !known {
            self.finding(
                stmt.mac.path.segments[0].ident.span(),
                "a macro in statement position in a module declaring operations: what it declares cannot be checked".into(),
            );
        }
        syn::visit::visit_stmt_macro(self, stmt);
    }

    /// In a module declaring operations, names are compared as written: one the compiler
    /// reads as another (the Kelvin sign for `K`) would be a stand-in unseen.
    fn visit_ident(&mut self, ident: &'ast proc_macro2::Ident) {
        if self.restricted() && !ident.to_string().is_ascii() {
            self.finding(
                ident.span(),
                format!("`{ident}` is not ASCII: in a module declaring operations, names are compared as written"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the audit protects of the guard module's words is what the generated guard module
    /// names: the crates its paths start from, and what it imports from the crate's own
    /// modules. A generator change that made it name more fails here, not silently.
    #[test]
    fn the_names_protected_are_the_ones_the_guard_module_uses() {
        struct Roots(BTreeSet<String>);
        impl<'ast> Visit<'ast> for Roots {
            fn visit_path(&mut self, path: &'ast syn::Path) {
                if path.segments.len() > 1 {
                    self.0.insert(path.segments[0].ident.to_string());
                }
                syn::visit::visit_path(self, path);
            }
        }
        let text = crate::render::rust::server::guard_module().expect("the guard module");
        let file = syn::parse_file(&text).expect("it parses");
        let mut imports = BTreeSet::new();
        // Every name a `use` binds (`header`), which a path may start from too.
        let mut bound_names = BTreeSet::new();
        let mut roots = Roots(BTreeSet::new());
        for item in &file.items {
            if let syn::Item::Use(item) = item {
                let mut leaves = Vec::new();
                use_leaves(&item.tree, &mut Vec::new(), &mut leaves);
                for (path, leaf) in leaves {
                    if let Leaf::Name(_, bound) = &leaf {
                        bound_names.insert(bound.to_string());
                    }
                    match (path.first().map(String::as_str), leaf) {
                        (Some("crate"), Leaf::Name(_, bound)) => {
                            imports.insert(bound.to_string());
                        }
                        (Some(root), _) => {
                            roots.0.insert(root.to_owned());
                        }
                        _ => {}
                    }
                }
            }
        }
        roots.visit_file(&file);
        let crates: BTreeSet<String> = roots
            .0
            .into_iter()
            .filter(|root| {
                !matches!(
                    root.as_str(),
                    "crate" | "self" | "super" | "std" | "core" | "Self" | "str" | "i64" | "u64"
                ) && !bound_names.contains(root)
                    && root.chars().next().is_some_and(char::is_lowercase)
            })
            .collect();
        let expected: BTreeSet<String> = GUARD_CRATES.iter().map(|c| (*c).to_owned()).collect();
        assert_eq!(crates, expected);
        let expected: BTreeSet<String> = GUARD_IMPORTS.iter().map(|c| (*c).to_owned()).collect();
        assert_eq!(imports, expected);
    }
}
