//! Deprecated API versions keep their shapes: generation N records what its version serves;
//! after a version bump the previous version goes on answering at its own paths with its own
//! property names (OpenAPI, the api crate's types), newer resources are not served under it,
//! and what it exposes cannot leave the spec until it is retired. (The generated workspace
//! of such a generation builds and passes its own tests in `generated_workspaces.rs`.)

#![allow(clippy::unwrap_used)]

mod common;

use common::{generate_json, ledgerly, ledgerly_bumped};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// ledgerly, then ledgerly at v2 on top of it.
fn bumped(out: &Path) {
    let (code, json) = generate_json(&ledgerly(), out);
    assert_eq!(code, 0, "{json}");
    let (code, json) = generate_json(&ledgerly_bumped(), out);
    assert_eq!(code, 0, "{json}");
}

#[test]
fn the_manifest_records_what_each_version_serves() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (code, _) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 0);
    let manifest = read_json(&out.join(".bulwark/manifest.json"));
    let versions: Vec<&str> = manifest["api"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1"]);

    let (code, json) = generate_json(&ledgerly_bumped(), &out);
    assert_eq!(code, 0, "{json}");
    let manifest = read_json(&out.join(".bulwark/manifest.json"));
    let api = manifest["api"].as_array().unwrap();
    assert_eq!(api[0]["version"], "v2");
    assert_eq!(api[1]["version"], "v1");
    let client = |shape: &Value| -> Value {
        shape["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "client")
            .cloned()
            .unwrap()
    };
    let v1 = client(&api[1]);
    assert_eq!(v1["path"], "customers", "v1 keeps its path");
    let v1_fields: Vec<(&str, &str)> = v1["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap(), f["json"].as_str().unwrap()))
        .collect();
    assert!(
        v1_fields.contains(&("tax_id", "vat_id")),
        "the renamed field keeps its v1 property: {v1_fields:?}"
    );
    assert!(
        !v1_fields.iter().any(|(f, _)| *f == "notes"),
        "{v1_fields:?}"
    );
    assert_eq!(client(&api[0])["path"], "clients");
}

#[test]
fn a_previous_version_keeps_its_paths_and_bodies() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    bumped(&out);
    let openapi = read_json(&out.join("openapi.json"));
    let paths = openapi["paths"].as_object().unwrap();
    for path in [
        "/v1/customers",
        "/v1/customers/{id}",
        "/v2/clients",
        "/v2/clients/{id}",
    ] {
        assert!(paths.contains_key(path), "{path}");
    }
    assert!(!paths.contains_key("/v1/clients"), "v1 never had clients");
    // Its operations are deprecated, answer with its own schemas.
    let read = &paths["/v1/customers/{id}"]["get"];
    assert_eq!(read["deprecated"], true);
    assert_eq!(read["x-sunset"], "2027-06-01");
    let schema = read["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    let name = schema.rsplit('/').next().unwrap();
    assert!(name.starts_with("v1."), "{name}");
    let schemas = &openapi["components"]["schemas"];
    let old = schemas[name]["properties"].as_object().unwrap();
    assert!(
        old.contains_key("vat_id") && !old.contains_key("tax_id"),
        "{old:?}"
    );
    assert!(!old.contains_key("notes"), "v1 has no notes: {old:?}");
    let current = schemas[name.trim_start_matches("v1.")]["properties"]
        .as_object()
        .unwrap();
    assert!(current.contains_key("tax_id") && current.contains_key("notes"));
    // The api crate has v1's types, with v1's property names.
    let types = std::fs::read_to_string(out.join("crates/api/src/v1/client.rs")).unwrap();
    assert!(types.contains("#[serde(rename = \"vat_id\")]"), "{types}");
    assert!(!types.contains("pub notes"), "{types}");
    // The server registers v1's own handlers at v1's paths, behind the current guard.
    let server =
        std::fs::read_to_string(out.join("crates/server/src/resources/client.rs")).unwrap();
    assert!(server.contains("\"/v1/customers/{id}\""), "{server}");
    assert!(server.contains("v1::handle_read"), "{server}");
    // Regenerating the same spec changes nothing: v1's shape is carried as recorded.
    let manifest = std::fs::read(out.join(".bulwark/manifest.json")).unwrap();
    let (code, json) = generate_json(&ledgerly_bumped(), &out);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        std::fs::read(out.join(".bulwark/manifest.json")).unwrap(),
        manifest
    );
    assert_eq!(json["written"].as_array().unwrap().len(), 0, "{json}");
}

#[test]
fn what_a_served_version_exposes_stays_until_it_is_retired() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    bumped(&out);
    let manifest = std::fs::read(out.join(".bulwark/manifest.json")).unwrap();
    let openapi = std::fs::read(out.join("openapi.json")).unwrap();
    let field = "      tax_id: { type: string, max: 32, optional: true }\n";
    let dropped = ledgerly_bumped()
        .replace(field, "")
        .replace("    client.vat_id: tax_id\n", "  drop: [client.tax_id]\n");
    let (code, json) = generate_json(&dropped, &out);
    assert_eq!(code, 4, "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("api version `v1` still serves `client.tax_id` (as `vat_id`)"),
        "{message}"
    );
    assert_eq!(json["error"]["code"], "bulwark::versions::still_served");
    assert_eq!(
        std::fs::read(out.join(".bulwark/manifest.json")).unwrap(),
        manifest,
        "nothing written"
    );
    assert_eq!(std::fs::read(out.join("openapi.json")).unwrap(), openapi);

    // Retired, v1 is no longer served, and the field may go.
    let retired = dropped.replace(
        "  deprecated:\n    v1: { since: 2026-11-01, sunset: 2027-06-01 }\n",
        "",
    );
    let (code, json) = generate_json(&retired, &out);
    assert_eq!(code, 0, "{json}");
    let openapi = read_json(&out.join("openapi.json"));
    assert!(
        !openapi["paths"]
            .as_object()
            .unwrap()
            .keys()
            .any(|p| p.starts_with("/v1/")),
        "v1 retired"
    );
    assert!(!out.join("crates/api/src/v1.rs").exists());
}

#[test]
fn a_branch_keeps_the_shapes_its_tip_recorded() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let git = |args: &[&str]| common::git(&repo, args);
    std::fs::create_dir_all(&repo).unwrap();
    git(&["init", "-q", "--bare"]);
    let generate_on_branch = |name: &str, spec: &str, command: &str| {
        let file = work.path().join(name);
        std::fs::write(&file, spec).unwrap();
        Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .arg(command)
            .arg(&file)
            .arg("--git")
            .arg(&repo)
            .args(["--branch", "generated"])
            .output()
            .unwrap()
    };
    assert!(
        generate_on_branch("v1.yaml", &ledgerly(), "generate")
            .status
            .success()
    );
    let bumped = generate_on_branch("v2.yaml", &ledgerly_bumped(), "generate");
    assert!(bumped.status.success(), "{bumped:?}");
    let openapi: Value = serde_json::from_str(&git(&["show", "generated:openapi.json"])).unwrap();
    let schema = &openapi["paths"]["/v1/customers/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["$ref"];
    assert_eq!(schema, "#/components/schemas/v1.ClientType");
    // `check` renders from the tip's record too: no drift.
    let check = generate_on_branch("v2.yaml", &ledgerly_bumped(), "check");
    assert!(check.status.success(), "{check:?}");
}
