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

        /// What would let a role escape row-level security, by itself or through the owner
        /// (one row: each column a reason, in the order [`check_app_role`] reports them).
        const ROLE_STANDING: &str = "SELECT r.rolsuper OR r.rolbypassrls, \
                r.rolname = current_user OR pg_has_role(r.oid, current_user, 'MEMBER') \
                    OR EXISTS (SELECT 1 FROM pg_roles m WHERE m.rolname IN ('pg_read_all_data', 'pg_write_all_data') AND pg_has_role(r.oid, m.oid, 'MEMBER')), \
                r.rolcreaterole, \
                d.datdba = r.oid OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relowner = r.oid), \
                has_schema_privilege(r.oid, 'public', 'CREATE') \
            FROM pg_roles r, pg_database d WHERE r.rolname = $1 AND d.datname = current_database()";

        /// Why `role` could escape row-level security, if it could.
        fn standing(role: &str, found: (bool, bool, bool, bool, bool)) -> Result<(), String> {
            let reason = match found {
                (true, ..) => "is a superuser or has BYPASSRLS: row-level security would not apply to it",
                (_, true, ..) => "is the owner, a member of the owner, or may read or write all data: it could lift the row-level security the owner forces",
                (_, _, true, ..) => "has CREATEROLE: it could give itself other roles' privileges",
                (_, _, _, true, _) => "owns the database or a table in it: an owner can turn row-level security off",
                (.., true) => "may create objects in schema `public`: it could plant a function the migrations then run as the owner (REVOKE CREATE ON SCHEMA public FROM it and from PUBLIC)",
                _ => return Ok(()),
            };
            Err(format!("role `{role}` {reason}"))
        }

        /// Refuses an app role that does not exist or could escape row-level security: a
        /// superuser or `BYPASSRLS`, the owner running `migrate` or a member of it, a role
        /// with `CREATEROLE`, one owning the database or a table, or one that may create
        /// objects in the schema. `migrate` checks it before applying anything.
        pub async fn check_app_role(owner: &sqlx::PgPool, role: &str) -> Result<(), String> {
            let found: Option<(bool, bool, bool, bool, bool)> = sqlx::query_as(ROLE_STANDING)
                .bind(role)
                .fetch_optional(owner)
                .await
                .map_err(|e| e.to_string())?;
            match found {
                None => Err(format!("role `{role}` does not exist: create it first (LOGIN NOSUPERUSER NOBYPASSRLS)")),
                Some(found) => standing(role, found),
            }
        }

        /// Refuses to serve as a role that could escape row-level security (`DATABASE_URL`
        /// naming the owner or a superuser, say): the same checks as [`check_app_role`]
        /// but the owner's, since the server runs no migration.
        pub async fn check_serving_role(db: &sqlx::PgPool) -> Result<(), String> {
            let (role,): (String,) = sqlx::query_as("SELECT current_user::text").fetch_one(db).await.map_err(|e| e.to_string())?;
            let (escapes, _, createrole, owns, create): (bool, bool, bool, bool, bool) =
                sqlx::query_as(ROLE_STANDING).bind(&role).fetch_one(db).await.map_err(|e| e.to_string())?;
            standing(&role, (escapes, false, createrole, owns, create)).map_err(|e| format!("DATABASE_URL: {e}; connect as the app role `migrate` granted to"))
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
