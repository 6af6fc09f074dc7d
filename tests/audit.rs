//! `bulwark audit` on a generated project and on hand-broken copies of it: every way of
//! attaching a handler outside the guard is found, with file and line.

#![allow(clippy::unwrap_used)]

mod common;

use common::project;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn bulwark(args: &[&str], dir: &Path) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["--format", "json"])
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap(), json)
}

/// Appends `code` to `file` and returns the line it starts on.
fn append(dir: &Path, file: &str, code: &str) -> usize {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    let line = text.lines().count() + 1;
    text.push_str(code);
    std::fs::write(&path, text).unwrap();
    line
}

fn findings(json: &Value) -> Vec<(String, u64, String)> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Breaks a fresh project with `code` in `file`; the audit must fail with one finding there.
fn assert_found(file: &str, code: &str, line_offset: usize, needle: &str) {
    let dir = project();
    let line = append(dir.path(), file, code) + line_offset;
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 3, "{json}");
    assert_eq!(json["ok"], false);
    let found = findings(&json);
    assert!(
        found
            .iter()
            .any(|(f, l, m)| f == file && *l as usize == line && m.contains(needle)),
        "expected `{needle}` at {file}:{line}, got {found:?}"
    );
}

/// The same edit that is ordinary: the audit of the project with `code` in `file` passes.
fn assert_passes(file: &str, code: &str) {
    let dir = project();
    append(dir.path(), file, code);
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 0, "{json}");
}

#[test]
fn a_generated_project_passes() {
    let dir = project();
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["ok"], true);
    assert!(findings(&json).is_empty());
}

#[test]
fn a_route_added_by_hand_is_found() {
    let code = "\npub fn backdoor(router: axum::Router) -> axum::Router {\n    router.route(\"/backdoor\", axum::routing::get(|| async { \"open\" }))\n}\n";
    assert_found("crates/server/src/routes.rs", code, 2, "method `route`");
}

#[test]
fn every_attaching_method_is_found() {
    for method in [
        "route_service",
        "nest",
        "nest_service",
        "merge",
        "fallback",
        "fallback_service",
        "route_layer",
    ] {
        let code = format!(
            "\nfn sneak(router: axum::Router) -> axum::Router {{\n    router.{method}(todo())\n}}\n"
        );
        assert_found(
            "crates/server/src/extra.rs",
            &code,
            2,
            &format!("method `{method}`"),
        );
    }
}

#[test]
fn a_handler_inside_a_macro_is_found() {
    let code = "\nmacro_rules! sneaky {\n    ($r:expr) => {\n        $r.route(\"/x\", axum::routing::get(|| async {}))\n    };\n}\n";
    assert_found(
        "crates/server/src/routes.rs",
        code,
        3,
        "macro `macro_rules!`",
    );
}

#[test]
fn a_second_server_is_found() {
    let code = "\nasync fn side(listener: tokio::net::TcpListener, app: axum::Router) {\n    let _ = axum::serve(listener, app).await;\n}\n";
    assert_found(
        "crates/server/src/bin/side.rs",
        code,
        2,
        "serves outside the guard module",
    );
}

/// Test and benchmark targets are compiled apart from the service: a mock server there
/// (an identity provider's keys, say) may attach and serve; the same code in the library
/// may not.
#[test]
fn tests_and_benchmarks_may_serve_mocks_but_the_service_may_not() {
    let code = "\nfn extra(app: axum::Router) -> axum::Router {\n    app.route(\"/open\", axum::routing::get(|| async {}))\n}\n";
    let dir = project();
    append(dir.path(), "crates/server/benches/isolation.rs", code);
    append(dir.path(), "crates/server/tests/mock.rs", code);
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 0, "{json}");
    assert_found("crates/server/src/lib.rs", code, 2, "attaches a handler");
}

#[test]
fn an_edited_guard_module_is_found() {
    let dir = project();
    append(
        dir.path(),
        "crates/server/src/guard.rs",
        "\n// allow everything\n",
    );
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 3, "{json}");
    let found = findings(&json);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "crates/server/src/guard.rs");
    assert!(
        found[0]
            .2
            .contains("differs from the one this bulwark generates"),
        "{found:?}"
    );
}

#[test]
fn a_guard_module_checked_out_with_crlf_line_endings_is_no_edit() {
    let dir = project();
    let path = dir.path().join("crates/server/src/guard.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace('\n', "\r\n")).unwrap();
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 0, "{json}");
}

#[test]
fn a_file_that_does_not_parse_is_found() {
    assert_found("crates/server/src/broken.rs", "fn (", 0, "cannot be parsed");
}

#[test]
fn code_outside_target_and_hidden_directories_is_all_checked() {
    let dir = project();
    // Build output and VCS internals are not the project's code.
    append(
        dir.path(),
        "target/debug/build/x.rs",
        "fn f(r: axum::Router) { r.route(\"/\", todo()); }\n",
    );
    append(
        dir.path(),
        ".git/hooks/x.rs",
        "fn f(r: axum::Router) { r.route(\"/\", todo()); }\n",
    );
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 0, "{json}");
    // A hidden folder of the source is code like any other.
    append(
        dir.path(),
        "crates/server/src/.extra/x.rs",
        "fn f(r: axum::Router) { r.route(\"/\", todo()); }\n",
    );
    let (status, _) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 3);
}

#[test]
fn evasions_are_found() {
    let cases: [(&str, &str, &str); 11] = [
        (
            "crates/server/src/extra.rs",
            "fn a(r: axum::Router) -> axum::Router { axum::Router::route(r, \"/e1\", todo()) }\n",
            "path `route`",
        ),
        (
            "crates/server/src/extra.rs",
            "fn a(r: axum::Router) -> axum::Router { r.r#route(\"/e2\", todo()) }\n",
            "method `route`",
        ),
        (
            "crates/server/src/extra.rs",
            "fn a() { let attach = axum::Router::<()>::merge; let _ = attach; }\n",
            "path `merge`",
        ),
        (
            "crates/server/src/extra.rs",
            "fn a(r: axum::Router) -> axum::Router { r.layer(axum::middleware::from_fn(todo())) }\n",
            "method `layer`",
        ),
        (
            "crates/server/src/main.rs",
            "\nuse axum::serve as start;\n",
            "serves outside the guard module",
        ),
        (
            "crates/server/src/extra.rs",
            "use hyper::server::conn::http1;\n",
            "`hyper`",
        ),
        (
            "crates/server/src/extra.rs",
            "pub const BACKDOOR: Operation = Operation { id: \"customer.read\", method: \"GET\", path: \"/e5\", scope: None, roles: &[], public: true, mfa: false, rate_limit: None };\n",
            "outside the generated resource and members modules",
        ),
        (
            "crates/server/src/extra.rs",
            "#[path = \"elsewhere.rs\"]\nmod hidden;\n",
            "`#[path]`",
        ),
        (
            "crates/server/src/extra.rs",
            "include!(\"e8.inc\");\n",
            "`include!`",
        ),
        ("crates/server/build.rs", "fn main() {}\n", "build script"),
        (
            "crates/server/src/.hidden/e7.rs",
            "fn a(r: axum::Router) -> axum::Router { r.nest(\"/x\", todo()) }\n",
            "method `nest`",
        ),
    ];
    for (file, code, needle) in cases {
        let dir = project();
        append(dir.path(), file, code);
        let (status, json) = bulwark(&["audit"], dir.path());
        assert_eq!(status, 3, "{file}: {code}\n{json}");
        let found = findings(&json);
        assert!(
            found
                .iter()
                .any(|(f, _, m)| f == file && m.contains(needle)),
            "`{needle}` not found for {code}: {found:?}"
        );
    }
}

#[test]
fn links_and_procedural_macros_are_found() {
    let dir = project();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("crates/server/src/linked"))
        .unwrap();
    append(
        dir.path(),
        "crates/macros/Cargo.toml",
        "[package]\nname = \"m\"\n[lib]\nproc-macro = true\n",
    );
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 3, "{json}");
    let found = findings(&json);
    assert!(
        found
            .iter()
            .any(|(f, _, m)| f == "crates/server/src/linked" && m.contains("symbolic link")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(f, _, m)| f == "crates/macros/Cargo.toml" && m.contains("procedural-macro")),
        "{found:?}"
    );
}

#[test]
fn with_the_spec_every_operation_must_match_it() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml");
    let spec = spec.to_str().unwrap();
    let dir = project();
    let (status, json) = bulwark(&["audit", "--spec", spec], dir.path());
    assert_eq!(status, 0, "{json}");
    // A generated operation made public by hand.
    let file = dir.path().join("crates/server/src/resources/customer.rs");
    let text = std::fs::read_to_string(&file).unwrap();
    let flipped = text.replacen("public: false", "public: true", 1);
    assert_ne!(text, flipped);
    std::fs::write(&file, flipped).unwrap();
    let (status, json) = bulwark(&["audit", "--spec", spec], dir.path());
    assert_eq!(status, 3, "{json}");
    let found = findings(&json);
    assert!(
        found
            .iter()
            .any(|(f, _, m)| f == "crates/server/src/resources/customer.rs"
                && m.contains("`public`")),
        "{found:?}"
    );
    // A generated operation opened to machine callers by hand, and a built-in one changed.
    let file = dir.path().join("crates/server/src/resources/invoice.rs");
    let text = std::fs::read_to_string(&file).unwrap();
    let opened = text.replacen(
        "machine_scope: None",
        "machine_scope: Some(\"idp.events\")",
        1,
    );
    assert_ne!(text, opened);
    std::fs::write(&file, opened).unwrap();
    let file = dir.path().join("crates/server/src/members.rs");
    let text = std::fs::read_to_string(&file).unwrap();
    let rescoped = text.replacen("Some(\"members.manage\")", "Some(\"invoices.read\")", 1);
    assert_ne!(text, rescoped);
    std::fs::write(&file, rescoped).unwrap();
    assert_fields_found(
        dir.path(),
        spec,
        &[
            ("crates/server/src/resources/invoice.rs", "`machine_scope`"),
            ("crates/server/src/members.rs", "`scope`"),
        ],
    );
    // Roles widened, and a second factor dropped, by hand.
    let dir = project();
    for (file, from, to) in [
        (
            "crates/server/src/resources/customer.rs",
            "roles: &[\"owner\"],",
            "roles: &[\"owner\", \"member\"],",
        ),
        ("crates/server/src/members.rs", "mfa: true", "mfa: false"),
    ] {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen(from, to, 1);
        assert_ne!(text, edited, "{file}");
        std::fs::write(&path, edited).unwrap();
    }
    assert_fields_found(
        dir.path(),
        spec,
        &[
            ("crates/server/src/resources/customer.rs", "`roles`"),
            ("crates/server/src/members.rs", "`mfa`"),
        ],
    );
}

/// `audit --spec` of `dir` fails, naming each `(file, field)`.
#[track_caller]
fn assert_fields_found(dir: &Path, spec: &str, expected: &[(&str, &str)]) {
    let (status, json) = bulwark(&["audit", "--spec", spec], dir);
    assert_eq!(status, 3, "{json}");
    let found = findings(&json);
    for (file, field) in expected {
        assert!(
            found.iter().any(|(f, _, m)| f == file && m.contains(field)),
            "{file} {field}: {found:?}"
        );
    }
}

#[test]
fn with_the_spec_a_lifted_rate_limit_or_route_class_is_found() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml");
    let spec = spec.to_str().unwrap();
    let dir = project();
    // customer.delete: its own limit removed; invoice.void: sensitive made standard.
    for (file, from, to) in [
        (
            "crates/server/src/resources/customer.rs",
            "rate_limit: Some((10u32, 60u32))",
            "rate_limit: None",
        ),
        (
            "crates/server/src/resources/invoice.rs",
            "class: RouteClass::Sensitive",
            "class: RouteClass::Standard",
        ),
    ] {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen(from, to, 1);
        assert_ne!(text, edited, "{file} has `{from}`");
        std::fs::write(&path, edited).unwrap();
    }
    let (status, json) = bulwark(&["audit", "--spec", spec], dir.path());
    assert_eq!(status, 3, "{json}");
    let found = findings(&json);
    for (file, message) in [
        (
            "crates/server/src/resources/customer.rs",
            "operation `customer.delete` has `rate_limit` other than the spec says",
        ),
        (
            "crates/server/src/resources/invoice.rs",
            "has `class` other than the spec says (RouteClass::Sensitive)",
        ),
    ] {
        assert!(
            found
                .iter()
                .any(|(f, _, m)| f == file && m.contains(message)),
            "{file} {message}: {found:?}"
        );
    }
}

#[test]
fn a_missing_directory_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (status, json) = bulwark(&["audit"], &dir.path().join("nope"));
    assert_eq!(status, 2, "{json}");
    assert_eq!(json["ok"], false);
}

/// Rewrites `file` of a fresh project with `edit`; the audit must fail with every `needle`
/// found in that file.
fn assert_edit_found(file: &str, edit: impl Fn(String) -> String, needles: &[&str]) {
    let dir = project();
    let path = dir.path().join(file);
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    let after = edit(before.clone());
    assert_ne!(before, after, "the edit changes {file}");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, after).unwrap();
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 3, "{json}");
    let found = findings(&json);
    for needle in needles {
        assert!(
            found
                .iter()
                .any(|(f, _, m)| f == file && m.contains(needle)),
            "expected `{needle}` in {file}, got {found:?}"
        );
    }
}

/// The service is served by the guard module's `serve` alone: main (or any other file)
/// serving by itself, under whatever name, is a finding, and so is listening there.
#[test]
fn serving_anywhere_but_the_guard_module_is_found() {
    const MAIN: &str = "crates/server/src/main.rs";
    const SERVE: &str = "server::guard::serve(&addr, app).await";
    // A handler served whole, with no router at all.
    assert_edit_found(
        MAIN,
        |main| {
            main.replace(
                SERVE,
                "let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| e.to_string())?;\n    axum::serve(listener, axum::routing::get(|| async { \"open\" })).await.map_err(|e| e.to_string())",
            )
        },
        &[
            "path `TcpListener` listens for connections outside the guard module",
            "path `serve` serves outside the guard module",
        ],
    );
    // Through a name of its own, or a path that is not the guard's.
    assert_edit_found(
        MAIN,
        |main| {
            main.replace(
                SERVE,
                "{ let run = axum::serve; run(todo!(), app).await.map_err(|e| e.to_string()) }",
            )
        },
        &["path `serve` serves outside the guard module"],
    );
    assert_edit_found(
        MAIN,
        |main| {
            main.replace(
                SERVE,
                "axum::serve::serve(todo!(), app).await.map_err(|e| e.to_string())",
            )
        },
        &["path `serve` serves outside the guard module"],
    );
}

#[test]
fn a_listener_outside_main_is_found() {
    assert_found(
        "crates/server/src/lib.rs",
        "\npub async fn side_door() {\n    let _ = tokio::net::TcpListener::bind(\"0.0.0.0:9000\").await;\n}\n",
        2,
        "listens for connections outside the guard module",
    );
}

/// An edit of a manifest adding `lines` to its `[dependencies]`.
fn added(lines: &'static str) -> impl Fn(String) -> String {
    move |manifest: String| {
        manifest.replacen("[dependencies]\n", &format!("[dependencies]\n{lines}"), 1)
    }
}

#[test]
fn dependencies_on_code_outside_the_project_or_on_http_servers_are_found() {
    let server = "crates/server/Cargo.toml";
    assert_edit_found(
        server,
        added("sidecar = { path = \"../../../sidecar\" }\n"),
        &["brings in code outside the project (`../../../sidecar`)"],
    );
    assert_edit_found(
        server,
        added("sidecar = { git = \"https://example.com/sidecar\" }\n"),
        &["a `git` source"],
    );
    assert_edit_found(
        server,
        added("actix-web = \"4\"\nweb = { package = \"tiny_http\", version = \"0.12\" }\n"),
        &["depends on `actix-web`", "depends on `tiny_http`"],
    );
    assert_edit_found(
        server,
        |manifest| format!("{manifest}\n[dependencies.warp]\nversion = \"0.3\"\n"),
        &["depends on `warp`"],
    );
    // A vendored copy inside the project is still the crate it copies.
    assert_edit_found(
        "vendor/web/Cargo.toml",
        |_| "[package]\nname = \"poem\"\n".to_owned(),
        &["depends on `poem`"],
    );
    assert_edit_found(
        ".cargo/config.toml",
        |_| "paths = [\"/elsewhere/axum\"]\n".to_owned(),
        &["brings in code outside the project (`/elsewhere/axum`)"],
    );
}

/// Ways around the audit a red-team review found (each once served an unguarded route with
/// the audit passing), each now a finding.
#[test]
fn the_reviewed_evasions_are_found() {
    const MAIN: &str = "crates/server/src/main.rs";
    const LIB: &str = "crates/server/src/lib.rs";
    const ROUTES: &str = "crates/server/src/routes.rs";
    // A second `serve`, inside a macro of main's.
    assert_found(
        MAIN,
        "\nmacro_rules! background {\n    ($l:expr, $a:expr) => { axum::serve($l, $a) };\n}\n",
        2,
        "mentions `serve`",
    );
    // `#[path]` inside `cfg_attr` swapped the guard module for another file.
    assert_edit_found(
        LIB,
        |lib| {
            lib.replace(
                "pub mod guard;",
                "#[cfg_attr(all(), path = \"guard.in\")]\npub mod guard;",
            )
        },
        &["`#[path]`"],
    );
    // `include!` under another name.
    assert_found(LIB, "\nuse std::include as grab;\n", 1, "`include`");
    // An operation made by mutation, registered by the router.
    assert_found(
        ROUTES,
        "\nstatic DEBUG_OP: Operation = crate::resources::customer::LIST_OP;\n",
        1,
        "declares an operation outside the generated resource and members modules",
    );
    assert_found(
        ROUTES,
        "\npub fn extra(r: GuardedRouter<AppState>, op: &'static Operation) -> GuardedRouter<AppState> {\n    r.operation(op, || async {})\n}\n",
        2,
        "`operation` registers a route outside the generated resource and members modules",
    );
    // A listener named through a type alias, and a module called `tests` in the library.
    assert_found(
        ROUTES,
        "\ntype Port = tokio::net::TcpListener;\n",
        1,
        "listens for connections outside the guard module",
    );
    assert_found(
        "crates/server/src/tests/mod.rs",
        "pub async fn side() {\n    let _ = tokio::net::TcpListener::bind(\"0.0.0.0:9\").await;\n}\n",
        1,
        "listens for connections outside the guard module",
    );
    // axum-extra's router extension.
    assert_found(
        ROUTES,
        "\npub fn tsr(r: axum::Router) -> axum::Router {\n    axum_extra::routing::RouterExt::route_with_tsr(r, \"/x\", axum::routing::get(|| async {}))\n}\n",
        2,
        "`route_with_tsr`",
    );
}

/// Ways around the audit a second red-team review found (each passed the audit while it
/// would have served requests without the guard), each now a finding.
#[test]
fn the_second_review_evasions_are_found() {
    const MAIN: &str = "crates/server/src/main.rs";
    const ROUTES: &str = "crates/server/src/routes.rs";
    const SERVER: &str = "crates/server/Cargo.toml";
    // An operation copied from a declared one and changed: `--spec` compares literals only.
    assert_found(
        "crates/server/src/resources/customer.rs",
        "
pub const EXPORT_OP: Operation = {
    let mut op = LIST_OP;
    op.public = true;
    op
};
",
        1,
        "must be declared as an `Operation { .. }` literal",
    );
    // axum-extra's typed routes.
    assert_found(
        ROUTES,
        "
pub fn typed(r: axum::Router) -> axum::Router {
    r.typed_get(backdoor)
}
",
        2,
        "`typed_get` attaches a handler",
    );
    // A service of its own wrapping the guarded router.
    assert_found(
        ROUTES,
        "
impl tower::Service<axum::extract::Request> for Door {
}
",
        1,
        "implements `Service`",
    );
    // A second listener in main, answering by hand.
    assert_found(
        MAIN,
        "
fn side_door(listener: std::net::TcpListener) {
    for stream in listener.incoming() {
        drop(stream);
    }
}
",
        2,
        "`incoming` takes connections off a socket",
    );
    assert_found(
        MAIN,
        "\nfn side_door(listener: &std::net::TcpListener) {\n    let _ = std::net::TcpListener::accept(listener);\n}\n",
        2,
        "`accept` takes connections off a socket",
    );
    // A variable of that name is no socket.
    assert_passes(
        "crates/server/src/lib.rs",
        "\npub fn count(incoming: &[u8]) -> usize {\n    let accept = incoming.len();\n    accept\n}\n",
    );
    // A listener inside a macro.
    assert_found(
        ROUTES,
        "
macro_rules! quietly {
    () => { std::net::TcpListener::bind(\"0.0.0.0:9001\") };
}
",
        2,
        "mentions `TcpListener`",
    );
    // Sockets below tokio, and servers of other protocols that speak HTTP too.
    assert_edit_found(
        SERVER,
        added("socket2 = \"0.6\"\ntonic = \"0.14\"\naxum-extra = \"0.12\"\n"),
        &[
            "depends on `socket2`",
            "depends on `tonic`",
            "depends on `axum-extra`",
        ],
    );
    // A build script under another name.
    assert_edit_found(
        SERVER,
        |manifest| manifest.replacen("[package]\n", "[package]\nbuild = \"src/setup.rs\"\n", 1),
        &["`build` names a build script"],
    );
    // A crate inside the benchmarks' folder, which may serve on loopback.
    assert_edit_found(
        "crates/server/benches/loopback/Cargo.toml",
        |_| "[package]\nname = \"loopback\"\n".to_owned(),
        &["inside a test or benchmark folder"],
    );
}

/// Ways around the audit a third red-team review found (each passed the audit while it
/// would have served requests without the guard, or declared an operation unseen), each now
/// a finding.
#[test]
fn the_third_review_evasions_are_found() {
    const MAIN: &str = "crates/server/src/main.rs";
    const ROUTES: &str = "crates/server/src/routes.rs";
    const SERVER: &str = "crates/server/Cargo.toml";
    // `serve` renamed on import, to be called under another name.
    assert_found(
        MAIN,
        "\nuse axum::serve as start;\n",
        1,
        "imports `serve` as `start`",
    );
    // Connections taken off a socket inside a macro.
    assert_found(
        MAIN,
        "\nmacro_rules! pass {\n    ($e:expr) => { $e };\n}\nasync fn side(l: tokio::net::TcpListener) {\n    let _ = pass!(l.accept().await);\n}\n",
        5,
        "macro `pass!` mentions `accept`",
    );
    // A binary compiled from a file the audit does not read as Rust, or from a `.git` folder
    // (read now like any other).
    assert_edit_found(
        SERVER,
        |manifest| format!("{manifest}\n[[bin]]\nname = \"ops\"\npath = \"src/bin/ops.txt\"\n"),
        &["a bin target compiled from `src/bin/ops.txt`"],
    );
    assert_found(
        "crates/server/src/bin/.git/ops.rs",
        "fn main() {\n    let _ = axum::Router::<()>::new().route(\"/\", axum::routing::get(|| async {}));\n}\n",
        1,
        "`route` attaches a handler",
    );
    // An operation declared under an alias, or as an associated constant, then registered.
    assert_found(
        "crates/server/src/resources/customer.rs",
        "\ntype Op = Operation;\n",
        1,
        "an alias of `Operation`",
    );
    assert_found(
        ROUTES,
        "\nstruct Extra;\nimpl Extra {\n    const EXPORT_OP: Operation = crate::resources::customer::LIST_OP;\n}\npub fn extra(r: GuardedRouter<AppState>) -> GuardedRouter<AppState> {\n    r.operation(&Extra::EXPORT_OP, || async {})\n}\n",
        3,
        "must be declared as an `Operation { .. }` literal",
    );
    assert_found(
        "crates/server/src/resources/customer.rs",
        "\npub fn extra(r: GuardedRouter<AppState>) -> GuardedRouter<AppState> {\n    r.operation(&Extra::EXPORT_OP, || async {})\n}\n",
        2,
        "is given something other than `&NAME` of an operation this module declares",
    );
    // A macro crate that builds `route` out of pieces.
    assert_edit_found(
        SERVER,
        added("paste = \"1\"\n"),
        &["depends on `paste`, whose macros build names"],
    );
    // A crate at `crates/` itself, whose `src/tests` is library code, not a test target.
    let dir = project();
    append(
        dir.path(),
        "crates/Cargo.toml",
        "[package]\nname = \"tools\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    );
    append(dir.path(), "crates/src/lib.rs", "pub mod tests;\n");
    append(
        dir.path(),
        "crates/src/tests/mod.rs",
        "pub async fn side() {\n    let _ = tokio::net::TcpListener::bind(\"0.0.0.0:9\").await;\n}\n",
    );
    let (status, json) = bulwark(&["audit"], dir.path());
    assert_eq!(status, 3, "{json}");
    assert!(
        findings(&json)
            .iter()
            .any(|(f, l, m)| f == "crates/src/tests/mod.rs"
                && *l == 2
                && m.contains("listens for connections outside the guard module")),
        "{json}"
    );
    // A toolchain of any making, a service trait renamed, a handler of one's own.
    assert_found(
        "rust-toolchain.toml",
        "[toolchain]\npath = \"/opt/other\"\n",
        1,
        "the toolchain's `path`",
    );
    assert_found(
        ROUTES,
        "\nuse tower::Service as Svc;\n",
        1,
        "imports `Service` as `Svc`",
    );
    assert_found(
        ROUTES,
        "\nuse axum::handler::*;\nstruct Door;\nimpl<S> Handler<(), S> for Door {}\n",
        3,
        "implements `Handler`",
    );
}

/// Ways around the audit a fourth red-team review found, each now a finding: operations
/// registered under a name something else in the module also has, as a function path, from
/// outside the modules declaring them, or for a previous version the spec does not have; a
/// prelude name redeclared beside the literals; connections taken as a stream.
#[test]
fn the_fourth_review_evasions_are_found() {
    const CUSTOMER: &str = "crates/server/src/resources/customer.rs";
    // A stand-in under a declared name, inside the registering function.
    assert_edit_found(
        CUSTOMER,
        |module| {
            module.replacen(
                "    router\n",
                "    const LIST_OP: &Operation = &READ_OP;\n    let router = router.operation(&LIST_OP, || async {});\n    router\n",
                1,
            )
        },
        &["is given something other than `&NAME` of an operation this module declares"],
    );
    // A field written twice under `#[cfg]`: the text `--spec` compares is not what compiles.
    assert_edit_found(
        CUSTOMER,
        |module| {
            module.replacen(
                "    public: false,\n",
                "    #[cfg(all())]\n    public: true,\n    #[cfg(any())]\n    public: false,\n",
                1,
            )
        },
        &["an operation's `public` must be written once, with no attribute"],
    );
    // Registered through the method's path, where its argument is not checked.
    assert_found(
        CUSTOMER,
        "\npub fn extra(r: GuardedRouter<AppState>, op: &'static Operation) -> GuardedRouter<AppState> {\n    GuardedRouter::operation(r, op, || async {})\n}\n",
        2,
        "path `operation`: register operations as `router.operation(&OPERATION, handler)`",
    );
    // `Some` redeclared beside the literals (their text, which `--spec` compares, unchanged).
    assert_found(
        CUSTOMER,
        "\nconst fn Some(_: &'static str) -> Option<&'static str> {\n    None\n}\n",
        1,
        "declares `Some` in a module declaring operations",
    );
    assert_found(
        CUSTOMER,
        "\nuse std::collections::*;\n",
        1,
        "a glob import in a module declaring operations",
    );
    // Connections taken off a listener as a stream (tokio-stream).
    assert_found(
        "crates/server/src/lib.rs",
        "\npub fn side(l: tokio::net::TcpListener) {\n    let _ = tokio_stream::wrappers::TcpListenerStream::new(l);\n}\n",
        2,
        "`TcpListenerStream` listens for connections outside the guard module",
    );
    // A route of a previous version the spec does not have, at a path of its own.
    let dir = project();
    let path = dir.path().join(CUSTOMER);
    let module = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        module.replacen(
            "    router\n",
            "    let router = router.previous(&LIST_OP, &crate::routes::PREVIOUS_VERSIONS[0], \"/v1/customers-dump\", || async {});\n    router\n",
            1,
        ),
    )
    .unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml");
    let (status, json) = bulwark(&["audit", "--spec", spec.to_str().unwrap()], dir.path());
    assert_eq!(status, 3, "{json}");
    assert!(
        findings(&json).iter().any(|(f, _, m)| f == CUSTOMER
            && m.contains("registers `customer.list` at `/v1/customers-dump` for previous version 0, which the spec's deprecated versions do not serve")),
        "{json}"
    );
}

/// Ways around the audit a fifth red-team review found, each now a finding; and edits an
/// engineer makes every day that are none.
#[test]
fn the_fifth_review_evasions_are_found_and_ordinary_edits_are_not() {
    const CUSTOMER: &str = "crates/server/src/resources/customer.rs";
    const MAIN: &str = "crates/server/src/main.rs";
    // A type of its own named `Operation`, dereferencing to a widened one.
    assert_edit_found(
        CUSTOMER,
        |module| {
            module.replacen(
                "pub const DELETE_OP: Operation = Operation {",
                "pub const DELETE_OP: crate::tenant::Operation = crate::tenant::Operation {",
                1,
            )
        },
        &["is given something other than `&NAME` of an operation this module declares"],
    );
    // A macro declaring a stand-in inside the registering function, or `Some` beside the
    // literals.
    assert_edit_found(
        CUSTOMER,
        |module| {
            module.replacen(
                "    router\n",
                "    crate::support_ops!();\n    router\n",
                1,
            )
        },
        &["a macro in statement position in a module declaring operations"],
    );
    assert_found(
        CUSTOMER,
        "\ncrate::optional_values!();\n",
        1,
        "a macro where an item goes in a module declaring operations",
    );
    // A name the compiler reads as another (the Kelvin sign for `K`).
    assert_found(
        CUSTOMER,
        "\nconst BLOC\u{212A}_OP: u8 = 0;\n",
        1,
        "is not ASCII",
    );
    // Serving through a `guard` that is axum, on a listener of its own.
    assert_found(
        MAIN,
        "\nuse axum as guard;\nstruct Relay;\nimpl axum::serve::Listener for Relay {}\nasync fn side() {\n    let _ = guard::serve(Relay, axum::Router::new());\n}\n",
        3,
        "implements `Listener`",
    );
    assert_found(
        MAIN,
        "\nasync fn side() {\n    let _ = guard::serve(todo!(), axum::Router::new());\n}\n",
        2,
        "path `serve` serves outside the guard module",
    );
    assert_found(MAIN, "\nuse axum::*;\n", 1, "a glob import from `axum`");
    // Ordinary edits: a variable named like an axum method, a log line naming a route, a
    // logging layer.
    assert_passes(
        "crates/server/src/lib.rs",
        "\npub fn pick(asked: Option<u32>) -> u32 {\n    let fallback = 50;\n    tracing::warn!(route = \"/x\", \"slow\");\n    asked.unwrap_or(fallback)\n}\npub fn logs() {\n    let _ = tracing_subscriber::fmt::layer::<tracing_subscriber::Registry>();\n}\n",
    );
}

/// Ways around the audit a sixth red-team review found, each now a finding; and edits it
/// found refused that are ordinary, now passing.
#[test]
fn the_sixth_review_evasions_are_found_and_ordinary_edits_are_not() {
    const ROUTES: &str = "crates/server/src/routes.rs";
    const LIB: &str = "crates/server/src/lib.rs";
    // A route attached inside a logging macro's field, and a `tracing` of its own.
    assert_found(
        ROUTES,
        "\nfn f(app: axum::Router) {\n    tracing::error!(ops = { let _ = app.route(\"/x\", todo!()); true }, \"ready\");\n}\n",
        2,
        "macro `error!` mentions `route`",
    );
    assert_found(ROUTES, "\nmod tracing {}\n", 1, "a `tracing` of its own");
    // `.operation(..)` inside a macro, given a mutated copy.
    assert_found(
        ROUTES,
        "\nmacro_rules! purge {\n    ($r:expr) => { $r.operation(todo!(), todo!()) };\n}\n",
        2,
        "mentions `operation`",
    );
    // What the guard module's words mean: a crate of its own under axum's name, the crate
    // itself as axum, a `format!` of its own before `mod guard;`.
    assert_edit_found(
        "Cargo.toml",
        |manifest| {
            manifest
                .replacen(
                    "[workspace.dependencies]\n",
                    "[workspace.dependencies]\naxum-shim = { path = \"crates/axum-shim\" }\n",
                    1,
                )
                .replacen("\naxum = ", "\naxum-real = ", 1)
                .replacen("axum-shim = {", "axum = { package = \"axum-shim\",", 1)
        },
        &["`axum` is not the registry's crate of that name"],
    );
    assert_found(
        LIB,
        "\nextern crate self as axum;\n",
        1,
        "changes what `axum` means",
    );
    assert_found(
        LIB,
        "\nmacro_rules! format {\n    ($($t:tt)*) => { String::new() };\n}\n",
        1,
        "would stand in for the standard `format!`",
    );
    assert_found(LIB, "\n#[macro_use]\nmod helpers {}\n", 2, "`#[macro_use]`");
    // Ordinary: a test module in a resource module, standard macros in the built-in
    // routes, an operation named in a log line.
    assert_passes(
        "crates/server/src/resources/customer.rs",
        "\n#[cfg(test)]\nmod tests {\n    use super::*;\n    #[test]\n    fn read_is_a_get() {\n        assert_eq!(READ_OP.method, \"GET\");\n    }\n}\npub fn log() {\n    tracing::debug!(path = LIST_OP.path, \"listing\");\n    debug_assert!(!LIST_OP.public);\n}\n",
    );
}

/// Ways around the audit a seventh red-team review found, each now a finding: sockets made
/// below the names it follows (rustix, a libc call through `extern "C"`), connections
/// accepted through an imported function, and a trait joining the guard module's imports.
#[test]
fn the_seventh_review_evasions_are_found() {
    const LIB: &str = "crates/server/src/lib.rs";
    assert_edit_found(
        "crates/server/Cargo.toml",
        added("rustix = { version = \"1\", features = [\"net\"] }\n"),
        &["depends on `rustix`"],
    );
    assert_found(
        LIB,
        "\nuse rustix::net::accept;\n",
        1,
        "`accept` takes connections off a socket",
    );
    assert_found(
        LIB,
        "\nunsafe extern \"C\" {\n    safe fn listen(fd: i32, backlog: i32) -> i32;\n}\n",
        1,
        "an `extern` block",
    );
    assert_found(
        LIB,
        "\npub fn f() {\n    let _ = unsafe { std::mem::zeroed::<u8>() };\n}\n",
        2,
        "an `unsafe` block",
    );
    assert_found(
        "crates/server/src/tenant.rs",
        "\npub trait standing {\n    fn any(&self) -> bool;\n}\n",
        1,
        "a trait named `standing`, which the guard module imports",
    );
}

/// Cargo files read as TOML: every spelling of a key counts, and what changes which files
/// are compiled is a finding.
#[test]
fn cargo_files_are_read_as_toml() {
    let server = "crates/server/Cargo.toml";
    // Single-quoted strings, a renamed package, a dotted table: still hyper, still git.
    assert_edit_found(
        server,
        added("wire = { package = 'hyper', version = '1' }\n"),
        &["depends on `hyper`"],
    );
    assert_edit_found(
        server,
        added("side = { git = 'https://example.com/side', rev = 'e3b0c44' }\n"),
        &["a `git` source"],
    );
    assert_edit_found(
        server,
        |manifest| format!("{manifest}\n[dependencies . hyper]\nversion = \"1\"\n"),
        &["depends on `hyper`"],
    );
    // A library compiled from another file than the one the audit checks as the library.
    assert_edit_found(
        server,
        |manifest| manifest.replacen("[lib]\n", "[lib]\npath = \"src/lib.inc\"\n", 1),
        &["a lib target compiled from `src/lib.inc`"],
    );
    // A procedural-macro crate declared with a dotted key.
    assert_edit_found(
        "crates/pm/Cargo.toml",
        |_| {
            "lib.proc-macro = true\n[package]\nname = \"pm\"\nversion = \"0.1.0\"\nedition = \"2024\"\n".into()
        },
        &["procedural-macro crate"],
    );
    // Code under `target/`, which the audit does not read.
    assert_edit_found(
        server,
        added("side = { path = \"../../target/side\" }\n"),
        &["under `target/`"],
    );
    // A compiler wrapper could compile other code than the files checked.
    assert_edit_found(
        ".cargo/config.toml",
        |_| "[build]\nrustc-wrapper = \"tools/wrap\"\n".into(),
        &["`rustc-wrapper`"],
    );
}
