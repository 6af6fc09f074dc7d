//! SQL migrations: tables, constraints, foreign keys that stay inside a tenant, and forced
//! row-level security on every tenant table. Identifiers and literals go through `escape`.

use super::escape::{sql_function_body, sql_ident, sql_literal};
use super::{FileSet, Options, RenderError, templates};
use crate::model::names::shorten;
use crate::model::{App, Field, FieldType, Resource, Value};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct Context<'a> {
    version: &'a str,
    app: String,
    /// The first migration: the header and the service's own tables too.
    system: bool,
    tables: Vec<Table>,
    /// What `migrate` grants the app role on each of the service's own tables, by name.
    grants: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Table {
    #[serde(flatten)]
    record: TableRecord,
    comment: &'static str,
    /// The tenant-scoped table's row-level security ([`row_level_security_sql`]) and
    /// functions ([`scoped_functions_sql`]); empty for a global table.
    security: String,
    functions: String,
}

/// What every tenant policy compares `tenant_id` to: the transaction's tenant (the
/// migration template writes the same; `bulwark audit --database` checks policies by it).
pub const TENANT_PREDICATE: &str =
    "\"tenant_id\" = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid)";

/// The statements that force row-level security on a tenant table (`table` quoted), with
/// the policy that shows and admits only rows of the transaction's tenant.
pub fn row_level_security_sql(table: &str) -> String {
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         -- The sub-select makes the setting an init-plan, read once per statement; an unset or empty\n\
         -- setting matches no row (fail closed).\n\
         CREATE POLICY \"tenant_isolation\" ON {table}\n    \
         USING ({TENANT_PREDICATE})\n    \
         WITH CHECK ({TENANT_PREDICATE});"
    )
}

/// A resource's table as the migrations create it: recorded in the manifest of each
/// generation, so the next one can compute the migration from it (see `evolve`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRecord {
    /// The resource's name as written in the spec.
    pub resource: String,
    /// Quoted table name.
    pub name: String,
    pub tenant: bool,
    pub columns: Vec<Column>,
    /// Quoted column lists of the unique constraints.
    pub uniques: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Its uniqueness rules and references to other resources are checked at commit
    /// (`DEFERRABLE INITIALLY DEFERRED`); absent from the records of bulwark releases that
    /// made them immediate, whose tables the next migration converts.
    #[serde(default)]
    pub keys_deferred: bool,
}

/// A per-operation read function of a tenant table: one statement per request, since it sets
/// the tenant for its own (implicit) transaction and then queries under row-level security.
struct ScopedFunction {
    doc: &'static str,
    /// Quoted name.
    name: String,
    /// Parameters with names and types, and the types alone (for `REVOKE`).
    params: &'static str,
    types: &'static str,
    /// The dollar-quoted plpgsql body.
    body: String,
}

/// The (unquoted) names of a tenant table's read and list functions, which the server's
/// repository calls: `{table}_read`, `{table}_list`, shortened to PostgreSQL's limit.
pub fn scoped_function_names(table: &str) -> (String, String) {
    let name = |suffix: &str| {
        shorten(
            &format!("{table}_{suffix}"),
            crate::model::names::PG_MAX_IDENT,
        )
    };
    (name("read"), name("list"))
}

/// The statements that create a tenant-scoped resource's read and list functions, each
/// after a line break: in the first migration, and again when a migration renames the table
/// (their bodies name it).
pub fn scoped_functions_sql(resource: &Resource) -> String {
    let table = sql_ident(&resource.table);
    let mut text = String::new();
    // `public.`: a table named like a built-in type (`point`, `trigger`) would otherwise be
    // read as that type, which PostgreSQL finds first.
    for f in scoped_functions(resource) {
        text.push_str(&format!(
            "\n-- {doc}\n\
             -- Sets the tenant for its caller's transaction only, then queries under the table's policy;\n\
             -- called alone, the statement is that transaction. SECURITY INVOKER: it can do nothing its\n\
             -- caller could not. Only the app role may call it (granted by `migrate`).\n\
             CREATE FUNCTION {name}({params}) RETURNS SETOF public.{table}\n    \
             LANGUAGE plpgsql SECURITY INVOKER AS {body};\n\
             REVOKE ALL ON FUNCTION {name}({types}) FROM PUBLIC;",
            doc = f.doc,
            name = f.name,
            params = f.params,
            body = f.body,
            types = f.types,
        ));
    }
    text
}

/// The parameters of the read and list functions: a column of one of these names is
/// ambiguous in a function made without `#variable_conflict use_variable`.
pub const FUNCTION_PARAMETERS: [&str; 4] = ["p_tenant", "p_id", "p_after", "p_limit"];

fn scoped_functions(resource: &Resource) -> Vec<ScopedFunction> {
    let table = sql_ident(&resource.table);
    let (read, list) = scoped_function_names(&resource.table);
    let body = |query: String| {
        sql_function_body(&format!(
            // A field named like a parameter (`p_tenant`) would make the name ambiguous.
            "#variable_conflict use_variable\nBEGIN\n    PERFORM set_config('app.tenant_id', p_tenant::text, true);\n    RETURN QUERY {query};\nEND"
        ))
    };
    vec![
        ScopedFunction {
            doc: "One row of the tenant by id.",
            name: sql_ident(&read),
            params: "p_tenant uuid, p_id uuid",
            types: "uuid, uuid",
            body: body(format!(
                "SELECT * FROM {table} WHERE \"tenant_id\" = p_tenant AND \"id\" = p_id"
            )),
        },
        ScopedFunction {
            doc: "A page of the tenant's rows in id order, after `p_after`.",
            name: sql_ident(&list),
            params: "p_tenant uuid, p_after uuid, p_limit bigint",
            types: "uuid, uuid, bigint",
            body: body(format!(
                "SELECT * FROM {table} WHERE \"tenant_id\" = p_tenant AND (p_after IS NULL OR \"id\" > p_after) ORDER BY \"id\" LIMIT p_limit"
            )),
        },
    ]
}

/// One column (a money field has two, both with the field's name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The field's name as written in the spec.
    pub field: String,
    /// Quoted column name.
    pub name: String,
    pub ty: String,
    pub nullable: bool,
    pub default: Option<String>,
    pub check: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub columns: String,
    pub target: String,
    pub target_columns: String,
}

/// The check of a field's `min` and `max` on the column `column` holding its value (an
/// int's, or a money field's amount in minor units).
fn value_bounds(field: &Field, column: &str) -> Option<String> {
    let bounds: Vec<String> = [
        field.min.map(|m| format!("{column} >= {m}")),
        field.max.map(|m| format!("{column} <= {m}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!bounds.is_empty()).then(|| bounds.join(" AND "))
}

/// The two columns of a money field: amount in minor units, and currency.
pub fn money_columns(field: &Field) -> (String, String) {
    let base = &field.column;
    (
        shorten(&format!("{base}_minor"), crate::model::names::PG_MAX_IDENT),
        shorten(
            &format!("{base}_currency"),
            crate::model::names::PG_MAX_IDENT,
        ),
    )
}

pub fn render_migrations(
    app: &App,
    options: &Options,
    files: &mut FileSet,
) -> Result<(), RenderError> {
    let resources: Vec<&Resource> = app.resources.iter().collect();
    files.insert(
        "migrations/0001_init.sql",
        tables_sql(app, &resources, true, options)?,
    );
    Ok(())
}

/// Every resource's table, as the migrations create it.
pub fn schema(app: &App) -> Vec<TableRecord> {
    app.resources.iter().map(|r| table(app, r).record).collect()
}

/// The indexes the migrations make without naming them, by the names PostgreSQL gives them
/// (`{table}_pkey`, `{table}_{columns}_key`, `{table}_{columns}_idx`, shortened as it
/// shortens them), each with the table it belongs to and what it is: no other table may
/// take one (the system tables' included). A table's own index whose name would be the
/// table's is named otherwise by PostgreSQL (`_pkey1`), made after it.
pub fn implicit_relations(app: &App) -> ImplicitRelations {
    implicit_relations_of(&schema(app))
}

/// Index name → its table and what it is (several, where names meet).
pub type ImplicitRelations = std::collections::BTreeMap<String, Vec<(String, String)>>;

/// The same, of recorded tables (a previous generation's: a renamed table keeps the names
/// its indexes had).
pub fn implicit_relations_of(tables: &[TableRecord]) -> ImplicitRelations {
    let unquote = |list: &str| -> String {
        list.split(", ")
            .map(super::escape::sql_unquote)
            .collect::<Vec<_>>()
            .join("_")
    };
    let mut names = ImplicitRelations::new();
    let mut add = |table: &str, columns: &str, label: &str, what: &str| {
        names
            .entry(implicit_name(table, columns, label))
            .or_default()
            .push((table.to_owned(), format!("{what} of `{table}`")));
    };
    for table in [
        "tenants",
        "memberships",
        "tenant_domains",
        "session_revocations",
        "audit_events",
        "system_audit_events",
    ] {
        add(table, "", "pkey", "the primary key");
    }
    add("audit_events", "tenant_id_at", "idx", "an index");
    add("system_audit_events", "at", "idx", "an index");
    for record in tables {
        let table = super::escape::sql_unquote(&record.name);
        add(&table, "", "pkey", "the primary key");
        if record.tenant {
            add(&table, "tenant_id_id", "key", "a uniqueness rule");
        }
        for unique in &record.uniques {
            add(&table, &unquote(unique), "key", "a uniqueness rule");
        }
        for key in &record.foreign_keys {
            add(
                &table,
                &unquote(&key.columns),
                "idx",
                "the index of a reference",
            );
        }
    }
    names
}

/// The name PostgreSQL makes of a table, its columns and a label (`makeObjectName`): within
/// 63 bytes, the longer of table and columns shortened first, one byte at a time, never
/// inside a character.
fn implicit_name(table: &str, columns: &str, label: &str) -> String {
    let overhead = label.len() + 1 + if columns.is_empty() { 0 } else { 1 };
    let room = 63usize.saturating_sub(overhead);
    let (mut a, mut b) = (table.len(), columns.len());
    while a + b > room {
        if a > b {
            a -= 1;
        } else {
            b -= 1;
        }
    }
    let clip = |text: &str, mut at: usize| {
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text[..at].to_owned()
    };
    let (table, columns) = (clip(table, a), clip(columns, b));
    if columns.is_empty() {
        format!("{table}_{label}")
    } else {
        format!("{table}_{columns}_{label}")
    }
}

/// The SQL that creates `resources`' tables (with keys, row-level security and functions);
/// with `system`, the whole first migration.
pub fn tables_sql(
    app: &App,
    resources: &[&Resource],
    system: bool,
    options: &Options,
) -> Result<String, RenderError> {
    let context = Context {
        version: &options.generator_version,
        app: crate::render::escape::one_line(&app.name).replace("--", "- -"),
        system,
        tables: resources.iter().map(|r| table(app, r)).collect(),
        grants: crate::render::rust::grants::table_privileges(app)
            .into_iter()
            .map(|(table, privileges)| (super::escape::sql_unquote(&table), privileges.join(", ")))
            .collect(),
    };
    templates::render("migration_init.sql", &context)
}

/// A spec literal (a default, a backfill value) as SQL.
pub fn value_sql(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => sql_literal(s),
    }
}

fn table(app: &App, resource: &Resource) -> Table {
    let tenant = !resource.global;
    let mut columns = Vec::new();
    let mut uniques = Vec::new();
    let mut foreign_keys = Vec::new();
    for field in &resource.fields {
        let name = sql_ident(&field.column);
        let nullable = field.optional;
        let length_check = |col: &str| {
            let mut checks = Vec::new();
            if let Some(max) = field.max {
                checks.push(format!("char_length({col}) <= {max}"));
            }
            if let Some(min) = field.min {
                checks.push(format!("char_length({col}) >= {min}"));
            }
            (!checks.is_empty()).then(|| checks.join(" AND "))
        };
        let default = field.default.as_ref().map(value_sql);
        let (ty, check) = match &field.ty {
            FieldType::String | FieldType::Text => ("text", length_check(&name)),
            FieldType::Email => (
                "text",
                Some(format!(
                    "char_length({name}) <= 254 AND position('@' in {name}) > 1"
                )),
            ),
            FieldType::Int => ("bigint", value_bounds(field, &name)),
            FieldType::Bool => ("boolean", None),
            FieldType::Decimal => ("numeric", None),
            FieldType::Timestamp => ("timestamptz", None),
            FieldType::Date => ("date", None),
            FieldType::Uuid | FieldType::Reference { .. } => ("uuid", None),
            FieldType::Principal => (
                "text",
                Some(format!("char_length({name}) BETWEEN 1 AND 255")),
            ),
            FieldType::Enum { variants, .. } => {
                let values: Vec<String> = variants.iter().map(|v| sql_literal(&v.value)).collect();
                ("text", Some(format!("{name} IN ({})", values.join(", "))))
            }
            FieldType::Money => {
                let (minor, currency) = money_columns(field);
                let (minor, currency) = (sql_ident(&minor), sql_ident(&currency));
                columns.push(Column {
                    field: field.name.clone(),
                    check: value_bounds(field, &minor),
                    name: minor,
                    ty: "bigint".into(),
                    nullable,
                    default: None,
                });
                columns.push(Column {
                    field: field.name.clone(),
                    name: currency.clone(),
                    ty: "text".into(),
                    nullable,
                    default: None,
                    check: Some(format!("{currency} ~ '^[A-Z]{{3}}$'")),
                });
                continue;
            }
        };
        columns.push(Column {
            field: field.name.clone(),
            name: name.clone(),
            ty: ty.into(),
            nullable,
            default,
            check,
        });
        if field.unique {
            uniques.push(if tenant {
                format!("\"tenant_id\", {name}")
            } else {
                name.clone()
            });
        }
        if let FieldType::Reference { resource: target } = field.ty {
            let target = &app.resources[target];
            let target_table = sql_ident(&target.table);
            // Within a tenant, the key includes tenant_id: a row can never point into another tenant.
            foreign_keys.push(if tenant && !target.global {
                ForeignKey {
                    columns: format!("\"tenant_id\", {name}"),
                    target: target_table,
                    target_columns: "\"tenant_id\", \"id\"".into(),
                }
            } else {
                ForeignKey {
                    columns: name.clone(),
                    target: target_table,
                    target_columns: "\"id\"".into(),
                }
            });
        }
    }
    Table {
        record: TableRecord {
            resource: resource.name.clone(),
            name: sql_ident(&resource.table),
            tenant,
            columns,
            uniques,
            foreign_keys,
            keys_deferred: true,
        },
        comment: if tenant {
            "tenant-scoped: tenant_id, forced row-level security"
        } else {
            "global: shared by every tenant (the spec says `global: true`)"
        },
        security: if tenant {
            row_level_security_sql(&sql_ident(&resource.table))
        } else {
            String::new()
        },
        functions: if tenant {
            scoped_functions_sql(resource)
        } else {
            String::new()
        },
    }
}

/// Whether every value that met the check `was` of `column` (quoted, as in [`Column`]) meets
/// `now` too, so stored rows need no look: a length or bound raised or dropped, an enum value
/// added, the check dropped. Only the shapes [`table`] writes are understood; any other part
/// of `now` must be in `was` word for word.
pub fn check_loosened(column: &str, was: Option<&str>, now: Option<&str>) -> bool {
    let Some(now) = now else { return true };
    let parsed = |check| CheckPart::all(column, check);
    match (was.and_then(parsed), parsed(now)) {
        (Some(was), Some(now)) => now
            .iter()
            .all(|part| was.iter().any(|old| old.implies(part))),
        _ => false,
    }
}

/// One conjunct of a column's check.
#[derive(Debug, PartialEq)]
enum CheckPart {
    LengthAtMost(i64),
    LengthAtLeast(i64),
    AtMost(i64),
    AtLeast(i64),
    OneOf(std::collections::BTreeSet<String>),
    Other(String),
}

impl CheckPart {
    /// The conjuncts of `check`, or `None` where it does not read as [`table`] writes it.
    fn all(column: &str, check: &str) -> Option<Vec<CheckPart>> {
        let length = format!("char_length({column}) ");
        let value = format!("{column} ");
        let mut parts = Vec::new();
        let mut rest = check;
        loop {
            if let Some(r) = rest.strip_prefix(length.as_str()) {
                if let Some(r) = r.strip_prefix("BETWEEN ") {
                    let (low, r) = integer(r)?;
                    let (high, r) = integer(r.strip_prefix(" AND ")?)?;
                    parts.extend([CheckPart::LengthAtLeast(low), CheckPart::LengthAtMost(high)]);
                    rest = r;
                } else {
                    let (part, r) = bound(r, CheckPart::LengthAtMost, CheckPart::LengthAtLeast)?;
                    parts.push(part);
                    rest = r;
                }
            } else if let Some(r) = rest.strip_prefix(value.as_str())
                && let Some((part, r)) =
                    bound(r, CheckPart::AtMost, CheckPart::AtLeast).or_else(|| one_of(r))
            {
                parts.push(part);
                rest = r;
            } else {
                let end = rest.find(" AND ").unwrap_or(rest.len());
                parts.push(CheckPart::Other(rest[..end].to_owned()));
                rest = &rest[end..];
            }
            if rest.is_empty() {
                return Some(parts);
            }
            rest = rest.strip_prefix(" AND ")?;
        }
    }

    /// Whether a value meeting `self` meets `other`.
    fn implies(&self, other: &CheckPart) -> bool {
        use CheckPart::*;
        match (self, other) {
            (LengthAtMost(was), LengthAtMost(now)) | (AtMost(was), AtMost(now)) => was <= now,
            (LengthAtLeast(was), LengthAtLeast(now)) | (AtLeast(was), AtLeast(now)) => was >= now,
            (OneOf(was), OneOf(now)) => was.is_subset(now),
            (Other(was), Other(now)) => was == now,
            _ => false,
        }
    }
}

/// `<= N` or `>= N` at the start of `text`, and what follows.
fn bound(
    text: &str,
    at_most: fn(i64) -> CheckPart,
    at_least: fn(i64) -> CheckPart,
) -> Option<(CheckPart, &str)> {
    if let Some(r) = text.strip_prefix("<= ") {
        integer(r).map(|(n, r)| (at_most(n), r))
    } else if let Some(r) = text.strip_prefix(">= ") {
        integer(r).map(|(n, r)| (at_least(n), r))
    } else {
        None
    }
}

/// An integer at the start of `text`, and what follows.
fn integer(text: &str) -> Option<(i64, &str)> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let end = text.len() - digits.len()
        + digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
    Some((text[..end].parse().ok()?, &text[end..]))
}

/// `IN ('a', 'b')` (literals as [`sql_literal`] writes them) at the start of `text`, and
/// what follows.
fn one_of(text: &str) -> Option<(CheckPart, &str)> {
    let mut rest = text.strip_prefix("IN (")?;
    let mut values = std::collections::BTreeSet::new();
    loop {
        let mut value = String::new();
        // `E'...'` when the value holds a backslash, written doubled.
        let (escaped, quoted) = match rest.strip_prefix('E') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let open = rest.len() - quoted.len() + 1;
        let mut chars = quoted.strip_prefix('\'')?.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            let after = open + i + c.len_utf8();
            if escaped && c == '\\' {
                rest[after..].starts_with('\\').then(|| value.push('\\'))?;
                chars.next();
            } else if c != '\'' {
                value.push(c);
            } else if rest[after..].starts_with('\'') {
                value.push('\'');
                chars.next();
            } else {
                break after;
            }
        };
        values.insert(value);
        rest = &rest[end..];
        if let Some(r) = rest.strip_prefix(", ") {
            rest = r;
        } else {
            return Some((CheckPart::OneOf(values), rest.strip_prefix(')')?));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_loosened;

    #[test]
    fn implicit_names_are_shortened_as_postgres_does() {
        use super::implicit_name;
        assert_eq!(implicit_name("a", "", "pkey"), "a_pkey");
        assert_eq!(
            implicit_name("a", "tenant_id_b", "key"),
            "a_tenant_id_b_key"
        );
        // 60 + 5 bytes: the table loses two.
        let long = "a".repeat(60);
        assert_eq!(
            implicit_name(&long, "", "pkey"),
            format!("{}_pkey", "a".repeat(58))
        );
        // Both long: the longer loses first, until they fit.
        let name = implicit_name(&"t".repeat(40), &"c".repeat(40), "key");
        assert_eq!(name, format!("{}_{}_key", "t".repeat(29), "c".repeat(29)));
        assert_eq!(name.len(), 63);
    }

    #[test]
    fn raised_limits_and_added_values_loosen_a_check() {
        let c = "\"name\"";
        let loosened = |was: &str, now: Option<&str>| check_loosened(c, Some(was), now);
        assert!(loosened(
            "char_length(\"name\") <= 2",
            Some("char_length(\"name\") <= 3")
        ));
        assert!(!loosened(
            "char_length(\"name\") <= 3",
            Some("char_length(\"name\") <= 2")
        ));
        assert!(loosened(
            "char_length(\"name\") <= 20 AND char_length(\"name\") >= 2",
            Some("char_length(\"name\") <= 20")
        ));
        assert!(!loosened(
            "char_length(\"name\") <= 20",
            Some("char_length(\"name\") <= 20 AND char_length(\"name\") >= 2")
        ));
        assert!(loosened(
            "\"name\" >= -5 AND \"name\" <= 10",
            Some("\"name\" >= -6")
        ));
        assert!(!loosened("\"name\" >= -5", Some("\"name\" >= -4")));
        assert!(loosened(
            "\"name\" IN (E'a\\\\b', 'é')",
            Some("\"name\" IN (E'a\\\\b', 'c', 'é')")
        ));
        assert!(!loosened(
            "\"name\" IN (E'a\\\\b', 'c')",
            Some("\"name\" IN (E'a\\\\b')")
        ));
        assert!(loosened(
            "\"name\" IN ('a', 'it''s', 'x AND y')",
            Some("\"name\" IN ('a', 'b', 'it''s', 'x AND y')")
        ));
        assert!(!loosened(
            "\"name\" IN ('a', 'it''s')",
            Some("\"name\" IN ('a', 'its')")
        ));
        assert!(loosened(
            "char_length(\"name\") BETWEEN 1 AND 255",
            Some("char_length(\"name\") BETWEEN 1 AND 255")
        ));
        assert!(loosened(
            "char_length(\"name\") <= 254 AND position('@' in \"name\") > 1",
            Some("char_length(\"name\") <= 254 AND position('@' in \"name\") > 1")
        ));
        assert!(!loosened(
            "char_length(\"name\") <= 254",
            Some("char_length(\"name\") <= 254 AND position('@' in \"name\") > 1")
        ));
        // A string made an enum, or another column's check: never loosened.
        assert!(!loosened(
            "char_length(\"name\") <= 20",
            Some("\"name\" IN ('a')")
        ));
        assert!(!loosened(
            "char_length(\"other\") <= 2",
            Some("char_length(\"name\") <= 3")
        ));
        assert!(loosened("\"name\" IN ('a')", None));
        assert!(!check_loosened(c, None, Some("\"name\" IN ('a')")));
    }
}
