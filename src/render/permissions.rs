//! PERMISSIONS.md, the permission map reviewers read in every generated pull request (each
//! route with its operation, roles, scope, condition, second-factor need and rate limit, the
//! role × operation matrix, roles, environments and scopes), and IDENTITY.md, what the
//! identity provider must enforce.

use super::escape::{markdown, markdown_code};
use super::rust::condition_tests::Coverage;
use super::{Options, RenderError, templates};
use crate::model::App;
use serde::Serialize;

#[derive(Serialize)]
struct Context<'a> {
    version: &'a str,
    title: String,
    operations: Vec<Route>,
    builtins: bool,
    public: Vec<Public>,
    roles: Vec<RoleRow>,
    matrix: Vec<MatrixRow>,
    environments: Vec<EnvironmentRow>,
    scopes: Vec<ScopeRow>,
    conditions: Vec<ConditionRow>,
    held: Vec<HeldRow>,
    deprecated: Vec<PreviousRow<'a>>,
}

/// A field only custom actions change.
#[derive(Serialize)]
struct HeldRow {
    field: String,
    actions: String,
}

/// An earlier version still served. Versions, days, paths and operation ids are checked
/// names and dates: nothing to escape beyond the backticks of the code spans.
#[derive(Serialize)]
struct PreviousRow<'a> {
    version: &'a str,
    since_day: &'a str,
    sunset_day: &'a str,
    /// Whether it serves every operation as the current version does.
    as_current: bool,
    /// Its routes at paths or with bodies of its own.
    own: Vec<OwnRoute>,
    /// Current operations it does not serve (newer than it).
    unserved: String,
}

#[derive(Serialize)]
struct OwnRoute {
    method: &'static str,
    path: String,
    id: String,
    bodies: &'static str,
}

#[derive(Serialize)]
struct Route {
    method: &'static str,
    path: String,
    id: String,
    roles: String,
    scope: String,
    condition: String,
    mfa: String,
    rate_limit: String,
}

#[derive(Serialize)]
struct ConditionRow {
    id: String,
    condition: String,
    check: String,
}

#[derive(Serialize)]
struct Public {
    id: String,
    reason: String,
}

#[derive(Serialize)]
struct RoleRow {
    name: String,
    description: String,
    mfa: &'static str,
    customer: &'static str,
    locked: String,
}

#[derive(Serialize)]
struct MatrixRow {
    id: String,
    cells: Vec<&'static str>,
}

#[derive(Serialize)]
struct EnvironmentRow {
    name: String,
    roles: String,
    locked: String,
}

#[derive(Serialize)]
struct ScopeRow {
    name: String,
    description: String,
}

/// The spec's scopes, for the tables of both documents.
fn scope_rows(app: &App) -> Vec<ScopeRow> {
    app.scopes
        .iter()
        .map(|s| ScopeRow {
            name: markdown_code(&s.name),
            description: markdown(&s.description),
        })
        .collect()
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    if items.is_empty() {
        "—".into()
    } else {
        items.join(", ")
    }
}

/// One matrix row: `mark` under each role in `allowed`, empty under the others.
fn cells(app: &App, allowed: &[String], mark: &'static str) -> Vec<&'static str> {
    app.roles
        .iter()
        .map(|role| {
            if allowed.contains(&role.name) {
                mark
            } else {
                ""
            }
        })
        .collect()
}

/// Which of `roles` need a second factor, as the routes table says it.
fn mfa_note(roles: &[String], mfa_roles: &[&str]) -> String {
    let needing: Vec<String> = roles
        .iter()
        .filter(|r| mfa_roles.contains(&r.as_str()))
        .map(|r| markdown(r))
        .collect();
    if needing.is_empty() {
        "—".into()
    } else {
        format!("required for {}", needing.join(", "))
    }
}

pub fn render_permissions(
    app: &App,
    options: &Options,
    coverage: &[Coverage],
) -> Result<String, RenderError> {
    let mfa_roles = app.mfa_roles();
    let mut operations = Vec::new();
    let mut public = Vec::new();
    let mut matrix = Vec::new();
    for resource in &app.resources {
        for action in &resource.actions {
            let id = markdown(&format!("{}.{}", resource.name, action.name));
            if let Some(reason) = &action.public {
                public.push(Public {
                    id: id.clone(),
                    reason: markdown(reason),
                });
            }
            operations.push(Route {
                method: action.method.as_str(),
                path: action.path.replace('`', ""),
                id: id.clone(),
                roles: if action.public.is_some() {
                    "public".into()
                } else {
                    list(action.roles.iter().map(|r| markdown(r)))
                },
                scope: action.scope.as_deref().map_or("—".into(), markdown_code),
                condition: enforced(action).map_or("—".into(), markdown_code),
                mfa: mfa_note(&action.roles, &mfa_roles),
                rate_limit: rate_limit(app, action.rate_limit, app.route_class(action)),
            });
            let conditional = if action.condition.is_some() {
                "if condition"
            } else {
                "yes"
            };
            matrix.push(MatrixRow {
                id,
                cells: cells(app, &action.roles, conditional),
            });
        }
    }
    // The built-in routes, declared like the spec's own operations.
    for builtin in app.builtin_operations() {
        let id = markdown(builtin.id);
        let mut roles: Vec<String> = builtin.roles.iter().map(|r| markdown(r)).collect();
        let mut scopes: Vec<String> = builtin.scope.iter().map(|s| markdown_code(s)).collect();
        if let Some(scope) = &builtin.machine_scope {
            roles.push("machine callers".into());
            scopes.push(format!("{} (machine)", markdown_code(scope)));
        }
        operations.push(Route {
            method: builtin.method,
            path: builtin.path.replace('`', ""),
            id: id.clone(),
            roles: list(roles),
            scope: list(scopes),
            condition: "—".into(),
            mfa: mfa_note(&builtin.roles, &mfa_roles),
            rate_limit: rate_limit(app, None, crate::model::RouteClass::Sensitive),
        });
        matrix.push(MatrixRow {
            id,
            cells: cells(app, &builtin.roles, "yes"),
        });
    }
    let conditions = app
        .resources
        .iter()
        .flat_map(|resource| {
            resource
                .actions
                .iter()
                .map(move |action| (resource, action))
        })
        .filter_map(|(resource, action)| {
            let operation = format!("{}.{}", resource.name, action.name);
            let covered = coverage.iter().find(|c| c.operation == operation)?;
            Some(ConditionRow {
                id: markdown(&operation),
                condition: markdown_code(enforced(action)?),
                check: match &covered.checked {
                    Ok(calls) => format!("{calls} calls"),
                    Err(why) => format!("**not checked**: {}", markdown(why)),
                },
            })
        })
        .collect();
    let held = app
        .resources
        .iter()
        .flat_map(|resource| {
            resource
                .held_fields()
                .into_iter()
                .map(move |(field, actions)| HeldRow {
                    field: markdown(&format!("{}.{}", resource.name, field.name)),
                    actions: actions
                        .iter()
                        .map(|a| markdown(a))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect();
    let context = Context {
        conditions,
        held,
        version: &options.generator_version,
        title: markdown(&app.name),
        builtins: !app.builtin_operations().is_empty(),
        operations,
        public,
        roles: app
            .roles
            .iter()
            .map(|role| RoleRow {
                name: markdown(&role.name),
                description: role.description.as_deref().map_or("—".into(), markdown),
                mfa: if role.mfa_required { "required" } else { "—" },
                customer: if role.customer { "yes" } else { "—" },
                locked: list(
                    app.environments
                        .iter()
                        .filter(|e| e.locked_roles.contains(&role.name))
                        .map(|e| markdown(&e.name)),
                ),
            })
            .collect(),
        matrix,
        environments: app
            .environments
            .iter()
            .map(|env| EnvironmentRow {
                name: markdown(&env.name),
                roles: list(env.roles.iter().map(|r| markdown(r))),
                locked: list(env.locked_roles.iter().map(|r| markdown(r))),
            })
            .collect(),
        scopes: scope_rows(app),
        deprecated: previous_rows(app),
    };
    templates::render("PERMISSIONS.md", &context)
}

#[derive(Serialize)]
struct IdentityContext<'a> {
    version: &'a str,
    title: String,
    issuer: String,
    audience: String,
    lifetime: u64,
    tenant_claim: String,
    email_claim: String,
    factors: String,
    verified_email: &'static str,
    verified_domains: &'static str,
    mfa_roles: String,
    customer_roles: String,
    machine_scope: String,
    revoke_path: String,
    scopes: Vec<ScopeRow>,
}

pub fn render_identity(app: &App, options: &Options) -> Result<String, RenderError> {
    let id = &app.identity;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let context = IdentityContext {
        version: &options.generator_version,
        title: markdown(&app.name),
        issuer: id
            .issuer
            .as_deref()
            .map_or("not set: no token is accepted".into(), markdown_code),
        audience: id.audience.as_deref().map_or("—".into(), markdown_code),
        lifetime: id.max_token_lifetime_secs,
        tenant_claim: markdown_code(&id.tenant_claim),
        email_claim: markdown_code(&id.email_claim),
        factors: list(id.mfa_factors.iter().map(|f| markdown_code(f))),
        verified_email: yes_no(id.require_verified_email),
        verified_domains: yes_no(app.verify_domains),
        mfa_roles: list(app.mfa_roles().into_iter().map(markdown)),
        customer_roles: list(
            app.roles
                .iter()
                .filter(|r| r.customer)
                .map(|r| markdown(&r.name)),
        ),
        machine_scope: id
            .machine_scope
            .as_deref()
            .map_or("none: no machine caller is accepted".into(), markdown_code),
        // Only a machine caller (a scope of its own) can revoke on the provider's events.
        revoke_path: app
            .builtin_operations()
            .iter()
            .find(|b| b.id == "session.revoke" && id.machine_scope.is_some())
            .map_or(String::new(), |b| b.path.replace('`', "")),
        scopes: scope_rows(app),
    };
    templates::render("IDENTITY.md", &context)
}

/// An operation's rate limit: its own, else its route class's (per principal; per client
/// address when public), else none.
fn rate_limit(
    app: &App,
    own: Option<crate::model::RateLimit>,
    class: crate::model::RouteClass,
) -> String {
    use crate::model::RouteClass;
    let show = |l: crate::model::RateLimit| format!("{} per {} s", l.requests, l.per_secs);
    match (own, class) {
        (Some(limit), _) => show(limit),
        (None, RouteClass::Public) => format!("{} (public)", show(app.public_rate_limit)),
        (None, RouteClass::Sensitive) => format!("{} (sensitive)", show(app.sensitive_rate_limit)),
        (None, RouteClass::Standard) => format!("{} (standard)", show(app.standard_rate_limit)),
    }
}

/// What each earlier version serves otherwise than the current one.
fn previous_rows(app: &App) -> Vec<PreviousRow<'_>> {
    app.deprecated_versions
        .iter()
        .map(|version| {
            let mut own = Vec::new();
            let mut unserved = Vec::new();
            for resource in &app.resources {
                let served = version.serves(resource);
                for action in &resource.actions {
                    let id = format!("{}.{}", resource.name, action.name);
                    match &served {
                        Some(served) if served.actions.iter().any(|a| a.name == action.name) => {
                            if !served.unchanged(resource, action) {
                                own.push(OwnRoute {
                                    method: action.method.as_str(),
                                    path: version
                                        .path_of(app, resource, served, action)
                                        .replace('`', ""),
                                    id: id.replace('`', ""),
                                    bodies: match (&action.kind, &served.fields) {
                                        (crate::model::ActionKind::Delete, _) => "none",
                                        (_, Some(_)) => "its own",
                                        (_, None) => "the current ones",
                                    },
                                });
                            }
                        }
                        _ => unserved.push(format!("`{}`", id.replace('`', ""))),
                    }
                }
            }
            PreviousRow {
                version: &version.version,
                since_day: &version.since_day,
                sunset_day: &version.sunset_day,
                as_current: version.serves_as_current(app),
                own,
                unserved: unserved.join(", "),
            }
        })
        .collect()
}

/// An action's condition as Cedar enforces it, printed from its syntax tree: a comment in
/// the spec's text cannot show a rule that is not there.
fn enforced(action: &crate::model::Action) -> Option<&str> {
    action
        .cedar_condition
        .as_deref()
        .or(action.condition.as_deref())
}
