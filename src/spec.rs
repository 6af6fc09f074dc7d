//! The spec as the user wrote it: one type per YAML mapping, `deny_unknown_fields`, every
//! name and checked value `Located` so later stages can point back into the file.
//! `bulwark schema` prints the JSON Schema derived from these types.

use crate::load::Located;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

/// A name the user chose (a resource, field, role, scope…), with where it was written.
pub type Name = Located<String>;
/// A free-form text from the spec; untrusted, escaped for each output it reaches.
pub type Text = Located<String>;

/// A bulwark application spec (format version 1).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Spec format version; must be 1.
    pub bulwark: Located<u32>,
    pub app: App,
    pub api: Api,
    /// The OAuth 2.1 / OIDC issuer whose access tokens the service accepts.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// How tenants (organizations) are set up.
    #[serde(default)]
    pub tenancy: Option<Tenancy>,
    /// Roles a member can hold within a tenant.
    #[serde(default)]
    pub roles: IndexMap<Name, Role>,
    /// Deployment environments and the role templates of each.
    #[serde(default)]
    pub environments: IndexMap<Name, Environment>,
    /// The application's data, each with its fields, actions and threat notes.
    pub resources: IndexMap<Name, Resource>,
    /// Hosted checkout, refunds, tax and webhooks.
    #[serde(default)]
    pub payments: Option<Payments>,
    /// Database changes that lose data, acknowledged for the next generation.
    #[serde(default)]
    pub migrations: Option<Migrations>,
}

/// What the next generation's migration may do to stored data. Without an entry here,
/// `generate` refuses a spec change that would drop a table or a column, rename a resource
/// or a field, hold stored rows to a rule they were never checked against, or move a
/// resource between tenant-scoped and global.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migrations {
    /// Resources (`invoice`) and fields (`invoice.notes`) no longer in the spec whose table
    /// or column, and the data in it, the migration drops.
    #[serde(default)]
    pub drop: Vec<Text>,
    /// Resources and fields renamed since the previous generation: `invoice: bill` renames
    /// the table of the resource `invoice` (no longer in the spec) to that of `bill`, and
    /// `invoice.notes: memo` the column of `invoice.notes` to that of `invoice.memo`, keeping
    /// their data.
    #[serde(default)]
    pub rename: IndexMap<Text, Text>,
    /// Fields (`customer.segment`) whose change the migration applies to the rows already
    /// stored, checking each: a changed type (converted by a cast) or constraint (length,
    /// range, enum values), a field made required, a new uniqueness rule or reference. Where
    /// a stored row breaks the new rule the migration fails as a whole and changes nothing.
    #[serde(default)]
    pub check: Vec<Text>,
    /// Values for the rows already stored of a field that becomes required (new without a
    /// default, or optional before): `customer.segment: retail` fills the empty ones with
    /// `retail`.
    #[serde(default)]
    pub backfill: IndexMap<Text, Located<Scalar>>,
    /// Resources that move between tenant-scoped and global since the previous generation,
    /// each with the way it moves: `exchange_rate: global` or `exchange_rate: tenant` (it
    /// must agree with the resource's `global`, so an entry left from an earlier move never
    /// acknowledges a move back). Made global, every tenant's stored rows are shared by all
    /// tenants and the tenant each came from is forgotten (where a uniqueness rule now spans
    /// tenants and two rows share a value, the migration fails whole). Made tenant-scoped,
    /// each tenant gets its own copy of every stored row, and each tenant's references point
    /// at its own copy (with rows stored and no tenant, the migration fails).
    #[serde(default)]
    pub tenancy: IndexMap<Text, Text>,
}

/// Application metadata.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Short name; the generated crates are called `<name>-server`, `<name>-client`, `<name>-api`.
    pub name: Name,
    #[serde(default)]
    pub description: Option<Text>,
    /// Code owners for the generated CODEOWNERS file (e.g. `@acme/security`).
    #[serde(default)]
    pub owners: Vec<Text>,
}

/// The public API contract.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Current API version; every path starts with it (`/v1/...`).
    pub version: Name,
    /// OAuth scopes and what each allows; every non-public action names one.
    #[serde(default)]
    pub scopes: IndexMap<Name, Text>,
    /// Rate limits of the route classes, for operations without one of their own (default:
    /// public `60/min` per client address, sensitive `30/min` and standard `600/min` per
    /// principal).
    #[serde(default)]
    pub rate_limits: Option<ClassRateLimits>,
    /// Earlier versions still served after a bump, e.g. `v1: { since: 2026-11-01, sunset:
    /// 2027-05-01 }`: their paths answer with the current operations, under the current
    /// policies, marked deprecated (`Deprecation` and `Sunset` headers) until removed here.
    #[serde(default)]
    pub deprecated: IndexMap<Name, DeprecatedVersion>,
}

/// When an earlier API version was deprecated and when it stops being served.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecatedVersion {
    /// The day it was deprecated, `YYYY-MM-DD` (UTC).
    pub since: Text,
    /// The day it stops being served, `YYYY-MM-DD` (UTC); remove it from the spec then.
    pub sunset: Text,
}

/// Rate limits per route class. Public: operations served without authentication.
/// Sensitive: deletes, custom actions, writes only roles with a second factor may do, and the
/// built-in membership, domain and session routes. Standard: every other authenticated
/// operation.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassRateLimits {
    /// Requests per client address and unit, e.g. `60/min`.
    #[serde(default)]
    pub public: Option<Text>,
    /// Requests per principal and unit, e.g. `30/min`.
    #[serde(default)]
    pub sensitive: Option<Text>,
    /// Requests per principal and unit for every other authenticated operation, e.g.
    /// `600/min`.
    #[serde(default)]
    pub standard: Option<Text>,
}

/// The identity provider the service trusts. The service is a resource server: it validates
/// access tokens and never handles passwords.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Issuer URL (exact `iss`), HTTPS.
    pub issuer: Text,
    /// Audience the tokens must carry (`aud`).
    pub audience: Text,
    /// Longest accepted token lifetime (`exp - iat`), e.g. `10m`. Default `15m`.
    #[serde(default)]
    pub max_token_lifetime: Option<Text>,
    /// Claim names in the access token.
    #[serde(default)]
    pub claims: Option<Claims>,
    /// `amr` values that count as a second factor. Default `[mfa, hwk, otp]`.
    #[serde(default)]
    pub mfa_factors: Option<Vec<Name>>,
    /// Members must have a verified email (`email_verified`).
    #[serde(default)]
    pub require_verified_email: bool,
    /// A machine caller's scope: a client-credentials token with it and no tenant (the
    /// identity provider's password-change or risk event hook) may revoke any subject's
    /// sessions. Without it, no machine caller is accepted.
    #[serde(default)]
    pub machine_scope: Option<Name>,
}

/// Claim names in the access token.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Claim holding the active tenant. Default `tenant_id`.
    #[serde(default)]
    pub tenant: Option<Name>,
    /// Claim holding the email address. Default `email`.
    #[serde(default)]
    pub email: Option<Name>,
}

/// Tenancy settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenancy {
    /// A member's email domain must be a verified domain of the tenant.
    #[serde(default)]
    pub verify_domains: bool,
    /// Who manages a tenant's memberships and members' sessions through the service's
    /// built-in routes. Without it, only the server's operator command grants roles.
    #[serde(default)]
    pub admins: Option<Admins>,
}

/// The roles and scope of the built-in membership and session routes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admins {
    /// Roles that may list, grant and remove memberships and revoke members' sessions.
    pub roles: Vec<Name>,
    /// Scope the token must carry for them.
    pub scope: Name,
}

/// A role members can hold within a tenant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[serde(default)]
    pub description: Option<Text>,
    /// `required`: the role counts only with a second factor in the token.
    #[serde(default)]
    pub mfa: Option<Located<Mfa>>,
    /// Roles held by end customers (passkeys recommended in IDENTITY.md).
    #[serde(default)]
    pub customer: bool,
}

/// Whether a role needs a second factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mfa {
    Required,
    Optional,
}

/// A deployment environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Roles that exist in this environment (the role template). Default: all roles.
    #[serde(default)]
    pub roles: Option<Vec<Name>>,
    /// Roles tenant admins cannot create, edit or grant here; only an operator command can.
    #[serde(default)]
    pub locked_roles: Vec<Name>,
}

/// A kind of record the service stores and serves.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    #[serde(default)]
    pub description: Option<Text>,
    /// URL path segment. Default: the plural of the name.
    #[serde(default)]
    pub path: Option<Name>,
    /// Shared by all tenants (no `tenant_id`). Must be said explicitly; rare.
    #[serde(default)]
    pub global: Option<Located<bool>>,
    pub fields: IndexMap<Name, Field>,
    /// Actions: `create`, `read`, `update`, `delete`, `list`, or a custom name.
    pub actions: IndexMap<Name, Action>,
    /// Threat-model notes, rendered into THREAT_MODEL.md and the routes' docs.
    #[serde(default)]
    pub threats: Vec<Threat>,
}

/// A field of a resource.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    #[serde(rename = "type")]
    pub ty: Located<FieldType>,
    #[serde(default)]
    pub description: Option<Text>,
    /// Maximum length in characters (string, text, email), or largest value (int; money:
    /// the amount in minor units).
    #[serde(default)]
    pub max: Option<Located<u32>>,
    /// Minimum length (strings) or value (int; money: the amount in minor units).
    #[serde(default)]
    pub min: Option<Located<i64>>,
    /// May be absent (NULL). Fields are required by default.
    #[serde(default)]
    pub optional: bool,
    /// Unique within a tenant (or globally for a global resource).
    #[serde(default)]
    pub unique: Option<Located<bool>>,
    /// Personal data: redacted from logs, listed in SECURITY.md.
    #[serde(default)]
    pub pii: bool,
    /// Allowed values of an `enum` field.
    #[serde(default)]
    pub values: Option<Vec<Name>>,
    /// Value used when a create request leaves the field out.
    #[serde(default)]
    pub default: Option<Located<Scalar>>,
    /// The resource a `reference` field points to.
    #[serde(default)]
    pub to: Option<Name>,
    /// Create and update may set it although a custom action `sets` it too (their
    /// conditions must then guard it). Without this, only the actions change it: create
    /// leaves it at its default (or empty) and update keeps it.
    #[serde(default)]
    pub writable: bool,
}

/// Field types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = accept_ref)]
pub enum FieldType {
    String,
    Text,
    Int,
    Bool,
    Decimal,
    /// Integer minor units plus an ISO 4217 currency.
    Money,
    Timestamp,
    Date,
    Uuid,
    Email,
    Enum,
    #[serde(alias = "ref")]
    Reference,
    /// The subject (`sub`) of a principal, e.g. who created a record.
    Principal,
}

/// The schema accepts `ref` as the loader does (serde's alias does not reach the schema).
fn accept_ref(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::Array(choices)) = schema.get_mut("oneOf") {
        choices.push(serde_json::json!({
            "description": "Short for `reference`.",
            "type": "string",
            "const": "ref",
        }));
    }
}

/// A literal value in the spec (a default, a value a custom action sets, an amount).
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// Who may do an action, under which scope and condition.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    #[serde(default)]
    pub description: Option<Text>,
    /// Roles allowed to perform it.
    #[serde(default)]
    pub roles: Vec<Name>,
    /// OAuth scope the token must carry.
    #[serde(default)]
    pub scope: Option<Name>,
    /// A Cedar expression over `principal`, `resource` and `context` that must hold.
    #[serde(default)]
    pub when: Option<Text>,
    /// Served without authentication (global resources only); needs a `reason`.
    #[serde(default)]
    pub public: Option<Located<bool>>,
    /// Why the action is public; recorded in PERMISSIONS.md.
    #[serde(default)]
    pub reason: Option<Text>,
    /// Requests per principal (or per client address when public), e.g. `60/min`.
    #[serde(default)]
    pub rate_limit: Option<Text>,
    /// Custom actions only: the fields the action sets, and to what.
    #[serde(default)]
    pub sets: IndexMap<Name, Located<Scalar>>,
}

/// A threat-model note.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Threat {
    pub stride: Located<Stride>,
    pub risk: Text,
    pub mitigation: Text,
}

/// STRIDE categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stride {
    Spoofing,
    Tampering,
    Repudiation,
    InformationDisclosure,
    DenialOfService,
    ElevationOfPrivilege,
}

/// Payments through a provider's hosted checkout; the service never sees card data.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Payments {
    pub provider: Located<Provider>,
    pub checkout: Checkout,
    /// ISO 4217 currency codes accepted.
    pub currencies: Vec<Name>,
    /// VAT per country (ISO 3166 alpha-2).
    #[serde(default)]
    pub tax: IndexMap<Name, TaxRule>,
    #[serde(default)]
    pub refunds: Option<Refunds>,
    /// Who may respond to disputes.
    #[serde(default)]
    pub disputes: Option<PaymentAction>,
    #[serde(default)]
    pub webhooks: Option<Webhooks>,
}

/// Supported payment providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Stripe,
    Adyen,
    Mollie,
}

/// What is paid for, and how the customer pays.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkout {
    /// The resource being paid (e.g. `invoice`).
    pub resource: Name,
    /// Its `money` field holding the amount due.
    pub amount: Name,
    /// `redirect` or `hosted_fields`: the card form is the provider's, never ours.
    pub mode: Located<CheckoutMode>,
}

/// Checkout modes that keep card data off the service (PCI SAQ A).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutMode {
    Redirect,
    HostedFields,
}

/// A VAT rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxRule {
    /// Rate as a percentage, e.g. `19%` or `7.7%`.
    pub vat: Text,
    pub rounding: Located<Rounding>,
    /// Round each `line` or the whole `invoice`.
    pub per: Located<TaxPer>,
}

/// Rounding modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    HalfEven,
    HalfUp,
    Down,
}

/// Where tax is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxPer {
    Line,
    Invoice,
}

/// Refunds: requested by some roles, approved by others above a threshold (dual control).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refunds {
    pub request: PaymentAction,
    pub approve: PaymentAction,
    /// Per currency: refunds above this amount need a second, different, MFA-verified approver.
    #[serde(default)]
    pub dual_control_above: IndexMap<Name, Located<Scalar>>,
}

/// Who may do a payment action.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentAction {
    pub roles: Vec<Name>,
    pub scope: Name,
    #[serde(default)]
    pub mfa: Option<Located<Mfa>>,
}

/// Webhook verification.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhooks {
    /// How old a signed event may be, e.g. `300s`. Default `300s`.
    #[serde(default)]
    pub tolerance: Option<Text>,
}
