//! Schema evolution: generation N is applied to a real database and filled with rows, the
//! spec changes, generation N+1 keeps every earlier migration byte for byte and adds one,
//! which applies on top and keeps the data. Changes that could lose or break stored data are
//! refused (exit 4, nothing written) unless a marker acknowledges them: `migrations.drop`,
//! `check`, `backfill` or `tenancy` (a resource moved between tenant-scoped and global); a
//! resource or field renamed under `migrations.rename` keeps its table or column and data.
//! Runs against the PostgreSQL at `DATABASE_URL` (default: the local server).

#![allow(clippy::unwrap_used)]

mod common;

use common::{database_url, generate_json, generate_with, ledgerly, ledgerly_client};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The ledgerly spec changed: a new optional field, a new defaulted enum, a dropped field
/// (acknowledged), and a new resource referencing an old one.
fn ledgerly_v2() -> String {
    ledgerly()
        .replace(
            "      country: { type: string, max: 2 }\n",
            "      country: { type: string, max: 2 }\n      notes: { type: text, optional: true }\n      tier: { type: enum, values: [basic, gold], default: basic }\n",
        )
        .replace("      vat_id: { type: string, max: 32, optional: true }\n", "")
        .replace(
            "payments:",
            "  project:\n    fields:\n      customer: { type: reference, to: customer }\n      title: { type: string, max: 100, unique: true }\n    actions:\n      read: { roles: [owner], scope: invoices.read }\n\nmigrations:\n  drop: [customer.vat_id]\n\npayments:",
        )
}

fn migrations(out: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(out.join("migrations"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// ledgerly generated into `out` (one migration), applied to a scratch database; the
/// database lives as long as the `Scratch`.
fn first_generation_applied(out: &Path) -> (Scratch, postgres::Client) {
    generation_applied(&ledgerly(), out)
}

/// `spec` generated into `out` (one migration), applied to a scratch database.
fn generation_applied(spec: &str, out: &Path) -> (Scratch, postgres::Client) {
    let (code, json) = generate_json(spec, out);
    assert_eq!(code, 0, "{json}");
    let first = migrations(out);
    assert_eq!(first.len(), 1);
    let scratch = Scratch::new();
    let mut db = scratch.connect();
    for (_, sql) in &first {
        db.batch_execute(sql).unwrap();
    }
    (scratch, db)
}

/// Generates `spec` into `out` on top of its first generation: the migrations, the first
/// untouched and one more.
fn next_generation(out: &Path, spec: &str) -> Vec<(String, String)> {
    let first = migrations(out);
    let (code, json) = generate_json(spec, out);
    assert_eq!(code, 0, "{json}");
    let all = migrations(out);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0], first[0], "an applied migration is never rewritten");
    all
}

/// Whether row-level security is forced on `table`.
fn forced_row_security(db: &mut postgres::Client, table: &str) -> bool {
    db.query_one(
        "SELECT relforcerowsecurity FROM pg_class WHERE relname = $1",
        &[&table],
    )
    .unwrap()
    .get(0)
}

fn assert_contains_all(sql: &str, expected: &[&str]) {
    for line in expected {
        assert!(sql.contains(line), "{line}\n{sql}");
    }
}

/// A scratch database, dropped at the end.
struct Scratch {
    admin: postgres::Client,
    name: String,
}

impl Scratch {
    fn new() -> Scratch {
        let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
        // Tests run in parallel in one process: a database each.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("bulwark_evolve_{}_{n}", std::process::id());
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        Scratch { admin, name }
    }

    fn connect(&self) -> postgres::Client {
        let mut config: postgres::Config = database_url().parse().unwrap();
        config.dbname(&self.name);
        config.connect(postgres::NoTls).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ));
    }
}

#[test]
fn stored_rows_survive_the_next_generations_migration() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    // Generation 1 applied and filled.
    let (_scratch, mut db) = first_generation_applied(&out);
    db.batch_execute(
        "INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-00000000000a', 'a');
         INSERT INTO customer (id, tenant_id, name, email, vat_id, country) VALUES
           ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', 'Acme', 'ap@acme.test', 'DE123', 'DE'),
           ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000a', 'Beta', 'ap@beta.test', NULL, 'FR');
         INSERT INTO invoice (id, tenant_id, customer, number, total_minor, total_currency, issued_on, owner) VALUES
           ('00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'INV-1', 12000, 'EUR', '2026-11-01', 'user-1');",
    )
    .unwrap();

    // Generation 2: the first migration untouched, one more.
    let second = next_generation(&out, &ledgerly_v2());
    let (name, sql) = &second[1];
    assert!(name.starts_with("0002_"), "{name}");
    assert_contains_all(
        sql,
        &[
            "ALTER TABLE \"customer\" ADD COLUMN \"notes\" text;",
            "ALTER TABLE \"customer\" ADD COLUMN \"tier\" text NOT NULL DEFAULT 'basic'",
            "ALTER TABLE \"customer\" DROP COLUMN \"vat_id\";",
            "CREATE TABLE \"project\"",
            "ALTER TABLE \"project\" FORCE ROW LEVEL SECURITY;",
        ],
    );
    db.batch_execute(sql).unwrap();
    let rows = db
        .query(
            "SELECT name, country, tier, notes FROM customer ORDER BY name",
            &[],
        )
        .unwrap();
    let rows: Vec<(String, String, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("Acme".into(), "DE".into(), "basic".into(), None),
            ("Beta".into(), "FR".into(), "basic".into(), None),
        ]
    );
    let invoices: i64 = db
        .query_one("SELECT count(*) FROM invoice WHERE number = 'INV-1'", &[])
        .unwrap()
        .get(0);
    assert_eq!(invoices, 1);
    // The new table is isolated like the first ones, and references stay inside a tenant.
    let forced = forced_row_security(&mut db, "project");
    assert!(forced);
    db.batch_execute(
        "INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-00000000000b', 'b')",
    )
    .unwrap();
    let cross = db.batch_execute(
        "INSERT INTO project (id, tenant_id, customer, title) VALUES
           ('00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-000000000001', 'x')",
    );
    assert!(
        cross.is_err(),
        "a project of tenant b cannot point at tenant a's customer"
    );

    // Regenerating the same spec adds nothing; the manifest records the tables.
    let (code, json) = generate_json(&ledgerly_v2(), &out);
    assert_eq!(code, 0, "{json}");
    assert_eq!(migrations(&out), second);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(".bulwark/manifest.json")).unwrap())
            .unwrap();
    assert!(
        manifest["schema"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["resource"] == "project")
    );
}

/// ledgerly with three of invoice's fields renamed under `migrations.rename`: `notes` (text,
/// with a length constraint) to `memo`, `total` (money: two columns) to `amount`, and
/// `number` (unique in its tenant) to `code`.
/// A tenant, a customer (VAT id `DE123`) and an invoice of it (notes `net 30`), in ledgerly's
/// first generation.
fn seed_an_invoice(db: &mut postgres::Client) {
    db.batch_execute(
        "INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-00000000000a', 'a');
         INSERT INTO customer (id, tenant_id, name, email, vat_id, country) VALUES
           ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', 'Acme', 'ap@acme.test', 'DE123', 'DE');
         INSERT INTO invoice (id, tenant_id, customer, number, total_minor, total_currency, issued_on, owner, notes) VALUES
           ('00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'INV-1', 12000, 'EUR', '2026-11-01', 'user-1', 'net 30');",
    )
    .unwrap();
}

fn ledgerly_renamed() -> String {
    ledgerly()
        .replace("      total:    { type: money, min: 0 }\n", "      amount:   { type: money, min: 0 }\n")
        .replace("amount: total,", "amount: amount,")
        .replace("resource.total.", "resource.amount.")
        .replace("      number:   { type: string, max: 32, unique: true }\n", "      code:     { type: string, max: 32, unique: true }\n")
        .replace(
            "      notes:    { type: text, optional: true, max: 4000 }\n",
            "      memo:     { type: text, optional: true, max: 4000 }\n",
        )
        .replace(
            "payments:",
            "migrations:\n  rename:\n    invoice.notes: memo\n    invoice.total: amount\n    invoice.number: code\n\npayments:",
        )
}

#[test]
fn renamed_fields_keep_their_data() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (_scratch, mut db) = first_generation_applied(&out);
    seed_an_invoice(&mut db);

    let all = next_generation(&out, &ledgerly_renamed());
    let (name, sql) = &all[1];
    assert!(name.starts_with("0002_rename_invoice_"), "{name}");
    assert_contains_all(
        sql,
        &[
            "ALTER TABLE \"invoice\" RENAME COLUMN \"notes\" TO \"memo\";",
            "ALTER TABLE \"invoice\" RENAME COLUMN \"total_minor\" TO \"amount_minor\";",
            "ALTER TABLE \"invoice\" RENAME COLUMN \"total_currency\" TO \"amount_currency\";",
            "ALTER TABLE \"invoice\" RENAME COLUMN \"number\" TO \"code\";",
        ],
    );
    assert!(!sql.contains("DROP"), "{sql}");
    assert!(!sql.contains("ADD COLUMN"), "{sql}");
    db.batch_execute(sql).unwrap();
    let row = db
        .query_one(
            "SELECT memo, amount_minor, amount_currency FROM invoice",
            &[],
        )
        .unwrap();
    let (memo, minor, currency): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (memo.as_str(), minor, currency.as_str()),
        ("net 30", 12000, "EUR")
    );
    // The renamed column keeps its constraint.
    let long = db.batch_execute(&format!("UPDATE invoice SET memo = '{}'", "x".repeat(4001)));
    assert!(long.is_err(), "memo keeps its 4000-character limit");
    let twice = db.batch_execute(
        "INSERT INTO invoice (id, tenant_id, customer, code, amount_minor, amount_currency, issued_on, owner) VALUES
           ('00000000-0000-0000-0000-000000000004', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'INV-1', 1, 'EUR', '2026-11-02', 'user-1')",
    );
    assert!(twice.is_err(), "code stays unique in its tenant");

    // The marker left in the spec changes nothing more.
    let (code, json) = generate_json(&ledgerly_renamed(), &out);
    assert_eq!(code, 0, "{json}");
    assert_eq!(migrations(&out), all);
}

#[test]
fn a_renamed_resource_keeps_its_rows() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (_scratch, mut db) = first_generation_applied(&out);
    seed_an_invoice(&mut db);

    let all = next_generation(&out, &ledgerly_client());
    let (name, sql) = &all[1];
    assert!(name.starts_with("0002_rename_customer_to_client"), "{name}");
    assert_contains_all(
        sql,
        &[
            "ALTER TABLE \"customer\" RENAME TO \"client\";",
            "DROP FUNCTION IF EXISTS \"customer_read\";",
            "DROP FUNCTION IF EXISTS \"customer_list\";",
            "CREATE FUNCTION \"client_read\"(p_tenant uuid, p_id uuid) RETURNS SETOF public.\"client\"",
            "ALTER TABLE \"client\" RENAME COLUMN \"vat_id\" TO \"tax_id\";",
        ],
    );
    assert!(!sql.contains("DROP TABLE"), "{sql}");
    assert!(!sql.contains("CREATE TABLE"), "{sql}");
    assert!(
        !sql.contains("FOREIGN KEY"),
        "the invoice's reference follows the table: {sql}"
    );
    db.batch_execute(sql).unwrap();

    let row = db
        .query_one("SELECT name, tax_id FROM client", &[])
        .unwrap();
    let (name, tax_id): (String, String) = (row.get(0), row.get(1));
    assert_eq!((name.as_str(), tax_id.as_str()), ("Acme", "DE123"));
    // The invoice still points at it, and its row-level security stays forced.
    assert!(db.batch_execute("DELETE FROM client").is_err());
    let forced = forced_row_security(&mut db, "client");
    assert!(forced);
    // The functions made anew read the renamed table.
    let read: i64 = db
        .query_one(
            "SELECT count(*) FROM client_read('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(read, 1);

    // The marker left in the spec changes nothing more.
    let (code, json) = generate_json(&ledgerly_client(), &out);
    assert_eq!(code, 0, "{json}");
    assert_eq!(migrations(&out), all);
}

#[test]
fn a_rename_is_checked_like_a_field_that_kept_its_name() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    assert_eq!(generate_json(&ledgerly(), &out).0, 0);
    let before = migrations(&out);
    // To another type: refused like a type change.
    let retyped = ledgerly_renamed().replace(
        "      memo:     { type: text, optional: true, max: 4000 }\n",
        "      memo:     { type: int, optional: true }\n",
    );
    let (code, json) = generate_json(&retyped, &out);
    assert_eq!(code, 4, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`invoice.memo` changes type"),
        "{json}"
    );
    assert_eq!(migrations(&out), before, "nothing written");
    // The marker must name a field that is gone, and a field that is there.
    for (marker, message) in [
        ("invoice.status: memo", "which the spec still has"),
        ("invoice.notes: nowhere", "`invoice` has no field `nowhere`"),
        ("notes: memo", "no resource `memo` to rename `notes` to"),
        (
            "invoice..notes: memo",
            "is neither a resource nor a `resource.field`",
        ),
        ("bill.notes: memo", "no resource `bill`"),
        ("invoice: customer", "which the spec still has"),
        (
            "bill: customer\n    account: customer",
            "are both renamed to `customer`",
        ),
    ] {
        let spec = ledgerly_renamed().replace(
            "    invoice.notes: memo\n    invoice.total: amount\n",
            &format!("    {marker}\n    invoice.total: amount\n"),
        );
        let (code, json) = generate_json(&spec, &out);
        assert_eq!(code, 1, "{marker}: {json}");
        assert!(json.to_string().contains(message), "{marker}: {json}");
    }
}

#[test]
fn changes_that_could_lose_or_break_data_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    assert_eq!(generate_json(&ledgerly(), &out).0, 0);
    let before = migrations(&out);
    let manifest = std::fs::read(out.join(".bulwark/manifest.json")).unwrap();
    let field = "      vat_id: { type: string, max: 32, optional: true }\n";
    for (spec, reason) in [
        (ledgerly().replace(field, ""), "`customer.vat_id` is no longer in the spec"),
        (
            ledgerly().replace("  customer:\n", "  client:\n").replace("to: customer", "to: client").replace("resource: customer", "resource: client"),
            "`customer` is no longer in the spec",
        ),
        (
            ledgerly().replace(field, "      vat_id: { type: int, optional: true }\n"),
            "`customer.vat_id` changes type",
        ),
        (
            ledgerly().replace(field, "      vat_id: { type: string, max: 32 }\n"),
            "`customer.vat_id` becomes required",
        ),
        (
            ledgerly().replace(field, "      vat_id: { type: string, max: 16, optional: true }\n"),
            "`customer.vat_id` changes its constraint",
        ),
        (
            ledgerly().replace(field, "      vat_id: { type: string, max: 32, optional: true, unique: true }\n"),
            "gains a uniqueness rule",
        ),
        (
            ledgerly().replace(field, &format!("{field}      segment: {{ type: string, max: 10 }}\n")),
            "`customer.segment` is new and required without a default",
        ),
        (
            ledgerly()
                .replace("    description: Reference exchange rates, published to everyone\n    global: true\n", "    description: Reference exchange rates\n")
                .replace(
                    "      read: { public: true, reason: published reference data, rate_limit: 60/min }\n      list: { public: true, reason: published reference data, rate_limit: 60/min }\n",
                    "      read: { roles: [owner], scope: rates.admin }\n",
                ),
            "`exchange_rate` becomes tenant-scoped: its stored rows belong to no tenant; add `exchange_rate: tenant` under `migrations.tenancy`",
        ),
        (
            ledgerly_customers_global().replace("migrations:\n  tenancy: { customer: global }\n\n", ""),
            "`customer` becomes global: every tenant's stored rows would be shared by all tenants; add `customer: global` under `migrations.tenancy`",
        ),
    ] {
        let (code, json) = generate_json(&spec, &out);
        assert_eq!(code, 4, "{reason}: {json}");
        assert!(json["error"]["message"].as_str().unwrap().contains(reason), "{reason}: {json}");
        assert_eq!(migrations(&out), before, "{reason}: nothing written");
        assert_eq!(std::fs::read(out.join(".bulwark/manifest.json")).unwrap(), manifest);
    }
    // The acknowledgement must name something the spec no longer has.
    let (code, json) = generate_json(
        &format!("{}\nmigrations:\n  drop: [customer.name]\n", ledgerly()),
        &out,
    );
    assert_eq!(code, 1, "{json}");
    assert!(
        json.to_string().contains("which the spec still has"),
        "{json}"
    );
}

#[test]
fn a_branch_evolves_from_its_tip() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let run = |args: &[&str]| {
        let status = Command::new("git").args(args).arg(&repo).status().unwrap();
        assert!(status.success());
    };
    run(&["init", "-q", "--bare"]);
    for (version, spec) in [("v1", ledgerly()), ("v2", ledgerly_v2())] {
        let file = work.path().join(format!("{version}.yaml"));
        std::fs::write(&file, spec).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
            .args(["generate"])
            .arg(&file)
            .arg("--git")
            .arg(&repo)
            .args(["--branch", "generated"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let git = |args: &[&str]| common::git(&repo, args);
    let listed = git(&["ls-tree", "--name-only", "generated", "migrations/"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert_eq!(
        git(&["rev-parse", "generated:migrations/0001_init.sql"]),
        git(&["rev-parse", "generated^:migrations/0001_init.sql"]),
        "the first migration's blob is the same in both generations"
    );
    // `check` renders against the tip's own history: no drift.
    let file = work.path().join("v2.yaml");
    let status = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .arg("check")
        .arg(&file)
        .arg("--git")
        .arg(&repo)
        .args(["--branch", "generated"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// ledgerly's customer with rules its stored rows were never held to, each acknowledged:
/// `vat_id` made required (empty ones filled), a new required `segment` (filled), `country`
/// allowed three letters, `email` unique.
fn ledgerly_checked() -> String {
    ledgerly()
        .replace(
            "      email: { type: email, pii: true }\n      vat_id: { type: string, max: 32, optional: true }\n      country: { type: string, max: 2 }\n",
            "      email: { type: email, pii: true, unique: true }\n      vat_id: { type: string, max: 32 }\n      country: { type: string, max: 3 }\n      segment: { type: string, max: 10 }\n",
        )
        .replace(
            "payments:",
            "migrations:\n  check: [customer.country, customer.email]\n  backfill:\n    customer.vat_id: none\n    customer.segment: retail\n\npayments:",
        )
}

/// ledgerly applied with two customers (Beta without a VAT id), then `spec` generated on
/// top: the database (kept while the `Scratch` lives) and the new migration, not applied.
fn on_two_customers(spec: &str) -> (tempfile::TempDir, Scratch, postgres::Client, String) {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (scratch, mut db) = first_generation_applied(&out);
    two_customers(&mut db);
    let all = next_generation(&out, spec);
    let sql = all[1].1.clone();
    (work, scratch, db, sql)
}

fn two_customers(db: &mut postgres::Client) {
    db.batch_execute(
        "INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-00000000000a', 'a');
         INSERT INTO customer (id, tenant_id, name, email, vat_id, country) VALUES
           ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-00000000000a', 'Acme', 'ap@acme.test', '12345', 'DE'),
           ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-00000000000a', 'Beta', 'ap@beta.test', NULL, 'FR');",
    )
    .unwrap();
}

#[test]
fn acknowledged_rules_are_applied_to_the_stored_rows() {
    let (_work, _scratch, mut db, sql) = on_two_customers(&ledgerly_checked());
    let sql = &sql;
    assert_contains_all(
        sql,
        &[
            "ALTER TABLE \"customer\" ADD COLUMN \"segment\" text NOT NULL DEFAULT 'retail'",
            "ALTER TABLE \"customer\" ALTER COLUMN \"segment\" DROP DEFAULT;",
            "UPDATE \"customer\" SET \"vat_id\" = 'none' WHERE \"vat_id\" IS NULL;",
            "ALTER TABLE \"customer\" ALTER COLUMN \"vat_id\" SET NOT NULL;",
            "ALTER TABLE \"customer\" ADD CHECK (char_length(\"country\") <= 3);",
            "ALTER TABLE \"customer\" ADD UNIQUE (\"tenant_id\", \"email\") DEFERRABLE INITIALLY DEFERRED;",
        ],
    );
    db.batch_execute(sql).unwrap();
    let rows: Vec<(String, String, String)> = db
        .query(
            "SELECT name, vat_id, segment FROM customer ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            ("Acme".into(), "12345".into(), "retail".into()),
            ("Beta".into(), "none".into(), "retail".into())
        ]
    );
    let insert = |db: &mut postgres::Client, id: u8, email: &str, country: &str, segment: &str| {
        db.batch_execute(&format!(
            "INSERT INTO customer (id, tenant_id, name, email, vat_id, country{}) VALUES
               ('00000000-0000-0000-0000-0000000000{id:02}', '00000000-0000-0000-0000-00000000000a', 'New', '{email}', 'x', '{country}'{})",
            if segment.is_empty() { "" } else { ", segment" },
            if segment.is_empty() { String::new() } else { format!(", '{segment}'") },
        ))
    };
    assert!(
        insert(&mut db, 4, "new@x.test", "DEU", "smb").is_ok(),
        "three letters now fit"
    );
    assert!(
        insert(&mut db, 5, "new@x.test", "DE", "smb").is_err(),
        "email is unique"
    );
    assert!(
        insert(&mut db, 6, "other@x.test", "DEUT", "smb").is_err(),
        "at most three"
    );
    assert!(
        insert(&mut db, 7, "third@x.test", "DE", "").is_err(),
        "segment keeps no default"
    );
}

#[test]
fn a_constraint_stored_rows_already_meet_needs_no_marker() {
    // A longer country code and one more invoice status: every stored value still fits.
    let spec = ledgerly()
        .replace(
            "      country: { type: string, max: 2 }\n",
            "      country: { type: string, max: 3 }\n",
        )
        .replace(
            "values: [draft, open, paid, void]",
            "values: [draft, open, paid, void, overdue]",
        );
    let (_work, _scratch, mut db, sql) = on_two_customers(&spec);
    assert_contains_all(
        &sql,
        &[
            "ALTER TABLE \"customer\" ADD CHECK (char_length(\"country\") <= 3);",
            "ALTER TABLE \"invoice\" ADD CHECK (\"status\" IN ('draft', 'open', 'paid', 'void', 'overdue'));",
        ],
    );
    db.batch_execute(&sql).unwrap();
    let country = |db: &mut postgres::Client, country: &str| {
        db.batch_execute(&format!(
            "UPDATE customer SET country = '{country}' WHERE name = 'Acme'"
        ))
    };
    assert!(country(&mut db, "DEU").is_ok(), "three letters now fit");
    assert!(country(&mut db, "DEUT").is_err(), "at most three");
    // Narrowed again, the same change is refused without `migrations.check`.
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (code, json) = generate_json(&spec, &out);
    assert_eq!(code, 0, "{json}");
    let (code, json) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 4, "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`customer.country` changes its constraint"),
        "{message}"
    );
    assert!(
        message.contains("`invoice.status` changes its constraint"),
        "{message}"
    );
}

#[test]
fn a_checked_change_that_stored_rows_break_fails_whole() {
    // Names of at most three characters: "Acme" breaks it.
    let spec = ledgerly()
        .replace(
            "      name:  { type: string, max: 200 }\n",
            "      name:  { type: string, max: 3 }\n",
        )
        .replace(
            "payments:",
            "migrations:\n  check: [customer.name]\n\npayments:",
        );
    let (_work, _scratch, mut db, sql) = on_two_customers(&spec);
    let sql = &sql;
    assert!(sql.contains("DROP CONSTRAINT"), "{sql}");
    assert!(db.batch_execute(sql).is_err(), "Acme is longer than three");
    // Nothing changed: the old rule still holds, the new one was not added.
    let long = "x".repeat(200);
    db.batch_execute(&format!(
        "UPDATE customer SET name = '{long}' WHERE name = 'Acme'"
    ))
    .unwrap();
    assert!(
        db.batch_execute(&format!(
            "UPDATE customer SET name = '{long}x' WHERE name = 'Beta'"
        ))
        .is_err(),
        "the 200-character limit is still there"
    );
}

#[test]
fn a_checked_type_change_converts_stored_values() {
    let spec = ledgerly()
        .replace(
            "      vat_id: { type: string, max: 32, optional: true }\n",
            "      vat_id: { type: int, optional: true, min: 1 }\n",
        )
        .replace(
            "payments:",
            "migrations:\n  check: [customer.vat_id]\n\npayments:",
        );
    let (_work, _scratch, mut db, sql) = on_two_customers(&spec);
    let sql = &sql;
    assert_contains_all(
        sql,
        &[
            "ALTER TABLE \"customer\" ALTER COLUMN \"vat_id\" TYPE bigint USING \"vat_id\"::bigint;",
            "ALTER TABLE \"customer\" ADD CHECK (\"vat_id\" >= 1);",
        ],
    );
    db.batch_execute(sql).unwrap();
    let values: Vec<Option<i64>> = db
        .query("SELECT vat_id FROM customer ORDER BY name", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(values, [Some(12345), None]);
    assert!(
        db.batch_execute("UPDATE customer SET vat_id = 0 WHERE name = 'Acme'")
            .is_err(),
        "its new constraint holds"
    );
}

#[test]
fn markers_name_fields_the_spec_has_and_backfills_fit_them() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    for (migrations, message) in [
        (
            "  check: [customer.nope]\n",
            "`migrations.check` names `customer.nope`, which is not a field of the spec",
        ),
        (
            "  backfill: { customer.vat_id: x }\n",
            "`migrations.backfill` fills `customer.vat_id`, which is optional",
        ),
        (
            "  backfill: { customer.name: 3 }\n",
            "value `3` does not fit field `name`",
        ),
        (
            "  backfill: { customer.country: DEU }\n",
            "the length of this value (3) is outside the field's bounds",
        ),
    ] {
        let spec = ledgerly().replace(
            "payments:",
            &format!("migrations:\n{migrations}\npayments:"),
        );
        let (code, json) = generate_json(&spec, &out);
        assert_eq!(code, 1, "{json}");
        assert!(json.to_string().contains(message), "{message}: {json}");
        assert!(!out.exists(), "nothing written");
    }
}

/// ledgerly with exchange rates kept per tenant (acknowledged).
fn ledgerly_rates_per_tenant() -> String {
    ledgerly()
        .replace(
            "    description: Reference exchange rates, published to everyone\n    global: true\n",
            "    description: Exchange rates each agency keeps\n",
        )
        .replace(
            "      read: { public: true, reason: published reference data, rate_limit: 60/min }\n      list: { public: true, reason: published reference data, rate_limit: 60/min }\n",
            "      read: { roles: [owner], scope: invoices.read }\n      list: { roles: [owner], scope: invoices.read }\n",
        )
        .replace("payments:", "migrations:\n  tenancy: { exchange_rate: tenant }\n\npayments:")
}

#[test]
fn tables_of_a_release_that_checked_keys_at_once_are_converted_to_check_them_at_commit() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (code, json) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 0, "{json}");
    // The database and manifest as an earlier release left them: rules checked at once,
    // references ON DELETE RESTRICT, no `keys_deferred` in the recorded tables.
    let first = migrations(&out);
    let earlier = first[0]
        .1
        .replace(") DEFERRABLE INITIALLY DEFERRED;", ") ON DELETE RESTRICT;")
        .replace(" DEFERRABLE INITIALLY DEFERRED", "");
    assert!(!earlier.contains("DEFERRABLE"));
    let scratch = Scratch::new();
    let mut db = scratch.connect();
    db.batch_execute(&earlier).unwrap();
    rated_invoices(&mut db);
    let manifest_path = out.join(".bulwark/manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    for table in manifest["schema"].as_array_mut().expect("recorded tables") {
        table
            .as_object_mut()
            .unwrap()
            .remove("keys_deferred")
            .expect("marked");
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();

    let all = next_generation(&out, &ledgerly());
    let sql = &all[1].1;
    assert!(all[1].0.contains("references_checked"), "{}", all[1].0);
    db.batch_execute(sql).unwrap();
    let immediate: Vec<String> = db
        .query(
            "SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid IN ('customer'::regclass, 'invoice'::regclass, 'exchange_rate'::regclass)
               AND ((contype = 'u' AND pg_get_constraintdef(oid) <> 'UNIQUE (tenant_id, id)')
                 OR (contype = 'f' AND confrelid <> 'tenants'::regclass))
               AND (NOT condeferrable OR NOT condeferred OR confdeltype = 'r')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(immediate, Vec::<String>::new(), "still checked at once");
    let deferred: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE condeferrable AND condeferred
               AND conrelid IN ('invoice'::regclass, 'exchange_rate'::regclass)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        deferred, 4,
        "invoice's number and two references, exchange_rate's currency"
    );
    // Nothing left to convert: the next generation changes nothing.
    let (code, json) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 0, "{json}");
    assert_eq!(migrations(&out).len(), 2);

    // The audit of the database side agrees: the earlier release's first migration leaves
    // its keys checked at once, and the conversion after it makes them wait.
    std::fs::write(out.join("migrations/0001_init.sql"), &earlier).unwrap();
    let (code, json) = audit_database(&out);
    assert_eq!(code, 0, "{json}");
    std::fs::remove_file(out.join("migrations").join(&all[1].0)).unwrap();
    let (code, json) = audit_database(&out);
    assert_eq!(code, 3, "{json}");
    let found: Vec<String> = json["database_findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["source"], "migrations/0001_init.sql", "{f}");
            format!(
                "{}: {}",
                f["object"].as_str().unwrap(),
                f["message"].as_str().unwrap()
            )
        })
        .collect();
    for (table, constraint) in [
        ("invoice", "invoice_tenant_id_number_key"),
        ("invoice", "invoice_tenant_id_customer_fkey"),
        ("invoice", "invoice_rate_fkey"),
        ("exchange_rate", "exchange_rate_currency_key"),
    ] {
        let start = format!("table \"{table}\": constraint \"{constraint}\"");
        assert!(
            found.iter().any(|f| f.starts_with(&start)),
            "{start}: {found:#?}"
        );
    }
    assert_eq!(found.len(), 4, "{found:#?}");
}

/// ledgerly whose exchange rates name their market, a second global resource.
fn ledgerly_rates_with_markets() -> String {
    ledgerly().replace(
        "      published_at: { type: timestamp }\n    actions:\n      read: { public: true, reason: published reference data, rate_limit: 60/min }\n      list: { public: true, reason: published reference data, rate_limit: 60/min }\n",
        "      published_at: { type: timestamp }\n      market: { type: reference, to: market, optional: true }\n    actions:\n      read: { public: true, reason: published reference data, rate_limit: 60/min }\n      list: { public: true, reason: published reference data, rate_limit: 60/min }\n\n  market:\n    description: Where rates are quoted\n    global: true\n    fields:\n      name: { type: string, max: 40 }\n    actions:\n      read: { public: true, reason: published reference data, rate_limit: 60/min }\n",
    )
}

#[test]
fn a_global_resource_referring_to_another_is_made_tenant_scoped_with_its_rows() {
    // Copying the rows queues the checks of their (deferred) references; the migration makes
    // them immediate, since PostgreSQL refuses to alter a table with checks pending.
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let before = ledgerly_rates_with_markets();
    assert_ne!(before, ledgerly(), "the spec has markets");
    let (_scratch, mut db) = generation_applied(&before, &out);
    rated_invoices(&mut db);
    db.batch_execute(
        "INSERT INTO market (id, name) VALUES ('00000000-0000-0000-0000-0000000000d1', 'Frankfurt');
         UPDATE exchange_rate SET market = '00000000-0000-0000-0000-0000000000d1';",
    )
    .unwrap();
    let after = before
        .replace(
            "    description: Reference exchange rates, published to everyone\n    global: true\n",
            "    description: Exchange rates each agency keeps\n",
        )
        .replacen(
            "      read: { public: true, reason: published reference data, rate_limit: 60/min }\n      list: { public: true, reason: published reference data, rate_limit: 60/min }\n",
            "      read: { roles: [owner], scope: invoices.read }\n      list: { roles: [owner], scope: invoices.read }\n",
            1,
        )
        .replace("payments:", "migrations:\n  tenancy: { exchange_rate: tenant }\n\npayments:");
    let all = next_generation(&out, &after);
    let sql = &all[1].1;
    assert!(sql.contains("SET CONSTRAINTS ALL IMMEDIATE;"), "{sql}");
    db.batch_execute(sql).unwrap();
    let copies: i64 = db
        .query_one(
            "SELECT count(*) FROM exchange_rate WHERE market = '00000000-0000-0000-0000-0000000000d1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        copies, 4,
        "each tenant's copy of each rate keeps its market"
    );
}

/// Two tenants, two exchange rates (EUR, USD), a customer and an invoice at the EUR rate in
/// each tenant, and an invoice without a rate in tenant a.
fn rated_invoices(db: &mut postgres::Client) {
    db.batch_execute(
        "INSERT INTO tenants (id, name) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'a'), ('00000000-0000-0000-0000-00000000000b', 'b');
         INSERT INTO exchange_rate (id, currency, rate, published_at) VALUES
           ('00000000-0000-0000-0000-0000000000e1', 'EUR', 1.0, '2026-11-01'),
           ('00000000-0000-0000-0000-0000000000e2', 'USD', 1.1, '2026-11-01');
         INSERT INTO customer (id, tenant_id, name, email, country) VALUES
           ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-00000000000a', 'Acme', 'ap@acme.test', 'DE'),
           ('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-00000000000b', 'Beta', 'ap@beta.test', 'FR');
         INSERT INTO invoice (id, tenant_id, customer, number, total_minor, total_currency, issued_on, owner, rate) VALUES
           ('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000c1', 'A-1', 100, 'EUR', '2026-11-02', 'u', '00000000-0000-0000-0000-0000000000e1'),
           ('00000000-0000-0000-0000-0000000000f2', '00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-0000000000c2', 'B-1', 200, 'EUR', '2026-11-02', 'u', '00000000-0000-0000-0000-0000000000e1'),
           ('00000000-0000-0000-0000-0000000000f3', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000c1', 'A-2', 300, 'EUR', '2026-11-02', 'u', NULL);",
    )
    .unwrap();
}

/// Runs `bulwark audit OUT --database URL`: its exit code and JSON.
/// `bulwark audit OUT --spec SPEC --database URL`, SPEC being the spec last generated into
/// OUT (written beside it).
fn audit_database(out: &Path) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["--format", "json", "audit"])
        .arg(out)
        .arg("--spec")
        .arg(out.with_extension("yaml"))
        .args(["--database", &database_url()])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap(), json)
}

#[test]
fn a_global_resource_made_tenant_scoped_gives_each_tenant_its_own_rows() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (_scratch, mut db) = generation_applied(&ledgerly(), &out);
    rated_invoices(&mut db);
    let all = next_generation(&out, &ledgerly_rates_per_tenant());
    let sql = &all[1].1;
    assert_contains_all(
        sql,
        &[
            "exchange_rate tenant-scoped",
            "ALTER TABLE \"exchange_rate\" ADD COLUMN \"tenant_id\" uuid REFERENCES \"tenants\" (\"id\");",
            "ALTER TABLE \"exchange_rate\" FORCE ROW LEVEL SECURITY;",
            "ALTER TABLE \"exchange_rate\" ADD UNIQUE (\"tenant_id\", \"currency\") DEFERRABLE INITIALLY DEFERRED;",
            "ALTER TABLE \"invoice\" ADD FOREIGN KEY (\"tenant_id\", \"rate\") REFERENCES \"exchange_rate\" (\"tenant_id\", \"id\")",
        ],
    );
    db.batch_execute(sql).unwrap();
    // Each tenant has its own copy of both rates, under new ids.
    let rates: Vec<(String, String)> = db
        .query(
            "SELECT n.name, e.currency FROM exchange_rate e JOIN tenants n ON n.id = e.tenant_id ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let pair = |t: &str, c: &str| (t.to_owned(), c.to_owned());
    assert_eq!(
        rates,
        [
            pair("a", "EUR"),
            pair("a", "USD"),
            pair("b", "EUR"),
            pair("b", "USD")
        ]
    );
    let originals: i64 = db
        .query_one(
            "SELECT count(*) FROM exchange_rate WHERE id IN ('00000000-0000-0000-0000-0000000000e1', '00000000-0000-0000-0000-0000000000e2')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(originals, 0);
    // Every invoice points at its own tenant's copy of the rate it had.
    let invoices: Vec<(String, Option<String>, bool)> = db
        .query(
            "SELECT i.number, e.currency, e.tenant_id = i.tenant_id FROM invoice i LEFT JOIN exchange_rate e ON e.id = i.rate ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get::<_, Option<bool>>(2).unwrap_or(true)))
        .collect();
    assert_eq!(
        invoices,
        [
            ("A-1".into(), Some("EUR".into()), true),
            ("A-2".into(), None, true),
            ("B-1".into(), Some("EUR".into()), true)
        ]
    );
    // Isolated like any tenant table: forced row-level security, keys inside the tenant.
    let forced = forced_row_security(&mut db, "exchange_rate");
    assert!(forced);
    let cross = db.batch_execute(
        "UPDATE invoice SET rate = (SELECT id FROM exchange_rate WHERE tenant_id = '00000000-0000-0000-0000-00000000000b' AND currency = 'USD') WHERE number = 'A-1'",
    );
    assert!(cross.is_err(), "an invoice of a cannot point at b's rate");
    let twice = db.batch_execute(
        "INSERT INTO exchange_rate (id, tenant_id, currency, rate, published_at) VALUES
           ('00000000-0000-0000-0000-0000000000e3', '00000000-0000-0000-0000-00000000000a', 'EUR', 2, now())",
    );
    assert!(twice.is_err(), "a tenant's currencies stay unique");
    // The database side of the audit finds nothing on the evolved migrations.
    let (code, json) = audit_database(&out);
    assert_eq!(code, 0, "{json}");
}

#[test]
fn rows_without_a_tenant_to_go_to_fail_the_move_whole() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (_scratch, mut db) = generation_applied(&ledgerly(), &out);
    db.batch_execute(
        "INSERT INTO exchange_rate (id, currency, rate, published_at) VALUES
           ('00000000-0000-0000-0000-0000000000e1', 'EUR', 1.0, '2026-11-01')",
    )
    .unwrap();
    let all = next_generation(&out, &ledgerly_rates_per_tenant());
    let error = db.batch_execute(&all[1].1).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("there is no tenant to give them to")
            || format!("{error:?}").contains("there is no tenant to give them to"),
        "{error:?}"
    );
    // Nothing changed: the rate is still shared.
    let shared: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'exchange_rate' AND column_name = 'tenant_id'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(shared, 0);
}

/// ledgerly whose customers are shared by every agency (acknowledged), read-only to them;
/// with `unique_email`, customers' emails are unique (in their tenant before, everywhere after).
fn ledgerly_customers_global() -> String {
    ledgerly()
        .replace(
            "  customer:\n    description: A client of the agency\n",
            "  customer:\n    description: A client of the agency\n    global: true\n",
        )
        .replace(
            "      create: { roles: [owner, finance], scope: invoices.write }\n      update: { roles: [owner, finance], scope: invoices.write }\n      delete: { roles: [owner], scope: invoices.write, rate_limit: 10/min }\n    threats:\n      - stride: information_disclosure\n        risk: customer contact data read by another agency\n        mitigation: tenant-scoped table under forced row-level security\n",
            "",
        )
        .replace("payments:", "migrations:\n  tenancy: { customer: global }\n\npayments:")
}

fn unique_email(spec: &str) -> String {
    spec.replace(
        "      email: { type: email, pii: true }\n",
        "      email: { type: email, pii: true, unique: true }\n",
    )
}

#[test]
fn a_tenant_resource_made_global_shares_every_tenants_rows() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (_scratch, mut db) = generation_applied(&unique_email(&ledgerly()), &out);
    rated_invoices(&mut db);
    let all = next_generation(&out, &unique_email(&ledgerly_customers_global()));
    let sql = &all[1].1;
    assert_contains_all(
        sql,
        &[
            "customer global",
            "ALTER TABLE \"customer\" DISABLE ROW LEVEL SECURITY;",
            "ALTER TABLE \"customer\" DROP COLUMN \"tenant_id\";",
            "ALTER TABLE \"customer\" ADD UNIQUE (\"email\") DEFERRABLE INITIALLY DEFERRED;",
            "ALTER TABLE \"invoice\" ADD FOREIGN KEY (\"customer\") REFERENCES \"customer\" (\"id\")",
        ],
    );
    db.batch_execute(sql).unwrap();
    let customers: Vec<String> = db
        .query("SELECT name FROM customer ORDER BY name", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(customers, ["Acme", "Beta"]);
    let row = db
        .query_one(
            "SELECT relrowsecurity, (SELECT count(*) FROM pg_proc WHERE proname LIKE 'customer\\_%') FROM pg_class WHERE relname = 'customer'",
            &[],
        )
        .unwrap();
    let (rls, functions): (bool, i64) = (row.get(0), row.get(1));
    assert!(!rls, "no row-level security on a shared table");
    assert_eq!(functions, 0);
    // Tenant b's invoice may now name tenant a's customer; an email is unique everywhere.
    db.batch_execute(
        "UPDATE invoice SET customer = '00000000-0000-0000-0000-0000000000c1' WHERE number = 'B-1'",
    )
    .unwrap();
    let twice = db.batch_execute(
        "INSERT INTO customer (id, name, email, country) VALUES ('00000000-0000-0000-0000-0000000000c3', 'Gamma', 'ap@acme.test', 'DE')",
    );
    assert!(
        twice.is_err(),
        "emails are unique across what was two tenants"
    );
    let (code, json) = audit_database(&out);
    assert_eq!(code, 0, "{json}");
}

#[test]
fn rows_that_break_a_rule_spanning_tenants_fail_the_move_whole() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (_scratch, mut db) = generation_applied(&unique_email(&ledgerly()), &out);
    db.batch_execute(
        "INSERT INTO tenants (id, name) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'a'), ('00000000-0000-0000-0000-00000000000b', 'b');
         INSERT INTO customer (id, tenant_id, name, email, country) VALUES
           ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-00000000000a', 'Acme', 'ap@same.test', 'DE'),
           ('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-00000000000b', 'Beta', 'ap@same.test', 'FR');",
    )
    .unwrap();
    let all = next_generation(&out, &unique_email(&ledgerly_customers_global()));
    assert!(
        db.batch_execute(&all[1].1).is_err(),
        "two customers share an email"
    );
    let forced = forced_row_security(&mut db, "customer");
    assert!(forced, "still tenant-scoped: nothing changed");
}

#[test]
fn a_reference_pointed_elsewhere_loses_its_old_key() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("ledgerly");
    let (_scratch, mut db) = generation_applied(&ledgerly(), &out);
    two_customers(&mut db);
    db.batch_execute(
        "INSERT INTO invoice (id, tenant_id, customer, number, total_minor, total_currency, issued_on, owner) VALUES
           ('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'A-1', 100, 'EUR', '2026-11-02', 'u')",
    )
    .unwrap();
    // `rate` now names the customer who set the rate (checked: no stored row breaks it).
    let spec = ledgerly()
        .replace(
            "rate:     { type: reference, to: exchange_rate, optional: true }",
            "rate:     { type: reference, to: customer, optional: true }",
        )
        .replace(
            "payments:",
            "migrations:\n  check: [invoice.rate]\n\npayments:",
        );
    let all = next_generation(&out, &spec);
    let sql = &all[1].1;
    assert!(
        sql.contains("con.confrelid = '\"exchange_rate\"'::regclass"),
        "{sql}"
    );
    assert!(
        sql.contains("Changes of ledgerly since the previous generation: invoice.rate reference."),
        "{sql}"
    );
    db.batch_execute(sql).unwrap();
    db.batch_execute(
        "UPDATE invoice SET rate = '00000000-0000-0000-0000-000000000002' WHERE number = 'A-1'",
    )
    .unwrap();
    assert!(
        db.batch_execute(
            "UPDATE invoice SET rate = '00000000-0000-0000-0000-0000000000e9' WHERE number = 'A-1'"
        )
        .is_err(),
        "the new key holds"
    );
    // Pointed at another tenant resource: the same columns, whose index stays.
    let (code, json) = generate_json(
        &spec.replace(
            "to: customer, optional: true",
            "to: invoice, optional: true",
        ),
        &out,
    );
    assert_eq!(code, 0, "{json}");
    let all = migrations(&out);
    let sql = &all[2].1;
    assert!(
        sql.contains("REFERENCES \"invoice\" (\"tenant_id\", \"id\")"),
        "{sql}"
    );
    assert!(
        !sql.contains("CREATE INDEX"),
        "its columns' index stays: {sql}"
    );
    assert!(
        db.batch_execute(sql).is_err(),
        "A-1 names a customer, not an invoice: checked, the migration fails"
    );
    db.batch_execute("UPDATE invoice SET rate = NULL").unwrap();
    db.batch_execute(sql).unwrap();
    db.batch_execute(
        "UPDATE invoice SET rate = '00000000-0000-0000-0000-0000000000f1' WHERE number = 'A-1'",
    )
    .unwrap();
}

#[test]
fn a_new_migration_takes_a_number_after_those_written_by_hand() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let (code, json) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 0, "{json}");
    let own = "CREATE INDEX customer_by_country ON customer (country);\n";
    std::fs::write(out.join("migrations/0002_custom_index.sql"), own).unwrap();
    let (code, json) = generate_json(&ledgerly_v2(), &out);
    assert_eq!(code, 0, "{json}");
    let names: Vec<String> = migrations(&out).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "0001_init.sql");
    assert_eq!(names[1], "0002_custom_index.sql");
    assert!(names[2].starts_with("0003_"), "{names:?}");
    let kept = std::fs::read_to_string(out.join("migrations/0002_custom_index.sql")).unwrap();
    assert_eq!(kept, own);
}

/// A generated migration is kept byte for byte, so an edit to one would pass for generated
/// output from then on: refused, forced or not, and nothing written.
#[test]
fn a_generated_migration_edited_by_hand_is_refused_even_forced() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let (code, json) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 0, "{json}");
    let init = out.join("migrations/0001_init.sql");
    let generated = std::fs::read_to_string(&init).unwrap();
    let edited: String = generated
        .lines()
        .filter(|line| !line.contains("FORCE ROW LEVEL SECURITY"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(edited, generated);
    std::fs::write(&init, &edited).unwrap();
    let manifest = std::fs::read(out.join(".bulwark/manifest.json")).unwrap();
    for extra in [&[][..], &["--force"]] {
        let (code, json) = generate_with(&ledgerly_v2(), &out, extra);
        assert_eq!(code, 4, "{extra:?}: {json}");
        let message = json.to_string();
        assert!(message.contains("migrations/0001_init.sql"), "{message}");
        assert!(message.contains("edited by hand"), "{message}");
        assert_eq!(std::fs::read_to_string(&init).unwrap(), edited);
        assert_eq!(
            std::fs::read(out.join(".bulwark/manifest.json")).unwrap(),
            manifest
        );
    }
    std::fs::write(&init, &generated).unwrap();
    let (code, json) = generate_json(&ledgerly_v2(), &out);
    assert_eq!(code, 0, "restored: {json}");
}

/// Two directories under `work`: `interrupted` holding ledgerly's first generation, `whole`
/// holding its first and then `ledgerly_v2`'s.
fn first_and_second(work: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (interrupted, whole) = (work.join("interrupted"), work.join("whole"));
    for out in [&interrupted, &whole] {
        let (code, json) = generate_json(&ledgerly(), out);
        assert_eq!(code, 0, "{json}");
    }
    let (code, json) = generate_json(&ledgerly_v2(), &whole);
    assert_eq!(code, 0, "{json}");
    (interrupted, whole)
}

/// A run interrupted after its files were renamed into place but before its manifest left
/// the new migration unrecorded; the next run takes it for its own instead of numbering a
/// second copy after it, also once a checkout has turned its line endings into CRLF.
#[test]
fn an_interrupted_generation_is_finished_without_a_second_migration() {
    for crlf in [false, true] {
        interrupted_generation_finished(crlf);
    }
}

fn interrupted_generation_finished(crlf: bool) {
    let work = tempfile::tempdir().unwrap();
    let (interrupted, whole) = first_and_second(work.path());
    // Every file of the second generation in place, the first one's manifest still there.
    let mut stack = vec![whole.clone()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(&whole).unwrap();
            if relative.starts_with(".bulwark") {
                continue;
            }
            if path.is_dir() {
                std::fs::create_dir_all(interrupted.join(relative)).unwrap();
                stack.push(path);
            } else if crlf && relative.starts_with("migrations") {
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(interrupted.join(relative), text.replace('\n', "\r\n")).unwrap();
            } else {
                std::fs::copy(&path, interrupted.join(relative)).unwrap();
            }
        }
    }
    let (code, json) = generate_json(&ledgerly_v2(), &interrupted);
    assert_eq!(code, 0, "crlf {crlf}: {json}");
    let lf = |all: Vec<(String, String)>| -> Vec<(String, String)> {
        all.into_iter()
            .map(|(name, text)| (name, text.replace("\r\n", "\n")))
            .collect()
    };
    assert_eq!(
        lf(migrations(&interrupted)),
        migrations(&whole),
        "crlf {crlf}"
    );
    let manifest = |out: &Path| std::fs::read(out.join(".bulwark/manifest.json")).unwrap();
    assert_eq!(manifest(&interrupted), manifest(&whole));
}

/// Without the manifest that recorded them, the migrations on disk are still never
/// rewritten: `--force` gets past the other files, not past a migration that differs.
#[test]
fn without_its_manifest_a_directory_keeps_its_migrations_even_forced() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    for spec in [ledgerly(), ledgerly_v2()] {
        let (code, json) = generate_json(&spec, &out);
        assert_eq!(code, 0, "{json}");
    }
    let before = migrations(&out);
    std::fs::remove_file(out.join(".bulwark/manifest.json")).unwrap();
    let (code, json) = generate_with(&ledgerly_v2(), &out, &["--force"]);
    assert_eq!(code, 4, "{json}");
    assert!(
        json.to_string().contains("migrations/0001_init.sql"),
        "{json}"
    );
    assert_eq!(migrations(&out), before);
}

/// A manifest without its record of the tables (an older bulwark's, or edited): the same
/// spec again changes nothing, a changed one is refused (forced too) rather than computed
/// from nothing, which would create every table a second time.
#[test]
fn a_manifest_without_its_tables_is_never_taken_for_an_empty_schema() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let (code, json) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 0, "{json}");
    let path = out.join(".bulwark/manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("schema");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let (code, json) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 0, "{json}");
    assert_eq!(migrations(&out).len(), 1, "no second migration");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    for extra in [&[][..], &["--force"]] {
        let (code, json) = generate_with(&ledgerly_v2(), &out, extra);
        assert_eq!(code, 4, "{extra:?}: {json}");
        assert!(json.to_string().contains("recorded no tables"), "{json}");
        assert_eq!(migrations(&out).len(), 1);
    }
}

/// A migration an interrupted run wrote for another spec is not numbered around (both
/// would be applied): refused until that run is finished or the file removed.
#[test]
fn an_interrupted_run_of_another_spec_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (interrupted, whole) = first_and_second(work.path());
    let (name, text) = migrations(&whole).pop().unwrap();
    std::fs::write(interrupted.join("migrations").join(&name), text).unwrap();
    let other = ledgerly().replace(
        "      country: { type: string, max: 2 }\n",
        "      country: { type: string, max: 2 }\n      phone: { type: string, max: 40, optional: true }\n",
    );
    let (code, json) = generate_json(&other, &interrupted);
    assert_eq!(code, 4, "{json}");
    assert!(json.to_string().contains("interrupted run"), "{json}");
    assert_eq!(migrations(&interrupted).len(), 2);
}

/// A project whose read and list functions were made before they declared
/// `#variable_conflict` (an older bulwark): a field added with a parameter's name
/// (`p_tenant`) gets the functions made anew, so reads keep working.
#[test]
fn a_field_named_like_a_parameter_remakes_older_read_functions() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let (code, json) = generate_json(&ledgerly(), &out);
    assert_eq!(code, 0, "{json}");
    // As an older bulwark wrote it: no directive, and the manifest records that text.
    let init = out.join("migrations/0001_init.sql");
    let older = std::fs::read_to_string(&init)
        .unwrap()
        .replace("#variable_conflict use_variable\n", "");
    std::fs::write(&init, &older).unwrap();
    let path = out.join(".bulwark/manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(older.as_bytes()));
    manifest["files"]["migrations/0001_init.sql"] = Value::String(hash);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let scratch = Scratch::new();
    let mut db = scratch.connect();
    db.batch_execute(&older).unwrap();
    let spec = ledgerly().replace(
        "      country: { type: string, max: 2 }\n",
        "      country: { type: string, max: 2 }\n      p_tenant: { type: uuid, optional: true }\n",
    );
    let all = next_generation(&out, &spec);
    assert!(all[1].1.contains("DROP FUNCTION IF EXISTS"), "{}", all[1].1);
    db.batch_execute(&all[1].1).unwrap();
    let tenant = "0190a0b0-0000-7000-8000-000000000001";
    let rows = db
        .query(
            "SELECT * FROM \"customer_read\"($1::text::uuid, $1::text::uuid)",
            &[&tenant],
        )
        .unwrap();
    assert!(rows.is_empty());
}

/// An application without resources records an empty schema, not none: its first resource
/// is an ordinary migration.
#[test]
fn an_application_without_resources_gains_its_first_one() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let empty = "bulwark: 1\napp:\n  name: empty\napi:\n  version: v1\n  scopes:\n    notes.read: Read notes\nroles:\n  admin: { description: Admin }\nresources: {}\n";
    let (code, json) = generate_json(empty, &out);
    assert_eq!(code, 0, "{json}");
    let with_one = empty.replace(
        "resources: {}\n",
        "resources:\n  note:\n    fields:\n      title: { type: string, max: 200 }\n    actions:\n      read: { roles: [admin], scope: notes.read }\n",
    );
    let all = next_generation(&out, &with_one);
    assert!(all[1].1.contains("CREATE TABLE \"note\""), "{}", all[1].1);
}
