//! spec → model: checks every rule a spec must satisfy, reports all violations at once with
//! their location and help, and resolves names into identifiers (through `names`).

use super::names;
use super::*;
use crate::diagnostic::{Diagnostic, Loc};
use crate::load::Located;
use crate::spec::{self, Name, Scalar};
use std::collections::{BTreeSet, HashMap};

/// Columns every generated table has; a spec field may not take their names.
const RESERVED_FIELDS: [&str; 11] = [
    "id",
    "tenant_id",
    "created_at",
    "updated_at",
    "version",
    // PostgreSQL's system columns, which every table has too.
    "tableoid",
    "xmin",
    "xmax",
    "cmin",
    "cmax",
    "ctid",
];

/// Names a Windows checkout cannot hold as files (`con.rs` is `CON`), whatever the case.
const WINDOWS_DEVICES: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Tables the generated service keeps for itself (and sqlx's migration ledger).
const RESERVED_TABLES: [&str; 10] = [
    "tenants",
    "memberships",
    "tenant_domains",
    "sessions",
    "session_revocations",
    "audit_events",
    "system_audit_events",
    "processed_webhooks",
    "payment_events",
    "refunds",
];

/// Names the policies and the built-in operations use for themselves (entity types
/// `Principal`, `Machine`, `Membership`, `Domain`, Cedar's `Action`; operation ids
/// `membership.*`, `session.*`, `domain.*`), which no resource may take.
const RESERVED_ENTITIES: [&str; 6] = [
    "principal",
    "machine",
    "membership",
    "domain",
    "session",
    "action",
];

/// Paths of the built-in routes (memberships, sessions, domains), which no resource may take.
const BUILTIN_PATHS: [&str; 3] = ["memberships", "sessions", "domains"];

/// The longest a resource's name may be as an identifier: it becomes a file name (with `.rs`, and
/// `_v2` or the like for an earlier API version's module) under the 255 bytes file systems
/// allow.
const MAX_IDENT_BYTES: usize = 200;

/// The longest access-token lifetime a spec may ask for: access tokens are short-lived and
/// refreshed with rotating refresh tokens.
const MAX_TOKEN_LIFETIME_SECS: u64 = 3600;

/// Validates and resolves a spec. Returns the model, or every problem found. Names in
/// `set_aside` belong to entries the loader already reported as malformed: references to
/// them are not reported again as undefined.
/// Policies of resources `validated` knows to be valid are not validated again.
pub fn lower(
    spec: &spec::Spec,
    source: &str,
    set_aside: &BTreeSet<String>,
    validated: Option<&dyn crate::policy::Validated>,
) -> Result<App, Vec<Diagnostic>> {
    let mut cx = Lower {
        diagnostics: Vec::new(),
        spec,
        source,
        set_aside,
        unsound: BTreeSet::new(),
    };
    let app = cx.app();
    // Conditions are checked even when something else is wrong, so that every problem is
    // reported in one run; only where nothing else is wrong in the resource's fields or the
    // condition's own action (a field that failed would make the condition's errors follow
    // from it).
    cx.check_policies(&app, validated);
    if cx.diagnostics.is_empty() {
        cx.check_implicit_relations(&app);
    }
    if cx.diagnostics.is_empty() {
        Ok(app)
    } else {
        Err(cx.diagnostics)
    }
}

struct Lower<'s> {
    diagnostics: Vec<Diagnostic>,
    spec: &'s spec::Spec,
    /// The spec's text, to point inside a scalar (a condition's mistake).
    source: &'s str,
    set_aside: &'s BTreeSet<String>,
    /// Where lowering found a problem: a resource (by index, no action: its fields or
    /// itself) or one of its actions. Conditions there are not checked.
    unsound: BTreeSet<(usize, Option<usize>)>,
}

impl<'s> Lower<'s> {
    fn error(&mut self, code: &'static str, message: String, loc: Loc, help: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(code, message, loc).help(help));
    }

    /// A table may not take the name PostgreSQL gives another table's index (`a_pkey`, the
    /// key of `a`): whichever the migration made second would fail.
    fn check_implicit_relations(&mut self, app: &App) {
        let implicit = crate::render::sql::implicit_relations(app);
        for (resource, (name, _)) in app.resources.iter().zip(&self.spec.resources) {
            let mut others = implicit.get(&resource.table).into_iter().flatten();
            if let Some((_, owner)) = others.find(|(table, _)| *table != resource.table) {
                self.error(
                    "name-collision",
                    format!(
                        "resource `{}` needs table `{}`, the name PostgreSQL gives {owner}",
                        name.value, resource.table
                    ),
                    name.loc,
                    "choose another name for the resource",
                );
            }
        }
    }

    /// The policies compiled from the spec must validate against the schema compiled from
    /// it (an attribute a condition names must exist, with a type that fits its use).
    fn check_policies(&mut self, app: &App, validated: Option<&dyn crate::policy::Validated>) {
        let sound = self.diagnostics.is_empty();
        match crate::policy::validate(app, validated) {
            Ok(invalid) => {
                for problem in invalid {
                    if self.unsound.contains(&(problem.resource, None))
                        || self
                            .unsound
                            .contains(&(problem.resource, Some(problem.action)))
                    {
                        continue;
                    }
                    let (_, resource) = self
                        .spec
                        .resources
                        .get_index(problem.resource)
                        .expect("resource index from the model");
                    let (name, action) = resource
                        .actions
                        .get_index(problem.action)
                        .expect("action index from the model");
                    let loc = match (&action.when, &problem.focus) {
                        (Some(when), Some(focus)) => match when.find(focus.as_str()) {
                            Some(offset) => self.within(when, offset, focus.len()),
                            None => when.loc,
                        },
                        (Some(when), None) => when.loc,
                        (None, _) => name.loc,
                    };
                    // A field name misspelt (Cedar says which attribute it did not find).
                    let on_row = problem
                        .focus
                        .as_deref()
                        .is_some_and(|f| f.starts_with("resource."));
                    let missing = problem
                        .message
                        .strip_prefix("attribute `")
                        .and_then(|rest| rest.split_once('`'))
                        .map(|(attribute, _)| attribute)
                        .filter(|_| on_row);
                    let fields = app.resources[problem.resource]
                        .fields
                        .iter()
                        .map(|f| f.name.as_str());
                    let near = missing.and_then(|m| crate::diagnostic::did_you_mean(m, fields));
                    let usage = "conditions use `resource.<field>` (optional fields only after `resource has <field>`), `principal.sub`, `principal.roles`, `context.scopes`";
                    self.error(
                        "invalid-condition",
                        format!(
                            "condition of `{}` does not fit the resource: {}",
                            name.value, problem.message
                        ),
                        loc,
                        match near {
                            Some(near) => format!("did you mean `{near}`? {usage}"),
                            None => usage.to_owned(),
                        },
                    );
                }
            }
            // With other problems, the policies may not load because of them.
            Err(_) if !sound => {}
            Err(message) => self.error(
                "invalid-condition",
                format!("the policies compiled from this spec do not load: {message}"),
                self.spec.bulwark.loc,
                "this is likely a bug in bulwark; please report it with the spec",
            ),
        }
    }

    /// Where, in the spec, `len` bytes at byte `offset` of `scalar`'s value are: the value's
    /// text from there to the end of its line (and before any character a quoted scalar
    /// may have escaped) is found in the scalar's source, as often as it occurs before the
    /// offset. Plain, quoted and block scalars all keep such a run as written. The whole
    /// scalar when it cannot be found.
    fn within(&self, scalar: &Located<String>, offset: usize, len: usize) -> Loc {
        let value = scalar.value.as_str();
        let whole = scalar.loc;
        let Some(rest) = value.get(offset..) else {
            return whole;
        };
        let run = rest
            .split(['\n', '"', '\'', '\\'])
            .next()
            .unwrap_or_default();
        let Some(written) = self
            .source
            .get(whole.offset..whole.offset + whole.len)
            .filter(|_| !run.is_empty())
        else {
            return whole;
        };
        let before = value[..offset].matches(run).count();
        let Some((at, _)) = written.match_indices(run).nth(before) else {
            return whole;
        };
        let start = whole.offset + at;
        let line_start = self.source[..start].rfind('\n').map_or(0, |i| i + 1);
        Loc {
            line: self.source[..start].matches('\n').count() as u32 + 1,
            column: self.source[line_start..start].chars().count() as u32 + 1,
            offset: start,
            len: len.clamp(1, run.len()),
        }
    }

    /// Reports a reference to something undefined, with the closest defined name or the
    /// list of them.
    fn undefined(
        &mut self,
        code: &'static str,
        message: String,
        name: &Name,
        known: &[&str],
        define: &str,
    ) {
        // A name set aside, or one its whole section would have defined where the section
        // was read as empty (`*scopes`): reported there already.
        let section = match code {
            "undefined-role" => "*roles",
            "undefined-scope" => "*scopes",
            "undefined-resource" => "*resources",
            _ => "*fields",
        };
        if self.set_aside.contains(name.value.as_str()) || self.set_aside.contains(section) {
            return;
        }
        let diagnostic =
            Diagnostic::new(code, message, name.loc).suggest(name, known.iter().copied());
        let diagnostic = match diagnostic.help {
            Some(_) => diagnostic,
            None => diagnostic.help(format!("{define}; defined: {}", listing(known))),
        };
        self.diagnostics.push(diagnostic);
    }

    /// `api.deprecated`: earlier versions, each before the current one, with a sunset after
    /// the day it was deprecated.
    fn deprecated_versions(&mut self) -> Vec<crate::model::DeprecatedVersion> {
        let current = version_number(&self.spec.api.version);
        let mut versions = Vec::new();
        for (version, dates) in &self.spec.api.deprecated {
            match (version_number(version), current) {
                (Some(old), Some(current)) if old < current => {}
                (Some(_), Some(_)) => {
                    self.error(
                        "invalid-version",
                        format!(
                            "deprecated api version `{}` is not before the current `{}`",
                            version.value, self.spec.api.version.value
                        ),
                        version.loc,
                        "list only earlier versions still served; the current one is `api.version`",
                    );
                    continue;
                }
                (None, _) => {
                    self.error(
                        "invalid-name",
                        format!(
                            "deprecated api version `{}` is not of the form `v1`, `v2`, …",
                            version.value
                        ),
                        version.loc,
                        "name an earlier version as its paths begin, e.g. `v1`",
                    );
                    continue;
                }
                (Some(_), None) => continue,
            }
            let (Some(since), Some(sunset)) = (self.day(&dates.since), self.day(&dates.sunset))
            else {
                continue;
            };
            if sunset <= since {
                self.error(
                    "invalid-date",
                    format!(
                        "sunset `{}` is not after the deprecation on `{}`",
                        dates.sunset.value, dates.since.value
                    ),
                    dates.sunset.loc,
                    "a version is deprecated first and stops being served later",
                );
                continue;
            }
            let midnight = |day: chrono::NaiveDate| day.and_time(chrono::NaiveTime::MIN).and_utc();
            versions.push(crate::model::DeprecatedVersion {
                version: version.value.clone(),
                deprecation: format!("@{}", midnight(since).timestamp()),
                sunset: midnight(sunset)
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string(),
                since_day: since.to_string(),
                sunset_day: sunset.to_string(),
                shape: None,
            });
        }
        versions.sort_by_key(|v| version_number(&v.version));
        versions
    }

    /// A day written `YYYY-MM-DD`.
    fn day(&mut self, text: &crate::spec::Text) -> Option<chrono::NaiveDate> {
        let day = chrono::NaiveDate::parse_from_str(&text.value, "%Y-%m-%d").ok();
        if day.is_none() {
            self.error(
                "invalid-date",
                format!("`{}` is not a day written `YYYY-MM-DD`", text.value),
                text.loc,
                "write the day as year-month-day, e.g. `2027-05-01`",
            );
        }
        day
    }

    fn app(&mut self) -> App {
        let spec = self.spec;
        if spec.bulwark.value != 1 {
            self.error(
                "unsupported-version",
                format!("unsupported spec format version `{}`", spec.bulwark.value),
                spec.bulwark.loc,
                "this bulwark reads format version 1: write `bulwark: 1`",
            );
        }
        let version = &spec.api.version;
        if version_number(version).is_none() {
            self.error(
                "invalid-name",
                format!(
                    "api version `{}` is not of the form `v1`, `v2`, …",
                    version.value
                ),
                version.loc,
                "paths are versioned as `/v1/...`; write `version: v1`",
            );
        }
        let deprecated_versions = self.deprecated_versions();
        self.check_collisions("scope", spec.api.scopes.keys());
        self.check_scope_names();
        self.check_collisions("role", spec.roles.keys());
        self.check_collisions("resource", spec.resources.keys());
        self.check_collisions("environment", spec.environments.keys());

        let roles = spec
            .roles
            .iter()
            .map(|(name, role)| Role {
                name: name.value.clone(),
                ident: names::rust_ident(name),
                description: role.description.as_ref().map(|d| d.value.clone()),
                mfa_required: role
                    .mfa
                    .as_ref()
                    .is_some_and(|m| m.value == spec::Mfa::Required),
                customer: role.customer,
            })
            .collect();
        let environments = spec
            .environments
            .iter()
            .map(|(name, env)| {
                let roles = match &env.roles {
                    Some(list) => self.roles(list),
                    None => spec.roles.keys().map(|k| k.value.clone()).collect(),
                };
                Environment {
                    name: name.value.clone(),
                    roles,
                    locked_roles: self.roles(&env.locked_roles),
                }
            })
            .collect();
        let identity = self.identity();
        let admins = spec
            .tenancy
            .as_ref()
            .and_then(|t| t.admins.as_ref())
            .and_then(|admins| self.admins(admins));
        // The app's name reaches crate names, documents and the terminal like any other.
        self.check_name("app", &spec.app.name);
        let resources: Vec<Resource> = spec
            .resources
            .iter()
            .enumerate()
            .map(|(index, (name, resource))| self.resource(index, name, resource))
            .collect();
        self.check_path_collisions(&resources);
        self.check_references(&resources);
        let payments = spec.payments.as_ref().map(|p| self.payments(p, &resources));
        let (check, backfill) = self.checked_changes(&resources);
        App {
            name: spec.app.name.value.clone(),
            ident: names::snake(&spec.app.name),
            description: spec.app.description.as_ref().map(|d| d.value.clone()),
            owners: spec.app.owners.iter().map(|o| o.value.clone()).collect(),
            api_version: version.value.clone(),
            scopes: spec
                .api
                .scopes
                .iter()
                .map(|(name, text)| Scope {
                    name: name.value.clone(),
                    description: text.value.clone(),
                })
                .collect(),
            roles,
            environments,
            identity,
            verify_domains: spec.tenancy.as_ref().is_some_and(|t| t.verify_domains),
            admins,
            resources,
            payments,
            drop: self.drops(),
            tenancy: self.tenancy_changes(),
            rename: self.renames(),
            rename_resources: self.resource_renames(),
            check,
            backfill,
            deprecated_versions,
            public_rate_limit: self.class_rate_limit(|l| l.public.as_ref(), "60/min"),
            sensitive_rate_limit: self.class_rate_limit(|l| l.sensitive.as_ref(), "30/min"),
            standard_rate_limit: self.class_rate_limit(|l| l.standard.as_ref(), "600/min"),
        }
    }

    /// `api.rate_limits.<class>`, or its default.
    fn class_rate_limit(
        &mut self,
        pick: impl Fn(&spec::ClassRateLimits) -> Option<&spec::Text>,
        default: &str,
    ) -> RateLimit {
        let fallback = parse_rate_limit(default).expect("the defaults parse");
        let Some(text) = self.spec.api.rate_limits.as_ref().and_then(pick) else {
            return fallback;
        };
        parse_rate_limit(text).unwrap_or_else(|| {
            self.error(
                "invalid-rate-limit",
                format!("`{}` is not a rate limit", text.value),
                text.loc,
                "write requests per unit: `60/min`, `10/s` or `1000/hour`",
            );
            fallback
        })
    }

    /// `migrations.rename`: each entry maps a `resource.field` the spec no longer has to a
    /// field the same resource has.
    fn renames(&mut self) -> Vec<(String, String, String)> {
        let spec = self.spec;
        let mut renames = Vec::new();
        for (from, to) in spec.migrations.iter().flat_map(|m| &m.rename) {
            let Some((resource, old)) = from.value.split_once('.') else {
                continue; // a resource: `resource_renames`
            };
            if resource.is_empty() || old.is_empty() || old.contains('.') {
                self.error(
                    "invalid-name",
                    format!("`{}` is neither a resource nor a `resource.field`", from.value),
                    from.loc,
                    "write a field's old name with its resource (`invoice.notes: memo`), a resource's alone (`invoice: bill`)",
                );
                continue;
            }
            let Some((_, target)) = spec.resources.iter().find(|(k, _)| k.value == resource) else {
                self.error(
                    "undefined-resource",
                    format!(
                        "`migrations.rename` names `{}`, but the spec has no resource `{resource}`",
                        from.value
                    ),
                    from.loc,
                    "a field is renamed under its resource's current name (rename the resource itself with `old: new`)",
                );
                continue;
            };
            if target.fields.keys().any(|f| f.value == old) {
                self.error(
                    "rename-of-live-field",
                    format!(
                        "`migrations.rename` names `{}`, which the spec still has",
                        from.value
                    ),
                    from.loc,
                    "the old name must be gone from the spec; rename the field there first",
                );
                continue;
            }
            if !target.fields.keys().any(|f| f.value == to.value) {
                self.error(
                    "undefined-field",
                    format!(
                        "`{resource}` has no field `{}` to rename `{old}` to",
                        to.value
                    ),
                    to.loc,
                    "write the field's new name as the spec has it",
                );
                continue;
            }
            renames.push((resource.to_owned(), old.to_owned(), to.value.clone()));
        }
        renames
    }

    /// `migrations.rename` entries without a dot: each maps a resource the spec no longer
    /// has to one it has.
    fn resource_renames(&mut self) -> Vec<(String, String)> {
        let spec = self.spec;
        let mut renames: Vec<(String, String)> = Vec::new();
        for (from, to) in spec.migrations.iter().flat_map(|m| &m.rename) {
            if from.value.contains('.') {
                continue; // a field: `renames`
            }
            if from.value.is_empty() || spec.resources.keys().any(|k| k.value == from.value) {
                self.error(
                    "rename-of-live-resource",
                    format!(
                        "`migrations.rename` names `{}`, which the spec still has",
                        from.value
                    ),
                    from.loc,
                    "the old name must be gone from the spec; rename the resource there first",
                );
                continue;
            }
            if !spec.resources.keys().any(|k| k.value == to.value) {
                self.error(
                    "undefined-resource",
                    format!(
                        "the spec has no resource `{}` to rename `{}` to",
                        to.value, from.value
                    ),
                    to.loc,
                    "write the resource's new name as the spec has it",
                );
                continue;
            }
            if let Some((other, _)) = renames.iter().find(|(_, new)| *new == to.value) {
                self.error(
                    "duplicate-rename",
                    format!(
                        "`{}` and `{other}` are both renamed to `{}`",
                        from.value, to.value
                    ),
                    from.loc,
                    "one table becomes the new resource's; drop the other under `migrations.drop`",
                );
                continue;
            }
            renames.push((from.value.clone(), to.value.clone()));
        }
        renames
    }

    /// `migrations.check` and `migrations.backfill`: each names a `resource.field` the spec
    /// has; a backfill value fits the field (as a default would) and the field is required
    /// (an optional one's stored rows may stay empty).
    fn checked_changes(&mut self, resources: &[Resource]) -> (Vec<String>, Vec<(String, Value)>) {
        let spec = self.spec;
        let field_of =
            |this: &mut Self, entry: &spec::Text, marker: &str| -> Option<(usize, usize)> {
                let found = entry.value.split_once('.').and_then(|(resource, field)| {
                    let r = resources.iter().position(|r| r.name == resource)?;
                    let f = resources[r].fields.iter().position(|f| f.name == field)?;
                    Some((r, f))
                });
                if found.is_none() {
                    this.error(
                        "undefined-field",
                        format!(
                            "`migrations.{marker}` names `{}`, which is not a field of the spec",
                            entry.value
                        ),
                        entry.loc,
                        "write the field as `resource.field`, as the spec now names it",
                    );
                }
                found
            };
        let mut check = Vec::new();
        for entry in spec.migrations.iter().flat_map(|m| &m.check) {
            if field_of(self, entry, "check").is_some() {
                check.push(entry.value.clone());
            }
        }
        let mut backfill = Vec::new();
        for (entry, value) in spec.migrations.iter().flat_map(|m| &m.backfill) {
            let Some((r, f)) = field_of(self, entry, "backfill") else {
                continue;
            };
            let field = &resources[r].fields[f];
            if field.optional {
                self.error(
                    "backfill-of-optional",
                    format!(
                        "`migrations.backfill` fills `{}`, which is optional",
                        entry.value
                    ),
                    entry.loc,
                    "stored rows of an optional field may stay empty: remove the entry",
                );
                continue;
            }
            // Within the field's bounds, as a default must be: else the migration would fail
            // on its own value.
            let declared = spec
                .resources
                .iter()
                .find(|(k, _)| k.value == resources[r].name)
                .and_then(|(_, res)| res.fields.iter().find(|(k, _)| k.value == field.name))
                .map(|(_, declared)| declared);
            if let Some(checked) = self.literal(&field.ty, value, &field.name)
                && declared.is_none_or(|d| self.within_bounds(d, &checked, value.loc))
            {
                backfill.push((entry.value.clone(), checked));
            }
        }
        (check, backfill)
    }

    /// `migrations.tenancy`: each entry names a resource of the spec and the way it moves,
    /// which must be the way its `global` says (whether it really moved is known only
    /// against the previous generation). An entry saying otherwise is one left from an
    /// earlier move: it must not acknowledge the move back.
    fn tenancy_changes(&mut self) -> Vec<String> {
        let spec = self.spec;
        let mut moves = Vec::new();
        for (resource, way) in spec.migrations.iter().flat_map(|m| &m.tenancy) {
            let Some(index) = self.resource_index(resource) else {
                continue;
            };
            let global = spec.resources[index]
                .global
                .as_ref()
                .is_some_and(|g| g.value);
            let to_global = match way.value.as_str() {
                "global" => true,
                "tenant" => false,
                other => {
                    self.error(
                        "invalid-value",
                        format!("`{other}` is not a way to move `{}`", resource.value),
                        way.loc,
                        "write `global` (its rows become shared by every tenant) or `tenant` (each tenant gets its own copy)",
                    );
                    continue;
                }
            };
            if to_global != global {
                let (said, is) = match to_global {
                    true => ("global", "tenant-scoped"),
                    false => ("tenant-scoped", "global"),
                };
                self.error(
                    "tenancy-direction",
                    format!(
                        "`migrations.tenancy` says `{}` becomes {said}, but the spec has it {is}",
                        resource.value
                    ),
                    way.loc,
                    "an entry left from an earlier move never acknowledges a move back: remove it, or write the way the resource moves now",
                );
                continue;
            }
            moves.push(resource.value.clone());
        }
        moves
    }

    /// `migrations.drop`: each entry names a resource or `resource.field` that the spec no
    /// longer has (naming one it still has would drop live data).
    fn drops(&mut self) -> Vec<String> {
        let spec = self.spec;
        let mut drops = Vec::new();
        for entry in spec.migrations.iter().flat_map(|m| &m.drop) {
            let parts: Vec<&str> = entry.value.split('.').collect();
            let still_there = match parts.as_slice() {
                [resource] if !resource.is_empty() => {
                    spec.resources.keys().any(|k| k.value == *resource)
                }
                [resource, field] if !resource.is_empty() && !field.is_empty() => {
                    spec.resources.iter().any(|(k, r)| {
                        k.value == *resource && r.fields.keys().any(|f| f.value == *field)
                    })
                }
                _ => {
                    self.error(
                        "invalid-name",
                        format!("`{}` is not a resource or `resource.field`", entry.value),
                        entry.loc,
                        "write the resource's name (`invoice`) or the field's (`invoice.notes`)",
                    );
                    continue;
                }
            };
            if still_there {
                self.error(
                    "drop-of-live-data",
                    format!(
                        "`migrations.drop` names `{}`, which the spec still has",
                        entry.value
                    ),
                    entry.loc,
                    "remove it from the spec first, or take it out of `migrations.drop`",
                );
                continue;
            }
            drops.push(entry.value.clone());
        }
        drops
    }

    /// Names in one namespace must stay distinct after conversion to identifiers.
    fn check_collisions<'a>(&mut self, what: &str, keys: impl Iterator<Item = &'a Name>) {
        // Two names collide when their identifier or their type name would be the same
        // (`line_item`/`LineItem`, and `a_1`/`a1`, which both become `A1`).
        let mut seen: HashMap<String, &Name> = HashMap::new();
        let mut look_alike: HashMap<String, &Name> = HashMap::new();
        for key in keys {
            if !self.check_name(what, key) {
                continue;
            }
            // The SQL name too: a shortened name ends in a hash another name could spell.
            let forms = [
                names::snake(key),
                names::rust_type(key),
                names::sql_name(key),
            ];
            match forms
                .iter()
                .find_map(|form| seen.get(form).map(|first| (form, first)))
            {
                Some((form, first)) => {
                    let message = format!(
                        "{what} `{}` collides with `{}` (both become `{form}`)",
                        key.value, first.value
                    );
                    let help =
                        "rename one of them; names are compared after conversion to identifiers";
                    self.error("colliding-names", message, key.loc, help);
                    continue;
                }
                None => {
                    for form in forms {
                        seen.insert(form, key);
                    }
                }
            }
            // Names that look alike (TR39 skeletons: Cyrillic `аdmin` and `admin`, `café`
            // composed and decomposed) would read as one in PERMISSIONS.md. Among ASCII names
            // alone the skeleton is too eager (`rn` looks like `m`), so one must be non-ASCII.
            let skeleton: String = unicode_security::skeleton(&key.value).collect();
            match look_alike.get(&skeleton) {
                Some(first) if !(first.value.is_ascii() && key.value.is_ascii()) => {
                    // Spelt out, since they look alike: `\u{430}dmin` and `admin`.
                    let spelt = |name: &str| -> String {
                        name.chars()
                            .map(|c| match c {
                                ' '..='~' => c.to_string(),
                                _ => format!("\\u{{{:x}}}", u32::from(c)),
                            })
                            .collect()
                    };
                    let message = format!(
                        "{what} `{}` looks like `{}`",
                        spelt(&key.value),
                        spelt(&first.value)
                    );
                    let help = "rename one of them: a reviewer could not tell them apart";
                    self.error("colliding-names", message, key.loc, help);
                }
                Some(_) => {}
                None => {
                    look_alike.insert(skeleton, key);
                }
            }
        }
    }

    /// A name must have something visible in it and nothing invisible.
    fn check_name(&mut self, what: &str, name: &Name) -> bool {
        if name.value.trim().is_empty() {
            self.error(
                "invalid-name",
                format!("empty {what} name"),
                name.loc,
                "give it a name",
            );
            return false;
        }
        if name.value.chars().any(names::is_invisible) {
            self.error(
                "invalid-name",
                format!(
                    "{what} name `{}` contains control or invisible characters",
                    name.value.escape_debug()
                ),
                name.loc,
                "names end up in code, SQL and URLs: use visible characters only",
            );
            return false;
        }
        // An operation is named `resource.action` (Cedar's action ids, the server's
        // operations): a dot inside either name could make two of them the same.
        if matches!(what, "resource" | "action") && name.value.contains('.') {
            self.error(
                "invalid-name",
                format!("{what} name `{}` contains `.`", name.value),
                name.loc,
                "`.` joins a resource's and an action's names into an operation id (`invoice.send`): use `_` or `-`",
            );
            return false;
        }
        // A resource's name becomes file names too, which file systems cap at 255 bytes.
        if what == "resource" && names::rust_ident(&name.value).len() > MAX_IDENT_BYTES {
            self.error(
                "invalid-name",
                format!("{what} name `{}` is too long", name.value),
                name.loc,
                format!("as an identifier it takes more than {MAX_IDENT_BYTES} bytes (each character other than ASCII letters and digits takes several): shorten it"),
            );
            return false;
        }
        true
    }

    /// Distinct resources must be served at distinct paths (names that already collide as
    /// identifiers are reported once, by `check_collisions`).
    fn check_path_collisions(&mut self, resources: &[Resource]) {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let mut idents = std::collections::HashSet::new();
        for (resource, (key, _)) in resources.iter().zip(&self.spec.resources) {
            // (A reserved name is reported as such, whatever its path.)
            if !idents.insert(names::snake(key))
                || RESERVED_ENTITIES.contains(&names::snake(key).as_str())
            {
                continue;
            }
            if BUILTIN_PATHS.contains(&resource.path.as_str()) {
                let message = format!(
                    "resource `{}` is served at `/{}`, a path of the service's built-in routes",
                    resource.name, resource.path
                );
                self.error(
                    "reserved-path",
                    message,
                    key.loc,
                    "memberships and sessions are built in (see `tenancy.admins`); set another `path:`",
                );
            }
            if let Some(first) = seen.get(resource.path.as_str()) {
                if *first != resource.name {
                    let message = format!(
                        "resource `{}` is served at `/{}`, like `{first}`",
                        resource.name, resource.path
                    );
                    self.error(
                        "colliding-names",
                        message,
                        key.loc,
                        "set a distinct `path:` on one of them",
                    );
                }
            } else {
                seen.insert(&resource.path, &resource.name);
            }
        }
    }

    /// References must be creatable and stay inside their scope: a global row cannot point
    /// at a tenant's row, and required references cannot form a cycle (no first row could
    /// ever be inserted).
    fn check_references(&mut self, resources: &[Resource]) {
        let specs: Vec<_> = self.spec.resources.values().collect();
        for (index, resource) in resources.iter().enumerate() {
            for field in &resource.fields {
                let FieldType::Reference { resource: target } = field.ty else {
                    continue;
                };
                let Some((key, _)) = specs[index].fields.get_key_value(field.name.as_str()) else {
                    continue;
                };
                if resource.global && !resources[target].global {
                    self.error(
                        "global-references-tenant",
                        format!(
                            "global resource `{}` refers to tenant-scoped `{}`",
                            resource.name, resources[target].name
                        ),
                        key.loc,
                        "a row shared by every tenant cannot point at one tenant's row; make the field refer to a global resource",
                    );
                }
            }
        }
        // Depth-first search over required references for a cycle.
        let required = |index: usize| -> Vec<(usize, &Field)> {
            resources[index]
                .fields
                .iter()
                .filter(|f| !f.optional)
                .filter_map(|f| match f.ty {
                    FieldType::Reference { resource } => Some((resource, f)),
                    _ => None,
                })
                .collect()
        };
        let mut state = vec![0u8; resources.len()]; // 0 new, 1 on the path, 2 done
        let mut reported = false;
        for start in 0..resources.len() {
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            if state[start] != 0 {
                continue;
            }
            state[start] = 1;
            while let Some((node, next)) = stack.pop() {
                let edges = required(node);
                if next < edges.len() {
                    stack.push((node, next + 1));
                    let (target, field) = edges[next];
                    match state[target] {
                        0 => {
                            state[target] = 1;
                            stack.push((target, 0));
                        }
                        1 if !reported => {
                            reported = true;
                            let loc = specs[node]
                                .fields
                                .get_key_value(field.name.as_str())
                                .map(|(k, _)| k.loc)
                                .unwrap_or_default();
                            self.error(
                                "reference-cycle",
                                format!(
                                    "required references form a cycle through `{}.{}`",
                                    resources[node].name, field.name
                                ),
                                loc,
                                "no first row could ever be created; make one reference `optional: true`",
                            );
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                }
            }
        }
    }

    fn role(&mut self, name: &Name) -> Option<String> {
        if self.spec.roles.contains_key(name) {
            return Some(name.value.clone());
        }
        let known: Vec<&str> = self.spec.roles.keys().map(|k| k.value.as_str()).collect();
        let message = format!("undefined role `{}`", name.value);
        self.undefined(
            "undefined-role",
            message,
            name,
            &known,
            "define it under `roles:`",
        );
        None
    }

    fn roles(&mut self, names: &[Name]) -> Vec<String> {
        names.iter().filter_map(|n| self.role(n)).collect()
    }

    fn scope(&mut self, name: &Name) -> Option<String> {
        if self.spec.api.scopes.contains_key(name) {
            return Some(name.value.clone());
        }
        let known: Vec<&str> = self
            .spec
            .api
            .scopes
            .keys()
            .map(|k| k.value.as_str())
            .collect();
        let message = format!("undefined scope `{}`", name.value);
        self.undefined(
            "undefined-scope",
            message,
            name,
            &known,
            "define it under `api.scopes:`",
        );
        None
    }

    /// The built-in routes' roles and scope; `None` (no routes) if they name nothing valid.
    fn admins(&mut self, admins: &spec::Admins) -> Option<Admins> {
        let roles = self.roles(&admins.roles);
        let scope = self.scope(&admins.scope);
        if admins.roles.is_empty() {
            self.error(
                "admins-without-roles",
                "`tenancy.admins` names no roles".into(),
                admins.scope.loc,
                "list the roles that manage memberships, e.g. `roles: [owner]`",
            );
        }
        // A customer role is the other side of the business: it never manages who works in
        // the tenant.
        for role in &admins.roles {
            if self.spec.roles.get(role).is_some_and(|r| r.customer) {
                self.error(
                    "customer-admin",
                    format!("customer role `{}` cannot manage memberships", role.value),
                    role.loc,
                    "name the tenant's own staff roles under `tenancy.admins` (e.g. `owner`); customer roles are for the tenant's customers",
                );
            }
        }
        if roles.len() != admins.roles.len() || roles.is_empty() {
            return None;
        }
        Some(Admins {
            roles,
            scope: scope?,
        })
    }

    fn resource_index(&mut self, name: &Name) -> Option<usize> {
        let index = self.spec.resources.get_index_of(name);
        if index.is_none() {
            let known: Vec<&str> = self
                .spec
                .resources
                .keys()
                .map(|k| k.value.as_str())
                .collect();
            let message = format!("undefined resource `{}`", name.value);
            self.undefined(
                "undefined-resource",
                message,
                name,
                &known,
                "define it under `resources:`",
            );
        }
        index
    }

    fn undefined_field(&mut self, name: &Name, resource: &str, known: &[&str]) {
        let message = format!("resource `{resource}` has no field `{}`", name.value);
        self.undefined(
            "undefined-field",
            message,
            name,
            known,
            "add it to the resource's `fields:`",
        );
    }

    /// OAuth scope names are RFC 6749 scope tokens: printable ASCII without spaces, `"` or `\\`.
    fn check_scope_names(&mut self) {
        for name in self.spec.api.scopes.keys() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
            if !valid {
                self.error(
                    "invalid-name",
                    format!("scope `{}` is not an OAuth scope token", name.value.escape_debug()),
                    name.loc,
                    "scopes are printable ASCII without spaces, quotes or backslashes, e.g. `invoices.read`",
                );
            }
        }
    }

    fn identity(&mut self) -> Identity {
        let Some(id) = &self.spec.identity else {
            return Identity {
                issuer: None,
                audience: None,
                max_token_lifetime_secs: 900,
                tenant_claim: "tenant_id".into(),
                email_claim: "email".into(),
                mfa_factors: default_factors(),
                require_verified_email: false,
                machine_scope: None,
            };
        };
        if !id.issuer.starts_with("https://") {
            self.error(
                "insecure-issuer",
                format!("issuer `{}` is not an HTTPS URL", id.issuer.value),
                id.issuer.loc,
                "tokens and keys are only trusted from an `https://` issuer",
            );
        } else if !is_plain_url(&id.issuer) {
            self.error(
                "invalid-name",
                format!("issuer `{}` is not a plain URL", id.issuer.value.escape_debug()),
                id.issuer.loc,
                "write the issuer exactly as its tokens' `iss` claim has it, e.g. `https://id.example.com/`",
            );
        }
        let lifetime = match &id.max_token_lifetime {
            Some(text) => self.duration(text).unwrap_or(900),
            None => 900,
        };
        if lifetime > MAX_TOKEN_LIFETIME_SECS
            && let Some(text) = &id.max_token_lifetime
        {
            self.error(
                "token-lifetime-too-long",
                format!("access tokens living `{}` are too long-lived", text.value),
                text.loc,
                "keep access tokens short (at most `1h`; `10m` is typical) and let clients refresh them with rotating refresh tokens",
            );
        }
        if let Some(factors) = &id.mfa_factors {
            self.check_factors(factors);
        }
        let claims = id.claims.as_ref();
        // Compared byte for byte with the token's: what a reviewer reads must be all there is.
        let exact = [
            Some(("audience", &id.audience)),
            claims
                .and_then(|c| c.tenant.as_ref())
                .map(|n| ("tenant claim", n)),
            claims
                .and_then(|c| c.email.as_ref())
                .map(|n| ("email claim", n)),
        ];
        for (what, text) in exact.into_iter().flatten() {
            if !is_plain_token(text) {
                self.error(
                    "invalid-claim",
                    format!("{what} `{}` is empty or holds spaces or invisible characters", text.value.escape_debug()),
                    text.loc,
                    "write it exactly as the identity provider's tokens carry it, e.g. `invoices-api` or `tenant_id`",
                );
            }
        }
        Identity {
            issuer: Some(id.issuer.value.clone()),
            audience: Some(id.audience.value.clone()),
            max_token_lifetime_secs: lifetime,
            tenant_claim: claims
                .and_then(|c| c.tenant.as_ref())
                .map_or("tenant_id".into(), |c| c.value.clone()),
            email_claim: claims
                .and_then(|c| c.email.as_ref())
                .map_or("email".into(), |c| c.value.clone()),
            mfa_factors: id.mfa_factors.as_ref().map_or_else(default_factors, |f| {
                f.iter().map(|n| n.value.clone()).collect()
            }),
            require_verified_email: id.require_verified_email,
            machine_scope: id.machine_scope.as_ref().and_then(|s| self.scope(s)),
        }
    }

    /// `amr` values that count as a second factor must be one: a password, a PIN or a
    /// knowledge question is what a first factor already is (RFC 8176), and a role that needs
    /// a second factor needs some value to show it.
    fn check_factors(&mut self, factors: &[Name]) {
        for factor in factors {
            if FIRST_FACTORS.contains(&factor.value.as_str()) || !is_plain_token(factor) {
                self.error(
                    "not-a-second-factor",
                    format!("`{}` does not show a second factor", factor.value.escape_debug()),
                    factor.loc,
                    format!(
                        "list `amr` values of a second factor, such as `mfa`, `hwk`, `otp`, `swk` or `sms`; {} show none",
                        listing(&FIRST_FACTORS)
                    ),
                );
            }
        }
        if factors.is_empty()
            && let Some((name, role)) = self.spec.roles.iter().find(|(_, r)| {
                r.mfa
                    .as_ref()
                    .is_some_and(|m| m.value == spec::Mfa::Required)
            })
        {
            let at = role.mfa.as_ref().map_or(name.loc, |m| m.loc);
            self.error(
                "not-a-second-factor",
                format!(
                    "role `{}` needs a second factor, but `identity.mfa_factors` lists none",
                    name.value
                ),
                at,
                "list the `amr` values that show a second factor (the default is `[mfa, hwk, otp]`)",
            );
        }
    }

    fn duration(&mut self, text: &Located<String>) -> Option<u64> {
        let parsed = parse_duration(text);
        if parsed.is_none() {
            self.error(
                "invalid-duration",
                format!("`{}` is not a duration", text.value),
                text.loc,
                "write a number and a unit: `30s`, `10m` or `1h`",
            );
        }
        parsed
    }

    fn resource(&mut self, index: usize, name: &Name, spec: &spec::Resource) -> Resource {
        let start = self.diagnostics.len();
        let global = spec.global.as_ref().is_some_and(|g| g.value);
        self.check_collisions("field", spec.fields.keys());
        self.check_collisions("action", spec.actions.keys());
        let type_name = names::rust_type(name);
        let fields: Vec<Field> = spec
            .fields
            .iter()
            .map(|(n, f)| self.field(n, f, &type_name))
            .collect();
        self.check_columns(spec, &fields);
        self.check_enum_types(spec, &fields);
        let table = names::sql_name(name);
        let reserved = if RESERVED_TABLES.contains(&table.as_str()) || table.starts_with('_') {
            Some((
                "the service keeps tables of its own",
                listing(&RESERVED_TABLES),
            ))
        } else if RESERVED_ENTITIES.contains(&table.as_str()) {
            Some((
                "the policies and the built-in operations use these names",
                listing(&RESERVED_ENTITIES),
            ))
        } else if table.starts_with("pg_") {
            Some((
                "PostgreSQL finds its own catalogs first under such names",
                "`pg_...`".into(),
            ))
        } else if WINDOWS_DEVICES.contains(&names::snake(name).as_str()) {
            Some((
                "its files (`con.rs`) could not be checked out on Windows",
                listing(&WINDOWS_DEVICES),
            ))
        } else if version_number(&names::snake(name)).is_some() {
            Some((
                "API versions take these module names (`v1`)",
                "`v` and a number".into(),
            ))
        } else {
            None
        };
        if let Some((why, names)) = reserved {
            self.error(
                "reserved-name",
                format!("resource name `{}` is reserved", name.value),
                name.loc,
                format!("{why} ({names}); choose another name"),
            );
        }
        // (An entry the loader set aside may have been this resource's only field or
        // action: it was reported, and "none" would not be true.)
        if (spec.fields.is_empty() || spec.actions.is_empty()) && self.set_aside.is_empty() {
            let what = if spec.fields.is_empty() {
                "fields"
            } else {
                "actions"
            };
            self.error(
                "empty-resource",
                format!("resource `{}` has no {what}", name.value),
                name.loc,
                "a resource stores at least one field and serves at least one action",
            );
        }
        let path = match &spec.path {
            Some(p) => {
                let segment = names::snake(p).replace('_', "-");
                if segment != p.value {
                    self.error(
                        "invalid-name",
                        format!("path `{}` is not a lowercase URL segment", p.value),
                        p.loc,
                        format!("write `{segment}`"),
                    );
                }
                segment
            }
            None => names::path_segment(name),
        };
        if self.diagnostics.len() > start {
            self.unsound.insert((index, None));
        }
        let actions: Vec<Action> = spec
            .actions
            .iter()
            .enumerate()
            .map(|(at, (action_name, action))| {
                let before = self.diagnostics.len();
                let lowered = self.action(name, spec, global, &path, &fields, action_name, action);
                if self.diagnostics.len() > before {
                    self.unsound.insert((index, Some(at)));
                }
                lowered
            })
            .collect();
        self.check_public_list(name, spec, &actions);
        Resource {
            name: name.value.clone(),
            ident: names::rust_ident(name),
            type_name,
            table,
            path,
            description: spec.description.as_ref().map(|d| d.value.clone()),
            global,
            fields,
            actions,
            threats: spec
                .threats
                .iter()
                .map(|t| Threat {
                    stride: stride_name(t.stride.value).into(),
                    risk: t.risk.value.clone(),
                    mitigation: t.mitigation.value.clone(),
                })
                .collect(),
        }
    }

    /// A public list shows every row to anyone, unchecked: a read of the same rows that
    /// needs a role would be a promise the list breaks.
    fn check_public_list(&mut self, name: &Name, spec: &spec::Resource, actions: &[Action]) {
        let public = |kind: ActionKind| {
            spec.actions
                .keys()
                .zip(actions)
                .find(|(_, a)| a.kind == kind)
                .map(|(key, a)| (key.loc, a.public.is_some()))
        };
        // Only a global resource may have public actions; the others were reported.
        let global = spec.global.as_ref().is_some_and(|g| g.value);
        if let (true, Some((at, true)), Some((_, false))) =
            (global, public(ActionKind::List), public(ActionKind::Read))
        {
            self.error(
                "public-list-restricted-read",
                format!(
                    "`{}` lists its rows to everyone, but reading one needs a role",
                    name.value
                ),
                at,
                "a public list is not checked row by row: make `read` public too, or give `list` roles (it is then checked against `read` for every row)",
            );
        }
    }

    /// Column names stay distinct, including the two columns a money field takes
    /// (`total_minor`, `total_currency`).
    fn check_columns(&mut self, spec: &spec::Resource, fields: &[Field]) {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (field, (key, _)) in fields.iter().zip(&spec.fields) {
            let columns = match field.ty {
                FieldType::Money => {
                    let (minor, currency) = crate::render::sql::money_columns(field);
                    vec![minor, currency]
                }
                _ => vec![field.column.clone()],
            };
            for column in columns {
                match seen.get(column.as_str()) {
                    // Names that are the same identifier were reported by `check_collisions`.
                    Some(first) if names::snake(first) != names::snake(&field.name) => {
                        let message = format!(
                            "field `{}` needs column `{column}`, which `{first}` has too",
                            field.name
                        );
                        self.error(
                            "colliding-names",
                            message,
                            key.loc,
                            "rename one of the fields",
                        );
                    }
                    _ => {
                        seen.insert(column, &field.name);
                    }
                }
            }
        }
    }

    /// The enum types of one resource share its module: their names must stay distinct.
    fn check_enum_types(&mut self, spec: &spec::Resource, fields: &[Field]) {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (field, (key, _)) in fields.iter().zip(&spec.fields) {
            if let FieldType::Enum { type_name, .. } = &field.ty {
                match seen.get(type_name.as_str()) {
                    Some(first) => {
                        let message = format!(
                            "enum fields `{first}` and `{}` both need the type `{type_name}`",
                            field.name
                        );
                        self.error(
                            "colliding-names",
                            message,
                            key.loc,
                            "rename one of the fields",
                        );
                    }
                    None => {
                        seen.insert(type_name, &field.name);
                    }
                }
            }
        }
    }

    fn field(&mut self, name: &Name, spec: &spec::Field, resource_type: &str) -> Field {
        let snake = names::snake(name);
        if RESERVED_FIELDS.contains(&snake.as_str()) {
            self.error(
                "reserved-name",
                format!("field name `{}` is reserved", name.value),
                name.loc,
                format!(
                    "every table already has {}; choose another name",
                    listing(&RESERVED_FIELDS)
                ),
            );
        }
        // A name spelt with look-alike letters (Cyrillic `а` in `cаrd_number`) means what it
        // reads as.
        let card = card_data(name)
            .map(|kind| (kind, String::new()))
            .or_else(|| {
                let reading = names::ascii_reading(name)?;
                let kind = card_data(&reading)?;
                Some((
                    kind,
                    format!(", read as `{reading}`: some of its letters only look like ASCII ones"),
                ))
            });
        if let Some((kind, reads_as)) = card {
            self.error(
                "card-data",
                format!(
                    "field `{}` would hold raw card data ({kind}{reads_as})",
                    name.value
                ),
                name.loc,
                "card data never touches this service: take payments through the provider's hosted checkout (`payments.checkout`) and store only its references",
            );
        }
        let ty = match spec.ty.value {
            spec::FieldType::String => FieldType::String,
            spec::FieldType::Text => FieldType::Text,
            spec::FieldType::Int => FieldType::Int,
            spec::FieldType::Bool => FieldType::Bool,
            spec::FieldType::Decimal => FieldType::Decimal,
            spec::FieldType::Money => FieldType::Money,
            spec::FieldType::Timestamp => FieldType::Timestamp,
            spec::FieldType::Date => FieldType::Date,
            spec::FieldType::Uuid => FieldType::Uuid,
            spec::FieldType::Email => FieldType::Email,
            spec::FieldType::Principal => FieldType::Principal,
            spec::FieldType::Enum => {
                let variants = match &spec.values {
                    Some(values) if !values.is_empty() => self.enum_variants(values),
                    _ => {
                        self.error(
                            "enum-without-values",
                            format!("enum field `{}` has no values", name.value),
                            name.loc,
                            "list the allowed values: `values: [draft, open]`",
                        );
                        Vec::new()
                    }
                };
                // The enum lives beside the resource's own types and imports.
                let mut type_name = names::rust_type(name);
                if [
                    resource_type.to_owned(),
                    format!("{}Input", resource_type.trim_end_matches('_')),
                ]
                .contains(&type_name)
                    || ["Serialize", "Deserialize", "FieldError"].contains(&type_name.as_str())
                {
                    type_name.push_str("Value");
                }
                FieldType::Enum {
                    type_name,
                    variants,
                }
            }
            // An unresolved reference is reported here and lowered as a plain uuid, so later
            // checks (cycles, scope) do not report it again under another name.
            spec::FieldType::Reference => match &spec.to {
                Some(target) => match self.resource_index(target) {
                    Some(index) => FieldType::Reference { resource: index },
                    None => FieldType::Uuid,
                },
                None => {
                    self.error(
                        "missing-target",
                        format!(
                            "reference field `{}` does not say what it refers to",
                            name.value
                        ),
                        name.loc,
                        "add `to: <resource>`",
                    );
                    FieldType::Uuid
                }
            },
        };
        if spec.ty.value != spec::FieldType::Enum
            && let Some(values) = &spec.values
        {
            let loc = values.first().map_or(spec.ty.loc, |v| v.loc);
            self.error(
                "values-on-non-enum",
                format!("field `{}` lists values but is not an enum", name.value),
                loc,
                "use `type: enum`, or remove `values`",
            );
        }
        self.check_constraints(name, spec, &ty);
        let default = spec
            .default
            .as_ref()
            .and_then(|d| self.literal(&ty, d, &name.value))
            .filter(|value| {
                self.within_bounds(
                    spec,
                    value,
                    spec.default.as_ref().map_or(name.loc, |d| d.loc),
                )
            });
        Field {
            name: name.value.clone(),
            ident: names::rust_ident(name),
            json: names::snake(name),
            column: names::sql_name(name),
            description: spec.description.as_ref().map(|d| d.value.clone()),
            ty,
            optional: spec.optional,
            unique: spec.unique.as_ref().is_some_and(|u| u.value),
            pii: spec.pii,
            max: spec.max.as_ref().map(|m| m.value),
            min: spec.min.as_ref().map(|m| m.value),
            default,
            writable: spec.writable,
        }
    }

    /// `min`/`max` bound a string's length or an int's value, and must leave room for a
    /// value; `unique` needs a type with more than a handful of values.
    fn check_constraints(&mut self, name: &Name, spec: &spec::Field, ty: &FieldType) {
        let bounded = matches!(
            ty,
            FieldType::String
                | FieldType::Text
                | FieldType::Email
                | FieldType::Int
                | FieldType::Money
        );
        for (key, loc) in [
            ("min", spec.min.as_ref().map(|m| m.loc)),
            ("max", spec.max.as_ref().map(|m| m.loc)),
        ] {
            if let Some(loc) = loc
                && !bounded
            {
                self.error(
                    "invalid-constraint",
                    format!("`{key}` does not apply to field `{}`", name.value),
                    loc,
                    "`min` and `max` bound the length of string, text and email fields, the value of int fields and the amount of money fields (in minor units)",
                );
            }
        }
        if let (Some(min), Some(max)) = (&spec.min, &spec.max)
            && min.value > i64::from(max.value)
        {
            self.error(
                "invalid-constraint",
                format!(
                    "field `{}` has `min: {}` above `max: {}`",
                    name.value, min.value, max.value
                ),
                min.loc,
                "no value could satisfy both",
            );
        }
        if let Some(min) = &spec.min
            && min.value < 0
            && !matches!(ty, FieldType::Int | FieldType::Money)
        {
            self.error(
                "invalid-constraint",
                format!("field `{}` has a negative minimum length", name.value),
                min.loc,
                "a length is 0 or more",
            );
        }
        if let Some(unique) = &spec.unique
            && unique.value
            && matches!(ty, FieldType::Bool | FieldType::Money)
        {
            self.error(
                "invalid-constraint",
                format!("field `{}` cannot be unique", name.value),
                unique.loc,
                "a unique bool allows two rows, and amounts of money repeat; make another field unique",
            );
        }
    }

    /// Whether a literal for the field keeps within its `min` and `max`.
    fn within_bounds(&mut self, spec: &spec::Field, value: &Value, loc: Loc) -> bool {
        let (measure, what) = match value {
            Value::Int(i) => (*i, "value"),
            Value::Str(s) => (s.chars().count() as i64, "length"),
            Value::Bool(_) => return true,
        };
        let min = spec.min.as_ref().map(|m| m.value);
        let max = spec.max.as_ref().map(|m| i64::from(m.value));
        let inside = min.is_none_or(|m| measure >= m) && max.is_none_or(|m| measure <= m);
        if !inside {
            self.error(
                "invalid-default",
                format!("the {what} of this value ({measure}) is outside the field's bounds"),
                loc,
                format!(
                    "keep it within `min: {}` and `max: {}`",
                    min.map_or("none".into(), |m| m.to_string()),
                    max.map_or("none".into(), |m| m.to_string())
                ),
            );
        }
        inside
    }

    fn enum_variants(&mut self, values: &[Name]) -> Vec<EnumVariant> {
        self.check_collisions("enum value", values.iter());
        values
            .iter()
            .map(|v| EnumVariant {
                value: v.value.clone(),
                ident: names::rust_type(v),
            })
            .collect()
    }

    /// Checks a literal (default, `sets` value) against the field type.
    fn literal(&mut self, ty: &FieldType, value: &Located<Scalar>, field: &str) -> Option<Value> {
        let checked = match (ty, &value.value) {
            (FieldType::Bool, Scalar::Bool(b)) => Some(Value::Bool(*b)),
            (FieldType::Int, Scalar::Int(i)) => Some(Value::Int(*i)),
            (FieldType::Enum { variants, .. }, Scalar::Str(s))
                if variants.iter().any(|v| &v.value == s) =>
            {
                Some(Value::Str(s.clone()))
            }
            (FieldType::String | FieldType::Text, Scalar::Str(s))
                if !s.chars().any(names::is_invisible) =>
            {
                Some(Value::Str(s.clone()))
            }
            _ => None,
        };
        if checked.is_none() {
            let expected = match ty {
                FieldType::Enum { variants, .. } => {
                    let values: Vec<&str> = variants.iter().map(|v| v.value.as_str()).collect();
                    let near = match &value.value {
                        Scalar::Str(s) => {
                            crate::diagnostic::did_you_mean(s, values.iter().copied())
                        }
                        _ => None,
                    };
                    match near {
                        Some(near) => {
                            format!("one of {} (did you mean `{near}`?)", listing(&values))
                        }
                        None => format!("one of {}", listing(&values)),
                    }
                }
                FieldType::Bool => "`true` or `false`".into(),
                FieldType::Int => "an integer".into(),
                FieldType::String | FieldType::Text => "a string".into(),
                _ => "nothing: this field type takes no literal".into(),
            };
            self.error(
                "invalid-default",
                format!(
                    "value `{}` does not fit field `{field}`",
                    scalar_text(&value.value)
                ),
                value.loc,
                format!("expected {expected}"),
            );
        }
        checked
    }

    #[allow(clippy::too_many_arguments)]
    fn action(
        &mut self,
        resource_name: &Name,
        resource: &spec::Resource,
        global: bool,
        path: &str,
        fields: &[Field],
        name: &Name,
        spec: &spec::Action,
    ) -> Action {
        let snake = names::snake(name);
        let kind = match snake.as_str() {
            "create" => ActionKind::Create,
            "read" => ActionKind::Read,
            "update" => ActionKind::Update,
            "delete" => ActionKind::Delete,
            "list" => ActionKind::List,
            _ => ActionKind::Custom(name.value.clone()),
        };
        let mutates = !matches!(kind, ActionKind::Read | ActionKind::List);
        let public = match &spec.public {
            Some(p) if p.value => {
                Some(self.public_reason(resource_name, global, mutates, name, spec, p.loc))
            }
            _ => None,
        };
        if public.is_none() {
            if spec.roles.is_empty() {
                self.error(
                    "no-roles",
                    format!("action `{}` has no roles and is not public", name.value),
                    name.loc,
                    "list the roles allowed to do it (`roles: [owner]`); nothing is allowed by default",
                );
            }
            if spec.scope.is_none() {
                self.error(
                    "missing-scope",
                    format!("action `{}` does not name a scope", name.value),
                    name.loc,
                    "every operation declares the OAuth scope a token needs: add `scope: <name>` from `api.scopes`",
                );
            }
        }
        let roles = self.roles(&spec.roles);
        let scope = spec.scope.as_ref().and_then(|s| self.scope(s));
        if global && mutates && !spec.roles.is_empty() {
            self.error(
                "global-write",
                format!(
                    "tenant roles may not {} global resource `{}`",
                    name.value, resource_name.value
                ),
                name.loc,
                "a global resource is shared by every tenant; it changes only through operator commands of the generated server",
            );
        }
        let rate_limit = spec.rate_limit.as_ref().and_then(|r| {
            let parsed = parse_rate_limit(r);
            if parsed.is_none() {
                self.error(
                    "invalid-rate-limit",
                    format!("`{}` is not a rate limit", r.value),
                    r.loc,
                    "write requests per unit: `60/min`, `10/s` or `1000/hour`",
                );
            }
            parsed
        });
        let mut sets = Vec::new();
        match kind {
            ActionKind::Custom(_) if spec.sets.is_empty() => {
                // `updte:` is more likely a misspelt built-in action than a custom one.
                let builtin = crate::diagnostic::did_you_mean(
                    &name.value,
                    ["create", "read", "update", "delete", "list"],
                );
                let help = match builtin {
                    Some(builtin) => format!(
                        "did you mean the built-in action `{builtin}`? A custom action says what it does with `sets: {{ field: value }}`"
                    ),
                    None => "add `sets: { field: value }`: the fields it changes, so it is generated whole".into(),
                };
                self.error(
                    "custom-action-without-effect",
                    format!("custom action `{}` does not say what it does", name.value),
                    name.loc,
                    help,
                );
            }
            ActionKind::Custom(_) => {
                for (field_name, value) in &spec.sets {
                    match resource.fields.get_index_of(field_name) {
                        Some(index) => {
                            if let Some(v) =
                                self.literal(&fields[index].ty, value, &field_name.value)
                            {
                                sets.push((index, v));
                            }
                        }
                        None => {
                            let known: Vec<&str> =
                                resource.fields.keys().map(|k| k.value.as_str()).collect();
                            self.undefined_field(field_name, &resource_name.value, &known);
                        }
                    }
                }
            }
            _ => {
                if let Some((first, _)) = spec.sets.first() {
                    self.error(
                        "sets-on-builtin",
                        format!("`sets` is only for custom actions, not `{}`", name.value),
                        first.loc,
                        "built-in actions take their values from the request; remove `sets`",
                    );
                }
            }
        }
        let cedar_condition = match spec
            .when
            .as_ref()
            .map(|when| (when, crate::policy::parse_condition(when)))
        {
            Some((_, Ok(printed))) => Some(printed),
            Some((when, Err(problem))) => {
                let loc = problem
                    .span
                    .map_or(when.loc, |(offset, len)| self.within(when, offset, len));
                self.error(
                    "invalid-condition",
                    format!("condition of `{}` is not a Cedar expression: {}", name.value, problem.message),
                    loc,
                    "write one Cedar expression over `principal`, `resource` and `context`, e.g. `resource.status == \"draft\"`",
                );
                None
            }
            None => None,
        };
        let mfa_required = roles.iter().any(|r| {
            self.spec.roles.iter().any(|(k, role)| {
                &k.value == r
                    && role
                        .mfa
                        .as_ref()
                        .is_some_and(|m| m.value == spec::Mfa::Required)
            })
        });
        let version = &self.spec.api.version.value;
        let (method, path) = match &kind {
            ActionKind::Create => (Method::Post, format!("/{version}/{path}")),
            ActionKind::List => (Method::Get, format!("/{version}/{path}")),
            ActionKind::Read => (Method::Get, format!("/{version}/{path}/{{id}}")),
            ActionKind::Update => (Method::Put, format!("/{version}/{path}/{{id}}")),
            ActionKind::Delete => (Method::Delete, format!("/{version}/{path}/{{id}}")),
            ActionKind::Custom(_) => (
                Method::Post,
                format!("/{version}/{path}/{{id}}/{}", snake.replace('_', "-")),
            ),
        };
        Action {
            // A built-in action by its own name however the spec spells it (`Read`): its
            // operation's id (`note.read`) is what the shared handlers expect.
            name: match &kind {
                ActionKind::Custom(_) => name.value.clone(),
                _ => snake.clone(),
            },
            kind,
            ident: names::rust_ident(name),
            description: spec.description.as_ref().map(|d| d.value.clone()),
            roles,
            scope,
            condition: spec.when.as_ref().map(|w| w.value.clone()),
            cedar_condition,
            public,
            rate_limit,
            mfa_required,
            sets,
            method,
            path,
        }
    }

    /// Checks a public action and returns why it is public. Only reads of global data may
    /// be public: a public request has no tenant, and nobody to hold accountable for a
    /// change. Conditions are not evaluated without a principal, so none may be set.
    fn public_reason(
        &mut self,
        resource: &Name,
        global: bool,
        mutates: bool,
        name: &Name,
        spec: &spec::Action,
        loc: Loc,
    ) -> String {
        if mutates {
            self.error(
                "public-write",
                format!("action `{}` changes data and cannot be public", name.value),
                loc,
                "only `read` and `list` of a global resource can be public; changes need an authenticated, authorized principal",
            );
        } else if !global {
            self.error(
                "public-tenant-action",
                format!(
                    "action `{}` of tenant-scoped resource `{}` cannot be public",
                    name.value, resource.value
                ),
                loc,
                "a public request has no tenant to scope it to; only `global: true` resources can have public actions",
            );
        }
        if let Some(when) = &spec.when {
            self.error(
                "public-condition",
                format!("public action `{}` has a condition", name.value),
                when.loc,
                "a condition is checked against the caller, and a public request has none: serve only rows everyone may see, or make the action non-public",
            );
        }
        match &spec.reason {
            // Something a reviewer can read: not only spaces and invisible characters.
            Some(reason)
                if reason
                    .chars()
                    .any(|c| !c.is_whitespace() && !names::is_invisible(c)) =>
            {
                reason.value.clone()
            }
            _ => {
                self.error(
                    "public-without-reason",
                    format!(
                        "public action `{}` does not say why it is public",
                        name.value
                    ),
                    loc,
                    "add `reason: ...`; it is recorded in PERMISSIONS.md for reviewers",
                );
                String::new()
            }
        }
    }

    fn payments(&mut self, spec: &spec::Payments, resources: &[Resource]) -> Payments {
        let checkout_resource = self.resource_index(&spec.checkout.resource);
        let mut checkout_amount = 0;
        match checkout_resource {
            None => {}
            Some(index) => {
                let (_, resource_spec) = self
                    .spec
                    .resources
                    .get_index(index)
                    .expect("index from get_index_of");
                match resource_spec.fields.get_index_of(&spec.checkout.amount) {
                    None => {
                        let known: Vec<&str> = resource_spec
                            .fields
                            .keys()
                            .map(|k| k.value.as_str())
                            .collect();
                        self.undefined_field(
                            &spec.checkout.amount,
                            &spec.checkout.resource.value,
                            &known,
                        );
                    }
                    Some(field) => {
                        checkout_amount = field;
                        if resources[index].fields[field].ty != FieldType::Money {
                            self.error(
                                "checkout-amount-not-money",
                                format!("checkout amount `{}` is not a `money` field", spec.checkout.amount.value),
                                spec.checkout.amount.loc,
                                "amounts are integer minor units with a currency: declare it `type: money`",
                            );
                        }
                    }
                }
            }
        }
        let currencies: Vec<String> = spec
            .currencies
            .iter()
            .filter(|c| {
                let ok = is_currency_code(c);
                if !ok {
                    self.error(
                        "invalid-currency",
                        format!("`{}` is not an ISO 4217 currency code", c.value),
                        c.loc,
                        "write three capital letters, e.g. `EUR`, `USD`, `JPY`",
                    );
                }
                ok
            })
            .map(|c| c.value.clone())
            .collect();
        let tax = spec
            .tax
            .iter()
            .map(|(country, rule)| {
                let ok = country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase());
                if !ok {
                    self.error(
                        "invalid-name",
                        format!("`{}` is not an ISO 3166 country code", country.value),
                        country.loc,
                        "write two capital letters, e.g. `DE`",
                    );
                }
                let bp = parse_percentage(&rule.vat);
                if bp.is_none() {
                    self.error(
                        "invalid-percentage",
                        format!("`{}` is not a percentage", rule.vat.value),
                        rule.vat.loc,
                        "write a rate such as `19%` or `7.7%`",
                    );
                }
                TaxRule {
                    country: country.value.clone(),
                    vat_basis_points: bp.unwrap_or(0),
                    rounding: match rule.rounding.value {
                        spec::Rounding::HalfEven => "half_even",
                        spec::Rounding::HalfUp => "half_up",
                        spec::Rounding::Down => "down",
                    }
                    .into(),
                    per: match rule.per.value {
                        spec::TaxPer::Line => "line",
                        spec::TaxPer::Invoice => "invoice",
                    }
                    .into(),
                }
            })
            .collect();
        let refunds = spec.refunds.as_ref().map(|r| {
            let dual = r
                .dual_control_above
                .iter()
                .filter_map(|(currency, amount)| {
                    if !is_currency_code(currency) {
                        self.error(
                            "invalid-currency",
                            format!("`{}` is not an ISO 4217 currency code", currency.value),
                            currency.loc,
                            "write three capital letters, e.g. `EUR`",
                        );
                        return None;
                    }
                    match minor_units(currency, &amount.value) {
                        Some(minor) => Some((currency.value.clone(), minor)),
                        None => {
                            self.error(
                                "invalid-value",
                                format!(
                                    "`{}` is not an amount in {}",
                                    scalar_text(&amount.value),
                                    currency.value
                                ),
                                amount.loc,
                                format!(
                                    "{} has {} decimal places",
                                    currency.value,
                                    currency_exponent(currency)
                                ),
                            );
                            None
                        }
                    }
                })
                .collect();
            Refunds {
                request: self.payment_action(&r.request),
                approve: self.payment_action(&r.approve),
                dual_control_above: dual,
            }
        });
        let disputes = spec.disputes.as_ref().map(|d| self.payment_action(d));
        let tolerance = spec
            .webhooks
            .as_ref()
            .and_then(|w| w.tolerance.as_ref())
            .map_or(Some(300), |t| self.duration(t))
            .unwrap_or(300);
        Payments {
            provider: format!("{:?}", spec.provider.value).to_lowercase(),
            checkout_resource: checkout_resource.unwrap_or(0),
            checkout_amount,
            checkout_mode: match spec.checkout.mode.value {
                spec::CheckoutMode::Redirect => "redirect".into(),
                spec::CheckoutMode::HostedFields => "hosted_fields".into(),
            },
            currencies,
            tax,
            refunds,
            disputes,
            webhook_tolerance_secs: tolerance,
        }
    }

    fn payment_action(&mut self, spec: &spec::PaymentAction) -> PaymentAction {
        let roles = self.roles(&spec.roles);
        let scope = self.scope(&spec.scope).unwrap_or_default();
        let role_mfa = roles.iter().all(|r| {
            self.spec.roles.iter().any(|(k, role)| {
                &k.value == r
                    && role
                        .mfa
                        .as_ref()
                        .is_some_and(|m| m.value == spec::Mfa::Required)
            })
        });
        PaymentAction {
            roles,
            scope,
            mfa_required: role_mfa
                || spec
                    .mfa
                    .as_ref()
                    .is_some_and(|m| m.value == spec::Mfa::Required),
        }
    }
}

/// An absolute URL with a host and nothing that needs quoting anywhere it is written.
fn is_plain_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or("");
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && url.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'"' | b'\\' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'^'
                )
        })
}

/// Something a token carries and the service compares byte for byte (a claim name, the
/// audience, an `amr` value): not empty, and nothing a reader could not see.
fn is_plain_token(text: &str) -> bool {
    !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || names::is_invisible(c))
}

/// `amr` values (RFC 8176) that show no second factor: knowledge a password already is,
/// presence, place, risk scores and a desktop login.
const FIRST_FACTORS: [&str; 7] = ["pwd", "pin", "kba", "user", "geo", "rba", "wia"];

fn default_factors() -> Vec<String> {
    vec!["mfa".into(), "hwk".into(), "otp".into()]
}

fn listing<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| format!("`{}`", i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Str(s) => s.clone(),
    }
}

fn stride_name(s: spec::Stride) -> &'static str {
    match s {
        spec::Stride::Spoofing => "Spoofing",
        spec::Stride::Tampering => "Tampering",
        spec::Stride::Repudiation => "Repudiation",
        spec::Stride::InformationDisclosure => "Information disclosure",
        spec::Stride::DenialOfService => "Denial of service",
        spec::Stride::ElevationOfPrivilege => "Elevation of privilege",
    }
}

/// `30s`, `10m`, `1h`, `2d` → seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    (n > 0).then(|| n.checked_mul(factor)).flatten()
}

/// The number of an API version written `v1`, `v2`, … (no sign, no leading zero).
fn version_number(text: &str) -> Option<u64> {
    text.strip_prefix('v')
        .filter(|n| !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

/// `60/min`, `10/s`, `1000/hour` → requests per period.
pub fn parse_rate_limit(text: &str) -> Option<RateLimit> {
    let (count, unit) = text.trim().split_once('/')?;
    let requests: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
    let per_secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "min" | "minute" | "m" => 60,
        "h" | "hour" => 3600,
        "day" | "d" => 86400,
        _ => return None,
    };
    Some(RateLimit { requests, per_secs })
}

/// `19%`, `7.7%` → basis points.
pub fn parse_percentage(text: &str) -> Option<u32> {
    let number = text.trim().strip_suffix('%')?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = format!("{frac:0<2}").parse().ok()?;
    let bp = whole.checked_mul(100)?.checked_add(frac)?;
    (bp <= 10_000).then_some(bp)
}

fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// ISO 4217 minor-unit exponent (the common exceptions to 2).
pub fn currency_exponent(code: &str) -> u32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount as written (`500.00`, `75000`) in minor units of `currency`, exactly.
fn minor_units(currency: &str, amount: &Scalar) -> Option<i64> {
    let exponent = currency_exponent(currency);
    let text = match amount {
        Scalar::Int(i) => i.to_string(),
        // YAML gives 500.00 as a float; its shortest decimal form is exact for amounts.
        Scalar::Float(f) => f.to_string(),
        Scalar::Str(s) => s.trim().to_owned(),
        Scalar::Bool(_) => return None,
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = frac.trim_end_matches('0');
    if whole.is_empty()
        || frac.len() > exponent as usize
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = 10i64.pow(exponent);
    let frac_value: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<width$}", width = exponent as usize)
            .parse()
            .ok()?
    };
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(scale)?
        .checked_add(frac_value)
}

/// Whether a field name says it holds raw card data, and which kind.
pub fn card_data(name: &str) -> Option<&'static str> {
    let snake = names::snake(name);
    let tokens: Vec<&str> = snake.split('_').filter(|t| !t.is_empty()).collect();
    let joined: String = tokens.concat();
    let has = |t: &str| tokens.contains(&t);
    const NUMBER: [&str; 11] = [
        "cardnumber",
        "cardno",
        "cardnum",
        "cardnbr",
        "ccnumber",
        "ccnum",
        "ccno",
        "ccnbr",
        "creditcardnumber",
        "creditcard",
        "primaryaccountnumber",
    ];
    let card = has("card") || has("cc");
    if NUMBER.iter().any(|n| joined.contains(n)) || has("pan") {
        return Some("a card number");
    }
    if ["cid", "csc", "ccv", "cvn"].iter().any(|t| has(t))
        || joined.contains("cvv")
        || joined.contains("cvc")
        || (card && has("pin"))
        || joined.contains("securitycode")
        || joined.contains("cardverification")
        || joined.contains("verificationvalue")
        || (joined.contains("verificationcode") && card)
    {
        return Some("a card security code");
    }
    if joined.contains("track1")
        || joined.contains("track2")
        || joined.contains("trackdata")
        || joined.contains("trackone")
        || joined.contains("tracktwo")
        || joined.contains("magstripe")
        || joined.contains("magneticstripe")
    {
        return Some("magnetic-stripe track data");
    }
    let expiry = ["exp", "expiry", "expiration", "expires"]
        .iter()
        .any(|t| has(t));
    let bare_expiry = matches!(
        joined.as_str(),
        "expiry"
            | "expirydate"
            | "expdate"
            | "expmonth"
            | "expyear"
            | "expirymonth"
            | "expiryyear"
            | "expiresmonth"
            | "expiresyear"
            | "expirationdate"
            | "expirationmonth"
            | "expirationyear"
    );
    if (expiry && card) || bare_expiry {
        return Some("a card expiry date");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_data_names() {
        for name in [
            "card_number",
            "cardNumber",
            "pan",
            "cvv",
            "card_cvc",
            "exp_month",
            "card_expiry",
            "track2",
            "creditCardNumber",
            "cc_number",
            "expiry_date",
            "expiry_month",
            "expiryYear",
            "card_verification_value",
            "cardVerificationCode",
            "cc_verification_code",
            "cc_no",
            "ccNo",
            "card_nbr",
            "cardcvv",
            "cvvcode",
            "ccv",
            "card_ccv",
            "cvn",
            "card_pin",
            "magnetic_stripe",
            "track_two",
        ] {
            assert!(card_data(name).is_some(), "{name}");
        }
        for name in [
            "panel",
            "company",
            "expires_at_subscription",
            "cardinality",
            "track",
            "name",
            "expected_total",
            "email_verification_code",
            "verification_code",
            "pin",
            "spinner",
            "accent",
        ] {
            assert_eq!(card_data(name), None, "{name}");
        }
    }

    #[test]
    fn look_alike_letters_read_as_ascii() {
        let read = |name: &str| names::ascii_reading(name);
        // Cyrillic а, Greek ϲ, fullwidth letters, the small roman numeral ⅿ (whose shape is
        // `rn`, as `m`'s is), a ligature.
        assert_eq!(read("c\u{430}rd_number").as_deref(), Some("card_number"));
        assert_eq!(read("\u{3f2}vv").as_deref(), Some("cvv"));
        assert_eq!(
            read("\u{ff43}\u{ff41}\u{ff52}\u{ff44}_no").as_deref(),
            Some("card_no")
        );
        assert_eq!(read("card_nu\u{217f}ber").as_deref(), Some("card_number"));
        assert_eq!(read("\u{fb01}le").as_deref(), Some("file"));
        // Nothing to read: ASCII already, or letters that look like no ASCII one.
        assert_eq!(read("card_number"), None);
        assert_eq!(read("\u{6587}\u{66f8}"), None);
        assert_eq!(read("caf\u{e9}"), None);
        // Upper case: Cyrillic О reads as the letter O, not the digit 0; Greek Ι as I.
        assert_eq!(read("CARD_N\u{41e}").as_deref(), Some("CARD_NO"));
        assert_eq!(read("CARD_P\u{399}N").as_deref(), Some("CARD_PIN"));
        for name in [
            "c\u{430}rd_number",
            "\u{3f2}vv",
            "p\u{430}n",
            "tr\u{430}ck2",
            "CARD_N\u{41e}",
            "CARD_P\u{399}N",
            "\u{ff23}\u{ff29}\u{ff24}",
        ] {
            let reading = read(name).unwrap_or_default();
            assert!(card_data(&reading).is_some(), "{name} read as {reading}");
        }
    }

    #[test]
    fn amounts_in_minor_units() {
        assert_eq!(minor_units("EUR", &Scalar::Float(500.0)), Some(50000));
        assert_eq!(
            minor_units("EUR", &Scalar::Str("500.25".into())),
            Some(50025)
        );
        assert_eq!(minor_units("JPY", &Scalar::Int(75000)), Some(75000));
        assert_eq!(minor_units("JPY", &Scalar::Str("1.5".into())), None);
        assert_eq!(minor_units("KWD", &Scalar::Str("1.005".into())), Some(1005));
    }

    #[test]
    fn mini_formats() {
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("10 minutes"), None);
        assert_eq!(
            parse_rate_limit("60/min"),
            Some(RateLimit {
                requests: 60,
                per_secs: 60
            })
        );
        assert_eq!(parse_percentage("19%"), Some(1900));
        assert_eq!(parse_percentage("7.7%"), Some(770));
        assert_eq!(parse_percentage("nineteen"), None);
    }
}

#[cfg(test)]
mod lowering {
    use crate::model::{ActionKind, FieldType, Method};

    fn example(name: &str) -> crate::model::App {
        let path = format!("{}/specs/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let source = std::fs::read_to_string(&path).expect("example spec");
        crate::compile(&path, &source).unwrap_or_else(|r| panic!("{}", r.render()))
    }

    /// A built-in action keeps its own name however the spec spells it: the shared handlers
    /// of the generated server act only under an operation whose id ends with it.
    #[test]
    fn built_in_actions_are_named_as_such_whatever_their_spelling() {
        let source = std::fs::read_to_string(format!(
            "{}/specs/invalid/67-invalid-constraint-min-above-max.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("a spec")
        .replace("min: 10, max: 2", "max: 200")
        .replace("      read: {", "      Read: {")
        .replace("      list: {", "      LIST: {");
        assert!(source.contains("Read: {") && source.contains("LIST: {"));
        let app =
            crate::compile("spelling.yaml", &source).unwrap_or_else(|r| panic!("{}", r.render()));
        let names: Vec<(&str, &ActionKind)> = app.resources[0]
            .actions
            .iter()
            .map(|a| (a.name.as_str(), &a.kind))
            .collect();
        assert!(names.contains(&("read", &ActionKind::Read)), "{names:?}");
        assert!(names.contains(&("list", &ActionKind::List)), "{names:?}");
    }

    #[test]
    fn routes_are_versioned_and_carry_their_permissions() {
        let app = example("ledgerly");
        let invoice = app
            .resources
            .iter()
            .find(|r| r.name == "invoice")
            .expect("invoice");
        let void = invoice
            .actions
            .iter()
            .find(|a| a.name == "void")
            .expect("void");
        assert_eq!(
            (void.method, void.path.as_str()),
            (Method::Post, "/v1/invoices/{id}/void")
        );
        assert_eq!(void.roles, ["finance"]);
        assert_eq!(void.scope.as_deref(), Some("invoices.write"));
        assert!(void.mfa_required);
        assert_eq!(
            void.condition.as_deref(),
            Some("resource.status == \"open\"")
        );
        assert_eq!(void.kind, ActionKind::Custom("void".into()));
        assert_eq!(void.sets.len(), 1);
        let list = invoice.action(&ActionKind::List).expect("list");
        assert_eq!(
            (list.method, list.path.as_str()),
            (Method::Get, "/v1/invoices")
        );
        let customer = invoice
            .fields
            .iter()
            .find(|f| f.name == "customer")
            .expect("customer");
        assert_eq!(customer.ty, FieldType::Reference { resource: 0 });
    }

    #[test]
    fn global_resources_are_explicit_and_public_actions_keep_their_reason() {
        let app = example("ledgerly");
        let rates = app
            .resources
            .iter()
            .find(|r| r.name == "exchange_rate")
            .expect("exchange_rate");
        assert!(rates.global);
        assert_eq!(rates.path, "exchange-rates");
        let read = rates.action(&ActionKind::Read).expect("read");
        assert_eq!(read.public.as_deref(), Some("published reference data"));
        assert_eq!(
            read.rate_limit.map(|r| (r.requests, r.per_secs)),
            Some((60, 60))
        );
        assert!(
            app.resources
                .iter()
                .filter(|r| r.name != "exchange_rate")
                .all(|r| !r.global)
        );
    }

    #[test]
    fn payments_are_in_minor_units() {
        let app = example("ledgerly");
        let payments = app.payments.expect("payments");
        let refunds = payments.refunds.expect("refunds");
        assert_eq!(
            refunds.dual_control_above,
            [
                ("EUR".to_owned(), 50_000),
                ("USD".to_owned(), 50_000),
                ("JPY".to_owned(), 75_000)
            ]
        );
        assert!(refunds.approve.mfa_required);
        assert_eq!(payments.tax[0].vat_basis_points, 1900);
        assert_eq!(payments.webhook_tolerance_secs, 300);
    }

    #[test]
    fn hostile_names_become_distinct_valid_identifiers() {
        let app = example("hostile");
        let mut tables = std::collections::BTreeSet::new();
        for resource in &app.resources {
            assert!(resource.table.len() <= 63, "{}", resource.table);
            assert!(
                tables.insert(resource.table.clone()),
                "duplicate table {}",
                resource.table
            );
            assert!(
                syn::parse_str::<syn::Ident>(&resource.ident).is_ok(),
                "{}",
                resource.ident
            );
            assert!(
                syn::parse_str::<syn::Ident>(&resource.type_name).is_ok(),
                "{}",
                resource.type_name
            );
            let mut columns = std::collections::BTreeSet::new();
            for field in &resource.fields {
                assert!(field.column.len() <= 63, "{}", field.column);
                assert!(
                    columns.insert(field.column.clone()),
                    "duplicate column {}",
                    field.column
                );
                assert!(
                    syn::parse_str::<syn::Ident>(&field.ident).is_ok(),
                    "{}",
                    field.ident
                );
            }
        }
    }
}
