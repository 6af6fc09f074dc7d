//! The server's `grants` module: the privileges of the app role, derived from each table's
//! actions, granted by `migrate` to the role its configuration names (roles are
//! cluster-wide, so their names are not fixed in the migrations).

use crate::model::{ActionKind, App};
use crate::render::escape::sql_ident;
use proc_macro2::TokenStream;
use quote::quote;

/// Each table the service uses, with the privileges the app role needs on it.
pub fn table_privileges(app: &App) -> Vec<(String, Vec<&'static str>)> {
    let mut tables = Vec::new();
    for resource in &app.resources {
        let served = |kind: fn(&ActionKind) -> bool| resource.actions.iter().any(|a| kind(&a.kind));
        // Every statement reads the row it works on (`WHERE`, `RETURNING`).
        let mut privileges = vec!["SELECT"];
        if served(|k| *k == ActionKind::Create) {
            privileges.push("INSERT");
        }
        if served(|k| matches!(k, ActionKind::Update | ActionKind::Custom(_))) {
            privileges.push("UPDATE");
        }
        if served(|k| *k == ActionKind::Delete) {
            privileges.push("DELETE");
        }
        tables.push((sql_ident(&resource.table), privileges));
    }
    let builtins = app.builtin_operations();
    let has = |prefix: &str| builtins.iter().any(|b| b.id.starts_with(prefix));
    let manage = |yes: bool, privileges: &[&'static str]| -> Vec<&'static str> {
        let mut all = vec!["SELECT"];
        if yes {
            all.extend_from_slice(privileges);
        }
        all
    };
    tables.push((
        sql_ident("memberships"),
        manage(has("membership."), &["INSERT", "UPDATE", "DELETE"]),
    ));
    tables.push((
        sql_ident("tenant_domains"),
        manage(has("domain."), &["INSERT", "UPDATE", "DELETE"]),
    ));
    tables.push((
        sql_ident("session_revocations"),
        manage(app.identity.machine_scope.is_some(), &["INSERT", "UPDATE"]),
    ));
    tables.push((sql_ident("audit_events"), vec!["INSERT"]));
    tables.push((sql_ident("system_audit_events"), vec!["INSERT"]));
    tables
}

/// The functions the app role may execute (signatures, quoted): the guard's standing query
/// and each tenant table's read and list functions. The migration revokes them from PUBLIC.
pub fn executable_functions(app: &App) -> Vec<String> {
    let mut functions = vec![format!(
        "{}(uuid, text, text)",
        sql_ident("caller_standing")
    )];
    for resource in app.resources.iter().filter(|r| !r.global) {
        let (read, list) = crate::render::sql::scoped_function_names(&resource.table);
        functions.push(format!("{}(uuid, uuid)", sql_ident(&read)));
        functions.push(format!("{}(uuid, uuid, bigint)", sql_ident(&list)));
    }
    functions
}

/// The `grants` module of the server crate.
pub fn grants_module(app: &App) -> TokenStream {
    let rows: Vec<TokenStream> = table_privileges(app)
        .into_iter()
        .map(|(table, privileges)| {
            let privileges = privileges.join(", ");
            quote!((#table, #privileges))
        })
        .collect();
    let functions = executable_functions(app);
    quote! {
        //! The app role's privileges: what each table's actions need and nothing more (never
        //! TRUNCATE, TRIGGER, REFERENCES or DDL). The role owns nothing and is not a
        //! superuser, so row-level security applies to everything it does. Tenants are created
        //! by the operator command, as the owner; the app role has no privilege on them.

        /// Each table (quoted) and the privileges the app role holds on it.
        pub const TABLE_PRIVILEGES: &[(&str, &str)] = &[#(#rows),*];

        /// The functions (quoted signatures) the app role may execute: each runs one
        /// tenant-scoped query as its caller (SECURITY INVOKER).
        pub const FUNCTIONS: &[&str] = &[#(#functions),*];

        /// A role name `migrate` accepts: lower-case ASCII letters, digits and underscores,
        /// starting with a letter, at most 63 bytes (it is spliced into SQL, so nothing else).
        pub fn valid_role(role: &str) -> bool {
            role.len() <= 63
                && role.starts_with(|c: char| c.is_ascii_lowercase())
                && role.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }

        /// What would let a role escape row-level security, by itself or through a role it
        /// is a member of (one row; each column a reason, in the order of [`REASONS`]).
        const ROLE_STANDING: &str = "SELECT \
                EXISTS (SELECT 1 FROM pg_roles s WHERE (s.rolsuper OR s.rolbypassrls) AND pg_has_role(r.oid, s.oid, 'MEMBER')), \
                r.rolname = current_user OR pg_has_role(r.oid, current_user, 'MEMBER'), \
                EXISTS (SELECT 1 FROM pg_roles m WHERE m.rolname IN ('pg_read_all_data', 'pg_write_all_data') AND pg_has_role(r.oid, m.oid, 'MEMBER')), \
                EXISTS (SELECT 1 FROM pg_roles s WHERE s.rolcreaterole AND pg_has_role(r.oid, s.oid, 'MEMBER')), \
                pg_has_role(r.oid, d.datdba, 'MEMBER') \
                    OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND pg_has_role(r.oid, c.relowner, 'MEMBER')), \
                has_schema_privilege(r.oid, 'public', 'CREATE') \
            FROM pg_roles r, pg_database d WHERE r.rolname = $1 AND d.datname = current_database()";

        /// Why a role could escape row-level security, by column of [`ROLE_STANDING`].
        const REASONS: [&str; 6] = [
            "is a superuser or has BYPASSRLS, or is a member of such a role: row-level security would not apply to it",
            "is the role running `migrate`, or a member of it: it could lift the row-level security the owner forces",
            "is a member of pg_read_all_data or pg_write_all_data: it bypasses the table privileges granted to it",
            "has CREATEROLE, or is a member of a role with it: it could give itself other roles' privileges",
            "owns the database or a table in it, or is a member of their owner: an owner can turn row-level security off",
            "may create objects in schema `public` (PostgreSQL before 15 lets every role; `REVOKE CREATE ON SCHEMA public FROM PUBLIC` as a superuser): it could plant a function a later migration runs as the owner",
        ];

        /// The standing of `role`: `Err` with the first reason among the columns `checked`.
        async fn standing(db: &sqlx::PgPool, role: &str, checked: &[usize]) -> Result<(), String> {
            let found: Option<(bool, bool, bool, bool, bool, bool)> = sqlx::query_as(ROLE_STANDING)
                .bind(role)
                .fetch_optional(db)
                .await
                .map_err(|e| e.to_string())?;
            let Some((a, b, c, d, e, f)) = found else {
                return Err(format!("role `{role}` does not exist: create it first (LOGIN NOSUPERUSER NOBYPASSRLS)"));
            };
            let found = [a, b, c, d, e, f];
            match checked.iter().find(|&&column| found[column]) {
                Some(&column) => Err(format!("role `{role}` {}", REASONS[column])),
                None => Ok(()),
            }
        }

        /// Refuses, before anything is applied, an app role that does not exist or could
        /// escape row-level security: a superuser or `BYPASSRLS` (or a member of one), the
        /// owner running `migrate` or a member of it, a member of `pg_read_all_data` or
        /// `pg_write_all_data`, a role with `CREATEROLE`, or one owning the database or a
        /// table. Whether it may create objects in the schema is checked after the
        /// migrations ([`check_app_role_schema`]): the first one revokes that from
        /// everybody where PostgreSQL before 15 granted it.
        pub async fn check_app_role(owner: &sqlx::PgPool, role: &str) -> Result<(), String> {
            standing(owner, role, &[0, 1, 2, 3, 4]).await
        }

        /// Refuses an app role that may create objects in the schema (run after the
        /// migrations).
        pub async fn check_app_role_schema(owner: &sqlx::PgPool, role: &str) -> Result<(), String> {
            standing(owner, role, &[5]).await
        }

        /// Refuses to serve as a role that could escape row-level security (`DATABASE_URL`
        /// naming the owner or a superuser, say): every check of [`check_app_role`] and
        /// [`check_app_role_schema`] but the one about the role running `migrate`.
        pub async fn check_serving_role(db: &sqlx::PgPool) -> Result<(), String> {
            let (role,): (String,) = sqlx::query_as("SELECT current_user::text").fetch_one(db).await.map_err(|e| e.to_string())?;
            standing(db, &role, &[0, 2, 3, 4, 5]).await.map_err(|e| format!("DATABASE_URL: {e}; connect as the app role `migrate` granted to"))
        }

        /// Gives `role` exactly [`TABLE_PRIVILEGES`] and [`FUNCTIONS`] (revoking anything else
        /// it held on those) and the use of the schema. Run by `migrate`, as the owner.
        pub async fn grant_app_role(owner: &sqlx::PgPool, role: &str) -> Result<(), String> {
            if !valid_role(role) {
                return Err(format!("`{role}` is not a role name this service grants to (lower-case letters, digits, `_`)"));
            }
            let mut tx = owner.begin().await.map_err(|e| e.to_string())?;
            let mut statements = vec![format!("GRANT USAGE ON SCHEMA public TO \"{role}\"")];
            for (table, privileges) in TABLE_PRIVILEGES {
                statements.push(format!("REVOKE ALL ON {table} FROM \"{role}\""));
                statements.push(format!("GRANT {privileges} ON {table} TO \"{role}\""));
            }
            for function in FUNCTIONS {
                statements.push(format!("REVOKE ALL ON FUNCTION {function} FROM \"{role}\""));
                statements.push(format!("GRANT EXECUTE ON FUNCTION {function} TO \"{role}\""));
            }
            for statement in statements {
                // The role name is checked above; the tables and privileges are this
                // generator's constants.
                sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await.map_err(|e| e.to_string())?;
            }
            tx.commit().await.map_err(|e| e.to_string())
        }
    }
}
