//! `bulwark audit DIR [--spec SPEC]`: proof that every route of a generated project goes
//! through the guard, including in code edited by hand.
//!
//! Every `.rs` file under DIR (except `target/` and `.git/`) is parsed with syn. A finding is:
//! outside the guard module, any use of an axum call that attaches a handler or a layer
//! (`route`, `nest`, `merge`, `fallback`, `layer`, `from_fn`, … as a method, a path or an
//! import, raw identifiers included); a `serve` or service conversion outside the server's
//! main (and the server crate's benchmarks, which serve the guarded router on loopback), or
//! more than one `serve`; in that main, serving anything but `server::router(..)`; a socket
//! listening outside it (tests and benchmarks aside); hyper used directly, or a dependency on
//! a crate that serves HTTP by itself; a manifest bringing in code from outside the project
//! (a `path` leading out of it, a `git` source); a macro whose tokens mention any of these (its
//! expansion cannot be checked); code the compiler reads that this audit cannot
//! see (`#[path]`, `include!`, build scripts, procedural-macro crates, symbolic links); an
//! `Operation` declared outside the generated resource and members modules; a file that does not parse;
//! and a guard module that differs from the one this bulwark generates. With `--spec`, every
//! declared operation must also be exactly one of the spec's. With `--database`, the
//! [`database`] side is audited too.

pub mod database;

use crate::model::App;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use syn::ext::IdentExt;
use syn::visit::Visit;

/// The only module allowed to attach handlers, relative to the project root.
pub const GUARD_MODULE: &str = "crates/server/src/guard.rs";
/// The only file allowed to start serving.
pub const SERVER_MAIN: &str = "crates/server/src/main.rs";
/// Where the generated operations are declared.
const RESOURCE_MODULES: &str = "crates/server/src/resources/";
/// Benchmarks of the server crate: they may serve the guarded router on loopback (they are
/// not part of the service, and attaching a handler is refused there as anywhere).
const SERVER_BENCHES: &str = "crates/server/benches/";
/// Where the built-in operations (memberships, sessions) are declared.
const MEMBERS_MODULE: &str = "crates/server/src/members.rs";

/// Calls that attach a handler, a service or a layer to a router (axum, tower), and axum's
/// way of serving a handler without any router.
const ATTACHING: [&str; 21] = [
    "route",
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

/// Crates that serve HTTP by themselves: a dependency on one is a way around the guarded
/// router (compared with `_` read as `-`).
const HTTP_SERVERS: [&str; 18] = [
    "actix-web",
    "actix-http",
    "actix-server",
    "astra",
    "gotham",
    "hyper",
    "hyper-util",
    "may-minihttp",
    "ntex",
    "poem",
    "rocket",
    "rouille",
    "salvo",
    "thruster",
    "tide",
    "tiny-http",
    "trillium",
    "warp",
];

/// Calls that turn a router into something a server runs, or run it.
const SERVING: [&str; 6] = [
    "serve",
    "into_make_service",
    "into_make_service_with_connect_info",
    "into_service",
    "serve_connection",
    "serve_connection_with_upgrades",
];

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
        let mut visitor = Visitor {
            file: &name,
            in_guard: name == GUARD_MODULE,
            in_main: name == SERVER_MAIN,
            in_bench: name.starts_with(SERVER_BENCHES),
            in_tests: name
                .split('/')
                .any(|part| part == "tests" || part == "benches"),
            router_names: std::collections::BTreeSet::new(),
            findings: &mut findings,
            serves: &mut serves,
            operations: &mut operations,
        };
        visitor.visit_file(&file);
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
        Ok(text) if Some(&text) == files.files.get(GUARD_MODULE) => {}
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
            if name == ".git" || (dir == root && name == "target") {
                continue;
            }
            collect(root, &path, out, findings)?;
        } else if name.ends_with(".rs") {
            out.push(relative);
        } else if name == "Cargo.toml"
            || (dir.file_name().is_some_and(|d| d == ".cargo")
                && (name == "config.toml" || name == "config"))
        {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            check_manifest(root, dir, &shown, &text, findings);
            if text
                .lines()
                .any(|l| l.replace(' ', "").starts_with("proc-macro=true"))
            {
                findings.push(at(
                    &shown,
                    1,
                    1,
                    "a procedural-macro crate can generate code this audit cannot see",
                ));
            }
        }
    }
    Ok(())
}

/// What a Cargo manifest (or Cargo configuration) in `dir` brings in that the audit cannot
/// see: code outside the project (a `path` that leads out of it, a `git` source, a workspace
/// member elsewhere) or a crate that serves HTTP by itself. Read line by line, which every
/// form of these keys puts on one line.
fn check_manifest(root: &Path, dir: &Path, shown: &str, text: &str, findings: &mut Vec<Finding>) {
    let mut table = String::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let code = line.split('#').next().unwrap_or_default();
        let trimmed = code.trim();
        if trimmed.starts_with('[') {
            table = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
        }
        let column = |needle: &str| code.find(needle).map_or(1, |i| i + 1);
        for (key, value) in quoted_values(code) {
            match key.as_str() {
                "path" | "paths" | "members" | "directory" | "local-registry"
                    if !inside(root, dir, &value) =>
                {
                    findings.push(at(
                    shown,
                    line_no,
                    column(&value),
                    &format!("brings in code outside the project (`{value}`), which this audit cannot see"),
                ));
                }
                "git" => findings.push(at(
                    shown,
                    line_no,
                    column(&key),
                    "a `git` source brings in code outside the project, which this audit cannot see",
                )),
                // A dependency renamed, or a crate's own name (a vendored copy of one is
                // still that crate).
                "package" => server_crate(&value, shown, line_no, column(&value), findings),
                "name" if table == "package" => {
                    server_crate(&value, shown, line_no, column(&value), findings);
                }
                _ => {}
            }
        }
        // A dependency's name: the key of a line in a dependency table, or the last part of
        // a `[dependencies.NAME]` header.
        let dependencies =
            |t: &str| t.ends_with("dependencies") && !t.ends_with("dev-dependencies");
        if let Some((head, name)) = table.rsplit_once('.')
            && dependencies(head)
            && trimmed.starts_with('[')
        {
            server_crate(
                name.trim_matches('"'),
                shown,
                line_no,
                column(name),
                findings,
            );
        } else if dependencies(&table) && !trimmed.starts_with('[') {
            let name = trimmed
                .split(['=', '.'])
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"');
            if !name.is_empty() {
                server_crate(name, shown, line_no, column(name), findings);
            }
        }
    }
}

/// The `key = "value"` pairs of a line (strings of an array included, under the array's key).
fn quoted_values(code: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut key = String::new();
    let mut rest = code;
    while let Some(start) = rest.find(['=', '"']) {
        if rest.as_bytes()[start] == b'=' {
            key = rest[..start]
                .rsplit(|c: char| c == '{' || c == ',' || c == '.' || c.is_whitespace())
                .find(|word| !word.is_empty())
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned();
            rest = &rest[start + 1..];
            continue;
        }
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        pairs.push((key.clone(), after[..end].to_owned()));
        rest = &after[end + 1..];
    }
    pairs
}

/// Whether `relative` (from `dir`) stays inside `root`. Only `root` and `dir` are resolved
/// (they exist); `relative` is followed by its parts, as Cargo reads it.
fn inside(root: &Path, dir: &Path, relative: &str) -> bool {
    let (Ok(root), Ok(dir)) = (root.canonicalize(), dir.canonicalize()) else {
        return false;
    };
    let mut parts: Vec<std::path::Component<'_>> = Vec::new();
    let joined = dir.join(relative);
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                if parts.pop().is_none() {
                    return false;
                }
            }
            std::path::Component::CurDir => {}
            other => parts.push(other),
        }
    }
    parts.iter().collect::<PathBuf>().starts_with(root)
}

fn server_crate(name: &str, shown: &str, line: usize, column: usize, findings: &mut Vec<Finding>) {
    if HTTP_SERVERS.contains(&name.replace('_', "-").as_str()) {
        findings.push(at(
            shown,
            line,
            column,
            &format!("depends on `{name}`, which serves HTTP without the guarded router"),
        ));
    }
}

struct Visitor<'a> {
    file: &'a str,
    in_guard: bool,
    in_main: bool,
    /// A benchmark's own loopback server may serve (see [`SERVER_BENCHES`]).
    in_bench: bool,
    /// Tests and benchmarks, which may listen for their own loopback peers.
    in_tests: bool,
    /// In the server's main: the names bound to the guarded router (or its service).
    router_names: std::collections::BTreeSet<String>,
    findings: &'a mut Vec<Finding>,
    serves: &'a mut Vec<Finding>,
    operations: &'a mut Vec<Declared>,
}

impl Visitor<'_> {
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
        if ATTACHING.contains(&word.as_str()) && !self.in_guard {
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
            }
        }
        if LISTENING.contains(&word.as_str()) && !self.in_main && !self.in_tests {
            self.finding(
                ident.span(),
                format!("{how} `{word}` accepts connections outside the service's main, where no guarded router is in the way"),
            );
        }
        if word == "hyper" || word == "hyper_util" {
            self.finding(
                ident.span(),
                format!("{how} `{word}` serves HTTP without the guarded router"),
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
                .is_some_and(|name| self.router_names.contains(&name.to_string())),
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
                    let flagged = (ATTACHING.contains(&word.as_str()) && !self.in_guard)
                        || (SERVING.contains(&word.as_str()) && !self.in_main && !self.in_bench)
                        || word == "Operation";
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
            && last.ident == "serve"
            && !call
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
        syn::visit::visit_expr_call(self, call);
    }

    /// In the server's main, remembers which names hold the guarded router.
    fn visit_local(&mut self, local: &'ast syn::Local) {
        if self.in_main
            && let syn::Pat::Ident(binding) = &local.pat
        {
            let name = binding.ident.to_string();
            if local
                .init
                .as_ref()
                .is_some_and(|init| self.is_router(&init.expr))
            {
                self.router_names.insert(name);
            } else {
                self.router_names.remove(&name);
            }
        }
        syn::visit::visit_local(self, local);
    }

    fn visit_expr_path(&mut self, path: &'ast syn::ExprPath) {
        for segment in &path.path.segments {
            self.check_name(&segment.ident, "path");
        }
        syn::visit::visit_expr_path(self, path);
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => self.check_name(&p.ident, "import of"),
            syn::UseTree::Name(n) => self.check_name(&n.ident, "import of"),
            syn::UseTree::Rename(r) => self.check_name(&r.ident, "import of"),
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
            self.operations.push(Declared { at, fields });
        }
        syn::visit::visit_expr_struct(self, expr);
    }

    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if module.attrs.iter().any(|a| a.path().is_ident("path")) {
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
