//! `bulwark audit DIR`: proof that every route of a generated project goes through the
//! guard, including in code edited by hand.
//!
//! Every `.rs` file under DIR (except `target/` and hidden directories) is parsed with syn.
//! Outside the guard module, any axum call that attaches a handler (`route`, `nest`,
//! `merge`, `fallback`, …) is a finding, as is a macro whose tokens mention one (its
//! expansion cannot be checked), a second `serve`, and a file that does not parse. The guard
//! module itself must be exactly as generated (its hash is in the manifest).

use crate::emit::{MANIFEST, Manifest, sha256};
use serde::Serialize;
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// The only module allowed to attach handlers, relative to the project root.
pub const GUARD_MODULE: &str = "crates/server/src/guard.rs";
/// The only file allowed to start serving.
pub const SERVER_MAIN: &str = "crates/server/src/main.rs";

/// Methods of axum's `Router` and `MethodRouter` that attach a handler or a service.
const ATTACHING: [&str; 9] = [
    "route",
    "route_service",
    "route_layer",
    "nest",
    "nest_service",
    "merge",
    "fallback",
    "fallback_service",
    "method_not_allowed_fallback",
];

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
}

/// Audits the project at `dir`. Findings are sorted by file and position.
pub fn audit_dir(dir: &Path) -> Result<Vec<Finding>, AuditError> {
    if !dir.is_dir() {
        return Err(AuditError::NotADirectory {
            path: dir.display().to_string(),
        });
    }
    let mut files = Vec::new();
    collect_rust_files(dir, dir, &mut files)?;
    let mut findings = Vec::new();
    let mut serves = Vec::new();
    for relative in &files {
        let path = dir.join(relative);
        let source = std::fs::read_to_string(&path).map_err(|e| AuditError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let name = relative.to_string_lossy().replace('\\', "/");
        let file = match syn::parse_file(&source) {
            Ok(file) => file,
            Err(e) => {
                let start = e.span().start();
                findings.push(Finding {
                    file: name,
                    line: start.line,
                    column: start.column + 1,
                    message: format!("cannot be parsed, so it cannot be checked: {e}"),
                });
                continue;
            }
        };
        let mut visitor = Visitor {
            file: &name,
            in_guard: name == GUARD_MODULE,
            findings: &mut findings,
            serves: &mut serves,
        };
        visitor.visit_file(&file);
    }
    // Exactly one `serve`, in the server's main.
    for serve in &serves {
        if serve.file != SERVER_MAIN {
            findings.push(Finding {
                message: "starts a server outside the service's main".into(),
                ..serve.clone()
            });
        }
    }
    let in_main: Vec<_> = serves.iter().filter(|s| s.file == SERVER_MAIN).collect();
    for extra in in_main.iter().skip(1) {
        findings.push(Finding {
            message: "starts a second server".into(),
            ..(*extra).clone()
        });
    }
    check_guard_module(dir, &mut findings)?;
    findings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Ok(findings)
}

/// The guard module must be the generated one: its hash is in the manifest.
fn check_guard_module(dir: &Path, findings: &mut Vec<Finding>) -> Result<(), AuditError> {
    let at = |message: &str| Finding {
        file: GUARD_MODULE.into(),
        line: 1,
        column: 1,
        message: message.into(),
    };
    let manifest_path = dir.join(MANIFEST);
    let manifest: Option<Manifest> = std::fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let Some(manifest) = manifest else {
        findings.push(Finding {
            file: MANIFEST.into(),
            line: 1,
            column: 1,
            message: "no readable manifest: the guard module cannot be checked against what was generated".into(),
        });
        return Ok(());
    };
    match (
        std::fs::read(dir.join(GUARD_MODULE)),
        manifest.files.get(GUARD_MODULE),
    ) {
        (Ok(bytes), Some(recorded)) if &sha256(&bytes) == recorded => {}
        (Ok(_), Some(_)) => {
            findings.push(at("the guard module was changed since it was generated"))
        }
        (Ok(_), None) => findings.push(at("the manifest does not record the guard module")),
        (Err(_), _) => findings.push(at("the guard module is missing")),
    }
    Ok(())
}

fn collect_rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AuditError> {
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
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if name.starts_with('.') || (dir == root && name == "target") {
                continue;
            }
            collect_rust_files(root, &path, out)?;
        } else if name.ends_with(".rs") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

struct Visitor<'a> {
    file: &'a str,
    in_guard: bool,
    findings: &'a mut Vec<Finding>,
    serves: &'a mut Vec<Finding>,
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

    /// Tokens of a macro: checked for attaching calls and `serve`, since what the macro
    /// expands to cannot be seen here.
    fn check_tokens(&mut self, tokens: &proc_macro2::TokenStream, name: &str) {
        for tree in tokens.clone() {
            match tree {
                proc_macro2::TokenTree::Ident(ident) => {
                    let word = ident.to_string();
                    let attaching = ATTACHING.contains(&word.as_str()) && !self.in_guard;
                    if attaching || word == "serve" {
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
        let method = call.method.to_string();
        if !self.in_guard && ATTACHING.contains(&method.as_str()) {
            self.finding(
                call.method.span(),
                format!("`.{method}(…)` attaches a handler outside the guarded router; register it with `GuardedRouter::operation` and an operation of the spec"),
            );
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(path) = &*call.func
            && path
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "serve")
        {
            let start = path.path.segments.last().map_or_else(
                || call.paren_token.span.open().start(),
                |s| s.ident.span().start(),
            );
            self.serves.push(Finding {
                file: self.file.to_owned(),
                line: start.line,
                column: start.column + 1,
                message: String::new(),
            });
        }
        syn::visit::visit_expr_call(self, call);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let name = mac
            .path
            .segments
            .last()
            .map_or_else(String::new, |s| s.ident.to_string());
        self.check_tokens(&mac.tokens, &name);
        syn::visit::visit_macro(self, mac);
    }
}
