//! Stage 2, the model: the validated, resolved form of a spec. Every name is checked and
//! turned into identifiers here (see `names`); every route carries its action, roles, scope,
//! condition, tenant rule and threat notes. Render reads only this.

mod lower;
pub mod names;

pub use lower::lower;

use serde::Serialize;

/// A validated application.
#[derive(Clone, Debug, Serialize)]
pub struct App {
    /// The app's name as written.
    pub name: String,
    /// snake_case identifier of the app.
    pub ident: String,
    pub description: Option<String>,
    pub owners: Vec<String>,
    pub api_version: String,
    pub scopes: Vec<Scope>,
    pub roles: Vec<Role>,
    pub environments: Vec<Environment>,
    pub identity: Identity,
    pub verify_domains: bool,
    /// Who manages memberships and sessions through the built-in routes.
    pub admins: Option<Admins>,
    pub resources: Vec<Resource>,
    pub payments: Option<Payments>,
    /// Resources and fields (`resource.field`) whose tables and columns a migration may drop.
    pub drop: Vec<String>,
    /// Fields renamed since the previous generation: (resource, old field, new field), names
    /// as the spec writes them; their columns are renamed, keeping the data.
    pub rename: Vec<(String, String, String)>,
    /// Resources renamed since the previous generation: (old name, new name); their tables
    /// are renamed, keeping the rows.
    pub rename_resources: Vec<(String, String)>,
    /// Fields (`resource.field`) whose changed rule the migration applies to stored rows,
    /// checking them (it fails, changing nothing, where one breaks it).
    pub check: Vec<String>,
    /// Values for the stored rows of fields that become required: (`resource.field`, value).
    pub backfill: Vec<(String, Value)>,
    /// Resources whose move between tenant-scoped and global the migration may make.
    pub tenancy: Vec<String>,
    /// Rate limits of the route classes (for operations without their own).
    pub public_rate_limit: RateLimit,
    pub sensitive_rate_limit: RateLimit,
    pub standard_rate_limit: RateLimit,
    /// Earlier API versions still served, deprecated, oldest first.
    pub deprecated_versions: Vec<DeprecatedVersion>,
}

/// An earlier API version still served, under its own path prefix, with the current policies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeprecatedVersion {
    /// `v1`, …
    pub version: String,
    /// The `Deprecation` header (RFC 9745): `@` and the Unix time it was deprecated.
    pub deprecation: String,
    /// The `Sunset` header (RFC 8594): the HTTP date it stops being served.
    pub sunset: String,
    /// The days, `YYYY-MM-DD`, as the spec gives them.
    pub since_day: String,
    pub sunset_day: String,
    /// What it serves, as recorded when it was current (`crate::versions`); `None` until
    /// attached, and then it serves the current shapes.
    pub shape: Option<crate::versions::ApiShape>,
}

/// How an operation is throttled when the spec gives it no rate limit of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteClass {
    /// Authenticated, not sensitive: no limit unless the spec sets one.
    Standard,
    /// Deletes, custom actions, writes only roles with a second factor may do, built-in
    /// routes: the sensitive limit, per principal.
    Sensitive,
    /// Served without authentication: the public limit, per client address.
    Public,
}

impl RouteClass {
    /// The variant's name in the generated `RouteClass`.
    pub fn variant(self) -> &'static str {
        match self {
            RouteClass::Standard => "Standard",
            RouteClass::Sensitive => "Sensitive",
            RouteClass::Public => "Public",
        }
    }
}

impl App {
    /// An action's route class: public if public; sensitive if it deletes, is a custom
    /// action, or changes data and every role allowed needs a second factor (the spec's
    /// administrative and financial writes); standard otherwise (reads and lists included).
    pub fn route_class(&self, action: &Action) -> RouteClass {
        let mfa_roles = self.mfa_roles();
        let only_mfa_roles = !action.roles.is_empty()
            && action.roles.iter().all(|r| mfa_roles.contains(&r.as_str()));
        match &action.kind {
            _ if action.public.is_some() => RouteClass::Public,
            ActionKind::Delete | ActionKind::Custom(_) => RouteClass::Sensitive,
            ActionKind::Create | ActionKind::Update if only_mfa_roles => RouteClass::Sensitive,
            _ => RouteClass::Standard,
        }
    }
}

impl App {
    /// The names of the roles that count only with a second factor.
    pub fn mfa_roles(&self) -> Vec<&str> {
        self.roles
            .iter()
            .filter(|r| r.mfa_required)
            .map(|r| r.name.as_str())
            .collect()
    }

    /// Whether a built-in operation needs a second factor: when one of the roles it allows
    /// does (the guard and `bulwark audit --spec` agree by asking here).
    pub fn builtin_needs_mfa(&self, operation: &BuiltinOperation) -> bool {
        let mfa_roles = self.mfa_roles();
        operation
            .roles
            .iter()
            .any(|r| mfa_roles.contains(&r.as_str()))
    }
}

/// The built-in routes: managing a tenant's memberships and revoking sessions. They are
/// declared in the permission model (policies, PERMISSIONS.md, OpenAPI) like the spec's own.
#[derive(Clone, Debug, Serialize)]
pub struct BuiltinOperation {
    /// `membership.grant` and so on: the Cedar action and the server's operation id.
    pub id: &'static str,
    pub method: &'static str,
    /// Versioned path.
    pub path: String,
    pub summary: &'static str,
    /// The Cedar entity type it acts on (`Membership`, `Domain`).
    pub entity: &'static str,
    /// Tenant roles allowed (the spec's `tenancy.admins`).
    pub roles: Vec<String>,
    pub scope: Option<String>,
    /// Machine callers (no tenant) with this scope are allowed too.
    pub machine_scope: Option<String>,
}

impl App {
    /// The built-in operations this spec enables: membership management for
    /// `tenancy.admins`, and revoking sessions for them and for machine callers.
    pub fn builtin_operations(&self) -> Vec<BuiltinOperation> {
        let version = &self.api_version;
        let (roles, scope) = match &self.admins {
            Some(admins) => (admins.roles.clone(), Some(admins.scope.clone())),
            None => (Vec::new(), None),
        };
        let mut operations = Vec::new();
        if self.admins.is_some() {
            for (id, method, path, summary) in [
                (
                    "membership.list",
                    "GET",
                    "memberships",
                    "List the tenant's members and their roles.",
                ),
                (
                    "membership.grant",
                    "PUT",
                    "memberships/{subject}",
                    "Set a member's roles (adds the member); ends the member's sessions when they change.",
                ),
                (
                    "membership.remove",
                    "DELETE",
                    "memberships/{subject}",
                    "Remove a member from the tenant.",
                ),
            ] {
                operations.push(BuiltinOperation {
                    id,
                    method,
                    path: format!("/{version}/{path}"),
                    summary,
                    entity: "Membership",
                    roles: roles.clone(),
                    scope: scope.clone(),
                    machine_scope: None,
                });
            }
        }
        if self.admins.is_some() && self.verify_domains {
            for (id, method, path, summary) in [
                (
                    "domain.list",
                    "GET",
                    "domains",
                    "List the tenant's domains and whether each is verified.",
                ),
                (
                    "domain.add",
                    "POST",
                    "domains",
                    "Claim a domain: answers the token to publish at the domain's well-known path.",
                ),
                (
                    "domain.verify",
                    "POST",
                    "domains/{domain}/verify",
                    "Verify a claimed domain: the service fetches the token over HTTPS.",
                ),
                (
                    "domain.remove",
                    "DELETE",
                    "domains/{domain}",
                    "Give up a domain; members with emails there are refused.",
                ),
            ] {
                operations.push(BuiltinOperation {
                    id,
                    method,
                    path: format!("/{version}/{path}"),
                    summary,
                    entity: "Domain",
                    roles: roles.clone(),
                    scope: scope.clone(),
                    machine_scope: None,
                });
            }
        }
        let machine_scope = self.identity.machine_scope.clone();
        if self.admins.is_some() || machine_scope.is_some() {
            operations.push(BuiltinOperation {
                id: "session.revoke",
                method: "POST",
                path: format!("/{version}/sessions/revoke"),
                summary: "End a subject's sessions: tokens issued until now are refused.",
                entity: "Membership",
                roles,
                scope,
                machine_scope,
            });
        }
        operations
    }
}

/// The roles and scope of the built-in membership and session routes.
#[derive(Clone, Debug, Serialize)]
pub struct Admins {
    pub roles: Vec<String>,
    pub scope: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scope {
    pub name: String,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Role {
    pub name: String,
    pub ident: String,
    pub description: Option<String>,
    pub mfa_required: bool,
    pub customer: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Environment {
    pub name: String,
    /// Roles that exist in this environment.
    pub roles: Vec<String>,
    /// Roles only an operator command may grant here.
    pub locked_roles: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Identity {
    /// `None` when the spec has no `identity` section: no token is ever accepted.
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub max_token_lifetime_secs: u64,
    pub tenant_claim: String,
    pub email_claim: String,
    pub mfa_factors: Vec<String>,
    pub require_verified_email: bool,
    /// The scope of a machine caller (no tenant), if machine callers are accepted.
    pub machine_scope: Option<String>,
}

/// A resource: one table, one set of routes.
#[derive(Clone, Debug, Serialize)]
pub struct Resource {
    pub name: String,
    /// snake_case, for functions and modules.
    pub ident: String,
    /// UpperCamelCase, for types.
    pub type_name: String,
    /// Table name (unquoted; within PostgreSQL's limit).
    pub table: String,
    /// URL path segment (`invoices`).
    pub path: String,
    pub description: Option<String>,
    pub global: bool,
    pub fields: Vec<Field>,
    pub actions: Vec<Action>,
    pub threats: Vec<Threat>,
}

impl Resource {
    pub fn action(&self, kind: &ActionKind) -> Option<&Action> {
        self.actions.iter().find(|a| &a.kind == kind)
    }

    /// The fields only its custom actions change (they `set` them and the spec does not
    /// mark them `writable`), each with the names of those actions: create leaves them at
    /// their default, or empty (a required field without a default it sets), and update
    /// keeps them, so nobody reaches a state an action guards without that action's roles
    /// and condition.
    pub fn held_fields(&self) -> Vec<(&Field, Vec<&str>)> {
        self.fields
            .iter()
            .enumerate()
            .filter(|(_, field)| !field.writable && field.ty != FieldType::Principal)
            .filter_map(|(index, field)| {
                let actions: Vec<&str> = self
                    .actions
                    .iter()
                    .filter(|a| a.sets.iter().any(|(set, _)| *set == index))
                    .map(|a| a.name.as_str())
                    .collect();
                (!actions.is_empty()).then_some((field, actions))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Field {
    pub name: String,
    /// Rust field name (keywords and the generated code's names avoided).
    pub ident: String,
    /// JSON property name (the ASCII snake_case form of the name).
    pub json: String,
    /// Column name (unquoted; within PostgreSQL's limit).
    pub column: String,
    pub description: Option<String>,
    pub ty: FieldType,
    pub optional: bool,
    pub unique: bool,
    pub pii: bool,
    pub max: Option<u32>,
    pub min: Option<i64>,
    pub default: Option<Value>,
    /// Create and update may set it although a custom action sets it too.
    pub writable: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FieldType {
    String,
    Text,
    Int,
    Bool,
    Decimal,
    Money,
    Timestamp,
    Date,
    Uuid,
    Email,
    Enum {
        type_name: String,
        variants: Vec<EnumVariant>,
    },
    Reference {
        resource: usize,
    },
    Principal,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnumVariant {
    /// The value as written in the spec and sent over the wire.
    pub value: String,
    /// The Rust variant name.
    pub ident: String,
}

/// A literal from the spec, checked against its field's type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum ActionKind {
    Create,
    Read,
    Update,
    Delete,
    List,
    Custom(String),
}

/// One action on a resource, and the route that serves it.
#[derive(Clone, Debug, Serialize)]
pub struct Action {
    pub name: String,
    pub kind: ActionKind,
    /// snake_case identifier, unique within the resource.
    pub ident: String,
    pub description: Option<String>,
    pub roles: Vec<String>,
    pub scope: Option<String>,
    /// A Cedar expression that must hold, as the spec writes it.
    pub condition: Option<String>,
    /// The same as Cedar prints it from its syntax tree: what the policies contain (parsed
    /// once, while lowering).
    pub cedar_condition: Option<String>,
    /// Public actions: why (recorded in PERMISSIONS.md).
    pub public: Option<String>,
    pub rate_limit: Option<RateLimit>,
    /// Any allowed role needs a second factor.
    pub mfa_required: bool,
    /// Custom actions: the fields set, by field index.
    pub sets: Vec<(usize, Value)>,
    pub method: Method,
    /// Path template with the version, e.g. `/v1/invoices/{id}/void`.
    pub path: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub requests: u32,
    pub per_secs: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Threat {
    pub stride: String,
    pub risk: String,
    pub mitigation: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Payments {
    pub provider: String,
    pub checkout_resource: usize,
    pub checkout_amount: usize,
    pub checkout_mode: String,
    pub currencies: Vec<String>,
    pub tax: Vec<TaxRule>,
    pub refunds: Option<Refunds>,
    pub disputes: Option<PaymentAction>,
    pub webhook_tolerance_secs: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TaxRule {
    pub country: String,
    /// Rate in basis points (19% = 1900).
    pub vat_basis_points: u32,
    pub rounding: String,
    pub per: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Refunds {
    pub request: PaymentAction,
    pub approve: PaymentAction,
    /// Per currency, in minor units.
    pub dual_control_above: Vec<(String, i64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PaymentAction {
    pub roles: Vec<String>,
    pub scope: String,
    pub mfa_required: bool,
}
