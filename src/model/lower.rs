//! spec → model: checks every rule a spec must satisfy, reports all violations at once with
//! their location and help, and resolves names into identifiers (through `names`).

use super::names;
use super::*;
use crate::diagnostic::{Diagnostic, Loc};
use crate::spec::{self, Name, Scalar};
use std::collections::HashMap;

/// Columns every generated table has; a spec field may not take their names.
const RESERVED_FIELDS: [&str; 5] = ["id", "tenant_id", "created_at", "updated_at", "version"];

/// Validates and resolves a spec. Returns the model, or every problem found.
pub fn lower(spec: &spec::Spec) -> Result<App, Vec<Diagnostic>> {
    let mut cx = Lower {
        diagnostics: Vec::new(),
        spec,
    };
    let app = cx.app();
    if cx.diagnostics.is_empty() {
        Ok(app)
    } else {
        Err(cx.diagnostics)
    }
}

struct Lower<'s> {
    diagnostics: Vec<Diagnostic>,
    spec: &'s spec::Spec,
}

impl<'s> Lower<'s> {
    fn error(&mut self, code: &'static str, message: String, loc: Loc, help: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(code, message, loc).help(help));
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
        let version_ok = version.strip_prefix('v').is_some_and(|n| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0')
        });
        if !version_ok {
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
        self.check_collisions("scope", spec.api.scopes.keys());
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
        let resources: Vec<Resource> = spec
            .resources
            .iter()
            .map(|(name, resource)| self.resource(name, resource))
            .collect();
        self.check_path_collisions(&resources);
        self.check_references(&resources);
        let payments = spec.payments.as_ref().map(|p| self.payments(p, &resources));
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
            resources,
            payments,
        }
    }

    /// Names in one namespace must stay distinct after conversion to identifiers.
    fn check_collisions<'a>(&mut self, what: &str, keys: impl Iterator<Item = &'a Name>) {
        let mut seen: HashMap<String, &Name> = HashMap::new();
        for key in keys {
            if key.value.trim().is_empty() {
                self.error(
                    "invalid-name",
                    format!("empty {what} name"),
                    key.loc,
                    "give it a name",
                );
                continue;
            }
            let ident = names::snake(key);
            if let Some(first) = seen.get(&ident) {
                let message = format!(
                    "{what} `{}` collides with `{}` (both become `{ident}`)",
                    key.value, first.value
                );
                let help = "rename one of them; names are compared after conversion to snake_case";
                self.error("colliding-names", message, key.loc, help);
            } else {
                seen.insert(ident, key);
            }
        }
    }

    /// Distinct resources must be served at distinct paths (names that already collide as
    /// identifiers are reported once, by `check_collisions`).
    fn check_path_collisions(&mut self, resources: &[Resource]) {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let mut idents = std::collections::HashSet::new();
        for (resource, (key, _)) in resources.iter().zip(&self.spec.resources) {
            if !idents.insert(names::snake(key)) {
                continue;
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
        let diagnostic = Diagnostic::new(
            "undefined-role",
            format!("undefined role `{}`", name.value),
            name.loc,
        )
        .suggest(name, known.iter().copied());
        let diagnostic = if diagnostic.help.is_none() {
            diagnostic.help(format!(
                "define it under `roles:`; defined: {}",
                listing(&known)
            ))
        } else {
            diagnostic
        };
        self.diagnostics.push(diagnostic);
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
        let diagnostic = Diagnostic::new(
            "undefined-scope",
            format!("undefined scope `{}`", name.value),
            name.loc,
        )
        .suggest(name, known.iter().copied());
        let diagnostic = if diagnostic.help.is_none() {
            diagnostic.help(format!(
                "define it under `api.scopes:`; defined: {}",
                listing(&known)
            ))
        } else {
            diagnostic
        };
        self.diagnostics.push(diagnostic);
        None
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
            };
        };
        if !id.issuer.starts_with("https://") {
            self.error(
                "insecure-issuer",
                format!("issuer `{}` is not an HTTPS URL", id.issuer.value),
                id.issuer.loc,
                "tokens and keys are only trusted from an `https://` issuer",
            );
        }
        let lifetime = match &id.max_token_lifetime {
            Some(text) => self.duration(text).unwrap_or(900),
            None => 900,
        };
        let claims = id.claims.as_ref();
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

    fn resource(&mut self, name: &Name, spec: &spec::Resource) -> Resource {
        let global = spec.global.as_ref().is_some_and(|g| g.value);
        self.check_collisions("field", spec.fields.keys());
        self.check_collisions("action", spec.actions.keys());
        let fields: Vec<Field> = spec.fields.iter().map(|(n, f)| self.field(n, f)).collect();
        let type_name = names::rust_type(name);
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
        let mut actions = Vec::new();
        for (action_name, action) in &spec.actions {
            if let Some(a) = self.action(name, spec, global, &path, &fields, action_name, action) {
                actions.push(a);
            }
        }
        Resource {
            name: name.value.clone(),
            ident: names::rust_ident(name),
            type_name,
            table: names::sql_name(name),
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

    fn field(&mut self, name: &Name, spec: &spec::Field) -> Field {
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
        if let Some(kind) = card_data(name) {
            self.error(
                "card-data",
                format!("field `{}` would hold raw card data ({kind})", name.value),
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
                FieldType::Enum {
                    type_name: names::rust_type(name),
                    variants,
                }
            }
            // An unresolved reference is reported here and lowered as a plain uuid, so later
            // checks (cycles, scope) do not report it again under another name.
            spec::FieldType::Reference => match &spec.to {
                Some(target) => match self.spec.resources.get_index_of(target) {
                    Some(index) => FieldType::Reference { resource: index },
                    None => {
                        let known: Vec<&str> = self
                            .spec
                            .resources
                            .keys()
                            .map(|k| k.value.as_str())
                            .collect();
                        let d = Diagnostic::new(
                            "undefined-resource",
                            format!("undefined resource `{}`", target.value),
                            target.loc,
                        )
                        .suggest(target, known.iter().copied());
                        let d = if d.help.is_none() {
                            d.help(format!("defined: {}", listing(&known)))
                        } else {
                            d
                        };
                        self.diagnostics.push(d);
                        FieldType::Uuid
                    }
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
        let default = spec
            .default
            .as_ref()
            .and_then(|d| self.literal(&ty, d, &name.value));
        Field {
            name: name.value.clone(),
            ident: names::rust_ident(name),
            column: names::sql_name(name),
            description: spec.description.as_ref().map(|d| d.value.clone()),
            ty,
            optional: spec.optional,
            unique: spec.unique.as_ref().is_some_and(|u| u.value),
            pii: spec.pii,
            max: spec.max.as_ref().map(|m| m.value),
            min: spec.min.as_ref().map(|m| m.value),
            default,
        }
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
            (FieldType::String | FieldType::Text, Scalar::Str(s)) => Some(Value::Str(s.clone())),
            _ => None,
        };
        if checked.is_none() {
            let expected = match ty {
                FieldType::Enum { variants, .. } => {
                    let values: Vec<&str> = variants.iter().map(|v| v.value.as_str()).collect();
                    format!("one of {}", listing(&values))
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
    ) -> Option<Action> {
        let snake = names::snake(name);
        let kind = match snake.as_str() {
            "create" => ActionKind::Create,
            "read" => ActionKind::Read,
            "update" => ActionKind::Update,
            "delete" => ActionKind::Delete,
            "list" => ActionKind::List,
            _ => ActionKind::Custom(name.value.clone()),
        };
        let is_public = spec.public.as_ref().is_some_and(|p| p.value);
        let public = match &spec.public {
            Some(p) if p.value => {
                if !global {
                    self.error(
                        "public-tenant-action",
                        format!(
                            "action `{}` of tenant-scoped resource `{}` cannot be public",
                            name.value, resource_name.value
                        ),
                        p.loc,
                        "a public request has no tenant to scope it to; only `global: true` resources can have public actions",
                    );
                }
                match &spec.reason {
                    Some(reason) if !reason.trim().is_empty() => Some(reason.value.clone()),
                    _ => {
                        self.error(
                            "public-without-reason",
                            format!(
                                "public action `{}` does not say why it is public",
                                name.value
                            ),
                            p.loc,
                            "add `reason: ...`; it is recorded in PERMISSIONS.md for reviewers",
                        );
                        Some(String::new())
                    }
                }
            }
            _ => None,
        };
        if !is_public {
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
        let mutates = !matches!(kind, ActionKind::Read | ActionKind::List);
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
            ActionKind::Custom(_) if spec.sets.is_empty() => self.error(
                "custom-action-without-effect",
                format!("custom action `{}` does not say what it does", name.value),
                name.loc,
                "add `sets: { field: value }`: the fields it changes, so it is generated whole",
            ),
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
        Some(Action {
            name: name.value.clone(),
            kind,
            ident: names::rust_ident(name),
            type_name: names::rust_type(name),
            description: spec.description.as_ref().map(|d| d.value.clone()),
            roles,
            scope,
            condition: spec.when.as_ref().map(|w| w.value.clone()),
            public,
            rate_limit,
            mfa_required,
            sets,
            method,
            path,
        })
    }

    fn undefined_field(&mut self, name: &Name, resource: &str, known: &[&str]) {
        let d = Diagnostic::new(
            "undefined-field",
            format!("resource `{resource}` has no field `{}`", name.value),
            name.loc,
        )
        .suggest(name, known.iter().copied());
        let d = if d.help.is_none() {
            d.help(format!("its fields: {}", listing(known)))
        } else {
            d
        };
        self.diagnostics.push(d);
    }

    fn payments(&mut self, spec: &spec::Payments, resources: &[Resource]) -> Payments {
        let checkout_resource = self.spec.resources.get_index_of(&spec.checkout.resource);
        let mut checkout_amount = 0;
        match checkout_resource {
            None => {
                let known: Vec<&str> = self
                    .spec
                    .resources
                    .keys()
                    .map(|k| k.value.as_str())
                    .collect();
                let d = Diagnostic::new(
                    "undefined-resource",
                    format!("undefined resource `{}`", spec.checkout.resource.value),
                    spec.checkout.resource.loc,
                )
                .suggest(&spec.checkout.resource, known.iter().copied());
                let d = if d.help.is_none() {
                    d.help(format!("defined: {}", listing(&known)))
                } else {
                    d
                };
                self.diagnostics.push(d);
            }
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
                    rounding: format!("{:?}", rule.rounding.value),
                    per: format!("{:?}", rule.per.value),
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

use crate::load::Located;

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
    const NUMBER: [&str; 8] = [
        "cardnumber",
        "cardno",
        "cardnum",
        "ccnumber",
        "ccnum",
        "creditcardnumber",
        "creditcard",
        "primaryaccountnumber",
    ];
    if NUMBER.iter().any(|n| joined.contains(n)) || has("pan") {
        return Some("a card number");
    }
    if ["cvv", "cvv2", "cvc", "cvc2", "cid", "csc"]
        .iter()
        .any(|t| has(t))
        || joined.contains("securitycode")
    {
        return Some("a card security code");
    }
    if joined.contains("track1")
        || joined.contains("track2")
        || joined.contains("trackdata")
        || joined.contains("magstripe")
    {
        return Some("magnetic-stripe track data");
    }
    let expiry = ["exp", "expiry", "expiration", "expires"]
        .iter()
        .any(|t| has(t));
    let card = has("card") || has("cc");
    let bare_expiry = matches!(
        joined.as_str(),
        "expiry"
            | "expirydate"
            | "expdate"
            | "expmonth"
            | "expyear"
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
        ] {
            assert_eq!(card_data(name), None, "{name}");
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
