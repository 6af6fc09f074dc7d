//! `bulwark audit DIR --database URL`: the database side of the audit. The project's
//! migrations are applied, as a fresh owner role, to a scratch database; the app role is
//! granted what the project's `grants` module grants (as the server's `migrate` does); then
//! the catalog is read. A finding is a tenant table (one with a `tenant_id` column, or one
//! the spec scopes to tenants) without forced row-level security, without a policy, or with
//! a policy that does not compare `tenant_id` to the transaction's tenant setting or lacks a
//! `WITH CHECK`; a `SECURITY DEFINER` function; a view without `security_invoker`, or any
//! materialized view; a privilege of the app role beyond what its actions need (or one they
//! need and it lacks), a grant to PUBLIC, the app role owning anything or being a member of
//! the owner; a uniqueness rule of a spec resource's table, or a reference from or to one,
//! that is checked at once rather than at commit, or a `RESTRICT` reference; and an owner or
//! app role with SUPERUSER or BYPASSRLS. Each finding names the first migration after which
//! it appeared. The scratch database and roles are dropped afterwards, whatever happened.

use crate::model::App;
use postgres::{Client, NoTls};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The project's grants module, whose constants say what `migrate` grants the app role.
const GRANTS_MODULE: &str = "crates/server/src/grants.rs";
/// Table privileges PostgreSQL knows; the app role may hold only those its actions need.
const TABLE_PRIVILEGES: [&str; 7] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// One problem found in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DatabaseFinding {
    /// The migration after which it first appeared (or the grants module, if only after the
    /// grants; `None` for the roles given on the command line).
    pub source: Option<String>,
    /// The object: `table "customer"`, `function caller_standing(uuid,text,text)`, ….
    pub object: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DatabaseError {
    #[error("cannot connect to the database: {0}")]
    #[diagnostic(
        code(bulwark::audit::connect),
        help(
            "pass a URL of a role that may create databases and roles, e.g. postgres://postgres@127.0.0.1:5432/test"
        )
    )]
    Connect(String),
    #[error("cannot prepare the scratch database: {0}")]
    #[diagnostic(
        code(bulwark::audit::scratch),
        help(
            "the role of --database must be able to create databases and roles (CREATEDB, CREATEROLE)"
        )
    )]
    Scratch(String),
    #[error("cannot read `{path}`: {message}")]
    #[diagnostic(code(bulwark::audit::io))]
    Io { path: String, message: String },
    #[error("{0}")]
    #[diagnostic(code(bulwark::audit::grants))]
    Grants(String),
    #[error("reading the catalog failed: {0}")]
    #[diagnostic(code(bulwark::audit::catalog))]
    Catalog(String),
}

/// Existing roles to audit with, in place of fresh scratch roles (the roles of a deployment).
#[derive(Clone, Debug, Default)]
pub struct Roles {
    pub owner: Option<String>,
    pub app: Option<String>,
}

/// What the project's grants module grants the app role.
struct Grants {
    /// Unquoted table name → privileges.
    tables: BTreeMap<String, BTreeSet<String>>,
    /// Function signatures as written (quoted names).
    functions: Vec<String>,
}

/// The spec's tables, unquoted (none without a spec).
struct SpecTables {
    /// Scoped to tenants.
    tenant: BTreeSet<String>,
    /// Every resource's, global ones too.
    resources: BTreeSet<String>,
}

/// Audits the database side of the project at `dir` on the server at `url`.
pub fn audit_database(
    dir: &Path,
    url: &str,
    spec: Option<&App>,
    roles: &Roles,
) -> Result<Vec<DatabaseFinding>, DatabaseError> {
    let migrations = migrations(dir)?;
    let granted = project_grants(dir)?;
    let expected = match spec {
        Some(app) => Grants {
            tables: crate::render::rust::grants::table_privileges(app)
                .into_iter()
                .map(|(table, privileges)| {
                    (
                        crate::render::escape::sql_unquote(&table),
                        privileges.into_iter().map(String::from).collect(),
                    )
                })
                .collect(),
            functions: crate::render::rust::grants::executable_functions(app),
        },
        None => Grants {
            tables: granted.tables.clone(),
            functions: granted.functions.clone(),
        },
    };
    let tables = SpecTables {
        tenant: spec
            .map(|app| {
                app.resources
                    .iter()
                    .filter(|r| !r.global)
                    .map(|r| r.table.clone())
                    .collect()
            })
            .unwrap_or_default(),
        resources: spec
            .map(|app| app.resources.iter().map(|r| r.table.clone()).collect())
            .unwrap_or_default(),
    };

    let config: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| DatabaseError::Connect(e.to_string()))?;
    let admin = config
        .connect(NoTls)
        .map_err(|e| DatabaseError::Connect(e.to_string()))?;
    let mut scratch = Scratch::create(admin, roles)?;
    let mut client = config
        .clone()
        .dbname(&scratch.database)
        .connect(NoTls)
        .map_err(|e| DatabaseError::Connect(e.to_string()))?;
    let owner = scratch.owner.clone();
    let app = scratch.app.clone();
    client
        .batch_execute(&format!("SET ROLE {}", ident(&owner)))
        .map_err(|e| DatabaseError::Scratch(e.to_string()))?;

    let mut first_seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut findings = Vec::new();
    let catalog = |client: &mut Client, after_grants: bool| {
        let mut found = Vec::new();
        check(
            client,
            &app,
            &owner,
            &tables,
            &expected,
            after_grants,
            &mut found,
        )
        .map(|()| found)
        .map_err(|e| DatabaseError::Catalog(e.to_string()))
    };
    let mut applied_all = true;
    for path in &migrations {
        let name = relative(dir, path);
        let sql = std::fs::read_to_string(path).map_err(|e| DatabaseError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        // As the server's `migrate` does: each file in a transaction of its own, as the owner.
        let applied = client
            .batch_execute("BEGIN")
            .and_then(|()| client.batch_execute(&sql))
            .and_then(|()| client.batch_execute("COMMIT"));
        if let Err(e) = applied {
            let _ = client.batch_execute("ROLLBACK");
            findings.push(DatabaseFinding {
                source: Some(name),
                object: "migration".into(),
                message: format!(
                    "fails when applied by a non-superuser owner role: {}",
                    db_message(&e)
                ),
            });
            applied_all = false;
            break;
        }
        for (object, message) in catalog(&mut client, false)? {
            first_seen.entry((object, message)).or_insert(name.clone());
        }
    }
    if applied_all {
        if let Err(e) = grant(&mut client, &app, &granted) {
            findings.push(DatabaseFinding {
                source: Some(GRANTS_MODULE.into()),
                object: "grants".into(),
                message: format!("granting the app role failed: {}", db_message(&e)),
            });
        } else {
            for (object, message) in catalog(&mut client, true)? {
                let source = first_seen
                    .get(&(object.clone(), message.clone()))
                    .cloned()
                    .unwrap_or_else(|| GRANTS_MODULE.into());
                findings.push(DatabaseFinding {
                    source: Some(source),
                    object,
                    message,
                });
            }
        }
    }
    drop(client);
    findings.extend(role_findings(&mut scratch, roles)?);
    scratch.drop_all();
    findings.sort();
    findings.dedup();
    Ok(findings)
}

/// The scratch database and roles; dropped on every path out.
struct Scratch {
    admin: Client,
    database: String,
    owner: String,
    app: String,
    /// Roles this audit created (and drops).
    created: Vec<String>,
}

impl Scratch {
    fn create(admin: Client, roles: &Roles) -> Result<Self, DatabaseError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let base = format!("bulwark_audit_{}_{nanos:x}", std::process::id());
        let mut scratch = Scratch {
            admin,
            database: base.clone(),
            owner: roles.owner.clone().unwrap_or(format!("{base}_owner")),
            app: roles.app.clone().unwrap_or(format!("{base}_app")),
            created: Vec::new(),
        };
        for (given, name) in [
            (&roles.owner, scratch.owner.clone()),
            (&roles.app, scratch.app.clone()),
        ] {
            if given.is_some() {
                let exists = scratch
                    .admin
                    .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
                    .map_err(|e| DatabaseError::Scratch(e.to_string()))?;
                if exists.is_none() {
                    scratch.drop_all();
                    return Err(DatabaseError::Scratch(format!(
                        "role `{name}` does not exist"
                    )));
                }
            } else {
                let made = scratch.admin.batch_execute(&format!(
                    "CREATE ROLE {} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
                    ident(&name)
                ));
                if let Err(e) = made {
                    scratch.drop_all();
                    return Err(DatabaseError::Scratch(db_message(&e)));
                }
                scratch.created.push(name);
            }
        }
        let made = scratch.admin.batch_execute(&format!(
            "CREATE DATABASE {} OWNER {}",
            ident(&scratch.database),
            ident(&scratch.owner)
        ));
        if let Err(e) = made {
            scratch.database.clear();
            scratch.drop_all();
            return Err(DatabaseError::Scratch(db_message(&e)));
        }
        Ok(scratch)
    }

    fn drop_all(&mut self) {
        if !self.database.is_empty() {
            let _ = self.admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&self.database)
            ));
            self.database.clear();
        }
        for role in std::mem::take(&mut self.created) {
            let _ = self
                .admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(&role)));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.drop_all();
    }
}

/// SUPERUSER or BYPASSRLS on the owner or the app role.
fn role_findings(
    scratch: &mut Scratch,
    roles: &Roles,
) -> Result<Vec<DatabaseFinding>, DatabaseError> {
    let mut findings = Vec::new();
    for (kind, name, given) in [
        ("owner", scratch.owner.clone(), roles.owner.is_some()),
        ("app", scratch.app.clone(), roles.app.is_some()),
    ] {
        let row = scratch
            .admin
            .query_one(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[&name],
            )
            .map_err(|e| DatabaseError::Catalog(e.to_string()))?;
        let (superuser, bypass): (bool, bool) = (row.get(0), row.get(1));
        let shown = if given { name.clone() } else { kind.to_owned() };
        for (held, attribute) in [(superuser, "SUPERUSER"), (bypass, "BYPASSRLS")] {
            if held {
                findings.push(DatabaseFinding {
                    source: None,
                    object: format!("{kind} role `{shown}`"),
                    message: format!("has {attribute}: row-level security does not apply to it"),
                });
            }
        }
    }
    Ok(findings)
}

/// Reads the catalog; `after_grants` adds the checks that need the app role's grants.
fn check(
    client: &mut Client,
    app: &str,
    owner: &str,
    spec_tables: &SpecTables,
    expected: &Grants,
    after_grants: bool,
    found: &mut Vec<(String, String)>,
) -> Result<(), postgres::Error> {
    let mut add = |object: String, message: &str| found.push((object, message.to_owned()));
    let tables = client.query(
        "SELECT c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity, \
             EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped), \
             pg_get_userbyid(c.relowner) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        &[],
    )?;
    let policies = client.query(
        "SELECT tablename::text, policyname::text, permissive, cmd, qual, with_check \
         FROM pg_policies WHERE schemaname = 'public'",
        &[],
    )?;
    let predicate = tenant_predicate(client)?;
    let mut present = BTreeSet::new();
    for table in &tables {
        let oid: postgres::types::Oid = table.get(0);
        let name: String = table.get(1);
        let (rls, forced, has_tenant): (bool, bool, bool) =
            (table.get(2), table.get(3), table.get(4));
        let table_owner: String = table.get(5);
        present.insert(name.clone());
        let object = format!("table \"{name}\"");
        if has_tenant || spec_tables.tenant.contains(&name) {
            if !has_tenant {
                add(
                    object.clone(),
                    "is scoped to tenants by the spec but has no tenant_id column",
                );
            }
            if !rls {
                add(object.clone(), "row-level security is not enabled");
            }
            if !forced {
                add(
                    object.clone(),
                    "row-level security is not forced (the owner would bypass it)",
                );
            }
            let own: Vec<_> = policies
                .iter()
                .filter(|p| p.get::<_, String>(0) == name && p.get::<_, String>(2) == "PERMISSIVE")
                .collect();
            if own.is_empty() {
                add(object.clone(), "has no row-level security policy");
            }
            for policy in own {
                let policy_name: String = policy.get(1);
                let command: String = policy.get(3);
                let using: Option<String> = policy.get(4);
                let with_check: Option<String> = policy.get(5);
                let scoped = |expr: &Option<String>| expr.as_ref() == Some(&predicate);
                if command != "INSERT" && !scoped(&using) {
                    add(
                        object.clone(),
                        &format!(
                            "policy \"{policy_name}\" does not compare tenant_id to the transaction's tenant in USING"
                        ),
                    );
                }
                if matches!(command.as_str(), "ALL" | "INSERT" | "UPDATE") && !scoped(&with_check) {
                    add(
                        object.clone(),
                        &format!(
                            "policy \"{policy_name}\" ({command}) has no WITH CHECK comparing tenant_id to the transaction's tenant"
                        ),
                    );
                }
            }
        }
        if table_owner == app {
            add(object.clone(), "is owned by the app role");
        }
        let public = client.query(
            "SELECT a.privilege_type FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1 AND a.grantee = 0 ORDER BY 1",
            &[&oid],
        )?;
        for row in public {
            let privilege: String = row.get(0);
            add(
                object.clone(),
                &format!("{privilege} is granted to PUBLIC (every role of the server holds it)"),
            );
        }
        let needed = expected.tables.get(&name);
        for privilege in TABLE_PRIVILEGES {
            let held: bool = client
                .query_one(
                    "SELECT has_table_privilege($1::name, $2::oid, $3::text)",
                    &[&app, &oid, &privilege],
                )?
                .get(0);
            let need = needed.is_some_and(|n| n.contains(privilege));
            if held && !need {
                add(
                    object.clone(),
                    &format!("the app role holds {privilege}, which no action of this table needs"),
                );
            } else if after_grants && need && !held {
                add(
                    object.clone(),
                    &format!("the app role lacks {privilege}, which an action of this table needs"),
                );
            }
        }
    }
    for (object, message) in keys_checked_at_once(client, &spec_tables.resources)? {
        add(object, &message);
    }
    if after_grants {
        for table in spec_tables.tenant.iter().filter(|t| !present.contains(*t)) {
            add(
                format!("table \"{table}\""),
                "is in the spec but no migration creates it",
            );
        }
    }

    let functions = client.query(
        "SELECT p.oid::regprocedure::text, p.prosecdef, p.prorettype = 'trigger'::regtype, \
             has_function_privilege($1::name, p.oid, 'EXECUTE') \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public' ORDER BY 1",
        &[&app],
    )?;
    let mut callable = BTreeSet::new();
    for signature in &expected.functions {
        let row = client.query_one("SELECT to_regprocedure($1::text)::text", &[signature])?;
        if let Some(normal) = row.get::<_, Option<String>>(0) {
            callable.insert(normal);
        } else if after_grants {
            add(
                format!("function {signature}"),
                "the app role needs it but no migration creates it",
            );
        }
    }
    for function in functions {
        let signature: String = function.get(0);
        let (definer, trigger, executable): (bool, bool, bool) =
            (function.get(1), function.get(2), function.get(3));
        let object = format!("function {signature}");
        if definer {
            add(
                object.clone(),
                "is SECURITY DEFINER: it runs with its owner's rights, around row-level security",
            );
        }
        // A trigger function cannot be called directly, so EXECUTE on it grants nothing.
        if executable && !trigger && !callable.contains(&signature) {
            add(
                object.clone(),
                "the app role may execute it, but no action needs it",
            );
        }
    }

    let views = client.query(
        "SELECT c.relname, c.relkind::text, coalesce(c.reloptions, '{}') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm') ORDER BY 1",
        &[],
    )?;
    for view in views {
        let (name, kind, options): (String, String, Vec<String>) =
            (view.get(0), view.get(1), view.get(2));
        if kind == "m" {
            add(
                format!("materialized view \"{name}\""),
                "stores rows outside row-level security",
            );
        } else if !options.iter().any(|o| {
            matches!(
                o.to_ascii_lowercase().as_str(),
                "security_invoker=true" | "security_invoker=on" | "security_invoker=1"
            )
        }) {
            add(
                format!("view \"{name}\""),
                "lacks security_invoker: it reads with its owner's rights, around row-level security",
            );
        }
    }

    let sequences = client.query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'S' \
           AND (has_sequence_privilege($1::name, c.oid, 'USAGE') OR has_sequence_privilege($1::name, c.oid, 'UPDATE'))",
        &[&app],
    )?;
    for sequence in sequences {
        let name: String = sequence.get(0);
        add(
            format!("sequence \"{name}\""),
            "the app role may use it, but no action needs it",
        );
    }
    let row = client.query_one(
        "SELECT has_schema_privilege($1::name, 'public'::text, 'CREATE'), pg_has_role($1::name, $2::name, 'MEMBER')",
        &[&app, &owner],
    )?;
    if row.get::<_, bool>(0) {
        add(
            "schema public".into(),
            "the app role may create objects in it",
        );
    }
    if row.get::<_, bool>(1) {
        add(
            "app role".into(),
            "is a member of the owner role, so it can act as the owner",
        );
    }
    Ok(())
}

/// The uniqueness rules and references of the resources' tables (`resources`, unquoted, in
/// `public`) that are checked before the server decides: it authorizes a write before the
/// database checks its keys, which must therefore wait for the commit (`DEFERRABLE
/// INITIALLY DEFERRED`), else a refused caller learns from a conflict that a row holds a
/// value or refers to another. That covers the tables' own rules (primary keys, unique and
/// exclusion constraints, unique indexes, which are never deferred), their references, and
/// the references of any table to them, `RESTRICT` included (it never waits). Exempt, as
/// the migrations make them: the `id` primary key (the server makes ids), the `(tenant_id,
/// id)` key and references to `public.tenants`.
fn keys_checked_at_once(
    client: &mut Client,
    resources: &BTreeSet<String>,
) -> Result<Vec<(String, String)>, postgres::Error> {
    let resource = |schema: &Option<String>, table: &Option<String>| {
        schema.as_deref() == Some("public") && table.as_ref().is_some_and(|t| resources.contains(t))
    };
    let shown = |schema: &Option<String>, table: &Option<String>| {
        let table = table.as_deref().unwrap_or_default();
        match schema.as_deref() {
            Some("public") | None => format!("\"{table}\""),
            Some(schema) => format!("\"{schema}\".\"{table}\""),
        }
    };
    let mut found = Vec::new();
    // Not a partition's copy of its parent's key: the parent's is reported.
    let constraints = client.query(
        "SELECT con.conname::text, n.nspname::text, c.relname::text, fn.nspname::text, f.relname::text, \
             con.contype::text, con.condeferrable AND con.condeferred, \
             con.contype = 'f' AND (con.confdeltype = 'r' OR con.confupdtype = 'r'), \
             pg_get_constraintdef(con.oid) \
         FROM pg_constraint con \
         JOIN pg_class c ON c.oid = con.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_class f ON f.oid = con.confrelid \
         LEFT JOIN pg_namespace fn ON fn.oid = f.relnamespace \
         WHERE con.contype IN ('p', 'u', 'x', 'f') AND con.conparentid = 0 \
         ORDER BY 2, 3, 1",
        &[],
    )?;
    for row in constraints {
        let (name, schema, table, target_schema, target): (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let (kind, deferred, restrict, definition): (String, bool, bool, String) =
            (row.get(5), row.get(6), row.get(7), row.get(8));
        let object = format!("table {}", shown(&schema, &table));
        let message = if kind == "f" {
            let to_tenants =
                target_schema.as_deref() == Some("public") && target.as_deref() == Some("tenants");
            if to_tenants || !(resource(&schema, &table) || resource(&target_schema, &target)) {
                continue;
            }
            let target = shown(&target_schema, &target);
            if restrict {
                format!(
                    "constraint \"{name}\" (a reference to {target}) is RESTRICT, which is checked at once even when deferred: a refused write would learn that a row refers to the one it names"
                )
            } else if deferred {
                continue;
            } else {
                format!(
                    "constraint \"{name}\" (a reference to {target}) is checked at once, not at commit (DEFERRABLE INITIALLY DEFERRED): a refused write would learn whether the row it names exists or is referred to"
                )
            }
        } else {
            let exempt = ["UNIQUE (tenant_id, id)", "PRIMARY KEY (id)"];
            if !resource(&schema, &table) || deferred || exempt.contains(&definition.as_str()) {
                continue;
            }
            format!(
                "constraint \"{name}\" is checked at once, not at commit (DEFERRABLE INITIALLY DEFERRED): a refused write would learn that another row holds the value"
            )
        };
        found.push((object, message));
    }
    // A unique index of its own (not a constraint's) cannot be deferred at all.
    let indexes = client.query(
        "SELECT i.relname::text, c.relname::text, x.indpred IS NOT NULL OR x.indexprs IS NOT NULL \
         FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class c ON c.oid = x.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND x.indisunique \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint con \
                           WHERE con.conindid = x.indexrelid AND con.conrelid = x.indrelid \
                             AND con.contype IN ('u', 'p', 'x')) \
         ORDER BY 2, 1",
        &[],
    )?;
    for row in indexes {
        let (index, table, partial): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        if resources.contains(&table) {
            let instead = if partial {
                "a DEFERRABLE INITIALLY DEFERRED exclusion constraint"
            } else {
                "a DEFERRABLE INITIALLY DEFERRED unique constraint"
            };
            found.push((
                format!("table \"{table}\""),
                format!(
                    "unique index \"{index}\" is checked at once and cannot wait for the commit: a refused write would learn that another row holds the value; make it {instead}"
                ),
            ));
        }
    }
    Ok(found)
}

/// Grants the app role what the project's grants module says, as its `migrate` does.
/// The tenant predicate as this server prints a policy holding it. A policy is scoped to the
/// transaction's tenant only when its expression is exactly that: one that merely names
/// `tenant_id` and the setting (`tenant_id IS NOT NULL AND current_setting(...) IS NOT
/// NULL`) could let every tenant in. Found on a probe table that is rolled back.
fn tenant_predicate(client: &mut Client) -> Result<String, postgres::Error> {
    let mut probe = client.transaction()?;
    probe.batch_execute(&format!(
        "CREATE TEMPORARY TABLE bulwark_policy_probe (tenant_id uuid); \
         CREATE POLICY probe ON bulwark_policy_probe USING ({})",
        crate::render::sql::TENANT_PREDICATE
    ))?;
    let row = probe.query_one(
        "SELECT qual FROM pg_policies WHERE tablename = 'bulwark_policy_probe' AND policyname = 'probe'",
        &[],
    )?;
    let predicate: String = row.get(0);
    probe.rollback()?;
    Ok(predicate)
}

fn grant(client: &mut Client, app: &str, grants: &Grants) -> Result<(), postgres::Error> {
    let mut statements = vec![format!("GRANT USAGE ON SCHEMA public TO {}", ident(app))];
    for (table, privileges) in &grants.tables {
        let privileges: Vec<&str> = privileges.iter().map(String::as_str).collect();
        statements.push(format!(
            "REVOKE ALL ON {} FROM {}",
            ident(table),
            ident(app)
        ));
        statements.push(format!(
            "GRANT {} ON {} TO {}",
            privileges.join(", "),
            ident(table),
            ident(app)
        ));
    }
    for function in &grants.functions {
        statements.push(format!(
            "REVOKE ALL ON FUNCTION {function} FROM {}",
            ident(app)
        ));
        statements.push(format!(
            "GRANT EXECUTE ON FUNCTION {function} TO {}",
            ident(app)
        ));
    }
    client.batch_execute("BEGIN")?;
    for statement in statements {
        if let Err(e) = client.batch_execute(&statement) {
            let _ = client.batch_execute("ROLLBACK");
            return Err(e);
        }
    }
    client.batch_execute("COMMIT")
}

/// The project's migrations, in the order `migrate` applies them (by version number).
fn migrations(dir: &Path) -> Result<Vec<PathBuf>, DatabaseError> {
    let folder = dir.join("migrations");
    let entries = std::fs::read_dir(&folder).map_err(|e| DatabaseError::Io {
        path: folder.display().to_string(),
        message: e.to_string(),
    })?;
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let version = name.split('_').next()?.parse().ok()?;
            Some((version, p))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `TABLE_PRIVILEGES` and `FUNCTIONS` of the project's grants module, read with syn: what its
/// `migrate` grants (hand edits included).
fn project_grants(dir: &Path) -> Result<Grants, DatabaseError> {
    let path = dir.join(GRANTS_MODULE);
    let source = std::fs::read_to_string(&path).map_err(|e| DatabaseError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let file = syn::parse_file(&source)
        .map_err(|e| DatabaseError::Grants(format!("{GRANTS_MODULE} does not parse: {e}")))?;
    let mut tables = None;
    let mut functions = None;
    for item in &file.items {
        let syn::Item::Const(item) = item else {
            continue;
        };
        let strings = strings_in(&item.expr);
        match item.ident.to_string().as_str() {
            "TABLE_PRIVILEGES" => {
                let mut map = BTreeMap::new();
                for pair in strings.chunks(2) {
                    let [table, privileges] = pair else {
                        return Err(DatabaseError::Grants(format!(
                            "{GRANTS_MODULE}: TABLE_PRIVILEGES is not a list of (table, privileges)"
                        )));
                    };
                    let privileges: BTreeSet<String> = privileges
                        .split(',')
                        .map(|p| p.trim().to_ascii_uppercase())
                        .collect();
                    if let Some(bad) = privileges
                        .iter()
                        .find(|p| !TABLE_PRIVILEGES.contains(&p.as_str()) && p.as_str() != "ALL")
                    {
                        return Err(DatabaseError::Grants(format!(
                            "{GRANTS_MODULE}: `{bad}` is not a table privilege"
                        )));
                    }
                    map.insert(crate::render::escape::sql_unquote(table), privileges);
                }
                tables = Some(map);
            }
            "FUNCTIONS" => functions = Some(strings),
            _ => {}
        }
    }
    match (tables, functions) {
        (Some(tables), Some(functions)) => Ok(Grants { tables, functions }),
        _ => Err(DatabaseError::Grants(format!(
            "{GRANTS_MODULE} does not declare TABLE_PRIVILEGES and FUNCTIONS: the audit cannot tell what the app role is granted"
        ))),
    }
}

/// Every string literal in an expression, in order.
fn strings_in(expr: &syn::Expr) -> Vec<String> {
    use syn::visit::Visit;
    struct Strings(Vec<String>);
    impl<'ast> Visit<'ast> for Strings {
        fn visit_lit_str(&mut self, lit: &'ast syn::LitStr) {
            self.0.push(lit.value());
        }
    }
    let mut strings = Strings(Vec::new());
    strings.visit_expr(expr);
    strings.0
}

fn ident(name: &str) -> String {
    crate::render::escape::sql_ident(name)
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The server's message for a database error (not the client's generic wrapper).
fn db_message(error: &postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|| error.to_string())
}
