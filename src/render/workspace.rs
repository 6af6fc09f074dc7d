//! Workspace files: Cargo manifests, README, THREAT_MODEL.md, .gitignore.

use super::escape::{markdown, markdown_code, toml_string};
use super::{FileSet, Options, RenderError, templates};
use crate::model::App;
use crate::model::names::crate_name;
use serde::Serialize;

/// The crate names of a generated workspace.
pub struct Crates {
    pub api: String,
    pub server: String,
    pub client: String,
}

impl Crates {
    pub fn of(app: &App) -> Self {
        Crates {
            api: crate_name(&app.name, "api"),
            server: crate_name(&app.name, "server"),
            client: crate_name(&app.name, "client"),
        }
    }
}

#[derive(Serialize)]
struct CrateContext<'a> {
    version: &'a str,
    name: &'a str,
    api_crate: &'a str,
    description: String,
}

#[derive(Serialize)]
struct ReadmeContext<'a> {
    version: &'a str,
    title: String,
    description: String,
    api_crate: &'a str,
    server_crate: &'a str,
    client_crate: &'a str,
    db: &'a str,
    builtins: bool,
    operations: Vec<OperationRow>,
}

#[derive(Serialize)]
struct OperationRow {
    method: &'static str,
    path: String,
    id: String,
    scope: String,
    roles: String,
}

#[derive(Serialize)]
struct ThreatContext<'a> {
    version: &'a str,
    title: String,
    resources: Vec<ThreatResource>,
}

#[derive(Serialize)]
struct ThreatResource {
    name: String,
    threats: Vec<ThreatRow>,
    /// The fields the spec marks as personal data (`pii`), as code.
    personal: Vec<String>,
}

#[derive(Serialize)]
struct ThreatRow {
    stride: String,
    risk: String,
    mitigation: String,
}

pub fn render_workspace(
    app: &App,
    options: &Options,
    crates: &Crates,
    files: &mut FileSet,
) -> Result<(), RenderError> {
    let version = options.generator_version.as_str();
    let about = |what: &str| {
        toml_string(&format!(
            "{what} of {}",
            crate::render::escape::one_line(&app.name)
        ))
    };
    let workspace = CrateContext {
        version,
        name: "",
        api_crate: &crates.api,
        description: String::new(),
    };
    files.insert(
        "Cargo.toml",
        templates::render("workspace_Cargo.toml", &workspace)?,
    );
    for (dir, template, name, what) in [
        (
            super::API_DIR,
            "crate_api_Cargo.toml",
            &crates.api,
            "API types",
        ),
        (
            super::SERVER_DIR,
            "crate_server_Cargo.toml",
            &crates.server,
            "The service",
        ),
        (
            super::CLIENT_DIR,
            "crate_client_Cargo.toml",
            &crates.client,
            "Typed client",
        ),
    ] {
        let context = CrateContext {
            version,
            name,
            api_crate: &crates.api,
            description: about(what),
        };
        files.insert(
            &format!("{dir}/Cargo.toml"),
            templates::render(template, &context)?,
        );
    }
    files.insert(".gitignore", templates::render("gitignore", &workspace)?);
    files.insert(
        ".github/workflows/ci.yml",
        templates::render("ci.yml", &workspace)?,
    );
    files.insert("Cargo.lock", cargo_lock(crates));

    let builtins = app.builtin_operations();
    let builtin_rows = builtins.iter().map(|b| OperationRow {
        method: b.method,
        path: b.path.replace('`', ""),
        id: markdown(b.id),
        scope: b
            .scope
            .iter()
            .chain(&b.machine_scope)
            .map(|s| markdown_code(s))
            .collect::<Vec<_>>()
            .join(", "),
        roles: b
            .roles
            .iter()
            .map(|r| markdown(r))
            .chain(
                b.machine_scope
                    .as_ref()
                    .map(|_| "machine callers".to_owned()),
            )
            .collect::<Vec<_>>()
            .join(", "),
    });
    let operations = app
        .resources
        .iter()
        .flat_map(|r| r.actions.iter().map(move |a| (r, a)))
        .map(|(r, a)| OperationRow {
            method: a.method.as_str(),
            path: a.path.replace('`', ""),
            id: markdown(&format!("{}.{}", r.name, a.name)),
            scope: match (&a.scope, &a.public) {
                (_, Some(_)) => "public".into(),
                (Some(s), None) => markdown_code(s),
                (None, None) => "none".into(),
            },
            roles: a
                .roles
                .iter()
                .map(|r| markdown(r))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .chain(builtin_rows)
        .collect();
    let readme = ReadmeContext {
        builtins: !builtins.is_empty(),
        version,
        title: markdown(&app.name),
        description: app.description.as_deref().map(markdown).unwrap_or_default(),
        api_crate: &crates.api,
        server_crate: &crates.server,
        client_crate: &crates.client,
        db: &app.ident,
        operations,
    };
    files.insert("README.md", templates::render("README.md", &readme)?);
    let threats = ThreatContext {
        version,
        title: markdown(&app.name),
        resources: app
            .resources
            .iter()
            .map(|r| ThreatResource {
                name: markdown(&r.name),
                personal: r
                    .fields
                    .iter()
                    .filter(|f| f.pii)
                    .map(|f| markdown_code(&f.name))
                    .collect(),
                threats: r
                    .threats
                    .iter()
                    .map(|t| ThreatRow {
                        stride: t.stride.clone(),
                        risk: markdown(&t.risk),
                        mitigation: markdown(&t.mitigation),
                    })
                    .collect(),
            })
            .collect(),
    };
    files.insert(
        "THREAT_MODEL.md",
        templates::render("THREAT_MODEL.md", &threats)?,
    );
    Ok(())
}

/// The third-party part of the lockfile every generated workspace ships: the same versions
/// for every project. Refreshed by `bench/refresh-lock.sh` when the dependencies change.
const LOCK_DEPS: &str = include_str!("../../templates/Cargo.lock.deps");

/// `Cargo.lock`: the pinned third-party packages plus the workspace's own crates, in
/// Cargo's order (by name), so `cargo build --locked` accepts it unchanged.
fn cargo_lock(crates: &Crates) -> String {
    let mut blocks: Vec<String> = LOCK_DEPS
        .split("\n\n")
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .collect();
    let member = |name: &str, deps: &[&str]| {
        let mut deps: Vec<&str> = deps.to_vec();
        deps.sort_unstable();
        let list: String = deps.iter().map(|d| format!(" \"{d}\",\n")).collect();
        format!("[[package]]\nname = \"{name}\"\nversion = \"0.1.0\"\ndependencies = [\n{list}]")
    };
    let members = [
        member(&crates.api, &["chrono", "rust_decimal", "serde", "uuid"]),
        member(&crates.client, &[&crates.api, "reqwest", "serde", "uuid"]),
        member(
            &crates.server,
            &[
                &crates.api,
                "aws-lc-rs",
                "axum",
                // Two versions of base64 are in the graph, so the lock names the one meant.
                "base64 0.22.1",
                "cedar-policy",
                "chrono",
                "governor",
                "ipnet",
                "jsonwebtoken",
                "rcgen",
                "reqwest",
                "rust_decimal",
                "serde",
                "serde_json",
                "sqlx",
                "tokio",
                "tokio-rustls",
                "tower",
                "tracing",
                "tracing-subscriber",
                "uuid",
            ],
        ),
    ];
    for block in members {
        let name = block_name(&block).to_owned();
        let at = blocks
            .iter()
            .position(|b| block_name(b) > name.as_str())
            .unwrap_or(blocks.len());
        blocks.insert(at, block);
    }
    format!(
        "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n\n{}\n",
        blocks.join("\n\n")
    )
}

fn block_name(block: &str) -> &str {
    block
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_workflow_pins_every_action_to_a_commit() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/ledgerly.yaml");
        let source = std::fs::read_to_string(path).expect("the example spec");
        let app = crate::compile(path, &source).expect("the example spec is valid");
        let mut files = FileSet::default();
        render_workspace(&app, &Options::default(), &Crates::of(&app), &mut files)
            .expect("the workspace renders");
        let workflow = &files.files[".github/workflows/ci.yml"];
        let actions: Vec<&str> = workflow
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- uses: "))
            .collect();
        assert!(!actions.is_empty());
        for action in actions {
            let commit = action
                .split_once('@')
                .and_then(|(_, version)| version.split_whitespace().next())
                .unwrap_or_default();
            let is_commit = commit.len() == 40
                && commit
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            assert!(is_commit, "{action} is not pinned to a commit");
        }
    }
}
