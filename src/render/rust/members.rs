//! The built-in routes (`App::builtin_operations`): a tenant's memberships and domains,
//! managed by the spec's `tenancy.admins`, and revoking sessions, by them or by a machine
//! caller. Their wire types live in the api crate's `memberships` module; the server's
//! `members` module serves them and holds the operator commands that create tenants and
//! grant roles locked in production.

use super::doc;
use crate::model::{App, BuiltinOperation};
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

/// The constant of a built-in operation (`membership.grant` → `MEMBERSHIP_GRANT_OP`).
pub fn operation_const(operation: &BuiltinOperation) -> Ident {
    format_ident!("{}_OP", operation.id.replace('.', "_").to_uppercase())
}

fn handler(operation: &BuiltinOperation) -> Ident {
    format_ident!("handle_{}", operation.id.replace('.', "_"))
}

/// The api crate's `memberships` module.
pub fn api_module() -> TokenStream {
    quote! {
        //! Wire types of the built-in routes: memberships and session revocation.

        use serde::{Deserialize, Serialize};

        /// A subject's membership of the caller's tenant.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct Membership {
            /// The member's `sub`.
            pub subject: String,
            /// Roles held in the tenant.
            pub roles: Vec<String>,
            /// When the membership was created.
            pub created_at: chrono::DateTime<chrono::Utc>,
        }

        /// The roles a member holds from now on.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct MembershipGrant {
            /// Every role the member holds afterwards (none: a member without roles).
            pub roles: Vec<String>,
        }

        /// One page of memberships, in subject order.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct MembershipPage {
            /// The memberships of this page.
            pub items: Vec<Membership>,
            /// Pass as `after` to get the next page; absent on the last page.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub next_after: Option<String>,
        }

        /// Query parameters of the membership list.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct MembershipQuery {
            /// Return memberships after this subject.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub after: Option<String>,
            /// At most this many (1 to 100, default 50).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub limit: Option<u32>,
        }

        /// A domain the tenant claims, and whether it is verified.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct Domain {
            /// The domain, lower-case.
            pub domain: String,
            /// What to publish at `proof_url` to prove the domain is the tenant's.
            pub token: String,
            /// Where the service looks for the token.
            pub proof_url: String,
            /// When the service found it; absent until then.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub verified_at: Option<chrono::DateTime<chrono::Utc>>,
        }

        /// A domain to claim.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct DomainClaim {
            /// The domain, e.g. `example.com`.
            pub domain: String,
        }

        /// The tenant's domains, in name order.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct DomainList {
            /// The domains.
            pub items: Vec<Domain>,
        }

        /// Why sessions are revoked.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum RevocationReason {
            /// A tenant admin ended them.
            Admin,
            /// The identity provider saw a password change.
            PasswordChange,
            /// The identity provider saw a risky device or session.
            DeviceRisk,
        }

        /// Ends a subject's sessions: tokens issued until now are refused.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct SessionRevocation {
            /// The subject (`sub`) whose sessions end.
            pub subject: String,
            /// Why (kept in the audit trail).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub reason: Option<RevocationReason>,
        }
    }
}

/// The server's `members` module, or `None` when the spec enables no built-in route.
pub fn server_module(app: &App, api: &Ident) -> Option<TokenStream> {
    let builtins = app.builtin_operations();
    if builtins.is_empty() {
        return None;
    }
    let roles: Vec<&str> = app.roles.iter().map(|r| r.name.as_str()).collect();
    let domains = builtins.iter().any(|b| b.entity == "Domain");
    let proof_path = format!(
        "/.well-known/{}-domain-verification",
        app.ident.replace('_', "-")
    );
    let domain_helpers = domains.then(|| domain_helpers(&proof_path, api));
    let environments: Vec<TokenStream> = app
        .environments
        .iter()
        .map(|env| {
            let name = &env.name;
            let roles = &env.roles;
            let locked = &env.locked_roles;
            quote!((#name, &[#(#roles),*], &[#(#locked),*]))
        })
        .collect();
    let mut consts = Vec::new();
    let mut registrations = Vec::new();
    let mut handlers = Vec::new();
    for operation in &builtins {
        let op = operation_const(operation);
        let (id, method, path) = (operation.id, operation.method, operation.path.as_str());
        let scope = match &operation.scope {
            Some(scope) => quote!(Some(#scope)),
            None => quote!(None),
        };
        let machine_scope = match &operation.machine_scope {
            Some(scope) => quote!(Some(#scope)),
            None => quote!(None),
        };
        let op_roles = &operation.roles;
        let mfa = app.builtin_needs_mfa(operation);
        let op_doc = doc(&format!("`{method} {path}`: {}", operation.summary));
        consts.push(quote! {
            #op_doc
            pub const #op: Operation = Operation {
                id: #id, method: #method, path: #path, scope: #scope,
                roles: &[#(#op_roles),*], public: false, mfa: #mfa, rate_limit: None,
                class: RouteClass::Sensitive, machine_scope: #machine_scope,
            };
        });
        let handler = handler(operation);
        registrations.push(quote!(.operation(&#op, #handler)));
        handlers.push(match operation.id {
            "membership.list" => list_handler(&op, api),
            "membership.grant" => grant_handler(&op, api),
            "membership.remove" => remove_handler(&op),
            "domain.list" => domain_list_handler(&op, api),
            "domain.add" => domain_add_handler(&op, api),
            "domain.verify" => domain_verify_handler(&op, api),
            "domain.remove" => domain_remove_handler(&op),
            _ => revoke_handler(&op, api),
        });
    }
    Some(quote! {
        //! The built-in routes: a tenant's memberships and, where the spec verifies domains,
        //! its domains (both managed by the spec's `tenancy.admins`), and revoking sessions
        //! (by them, or by a machine caller such as the identity provider's password-change
        //! and risk events). They are guarded and authorized by the policies like every
        //! other route.
        //!
        //! A role change ends the member's sessions in the tenant. Roles locked in the
        //! running environment are neither granted nor taken away here: only the operator
        //! command (`grant`) changes them, and it is audited.

        use crate::audit::{Event, Outcome};
        use crate::guard::{GuardedRouter, Operation, RouteClass};
        use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
        use crate::tenant::{Caller, Principal, TenantId};
        use crate::AppState;
        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::Json;

        /// Every role of the spec.
        pub const ROLES: &[&str] = &[#(#roles),*];

        /// The spec's environments: name, the roles that exist there, the roles locked there.
        pub const ENVIRONMENTS: &[(&str, &[&str], &[&str])] = &[#(#environments),*];

        #(#consts)*

        /// Registers the built-in routes.
        pub fn routes(router: GuardedRouter<AppState>) -> GuardedRouter<AppState> {
            router #(#registrations)*
        }

        /// The roles that exist in `environment`, and those locked there. An environment
        /// the spec does not name has every role, and every role locked anywhere is locked
        /// (fail closed).
        pub fn environment(environment: &str) -> (Vec<&'static str>, Vec<&'static str>) {
            if let Some((_, roles, locked)) = ENVIRONMENTS.iter().find(|(name, _, _)| *name == environment) {
                return (roles.to_vec(), locked.to_vec());
            }
            let mut locked: Vec<&'static str> = ENVIRONMENTS.iter().flat_map(|(_, _, locked)| locked.iter().copied()).collect();
            locked.sort_unstable();
            locked.dedup();
            (ROLES.to_vec(), locked)
        }

        /// The stored `roles` that exist in `environment`: a membership restored from another
        /// environment, or granted before the spec's templates changed, holds none it lacks.
        pub fn present(mut roles: Vec<String>, environment: &str) -> Vec<String> {
            let (available, _) = self::environment(environment);
            roles.retain(|role| available.contains(&role.as_str()));
            roles
        }

        /// The roles of a grant, sorted and without duplicates; 422 for a role the spec does
        /// not define or `environment` does not have.
        pub fn roles_for(requested: &[String], environment: &str) -> Result<Vec<String>, Box<Problem>> {
            let (available, _) = self::environment(environment);
            let mut roles = requested.to_vec();
            roles.sort_unstable();
            roles.dedup();
            for role in &roles {
                if !ROLES.contains(&role.as_str()) {
                    return Err(Box::new(Problem::unprocessable(format!("unknown role `{role}`"))));
                }
                if !available.contains(&role.as_str()) {
                    return Err(Box::new(Problem::unprocessable(format!("role `{role}` does not exist in {environment}"))));
                }
            }
            Ok(roles)
        }

        /// Whether going from `from` to `to` grants or takes away a role that needs a
        /// second factor while the caller's token shows none: changing who holds such a
        /// role takes as much proof as holding it (the answer is the step-up challenge).
        pub fn needs_second_factor(principal: &Principal, from: &[String], to: &[String]) -> bool {
            !principal.mfa && crate::identity::MFA_ROLES.iter().any(|role| changes(role, from, to))
        }

        /// Whether going from `from` to `to` grants or takes away `role`.
        fn changes(role: &str, from: &[String], to: &[String]) -> bool {
            from.iter().any(|r| r == role) != to.iter().any(|r| r == role)
        }

        /// Why a change that would leave no member able to manage memberships is refused.
        const LAST_ADMIN: &str = "no other member could manage memberships then: give another member that role first";

        /// Whether `member` going from `from` to `to` would leave the tenant without a member
        /// holding one of the `admins` roles that count in `environment` (its memberships
        /// then changed only by the operator). The other holders' rows are locked until the
        /// change commits, so two admins removing each other at once cannot both succeed.
        async fn leaves_no_admin(conn: &mut sqlx::PgConnection, tenant: TenantId, member: &str, from: &[String], to: &[String], admins: &[&str], environment: &str) -> Result<bool, sqlx::Error> {
            let admins = present(admins.iter().map(|role| (*role).to_owned()).collect(), environment);
            let holds = |roles: &[String]| roles.iter().any(|role| admins.contains(role));
            if !holds(from) || holds(to) {
                return Ok(false);
            }
            let others: Vec<(String,)> = sqlx::query_as("SELECT \"subject\" FROM \"memberships\" WHERE \"tenant_id\" = $1 AND \"subject\" <> $2 AND \"roles\" && $3 FOR UPDATE")
                .bind(tenant.id())
                .bind(member)
                .bind(&admins)
                .fetch_all(&mut *conn)
                .await?;
            Ok(others.is_empty())
        }

        /// Locked roles that going from `from` to `to` would grant or take away.
        pub fn locked_changes(from: &[String], to: &[String], environment: &str) -> Vec<String> {
            let (_, locked) = self::environment(environment);
            locked
                .into_iter()
                .filter(|role| changes(role, from, to))
                .map(str::to_owned)
                .collect()
        }

        /// A subject as a path segment: 1 to 255 characters, none of them control characters.
        fn subject(subject: &str) -> Result<(), Box<Problem>> {
            if subject.is_empty() || subject.chars().count() > 255 || subject.chars().any(char::is_control) {
                return Err(Box::new(Problem::unprocessable("a subject is 1 to 255 characters, without control characters")));
            }
            Ok(())
        }

        /// A membership of `tenant`, locked for the transaction when `lock`.
        async fn stored(conn: &mut sqlx::PgConnection, tenant: TenantId, subject: &str, lock: bool) -> Result<Option<#api::memberships::Membership>, sqlx::Error> {
            let sql = if lock {
                "SELECT \"subject\", \"roles\", \"created_at\" FROM \"memberships\" WHERE \"tenant_id\" = $1 AND \"subject\" = $2 FOR UPDATE"
            } else {
                "SELECT \"subject\", \"roles\", \"created_at\" FROM \"memberships\" WHERE \"tenant_id\" = $1 AND \"subject\" = $2"
            };
            let row: Option<(String, Vec<String>, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(sql)
                .bind(tenant.id())
                .bind(subject)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(row.map(|(subject, roles, created_at)| #api::memberships::Membership { subject, roles, created_at }))
        }

        /// Sets `subject`'s roles in `tenant`, adding the membership if needed; when the roles
        /// change, the member's sessions in the tenant end. A new membership ends them too: a
        /// member removed and added again must not get back tokens revoked before. Revocation
        /// times are `clock_timestamp()`, not the transaction's start: a token issued while
        /// the change waited for the row's lock is revoked too.
        async fn upsert(conn: &mut sqlx::PgConnection, tenant: TenantId, subject: &str, roles: &[String]) -> Result<#api::memberships::Membership, sqlx::Error> {
            let (subject, roles, created_at): (String, Vec<String>, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
                "INSERT INTO \"memberships\" AS m (\"tenant_id\", \"subject\", \"roles\", \"revoked_at\") VALUES ($1, $2, $3, clock_timestamp()) \
                 ON CONFLICT (\"tenant_id\", \"subject\") DO UPDATE SET \"roles\" = EXCLUDED.\"roles\", \
                 \"revoked_at\" = CASE WHEN m.\"roles\" IS DISTINCT FROM EXCLUDED.\"roles\" THEN clock_timestamp() ELSE m.\"revoked_at\" END \
                 RETURNING \"subject\", \"roles\", \"created_at\"",
            )
            .bind(tenant.id())
            .bind(subject)
            .bind(roles)
            .fetch_one(&mut *conn)
            .await?;
            Ok(#api::memberships::Membership { subject, roles, created_at })
        }

        /// Refuses, with the step-up challenge, a change of who holds a role that needs a
        /// second factor by a caller whose token shows none; recorded like every refusal.
        async fn refuse_unproven(state: &AppState, principal: &Principal, operation: &Operation, subject: &str) -> Problem {
            let event = Event::of(principal, operation, "Membership", Some(subject.to_owned()), Outcome::StepUp, true)
                .with_detail(serde_json::json!({ "reason": "second_factor" }));
            if let Err(error) = event.record(&state.db).await {
                tracing::error!(error = %error, "refusal not recorded");
            }
            Problem::step_up()
        }

        /// Refuses a change of locked roles, recording the refusal.
        async fn refuse_locked(state: &AppState, principal: &Principal, operation: &Operation, subject: &str, locked: &[String]) -> Problem {
            let environment = state.auth.environment.as_str();
            let event = Event::of(principal, operation, "Membership", Some(subject.to_owned()), Outcome::Denied, true)
                .with_detail(serde_json::json!({ "reason": "locked_role", "roles": locked, "environment": environment }));
            if let Err(error) = event.record(&state.db).await {
                tracing::error!(error = %error, "refusal not recorded");
            }
            Problem::forbidden().detail(format!(
                "role `{}` is locked in {environment}: only the operator command `grant` changes it",
                locked.join("`, `")
            ))
        }

        /// Refuses a change that would leave the tenant without a member able to manage its
        /// memberships (409), recorded like any other refusal.
        async fn refuse_last_admin(state: &AppState, principal: &Principal, operation: &Operation, subject: &str) -> Problem {
            let event = Event::of(principal, operation, "Membership", Some(subject.to_owned()), Outcome::Denied, true)
                .with_detail(serde_json::json!({ "reason": "leaves_no_admin" }));
            if let Err(error) = event.record(&state.db).await {
                tracing::error!(error = %error, "refusal not recorded");
            }
            Problem::conflict(LAST_ADMIN)
        }

        #(#handlers)*

        #domain_helpers

        /// Operator command: creates a tenant, audited in the system trail.
        pub async fn create_tenant(db: &sqlx::PgPool, name: &str, operator: &str) -> Result<TenantId, sqlx::Error> {
            let id = uuid::Uuid::now_v7();
            let mut tx = db.begin().await?;
            sqlx::query("INSERT INTO \"tenants\" (\"id\", \"name\") VALUES ($1, $2)")
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let event = operator_event(operator, "tenant.create", "Tenant", id.to_string(), serde_json::json!({ "name": name }));
            crate::audit::commit(tx, &event).await?;
            Ok(TenantId::system(id))
        }

        /// Operator command: sets `subject`'s roles in `tenant`, locked roles included (the
        /// only way to grant those), audited in the system trail.
        pub async fn grant(db: &sqlx::PgPool, environment: &str, tenant: TenantId, subject: &str, roles: &[String], operator: &str) -> Result<#api::memberships::Membership, String> {
            self::subject(subject).map_err(|p| p.detail.unwrap_or_default())?;
            let roles = roles_for(roles, environment).map_err(|p| p.detail.unwrap_or_default())?;
            let mut tx = crate::tenant::begin(db, tenant).await.map_err(|e| e.to_string())?;
            let from = stored(&mut tx, tenant, subject, true).await.map_err(|e| e.to_string())?.map(|m| m.roles).unwrap_or_default();
            let membership = upsert(&mut tx, tenant, subject, &roles).await.map_err(|e| match &e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => "no such tenant".to_owned(),
                _ => e.to_string(),
            })?;
            let event = operator_event(operator, "membership.grant", "Membership", subject.to_owned(), serde_json::json!({ "tenant": tenant.id().to_string(), "from": from, "to": roles, "environment": environment }));
            crate::audit::commit(tx, &event).await.map_err(|e| e.to_string())?;
            Ok(membership)
        }

        fn operator_event(operator: &str, action: &str, resource_type: &str, resource_id: String, detail: serde_json::Value) -> Event {
            Event {
                tenant: None,
                actor: format!("operator:{operator}"),
                action: action.to_owned(),
                resource_type: resource_type.to_owned(),
                resource_id: Some(resource_id),
                scope: None,
                outcome: Outcome::Allowed,
                request_id: uuid::Uuid::now_v7().to_string(),
                detail,
            }
        }
    })
}

fn list_handler(op: &Ident, api: &Ident) -> TokenStream {
    quote! {
        /// Handles the membership list: authorized once (the policies of built-in routes
        /// have no conditions on the row), then one keyset page in subject order.
        async fn handle_membership_list(State(state): State<AppState>, principal: Principal, ApiQuery(query): ApiQuery<#api::memberships::MembershipQuery>) -> Result<Json<#api::memberships::MembershipPage>, Problem> {
            if let Err(denial) = state.auth.check_membership(&principal, &#op, "*", &[]) {
                return Err(denial.record(&state.db).await);
            }
            let limit = i64::from(query.limit.unwrap_or(50).clamp(1, 100));
            let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
            let rows: Vec<(String, Vec<String>, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                "SELECT \"subject\", \"roles\", \"created_at\" FROM \"memberships\" WHERE \"tenant_id\" = $1 \
                 AND ($2::text IS NULL OR \"subject\" > $2) ORDER BY \"subject\" LIMIT $3",
            )
            .bind(principal.tenant.id())
            .bind(&query.after)
            .bind(limit + 1)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let more = rows.len() as i64 > limit;
            let items: Vec<#api::memberships::Membership> = rows
                .into_iter()
                .take(limit as usize)
                .map(|(subject, roles, created_at)| #api::memberships::Membership { subject, roles, created_at })
                .collect();
            let next_after = if more { items.last().map(|m| m.subject.clone()) } else { None };
            Ok(Json(#api::memberships::MembershipPage { items, next_after }))
        }
    }
}

fn grant_handler(op: &Ident, api: &Ident) -> TokenStream {
    quote! {
        /// Handles a grant: sets the member's roles (authorized on the membership as it
        /// would be written), refusing changes of locked roles.
        async fn handle_membership_grant(State(state): State<AppState>, principal: Principal, ApiPath(member): ApiPath<String>, ApiJson(grant): ApiJson<#api::memberships::MembershipGrant>) -> Result<Json<#api::memberships::Membership>, Problem> {
            subject(&member)?;
            let roles = roles_for(&grant.roles, &state.auth.environment)?;
            let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
            // The row locked below exists even for a new member: a placeholder this
            // transaction adds (gone if it rolls back), so a concurrent grant, the operator's
            // included, waits for this one instead of slipping past the locked-role check.
            sqlx::query("INSERT INTO \"memberships\" (\"tenant_id\", \"subject\", \"revoked_at\") VALUES ($1, $2, clock_timestamp()) ON CONFLICT DO NOTHING")
                .bind(principal.tenant.id())
                .bind(&member)
                .execute(&mut *tx)
                .await?;
            let from = stored(&mut tx, principal.tenant, &member, true).await?.map(|m| m.roles).unwrap_or_default();
            if let Err(denial) = state.auth.check_membership(&principal, &#op, &member, &roles) {
                tx.rollback().await?;
                return Err(denial.record(&state.db).await);
            }
            let locked = locked_changes(&from, &roles, &state.auth.environment);
            if !locked.is_empty() {
                tx.rollback().await?;
                return Err(refuse_locked(&state, &principal, &#op, &member, &locked).await);
            }
            if needs_second_factor(&principal, &from, &roles) {
                tx.rollback().await?;
                return Err(refuse_unproven(&state, &principal, &#op, &member).await);
            }
            if leaves_no_admin(&mut tx, principal.tenant, &member, &from, &roles, #op.roles, &state.auth.environment).await? {
                tx.rollback().await?;
                return Err(refuse_last_admin(&state, &principal, &#op, &member).await);
            }
            let membership = upsert(&mut tx, principal.tenant, &member, &roles).await?;
            let event = Event::of(&principal, &#op, "Membership", Some(member.clone()), Outcome::Allowed, true)
                .with_detail(serde_json::json!({ "from": from, "to": roles }));
            crate::audit::commit(tx, &event).await?;
            Ok(Json(membership))
        }
    }
}

fn remove_handler(op: &Ident) -> TokenStream {
    quote! {
        /// Handles removing a member (authorized on the membership as stored); a member
        /// holding a locked role is removed only by the operator.
        async fn handle_membership_remove(State(state): State<AppState>, principal: Principal, ApiPath(member): ApiPath<String>) -> Result<StatusCode, Problem> {
            subject(&member)?;
            let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
            // (A caller without an admin role was refused by the guard: a 404 tells nobody
            // else who is a member.)
            let stored = stored(&mut tx, principal.tenant, &member, true).await?.ok_or_else(Problem::not_found)?;
            if let Err(denial) = state.auth.check_membership(&principal, &#op, &member, &stored.roles) {
                tx.rollback().await?;
                return Err(denial.record(&state.db).await);
            }
            let locked = locked_changes(&stored.roles, &[], &state.auth.environment);
            if !locked.is_empty() {
                tx.rollback().await?;
                return Err(refuse_locked(&state, &principal, &#op, &member, &locked).await);
            }
            if needs_second_factor(&principal, &stored.roles, &[]) {
                tx.rollback().await?;
                return Err(refuse_unproven(&state, &principal, &#op, &member).await);
            }
            if leaves_no_admin(&mut tx, principal.tenant, &member, &stored.roles, &[], #op.roles, &state.auth.environment).await? {
                tx.rollback().await?;
                return Err(refuse_last_admin(&state, &principal, &#op, &member).await);
            }
            sqlx::query("DELETE FROM \"memberships\" WHERE \"tenant_id\" = $1 AND \"subject\" = $2")
                .bind(principal.tenant.id())
                .bind(&member)
                .execute(&mut *tx)
                .await?;
            let event = Event::of(&principal, &#op, "Membership", Some(member.clone()), Outcome::Allowed, true)
                .with_detail(serde_json::json!({ "from": stored.roles }));
            crate::audit::commit(tx, &event).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

fn revoke_handler(op: &Ident, api: &Ident) -> TokenStream {
    quote! {
        /// Handles revoking sessions. A tenant admin ends a member's sessions in the tenant,
        /// a machine caller (the identity provider) a subject's sessions everywhere.
        async fn handle_session_revoke(State(state): State<AppState>, caller: Caller, ApiJson(revoke): ApiJson<#api::memberships::SessionRevocation>) -> Result<StatusCode, Problem> {
            subject(&revoke.subject)?;
            let reason = serde_json::json!({ "reason": revoke.reason.unwrap_or(#api::memberships::RevocationReason::Admin) });
            match caller {
                Caller::Member(principal) => {
                    let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
                    let stored = stored(&mut tx, principal.tenant, &revoke.subject, true).await?.ok_or_else(Problem::not_found)?;
                    if let Err(denial) = state.auth.check_membership(&principal, &#op, &revoke.subject, &stored.roles) {
                        tx.rollback().await?;
                        return Err(denial.record(&state.db).await);
                    }
                    sqlx::query("UPDATE \"memberships\" SET \"revoked_at\" = clock_timestamp() WHERE \"tenant_id\" = $1 AND \"subject\" = $2")
                        .bind(principal.tenant.id())
                        .bind(&revoke.subject)
                        .execute(&mut *tx)
                        .await?;
                    let event = Event::of(&principal, &#op, "Membership", Some(revoke.subject.clone()), Outcome::Allowed, true).with_detail(reason);
                    crate::audit::commit(tx, &event).await?;
                }
                Caller::Machine(machine) => {
                    if let Err(denial) = state.auth.check_machine(&machine, &#op, &revoke.subject) {
                        return Err(denial.record(&state.db).await);
                    }
                    let mut tx = state.db.begin().await?;
                    sqlx::query(
                        "INSERT INTO \"session_revocations\" (\"subject\", \"revoked_at\") VALUES ($1, clock_timestamp()) \
                         ON CONFLICT (\"subject\") DO UPDATE SET \"revoked_at\" = clock_timestamp()",
                    )
                    .bind(&revoke.subject)
                    .execute(&mut *tx)
                    .await?;
                    let event = machine.event(&#op, Some(revoke.subject.clone()), Outcome::Allowed).with_detail(reason);
                    crate::audit::commit(tx, &event).await?;
                }
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// What the domain handlers share: the proof path, name checks, reading a stored domain.
fn domain_helpers(proof_path: &str, api: &Ident) -> TokenStream {
    quote! {
        /// Where a domain publishes its proof: `https://<domain>` and this path.
        pub const DOMAIN_PROOF_PATH: &str = #proof_path;

        /// A domain name as stored: lower-case labels of letters, digits and hyphens, at
        /// least two, none longer than 63, not an IP address; 422 otherwise.
        pub fn domain_name(domain: &str) -> Result<String, Box<Problem>> {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            let labels: Vec<&str> = domain.split('.').collect();
            let valid = domain.len() <= 253
                && labels.len() >= 2
                && labels.iter().all(|l| {
                    !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-')
                        && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                })
                && !labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                return Err(Box::new(Problem::unprocessable("not a domain name")));
            }
            Ok(domain)
        }

        /// A random proof token: 32 bytes from the system's generator, hex.
        fn proof_token() -> Result<String, Box<Problem>> {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Box::new(Problem::internal(&"no randomness")))?;
            Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
        }

        /// A domain of `tenant`, as the API shows it.
        async fn stored_domain(conn: &mut sqlx::PgConnection, tenant: TenantId, domain: &str) -> Result<Option<#api::memberships::Domain>, sqlx::Error> {
            let row: Option<(String, String, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
                "SELECT \"domain\", \"token\", \"verified_at\" FROM \"tenant_domains\" WHERE \"tenant_id\" = $1 AND \"domain\" = $2",
            )
            .bind(tenant.id())
            .bind(domain)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(row.map(|(domain, token, verified_at)| shown(domain, token, verified_at)))
        }

        fn shown(domain: String, token: String, verified_at: Option<chrono::DateTime<chrono::Utc>>) -> #api::memberships::Domain {
            let proof_url = format!("https://{domain}{DOMAIN_PROOF_PATH}");
            #api::memberships::Domain { domain, token, proof_url, verified_at }
        }
    }
}

fn domain_list_handler(op: &Ident, api: &Ident) -> TokenStream {
    quote! {
        /// Handles the domain list.
        async fn handle_domain_list(State(state): State<AppState>, principal: Principal) -> Result<Json<#api::memberships::DomainList>, Problem> {
            if let Err(denial) = state.auth.check_domain(&principal, &#op, "*") {
                return Err(denial.record(&state.db).await);
            }
            let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
            let rows: Vec<(String, String, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
                "SELECT \"domain\", \"token\", \"verified_at\" FROM \"tenant_domains\" WHERE \"tenant_id\" = $1 ORDER BY \"domain\" LIMIT 1000",
            )
            .bind(principal.tenant.id())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let items = rows.into_iter().map(|(domain, token, verified_at)| shown(domain, token, verified_at)).collect();
            Ok(Json(#api::memberships::DomainList { items }))
        }
    }
}

fn domain_add_handler(op: &Ident, api: &Ident) -> TokenStream {
    quote! {
        /// Handles claiming a domain: answers the token to publish.
        async fn handle_domain_add(State(state): State<AppState>, principal: Principal, ApiJson(claim): ApiJson<#api::memberships::DomainClaim>) -> Result<(StatusCode, Json<#api::memberships::Domain>), Problem> {
            let domain = domain_name(&claim.domain)?;
            if let Err(denial) = state.auth.check_domain(&principal, &#op, &domain) {
                return Err(denial.record(&state.db).await);
            }
            let token = proof_token()?;
            let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
            let added = sqlx::query(
                "INSERT INTO \"tenant_domains\" (\"tenant_id\", \"domain\", \"token\") VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(principal.tenant.id())
            .bind(&domain)
            .bind(&token)
            .execute(&mut *tx)
            .await?;
            if added.rows_affected() == 0 {
                return Err(Problem::conflict("the tenant already claims this domain"));
            }
            let event = Event::of(&principal, &#op, "Domain", Some(domain.clone()), Outcome::Allowed, true);
            crate::audit::commit(tx, &event).await?;
            Ok((StatusCode::CREATED, Json(shown(domain, token, None))))
        }
    }
}

fn domain_verify_handler(op: &Ident, api: &Ident) -> TokenStream {
    quote! {
        /// Handles verifying a domain: fetches the proof over HTTPS (public addresses only,
        /// certificate verified; no transaction is open meanwhile) and marks the domain
        /// verified when the token is one of its lines.
        async fn handle_domain_verify(State(state): State<AppState>, principal: Principal, ApiPath(domain): ApiPath<String>) -> Result<Json<#api::memberships::Domain>, Problem> {
            let domain = domain_name(&domain)?;
            if let Err(denial) = state.auth.check_domain(&principal, &#op, &domain) {
                return Err(denial.record(&state.db).await);
            }
            let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
            let stored = stored_domain(&mut tx, principal.tenant, &domain).await?.ok_or_else(Problem::not_found)?;
            tx.commit().await?;
            if stored.verified_at.is_some() {
                return Ok(Json(stored));
            }
            let published = state.auth.fetcher.get_text(&stored.proof_url).await;
            let found = published.as_ref().is_ok_and(|text| text.lines().any(|line| line.trim() == stored.token));
            if !found {
                let why = published.err().unwrap_or_else(|| "the token is not in it".to_owned());
                let event = Event::of(&principal, &#op, "Domain", Some(domain.clone()), Outcome::Denied, true)
                    .with_detail(serde_json::json!({ "reason": "proof_not_found", "url": stored.proof_url, "error": why }));
                if let Err(error) = event.record(&state.db).await {
                    tracing::error!(error = %error, "refusal not recorded");
                }
                // Why stays in the trail and the log: the answer would tell a tenant admin how
                // the server's own resolver sees names (which resolve to private addresses).
                return Err(Problem::unprocessable(format!("the token was not found at {}: the page could not be fetched over HTTPS from a public address, or does not hold it (the audit trail keeps which)", stored.proof_url)));
            }
            let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
            let verified: Option<(Option<chrono::DateTime<chrono::Utc>>,)> = sqlx::query_as(
                "UPDATE \"tenant_domains\" SET \"verified_at\" = now() WHERE \"tenant_id\" = $1 AND \"domain\" = $2 AND \"token\" = $3 RETURNING \"verified_at\"",
            )
            .bind(principal.tenant.id())
            .bind(&domain)
            .bind(&stored.token)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((verified_at,)) = verified else { return Err(Problem::not_found()) };
            let event = Event::of(&principal, &#op, "Domain", Some(domain.clone()), Outcome::Allowed, true);
            crate::audit::commit(tx, &event).await?;
            Ok(Json(shown(domain, stored.token, verified_at)))
        }
    }
}

fn domain_remove_handler(op: &Ident) -> TokenStream {
    quote! {
        /// Handles giving up a domain.
        async fn handle_domain_remove(State(state): State<AppState>, principal: Principal, ApiPath(domain): ApiPath<String>) -> Result<StatusCode, Problem> {
            let domain = domain_name(&domain)?;
            if let Err(denial) = state.auth.check_domain(&principal, &#op, &domain) {
                return Err(denial.record(&state.db).await);
            }
            let mut tx = crate::tenant::begin(&state.db, principal.tenant).await?;
            let removed = sqlx::query("DELETE FROM \"tenant_domains\" WHERE \"tenant_id\" = $1 AND \"domain\" = $2")
                .bind(principal.tenant.id())
                .bind(&domain)
                .execute(&mut *tx)
                .await?;
            if removed.rows_affected() == 0 {
                return Err(Problem::not_found());
            }
            let event = Event::of(&principal, &#op, "Domain", Some(domain.clone()), Outcome::Allowed, true);
            crate::audit::commit(tx, &event).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}
