//! Stage 3b, evolve: between rendering and emitting, when a previous generation exists (the
//! manifest in the output directory or on the branch tip). Migrations already generated are
//! never rewritten: the previous ones are kept byte for byte, and a spec change adds one new
//! numbered migration computed from the previous generation's recorded tables to the new
//! ones. Additions are automatic (tables with their row-level security and functions, optional
//! or defaulted columns, their foreign keys and uniqueness, relaxed NOT NULL, new defaults,
//! constraints every stored value already meets such as a raised limit or a new enum value).
//! A resource or field renamed under `migrations.rename` has its table or column renamed,
//! its data kept.
//! Anything that could lose or break stored data is refused (exit 4) with the reason and the
//! marker that acknowledges it: a dropped table or column unless `migrations.drop` names it;
//! a changed type or a tightened constraint, a field made required, a new uniqueness rule or reference on
//! stored rows unless `migrations.check` names the field (the migration then holds the stored
//! rows to the new rule, failing whole where one breaks it); a new required field without a
//! default unless `migrations.backfill` gives stored rows a value; a resource moved between
//! tenant-scoped and global unless `migrations.tenancy` names it (made global, every tenant's
//! rows are shared; made tenant-scoped, each tenant gets its own copy of every row, and its
//! references are pointed at its copies).

use crate::model::App;
use crate::render::escape::{one_line, sql_function_body, sql_ident, sql_literal, sql_unquote};
use crate::render::sql::{self, Column, TableRecord};
use crate::render::{FileSet, Options, RenderError};
use std::collections::{BTreeMap, BTreeSet};

/// The previous generation: its recorded tables and its migrations as they are.
#[derive(Clone, Debug, Default)]
pub struct Previous {
    /// `None` when the previous manifest recorded no tables (an older bulwark's).
    pub schema: Option<Vec<TableRecord>>,
    /// What each API version served.
    pub api: Vec<crate::versions::ApiShape>,
    /// Path → contents.
    pub migrations: BTreeMap<String, String>,
    /// The other files in the migrations folder (written by hand, or by a run interrupted
    /// before its manifest), path → contents: their numbers are taken.
    pub unrecorded: BTreeMap<String, String>,
    /// Its manifest.
    pub manifest: crate::emit::Manifest,
}

/// A file of the migrations folder.
pub fn is_migration(path: &str) -> bool {
    path.starts_with("migrations/") && path.ends_with(".sql")
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EvolveError {
    #[error("the spec change needs a migration that could lose or break stored data:\n{}", .reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))]
    #[diagnostic(
        code(bulwark::evolve::refused),
        help(
            "each line says what to do; for a table or column to drop, list it under `migrations.drop` in the spec; for a renamed resource or field, map `old` or `resource.old` to the new name under `migrations.rename`"
        )
    )]
    Refused { reasons: Vec<String> },
    #[error(transparent)]
    #[diagnostic(code(bulwark::evolve::render))]
    Render(#[from] RenderError),
}

impl EvolveError {
    pub fn is_refusal(&self) -> bool {
        matches!(self, EvolveError::Refused { .. })
    }
}

/// Puts the previous migrations in place of the rendered ones and adds the migration from
/// the previous tables to `app`'s, if they differ; returns its path. A previous generation
/// that recorded no tables is refused, forced or not (its migrations are never rewritten),
/// unless its only migration is the one `app` renders.
pub fn evolve(
    app: &App,
    options: &Options,
    files: &mut FileSet,
    previous: Option<&Previous>,
) -> Result<Option<String>, EvolveError> {
    let Some(previous) = previous.filter(|p| !p.migrations.is_empty()) else {
        return Ok(None);
    };
    let Some(schema) = &previous.schema else {
        let rendered_init = files.files.get(INIT);
        let only_init = previous.migrations.len() == 1;
        if only_init && previous.migrations.get(INIT) == rendered_init {
            // Nothing changed since: the rendered migrations are the ones there.
            return Ok(None);
        }
        return Err(EvolveError::Refused {
            reasons: vec![
                "the previous generation recorded no tables (an older bulwark made it, or its manifest was edited), so the change cannot be computed: generate into a new directory or branch, or write the migration by hand".into(),
            ],
        });
    };
    files.files.retain(|path, _| !is_migration(path));
    for (path, text) in &previous.migrations {
        files.insert(path, text.clone());
    }
    let plan = plan(app, schema)?;
    if plan.is_empty() {
        return Ok(None);
    }
    let mut text = format!(
        "-- @generated by bulwark {}. Do not edit: change the spec and regenerate.\n-- Changes of {} since the previous generation: {}.\n",
        options.generator_version,
        comment(&app.name),
        plan.summary
            .iter()
            .map(|s| comment(s))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // The uniqueness rules and references the server defers to commit are checked at each
    // statement here: rows rewritten below would otherwise leave checks pending, and
    // PostgreSQL refuses to alter a table that has some.
    text.push_str("SET CONSTRAINTS ALL IMMEDIATE;\n");
    for statement in &plan.statements {
        text.push_str(statement);
        text.push('\n');
    }
    // New tables after the existing ones took their new names, columns and tenancy (their
    // keys may point at them), before the keys that may point at new tables.
    if !plan.new_tables.is_empty() {
        let resources: Vec<&crate::model::Resource> = app
            .resources
            .iter()
            .filter(|r| plan.new_tables.contains(&r.name))
            .collect();
        text.push_str(&sql::tables_sql(app, &resources, false, options)?);
        text.push('\n');
    }
    for statement in &plan.keys {
        text.push_str(statement);
        text.push('\n');
    }
    // A run interrupted before it wrote its manifest left this migration unrecorded: it is
    // this one, not a hand-written one to number after.
    let interrupted = previous
        .unrecorded
        .iter()
        .find(|(_, written)| **written == text)
        .map(|(path, _)| path.clone());
    // One that bulwark wrote but that is not this one: a run interrupted with another spec.
    // Numbering after it would apply both.
    if interrupted.is_none()
        && let Some((path, _)) = previous
            .unrecorded
            .iter()
            .find(|(_, text)| text.starts_with("-- @generated by bulwark"))
    {
        return Err(EvolveError::Refused {
            reasons: vec![format!(
                "`{path}` was generated by an interrupted run of another spec and never recorded: generate again with that spec to finish the run, or remove the file if no database applied it"
            )],
        });
    }
    let path = match interrupted {
        Some(path) => path,
        None => {
            // After every migration there, bulwark's and those written by hand: two files of one
            // number would be two migrations of one version.
            let number = previous
                .migrations
                .keys()
                .chain(previous.unrecorded.keys())
                .filter_map(|p| {
                    p.trim_start_matches("migrations/")
                        .split('_')
                        .next()?
                        .parse::<u32>()
                        .ok()
                })
                .max()
                .unwrap_or(0)
                + 1;
            format!("migrations/{number:04}_{}.sql", slug(&plan.summary))
        }
    };
    files.insert(&path, text);
    Ok(Some(path))
}

const INIT: &str = "migrations/0001_init.sql";

/// What the new migration does.
#[derive(Default)]
struct Plan {
    /// Resources whose tables are created whole.
    new_tables: BTreeSet<String>,
    /// Statements before the new tables, in order.
    statements: Vec<String>,
    /// Statements after the new tables: keys and dropped tables.
    keys: Vec<String>,
    /// One line per change, for the header and the file name.
    summary: Vec<String>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.new_tables.is_empty() && self.statements.is_empty() && self.keys.is_empty()
    }
}

fn plan(app: &App, old: &[TableRecord]) -> Result<Plan, EvolveError> {
    let new = sql::schema(app);
    let drop: BTreeSet<&str> = app.drop.iter().map(String::as_str).collect();
    let checked: BTreeSet<&str> = app.check.iter().map(String::as_str).collect();
    let tenancy: BTreeSet<&str> = app.tenancy.iter().map(String::as_str).collect();
    let backfill: BTreeMap<&str, String> = app
        .backfill
        .iter()
        .map(|(field, value)| (field.as_str(), sql::value_sql(value)))
        .collect();
    let old_tables: BTreeMap<&str, &TableRecord> =
        old.iter().map(|t| (t.name.as_str(), t)).collect();
    let new_names: BTreeSet<&str> = new.iter().map(|t| t.name.as_str()).collect();
    // Renamed resources: the new table is the old one, renamed (only while the new name has
    // no table yet: a marker left in the spec afterwards does nothing).
    let mut renamed_tables: BTreeMap<&str, &TableRecord> = BTreeMap::new();
    for (from, to) in &app.rename_resources {
        let before = old.iter().find(|t| t.resource == *from);
        let table = new.iter().find(|t| t.resource == *to);
        if let (Some(before), Some(table)) = (before, table)
            && !old_tables.contains_key(table.name.as_str())
        {
            renamed_tables.insert(table.name.as_str(), before);
        }
    }
    // Old table names and their new ones, for the references that point to them.
    let new_table_names: BTreeMap<&str, &str> = renamed_tables
        .iter()
        .map(|(new, before)| (before.name.as_str(), *new))
        .collect();
    let mut plan = Plan::default();
    let mut reasons = Vec::new();
    // A new table may not take the name of an index the database already has: a renamed
    // table's or column's indexes keep the names they had.
    let existing_indexes = sql::implicit_relations_of(old);
    for table in &new {
        let name = sql_unquote(&table.name);
        if !old_tables.contains_key(table.name.as_str())
            && !renamed_tables.contains_key(table.name.as_str())
            && let Some((_, owner)) = existing_indexes.get(&name).into_iter().flatten().next()
        {
            reasons.push(format!(
                "`{}` needs table `{name}`, the name the database already gives {owner} (an index keeps its name when its table or column is renamed): name the resource otherwise",
                table.resource
            ));
        }
    }
    // Tables that move between tenant-scoped and global (previous and new records), with
    // the uniqueness rules they keep.
    let mut moves: Vec<Move> = Vec::new();
    // Statements by phase, so that what they depend on exists first.
    let (mut renames, mut add, mut keys, mut alter, mut drop_columns, mut drop_tables) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );

    for table in &new {
        let resource = &table.resource;
        let t = &table.name;
        let before = match (old_tables.get(t.as_str()), renamed_tables.get(t.as_str())) {
            (Some(before), _) => *before,
            (None, Some(before)) => {
                renames.push(table_rename(app, before, table));
                plan.summary
                    .push(format!("rename {} to {resource}", before.resource));
                before
            }
            (None, None) => {
                plan.new_tables.insert(resource.clone());
                plan.summary.push(format!("add {resource}"));
                continue;
            }
        };
        let moved = before.tenant != table.tenant;
        if moved && !tenancy.contains(resource.as_str()) {
            reasons.push(if table.tenant {
                format!(
                    "`{resource}` becomes tenant-scoped: its stored rows belong to no tenant; add `{resource}: tenant` under `migrations.tenancy` to give each tenant its own copy of them (references from a tenant's rows then point at its copies)"
                )
            } else {
                format!(
                    "`{resource}` becomes global: every tenant's stored rows would be shared by all tenants; add `{resource}: global` under `migrations.tenancy` to share them (the tenant each came from is forgotten; the migration fails, changing nothing, where a uniqueness rule now spans tenants and two rows share a value)"
                )
            });
            continue;
        }
        if moved {
            plan.summary.push(format!(
                "{resource} {}",
                if table.tenant {
                    "tenant-scoped"
                } else {
                    "global"
                }
            ));
        }
        // Renamed fields: each old column under the name of the new one, in order (a money
        // field has two), so that it compares like a column that kept its name.
        let renamed = renamed_columns(app, before, table);
        let mut old_columns: BTreeMap<&str, &Column> = before
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        for (old, new) in &renamed {
            if let Some(column) = old_columns.remove(old.as_str()) {
                renames.push(format!("ALTER TABLE {t} RENAME COLUMN {old} TO {new};"));
                old_columns.insert(new.as_str(), column);
            }
        }
        for (_, from, to) in app
            .rename
            .iter()
            .filter(|(r, from, _)| r == resource && before.columns.iter().any(|c| &c.field == from))
        {
            plan.summary
                .push(format!("rename {resource}.{from} to {to}"));
        }
        let new_columns: BTreeMap<&str, &Column> =
            table.columns.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut added = BTreeSet::new();
        for column in &table.columns {
            let field = format!("{resource}.{}", column.field);
            match old_columns.get(column.name.as_str()) {
                None if !column.nullable && column.default.is_none() => {
                    match backfill.get(field.as_str()) {
                        // The stored rows take the value, then the column keeps no default.
                        Some(value) => {
                            let filled = Column { default: Some(value.clone()), ..(*column).clone() };
                            add.push(format!("ALTER TABLE {t} ADD COLUMN {};", column_sql(&filled)));
                            add.push(format!("ALTER TABLE {t} ALTER COLUMN {} DROP DEFAULT;", column.name));
                            added.insert(column.name.as_str());
                            plan.summary.push(format!("add {field}"));
                        }
                        None => reasons.push(format!(
                            "`{field}` is new and required without a default: rows already stored have no value for it (make it optional, give it a default, or give the stored rows one under `migrations.backfill`)"
                        )),
                    }
                }
                None => {
                    added.insert(column.name.as_str());
                    add.push(format!("ALTER TABLE {t} ADD COLUMN {};", column_sql(column)));
                    if !plan.summary.contains(&format!("add {field}")) {
                        plan.summary.push(format!("add {field}"));
                    }
                }
                Some(was) if was.ty != column.ty && !checked.contains(field.as_str()) => reasons.push(format!(
                    "`{field}` changes type ({} to {}): stored values may not convert; list `{field}` under `migrations.check` to convert them (the migration fails, changing nothing, where one does not)",
                    was.ty, column.ty
                )),
                Some(was) => {
                    let retyped = was.ty != column.ty;
                    if retyped {
                        // Its old default and constraints are of the old type: they go first.
                        if was.default.is_some() {
                            alter.push(format!("ALTER TABLE {t} ALTER COLUMN {} DROP DEFAULT;", column.name));
                        }
                        alter.push(drop_checks(t, &column.name));
                        alter.push(format!(
                            "ALTER TABLE {t} ALTER COLUMN {c} TYPE {ty} USING {c}::{ty};",
                            c = column.name,
                            ty = column.ty
                        ));
                        plan.summary.push(format!("{field} type"));
                    }
                    if was.nullable && !column.nullable {
                        match (backfill.get(field.as_str()), checked.contains(field.as_str())) {
                            (Some(value), _) => {
                                alter.push(fill_empty(t, table.tenant, &column.name, value));
                                alter.push(format!("ALTER TABLE {t} ALTER COLUMN {} SET NOT NULL;", column.name));
                                plan.summary.push(format!("{field} required"));
                            }
                            (None, true) => {
                                alter.push(format!("ALTER TABLE {t} ALTER COLUMN {} SET NOT NULL;", column.name));
                                plan.summary.push(format!("{field} required"));
                            }
                            (None, false) => reasons.push(format!(
                                "`{field}` becomes required: rows already stored may have no value for it; give them one under `migrations.backfill`, or list `{field}` under `migrations.check` (the migration fails, changing nothing, where one is empty)"
                            )),
                        }
                    } else if !was.nullable && column.nullable {
                        alter.push(format!("ALTER TABLE {t} ALTER COLUMN {} DROP NOT NULL;", column.name));
                        plan.summary.push(format!("{field} optional"));
                    }
                    // PostgreSQL carries a renamed column's name into its constraint.
                    let was_check = match renamed.iter().find(|(_, new)| *new == column.name) {
                        Some((old, new)) => was.check.as_ref().map(|c| c.replace(old, new)),
                        None => was.check.clone(),
                    };
                    if retyped {
                        if let Some(check) = &column.check {
                            alter.push(format!("ALTER TABLE {t} ADD CHECK ({check});"));
                        }
                    } else if was_check != column.check
                        && (checked.contains(field.as_str())
                            || sql::check_loosened(&column.name, was_check.as_deref(), column.check.as_deref()))
                    {
                        alter.push(drop_checks(t, &column.name));
                        if let Some(check) = &column.check {
                            alter.push(format!("ALTER TABLE {t} ADD CHECK ({check});"));
                        }
                        plan.summary.push(format!("{field} constraint"));
                    } else if was_check != column.check {
                        reasons.push(format!(
                            "`{field}` changes its constraint ({} to {}): rows already stored may break it; list `{field}` under `migrations.check` to hold them to it (the migration fails, changing nothing, where one breaks it)",
                            was_check.as_deref().unwrap_or("none"),
                            column.check.as_deref().unwrap_or("none")
                        ));
                    }
                    // A retyped column's old default went before the type change.
                    let default_changed = if retyped {
                        column.default.is_some()
                    } else {
                        was.default != column.default
                    };
                    if default_changed {
                        alter.push(match &column.default {
                            Some(default) => format!("ALTER TABLE {t} ALTER COLUMN {} SET DEFAULT {default};", column.name),
                            None => format!("ALTER TABLE {t} ALTER COLUMN {} DROP DEFAULT;", column.name),
                        });
                        plan.summary.push(format!("{field} default"));
                    }
                }
            }
        }
        // Read and list functions made before they declared `#variable_conflict` would take
        // a new column named like one of their parameters for an ambiguity: made anew. (A
        // renamed table's are made anew anyway.)
        let named_like_a_parameter = table.columns.iter().any(|c| {
            sql::FUNCTION_PARAMETERS.contains(&sql_unquote(&c.name).as_str())
                && !before.columns.iter().any(|b| b.name == c.name)
        });
        if named_like_a_parameter
            && table.tenant
            && before.tenant
            && before.name == table.name
            && let Some(model) = app.resources.iter().find(|r| &r.name == resource)
        {
            let (read, list) = sql::scoped_function_names(&sql_unquote(t));
            let mut text = String::new();
            for function in [read, list] {
                text.push_str(&format!(
                    "DROP FUNCTION IF EXISTS {};\n",
                    sql_ident(&function)
                ));
            }
            text.push_str(sql::scoped_functions_sql(model).trim_start());
            add.push(text);
        }
        let renamed_away: BTreeSet<&str> = renamed.iter().map(|(old, _)| old.as_str()).collect();
        for column in before.columns.iter().filter(|c| {
            !new_columns.contains_key(c.name.as_str()) && !renamed_away.contains(c.name.as_str())
        }) {
            let field = format!("{resource}.{}", column.field);
            if drop.contains(field.as_str()) {
                drop_columns.push(format!("ALTER TABLE {t} DROP COLUMN {};", column.name));
                if !plan.summary.contains(&format!("drop {field}")) {
                    plan.summary.push(format!("drop {field}"));
                }
            } else {
                reasons.push(format!(
                    "`{field}` is no longer in the spec: dropping its column loses its data; list `{field}` under `migrations.drop` to drop it, or, if it was renamed, map it to its new name under `migrations.rename`"
                ));
            }
        }
        // Only new columns, or those of fields under `migrations.check`, may gain a
        // uniqueness rule or a foreign key: stored rows were never checked against one (the
        // migration checks them now, and fails where one breaks it).
        let checked_columns: BTreeSet<&str> = table
            .columns
            .iter()
            .filter(|c| checked.contains(format!("{resource}.{}", c.field).as_str()))
            .map(|c| c.name.as_str())
            .collect();
        let only_new = |columns: &str| {
            columns
                .split(", ")
                .filter(|c| *c != "\"tenant_id\"")
                .all(|c| added.contains(c) || checked_columns.contains(c))
        };
        // The previous constraints, with renamed columns under their new names.
        let rename_list = |list: &str| -> String {
            list.split(", ")
                .map(|c| {
                    renamed
                        .iter()
                        .find(|(old, _)| old == c)
                        .map_or(c, |(_, new)| new.as_str())
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        // A moved table's rules in their new form (with or without the tenant).
        let before_uniques: Vec<String> = before
            .uniques
            .iter()
            .map(|u| {
                let u = rename_list(u);
                if moved {
                    in_tenancy(&u, table.tenant)
                } else {
                    u
                }
            })
            .collect();
        let before_keys: Vec<sql::ForeignKey> = before
            .foreign_keys
            .iter()
            .map(|k| sql::ForeignKey {
                columns: rename_list(&k.columns),
                target: new_table_names
                    .get(k.target.as_str())
                    .map_or_else(|| k.target.clone(), |name| (*name).to_owned()),
                ..k.clone()
            })
            .collect();
        if moved {
            moves.push(Move {
                before,
                table,
                uniques: table
                    .uniques
                    .iter()
                    .filter(|u| before_uniques.contains(u))
                    .cloned()
                    .collect(),
            });
        }
        // The fields of a rule's columns that were there before (their change is not an
        // added field's), for the summary.
        let stored_fields = |columns: &str| -> Vec<String> {
            table
                .columns
                .iter()
                .filter(|c| {
                    columns.split(", ").any(|n| n == c.name) && !added.contains(c.name.as_str())
                })
                .map(|c| format!("{resource}.{}", c.field))
                .collect()
        };
        for unique in table.uniques.iter().filter(|u| !before_uniques.contains(u)) {
            if only_new(unique) {
                keys.push(format!(
                    "ALTER TABLE {t} ADD UNIQUE ({unique}) DEFERRABLE INITIALLY DEFERRED;"
                ));
                for field in stored_fields(unique) {
                    plan.summary.push(format!("{field} unique"));
                }
            } else {
                reasons.push(format!(
                    "`{resource}` gains a uniqueness rule on ({unique}): rows already stored may break it; list its field under `migrations.check` to hold them to it (the migration fails, changing nothing, where two share a value)"
                ));
            }
        }
        if before_uniques.iter().any(|u| !table.uniques.contains(u)) {
            reasons.push(format!(
                "`{resource}` loses a uniqueness rule: not done automatically (write the migration by hand)"
            ));
        }
        // A reference whose target moved changes its form (the move drops it, and points
        // the stored rows at their tenant's copies where the target became tenant-scoped):
        // it is added again in the new form. One no longer in the spec is dropped.
        for key in before_keys
            .iter()
            .filter(|k| !table.foreign_keys.iter().any(|n| same_reference(k, n)))
        {
            let column = key.columns.trim_start_matches("\"tenant_id\", ");
            if new_columns.contains_key(column) {
                alter.push(drop_foreign_keys(&key.target, Some((t, column))));
            }
        }
        for key in table
            .foreign_keys
            .iter()
            .filter(|k| !before_keys.contains(k))
        {
            let reformed = before_keys.iter().any(|b| same_reference(b, key));
            if reformed || only_new(&key.columns) {
                let mut statement = format!(
                    "ALTER TABLE {t} ADD FOREIGN KEY ({}) REFERENCES {} ({}) DEFERRABLE INITIALLY DEFERRED;",
                    key.columns, key.target, key.target_columns
                );
                // A reference pointed elsewhere keeps the index of its columns.
                if !before_keys.iter().any(|b| b.columns == key.columns) {
                    statement.push_str(&format!("\nCREATE INDEX ON {t} ({});", key.columns));
                }
                keys.push(statement);
                if !reformed {
                    for field in stored_fields(&key.columns) {
                        plan.summary.push(format!("{field} reference"));
                    }
                }
            } else {
                reasons.push(format!(
                    "`{resource}` gains a reference on existing rows ({}): they were never checked against it; list its field under `migrations.check` to hold them to it (the migration fails, changing nothing, where one points nowhere)",
                    key.columns
                ));
            }
        }
    }
    for before in old.iter().filter(|t| {
        !new_names.contains(t.name.as_str()) && !new_table_names.contains_key(t.name.as_str())
    }) {
        let resource = &before.resource;
        if drop.contains(resource.as_str()) {
            if before.tenant {
                let (read, list) = sql::scoped_function_names(&sql_unquote(&before.name));
                for function in [read, list] {
                    drop_tables.push(format!("DROP FUNCTION IF EXISTS {};", sql_ident(&function)));
                }
            }
            drop_tables.push(format!("DROP TABLE {};", before.name));
            plan.summary.push(format!("drop {resource}"));
        } else {
            reasons.push(format!(
                "`{resource}` is no longer in the spec: dropping its table loses its rows; list `{resource}` under `migrations.drop` to drop it, or, if it was renamed, map it to its new name under `migrations.rename`"
            ));
        }
    }
    if !reasons.is_empty() {
        return Err(EvolveError::Refused { reasons });
    }
    let moved = moves_sql(app, &moves, &new, &plan.new_tables);
    // Tables of a release that checked their rules at once: checked at commit from now on.
    let mut deferral = Vec::new();
    if old.iter().any(|t| !t.keys_deferred) && !new.is_empty() {
        deferral.push(defer_keys_sql(&new));
        plan.summary
            .push("uniqueness rules and references checked at commit".into());
    }
    // Keys after the changes of columns and tenancy: a rule holds the stored rows as they
    // end up.
    plan.statements = [renames, add, alter, drop_columns, moved].concat();
    plan.keys = [keys, drop_tables, deferral].concat();
    Ok(plan)
}

/// Makes the uniqueness rules and references to other resources of `tables` that are
/// checked at once (made by an earlier bulwark) checked at commit, as the server expects:
/// each is dropped and added again, deferred and without `ON DELETE RESTRICT` (which cannot
/// wait). The tables' `(tenant_id, id)` keys, which references point at, and their references
/// to `tenants` stay as they are.
///
/// Every table is locked first, in one statement and in name order, so that the migration
/// never holds some while waiting for others that requests hold (run it when the service
/// may pause). A uniqueness rule that any reference points at (a hand-made one included)
/// is left alone: PostgreSQL cannot drop it, nor refer to a deferred one.
fn defer_keys_sql(tables: &[TableRecord]) -> String {
    let mut names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    let literals: Vec<String> = names.iter().map(|name| sql_literal(name)).collect();
    let body = format!(
        "DECLARE\n  key record;\nBEGIN\n  FOR key IN\n    SELECT con.conrelid::regclass AS tbl, con.conname AS name, pg_catalog.pg_get_constraintdef(con.oid) AS def\n    FROM pg_catalog.pg_constraint con\n    WHERE con.conrelid = ANY (ARRAY[{}]::regclass[]) AND NOT con.condeferrable\n      AND ((con.contype = 'u' AND pg_catalog.pg_get_constraintdef(con.oid) <> 'UNIQUE (tenant_id, id)'\n          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint ref WHERE ref.contype = 'f' AND ref.conindid = con.conindid))\n        OR (con.contype = 'f' AND con.confrelid <> '\"tenants\"'::regclass))\n  LOOP\n    EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', key.tbl, key.name);\n    EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s DEFERRABLE INITIALLY DEFERRED', key.tbl, key.name, pg_catalog.replace(key.def, ' ON DELETE RESTRICT', ''));\n  END LOOP;\nEND",
        literals.join(", ")
    );
    format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE;\nDO {};",
        names.join(", "),
        sql_function_body(&body)
    )
}

/// A table that moves between tenant-scoped and global.
struct Move<'a> {
    before: &'a TableRecord,
    table: &'a TableRecord,
    /// Its uniqueness rules kept from before, in their new form.
    uniques: Vec<String>,
}

/// A quoted column list of a rule in a table of the given tenancy: led by `"tenant_id"` in a
/// tenant table, without it in a global one.
fn in_tenancy(columns: &str, tenant: bool) -> String {
    let bare = columns.strip_prefix("\"tenant_id\", ").unwrap_or(columns);
    if tenant {
        format!("\"tenant_id\", {bare}")
    } else {
        bare.to_owned()
    }
}

/// Whether two foreign keys are the same reference, whatever the tenancy of their tables.
fn same_reference(a: &sql::ForeignKey, b: &sql::ForeignKey) -> bool {
    a.target == b.target && in_tenancy(&a.columns, false) == in_tenancy(&b.columns, false)
}

/// The statements that move tables between tenant-scoped and global, after the tables'
/// columns have changed and before keys are added (the references to a moved table are
/// dropped here and added again in their new form with the other keys).
fn moves_sql(
    app: &App,
    moves: &[Move],
    new: &[TableRecord],
    new_tables: &BTreeSet<String>,
) -> Vec<String> {
    let mut statements = Vec::new();
    for m in moves {
        statements.push(format!(
            "-- {}\n{}",
            comment(&if m.table.tenant {
                format!("{} becomes tenant-scoped: each tenant gets its own copy of every stored row, and its references point at its copies.", m.table.resource)
            } else {
                format!("{} becomes global: every tenant's rows are shared by all tenants.", m.table.resource)
            }),
            drop_foreign_keys(&m.table.name, None)
        ));
    }
    let copies = |n: usize| sql_ident(&format!("bulwark_copies_{n}"));
    for (n, m) in moves.iter().enumerate() {
        let t = &m.table.name;
        statements.push(drop_uniques(t));
        if m.table.tenant {
            // Each tenant's copy of each row gets an id of its own.
            let message = sql_literal(&format!(
                "{} has stored rows and there is no tenant to give them to",
                sql_unquote(t)
            ));
            let guard = format!(
                "BEGIN
  IF EXISTS (SELECT 1 FROM {t}) AND NOT EXISTS (SELECT 1 FROM \"tenants\") THEN
    RAISE EXCEPTION '%', {message};
  END IF;
END"
            );
            statements.push(format!("DO {};", sql_function_body(&guard)));
            let columns: Vec<&str> = m.table.columns.iter().map(|c| c.name.as_str()).collect();
            let list: String = columns.iter().map(|c| format!(", {c}")).collect();
            let from: String = columns.iter().map(|c| format!(", r.{c}")).collect();
            statements.push(format!(
                "ALTER TABLE {t} ADD COLUMN \"tenant_id\" uuid REFERENCES \"tenants\" (\"id\");\n\
                 CREATE TEMPORARY TABLE {copies} AS\n    \
                 SELECT r.\"id\" AS \"old_id\", n.\"id\" AS \"tenant_id\", gen_random_uuid() AS \"new_id\" FROM {t} r CROSS JOIN \"tenants\" n;\n\
                 INSERT INTO {t} (\"id\", \"tenant_id\"{list}, \"created_at\", \"updated_at\")\n    \
                 SELECT c.\"new_id\", c.\"tenant_id\"{from}, r.\"created_at\", r.\"updated_at\" FROM {t} r JOIN {copies} c ON c.\"old_id\" = r.\"id\";",
                copies = copies(n)
            ));
        } else {
            // A renamed table's functions went with the rename.
            if m.before.name == m.table.name {
                let (read, list) = sql::scoped_function_names(&sql_unquote(t));
                statements.push(format!(
                    "DROP FUNCTION IF EXISTS {};\nDROP FUNCTION IF EXISTS {};",
                    sql_ident(&read),
                    sql_ident(&list)
                ));
            }
            statements.push(format!(
                "DROP POLICY IF EXISTS \"tenant_isolation\" ON {t};\n\
                 ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY;\n\
                 ALTER TABLE {t} DISABLE ROW LEVEL SECURITY;\n\
                 ALTER TABLE {t} DROP COLUMN \"tenant_id\";"
            ));
        }
    }
    // Every stored reference to a row that was copied points at its own tenant's copy.
    let moving: BTreeSet<&str> = moves.iter().map(|m| m.table.name.as_str()).collect();
    for (n, m) in moves.iter().enumerate().filter(|(_, m)| m.table.tenant) {
        for from in new.iter().filter(|r| !new_tables.contains(&r.resource)) {
            for key in from
                .foreign_keys
                .iter()
                .filter(|k| k.target == m.table.name)
            {
                let (r, column) = (&from.name, in_tenancy(&key.columns, false));
                let update = format!(
                    "UPDATE {r} SET {column} = c.\"new_id\" FROM {copies} c WHERE c.\"old_id\" = {r}.{column} AND c.\"tenant_id\" = {r}.\"tenant_id\";",
                    copies = copies(n)
                );
                // A tenant table that did not move is under forced row-level security.
                statements.push(unforced(r, !moving.contains(r.as_str()), &update));
            }
        }
    }
    for (n, m) in moves.iter().enumerate() {
        let t = &m.table.name;
        if m.table.tenant {
            statements.push(format!(
                "DELETE FROM {t} WHERE \"tenant_id\" IS NULL;\n\
                 DROP TABLE {copies};\n\
                 ALTER TABLE {t} ALTER COLUMN \"tenant_id\" SET NOT NULL;\n\
                 ALTER TABLE {t} ADD UNIQUE (\"tenant_id\", \"id\");",
                copies = copies(n)
            ));
        }
        for unique in &m.uniques {
            statements.push(format!(
                "ALTER TABLE {t} ADD UNIQUE ({unique}) DEFERRABLE INITIALLY DEFERRED;"
            ));
        }
        if m.table.tenant {
            let mut text = sql::row_level_security_sql(t);
            if let Some(resource) = app.resources.iter().find(|r| r.name == m.table.resource) {
                text.push_str(&sql::scoped_functions_sql(resource));
            }
            statements.push(text);
        }
    }
    statements
}

/// The statements that rename a resource's table `before` to `table`: the table (its rows,
/// keys, indexes, row-level security and grants go with it), and, for a tenant table, its read
/// and list functions made anew (their bodies name the table).
fn table_rename(app: &App, before: &TableRecord, table: &TableRecord) -> String {
    let mut text = format!("ALTER TABLE {} RENAME TO {};", before.name, table.name);
    if before.tenant {
        let (read, list) = sql::scoped_function_names(&sql_unquote(&before.name));
        for function in [read, list] {
            text.push_str(&format!(
                "\nDROP FUNCTION IF EXISTS {};",
                sql_ident(&function)
            ));
        }
        // A table that also moves to global keeps none; one that moves to tenant-scoped
        // gets them with its row-level security.
        let resource = app.resources.iter().find(|r| r.name == table.resource);
        if let (true, Some(resource)) = (table.tenant, resource) {
            text.push_str(&sql::scoped_functions_sql(resource));
        }
    }
    text
}

/// The columns of `before` renamed to columns of `table` by the spec's `migrations.rename`
/// (old and new quoted names, paired in order), for the fields whose old columns are there
/// and whose new ones were not.
fn renamed_columns(app: &App, before: &TableRecord, table: &TableRecord) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (_, from, to) in app.rename.iter().filter(|(r, _, _)| *r == table.resource) {
        let old: Vec<&Column> = before.columns.iter().filter(|c| &c.field == from).collect();
        let new: Vec<&Column> = table.columns.iter().filter(|c| &c.field == to).collect();
        let fresh = new
            .iter()
            .all(|n| !before.columns.iter().any(|c| c.name == n.name));
        if old.len() == new.len() && fresh {
            pairs.extend(
                old.iter()
                    .zip(&new)
                    .map(|(o, n)| (o.name.clone(), n.name.clone())),
            );
        }
    }
    pairs
}

/// `"name" type [NOT NULL] [DEFAULT ...] [CHECK (...)]`, as in the first migration.
/// Drops every check constraint of `column` (quoted) of `table` (quoted), whatever
/// PostgreSQL named it.
fn drop_checks(table: &str, column: &str) -> String {
    let (table, column) = (sql_literal(table), sql_literal(&sql_unquote(column)));
    let body = format!(
        "DECLARE\n  name text;\nBEGIN\n  FOR name IN\n    SELECT con.conname FROM pg_constraint con\n    JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = ANY (con.conkey)\n    WHERE con.conrelid = {table}::regclass AND con.contype = 'c' AND att.attname = {column}\n  LOOP\n    EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', {table}::regclass, name);\n  END LOOP;\nEND"
    );
    format!("DO {};", sql_function_body(&body))
}

/// Fills the empty `column` of `table`'s stored rows with `value`.
fn fill_empty(table: &str, tenant: bool, column: &str, value: &str) -> String {
    let update = format!("UPDATE {table} SET {column} = {value} WHERE {column} IS NULL;");
    unforced(table, tenant, &update)
}

/// `statement` on every stored row of `table`. Row-level security is forced on a tenant
/// table, for its owner too: lifted for this statement only, inside the migration's
/// transaction.
fn unforced(table: &str, tenant: bool, statement: &str) -> String {
    if tenant {
        format!(
            "ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;\n{statement}\nALTER TABLE {table} FORCE ROW LEVEL SECURITY;"
        )
    } else {
        statement.to_owned()
    }
}

/// Drops the foreign keys that point at `target` (quoted), whatever PostgreSQL named them:
/// with `only`, those of that table (quoted) on that column (quoted); without, every one.
fn drop_foreign_keys(target: &str, only: Option<(&str, &str)>) -> String {
    let filter = match only {
        Some((table, column)) => format!(
            "\n      AND con.conrelid = {}::regclass AND EXISTS (SELECT 1 FROM pg_attribute att\n        WHERE att.attrelid = con.conrelid AND att.attnum = ANY (con.conkey) AND att.attname = {})",
            sql_literal(table),
            sql_literal(&sql_unquote(column))
        ),
        None => String::new(),
    };
    let body = format!(
        "DECLARE\n  key record;\nBEGIN\n  FOR key IN\n    SELECT con.conrelid::regclass AS tbl, con.conname AS name FROM pg_constraint con\n    WHERE con.contype = 'f' AND con.confrelid = {}::regclass{filter}\n  LOOP\n    EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', key.tbl, key.name);\n  END LOOP;\nEND",
        sql_literal(target)
    );
    format!("DO {};", sql_function_body(&body))
}

/// Drops every uniqueness rule of `table` (quoted) but its primary key.
fn drop_uniques(table: &str) -> String {
    let table = sql_literal(table);
    let body = format!(
        "DECLARE\n  name text;\nBEGIN\n  FOR name IN\n    SELECT con.conname FROM pg_constraint con WHERE con.conrelid = {table}::regclass AND con.contype = 'u'\n  LOOP\n    EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', {table}::regclass, name);\n  END LOOP;\nEND"
    );
    format!("DO {};", sql_function_body(&body))
}

fn column_sql(column: &Column) -> String {
    let mut text = format!("{} {}", column.name, column.ty);
    if !column.nullable {
        text.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        text.push_str(&format!(" DEFAULT {default}"));
    }
    if let Some(check) = &column.check {
        text.push_str(&format!(" CHECK ({check})"));
    }
    text
}

/// A spec-derived text safe inside a one-line SQL comment.
fn comment(text: &str) -> String {
    one_line(text).replace("--", "- -")
}

/// The file name part of a migration: ASCII, from the first change.
fn slug(summary: &[String]) -> String {
    let first = summary.first().map(String::as_str).unwrap_or("changes");
    let mut slug: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    slug.truncate(40);
    let mut slug = slug.trim_matches('_').to_owned();
    while slug.contains("__") {
        slug = slug.replace("__", "_");
    }
    if summary.len() > 1 {
        slug.push_str("_and_more");
    }
    if slug.is_empty() {
        "changes".into()
    } else {
        slug
    }
}
