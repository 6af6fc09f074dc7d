//! `bulwark diff OLD NEW`: what a spec change does to who may do what, and to the API
//! contract, for the pull-request description (Markdown) and for programs (JSON). Both specs
//! are compiled to models and compared there, so a reformatted spec shows no change and a
//! condition is compared in its normalized Cedar form.
//!
//! Security-relevant: roles gaining or losing an action, actions added (flagged, shown
//! whole) or removed, a condition removed, added or changed, a scope removed or changed, an
//! action made public, a resource made global or tenant-scoped, a rate limit raised or
//! removed (as applied: an action's own, else its route class's budget, and the budgets),
//! what a custom action sets, a field only actions change made writable or given another
//! default, a second factor no longer required, locked production roles, identity settings
//! (token lifetime, accepted factors, verified email and domains, the tenant and email
//! claims), roles now in an environment's template, a new environment locking less than an
//! unnamed one did, a field no longer marked `pii`, membership administrators, refund and
//! dispute roles, second factors and scopes, and the dual-control thresholds (a currency
//! accepted without one included), payments added, their provider, what the checkout charges
//! and how (tax rules and currencies dropped are listed, not flagged). A resource renamed under `migrations.rename` is
//! compared under its new name. API: routes removed or added, response fields
//! removed or retyped, enum values removed, new or newly required inputs, inputs refused that
//! were valid (a lower maximum, a higher minimum, a new uniqueness rule, a field only an
//! action may change now). A breaking API change without an `api.version` bump makes the
//! command exit 3.

use crate::model::{Action, App, Field, FieldType, RateLimit, Resource, RouteClass};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What it is about: `invoice.void`, `role finance`, `route GET /v1/invoices`, ….
    pub subject: String,
    pub message: String,
    /// Loosens access (security) or breaks existing clients (API).
    pub flagged: bool,
}

/// Everything that changed between two specs.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub old_version: String,
    pub new_version: String,
    pub security: Vec<Change>,
    pub api: Vec<Change>,
    /// Some API change breaks existing clients.
    pub breaking: bool,
    /// `api.version` changed.
    pub version_bumped: bool,
}

impl Report {
    /// A breaking API change under the same `api.version`.
    pub fn fails(&self) -> bool {
        self.breaking && !self.version_bumped
    }
}

pub fn diff(old: &App, new: &App) -> Report {
    // Messages quote spec strings between backticks; the quoted strings hold none, so the
    // Markdown renderer can tell quotes from text (spec strings are untrusted).
    let (old, new) = (&quotable(old), &quotable(new));
    let mut security = Vec::new();
    let mut api = Vec::new();
    roles(old, new, &mut security);
    identity(old, new, &mut security);
    permissions(old, new, &mut security);
    payments(old, new, &mut security);
    threats(old, new, &mut security);
    versions(old, new, &mut api);
    routes(old, new, &mut api);
    fields(old, new, &mut api);
    let breaking = api.iter().any(|c| c.flagged);
    Report {
        old_version: old.api_version.clone(),
        new_version: new.api_version.clone(),
        security,
        api,
        breaking,
        version_bumped: old.api_version != new.api_version,
    }
}

/// One line without backticks.
fn q(text: &str) -> String {
    crate::render::escape::one_line(text).replace('`', "'")
}

/// A copy of `app` whose strings that messages quote hold no backticks or line breaks.
fn quotable(app: &App) -> App {
    let mut app = app.clone();
    for role in &mut app.roles {
        role.name = q(&role.name);
    }
    for environment in &mut app.environments {
        environment.name = q(&environment.name);
        for role in environment.locked_roles.iter_mut() {
            *role = q(role);
        }
    }
    let identity = &mut app.identity;
    for text in identity.mfa_factors.iter_mut() {
        *text = q(text);
    }
    for text in [
        &mut identity.issuer,
        &mut identity.audience,
        &mut identity.machine_scope,
    ]
    .into_iter()
    .flatten()
    {
        *text = q(text);
    }
    if let Some(admins) = &mut app.admins {
        admins.scope = q(&admins.scope);
        for role in admins.roles.iter_mut() {
            *role = q(role);
        }
    }
    for resource in &mut app.resources {
        resource.name = q(&resource.name);
        for field in &mut resource.fields {
            field.name = q(&field.name);
            if let FieldType::Enum { variants, .. } = &mut field.ty {
                for variant in variants.iter_mut() {
                    variant.value = q(&variant.value);
                }
            }
        }
        for threat in &mut resource.threats {
            for text in [&mut threat.stride, &mut threat.risk, &mut threat.mitigation] {
                *text = q(text);
            }
        }
        for action in &mut resource.actions {
            action.name = q(&action.name);
            action.path = q(&action.path);
            for text in [&mut action.scope, &mut action.condition, &mut action.public]
                .into_iter()
                .flatten()
            {
                *text = q(text);
            }
            for role in action.roles.iter_mut() {
                *role = q(role);
            }
        }
    }
    for (from, to) in &mut app.rename_resources {
        *from = q(from);
        *to = q(to);
    }
    if let Some(disputes) = app.payments.as_mut().and_then(|p| p.disputes.as_mut()) {
        for role in disputes.roles.iter_mut() {
            *role = q(role);
        }
    }
    if let Some(refunds) = app.payments.as_mut().and_then(|p| p.refunds.as_mut()) {
        for action in [&mut refunds.request, &mut refunds.approve] {
            for role in action.roles.iter_mut() {
                *role = q(role);
            }
        }
        for (currency, _) in refunds.dual_control_above.iter_mut() {
            *currency = q(currency);
        }
    }
    app
}

fn change(
    out: &mut Vec<Change>,
    subject: impl Into<String>,
    message: impl Into<String>,
    flagged: bool,
) {
    out.push(Change {
        subject: subject.into(),
        message: message.into(),
        flagged,
    });
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn roles(old: &App, new: &App, out: &mut Vec<Change>) {
    let before: BTreeMap<&str, _> = old.roles.iter().map(|r| (r.name.as_str(), r)).collect();
    let after: BTreeMap<&str, _> = new.roles.iter().map(|r| (r.name.as_str(), r)).collect();
    for (name, role) in &after {
        match before.get(name) {
            None => change(
                out,
                format!("role {name}"),
                format!(
                    "added{}",
                    if role.mfa_required {
                        " (second factor required)"
                    } else {
                        ""
                    }
                ),
                false,
            ),
            Some(was) if was.mfa_required && !role.mfa_required => change(
                out,
                format!("role {name}"),
                "no longer requires a second factor",
                true,
            ),
            Some(was) if !was.mfa_required && role.mfa_required => change(
                out,
                format!("role {name}"),
                "now requires a second factor",
                false,
            ),
            Some(_) => {}
        }
    }
    for name in before.keys().filter(|n| !after.contains_key(*n)) {
        change(out, format!("role {name}"), "removed", false);
    }
    let locked = |app: &App| -> BTreeMap<String, BTreeSet<String>> {
        app.environments
            .iter()
            .map(|e| (e.name.clone(), e.locked_roles.iter().cloned().collect()))
            .collect()
    };
    let (was, now) = (locked(old), locked(new));
    for (environment, roles) in &was {
        let still = now.get(environment).cloned().unwrap_or_default();
        for role in roles.difference(&still) {
            change(
                out,
                format!("environment {environment}"),
                format!(
                    "no longer locks role `{role}`: it can be granted and taken through the service"
                ),
                true,
            );
        }
    }
    for (environment, roles) in &now {
        let before = was.get(environment).cloned().unwrap_or_default();
        for role in roles.difference(&before) {
            change(
                out,
                format!("environment {environment}"),
                format!("now locks role `{role}`"),
                false,
            );
        }
    }
    // A new environment: the server running under its name locked, before, what an
    // environment the spec does not name locks (every role locked anywhere).
    let everywhere: BTreeSet<String> = was.values().flatten().cloned().collect();
    for (environment, roles) in now.iter().filter(|(e, _)| !was.contains_key(*e)) {
        for role in everywhere.difference(roles) {
            change(
                out,
                format!("environment {environment}"),
                format!(
                    "added without locking role `{role}`, which a server running under its name locked before"
                ),
                true,
            );
        }
    }
    // The roles each environment's template holds: one that now exists there can be granted
    // there.
    let templates = |app: &App| -> BTreeMap<String, BTreeSet<String>> {
        app.environments
            .iter()
            .map(|e| (e.name.clone(), e.roles.iter().cloned().collect()))
            .collect()
    };
    let (was, now) = (templates(old), templates(new));
    for (environment, roles) in &now {
        let Some(before) = was.get(environment) else {
            continue;
        };
        for role in roles.difference(before) {
            change(
                out,
                format!("environment {environment}"),
                format!("role `{role}` now exists there"),
                true,
            );
        }
    }
}

fn identity(old: &App, new: &App, out: &mut Vec<Change>) {
    let (a, b) = (&old.identity, &new.identity);
    if b.max_token_lifetime_secs > a.max_token_lifetime_secs {
        change(
            out,
            "identity",
            format!(
                "maximum token lifetime raised from {} s to {} s",
                a.max_token_lifetime_secs, b.max_token_lifetime_secs
            ),
            true,
        );
    } else if b.max_token_lifetime_secs < a.max_token_lifetime_secs {
        change(
            out,
            "identity",
            format!(
                "maximum token lifetime lowered from {} s to {} s",
                a.max_token_lifetime_secs, b.max_token_lifetime_secs
            ),
            false,
        );
    }
    let (fa, fb): (BTreeSet<_>, BTreeSet<_>) = (
        a.mfa_factors.iter().collect(),
        b.mfa_factors.iter().collect(),
    );
    for factor in fb.difference(&fa) {
        change(
            out,
            "identity",
            format!("`{factor}` now counts as a second factor"),
            true,
        );
    }
    for factor in fa.difference(&fb) {
        change(
            out,
            "identity",
            format!("`{factor}` no longer counts as a second factor"),
            false,
        );
    }
    if a.require_verified_email && !b.require_verified_email {
        change(
            out,
            "identity",
            "members no longer need a verified email",
            true,
        );
    } else if !a.require_verified_email && b.require_verified_email {
        change(out, "identity", "members now need a verified email", false);
    }
    if old.verify_domains && !new.verify_domains {
        change(
            out,
            "tenancy",
            "members' email domains no longer need to be verified domains of the tenant",
            true,
        );
    } else if !old.verify_domains && new.verify_domains {
        change(
            out,
            "tenancy",
            "members' email domains now need to be verified domains of the tenant",
            false,
        );
    }
    // The claims a token's tenant and email are read from: another claim is another
    // statement of the identity provider (one `email_verified` does not speak for).
    for (label, x, y) in [
        ("tenant claim", &a.tenant_claim, &b.tenant_claim),
        ("email claim", &a.email_claim, &b.email_claim),
    ] {
        if x != y {
            change(
                out,
                "identity",
                format!("{label} changed from `{}` to `{}`", q(x), q(y)),
                true,
            );
        }
    }
    for (label, x, y) in [
        ("issuer", &a.issuer, &b.issuer),
        ("audience", &a.audience, &b.audience),
        ("machine scope", &a.machine_scope, &b.machine_scope),
    ] {
        if x != y {
            let show = |v: &Option<String>| {
                v.as_deref()
                    .map(|s| format!("`{s}`"))
                    .unwrap_or_else(|| "none".into())
            };
            change(
                out,
                "identity",
                format!("{label} changed from {} to {}", show(x), show(y)),
                true,
            );
        }
    }
    let admins = |app: &App| {
        app.admins
            .as_ref()
            .map(|a| (a.roles.clone(), a.scope.clone()))
    };
    match (admins(old), admins(new)) {
        (None, Some((roles, scope))) => change(
            out,
            "tenancy",
            format!(
                "membership routes enabled for {} (scope `{scope}`)",
                list(&roles)
            ),
            true,
        ),
        (Some(_), None) => change(out, "tenancy", "membership routes removed", false),
        (Some((r1, s1)), Some((r2, s2))) => {
            for role in r2.iter().filter(|r| !r1.contains(r)) {
                change(
                    out,
                    "tenancy",
                    format!("role `{role}` may now manage memberships and sessions"),
                    true,
                );
            }
            for role in r1.iter().filter(|r| !r2.contains(r)) {
                change(
                    out,
                    "tenancy",
                    format!("role `{role}` may no longer manage memberships and sessions"),
                    false,
                );
            }
            if s1 != s2 {
                change(
                    out,
                    "tenancy",
                    format!("membership routes need scope `{s2}` instead of `{s1}`"),
                    true,
                );
            }
        }
        (None, None) => {}
    }
}

/// Every action by `resource.action`.
/// Every action of `app` by `resource.action`, its resources named as `renamed` maps them
/// (the old spec's resources under their new names, so that a renamed resource's actions
/// are compared, not listed as removed and added).
fn actions<'a>(
    app: &'a App,
    renamed: &BTreeMap<&str, &str>,
) -> BTreeMap<String, (&'a Resource, &'a Action)> {
    app.resources
        .iter()
        .flat_map(|r| {
            let name = renamed.get(r.name.as_str()).copied().unwrap_or(&r.name);
            r.actions
                .iter()
                .map(move |a| (format!("{name}.{}", a.name), (r, a)))
        })
        .collect()
}

/// An action's rate limit as the server applies it: its own, else its route class's
/// budget (per caller; none for a standard action before `standard` budgets existed).
fn effective_rate(app: &App, action: &Action) -> RateLimit {
    action.rate_limit.unwrap_or(match app.route_class(action) {
        RouteClass::Public => app.public_rate_limit,
        RouteClass::Sensitive => app.sensitive_rate_limit,
        RouteClass::Standard => app.standard_rate_limit,
    })
}

/// What a new action allows, in full.
fn describe(app: &App, resource: &Resource, action: &Action) -> String {
    let who = match &action.public {
        Some(reason) => format!("public ({reason})"),
        None => format!("roles {}", list(&action.roles)),
    };
    let scope = action
        .scope
        .as_ref()
        .map_or("no scope".into(), |s| format!("scope `{s}`"));
    let condition = action
        .condition
        .as_ref()
        .map_or("no condition".into(), |c| format!("condition `{c}`"));
    let sets = sets(resource, action);
    let sets = if sets.is_empty() {
        String::new()
    } else {
        format!(", sets {}", list(&sets))
    };
    let rate = show_rate(&effective_rate(app, action));
    format!("{who}, {scope}, {condition}{sets}, at most {rate}")
}

/// The fields an action sets, with their values: `status = paid`.
fn sets(resource: &Resource, action: &Action) -> Vec<String> {
    action
        .sets
        .iter()
        .map(|(index, value)| {
            let field = resource.fields.get(*index).map_or("?", |f| f.name.as_str());
            format!("{field} = {}", q(&show_value(value)))
        })
        .collect()
}

fn show_value(value: &crate::model::Value) -> String {
    match value {
        crate::model::Value::Bool(b) => b.to_string(),
        crate::model::Value::Int(i) => i.to_string(),
        crate::model::Value::Str(s) => s.clone(),
    }
}

/// The fields only custom actions change, by name, with those actions.
fn held(resource: &Resource) -> BTreeMap<&str, (Option<String>, Vec<&str>)> {
    resource
        .held_fields()
        .into_iter()
        .map(|(field, actions)| {
            let default = field.default.as_ref().map(|v| q(&show_value(v)));
            (field.name.as_str(), (default, actions))
        })
        .collect()
}

fn rate(limit: &RateLimit) -> f64 {
    f64::from(limit.requests) / f64::from(limit.per_secs.max(1))
}

fn show_rate(limit: &RateLimit) -> String {
    format!("{} per {} s", limit.requests, limit.per_secs)
}

fn permissions(old: &App, new: &App, out: &mut Vec<Change>) {
    let renamed: BTreeMap<&str, &str> = new
        .rename_resources
        .iter()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    let (before, after) = (actions(old, &renamed), actions(new, &BTreeMap::new()));
    for (id, (resource, action)) in &after {
        let Some((_, was)) = before.get(id) else {
            // New access, whatever it is: the reviewer reads it whole.
            let described = describe(new, resource, action);
            change(out, id, format!("added: {described}"), true);
            continue;
        };
        let (sets_before, sets_now) = (sets(before[id].0, was), sets(resource, action));
        if sets_before != sets_now {
            change(
                out,
                id,
                format!("now sets {} (was {})", list(&sets_now), list(&sets_before)),
                true,
            );
        }
        for role in action.roles.iter().filter(|r| !was.roles.contains(r)) {
            change(out, id, format!("role `{role}` may now do it"), true);
        }
        for role in was.roles.iter().filter(|r| !action.roles.contains(r)) {
            change(out, id, format!("role `{role}` may no longer do it"), false);
        }
        match (&was.condition, &action.condition) {
            (Some(c), None) => change(out, id, format!("condition removed (was `{c}`)"), true),
            (None, Some(c)) => change(out, id, format!("condition added: `{c}`"), false),
            (Some(a), Some(b)) if a != b => change(
                out,
                id,
                format!("condition changed from `{a}` to `{b}` (review whether it allows more)"),
                true,
            ),
            _ => {}
        }
        match (&was.scope, &action.scope) {
            (Some(s), None) => change(out, id, format!("no longer needs scope `{s}`"), true),
            (Some(a), Some(b)) if a != b => {
                change(out, id, format!("needs scope `{b}` instead of `{a}`"), true)
            }
            (None, Some(s)) => change(out, id, format!("now needs scope `{s}`"), false),
            _ => {}
        }
        match (&was.public, &action.public) {
            (None, Some(reason)) => change(out, id, format!("made public ({reason})"), true),
            (Some(_), None) => change(out, id, "no longer public", false),
            _ => {}
        }
        if was.mfa_required && !action.mfa_required {
            change(out, id, "no longer requires a second factor", true);
        }
        // As the server applies them: an own limit above the class's budget raises it.
        let (a, b) = (effective_rate(old, was), effective_rate(new, action));
        match (&was.rate_limit, &action.rate_limit) {
            (Some(a), None) if rate(&b) > rate(a) => change(
                out,
                id,
                format!(
                    "own rate limit removed (was {}; now its class's {})",
                    show_rate(a),
                    show_rate(&b)
                ),
                true,
            ),
            _ if rate(&b) > rate(&a) => change(
                out,
                id,
                format!(
                    "rate limit raised from {} to {}",
                    show_rate(&a),
                    show_rate(&b)
                ),
                true,
            ),
            _ if rate(&b) < rate(&a) => change(
                out,
                id,
                format!(
                    "rate limit lowered from {} to {}",
                    show_rate(&a),
                    show_rate(&b)
                ),
                false,
            ),
            _ => {}
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        change(out, id, "removed", false);
    }
    // Class budgets, as the spec sets them.
    for (class, a, b) in [
        ("public", old.public_rate_limit, new.public_rate_limit),
        (
            "sensitive",
            old.sensitive_rate_limit,
            new.sensitive_rate_limit,
        ),
        ("standard", old.standard_rate_limit, new.standard_rate_limit),
    ] {
        if rate(&b) != rate(&a) {
            change(
                out,
                format!("rate limits {class}"),
                format!(
                    "the {class} route class's budget changed from {} to {}",
                    show_rate(&a),
                    show_rate(&b)
                ),
                rate(&b) > rate(&a),
            );
        }
    }
    // Fields only custom actions change: one that may now be written freely lets a create
    // or update reach a state the action guarded; a new default is where creates start.
    for resource in &new.resources {
        let old_name = renamed
            .iter()
            .find(|(_, to)| **to == resource.name)
            .map_or(resource.name.as_str(), |(from, _)| *from);
        let Some(was) = old.resources.iter().find(|r| r.name == old_name) else {
            continue;
        };
        // A field no longer marked as personal data leaves the threat model's list of it.
        for field in &resource.fields {
            if was.fields.iter().any(|f| f.name == field.name && f.pii) && !field.pii {
                change(
                    out,
                    format!("field {}.{}", resource.name, field.name),
                    "no longer marked as personal data (`pii`)",
                    true,
                );
            }
        }
        let (before, now) = (held(was), held(resource));
        for (field, (default, actions)) in &before {
            let subject = format!("field {}.{field}", resource.name);
            let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
            match now.get(field) {
                None if resource.fields.iter().any(|f| f.name == *field) => change(
                    out,
                    subject,
                    format!(
                        "create and update may now write it (only {} changed it)",
                        list(&actions)
                    ),
                    true,
                ),
                Some((now_default, _)) if now_default != default => change(
                    out,
                    subject,
                    format!(
                        "creates now start it at {} (was {}); only {} change it",
                        now_default
                            .as_deref()
                            .map_or("empty".into(), |d| format!("`{d}`")),
                        default
                            .as_deref()
                            .map_or("empty".into(), |d| format!("`{d}`")),
                        list(&actions)
                    ),
                    true,
                ),
                _ => {}
            }
        }
    }
    let resources = |app: &App, renamed: &BTreeMap<&str, &str>| -> BTreeMap<String, bool> {
        app.resources
            .iter()
            .map(|r| {
                let name = renamed.get(r.name.as_str()).copied().unwrap_or(&r.name);
                (name.to_owned(), r.global)
            })
            .collect()
    };
    let (was, now) = (resources(old, &renamed), resources(new, &BTreeMap::new()));
    for (name, global) in &now {
        match was.get(name) {
            Some(false) if *global => change(
                out,
                format!("resource {name}"),
                "made global: its rows are shared by every tenant",
                true,
            ),
            Some(true) if !*global => {
                change(out, format!("resource {name}"), "made tenant-scoped", false)
            }
            _ => {}
        }
    }
}

fn payments(old: &App, new: &App, out: &mut Vec<Change>) {
    checkout(old, new, out);
    // Every payment action, by what it does: who may, with which scope and second factor.
    let actions = |app: &App| -> BTreeMap<&'static str, crate::model::PaymentAction> {
        let mut actions = BTreeMap::new();
        if let Some(payments) = &app.payments {
            if let Some(refunds) = &payments.refunds {
                actions.insert("refund request", refunds.request.clone());
                actions.insert("refund approval", refunds.approve.clone());
            }
            if let Some(disputes) = &payments.disputes {
                actions.insert("dispute", disputes.clone());
            }
        }
        actions
    };
    let (before, after) = (actions(old), actions(new));
    for (label, y) in &after {
        let Some(x) = before.get(label) else {
            change(
                out,
                "payments",
                format!(
                    "{label}s added: roles {}, scope `{}`{}",
                    list(&y.roles),
                    q(&y.scope),
                    if y.mfa_required {
                        ", second factor required"
                    } else {
                        ""
                    }
                ),
                true,
            );
            continue;
        };
        for role in y.roles.iter().filter(|r| !x.roles.contains(r)) {
            change(
                out,
                "payments",
                format!("role `{role}` may now do a {label}"),
                true,
            );
        }
        if x.mfa_required && !y.mfa_required {
            change(
                out,
                "payments",
                format!("a {label} no longer requires a second factor"),
                true,
            );
        }
        if x.scope != y.scope {
            change(
                out,
                "payments",
                format!(
                    "a {label} needs scope `{}` instead of `{}`",
                    q(&y.scope),
                    q(&x.scope)
                ),
                true,
            );
        }
    }
    for label in before.keys().filter(|l| !after.contains_key(*l)) {
        change(out, "payments", format!("{label}s removed"), false);
    }
    let refunds = |app: &App| app.payments.as_ref().and_then(|p| p.refunds.clone());
    if let (Some(a), Some(b)) = (refunds(old), refunds(new)) {
        let before: BTreeMap<_, _> = a.dual_control_above.iter().cloned().collect();
        let after: BTreeMap<_, _> = b.dual_control_above.iter().cloned().collect();
        for (currency, limit) in &before {
            match after.get(currency) {
                None => change(
                    out,
                    "payments",
                    format!(
                        "refunds in {currency} no longer need a second approver at any amount (was above {limit} minor units)"
                    ),
                    true,
                ),
                Some(now) if now > limit => change(
                    out,
                    "payments",
                    format!(
                        "dual-control threshold in {currency} raised from {limit} to {now} minor units"
                    ),
                    true,
                ),
                Some(now) if now < limit => change(
                    out,
                    "payments",
                    format!(
                        "dual-control threshold in {currency} lowered from {limit} to {now} minor units"
                    ),
                    false,
                ),
                _ => {}
            }
        }
    }
    // A currency accepted now that refunds have no threshold for: no second approver at any
    // amount.
    if let (Some(payments), Some(refunds)) = (&new.payments, refunds(new)) {
        let accepted_before: BTreeSet<&String> =
            old.payments.iter().flat_map(|p| &p.currencies).collect();
        for currency in payments
            .currencies
            .iter()
            .filter(|c| !accepted_before.contains(c))
        {
            if !refunds
                .dual_control_above
                .iter()
                .any(|(c, _)| c == currency)
            {
                change(
                    out,
                    "payments",
                    format!(
                        "currency {} accepted, with no dual-control threshold: its refunds need no second approver at any amount",
                        q(currency)
                    ),
                    true,
                );
            }
        }
    }
    let tolerance = |app: &App| app.payments.as_ref().map(|p| p.webhook_tolerance_secs);
    if let (Some(a), Some(b)) = (tolerance(old), tolerance(new))
        && b > a
    {
        change(
            out,
            "payments",
            format!(
                "webhook timestamp tolerance raised from {a} s to {b} s (a longer replay window)"
            ),
            true,
        );
    }
}

/// The payment section as a whole: taking payments at all, the provider whose signatures
/// the webhooks are verified with, what is charged and how card data is taken, and the tax
/// rules (listed for the reviewer, not flagged: they change amounts, not access).
fn checkout(old: &App, new: &App, out: &mut Vec<Change>) {
    let (a, b) = match (&old.payments, &new.payments) {
        (None, None) => return,
        (Some(_), None) => {
            change(out, "payments", "payments removed", false);
            return;
        }
        (None, Some(b)) => {
            change(
                out,
                "payments",
                format!(
                    "payments added: provider `{}`, checkout of `{}` by {}, and the provider's webhook",
                    q(&b.provider),
                    checkout_of(new, b),
                    b.checkout_mode.replace('_', " ")
                ),
                true,
            );
            return;
        }
        (Some(a), Some(b)) => (a, b),
    };
    if a.provider != b.provider {
        change(
            out,
            "payments",
            format!(
                "provider changes from `{}` to `{}`: webhooks are verified with the new provider's signature scheme and secret",
                q(&a.provider),
                q(&b.provider)
            ),
            true,
        );
    }
    let (was, now) = (checkout_of(old, a), checkout_of(new, b));
    if was != now {
        change(
            out,
            "payments",
            format!("checkout charges `{now}` instead of `{was}`"),
            true,
        );
    }
    if a.checkout_mode != b.checkout_mode {
        change(
            out,
            "payments",
            format!(
                "checkout by {} instead of {}: review the PCI scope (card data stays with the provider either way)",
                b.checkout_mode.replace('_', " "),
                a.checkout_mode.replace('_', " ")
            ),
            true,
        );
    }
    for currency in a.currencies.iter().filter(|c| !b.currencies.contains(c)) {
        change(
            out,
            "payments",
            format!("currency {} no longer accepted", q(currency)),
            false,
        );
    }
    let rule = |r: &crate::model::TaxRule| {
        format!(
            "VAT {}.{:02}%, rounding {}, per {}",
            r.vat_basis_points / 100,
            r.vat_basis_points % 100,
            q(&r.rounding),
            q(&r.per)
        )
    };
    let rules = |p: &crate::model::Payments| -> BTreeMap<String, String> {
        p.tax.iter().map(|r| (q(&r.country), rule(r))).collect()
    };
    let (before, after) = (rules(a), rules(b));
    for (country, now) in &after {
        let message = match before.get(country) {
            None => format!("tax rule for {country} added: {now}"),
            Some(was) if was != now => format!("tax rule for {country}: {now} (was {was})"),
            Some(_) => continue,
        };
        change(out, "payments", message, false);
    }
    for (country, was) in before.iter().filter(|(c, _)| !after.contains_key(*c)) {
        change(
            out,
            "payments",
            format!("tax rule for {country} removed (was {was})"),
            false,
        );
    }
}

/// `resource.amount` of the checkout.
fn checkout_of(app: &App, payments: &crate::model::Payments) -> String {
    let resource = &app.resources[payments.checkout_resource];
    format!(
        "{}.{}",
        resource.name, resource.fields[payments.checkout_amount].name
    )
}

/// Every route, `METHOD path`, of the spec's actions and the built-in routes.
fn route_set(app: &App) -> BTreeSet<String> {
    let mut routes: BTreeSet<String> = app
        .resources
        .iter()
        .flat_map(|r| {
            r.actions
                .iter()
                .map(|a| format!("{} {}", a.method.as_str(), a.path))
        })
        .collect();
    routes.extend(
        app.builtin_operations()
            .iter()
            .map(|b| format!("{} {}", b.method, b.path)),
    );
    routes
}

/// The versions served: the current one and those still served deprecated. A version no
/// longer served breaks its clients unless the old spec had announced it (deprecated, with a
/// sunset its clients were told of).
/// Threat notes of resources in both specs: one removed is flagged (the threat model loses
/// a risk and its mitigation); one added is listed.
fn threats(old: &App, new: &App, out: &mut Vec<Change>) {
    let show = |t: &crate::model::Threat| {
        format!(
            "{}: `{}` (mitigation: `{}`)",
            t.stride, t.risk, t.mitigation
        )
    };
    for resource in &new.resources {
        let Some(before) = old.resources.iter().find(|r| r.name == resource.name) else {
            continue;
        };
        let notes = |r: &Resource| r.threats.iter().map(show).collect::<BTreeSet<_>>();
        let (was, now) = (notes(before), notes(resource));
        for note in was.difference(&now) {
            change(
                out,
                &resource.name,
                format!("threat note removed: {note}"),
                true,
            );
        }
        for note in now.difference(&was) {
            change(
                out,
                &resource.name,
                format!("threat note added: {note}"),
                false,
            );
        }
    }
}

fn versions(old: &App, new: &App, out: &mut Vec<Change>) {
    let deprecated = |app: &App, version: &str| {
        app.deprecated_versions
            .iter()
            .find(|v| v.version == version)
            .cloned()
    };
    let served =
        |app: &App, version: &str| app.api_version == version || deprecated(app, version).is_some();
    let before = std::iter::once(old.api_version.clone())
        .chain(old.deprecated_versions.iter().map(|v| v.version.clone()));
    for version in before.filter(|v| !served(new, v)) {
        let announced = deprecated(old, &version).is_some();
        let message = if announced {
            "no longer served (it was deprecated)"
        } else {
            "no longer served, without a deprecation period (list it under `api.deprecated` to keep serving it)"
        };
        change(out, format!("version {version}"), message, !announced);
    }
    for new_deprecation in &new.deprecated_versions {
        let before = deprecated(old, &new_deprecation.version);
        if before.as_ref() != Some(new_deprecation) {
            change(
                out,
                format!("version {}", new_deprecation.version),
                format!(
                    "served deprecated since {}, until {}",
                    new_deprecation.since_day, new_deprecation.sunset_day
                ),
                false,
            );
        }
    }
}

fn routes(old: &App, new: &App, out: &mut Vec<Change>) {
    let (before, after) = (route_set(old), route_set(new));
    // After a version bump every path changes prefix: compare without it.
    let unversioned =
        |route: &str, version: &str| route.replacen(&format!(" /{version}/"), " /", 1);
    let before_bare: BTreeSet<String> = before
        .iter()
        .map(|r| unversioned(r, &old.api_version))
        .collect();
    let after_bare: BTreeSet<String> = after
        .iter()
        .map(|r| unversioned(r, &new.api_version))
        .collect();
    for route in before
        .iter()
        .filter(|r| !after_bare.contains(&unversioned(r, &old.api_version)))
    {
        change(out, format!("route {route}"), "removed", true);
    }
    for route in after
        .iter()
        .filter(|r| !before_bare.contains(&unversioned(r, &new.api_version)))
    {
        change(out, format!("route {route}"), "added", false);
    }
}

/// What a field looks like to a client.
fn field_type(app: &App, field: &Field) -> String {
    match &field.ty {
        FieldType::Reference { resource } => {
            format!("reference to {}", app.resources[*resource].name)
        }
        _ => crate::versions::type_text(field),
    }
}

/// A value clients must send on create and update.
fn required_input(field: &Field) -> bool {
    !field.optional && field.default.is_none() && field.ty != FieldType::Principal
}

fn fields(old: &App, new: &App, out: &mut Vec<Change>) {
    for resource in &new.resources {
        let Some(was) = old.resources.iter().find(|r| r.name == resource.name) else {
            continue;
        };
        let takes_input = resource.actions.iter().any(|a| {
            matches!(
                a.kind,
                crate::model::ActionKind::Create | crate::model::ActionKind::Update
            )
        });
        for field in &resource.fields {
            let subject = format!("{}.{}", resource.name, field.name);
            let Some(before) = was.fields.iter().find(|f| f.name == field.name) else {
                if takes_input && required_input(field) {
                    change(
                        out,
                        subject,
                        "new required input: existing clients do not send it",
                        true,
                    );
                } else {
                    change(out, subject, "added", false);
                }
                continue;
            };
            let (a, b) = (field_type(old, before), field_type(new, field));
            if let (FieldType::Enum { variants: va, .. }, FieldType::Enum { variants: vb, .. }) =
                (&before.ty, &field.ty)
            {
                let removed: Vec<String> = va
                    .iter()
                    .filter(|v| !vb.contains(v))
                    .map(|v| v.value.clone())
                    .collect();
                if !removed.is_empty() {
                    change(
                        out,
                        &subject,
                        format!("enum values removed: {}", list(&removed)),
                        true,
                    );
                }
                let added: Vec<String> = vb
                    .iter()
                    .filter(|v| !va.contains(v))
                    .map(|v| v.value.clone())
                    .collect();
                if !added.is_empty() {
                    change(
                        out,
                        &subject,
                        format!(
                            "enum values added: {} (clients that match every value must handle them)",
                            list(&added)
                        ),
                        false,
                    );
                }
            } else if a != b {
                change(out, &subject, format!("type changed from {a} to {b}"), true);
            }
            if takes_input && required_input(field) && !required_input(before) {
                change(out, &subject, "now a required input", true);
            }
            // Inputs valid before that are refused now (422, or 409 for a taken value).
            if takes_input {
                let lowered = match (before.max, field.max) {
                    (None, Some(_)) => true,
                    (Some(a), Some(b)) => b < a,
                    _ => false,
                };
                let raised = match (before.min, field.min) {
                    (None, Some(_)) => true,
                    (Some(a), Some(b)) => b > a,
                    _ => false,
                };
                let show = |v: Option<String>| v.unwrap_or_else(|| "none".into());
                if lowered {
                    change(
                        out,
                        &subject,
                        format!(
                            "maximum lowered from {} to {}: inputs valid before are refused",
                            show(before.max.map(|m| m.to_string())),
                            show(field.max.map(|m| m.to_string()))
                        ),
                        true,
                    );
                }
                if raised {
                    change(
                        out,
                        &subject,
                        format!(
                            "minimum raised from {} to {}: inputs valid before are refused",
                            show(before.min.map(|m| m.to_string())),
                            show(field.min.map(|m| m.to_string()))
                        ),
                        true,
                    );
                }
                if field.unique && !before.unique {
                    change(
                        out,
                        &subject,
                        "now unique: a value another row holds is refused (409)",
                        true,
                    );
                }
                let (held_before, held_now) = (held(was), held(resource));
                if let (false, Some((_, actions))) = (
                    held_before.contains_key(field.name.as_str()),
                    held_now.get(field.name.as_str()),
                ) {
                    let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
                    change(
                        out,
                        &subject,
                        format!(
                            "only {} change it now: a create or update setting it is refused (422)",
                            list(&actions)
                        ),
                        true,
                    );
                }
            }
            if field.optional && !before.optional {
                change(out, &subject, "may now be absent from responses", true);
            }
        }
        for field in was
            .fields
            .iter()
            .filter(|f| !resource.fields.iter().any(|n| n.name == f.name))
        {
            change(
                out,
                format!("{}.{}", resource.name, field.name),
                "removed from requests and responses",
                true,
            );
        }
    }
}

/// The report as Markdown, for a pull-request description.
pub fn markdown(report: &Report) -> String {
    let mut text = String::from("## Security-relevant changes\n\n");
    section(&mut text, &report.security, "loosens access");
    text.push_str("\n## API changes\n\n");
    section(&mut text, &report.api, "breaking");
    text.push('\n');
    if report.version_bumped {
        text.push_str(&format!(
            "API version: `{}` → `{}`.\n",
            report.old_version, report.new_version
        ));
    } else if report.breaking {
        text.push_str(&format!(
            "**Breaking API changes under the same version `{}`**: bump `api.version`.\n",
            report.new_version
        ));
    } else {
        text.push_str(&format!(
            "API version: `{}` (no breaking change).\n",
            report.new_version
        ));
    }
    text
}

fn section(text: &mut String, changes: &[Change], flag: &str) {
    if changes.is_empty() {
        text.push_str("None.\n");
        return;
    }
    for change in changes {
        let mark = if change.flagged {
            format!(" **({flag})**")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "- {}: {}{mark}\n",
            crate::render::escape::markdown_code_span(&change.subject),
            quoted_markdown(&change.message)
        ));
    }
}

/// A message as Markdown: its backtick-quoted parts as code, the rest as escaped text.
fn quoted_markdown(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                crate::render::escape::markdown_code_span(part)
            } else {
                // The escaper trims; the spaces around a quote are kept.
                let lead = if part.starts_with(' ') { " " } else { "" };
                let trail = if part.ends_with(' ') && !part.trim().is_empty() {
                    " "
                } else {
                    ""
                };
                format!("{lead}{}{trail}", crate::render::escape::markdown(part))
            }
        })
        .collect()
}
