//! `bulwark audit DIR --database URL` against the PostgreSQL at `DATABASE_URL` (default: the
//! local server): a generated project passes; copies broken by a later migration, a
//! hand-edited grants module or privileged roles fail with exactly the expected findings,
//! each naming where it came from; bad input exits 2; nothing is left on the server.

#![allow(clippy::unwrap_used)]

mod common;

use common::{database_url, project};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn admin() -> postgres::Client {
    postgres::Client::connect(&database_url(), postgres::NoTls).unwrap()
}

/// Runs `bulwark --format json audit DIR --spec ledgerly --database URL EXTRA...`; checks
/// that the run left no scratch database or role behind.
fn audit(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/ledgerly.yaml");
    let child = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["--format", "json", "audit"])
        .arg(dir)
        .arg("--spec")
        .arg(spec)
        .args(["--database", &database_url()])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let pattern = format!("bulwark\\_audit\\_{pid}\\_%");
    let left: i64 = admin()
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname LIKE $1) \
                  + (SELECT count(*) FROM pg_roles WHERE rolname LIKE $1)",
            &[&pattern],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "scratch database or roles left behind");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap(), json)
}

/// `(source, object, message)` of each database finding.
fn findings(json: &Value) -> Vec<(String, String, String)> {
    json["database_findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no database findings in {json}"))
        .iter()
        .map(|f| {
            (
                f["source"].as_str().unwrap_or("").to_owned(),
                f["object"].as_str().unwrap().to_owned(),
                f["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A fresh project plus `sql` as a later migration: the audit fails with exactly `expected`
/// (object, start of the message), each attributed to that migration.
fn assert_migration_found(sql: &str, expected: &[(&str, &str)]) {
    let dir = project();
    std::fs::write(dir.path().join("migrations/0002_later.sql"), sql).unwrap();
    let (status, json) = audit(dir.path(), &[]);
    assert_eq!(status, 3, "{json}");
    assert_eq!(json["ok"], false);
    let found = findings(&json);
    assert_eq!(found.len(), expected.len(), "{sql}\n{found:#?}");
    for (object, message) in expected {
        assert!(
            found
                .iter()
                .any(|(source, o, m)| source == "migrations/0002_later.sql"
                    && o == object
                    && m.starts_with(message)),
            "{sql}\nexpected {object}: {message}…, got {found:#?}"
        );
    }
}

#[test]
fn a_generated_project_isolates_tenants_in_the_catalog() {
    let dir = project();
    let (status, json) = audit(dir.path(), &[]);
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["database_findings"], serde_json::json!([]));
}

#[test]
fn a_later_migration_that_lifts_forced_rls_is_found() {
    assert_migration_found(
        "ALTER TABLE \"customer\" NO FORCE ROW LEVEL SECURITY;",
        &[("table \"customer\"", "row-level security is not forced")],
    );
    assert_migration_found(
        "ALTER TABLE \"invoice\" DISABLE ROW LEVEL SECURITY;",
        &[("table \"invoice\"", "row-level security is not enabled")],
    );
}

#[test]
fn a_later_grant_all_is_found() {
    let privileges = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "TRUNCATE",
        "REFERENCES",
        "TRIGGER",
    ];
    let mut expected: Vec<(&str, String)> = privileges
        .iter()
        .map(|p| ("table \"invoice\"", format!("{p} is granted to PUBLIC")))
        .collect();
    // ledgerly's invoice has create, read, update and list: no delete, nothing else.
    for p in ["DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"] {
        expected.push(("table \"invoice\"", format!("the app role holds {p}")));
    }
    let expected: Vec<(&str, &str)> = expected.iter().map(|(o, m)| (*o, m.as_str())).collect();
    assert_migration_found("GRANT ALL ON \"invoice\" TO PUBLIC;", &expected);
}

#[test]
fn keys_checked_before_the_server_decides_are_found() {
    // Each would tell a refused caller about rows it may not see: a release's uniqueness
    // rule made immediate again (a hand-made reference points at it: still found), a
    // reference that restricts deletes, a rule deferrable but not deferred, a unique index,
    // and a reference into a resource's table from a table of one's own.
    assert_migration_found(
        "ALTER TABLE \"invoice\" DROP CONSTRAINT \"invoice_tenant_id_number_key\";\n\
         ALTER TABLE \"invoice\" ADD CONSTRAINT \"invoice_tenant_id_number_key\" UNIQUE (\"tenant_id\", \"number\");\n\
         ALTER TABLE \"invoice\" DROP CONSTRAINT \"invoice_tenant_id_customer_fkey\";\n\
         ALTER TABLE \"invoice\" ADD CONSTRAINT \"invoice_tenant_id_customer_fkey\" FOREIGN KEY (\"tenant_id\", \"customer\") \
           REFERENCES \"customer\" (\"tenant_id\", \"id\") ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED;\n\
         ALTER TABLE \"customer\" ADD CONSTRAINT \"customer_email_key\" UNIQUE (\"tenant_id\", \"email\") DEFERRABLE;\n\
         CREATE UNIQUE INDEX \"customer_vat\" ON \"customer\" (\"tenant_id\", \"vat_id\");\n\
         CREATE UNIQUE INDEX \"customer_vat_given\" ON \"customer\" (\"tenant_id\", \"vat_id\") WHERE \"vat_id\" IS NOT NULL;\n\
         ALTER TABLE \"customer\" ADD CONSTRAINT \"customer_country\" EXCLUDE USING btree (\"tenant_id\" WITH =, \"country\" WITH =);\n\
         CREATE SCHEMA \"elsewhere\";\n\
         CREATE TABLE \"elsewhere\".\"links\" (\"owner\" uuid NOT NULL, \"customer\" uuid NOT NULL,\n\
           CONSTRAINT \"links_customer\" FOREIGN KEY (\"owner\", \"customer\") REFERENCES \"public\".\"customer\" (\"tenant_id\", \"id\") ON UPDATE RESTRICT DEFERRABLE INITIALLY DEFERRED);\n\
         CREATE TABLE \"notes\" (\"owner\" uuid NOT NULL, \"customer\" uuid NOT NULL, \"number\" text NOT NULL,\n\
           CONSTRAINT \"notes_customer\" FOREIGN KEY (\"owner\", \"customer\") REFERENCES \"customer\" (\"tenant_id\", \"id\"),\n\
           CONSTRAINT \"notes_invoice\" FOREIGN KEY (\"owner\", \"number\") REFERENCES \"invoice\" (\"tenant_id\", \"number\") DEFERRABLE INITIALLY DEFERRED);",
        &[
            (
                "table \"invoice\"",
                "constraint \"invoice_tenant_id_number_key\" is checked at once",
            ),
            (
                "table \"invoice\"",
                "constraint \"invoice_tenant_id_customer_fkey\" (a reference to \"customer\") is RESTRICT",
            ),
            (
                "table \"customer\"",
                "constraint \"customer_email_key\" is checked at once",
            ),
            (
                "table \"customer\"",
                "unique index \"customer_vat\" is checked at once and cannot wait for the commit: a refused write would learn that another row holds the value; make it a DEFERRABLE INITIALLY DEFERRED unique constraint",
            ),
            (
                "table \"customer\"",
                "unique index \"customer_vat_given\" is checked at once and cannot wait for the commit: a refused write would learn that another row holds the value; make it a DEFERRABLE INITIALLY DEFERRED exclusion constraint",
            ),
            (
                "table \"customer\"",
                "constraint \"customer_country\" is checked at once",
            ),
            (
                "table \"elsewhere\".\"links\"",
                "constraint \"links_customer\" (a reference to \"customer\") is RESTRICT",
            ),
            (
                "table \"notes\"",
                "constraint \"notes_customer\" (a reference to \"customer\") is checked at once",
            ),
        ],
    );
}

#[test]
fn policies_that_do_not_scope_to_the_tenant_are_found() {
    assert_migration_found(
        "CREATE POLICY \"open\" ON \"customer\" USING (true);",
        &[
            (
                "table \"customer\"",
                "policy \"open\" does not compare tenant_id",
            ),
            (
                "table \"customer\"",
                "policy \"open\" (ALL) has no WITH CHECK",
            ),
        ],
    );
    // USING alone on an update policy: no WITH CHECK, so rows could be moved out.
    assert_migration_found(
        "CREATE POLICY \"edit\" ON \"invoice\" FOR UPDATE \
         USING (\"tenant_id\" = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));",
        &[(
            "table \"invoice\"",
            "policy \"edit\" (UPDATE) has no WITH CHECK",
        )],
    );
    // Naming the column and the setting is not comparing them: this lets every tenant in.
    assert_migration_found(
        "DROP POLICY \"tenant_isolation\" ON \"customer\"; \
         CREATE POLICY \"tenant_isolation\" ON \"customer\" \
         USING (\"tenant_id\" IS NOT NULL AND current_setting('app.tenant_id', true) IS NOT NULL) \
         WITH CHECK (\"tenant_id\" IS NOT NULL AND current_setting('app.tenant_id', true) IS NOT NULL);",
        &[
            (
                "table \"customer\"",
                "policy \"tenant_isolation\" does not compare tenant_id",
            ),
            (
                "table \"customer\"",
                "policy \"tenant_isolation\" (ALL) has no WITH CHECK",
            ),
        ],
    );
    assert_migration_found(
        "DROP POLICY \"tenant_isolation\" ON \"customer\";",
        &[("table \"customer\"", "has no row-level security policy")],
    );
    assert_migration_found(
        "CREATE TABLE \"notes\" (\"id\" uuid PRIMARY KEY, \"tenant_id\" uuid NOT NULL);",
        &[
            ("table \"notes\"", "row-level security is not enabled"),
            ("table \"notes\"", "row-level security is not forced"),
            ("table \"notes\"", "has no row-level security policy"),
        ],
    );
}

#[test]
fn definer_functions_and_views_around_rls_are_found() {
    assert_migration_found(
        "CREATE FUNCTION \"peek\"() RETURNS bigint LANGUAGE sql SECURITY DEFINER \
             AS 'SELECT count(*) FROM \"invoice\"';\n\
         REVOKE ALL ON FUNCTION \"peek\"() FROM PUBLIC;",
        &[("function peek()", "is SECURITY DEFINER")],
    );
    // Callable by PUBLIC (the default) though no action needs it.
    assert_migration_found(
        "CREATE FUNCTION \"peek\"() RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint';",
        &[("function peek()", "the app role may execute it")],
    );
    assert_migration_found(
        "CREATE VIEW \"everyone\" AS SELECT * FROM \"customer\";",
        &[("view \"everyone\"", "lacks security_invoker")],
    );
    assert_migration_found(
        "CREATE MATERIALIZED VIEW \"snapshot\" AS SELECT * FROM \"customer\";",
        &[("materialized view \"snapshot\"", "stores rows outside")],
    );
    // A view that reads as its caller is fine.
    let dir = project();
    std::fs::write(
        dir.path().join("migrations/0002_later.sql"),
        "CREATE VIEW \"mine\" WITH (security_invoker = true) AS SELECT * FROM \"customer\";",
    )
    .unwrap();
    let (status, json) = audit(dir.path(), &[]);
    assert_eq!(status, 0, "{json}");
}

#[test]
fn a_hand_edited_grants_module_is_checked_against_the_spec() {
    let dir = project();
    let path = dir.path().join("crates/server/src/grants.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen(
        "(\"\\\"invoice\\\"\", \"SELECT, INSERT, UPDATE\")",
        "(\"\\\"invoice\\\"\", \"SELECT, INSERT, UPDATE, DELETE\")",
        1,
    );
    assert_ne!(
        text, edited,
        "the grants module lists customer's privileges"
    );
    std::fs::write(&path, edited).unwrap();
    let (status, json) = audit(dir.path(), &[]);
    assert_eq!(status, 3, "{json}");
    assert_eq!(
        findings(&json),
        vec![(
            "crates/server/src/grants.rs".to_owned(),
            "table \"invoice\"".to_owned(),
            "the app role holds DELETE, which no action of this table needs".to_owned()
        )]
    );
}

#[test]
fn privileged_roles_are_found() {
    let dir = project();
    let mut admin = admin();
    let role = format!("bulwark_test_bypass_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS \"{role}\"; CREATE ROLE \"{role}\" NOLOGIN BYPASSRLS"
        ))
        .unwrap();
    let (status, json) = audit(dir.path(), &["--app-role", &role]);
    admin
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .unwrap();
    assert_eq!(status, 3, "{json}");
    assert_eq!(
        findings(&json),
        vec![(
            String::new(),
            format!("app role `{role}`"),
            "has BYPASSRLS: row-level security does not apply to it".to_owned()
        )]
    );
    // Migrating as a superuser: the owner role is refused too.
    let superuser: String = admin
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0);
    let (status, json) = audit(dir.path(), &["--owner-role", &superuser]);
    assert_eq!(status, 3, "{json}");
    let found = findings(&json);
    assert!(
        found
            .iter()
            .any(|(_, o, m)| o == &format!("owner role `{superuser}`")
                && m.starts_with("has SUPERUSER")),
        "{found:#?}"
    );
}

#[test]
fn a_migration_that_fails_is_a_finding_and_bad_input_exits_2() {
    assert_migration_found(
        "CREATE TABLE broken (;",
        &[(
            "migration",
            "fails when applied by a non-superuser owner role",
        )],
    );
    // Only a superuser may do this: the owner role may not.
    assert_migration_found(
        "ALTER ROLE CURRENT_USER BYPASSRLS;",
        &[(
            "migration",
            "fails when applied by a non-superuser owner role",
        )],
    );
    let dir = project();
    for (url, why) in [
        ("not a url", "cannot connect"),
        ("postgres://postgres@127.0.0.1:1/postgres", "cannot connect"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(["--format", "json", "audit"])
            .arg(dir.path())
            .args(["--database", url])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{url}");
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(json.to_string().contains(why), "{url}: {json}");
    }
    let (status, json) = audit(dir.path(), &["--app-role", "no_such_role_anywhere"]);
    assert_eq!(status, 2, "{json}");
    assert!(json.to_string().contains("does not exist"), "{json}");
    // Role flags without a database are a usage error.
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["audit"])
        .arg(dir.path())
        .args(["--app-role", "x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
