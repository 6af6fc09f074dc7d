//! The server crate's benchmarks (no harness, against the local PostgreSQL): `guard.rs`, what
//! the guard costs (one authorization decision, the guard's other stages, and the same read
//! route through the guard against its handler called directly), and `isolation.rs`, what
//! tenant isolation costs through the HTTP API under load from `wrk`.

use super::ident;
use super::tests::{creation_order, ids_key, sample_call, sample_support, test_db};
use crate::model::{Action, ActionKind, App, FieldType, Resource};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

/// The resource the benchmark reads: tenant-scoped, with a `read` that is not public, has no
/// condition and no rate limit of its own (the route classes' budgets are turned off), and
/// an input that refers to no other row.
fn measured(app: &App) -> Option<&Resource> {
    app.resources.iter().find(|resource| {
        !resource.global
            && resource.actions.iter().any(|a| {
                a.kind == ActionKind::Read
                    && a.public.is_none()
                    && a.condition.is_none()
                    && a.rate_limit.is_none()
            })
            && !resource
                .fields
                .iter()
                .any(|f| matches!(f.ty, FieldType::Reference { .. }))
    })
}

/// The conditional operation the benchmark decides (the first tenant operation with a
/// condition that is not public), and the resources to create for a row of it: those its
/// required references need, in creation order, ending with its own.
fn conditional(app: &App) -> Option<(&Resource, &Action, Vec<&Resource>)> {
    let (index, resource, action) =
        app.resources
            .iter()
            .enumerate()
            .find_map(|(index, resource)| {
                let action = resource
                    .actions
                    .iter()
                    .find(|a| a.condition.is_some() && a.public.is_none())?;
                (!resource.global).then_some((index, resource, action))
            })?;
    let mut needed = vec![false; app.resources.len()];
    let mut pending = vec![index];
    while let Some(next) = pending.pop() {
        if std::mem::replace(&mut needed[next], true) {
            continue;
        }
        for field in &app.resources[next].fields {
            if let FieldType::Reference { resource: target } = field.ty
                && !field.optional
            {
                pending.push(target);
            }
        }
    }
    let chain = creation_order(app)
        .into_iter()
        .filter(|i| needed[*i])
        .map(|i| &app.resources[i])
        .collect();
    Some((resource, action, chain))
}

/// `benches/guard.rs` of the server crate.
pub fn guard_bench(app: &App, api: &Ident) -> TokenStream {
    let db_prefix = format!("{}_bench", app.ident.chars().take(30).collect::<String>());
    let test_db = test_db(&db_prefix);
    let all_roles: Vec<&str> = app.roles.iter().map(|r| r.name.as_str()).collect();
    // The measured resource's samples, and those of the conditional operation's row.
    let mut sampled: Vec<&Resource> = measured(app).into_iter().collect();
    if let Some(first) = measured(app)
        && let Some((_, _, chain)) = conditional(app)
    {
        sampled.extend(chain.into_iter().filter(|r| !std::ptr::eq(*r, first)));
    }
    let support = (!sampled.is_empty()).then(|| sample_support(app, sampled, api));
    let body = match measured(app) {
        Some(resource) => measure(app, resource, api),
        None => quote! {
            println!("no tenant resource with a plain `read` to measure");
            let _ = (TestDb::create, ALL_ROLES);
        },
    };
    quote! {
        //! What the guard costs, against the PostgreSQL at `DATABASE_URL` (default: the local
        //! server), in one run: one authorization decision, the guard's other stages, and a
        //! read route through the guard against the same handler called directly. Prints
        //! medians as a markdown table. Run with `cargo bench --bench guard`.

        use server::tenant::TenantId;
        use std::time::{Duration, Instant};

        const ALL_ROLES: &[&str] = &[#(#all_roles),*];

        fn database_url() -> String {
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
        }

        #test_db

        #support

        /// The median time of one call of `f`, over `samples` batches of `batch` calls.
        async fn median(samples: usize, batch: u32, mut f: impl AsyncFnMut()) -> Duration {
            let mut times = Vec::with_capacity(samples);
            for _ in 0..samples {
                let start = Instant::now();
                for _ in 0..batch {
                    f().await;
                }
                times.push(start.elapsed() / batch);
            }
            times.sort_unstable();
            times[samples / 2]
        }

        fn micros(d: Duration) -> String {
            format!("{:.2} µs", d.as_secs_f64() * 1e6)
        }

        #[tokio::main(flavor = "current_thread")]
        async fn main() {
            #body
        }
    }
}

fn measure(app: &App, resource: &Resource, api: &Ident) -> TokenStream {
    let module = ident(&resource.ident);
    let insert = super::server::store_fn(api, resource, "insert");
    let handle_read = super::server::store_fn(api, resource, "handle_read");
    let input = sample_call(resource, quote!(n), quote!(&ids));
    let entity = resource.type_name.as_str();
    let path = resource
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Read)
        .map(|a| a.path.clone())
        .unwrap_or_default();
    let (conditional_measure, conditional_rows) = match conditional(app) {
        Some((target, action, chain)) => {
            let inserts = chain.iter().map(|resource| {
                let key = ids_key(resource);
                let sample = sample_call(resource, quote!(2), quote!(&ids));
                let insert = super::server::store_fn(api, resource, "insert");
                let tenancy = super::server::tenancy_arg(resource, quote!(tenant));
                quote! {
                    let row = #insert(&mut conn, #tenancy, "bench", &#sample).await.expect("a row");
                    ids.push(#key, row.id);
                }
            });
            let module = ident(&target.ident);
            let op = super::server::operation_const(action);
            let entity = target.type_name.as_str();
            let measure = quote! {
                // A row of a conditional operation (and the rows it refers to).
                let (conditional_op, kept_conditional, evaluated_conditional) = {
                    let mut conn = db.pool.acquire().await.expect("a connection");
                    let mut ids = Ids::default();
                    #(#inserts)*
                    let op = &server::resources::#module::#op;
                    let kept = median(21, 2000, async || {
                        std::hint::black_box(auth.allows(&principal, op, #entity, row.id, &row));
                    })
                    .await;
                    let evaluated = median(21, 2000, async || {
                        assert!(auth.evaluate(&principal, op, #entity, row.id, &row, true).is_ok());
                    })
                    .await;
                    (op, kept, evaluated)
                };
            };
            let rows = quote! {
                println!("| authorization decision (`{}`: conditional, kept by the values its policies read) | {} | {} |", conditional_op.id, micros(kept_conditional), per_second(kept_conditional));
                println!("| the same decision evaluated by Cedar (entities holding only those values) | {} | {} |", micros(evaluated_conditional), per_second(evaluated_conditional));
            };
            (measure, rows)
        }
        None => (quote!(), quote!()),
    };
    quote! {
        use axum::body::Body;
        use axum::http::{header, Request, StatusCode};
        use server::problem::ApiPath;
        use tower::ServiceExt;

        let db = TestDb::create().await;
        let tenant = db.tenant("bench").await;
        db.member(tenant, "bench", ALL_ROLES).await;
        let (pkcs8, jwks) = server::identity::dev::generate("bench").expect("a key pair");
        let keys = server::identity::Keys::from_jwks(&jwks).expect("the JWKS");
        // The route classes' budgets would throttle the benchmark's own requests.
        let unthrottled = server::guard::ClassLimits { public: None, sensitive: None, standard: None, unauthenticated: None };
        let auth = std::sync::Arc::new(server::authz::Authority::new(keys, db.app.clone()).expect("the policies").with_rate_limits(unthrottled));
        let state = server::AppState { db: db.app.clone(), auth: auth.clone() };
        let app = server::router(state.clone());
        let mut conn = db.pool.acquire().await.expect("a connection");
        let (n, ids) = (1i64, Ids::default());
        let input = #input;
        let row = #insert(&mut conn, tenant, "bench", &input).await.expect("a row");
        drop(conn);
        let scopes: Vec<String> = server::OPERATIONS.iter().filter_map(|op| op.scope).map(str::to_owned).collect();
        let principal = server::tenant::Principal {
            subject: "bench".into(),
            tenant,
            roles: ALL_ROLES.iter().map(|r| (*r).to_owned()).collect(),
            scopes: scopes.clone(),
            mfa: true,
            request_id: "bench".into(),
            email: Some("bench@example.com".into()),
        };
        let op = &server::resources::#module::READ_OP;
        let now = server::identity::now();
        let claims = server::identity::dev::claims("bench", tenant.id(), &scopes.join(" "), &["mfa"], now, 600);
        let token = server::identity::dev::mint(&pkcs8, "bench", &claims).expect("a token");
        let path = #path.replace("{id}", &row.id.to_string());

        let decision = median(21, 2000, async || {
            assert!(auth.allows(&principal, op, #entity, row.id, &row));
        })
        .await;
        let evaluation = median(21, 2000, async || {
            assert_eq!(auth.evaluate(&principal, op, #entity, row.id, &row, true), Ok(true));
        })
        .await;
        #conditional_measure
        let verify = median(21, 200, async || {
            assert!(auth.keys.verify_now(&token, now).is_ok());
        })
        .await;
        let standing = median(21, 50, async || {
            let standing = server::tenant::standing(&db.app, tenant, "bench", Some("example.com")).await.expect("standing");
            assert!(standing.roles.is_some());
        })
        .await;
        let direct = median(21, 50, async || {
            let answer = #handle_read(axum::extract::State(state.clone()), server::guard::Current(op), principal.clone(), ApiPath(row.id)).await;
            assert!(answer.is_ok());
        })
        .await;
        let guarded = median(21, 50, async || {
            let request = Request::builder()
                .uri(&path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .expect("a request");
            let response = app.clone().oneshot(request).await.expect("a response");
            assert_eq!(response.status(), StatusCode::OK);
        })
        .await;
        let per_second = |d: Duration| format!("{:.0}", 1.0 / d.as_secs_f64());
        println!("| measure | median per call | calls per second |");
        println!("|---|---:|---:|");
        println!("| authorization decision (`{}`: unconditional, Cedar's decision kept) | {} | {} |", op.id, micros(decision), per_second(decision));
        println!("| the same decision evaluated by Cedar (its own policies) | {} | {} |", micros(evaluation), per_second(evaluation));
        #conditional_rows
        println!("| access-token verification (ES256 JWT) | {} | {} |", micros(verify), per_second(verify));
        println!("| membership, revocation and domain lookup (one query) | {} | {} |", micros(standing), per_second(standing));
        println!("| `{}` handler called directly (no guard) | {} | {} |", op.id, micros(direct), per_second(direct));
        println!("| `GET {}` through the guarded router | {} | {} |", op.path, micros(guarded), per_second(guarded));
        println!();
        println!("guarded / unguarded time: {:.2}", guarded.as_secs_f64() / direct.as_secs_f64());
        db.drop().await;
    }
}

/// `benches/isolation.rs` of the server crate: what tenant isolation costs end to end. The
/// service's own guarded read and list routes (row-level security, the per-table functions)
/// and a baseline with the same guard and operations whose handlers read an identical copy
/// of the table without row-level security or tenant setting, each served on loopback and
/// loaded by `wrk`, alternately, three rounds; medians of requests per second, p50 and p99.
pub fn isolation_bench(app: &App, api: &Ident) -> TokenStream {
    let db_prefix = format!("{}_iso", app.ident.chars().take(30).collect::<String>());
    let test_db = test_db(&db_prefix);
    let all_roles: Vec<&str> = app.roles.iter().map(|r| r.name.as_str()).collect();
    let support = measured(app).map(|r| sample_support(app, [r], api));
    let body = match measured(app) {
        Some(resource) => isolation(resource, api),
        None => quote! {
            println!("no tenant resource with a plain `read` to measure");
            let _ = (TestDb::create, ALL_ROLES, wrk);
        },
    };
    quote! {
        //! What tenant isolation costs through the HTTP API, against the PostgreSQL at
        //! `DATABASE_URL` (default: the local server): the service's guarded read (and list)
        //! of one tenant's rows, under forced row-level security, against a baseline served
        //! by the same guard and operations from an identical copy of the table without
        //! row-level security or a tenant setting. Both are served on loopback and loaded
        //! with `wrk` (Debian package `wrk`), alternately, in rounds; prints medians as a
        //! markdown table. Run with `cargo bench --bench isolation`; `BENCH_SECONDS` (default
        //! 10) and `BENCH_ROUNDS` (default 3) set the length of each load and the rounds.

        use server::tenant::TenantId;

        const ALL_ROLES: &[&str] = &[#(#all_roles),*];

        fn database_url() -> String {
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
        }

        #test_db

        #support

        /// What one `wrk` run measured.
        struct Load {
            per_second: f64,
            p50_us: f64,
            p99_us: f64,
        }

        /// Loads `url` with `wrk` for `seconds` (one thread, 8 connections) and reads its report;
        /// any answer other than 2xx fails the benchmark.
        fn wrk(url: &str, token: &str, seconds: u64) -> Load {
            let output = std::process::Command::new("wrk")
                .args(["-t1", "-c8", &format!("-d{seconds}s"), "--latency", "-H"])
                .arg(format!("Authorization: Bearer {token}"))
                .arg(url)
                .output()
                .expect("wrk runs");
            let report = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(output.status.success() && !report.contains("Non-2xx"), "wrk on {url}:\n{report}");
            let field = |label: &str| -> &str {
                report.lines().find_map(|line| line.trim().strip_prefix(label)).unwrap_or_else(|| panic!("`{label}` in:\n{report}")).trim()
            };
            let micros = |text: &str| -> f64 {
                let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
                let value: f64 = text[..split].parse().expect("a latency");
                value * match &text[split..] {
                    "us" => 1.0,
                    "ms" => 1e3,
                    "s" => 1e6,
                    unit => panic!("latency unit {unit}"),
                }
            };
            Load {
                per_second: field("Requests/sec:").parse().expect("requests per second"),
                p50_us: micros(field("50%")),
                p99_us: micros(field("99%")),
            }
        }

        fn median(mut values: Vec<f64>) -> f64 {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        }

        /// Serves `router` on a loopback port of its own; returns its base URL.
        async fn serve(router: axum::Router) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
            let base = format!("http://{}", listener.local_addr().expect("its address"));
            tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
            base
        }

        #[tokio::main]
        async fn main() {
            if std::process::Command::new("wrk").arg("--version").output().is_err() {
                eprintln!("wrk is not installed (Debian: apt-get install wrk)");
                std::process::exit(2);
            }
            #body
        }
    }
}

fn isolation(resource: &Resource, api: &Ident) -> TokenStream {
    let module = ident(&resource.ident);
    let ty = ident(&resource.type_name);
    let input = sample_call(resource, quote!(n), quote!(&ids));
    let entity = resource.type_name.as_str();
    let table = crate::render::escape::sql_ident(&resource.table);
    let action = |kind: ActionKind| {
        resource
            .actions
            .iter()
            .find(|a| a.kind == kind && a.public.is_none() && a.rate_limit.is_none())
    };
    let read_path = action(ActionKind::Read)
        .map(|a| a.path.clone())
        .unwrap_or_default();
    // The list is measured too when it is guarded and not rate-limited.
    let list = action(ActionKind::List);
    let list_route = list.map(|_| quote!(.operation(&#module::LIST_OP, baseline_list)));
    let list_measured = list.map(|a| {
        let path = &a.path;
        quote!(("list", #path.to_owned()),)
    });
    let baseline_read =
        "SELECT * FROM \"bulwark_baseline\" WHERE \"tenant_id\" = $1 AND \"id\" = $2";
    let baseline_list = "SELECT * FROM \"bulwark_baseline\" WHERE \"tenant_id\" = $1 AND ($2::uuid IS NULL OR \"id\" > $2) ORDER BY \"id\" LIMIT 101";
    let list_handler = list.map(|_| {
        quote! {
            /// The baseline list: one page of the copy, each row authorized as the service does.
            async fn baseline_list(State(state): State<server::AppState>, principal: server::tenant::Principal, ApiQuery(query): ApiQuery<#api::ListQuery>) -> Result<Json<#api::Page<Item>>, Problem> {
                let limit = query.limit.unwrap_or(50).clamp(1, 100) as usize;
                let rows: Vec<#module::Row> = sqlx::query_as(#baseline_list).bind(principal.tenant.id()).bind(query.after).fetch_all(&state.db).await?;
                let mut items = Vec::new();
                for row in rows {
                    let row = Item::from_row(row)?;
                    if state.auth.allows(&principal, &#module::LIST_OP, #entity, row.id, &row) {
                        items.push(row);
                        if items.len() == limit {
                            break;
                        }
                    }
                }
                let next_after = (items.len() == limit).then(|| items.last().map(|row| row.id)).flatten();
                Ok(Json(#api::Page { items, next_after }))
            }
        }
    });
    let api_query = list.map(|_| quote!(ApiQuery,));
    let copy = format!(
        "CREATE TABLE \"bulwark_baseline\" (LIKE {table} INCLUDING ALL); \
         INSERT INTO \"bulwark_baseline\" SELECT * FROM {table}; \
         ANALYZE \"bulwark_baseline\"; ANALYZE {table}"
    );
    quote! {
        use axum::extract::State;
        use axum::Json;
        use server::problem::{ApiPath, #api_query Problem};
        use server::resources::#module;
        use server::store::Stored;

        type Item = #api::#module::#ty;

        /// The baseline read: one statement on the copy, no row-level security, no tenant
        /// setting (the tenant predicate only), then the same decision as the service's.
        async fn baseline_read(State(state): State<server::AppState>, principal: server::tenant::Principal, ApiPath(id): ApiPath<uuid::Uuid>) -> Result<Json<Item>, Problem> {
            let row: Option<#module::Row> = sqlx::query_as(#baseline_read).bind(principal.tenant.id()).bind(id).fetch_optional(&state.db).await?;
            let row = row.map(Item::from_row).transpose()?.ok_or_else(Problem::not_found)?;
            if let Err(denial) = state.auth.check(&principal, &#module::READ_OP, #entity, row.id, &row) {
                return Err(denial.record(&state.db).await);
            }
            Ok(Json(row))
        }

        #list_handler

        let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
        let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
        let db = TestDb::create().await;
        // Three tenants of 200 rows each: row-level security has other tenants' rows to hide.
        let mut tenants = Vec::new();
        for name in ["bench", "other a", "other b"] {
            tenants.push(db.tenant(name).await);
        }
        let tenant = tenants[0];
        db.member(tenant, "bench", ALL_ROLES).await;
        let mut conn = db.pool.acquire().await.expect("a connection");
        let mut first = None;
        let ids = Ids::default();
        for owner in &tenants {
            for n in 0..200i64 {
                let input = #input;
                let row = server::store::insert::<Item>(&mut conn, *owner, "bench", &input).await.expect("a row");
                if *owner == tenant && first.is_none() {
                    first = Some(row.id);
                }
            }
        }
        // The baseline: an identical copy of the table (columns, keys, indexes, rows) without
        // row-level security, readable by the app role.
        sqlx::raw_sql(#copy).execute(&mut *conn).await.expect("the baseline table");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("GRANT SELECT ON \"bulwark_baseline\" TO \"{}\"", db.role))).execute(&mut *conn).await.expect("grant the baseline");
        drop(conn);
        let id = first.expect("a row of the tenant");

        // The server's pool: the app role, as in production.
        let options: sqlx::postgres::PgConnectOptions = database_url().parse().expect("DATABASE_URL parses");
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect_with(options.database(&db.name).username(&db.role)).await.expect("connect as the app role");
        let (pkcs8, jwks) = server::identity::dev::generate("bench").expect("a key pair");
        let keys = server::identity::Keys::from_jwks(&jwks).expect("the JWKS");
        // The route classes' budgets would throttle the load itself.
        let unthrottled = server::guard::ClassLimits { public: None, sensitive: None, standard: None, unauthenticated: None };
        let auth = std::sync::Arc::new(server::authz::Authority::new(keys, pool.clone()).expect("the policies").with_rate_limits(unthrottled));
        let state = server::AppState { db: pool.clone(), auth: auth.clone() };
        let scopes: Vec<String> = server::OPERATIONS.iter().filter_map(|op| op.scope).map(str::to_owned).collect();
        // A fresh token for each load: tokens live at most the spec's maximum lifetime.
        let token = || {
            let claims = server::identity::dev::claims("bench", tenant.id(), &scopes.join(" "), &["mfa"], server::identity::now(), server::identity::MAX_LIFETIME_SECS);
            server::identity::dev::mint(&pkcs8, "bench", &claims).expect("a token")
        };

        let routes = server::guard::GuardedRouter::new(auth.clone()).operation(&#module::READ_OP, baseline_read) #list_route;
        let measured = [("read", #read_path.replace("{id}", &id.to_string())), #list_measured];
        let isolated = serve(server::router(state.clone())).await;
        let baseline = serve(routes.finish().with_state(state)).await;

        // Every measured route answers 200 to the bench's token before it is loaded.
        let client = reqwest::Client::new();
        for (_, path) in &measured {
            for base in [&isolated, &baseline] {
                let response = client.get(format!("{base}{path}")).bearer_auth(token()).send().await.expect("a response");
                let status = response.status();
                assert_eq!(status, reqwest::StatusCode::OK, "{base}{path}: {}", response.text().await.unwrap_or_default());
            }
        }
        let mut loads: std::collections::BTreeMap<(&str, &str), Vec<Load>> = Default::default();
        for _ in 0..rounds {
            for (what, path) in &measured {
                for (kind, base) in [("isolated", &isolated), ("baseline", &baseline)] {
                    let load = wrk(&format!("{base}{path}"), &token(), seconds);
                    loads.entry((*what, kind)).or_default().push(load);
                }
            }
        }
        println!("| route | table | requests/s (median) | p50 µs | p99 µs | runs |");
        println!("|---|---|---:|---:|---:|---:|");
        for (what, _) in &measured {
            for kind in ["isolated", "baseline"] {
                let runs = &loads[&(*what, kind)];
                println!(
                    "| {what} | {} | {:.0} | {:.0} | {:.0} | {} |",
                    if kind == "isolated" { "forced RLS, per-table function" } else { "copy without RLS" },
                    median(runs.iter().map(|l| l.per_second).collect()),
                    median(runs.iter().map(|l| l.p50_us).collect()),
                    median(runs.iter().map(|l| l.p99_us).collect()),
                    runs.len()
                );
            }
        }
        println!();
        for (what, _) in &measured {
            let rate = |kind| median(loads[&(*what, kind)].iter().map(|l| l.per_second).collect());
            let ratios: Vec<String> = loads[&(*what, "isolated")].iter().zip(&loads[&(*what, "baseline")]).map(|(i, b)| format!("{:.2}", i.per_second / b.per_second)).collect();
            println!("{what}: isolated / baseline throughput {:.2} (per round: {})", rate("isolated") / rate("baseline"), ratios.join(", "));
        }
        pool.close().await;
        db.drop().await;
    }
}
