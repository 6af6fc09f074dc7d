//! The server's `audit` module: structured events of every mutation, every denial of an
//! authenticated caller, every role change and every revocation. It takes nothing from the
//! spec: what varies (operation ids, resource types) arrives as arguments.

use proc_macro2::TokenStream;
use quote::quote;

/// The `audit` module of the server crate.
pub fn audit_module() -> TokenStream {
    quote! {
        //! The audit trail. Tenant events go to `audit_events`, under the tenant's row-level
        //! security; events without a tenant (machine callers, operator commands, callers who
        //! are not members) to `system_audit_events`. Both tables are append-only.
        //!
        //! An event is written in the transaction of the change it records, so there is no
        //! change without its event and no event of a change rolled back, and it is logged
        //! (JSON, target `audit`) once that transaction commits. A denial rolls the change
        //! back first and is then written in a transaction of its own. Requests refused
        //! before authentication are only logged (by the guard): storing them would let
        //! anyone fill the database. For the same reason the refusals of a caller who is no
        //! member (the system trail) are stored up to [`STORED_REFUSALS`] a minute; beyond
        //! that they are logged, with `stored = false`. A member's refusals are all stored: a
        //! member is accountable, and an attempt to climb must be in the trail. An event that
        //! cannot be stored is logged whole, with `stored = false`.

        use crate::guard::Operation;
        use crate::tenant::{Principal, TenantId};
        use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
        use std::num::NonZeroU32;
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicUsize, Ordering};

        /// Refusals of a caller who is no member stored each minute (in bursts of as many).
        pub const STORED_REFUSALS: NonZeroU32 = NonZeroU32::MIN.saturating_add(59);

        /// Whether one more refusal of `actor`, no member, may be stored.
        fn may_store_refusal(actor: &str) -> bool {
            static BUDGETS: OnceLock<DefaultKeyedRateLimiter<String>> = OnceLock::new();
            static CHECKS: AtomicUsize = AtomicUsize::new(0);
            let budgets = BUDGETS.get_or_init(|| RateLimiter::keyed(Quota::per_minute(STORED_REFUSALS)));
            // Callers gone quiet are forgotten, now and then, once there are many.
            if budgets.len() > 10_000 && CHECKS.fetch_add(1, Ordering::Relaxed).is_multiple_of(1024) {
                budgets.retain_recent();
            }
            budgets.check_key(&actor.to_owned()).is_ok()
        }

        /// What came of a request.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Outcome {
            /// Done.
            Allowed,
            /// Refused by the policies, the scope or the membership.
            Denied,
            /// Refused until the caller shows a second factor.
            StepUp,
        }

        impl Outcome {
            /// The outcome as stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    Outcome::Allowed => "allowed",
                    Outcome::Denied => "denied",
                    Outcome::StepUp => "step_up",
                }
            }
        }

        /// One audit event.
        #[derive(Clone, Debug)]
        pub struct Event {
            /// The tenant it belongs to; `None` for the system trail.
            pub tenant: Option<TenantId>,
            /// Who acted: a token's subject, `machine:<client>` or `operator:<name>`.
            pub actor: String,
            /// The operation (`resource.action`) or command.
            pub action: String,
            /// The entity type acted on.
            pub resource_type: String,
            /// The entity acted on, when there is one.
            pub resource_id: Option<String>,
            /// The scope the operation needs.
            pub scope: Option<String>,
            /// What came of it.
            pub outcome: Outcome,
            /// The request's id (`x-request-id`), or the command's.
            pub request_id: String,
            /// Anything else worth keeping (never a secret: the trail is read by people).
            pub detail: serde_json::Value,
        }

        impl Event {
            /// An event of `principal` doing `operation` to a row of its tenant (`tenant_scoped`)
            /// or to a global row (the system trail).
            pub fn of(
                principal: &Principal,
                operation: &Operation,
                resource_type: &str,
                resource_id: Option<String>,
                outcome: Outcome,
                tenant_scoped: bool,
            ) -> Self {
                Event {
                    tenant: tenant_scoped.then_some(principal.tenant),
                    actor: principal.subject.clone(),
                    action: operation.id.to_owned(),
                    resource_type: resource_type.to_owned(),
                    resource_id,
                    scope: operation.scope.map(str::to_owned),
                    outcome,
                    request_id: principal.request_id.clone(),
                    detail: serde_json::Value::Object(serde_json::Map::new()),
                }
            }

            /// Adds details.
            pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
                self.detail = detail;
                self
            }

            /// Inserts the event on `conn`: inside the transaction of the change (a tenant's
            /// event needs a transaction scoped to that tenant).
            pub async fn write(&self, conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
                // The tenant's trail, or the system trail (which has no tenant column).
                let sql = match self.tenant {
                    Some(_) => "INSERT INTO \"audit_events\" (\"id\", \"actor\", \"action\", \"resource_type\", \"resource_id\", \"scope\", \"outcome\", \"request_id\", \"detail\", \"tenant_id\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)",
                    None => "INSERT INTO \"system_audit_events\" (\"id\", \"actor\", \"action\", \"resource_type\", \"resource_id\", \"scope\", \"outcome\", \"request_id\", \"detail\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
                };
                let mut query = sqlx::query(sql)
                    .bind(uuid::Uuid::now_v7())
                    .bind(&self.actor)
                    .bind(&self.action)
                    .bind(&self.resource_type)
                    .bind(&self.resource_id)
                    .bind(&self.scope)
                    .bind(self.outcome.as_str())
                    .bind(&self.request_id)
                    .bind(self.detail.to_string());
                if let Some(tenant) = self.tenant {
                    query = query.bind(tenant.id());
                }
                query.execute(&mut *conn).await?;
                Ok(())
            }

            /// Writes the event to the JSON log.
            pub fn log(&self) {
                self.log_stored(true);
            }

            /// Writes the event to the JSON log, saying whether it was stored too.
            fn log_stored(&self, stored: bool) {
                let tenant = self.tenant.map(|t| t.id().to_string());
                tracing::info!(
                    target: "audit",
                    stored,
                    tenant = tenant.as_deref(),
                    actor = self.actor.as_str(),
                    action = self.action.as_str(),
                    resource_type = self.resource_type.as_str(),
                    resource_id = self.resource_id.as_deref(),
                    scope = self.scope.as_deref(),
                    outcome = self.outcome.as_str(),
                    request_id = self.request_id.as_str(),
                    detail = %self.detail,
                    "audit event"
                );
            }

            /// Writes the event in a transaction of its own, then logs it: for a denial, whose
            /// change was rolled back. Past the budget of a caller who is no member, only logs
            /// it; so too when it cannot be stored (and says why).
            pub async fn record(&self, db: &sqlx::PgPool) -> Result<(), sqlx::Error> {
                if self.tenant.is_none() && !may_store_refusal(&self.actor) {
                    self.log_stored(false);
                    return Ok(());
                }
                let stored = async {
                    let mut tx = match self.tenant {
                        Some(tenant) => crate::tenant::begin(db, tenant).await?,
                        None => db.begin().await?,
                    };
                    self.write(&mut tx).await?;
                    tx.commit().await
                }
                .await;
                match stored {
                    Ok(()) => {
                        self.log();
                        Ok(())
                    }
                    Err(error) => {
                        self.log_stored(false);
                        Err(error)
                    }
                }
            }
        }

        /// Commits `tx` with `event` in it, then logs the event.
        pub async fn commit(
            mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
            event: &Event,
        ) -> Result<(), sqlx::Error> {
            event.write(&mut tx).await?;
            tx.commit().await?;
            event.log();
            Ok(())
        }
    }
}
