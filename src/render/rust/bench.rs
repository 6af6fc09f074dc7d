//! The server crate's benchmark (`benches/guard.rs`, no harness): what the guard costs, in
//! one run against the local PostgreSQL. One authorization decision, the guard's other stages,
//! and the same read route through the guard against its handler called directly.

use super::ident;
use super::tests::{sample, test_db};
use crate::model::{ActionKind, App, FieldType, Resource};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

/// The resource the benchmark reads: tenant-scoped, with a `read` that is not public, has no
/// condition and no rate limit, and an input that refers to no other row.
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

/// `benches/guard.rs` of the server crate.
pub fn guard_bench(app: &App, api: &Ident) -> TokenStream {
    let db_prefix = format!("{}_bench", app.ident.chars().take(30).collect::<String>());
    let test_db = test_db(&db_prefix);
    let all_roles: Vec<&str> = app.roles.iter().map(|r| r.name.as_str()).collect();
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
    let input = sample(app, resource, api, quote!(n));
    let entity = resource.type_name.as_str();
    let subject = resource
        .fields
        .iter()
        .any(|f| f.ty == FieldType::Principal)
        .then(|| quote!("bench",));
    let path = resource
        .actions
        .iter()
        .find(|a| a.kind == ActionKind::Read)
        .map(|a| a.path.clone())
        .unwrap_or_default();
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
        let auth = std::sync::Arc::new(server::authz::Authority::new(keys, db.app.clone()).expect("the policies"));
        let state = server::AppState { db: db.app.clone(), auth: auth.clone() };
        let app = server::router(state.clone());
        let mut conn = db.pool.acquire().await.expect("a connection");
        let n = 1i64;
        let input = #input;
        let row = server::resources::#module::insert(&mut conn, tenant, #subject &input).await.expect("a row");
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
            assert!(auth.allows(&principal, op, #entity, row.id, server::resources::#module::cedar_attrs(&row)));
        })
        .await;
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
            let answer = server::resources::#module::handle_read(axum::extract::State(state.clone()), principal.clone(), ApiPath(row.id)).await;
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
        println!("| authorization decision (Cedar, `{}`, its own policies) | {} | {} |", op.id, micros(decision), per_second(decision));
        println!("| access-token verification (ES256 JWT) | {} | {} |", micros(verify), per_second(verify));
        println!("| membership, revocation and domain lookup (one query) | {} | {} |", micros(standing), per_second(standing));
        println!("| `{}` handler called directly (no guard) | {} | {} |", op.id, micros(direct), per_second(direct));
        println!("| `GET {}` through the guarded router | {} | {} |", op.path, micros(guarded), per_second(guarded));
        println!();
        println!("guarded / unguarded time: {:.2}", guarded.as_secs_f64() / direct.as_secs_f64());
        db.drop().await;
    }
}
