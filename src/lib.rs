//! bulwark turns a declarative YAML app spec into a secure-by-default Rust service.
//!
//! The pipeline, one module per stage:
//! `load` (text → `spec::Spec`) → `model::lower` (→ validated `model::App`) → `versions`
//! (the shapes deprecated API versions keep, from the previous generation) → `render`
//! (→ `render::FileSet`, pure) → `format` (rustfmt) → `evolve` (migrations) → `emit`
//! (→ a directory) or `git` (→ a branch).

pub mod audit;
pub mod cache;
pub mod cli;
pub mod diagnostic;
pub mod diff;
pub mod emit;
pub mod evolve;
pub mod format;
pub mod git;
pub mod load;
pub mod model;
pub mod policy;
pub mod render;
pub mod spec;
pub mod versions;

use diagnostic::Report;
use std::sync::Arc;

/// Loads and validates a spec: every problem found, structural and semantic, in one report.
pub fn compile(path: &str, source: &str) -> Result<model::App, Report> {
    compile_with(path, source, None)
}

/// [`compile`], skipping the policy validation of resources `validated` knows to be valid
/// (the CLI's per-user record: a regeneration validates only what changed).
pub fn compile_with(
    path: &str,
    source: &str,
    validated: Option<&dyn policy::Validated>,
) -> Result<model::App, Report> {
    let loaded = load::load(source);
    let mut diagnostics = loaded.problems;
    // A value of the wrong type or a missing key was read as an empty one so the rest could
    // be checked: what lowering then finds at its place (or at none, for a missing key)
    // follows from it, and is not reported again.
    let misread: Vec<(u32, u32)> = diagnostics
        .iter()
        .filter_map(|d| d.location)
        .map(|l| (l.line, l.column))
        .collect();
    // So does what it finds wrong with an entry as a whole that held such a value, except
    // what the entry's name alone is wrong for.
    let misread_entries: Vec<(u32, u32)> = loaded
        .misread_entries
        .iter()
        .map(|l| (l.line, l.column))
        .collect();
    const NAME_CHECKS: [&str; 6] = [
        "card-data",
        "colliding-names",
        "name-collision",
        "invalid-name",
        "reserved-name",
        "reserved-path",
    ];
    let stood_in = !diagnostics.is_empty();
    let app = loaded.value.and_then(|spec| {
        match model::lower(&spec, source, &loaded.set_aside, validated) {
            Ok(app) => Some(app),
            Err(semantic) => {
                // (Lowering places every problem it finds: one at no place is a stand-in's.)
                diagnostics.extend(semantic.into_iter().filter(|d| match d.location {
                    Some(l) => {
                        let at = (l.line, l.column);
                        !misread.contains(&at)
                            && (NAME_CHECKS.contains(&d.code) || !misread_entries.contains(&at))
                    }
                    None => !stood_in,
                }));
                None
            }
        }
    });
    match app {
        Some(app) if diagnostics.is_empty() => Ok(app),
        _ => {
            // In the order of the spec; one about the whole spec (no place) last.
            diagnostics.sort_by_key(|d| d.location.map(|l| (l.line, l.column)).ok_or(()));
            Err(Report::new(path, Arc::from(source), diagnostics))
        }
    }
}

/// The JSON Schema of the spec format.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(spec::Spec);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
