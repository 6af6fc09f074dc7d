//! The server's `store` module: the data layer and the handlers every resource shares. A
//! resource module (`server::resource_module`) says only what differs, by implementing
//! `Stored` (its statements, how its input binds, how a row becomes its API type) and
//! `Change` for each custom action, so the code that reads, authorizes, writes and audits
//! is generated once per service and reviewed once, not once per resource. It takes
//! nothing from the spec but the API crate's name.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

/// The `store` module of the server crate.
pub fn store_module(api: &Ident) -> TokenStream {
    quote! {
        //! What every resource's rows share: the data layer (statements on a connection the
        //! caller holds, so a handler can read, authorize and write in one transaction) and the
        //! handlers of their operations. Each resource module says what differs by implementing
        //! [`Stored`] (its statements, how its input binds, how a row becomes its API type) and
        //! [`Change`] for each custom action.
        //!
        //! The handlers of a caller's request (all but public reads and lists, which have no
        //! caller) authorize against the operation its guard checked ([`Current`]), once
        //! they know it is the one they perform ([`performed`]): create on
        //! the row as written, update on the row as stored and as written, delete on the row
        //! its statement removed, the others on the row as stored; a row to be changed is
        //! locked from its check to the write (a deleted one by its delete). A denial rolls the
        //! transaction back before its audit event is written; a change commits with its
        //! event, and the uniqueness rules and references the migrations defer are checked
        //! then, after the decision.

        use crate::audit::{Event, Outcome};
        use crate::authz::Attributes;
        use crate::guard::Current;
        use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
        use crate::tenant::{Principal, TenantId};
        use crate::AppState;
        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::Json;
        use #api::{FieldError, ListQuery, Page};
        use std::future::Future;

        /// A statement whose rows come back as `R`.
        pub type Query<'q, R> = sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments>;

        /// A transaction of the pool.
        pub type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

        /// Whose rows a table holds: one tenant's ([`TenantId`]) or every tenant's
        /// ([`Global`]). Its key is the first parameter of every statement of the table.
        pub trait Tenancy: Copy + Send + Sync + 'static {
            /// Whether the rows are a tenant's (their audit events go to the tenant's trail).
            const TENANT: bool;
            /// The tenancy a caller acts in.
            fn of(principal: &Principal) -> Self;
            /// Binds the key (a tenant's id; nothing for global rows).
            fn bind<'q, R>(self, query: Query<'q, R>) -> Query<'q, R>;
            /// A transaction in this tenancy: a tenant's sets the tenant for row-level security.
            fn begin(self, db: &sqlx::PgPool) -> impl Future<Output = Result<Tx, sqlx::Error>> + Send;
        }

        impl Tenancy for TenantId {
            const TENANT: bool = true;

            fn of(principal: &Principal) -> Self {
                principal.tenant
            }

            fn bind<'q, R>(self, query: Query<'q, R>) -> Query<'q, R> {
                query.bind(self.id())
            }

            fn begin(self, db: &sqlx::PgPool) -> impl Future<Output = Result<Tx, sqlx::Error>> + Send {
                crate::tenant::begin(db, self)
            }
        }

        /// The tenancy of global rows, shared by every tenant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct Global;

        impl Tenancy for Global {
            const TENANT: bool = false;

            fn of(_: &Principal) -> Self {
                Global
            }

            fn bind<'q, R>(self, query: Query<'q, R>) -> Query<'q, R> {
                query
            }

            fn begin(self, db: &sqlx::PgPool) -> impl Future<Output = Result<Tx, sqlx::Error>> + Send {
                db.begin()
            }
        }

        /// A resource's API type, stored in its table. Every statement's first parameter is
        /// the tenancy's key (none for global rows); `$n` below counts from after it.
        pub trait Stored: serde::Serialize + Sized + Send + Sync + Unpin + 'static {
            /// The row as its statements return it.
            type Row: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin;
            /// The body of a create or update.
            type Input: serde::de::DeserializeOwned + Send + Sync + 'static;
            /// Whose rows these are.
            type Tenancy: Tenancy;
            /// Its name in the spec: what its operations' ids start with (`invoice.read`).
            const RESOURCE: &'static str;
            /// Its entity type in the policies.
            const ENTITY: &'static str;
            /// Its read operation, when reading a row is not public: a list shows only rows
            /// this would allow.
            const READ_OPERATION: Option<&'static crate::guard::Operation>;
            /// Inserts a row: `$1` the new id, then the input's columns.
            const INSERT: &'static str;
            /// Reads the row `$1`.
            const SELECT: &'static str;
            /// Reads the row `$1` and locks it for the rest of the transaction.
            const SELECT_LOCKED: &'static str;
            /// Reads the row `$1` in one statement outside any transaction (a tenant's table
            /// through its read function, which sets the tenant for that statement only).
            const READ: &'static str;
            /// Replaces the input's columns of the row `$1`.
            const UPDATE: &'static str;
            /// Deletes the row `$1`, returning it.
            const DELETE: &'static str;
            /// Rows after `$1` (none: from the first) in id order, at most `$2`.
            const LIST: &'static str;
            /// The same in one statement outside any transaction (a tenant's table through its
            /// list function).
            const LIST_ALONE: &'static str;

            /// Its id.
            fn id(&self) -> uuid::Uuid;
            /// A stored row as the API type; an error if a stored value is not a valid one.
            fn from_row(row: Self::Row) -> Result<Self, sqlx::Error>;
            /// Checks the input against the field constraints of the spec.
            fn validate(input: &Self::Input) -> Result<(), Vec<FieldError>>;
            /// Holds the fields only custom actions change: a create (`stored` none) must
            /// leave them at their default, an update must keep them as `stored` (one it
            /// leaves out keeps its stored value). The fields sent otherwise, else nothing.
            fn hold(input: &mut Self::Input, stored: Option<&Self>) -> Result<(), Vec<FieldError>> {
                let _ = (input, stored);
                Ok(())
            }
            /// Binds the input's columns, in the order of [`Self::UPDATE`].
            fn bind_input<'q>(query: Query<'q, Self::Row>, input: &'q Self::Input) -> Query<'q, Self::Row>;
            /// Binds the columns of [`Self::INSERT`]: the input's, and `subject` (the caller)
            /// in the fields that record who made the row.
            fn bind_insert<'q>(query: Query<'q, Self::Row>, subject: &'q str, input: &'q Self::Input) -> Query<'q, Self::Row> {
                let _ = subject;
                Self::bind_input(query, input)
            }
        }

        /// A custom action: an update of fixed fields of one row.
        pub trait Change: 'static {
            /// The resource it changes.
            type Of: Stored + Attributes;
            /// Its name in the spec: what its operation's id ends with (`invoice.void`).
            const ACTION: &'static str;
            /// Sets the fields of the row `$1`, returning it.
            const SQL: &'static str;
            /// Binds the values it sets.
            fn bind(query: Query<'_, <Self::Of as Stored>::Row>) -> Query<'_, <Self::Of as Stored>::Row>;
        }

        /// A stored enum value that is not one of its values (the table's check forbids it).
        pub fn bad_value(field: &str) -> sqlx::Error {
            sqlx::Error::Decode(format!("stored value of `{field}` is not one of its enum values").into())
        }

        /// Inserts a row made by `subject`.
        pub async fn insert<T: Stored>(conn: &mut sqlx::PgConnection, tenancy: T::Tenancy, subject: &str, input: &T::Input) -> Result<T, sqlx::Error> {
            let query = tenancy.bind(sqlx::query_as(T::INSERT)).bind(uuid::Uuid::now_v7());
            let row = T::bind_insert(query, subject, input).fetch_one(&mut *conn).await?;
            T::from_row(row)
        }

        /// Reads one row, locked for the rest of the transaction when `lock`; `None` when it
        /// does not exist in this tenancy.
        pub async fn fetch<T: Stored>(conn: &mut sqlx::PgConnection, tenancy: T::Tenancy, id: uuid::Uuid, lock: bool) -> Result<Option<T>, sqlx::Error> {
            let sql = if lock { T::SELECT_LOCKED } else { T::SELECT };
            let row = tenancy.bind(sqlx::query_as(sql)).bind(id).fetch_optional(&mut *conn).await?;
            row.map(T::from_row).transpose()
        }

        /// Reads one row in one statement, outside any transaction.
        pub async fn fetch_alone<T: Stored>(db: &sqlx::PgPool, tenancy: T::Tenancy, id: uuid::Uuid) -> Result<Option<T>, sqlx::Error> {
            let row = tenancy.bind(sqlx::query_as(T::READ)).bind(id).fetch_optional(db).await?;
            row.map(T::from_row).transpose()
        }

        /// Replaces the fields of one row; `None` when it does not exist in this tenancy.
        pub async fn update<T: Stored>(conn: &mut sqlx::PgConnection, tenancy: T::Tenancy, id: uuid::Uuid, input: &T::Input) -> Result<Option<T>, sqlx::Error> {
            let query = tenancy.bind(sqlx::query_as(T::UPDATE)).bind(id);
            let row = T::bind_input(query, input).fetch_optional(&mut *conn).await?;
            row.map(T::from_row).transpose()
        }

        /// Applies the custom action `C`; `None` when the row does not exist in this tenancy.
        pub async fn apply<C: Change>(conn: &mut sqlx::PgConnection, tenancy: <C::Of as Stored>::Tenancy, id: uuid::Uuid) -> Result<Option<C::Of>, sqlx::Error> {
            let query = tenancy.bind(sqlx::query_as(C::SQL)).bind(id);
            let row = C::bind(query).fetch_optional(&mut *conn).await?;
            row.map(<C::Of as Stored>::from_row).transpose()
        }

        /// Deletes one row: the row as it was; `None` when it does not exist in this tenancy.
        pub async fn delete<T: Stored>(conn: &mut sqlx::PgConnection, tenancy: T::Tenancy, id: uuid::Uuid) -> Result<Option<T>, sqlx::Error> {
            let row = tenancy.bind(sqlx::query_as(T::DELETE)).bind(id).fetch_optional(&mut *conn).await?;
            row.map(T::from_row).transpose()
        }

        /// One page of rows in id order, after `after`, at most `limit` (1 to 100).
        pub async fn list<T: Stored>(conn: &mut sqlx::PgConnection, tenancy: T::Tenancy, after: Option<uuid::Uuid>, limit: u32) -> Result<Page<T>, sqlx::Error> {
            let limit = limit.clamp(1, 100) as usize;
            let rows = tenancy.bind(sqlx::query_as(T::LIST)).bind(after).bind(limit as i64 + 1).fetch_all(&mut *conn).await?;
            page(rows, limit)
        }

        /// The same page in one statement, outside any transaction.
        pub async fn list_alone<T: Stored>(db: &sqlx::PgPool, tenancy: T::Tenancy, after: Option<uuid::Uuid>, limit: u32) -> Result<Page<T>, sqlx::Error> {
            let limit = limit.clamp(1, 100) as usize;
            let rows = tenancy.bind(sqlx::query_as(T::LIST_ALONE)).bind(after).bind(limit as i64 + 1).fetch_all(db).await?;
            page(rows, limit)
        }

        /// The first `limit` of `rows` (one more was asked for, to know whether another page
        /// follows).
        fn page<T: Stored>(rows: Vec<T::Row>, limit: usize) -> Result<Page<T>, sqlx::Error> {
            let more = rows.len() > limit;
            let items = rows.into_iter().take(limit).map(T::from_row).collect::<Result<Vec<T>, _>>()?;
            let next_after = if more { items.last().map(T::id) } else { None };
            Ok(Page { items, next_after })
        }

        /// Authorizes `row` for the operation `op` in the handler's transaction `tx`: a denial
        /// rolls it back, then writes its audit event.
        async fn check<T: Stored + Attributes>(state: &AppState, tx: Tx, principal: &Principal, op: &'static crate::guard::Operation, row: &T) -> Result<Tx, Problem> {
            match state.auth.check(principal, op, T::ENTITY, row.id(), row) {
                Ok(()) => Ok(tx),
                Err(denial) => {
                    tx.rollback().await?;
                    Err(denial.record(&state.db).await)
                }
            }
        }

        /// Opens the caller's transaction and reads the row `id` locked for it, authorized for
        /// `op` as stored: the transaction, the tenancy and the row.
        async fn locked<T: Stored + Attributes>(state: &AppState, principal: &Principal, op: &'static crate::guard::Operation, id: uuid::Uuid) -> Result<(Tx, T::Tenancy, T), Problem> {
            let tenancy = T::Tenancy::of(principal);
            let mut tx = tenancy.begin(&state.db).await?;
            let stored = fetch::<T>(&mut tx, tenancy, id, true).await?.ok_or_else(Problem::not_found)?;
            let tx = check(state, tx, principal, op, &stored).await?;
            Ok((tx, tenancy, stored))
        }

        /// Commits a change of `row` with its audit event; a unique value taken or a reference
        /// gone fails here, when the deferred constraints are checked (409 or 422).
        async fn commit<T: Stored>(tx: Tx, principal: &Principal, op: &'static crate::guard::Operation, row: &T) -> Result<(), sqlx::Error> {
            let event = Event::of(principal, op, T::ENTITY, Some(row.id().to_string()), Outcome::Allowed, <T::Tenancy as Tenancy>::TENANT);
            crate::audit::commit(tx, &event).await
        }

        /// A delete's failure: a reference (23503) reported on a table other than the audit
        /// trail's is other rows still referring to the row, 409, whatever language the
        /// server's messages are in (the trail's own reference to its tenant is not).
        fn delete_failed(error: sqlx::Error) -> Problem {
            let referred = error.as_database_error().is_some_and(|e| {
                e.code().is_some_and(|code| code == "23503")
                    && !matches!(e.table(), Some("audit_events" | "system_audit_events"))
            });
            if referred {
                Problem::conflict("other rows still refer to this one")
            } else {
                error.into()
            }
        }

        /// The operation its guard checked, if it is `T`'s `action`, the one the handler
        /// performs; public handlers ask for a public operation. A handler registered under
        /// another operation's route (a delete under a read's, whose roles are wider; a
        /// public read under a guarded one) would act with that operation's permission: it
        /// answers 500 instead, having done nothing.
        pub fn performed<T: Stored>(Current(op): Current, action: &'static str, public: bool) -> Result<&'static crate::guard::Operation, Misrouted> {
            let id = op.id.strip_prefix(T::RESOURCE).and_then(|rest| rest.strip_prefix('.'));
            if op.public == public && id == Some(action) {
                Ok(op)
            } else {
                Err(Misrouted { route: op.id, resource: T::RESOURCE, action })
            }
        }

        /// A handler reached under another operation's route (see [`performed`]).
        #[derive(Debug)]
        pub struct Misrouted {
            route: &'static str,
            resource: &'static str,
            action: &'static str,
        }

        impl From<Misrouted> for Problem {
            fn from(misrouted: Misrouted) -> Problem {
                let Misrouted { route, resource, action } = misrouted;
                Problem::internal(&format_args!("the route of `{route}` reached the handler of `{resource}.{action}`"))
            }
        }

        /// Creates a row, authorized on the row as written (a refusal rolls the insert back).
        /// Its unique values and references are checked at commit, after the decision (the
        /// migrations defer those constraints): a caller refused the row is never told that
        /// another row holds one of its values.
        pub async fn handle_create<T: Stored + Attributes>(State(state): State<AppState>, current: Current, principal: Principal, ApiJson(mut input): ApiJson<T::Input>) -> Result<(StatusCode, Json<T>), Problem> {
            let op = performed::<T>(current, "create", false)?;
            T::validate(&input).map_err(Problem::validation)?;
            T::hold(&mut input, None).map_err(Problem::validation)?;
            let tenancy = T::Tenancy::of(&principal);
            let mut tx = tenancy.begin(&state.db).await?;
            let created = insert::<T>(&mut tx, tenancy, &principal.subject, &input).await?;
            let tx = check(&state, tx, &principal, op, &created).await?;
            commit(tx, &principal, op, &created).await?;
            Ok((StatusCode::CREATED, Json(created)))
        }

        /// Reads a row in one statement (nothing to roll back on a denial).
        pub async fn handle_read<T: Stored + Attributes>(State(state): State<AppState>, current: Current, principal: Principal, ApiPath(id): ApiPath<uuid::Uuid>) -> Result<Json<T>, Problem> {
            let op = performed::<T>(current, "read", false)?;
            let row = fetch_alone::<T>(&state.db, T::Tenancy::of(&principal), id).await?.ok_or_else(Problem::not_found)?;
            if let Err(denial) = state.auth.check(&principal, op, T::ENTITY, row.id(), &row) {
                return Err(denial.record(&state.db).await);
            }
            Ok(Json(row))
        }

        /// Reads a global row for anyone (a public operation).
        pub async fn handle_public_read<T: Stored<Tenancy = Global>>(State(state): State<AppState>, current: Current, ApiPath(id): ApiPath<uuid::Uuid>) -> Result<Json<T>, Problem> {
            performed::<T>(current, "read", true)?;
            fetch_alone::<T>(&state.db, Global, id).await?.map(Json).ok_or_else(Problem::not_found)
        }

        /// At most this many rows are read for one list request. When most rows are ones the
        /// caller may not see, the page comes back short (even empty) with `next_after` where
        /// reading stopped: no request costs more than this, and none skips a row.
        pub const LIST_SCAN_LIMIT: usize = 1000;

        /// Reads rows in id order after `after`, keeping those `visible` allows, until `limit`
        /// are kept or `max_scanned` are read: the page, with where to go on unless the last
        /// row was read. One statement per hundred rows, no transaction.
        pub async fn scan<T: Stored>(db: &sqlx::PgPool, tenancy: T::Tenancy, after: Option<uuid::Uuid>, limit: usize, max_scanned: usize, visible: impl Fn(&T) -> bool) -> Result<Page<T>, sqlx::Error> {
            let (mut items, mut after, mut scanned) = (Vec::new(), after, 0);
            loop {
                let batch = max_scanned.saturating_sub(scanned).clamp(1, 100) as u32;
                let page = list_alone::<T>(db, tenancy, after, batch).await?;
                let more = page.next_after.is_some();
                let count = page.items.len();
                for (index, row) in page.items.into_iter().enumerate() {
                    after = Some(row.id());
                    scanned += 1;
                    if visible(&row) {
                        items.push(row);
                        if items.len() == limit {
                            let next_after = if more || index + 1 < count { after } else { None };
                            return Ok(Page { items, next_after });
                        }
                    }
                }
                if !more {
                    return Ok(Page { items, next_after: None });
                }
                if scanned >= max_scanned {
                    return Ok(Page { items, next_after: after });
                }
            }
        }

        /// Lists rows (a caller without a role the list allows was refused by the guard):
        /// every row is authorized, for the list and as a read of it would be, so
        /// a page never holds a row a read would deny and never skips one both allow (see
        /// [`scan`] and [`LIST_SCAN_LIMIT`]).
        pub async fn handle_list<T: Stored + Attributes>(State(state): State<AppState>, current: Current, principal: Principal, ApiQuery(query): ApiQuery<ListQuery>) -> Result<Json<Page<T>>, Problem> {
            let op = performed::<T>(current, "list", false)?;
            let limit = query.limit.unwrap_or(50).clamp(1, 100) as usize;
            let visible = |row: &T| {
                state.auth.allows(&principal, op, T::ENTITY, row.id(), row)
                    && T::READ_OPERATION.is_none_or(|read| state.auth.allows(&principal, read, T::ENTITY, row.id(), row))
            };
            let page = scan::<T>(&state.db, T::Tenancy::of(&principal), query.after, limit, LIST_SCAN_LIMIT, visible).await?;
            Ok(Json(page))
        }

        /// Lists global rows for anyone (a public operation).
        pub async fn handle_public_list<T: Stored<Tenancy = Global>>(State(state): State<AppState>, current: Current, ApiQuery(query): ApiQuery<ListQuery>) -> Result<Json<Page<T>>, Problem> {
            performed::<T>(current, "list", true)?;
            Ok(Json(list_alone::<T>(&state.db, Global, query.after, query.limit.unwrap_or(50)).await?))
        }

        /// Replaces a row's fields.
        pub async fn handle_update<T: Stored + Attributes>(State(state): State<AppState>, current: Current, principal: Principal, ApiPath(id): ApiPath<uuid::Uuid>, ApiJson(input): ApiJson<T::Input>) -> Result<Json<T>, Problem> {
            performed::<T>(current, "update", false)?;
            T::validate(&input).map_err(Problem::validation)?;
            replace::<T>(&state, current, &principal, id, |stored| {
                let mut input = input;
                T::hold(&mut input, Some(stored)).map(|()| input)
            })
            .await
            .map(Json)
        }

        /// Replaces a row's fields with the input `input` makes from the row as stored (or the
        /// fields it finds invalid): authorized on the row as stored and as it would be
        /// written, locked in between so nobody changes it unseen. (An earlier API version's
        /// update keeps the stored values of the fields it does not have.)
        pub async fn replace<T: Stored + Attributes>(state: &AppState, current: Current, principal: &Principal, id: uuid::Uuid, input: impl FnOnce(&T) -> Result<T::Input, Vec<FieldError>>) -> Result<T, Problem> {
            let op = performed::<T>(current, "update", false)?;
            let (mut tx, tenancy, stored) = locked::<T>(state, principal, op, id).await?;
            let input = input(&stored).map_err(Problem::validation)?;
            let written = update::<T>(&mut tx, tenancy, id, &input).await?.ok_or_else(Problem::not_found)?;
            let tx = check(state, tx, principal, op, &written).await?;
            commit(tx, principal, op, &written).await?;
            Ok(written)
        }

        /// Deletes a row, authorized on the row as the deleting statement found it (nobody
        /// can change it in between; a refusal rolls the delete back). Not read `FOR UPDATE`
        /// first: that needs the UPDATE privilege, which a table served without updates does
        /// not grant. Rows still referring to it are found at commit, after the decision.
        pub async fn handle_delete<T: Stored + Attributes>(State(state): State<AppState>, current: Current, principal: Principal, ApiPath(id): ApiPath<uuid::Uuid>) -> Result<StatusCode, Problem> {
            let op = performed::<T>(current, "delete", false)?;
            let tenancy = T::Tenancy::of(&principal);
            let mut tx = tenancy.begin(&state.db).await?;
            let removed = match delete::<T>(&mut tx, tenancy, id).await {
                Ok(removed) => removed.ok_or_else(Problem::not_found)?,
                // The statement itself failed (rows refer to this one, in a database migrated
                // before references were checked at commit): the caller still learns only
                // what the decision on the row as stored allows.
                Err(error) => {
                    drop(tx);
                    let stored = fetch_alone::<T>(&state.db, tenancy, id).await?.ok_or_else(Problem::not_found)?;
                    if let Err(denial) = state.auth.check(&principal, op, T::ENTITY, stored.id(), &stored) {
                        return Err(denial.record(&state.db).await);
                    }
                    return Err(delete_failed(error));
                }
            };
            let tx = check(&state, tx, &principal, op, &removed).await?;
            commit(tx, &principal, op, &removed).await.map_err(delete_failed)?;
            Ok(StatusCode::NO_CONTENT)
        }

        /// Applies a custom action, authorized on the row as stored (its condition is about
        /// the state it starts from).
        pub async fn handle_change<C: Change>(State(state): State<AppState>, current: Current, principal: Principal, ApiPath(id): ApiPath<uuid::Uuid>) -> Result<Json<C::Of>, Problem> {
            let op = performed::<C::Of>(current, C::ACTION, false)?;
            let (mut tx, tenancy, _) = locked::<C::Of>(&state, &principal, op, id).await?;
            let written = apply::<C>(&mut tx, tenancy, id).await?.ok_or_else(Problem::not_found)?;
            commit(tx, &principal, op, &written).await?;
            Ok(Json(written))
        }
    }
}
