//! Snapshots of every generated file of every example spec, under `snapshots/`. The suite
//! fails on a changed, pending (`.snap.new`) or unreferenced snapshot, without cargo-insta:
//! review a change with `INSTA_UPDATE=always cargo test --test snapshots` and `git diff`.
//! The manifest is snapshotted too (the rustfmt version it records left out): the tables and
//! API shapes in it drive the next generation's migration and deprecated versions.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

const EXAMPLES: [&str; 3] = ["ledgerly", "tracker", "hostile"];

/// The files of `spec`'s first generation, with its manifest under its own path.
fn generate(spec: &str) -> bulwark::render::FileSet {
    let path = format!("specs/{spec}.yaml");
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path)).unwrap();
    let app = bulwark::compile(&path, &source).unwrap_or_else(|r| panic!("{}", r.render()));
    let options = bulwark::render::Options {
        generator_version: "snapshot".into(),
        ..Default::default()
    };
    let mut files = bulwark::render::render(&app, &options).unwrap();
    bulwark::format::format_rust(&mut files, None).unwrap();
    let manifest = bulwark::emit::Manifest::new(
        &files,
        bulwark::emit::sha256(source.as_bytes()),
        options.generator_version.clone(),
        "rustfmt (left out)".into(),
        bulwark::render::sql::schema(&app),
        bulwark::versions::recorded(&app),
    );
    files
        .files
        .insert(bulwark::emit::MANIFEST.into(), manifest.to_json());
    files
}

fn snapshot_name(spec: &str, path: &str) -> String {
    format!("{spec}__{}", path.replace(['/', '.'], "_"))
}

#[test]
fn every_generated_file_matches_its_snapshot() {
    let mut expected = BTreeSet::new();
    for spec in EXAMPLES {
        for (path, contents) in generate(spec).files {
            let name = snapshot_name(spec, &path);
            expected.insert(format!("{name}.snap"));
            insta::with_settings!({
                snapshot_path => "../snapshots",
                prepend_module_to_snapshot => false,
                omit_expression => true,
                description => format!("{spec}: {path}"),
            }, {
                insta::assert_snapshot!(name, contents);
            });
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots");
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let pending: Vec<_> = present
        .iter()
        .filter(|f| f.ends_with(".snap.new") || f.ends_with(".pending-snap"))
        .collect();
    assert!(pending.is_empty(), "pending snapshots: {pending:?}");
    let unreferenced: Vec<_> = present.difference(&expected).collect();
    assert!(
        unreferenced.is_empty(),
        "unreferenced snapshots (delete them): {unreferenced:?}"
    );
}

#[test]
fn generation_is_deterministic() {
    for spec in EXAMPLES {
        assert_eq!(generate(spec), generate(spec), "{spec}");
    }
}
