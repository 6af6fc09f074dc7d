//! The generated workspace's own tests (`crates/server/tests/service.rs`, whose role x
//! operation test reads its cases from `tests/authorization_cases.json`): the router and
//! the OpenAPI document agree, the guard answers every non-public route with 401 and unknown
//! paths with 404 (problem+json), and every repository function runs against PostgreSQL.

use super::{enum_type, ident, input_type, is_input, server};
use crate::model::{ActionKind, App, FieldType, Resource};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use crate::render::{FileSet, RenderError};

pub fn render_tests(
    app: &App,
    files: &mut FileSet,
    dir: &str,
    crates: &crate::render::workspace::Crates,
    conditions: &super::condition_tests::Plan,
) -> Result<(), RenderError> {
    let api = super::crate_ident(&crates.api);
    let server_bin = format!("CARGO_BIN_EXE_{}", crates.server);
    let order = creation_order(app);
    let db_prefix = format!("{}_test", app.ident.chars().take(30).collect::<String>());
    let all_roles: Vec<&str> = app.roles.iter().map(|r| r.name.as_str()).collect();
    let steps: Vec<TokenStream> = order
        .iter()
        .map(|&index| resource_steps(app, index, &api))
        .collect();
    // The list's bounded scan, on the rows the steps left in the first resource's table.
    let scan_check = order.first().map(|&index| {
        let resource = &app.resources[index];
        let (module, ty) = (ident(&resource.ident), ident(&resource.type_name));
        let tenancy = server::tenancy_arg(resource, quote!(tenant));
        quote!(scans_stop_in_bounds::<#api::#module::#ty>(&db.pool, #tenancy).await;)
    });
    render_samples(app, files, dir, &api)?;
    // Every operation, and each previous version's.
    let route_count = app.resources.iter().map(|r| r.actions.len()).sum::<usize>()
        + app.builtin_operations().len() * (1 + app.deprecated_versions.len())
        + app
            .deprecated_versions
            .iter()
            .flat_map(|v| app.resources.iter().filter_map(|r| v.serves(r)))
            .map(|served| served.actions.len())
            .sum::<usize>();
    let route_count = proc_macro2::Literal::usize_unsuffixed(route_count);
    let previous_bodies = previous_bodies_test(app, &order, &api);
    let deprecated_test = (!app.deprecated_versions.is_empty()).then(|| {
        quote! {
            /// Earlier API versions answer each operation they serve as the current version
            /// does like the current one, through the same guard, with `Deprecation`, `Sunset`
            /// and a `Link` to the successor.
            #[tokio::test]
            async fn previous_api_versions_answer_like_the_current_one_marked_deprecated() {
                let db = TestDb::create().await;
                let tenant = db.tenant("tenant a").await;
                db.member(tenant, "user-1", ALL_ROLES).await;
                let app = router_on(db.app.clone());
                let token = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
                for previous in server::routes::PREVIOUS_VERSIONS {
                    for op in OPERATIONS.iter().filter(|op| previous.serves_as_current(op)) {
                        let current = op.path.replace("{id}", "0190a0b0-0000-7000-8000-000000000001").replace("{subject}", "nobody").replace("{domain}", "example.com");
                        let old = previous.path(&current);
                        // Reads with a member's token too (writes would change rows).
                        let tokens = if op.method == "GET" { vec![None, Some(token.as_str())] } else { vec![None] };
                        for token in tokens {
                            let now = call_on(&app, op.method, &current, token).await;
                            let then = call_on(&app, op.method, &old, token).await;
                            assert_eq!(then.status(), now.status(), "{} {old} with a token: {}", op.method, token.is_some());
                            let header = |name: &str| then.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                            assert_eq!(header("deprecation").as_deref(), Some(previous.deprecation), "{old}");
                            assert_eq!(header("sunset").as_deref(), Some(previous.sunset), "{old}");
                            assert_eq!(header("link"), Some(format!("<{current}>; rel=\"successor-version\"")), "{old}");
                            assert!(!now.headers().contains_key("deprecation"), "{current} is not deprecated");
                        }
                    }
                }
                db.drop().await;
            }
        }
    });
    let test_db = test_db(&db_prefix);
    let tokens = quote! {
        //! Tests of the generated service: routing, the guard, and the data layer against the
        //! PostgreSQL at `DATABASE_URL` (default: the local server). Each run creates its own
        //! database and drops it at the end.

        use axum::body::Body;
        use axum::http::{header, Method, Request, StatusCode};
        use server::authz::Authority;
        use server::identity::{self, dev, Keys};
        use server::tenant::TenantId;
        use server::OPERATIONS;
        use std::collections::BTreeSet;
        use tower::ServiceExt;

        fn database_url() -> String {
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
        }

        /// The router on `pool`, trusting the test key pair. The route classes are not
        /// throttled: a test's caller makes more of a class's calls than a minute's budget
        /// (the rate-limit tests set limits of their own; operations' own limits stay).
        fn router_on(pool: sqlx::PgPool) -> axum::Router {
            router_limited(pool, server::guard::ClassLimits { public: None, sensitive: None, standard: None, unauthenticated: None })
        }

        /// The same, with other rate limits for the route classes.
        fn router_limited(pool: sqlx::PgPool, limits: server::guard::ClassLimits) -> axum::Router {
            let keys = Keys::from_jwks(&test_key().1).expect("the test JWKS loads");
            let auth = Authority::new(keys, pool.clone()).expect("the policies load").with_rate_limits(limits);
            server::router(server::AppState { db: pool, auth: std::sync::Arc::new(auth) })
        }

        /// A pool that connects only when a handler reaches the database.
        fn lazy_pool() -> sqlx::PgPool {
            sqlx::postgres::PgPoolOptions::new().connect_lazy(&database_url()).expect("DATABASE_URL is a valid URL")
        }

        /// A router whose pool connects only when a handler reaches the database.
        fn router() -> axum::Router {
            router_on(lazy_pool())
        }

        /// A key pair made for this test run; the router trusts its public half.
        fn test_key() -> &'static (Vec<u8>, String) {
            static KEY: std::sync::OnceLock<(Vec<u8>, String)> = std::sync::OnceLock::new();
            KEY.get_or_init(|| dev::generate("test").expect("a test key pair"))
        }

        async fn call(method: &str, path: &str) -> axum::response::Response {
            call_with(method, path, None).await
        }

        async fn call_with(method: &str, path: &str, token: Option<&str>) -> axum::response::Response {
            call_on(&router(), method, path, token).await
        }

        async fn call_on(app: &axum::Router, method: &str, path: &str, token: Option<&str>) -> axum::response::Response {
            let mut request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).expect("valid method"))
                .uri(path)
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let request = request.body(Body::from("{}")).expect("valid request");
            app.clone().oneshot(request).await.expect("the router answers")
        }

        fn challenge(response: &axum::response::Response) -> String {
            response.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
        }

        /// A non-public operation, its path with an id filled in, and every scope of the spec.
        fn guarded_operation() -> Option<(&'static server::guard::Operation, String)> {
            OPERATIONS
                .iter()
                .find(|op| !op.public)
                .map(|op| (*op, op.path.replace("{id}", "0190a0b0-0000-7000-8000-000000000001")))
        }

        /// Revokes `subject`'s sessions as of `at` (seconds since the epoch).
        async fn revoke(db: &TestDb, subject: &str, at: u64) {
            sqlx::query("INSERT INTO \"session_revocations\" (\"subject\", \"revoked_at\") VALUES ($1, to_timestamp($2))")
                .bind(subject)
                .bind(at as f64)
                .execute(&db.pool)
                .await
                .expect("revoke");
        }

        /// Every role of the spec.
        const ALL_ROLES: &[&str] = &[#(#all_roles),*];

        fn all_scopes() -> String {
            OPERATIONS.iter().filter_map(|op| op.scope).collect::<Vec<_>>().join(" ")
        }

        fn signed(claims: &serde_json::Value) -> String {
            dev::mint(&test_key().0, "test", claims).expect("a signed token")
        }

        fn b64(bytes: &[u8]) -> String {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }

        #[tokio::test]
        async fn a_valid_token_of_someone_not_a_member_is_refused() {
            let Some((op, path)) = guarded_operation() else { return };
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            let app = router_on(db.app.clone());
            let now = identity::now();
            let token = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], now, 60));
            let response = call_on(&app, op.method, &path, Some(&token)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{}", op.id);
            assert!(is_problem(&response));
            assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE), "{}", challenge(&response));
            // The media type RFC 9068 also allows.
            let mut claims = dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], now, 60);
            claims["sub"] = "user-2".into();
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            h.typ = Some("application/at+jwt".into());
            h.kid = Some("test".into());
            let token = jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ec_der(&test_key().0)).expect("token");
            let response = call_on(&app, op.method, &path, Some(&token)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
            // Both refusals are in the system trail (no tenant was established), with the
            // request id the response carries.
            let request_id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("a request id");
            let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"system_audit_events\" WHERE \"outcome\" = 'denied' AND \"resource_id\" = $1 AND \"detail\" ->> 'reason' = 'not_a_member'")
                .bind(tenant.id().to_string())
                .fetch_one(&db.pool)
                .await
                .expect("count events");
            assert_eq!(count, 2);
            let (actor,): (String,) = sqlx::query_as("SELECT \"actor\" FROM \"system_audit_events\" WHERE \"request_id\" = $1")
                .bind(&request_id)
                .fetch_one(&db.pool)
                .await
                .expect("the event of the last request");
            assert_eq!(actor, "user-2");
            // A token for a tenant that does not exist is refused the same way.
            let unknown = uuid::Uuid::now_v7();
            let token = signed(&dev::claims("user-1", unknown, &all_scopes(), &["mfa"], now, 60));
            let response = call_on(&app, op.method, &path, Some(&token)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{}: an unknown tenant", op.id);
            let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"system_audit_events\" WHERE \"outcome\" = 'denied' AND \"resource_id\" = $1 AND \"detail\" ->> 'reason' = 'not_a_member'")
                .bind(unknown.to_string())
                .fetch_one(&db.pool)
                .await
                .expect("count events");
            assert_eq!(count, 1, "the refusal for an unknown tenant is stored");
            db.drop().await;
        }

        #[tokio::test]
        async fn tokens_issued_before_a_revocation_are_refused() {
            let Some((op, path)) = guarded_operation() else { return };
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            db.member(tenant, "user-1", ALL_ROLES).await;
            let app = router_on(db.app.clone());
            let now = identity::now();
            let before = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], now - 5, 60));
            let status = call_on(&app, op.method, &path, Some(&before)).await.status();
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{}", op.id);
            revoke(&db, "user-1", now - 1).await;
            let response = call_on(&app, op.method, &path, Some(&before)).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(challenge(&response).contains("invalid_token"));
            // The revoked session's use is in the tenant's trail (the caller is a member).
            let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"actor\" = 'user-1' AND \"detail\" ->> 'reason' = 'session_revoked'")
                .bind(tenant.id())
                .fetch_one(&db.pool)
                .await
                .expect("count refusals");
            assert_eq!(stored, 1);
            let after = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], now, 60));
            let status = call_on(&app, op.method, &path, Some(&after)).await.status();
            assert_ne!(status, StatusCode::UNAUTHORIZED, "a token issued after the revocation");
            db.drop().await;
        }

        /// Cedar sees a decimal exactly or not at all: a fifth decimal place is not rounded
        /// into a value a condition would accept.
        #[test]
        fn decimals_reach_the_policies_exactly_or_fail_the_decision() {
            let decimal = |text: &str| server::authz::decimal(text.parse().expect("a decimal"));
            assert_eq!(decimal("24.5"), serde_json::json!({"__extn": {"fn": "decimal", "arg": "24.5"}}));
            assert_eq!(decimal("24"), serde_json::json!({"__extn": {"fn": "decimal", "arg": "24.0"}}));
            assert_eq!(decimal("-0.0001"), serde_json::json!({"__extn": {"fn": "decimal", "arg": "-0.0001"}}));
            // A fifth place is passed whole, neither rounded nor left out (which would read as
            // unset, and `!(resource has f)` would hold)...
            assert_eq!(decimal("24.00004"), serde_json::json!({"__extn": {"fn": "decimal", "arg": "24.00004"}}));
            // ...and Cedar refuses it: an entity holding it is never built, so the decision
            // errors, which denies.
            let uid: cedar_policy::EntityUid = r#"App::Thing::"x""#.parse().expect("an entity id");
            let attrs = std::collections::HashMap::from([("d".to_owned(), cedar_policy::RestrictedExpression::new_decimal("24.00004"))]);
            assert!(cedar_policy::Entity::new(uid, attrs, std::collections::HashSet::new()).is_err());
            // Inputs are held to what Cedar reads exactly.
            let checked = |text: &str| {
                let mut errors = Vec::new();
                #api::check::decimal(&mut errors, "d", &text.parse().expect("a decimal"));
                errors.into_iter().map(|e| e.message).collect::<Vec<_>>()
            };
            assert!(checked("24.0001").is_empty());
            assert!(checked("24.10000").is_empty(), "trailing zeros are no places");
            assert_eq!(checked("24.00004"), ["at most four decimal places"]);
            assert_eq!(checked("922337203685478"), ["out of range"]);
        }

        #[test]
        fn symmetric_and_non_signing_keys_are_never_trusted() {
            let now = identity::now();
            let claims = dev::claims("user-1", uuid::Uuid::now_v7(), &all_scopes(), &[], now, 60);
            let secret = b"a shared secret of thirty-two bytes!";
            let oct = serde_json::json!({"keys": [{"kty": "oct", "kid": "shared", "alg": "HS256", "k": b64(secret)}]});
            let keys = Keys::from_jwks(&oct.to_string()).expect("an oct JWKS parses");
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.typ = Some("at+jwt".into());
            h.kid = Some("shared".into());
            let token = jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(secret).expect("key")).expect("token");
            assert!(keys.verify(&token, now).is_err());
            // The same key pair, published for encryption only.
            let mut jwks: serde_json::Value = serde_json::from_str(&test_key().1).expect("jwks");
            jwks["keys"][0]["use"] = "enc".into();
            let keys = Keys::from_jwks(&jwks.to_string()).expect("jwks parses");
            assert_eq!(keys.verify(&signed(&claims), now), Err("key is not for signatures"));
        }

        #[tokio::test]
        async fn a_token_without_the_operations_scope_is_403_insufficient_scope() {
            let Some((op, path)) = guarded_operation() else { return };
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            db.member(tenant, "user-1", ALL_ROLES).await;
            let app = router_on(db.app.clone());
            let token = signed(&dev::claims("user-1", tenant.id(), "unrelated.scope", &["mfa"], identity::now(), 60));
            let response = call_on(&app, op.method, &path, Some(&token)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(challenge(&response).contains("insufficient_scope"), "{}", challenge(&response));
            // A member's refusal is in the tenant's trail.
            let (actor, action, scope): (String, String, Option<String>) = sqlx::query_as("SELECT \"actor\", \"action\", \"scope\" FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"outcome\" = 'denied' AND \"detail\" ->> 'reason' = 'insufficient_scope'")
                .bind(tenant.id())
                .fetch_one(&db.pool)
                .await
                .expect("the refusal is recorded");
            assert_eq!((actor.as_str(), action.as_str(), scope.as_deref()), ("user-1", op.id, op.scope));
            db.drop().await;
        }

        #[tokio::test]
        async fn forged_and_invalid_tokens_are_refused() {
            let Some((op, path)) = guarded_operation() else { return };
            let now = identity::now();
            let good = || dev::claims("user-1", uuid::Uuid::now_v7(), &all_scopes(), &["mfa"], now, 60);
            let with = |key: &str, value: serde_json::Value| {
                let mut claims = good();
                claims[key] = value;
                signed(&claims)
            };
            let without = |key: &str| {
                let mut claims = good();
                claims.as_object_mut().expect("claims are an object").remove(key);
                signed(&claims)
            };
            let header = |json: serde_json::Value| b64(json.to_string().as_bytes());
            let payload = b64(good().to_string().as_bytes());
            let (other_key, _) = dev::generate("test").expect("a second key pair");
            let public_point = {
                use base64::Engine;
                let jwk = &serde_json::from_str::<serde_json::Value>(&test_key().1).expect("jwks")["keys"][0];
                let coordinate = |c: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwk[c].as_str().expect("coordinate")).expect("base64");
                // The uncompressed point, as a confused verifier would use it for HMAC.
                [vec![4u8], coordinate("x"), coordinate("y")].concat()
            };
            let hs256 = {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.typ = Some("at+jwt".into());
                h.kid = Some("test".into());
                jsonwebtoken::encode(&h, &good(), &jsonwebtoken::EncodingKey::from_secret(&public_point).expect("an hmac key")).expect("hs256 token")
            };
            let wrong_typ = {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                h.typ = Some("JWT".into());
                h.kid = Some("test".into());
                jsonwebtoken::encode(&h, &good(), &jsonwebtoken::EncodingKey::from_ec_der(&test_key().0)).expect("jwt token")
            };
            let lifetime = identity::MAX_LIFETIME_SECS;
            let cases: Vec<(&str, String)> = vec![
                ("alg none", format!("{}.{payload}.", header(serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": "test"})))),
                ("HS256 keyed with the public key", hs256),
                ("unknown kid", dev::mint(&test_key().0, "someone-else", &good()).expect("token")),
                ("another key under the known kid", dev::mint(&other_key, "test", &good()).expect("token")),
                ("wrong issuer", with("iss", "https://evil.example/".into())),
                ("the issuer among others", with("iss", serde_json::json!([identity::ISSUER, "https://evil.example/"]))),
                ("nbf not a number", with("nbf", "2099".into())),
                ("wrong audience", with("aud", "someone-else".into())),
                ("expired", signed(&dev::claims("user-1", uuid::Uuid::now_v7(), &all_scopes(), &[], now - 400, 60))),
                ("not yet valid", with("nbf", (now + 120).into())),
                ("lifetime over the cap", with("exp", (now + lifetime + 60).into())),
                ("issued in the future", {
                    let mut claims = dev::claims("user-1", uuid::Uuid::now_v7(), &all_scopes(), &[], now + 300, 60);
                    claims["nbf"] = now.into();
                    signed(&claims)
                }),
                ("no iat", without("iat")),
                ("no sub", without("sub")),
                ("no tenant", without(identity::TENANT_CLAIM)),
                ("wrong typ", wrong_typ),
                ("tampered payload", {
                    let token = signed(&good());
                    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
                    let mut claims = good();
                    claims["sub"] = "admin".into();
                    parts[1] = b64(claims.to_string().as_bytes());
                    parts.join(".")
                }),
                ("garbage", "not.a.token".into()),
            ];
            for (case, token) in cases {
                let response = call_with(op.method, &path, Some(&token)).await;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
                assert!(is_problem(&response), "{case}");
                assert!(challenge(&response).contains("error=\"invalid_token\""), "{case}: {}", challenge(&response));
            }
        }

        fn is_problem(response: &axum::response::Response) -> bool {
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) == Some("application/problem+json")
        }

        /// A body that is not JSON, or not the input's shape, a body of another media type, an
        /// id that is no id and a query that does not parse: each answered as problem+json by
        /// the handler's extractors, past the guard.
        #[tokio::test]
        async fn malformed_requests_are_answered_as_problem_json() {
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            db.member(tenant, "user-1", ALL_ROLES).await;
            let app = router_on(db.app.clone());
            let token = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
            let guarded = |method: &str, by_id: bool| OPERATIONS.iter().find(|op| !op.public && op.method == method && op.path.contains('{') == by_id);
            let answer = |method: &str, path: String, media: &str, body: &'static str| {
                let request = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).expect("valid method"))
                    .uri(path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, media)
                    .body(Body::from(body))
                    .expect("valid request");
                app.clone().oneshot(request)
            };
            let mut cases = Vec::new();
            if let Some(op) = guarded("POST", false) {
                cases.push((op.id, answer("POST", op.path.to_owned(), "application/json", "{").await, StatusCode::BAD_REQUEST));
                cases.push((op.id, answer("POST", op.path.to_owned(), "application/json", "[]").await, StatusCode::UNPROCESSABLE_ENTITY));
                cases.push((op.id, answer("POST", op.path.to_owned(), "text/plain", "{}").await, StatusCode::UNSUPPORTED_MEDIA_TYPE));
            }
            if let Some(op) = guarded("GET", true) {
                let path = op.path.split('{').next().map(|head| format!("{head}not-an-id")).expect("a path");
                cases.push((op.id, answer("GET", path, "application/json", "").await, StatusCode::NOT_FOUND));
            }
            if let Some(op) = guarded("GET", false) {
                cases.push((op.id, answer("GET", format!("{}?limit=many", op.path), "application/json", "").await, StatusCode::BAD_REQUEST));
            }
            assert!(!cases.is_empty(), "no guarded operation to send malformed requests to");
            for (id, response, expected) in cases {
                let response = response.expect("the router answers");
                assert_eq!(response.status(), expected, "{id}");
                assert!(is_problem(&response), "{id}: {expected}");
            }
            db.drop().await;
        }

        #[tokio::test]
        async fn router_and_openapi_list_the_same_operations() {
            let document: serde_json::Value = serde_json::from_str(include_str!("../../../openapi.json")).expect("openapi.json parses");
            let mut documented = BTreeSet::new();
            for (path, item) in document["paths"].as_object().expect("paths") {
                for method in item.as_object().expect("path item").keys() {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
            // What the router really registered, not just the list of operations.
            let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy(&database_url()).expect("DATABASE_URL is a valid URL");
            let registered = server::routes::guarded(std::sync::Arc::new(Authority::new(Keys::none(), pool).expect("the policies load")));
            let routed: BTreeSet<_> = registered.routes().iter().map(|(method, path)| (method.to_string(), path.clone())).collect();
            assert_eq!(routed, documented);
            assert_eq!(routed.len(), registered.routes().len(), "two operations share a method and path");
            assert_eq!(registered.operations(), OPERATIONS);
            assert_eq!(registered.routes().len(), #route_count, "each version serves what it has");
        }

        #deprecated_test

        #previous_bodies

        #[tokio::test]
        async fn non_public_operations_without_credentials_answer_401() {
            for op in OPERATIONS.iter().filter(|op| !op.public) {
                let path = op.path.replace("{id}", "0190a0b0-0000-7000-8000-000000000001");
                let response = call(op.method, &path).await;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{} {}", op.method, path);
                assert!(is_problem(&response), "{} {} is not problem+json", op.method, path);
                let challenge = response.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default();
                assert!(challenge.starts_with("Bearer"), "{} {} has no Bearer challenge", op.method, path);
            }
        }

        /// The operations of a route class without a limit of their own share one budget:
        /// a caller who spent it on one is throttled on the others at once.
        #[tokio::test]
        async fn a_route_class_is_one_budget_per_caller() {
            use server::guard::RouteClass;
            let limits = server::guard::ClassLimits { public: Some((3, 60)), sensitive: Some((2, 60)), standard: Some((4, 60)), unauthenticated: None };
            // A member: budgets per principal are spent once its standing is known.
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            db.member(tenant, "user-1", ALL_ROLES).await;
            let token = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
            for class in [RouteClass::Sensitive, RouteClass::Public, RouteClass::Standard] {
                let members: Vec<&server::guard::Operation> = OPERATIONS.iter().copied().filter(|op| op.class == class && op.rate_limit.is_none()).collect();
                let [first, second, ..] = members[..] else { continue };
                let app = router_limited(db.app.clone(), limits);
                let call = |op: &server::guard::Operation| {
                    let mut request = Request::builder()
                        .method(Method::from_bytes(op.method.as_bytes()).expect("valid method"))
                        .uri(op.path.replace("{id}", "0190a0b0-0000-7000-8000-000000000001"));
                    if !op.public {
                        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
                    }
                    app.clone().oneshot(request.body(Body::empty()).expect("valid request"))
                };
                let mut spent = false;
                for _ in 0..20 {
                    if call(first).await.expect("the router answers").status() == StatusCode::TOO_MANY_REQUESTS {
                        spent = true;
                        break;
                    }
                }
                assert!(spent, "{} was never throttled", first.id);
                let status = call(second).await.expect("the router answers").status();
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{} after {} spent the {class:?} budget", second.id, first.id);
            }
            db.drop().await;
        }

        /// A token refused for its standing (its sessions revoked) spends budgets of its
        /// address, not its subject's: replaying a stolen token after the revocation does
        /// not lock the real user out.
        #[tokio::test]
        async fn a_revoked_token_replayed_spends_no_budget_of_its_subject() {
            let Some((op, path)) = guarded_operation() else { return };
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            db.member(tenant, "user-1", ALL_ROLES).await;
            // Two calls per subject (and per token); one refusal per address.
            let limits = server::guard::ClassLimits { public: Some((2, 60)), sensitive: Some((2, 60)), standard: Some((2, 60)), unauthenticated: Some((1, 60)) };
            let app = router_limited(db.app.clone(), limits);
            let now = identity::now();
            let stolen = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], now - 5, 60));
            revoke(&db, "user-1", now - 1).await;
            let from = |ip: &str, token: &str| {
                let mut request = Request::builder()
                    .method(Method::from_bytes(op.method.as_bytes()).expect("valid method"))
                    .uri(&path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::from("{}"))
                    .expect("valid request");
                let address = std::net::SocketAddr::new(ip.parse().expect("an address"), 40_000);
                request.extensions_mut().insert(axum::extract::ConnectInfo(address));
                app.clone().oneshot(request)
            };
            // Replayed from the user's own address: refused, then throttled for the address's
            // budget of refusals (the token's own budget would allow a second call).
            let first = from("192.0.2.1", &stolen).await.expect("the router answers");
            assert_eq!(first.status(), StatusCode::UNAUTHORIZED, "{}", op.id);
            let second = from("192.0.2.1", &stolen).await.expect("the router answers");
            assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS, "{}: the address's budget", op.id);
            assert!(second.headers().contains_key(header::RETRY_AFTER));
            // A non-member from that address is refused for its budget too.
            let stranger = signed(&dev::claims("stranger", tenant.id(), &all_scopes(), &["mfa"], now, 60));
            assert_eq!(from("192.0.2.1", &stranger).await.expect("the router answers").status(), StatusCode::TOO_MANY_REQUESTS, "{}", op.id);
            // The real user's fresh token, from the same address, is served: the replays spent
            // nothing of the subject's.
            let fresh = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], now, 60));
            for _ in 0..2 {
                let status = from("192.0.2.1", &fresh).await.expect("the router answers").status();
                assert!(status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::UNAUTHORIZED, "{}: the real user's fresh token answered {status}", op.id);
            }
            db.drop().await;
        }

        /// Requests refused for want of a valid token (none, or one that fails) share one
        /// budget per client address over every operation.
        #[tokio::test]
        async fn refusals_for_want_of_a_valid_token_are_throttled_per_address() {
            let Some((op, path)) = guarded_operation() else { return };
            let limits = server::guard::ClassLimits { public: None, sensitive: None, standard: None, unauthenticated: Some((3, 60)) };
            let app = router_limited(lazy_pool(), limits);
            let guarded: Vec<&server::guard::Operation> = OPERATIONS.iter().copied().filter(|o| !o.public).collect();
            for (n, other) in guarded.iter().cycle().take(3).enumerate() {
                let path = other.path.replace("{id}", "0190a0b0-0000-7000-8000-000000000001");
                let token = (n % 2 == 1).then_some("not.a.token");
                let status = call_on(&app, other.method, &path, token).await.status();
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{} within the budget", other.id);
            }
            let response = call_on(&app, op.method, &path, None).await;
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{} past the budget", op.id);
            assert!(is_problem(&response));
            assert!(response.headers().contains_key(header::RETRY_AFTER));
        }

        /// `X-Forwarded-For` names the client only when a trusted proxy sent it, read from the
        /// right: what the client wrote itself (to the left) is never believed.
        #[test]
        fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
            let trusted = server::guard::trusted_proxies("10.0.0.0/8, 2001:db8::1").expect("the proxies parse");
            assert_eq!(trusted.len(), 2);
            let typo = server::guard::trusted_proxies("10.0.0.0/8,10.0.0.300").expect_err("no such address");
            assert!(typo.contains("`10.0.0.300`"), "{typo}");
            let client = |peer: &str, forwarded: &[&str]| {
                let mut headers = axum::http::HeaderMap::new();
                for value in forwarded {
                    headers.append("x-forwarded-for", value.parse().expect("a header value"));
                }
                server::guard::forwarded_client(peer.parse().expect("an address"), &headers, &trusted).to_string()
            };
            // Not from a trusted proxy: the peer, whatever the header says.
            assert_eq!(client("192.0.2.1", &["203.0.113.9"]), "192.0.2.1");
            // From one: the first address, from the right, that is not a trusted proxy.
            assert_eq!(client("10.0.0.1", &["203.0.113.9"]), "203.0.113.9");
            assert_eq!(client("10.0.0.1", &["198.51.100.1, 203.0.113.9, 10.0.0.2"]), "203.0.113.9");
            assert_eq!(client("10.0.0.1", &["198.51.100.1", "203.0.113.9:4711"]), "203.0.113.9");
            assert_eq!(client("::ffff:10.0.0.1", &["203.0.113.9"]), "203.0.113.9");
            assert_eq!(client("2001:db8::1", &["[2001:db8::7]:443"]), "2001:db8::7");
            // Only proxies: the one furthest out; no header, or nothing readable: the peer.
            assert_eq!(client("10.0.0.1", &["10.0.0.3, 10.0.0.2"]), "10.0.0.3");
            assert_eq!(client("10.0.0.1", &[]), "10.0.0.1");
            assert_eq!(client("10.0.0.1", &["203.0.113.9, unknown"]), "10.0.0.1");
            // A byte the client wrote that is no text hides nothing the proxy appended.
            let mut headers = axum::http::HeaderMap::new();
            headers.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(b"\x80\xff, 203.0.113.9").expect("a header value"));
            let found = server::guard::forwarded_client("10.0.0.1".parse().expect("an address"), &headers, &trusted);
            assert_eq!(found.to_string(), "203.0.113.9");
        }

        /// Behind a trusted proxy each client draws on a budget of its own; a client that
        /// writes `X-Forwarded-For` itself still draws on its own address's.
        #[tokio::test]
        async fn clients_behind_a_trusted_proxy_have_budgets_of_their_own() {
            let Some((op, path)) = guarded_operation() else { return };
            let limits = server::guard::ClassLimits { public: None, sensitive: None, standard: None, unauthenticated: Some((1, 60)) };
            let keys = Keys::from_jwks(&test_key().1).expect("the test JWKS loads");
            let pool = lazy_pool();
            let auth = Authority::new(keys, pool.clone())
                .expect("the policies load")
                .with_rate_limits(limits)
                .with_trusted_proxies(vec!["10.0.0.0/8".parse().expect("a network")]);
            let app = server::router(server::AppState { db: pool, auth: std::sync::Arc::new(auth) });
            let from = |peer: &str, forwarded: &str| {
                let mut request = Request::builder()
                    .method(Method::from_bytes(op.method.as_bytes()).expect("valid method"))
                    .uri(&path)
                    .header("x-forwarded-for", forwarded)
                    .body(Body::empty())
                    .expect("valid request");
                let address = std::net::SocketAddr::new(peer.parse().expect("an address"), 40_000);
                request.extensions_mut().insert(axum::extract::ConnectInfo(address));
                app.clone().oneshot(request)
            };
            let status = |response: Result<axum::response::Response, std::convert::Infallible>| response.expect("the router answers").status();
            assert_eq!(status(from("10.0.0.1", "198.51.100.7").await), StatusCode::UNAUTHORIZED);
            assert_eq!(status(from("10.0.0.1", "198.51.100.7").await), StatusCode::TOO_MANY_REQUESTS, "{}", op.id);
            assert_eq!(status(from("10.0.0.1", "198.51.100.8").await), StatusCode::UNAUTHORIZED, "a second client behind the proxy");
            assert_eq!(status(from("192.0.2.9", "198.51.100.9").await), StatusCode::UNAUTHORIZED);
            assert_eq!(status(from("192.0.2.9", "198.51.100.10").await), StatusCode::TOO_MANY_REQUESTS, "a header the client wrote");
        }

        #[tokio::test]
        async fn rate_limited_operations_answer_429_with_retry_after() {
            // Small limits for the route classes, so that their operations are throttled
            // within the test too; an operation's own limit comes first.
            let limits = server::guard::ClassLimits { public: Some((3, 60)), sensitive: Some((2, 60)), standard: Some((4, 60)), unauthenticated: None };
            // Authenticated operations are throttled per principal once its standing is
            // known: one member's token.
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            db.member(tenant, "user-1", ALL_ROLES).await;
            let token = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
            for op in OPERATIONS {
                let Some((requests, _)) = limits.of(op) else {
                    panic!("{} is not throttled", op.id);
                };
                let app = router_limited(db.app.clone(), limits);
                let path = op.path.replace("{id}", "0190a0b0-0000-7000-8000-000000000001");
                // The burst allows `requests` at once, so none of those may be throttled;
                // beyond it, requests come faster than the quota refills.
                let mut throttled_at = None;
                for attempt in 0..requests * 3 + 10 {
                    let mut request = Request::builder()
                        .method(Method::from_bytes(op.method.as_bytes()).expect("valid method"))
                        .uri(&path);
                    if !op.public {
                        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
                    }
                    let request = request.body(Body::empty()).expect("valid request");
                    let response = app.clone().oneshot(request).await.expect("the router answers");
                    if response.status() == StatusCode::TOO_MANY_REQUESTS {
                        assert!(is_problem(&response));
                        assert!(response.headers().contains_key(header::RETRY_AFTER), "{} has no Retry-After", op.id);
                        throttled_at = Some(attempt);
                        break;
                    }
                }
                let throttled_at = throttled_at.unwrap_or_else(|| panic!("{} was never throttled", op.id));
                assert!(throttled_at >= requests, "{} throttled after {throttled_at} of {requests} requests", op.id);
                if op.public {
                    // A dual-stack socket shows IPv4 clients as `::ffff:a.b.c.d`: one of them
                    // throttled leaves the next its own budget.
                    let from = |ip: &str| {
                        let mut request = Request::builder()
                            .method(Method::from_bytes(op.method.as_bytes()).expect("valid method"))
                            .uri(&path)
                            .body(Body::empty())
                            .expect("valid request");
                        let address = std::net::SocketAddr::new(ip.parse().expect("an address"), 40_000);
                        request.extensions_mut().insert(axum::extract::ConnectInfo(address));
                        request
                    };
                    let mut first = StatusCode::OK;
                    for _ in 0..requests * 3 + 10 {
                        first = app.clone().oneshot(from("::ffff:192.0.2.1")).await.expect("the router answers").status();
                        if first == StatusCode::TOO_MANY_REQUESTS {
                            break;
                        }
                    }
                    assert_eq!(first, StatusCode::TOO_MANY_REQUESTS, "{}", op.id);
                    let second = app.clone().oneshot(from("::ffff:192.0.2.2")).await.expect("the router answers").status();
                    assert_ne!(second, StatusCode::TOO_MANY_REQUESTS, "{}: IPv4 clients share a budget", op.id);
                }
            }
            db.drop().await;
        }

        /// Handlers authorize against the operation their guard checked; a request that did
        /// not pass a guard carries none, and a handler asking for it answers 401.
        #[tokio::test]
        async fn a_handler_reached_without_its_guard_answers_401() {
            use axum::extract::FromRequestParts;
            let (mut parts, ()) = Request::new(()).into_parts();
            let refused = server::guard::Current::from_request_parts(&mut parts, &()).await.expect_err("no operation without a guard");
            let response = axum::response::IntoResponse::into_response(refused);
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(is_problem(&response));
        }

        #[tokio::test]
        async fn unknown_paths_answer_404_problem() {
            for path in ["/", "/nope", "/v0/anything", "/v1/../etc/passwd"] {
                let response = call("GET", path).await;
                assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
                assert!(is_problem(&response), "{path}");
            }
        }

        #[tokio::test]
        async fn unknown_methods_answer_405_problem() {
            for op in OPERATIONS {
                let path = op.path.replace("{id}", "0190a0b0-0000-7000-8000-000000000001");
                let response = call("PATCH", &path).await;
                assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "PATCH {path}");
                assert!(is_problem(&response), "PATCH {path}");
            }
        }

        #test_db

        mod samples;
        use samples::*;

        #[tokio::test]
        async fn the_app_role_sees_no_tenant_rows_without_a_tenant_and_cannot_lift_isolation() {
            let db = TestDb::create().await;
            let a = db.tenant("tenant a").await;
            let b = db.tenant("tenant b").await;
            db.member(a, "user-a", ALL_ROLES).await;
            db.member(b, "user-b", ALL_ROLES).await;
            let count = |sql: &'static str| {
                let app = db.app.clone();
                async move {
                    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&app).await.expect(sql);
                    n
                }
            };
            // No tenant set: nothing to see, nothing to insert.
            assert_eq!(count("SELECT count(*) FROM \"memberships\"").await, 0);
            assert_eq!(count("SELECT count(*) FROM \"tenant_domains\"").await, 0);
            let insert = sqlx::query("INSERT INTO \"memberships\" (\"tenant_id\", \"subject\") VALUES ($1, 'intruder')").bind(a.id()).execute(&db.app).await;
            assert!(insert.is_err(), "an insert without a tenant");
            // Tenant A set: A's rows only, and none can be written into B.
            let mut tx = server::tenant::begin(&db.app, a).await.expect("a transaction of tenant a");
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"memberships\"").fetch_one(&mut *tx).await.expect("count");
            assert_eq!(n, 1);
            let into_b = sqlx::query("INSERT INTO \"memberships\" (\"tenant_id\", \"subject\") VALUES ($1, 'intruder')").bind(b.id()).execute(&mut *tx).await;
            assert!(into_b.is_err(), "a row written into another tenant");
            drop(tx);
            // The setting is transaction-local: the next use of the connection sees nothing.
            assert_eq!(count("SELECT count(*) FROM \"memberships\"").await, 0);
            // So is the one-statement guard query's: on the same connection, right after it,
            // nothing is visible (it fails closed).
            let mut conn = db.app.acquire().await.expect("a connection");
            let (roles,): (Option<Vec<String>>,) = sqlx::query_as("SELECT \"roles\" FROM \"caller_standing\"($1, 'user-a', NULL)")
                .bind(a.id()).fetch_one(&mut *conn).await.expect("standing");
            assert!(roles.is_some(), "a member of tenant a");
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"memberships\"").fetch_one(&mut *conn).await.expect("count");
            assert_eq!(n, 0, "the function's tenant setting ends with its statement");
            let (setting,): (Option<String>,) = sqlx::query_as("SELECT NULLIF(current_setting('app.tenant_id', true), '')").fetch_one(&mut *conn).await.expect("setting");
            assert_eq!(setting, None);
            drop(conn);
            // The app role cannot lift or widen isolation.
            for statement in [
                "ALTER TABLE \"memberships\" DISABLE ROW LEVEL SECURITY",
                "ALTER TABLE \"memberships\" NO FORCE ROW LEVEL SECURITY",
                "DROP POLICY \"tenant_isolation\" ON \"memberships\"",
                "CREATE POLICY \"open\" ON \"memberships\" USING (true)",
                "TRUNCATE \"memberships\"",
                "SET row_security = off; SELECT count(*) FROM \"memberships\"",
                "SELECT count(*) FROM \"tenants\"",
                "UPDATE \"audit_events\" SET \"actor\" = 'x'",
                "SELECT count(*) FROM \"system_audit_events\"",
                "ALTER FUNCTION \"caller_standing\"(uuid, text, text) SECURITY DEFINER",
                "CREATE OR REPLACE FUNCTION \"caller_standing\"(uuid, text, text) RETURNS TABLE (\"roles\" text[], \"revoked_at\" timestamptz, \"domain_verified\" boolean) LANGUAGE sql AS 'SELECT NULL::text[], NULL::timestamptz, true'",
            ] {
                let done = sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&db.app).await;
                assert!(done.is_err(), "the app role ran: {statement}");
            }
            // A grant of what it does not own only warns in PostgreSQL: check nothing changed.
            let _ = sqlx::raw_sql("GRANT ALL ON \"memberships\" TO PUBLIC").execute(&db.app).await;
            let (granted,): (i64,) = sqlx::query_as("SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'PUBLIC' AND table_name = 'memberships'")
                .fetch_one(&db.pool)
                .await
                .expect("read the grants");
            assert_eq!(granted, 0);
            db.drop().await;
        }

        #[tokio::test]
        async fn migrate_refuses_a_missing_or_privileged_app_role_before_applying_anything() {
            let db = TestDb::create().await;
            // A database of its own, empty, for the server binary's `migrate`.
            let empty = format!("{}_m", db.name);
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{empty}\""))).execute(&db.admin).await.expect("an empty database");
            let options: sqlx::postgres::PgConnectOptions = database_url().parse().expect("DATABASE_URL parses");
            let url = format!("postgres://{}@{}:{}/{empty}", options.get_username(), options.get_host(), options.get_port());
            let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
            let migrate = |role: Option<&str>| {
                let mut command = std::process::Command::new(env!(#server_bin));
                command.arg("migrate").env("MIGRATION_DATABASE_URL", &url).env("MIGRATIONS_DIR", migrations).env_remove("APP_ROLE");
                if let Some(role) = role {
                    command.env("APP_ROLE", role);
                }
                command.output().expect("run migrate")
            };
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options.clone().database(&empty)).await.expect("connect");
            let applied = || async {
                let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetch_one(&pool).await.expect("count tables");
                n
            };
            // Roles that could escape row-level security otherwise than as a superuser: one
            // that may create roles, one that may plant objects in the schema.
            let (creator, planter) = (format!("{}_creator", db.role), format!("{}_planter", db.role));
            for statement in [format!("CREATE ROLE \"{creator}\" LOGIN CREATEROLE"), format!("CREATE ROLE \"{planter}\" LOGIN")] {
                sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&db.admin).await.expect("a role of the test's");
            }
            sqlx::query(sqlx::AssertSqlSafe(format!("GRANT CREATE ON SCHEMA public TO \"{planter}\""))).execute(&pool).await.expect("grant CREATE");
            for (role, why) in [
                (None, "APP_ROLE is not set"),
                (Some("Not A Role"), "not a role name"),
                (Some("no_such_role_here"), "does not exist"),
                (Some(options.get_username()), "superuser"),
                (Some(creator.as_str()), "CREATEROLE"),
            ] {
                let output = migrate(role);
                let stderr = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
                assert!(!output.status.success(), "{role:?}");
                assert!(stderr.contains(why), "{role:?}: {stderr}");
                assert_eq!(applied().await, 0, "{role:?}: nothing is applied");
            }
            // Whether the role may create objects in the schema is known only after the
            // migrations (the first revokes that from everybody, as PostgreSQL before 15
            // granted it): refused then, before anything is granted to it.
            let output = migrate(Some(&planter));
            let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success() && said.contains("may create objects in schema"), "{said}");
            let (granted,): (bool,) = sqlx::query_as("SELECT has_table_privilege($1, 'memberships', 'SELECT')")
                .bind(&planter).fetch_one(&pool).await.expect("read the grants");
            assert!(!granted, "nothing granted to a refused role");
            let output = migrate(Some(&db.role));
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
            assert!(applied().await > 0);
            let (granted,): (bool,) = sqlx::query_as("SELECT has_table_privilege($1, 'memberships', 'SELECT') AND NOT has_table_privilege($1, 'memberships', 'TRUNCATE')")
                .bind(&db.role).fetch_one(&pool).await.expect("read the grants");
            assert!(granted);
            // Nor does the server serve as such a role (here the owner, a superuser): it stops
            // before anything else (in production it would fetch the issuer's keys next).
            let output = std::process::Command::new(env!(#server_bin))
                .arg("serve")
                .env("DATABASE_URL", &url)
                .env("BIND_ADDR", "127.0.0.1:0")
                .env_remove("APP_ENV")
                .output()
                .expect("run serve");
            let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success() && said.contains("DATABASE_URL: role"), "{said}");
            pool.close().await;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{empty}\" WITH (FORCE)"))).execute(&db.admin).await;
            for role in [&creator, &planter] {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{role}\""))).execute(&db.admin).await;
            }
            db.drop().await;
        }

        #[tokio::test]
        async fn a_small_pool_serving_many_tenants_never_carries_a_tenant_over() {
            let db = TestDb::create().await;
            let mut tenants = Vec::new();
            for i in 0..6 {
                let tenant = db.tenant(&format!("tenant {i}")).await;
                db.member(tenant, &format!("user-{i}"), ALL_ROLES).await;
                tenants.push(tenant);
            }
            // Sixty interleaved requests of six tenants over the app role's two connections.
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..10 {
                for (i, tenant) in tenants.iter().copied().enumerate() {
                    let app = db.app.clone();
                    tasks.spawn(async move {
                        // The guard's one-statement query, then a transaction of the tenant.
                        let own = server::tenant::standing(&app, tenant, &format!("user-{i}"), None).await.expect("standing");
                        let other = server::tenant::standing(&app, tenant, &format!("user-{}", (i + 1) % 6), None).await.expect("standing");
                        assert!(own.roles.is_some() && other.roles.is_none(), "tenant {i}");
                        let mut tx = server::tenant::begin(&app, tenant).await.expect("begin");
                        tokio::task::yield_now().await;
                        let subjects: Vec<(String,)> = sqlx::query_as("SELECT \"subject\" FROM \"memberships\"").fetch_all(&mut *tx).await.expect("read");
                        tx.commit().await.expect("commit");
                        (i, subjects)
                    });
                }
            }
            while let Some(done) = tasks.join_next().await {
                let (i, subjects) = done.expect("a task");
                assert_eq!(subjects, vec![(format!("user-{i}"),)]);
            }
            let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"memberships\"").fetch_one(&db.app).await.expect("count");
            assert_eq!(left, 0, "no tenant setting outlives its transaction");
            db.drop().await;
        }

        /// The data layer on `T`'s table: five rows created and read back, the first updated,
        /// pages of two that neither skip nor repeat a row, the last deleted; `other` (another
        /// tenant, for a tenant's table) sees, changes and deletes none of them. The first
        /// row's id (it is left for the custom actions).
        async fn exercise<T>(conn: &mut sqlx::PgConnection, tenancy: T::Tenancy, other: Option<T::Tenancy>, subject: &str, ids: &mut Ids, key: &'static str, sample: fn(i64, &Ids) -> T::Input) -> uuid::Uuid
        where
            T: server::store::Stored + PartialEq + std::fmt::Debug,
        {
            use server::store;
            for n in 0..5i64 {
                let input = sample(n, ids);
                let created = store::insert::<T>(conn, tenancy, subject, &input).await.expect("insert");
                let read = store::fetch::<T>(conn, tenancy, created.id(), false).await.expect("fetch").expect("row exists");
                assert_eq!(read, created);
                ids.push(key, created.id());
            }
            let first = ids.first(key);
            let changed = sample(100, ids);
            let updated = store::update::<T>(conn, tenancy, first, &changed).await.expect("update").expect("row exists");
            assert_eq!(updated.id(), first);
            if let Some(other) = other {
                assert!(store::fetch::<T>(conn, other, first, false).await.expect("fetch").is_none(), "{key} leaked across tenants");
                assert!(store::list::<T>(conn, other, None, 100).await.expect("list").items.is_empty());
                assert!(store::update::<T>(conn, other, first, &changed).await.expect("update").is_none());
                assert!(store::delete::<T>(conn, other, first).await.expect("delete").is_none());
            }
            // Every page, two rows at a time.
            let (mut listed, mut pages, mut after) = (Vec::new(), 0, None);
            loop {
                let page = store::list::<T>(conn, tenancy, after, 2).await.expect("list a page");
                assert!(page.items.len() <= 2);
                listed.extend(page.items.iter().map(T::id));
                pages += 1;
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            let mut expected = ids.of(key).to_vec();
            expected.sort();
            assert_eq!(listed, expected, "keyset pages of {key} skip or repeat rows");
            assert!(pages >= 3, "five rows two at a time take three pages");
            let last = ids.pop(key).expect("five rows");
            assert!(store::delete::<T>(conn, tenancy, last).await.expect("delete").is_some());
            assert!(store::fetch::<T>(conn, tenancy, last, false).await.expect("fetch").is_none());
            first
        }

        /// A list's scan reads at most what it is allowed to, keeps only what the caller may
        /// see, and tells where to go on: followed to the end, it skips and repeats nothing.
        async fn scans_stop_in_bounds<T>(db: &sqlx::PgPool, tenancy: T::Tenancy)
        where
            T: server::store::Stored + PartialEq + std::fmt::Debug,
        {
            use server::store;
            let all: Vec<uuid::Uuid> = store::scan::<T>(db, tenancy, None, 100, store::LIST_SCAN_LIMIT, |_| true).await.expect("scan").items.iter().map(T::id).collect();
            assert!(all.len() >= 2, "rows to scan");
            // Only the last row visible, at most `budget` rows read per request.
            for budget in [1, 2] {
                let (mut after, mut requests, mut kept) = (None, 0, Vec::new());
                loop {
                    let page = store::scan::<T>(db, tenancy, after, 100, budget, |row| Some(row.id()) == all.last().copied()).await.expect("scan");
                    kept.extend(page.items.iter().map(T::id));
                    requests += 1;
                    match page.next_after {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                assert_eq!(kept, all[all.len() - 1..], "the visible row, once");
                assert_eq!(requests, all.len().div_ceil(budget), "{budget} rows read per request");
            }
        }

        #[tokio::test]
        async fn repository_functions_run_against_postgres() {
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            let other = db.tenant("tenant b").await;
            let subject = "user-1";
            // A superuser connection: the repository's explicit tenant predicates are what is
            // tested here (row-level security is tested as the app role).
            let mut conn = db.pool.acquire().await.expect("a connection");
            let mut ids = Ids::default();
            #(#steps)*
            #scan_check
            drop(conn);
            let _ = (&tenant, &other, subject);
            db.drop().await;
        }
    };
    let (authorization, cases) = authorization_test(app, &order, conditions, &api);
    files.insert(&format!("{dir}/tests/{CASES_FILE}"), cases);
    let audit = audit_test(app, &api);
    let misrouted = misrouted_test(app, &api);
    let bounds = bounds_test(app, &api);
    let builtins = builtin_tests(app);
    // Writes, conditional reads (another tenant's member) and conditions send requests.
    let sends = app.resources.iter().any(|r| {
        r.actions.iter().any(|a| {
            write_checked(r, a)
                || ((a.condition.is_some() || a.kind == ActionKind::List)
                    && a.public.is_none()
                    && !r.global)
        })
    });
    let send = (sends || previous_bodies.is_some() || !app.builtin_operations().is_empty()).then(|| {
        quote! {
            /// Sends `body` as JSON with `token`; the status and the JSON answer.
            async fn send(app: &axum::Router, method: &str, path: &str, token: &str, body: Option<serde_json::Value>) -> (StatusCode, serde_json::Value) {
                let request = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).expect("a method"))
                    .uri(path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                    .expect("a request");
                let response = app.clone().oneshot(request).await.expect("a response");
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("the body");
                (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
            }
        }
    });
    let tokens = quote! {
        #tokens
        #send
        #authorization
        #audit
        #misrouted
        #bounds
        #builtins
    };
    let issuer = issuer_tests();
    let domains = domain_test(app);
    let tokens = quote! {
        #tokens
        #issuer
        #domains
    };
    files.insert_rust(&format!("{dir}/tests/service.rs"), tokens)?;
    files.insert_rust(
        &format!("{dir}/benches/guard.rs"),
        super::bench::guard_bench(app, &api),
    )?;
    files.insert_rust(
        &format!("{dir}/benches/isolation.rs"),
        super::bench::isolation_bench(app, &api),
    )
}

/// Tests of the `oidc` module against a real HTTPS server on loopback, with a certificate
/// authority made for the test run (a module of the service's tests, whose domain test uses
/// the same server). The server is a few lines of HTTP/1.1 over tokio-rustls: an axum router
/// here would be a route outside the guard, which `bulwark audit` refuses.
fn issuer_tests() -> TokenStream {
    quote! {
        mod issuer {
        //! The identity provider over the network: discovery (PKCE `S256` required), keys,
        //! refresh on an unknown key id (rate-limited), certificate verification and the SSRF
        //! rules of the production fetcher, against an HTTPS server on loopback whose
        //! certificate comes from a certificate authority made for this run.

        use server::identity::{self, dev};
        use server::oidc::{self, Fetcher, KeySource};
        use std::collections::HashMap;
        use std::net::IpAddr;
        use std::sync::{Arc, Mutex};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls;

        /// A certificate authority of the test: its root (DER) and a server configuration with
        /// a certificate for `localhost` it issued.
        pub(super) fn test_ca() -> (Vec<u8>, rustls::ServerConfig) {
            test_ca_for("localhost")
        }

        /// The same, with a certificate for `name`.
        pub(super) fn test_ca_for(name: &str) -> (Vec<u8>, rustls::ServerConfig) {
            let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA parameters");
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("a CA key")).expect("a test CA");
            let key = rcgen::KeyPair::generate().expect("a server key");
            let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
                .expect("server parameters")
                .signed_by(&key, &ca)
                .expect("a server certificate");
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .expect("the server certificate");
            (ca.der().to_vec(), config)
        }

        /// What the test server answers: path → (status, body), and how often each was asked.
        #[derive(Default)]
        pub(super) struct Pages {
            pub(super) answers: HashMap<String, (u16, String)>,
            pub(super) hits: HashMap<String, usize>,
        }

        /// An HTTPS server on a loopback port; its base URL (`https://localhost:PORT`).
        pub(super) async fn listen(config: rustls::ServerConfig, pages: Arc<Mutex<Pages>>) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
            let port = listener.local_addr().expect("its address").port();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    let pages = pages.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let head = String::from_utf8_lossy(&head);
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                        let (status, body) = {
                            let mut pages = pages.lock().expect("pages");
                            *pages.hits.entry(path.clone()).or_default() += 1;
                            pages.answers.get(&path).cloned().unwrap_or((404, String::new()))
                        };
                        let location = if status == 302 { "Location: /jwks\r\n" } else { "" };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{location}Connection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.write_all(response.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
            format!("https://localhost:{port}")
        }

        /// A discovery document for `issuer`.
        fn discovery(issuer: &str, pkce: &[&str]) -> String {
            serde_json::json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/jwks"),
                "code_challenge_methods_supported": pkce,
            })
            .to_string()
        }

        /// The public halves of `keys`, as one JWKS.
        fn jwks(keys: &[&(Vec<u8>, String)]) -> String {
            let keys: Vec<serde_json::Value> = keys
                .iter()
                .flat_map(|(_, jwks)| {
                    let set: serde_json::Value = serde_json::from_str(jwks).expect("a JWKS");
                    set["keys"].as_array().cloned().unwrap_or_default()
                })
                .collect();
            serde_json::json!({ "keys": keys }).to_string()
        }

        fn token(key: &(Vec<u8>, String), kid: &str) -> String {
            let claims = dev::claims("user-1", uuid::Uuid::now_v7(), "", &[], identity::now(), 60);
            dev::mint(&key.0, kid, &claims).expect("a token")
        }

        /// An issuer on loopback with keys `k1` (served) and `k2` (not yet): the issuer URL,
        /// its pages, the test CA's root and both keys.
        async fn issuer(pkce: &[&str]) -> (String, Arc<Mutex<Pages>>, Vec<u8>, [(Vec<u8>, String); 2]) {
            let (root, config) = test_ca();
            let pages = Arc::new(Mutex::new(Pages::default()));
            let url = listen(config, pages.clone()).await;
            let k1 = dev::generate("k1").expect("a key");
            let k2 = dev::generate("k2").expect("a key");
            {
                let mut p = pages.lock().expect("pages");
                p.answers.insert("/.well-known/openid-configuration".into(), (200, discovery(&url, pkce)));
                p.answers.insert("/jwks".into(), (200, jwks(&[&k1])));
                p.answers.insert("/moved".into(), (302, String::new()));
            }
            (url, pages, root, [k1, k2])
        }

        #[tokio::test]
        async fn keys_come_from_the_issuer_and_refresh_on_an_unknown_key_at_most_once_per_interval() {
            let (url, pages, root, [k1, k2]) = issuer(&["plain", "S256"]).await;
            let fetcher = Fetcher::with_roots(&[root], true, &[]).expect("a fetcher");
            let source = KeySource::from_issuer(fetcher, &url).await.expect("the issuer's keys");
            assert!(source.verify(&token(&k1, "k1"), identity::now()).await.is_ok());
            // The issuer rotates: a token under the new key makes the service fetch again.
            pages.lock().expect("pages").answers.insert("/jwks".into(), (200, jwks(&[&k1, &k2])));
            assert!(source.verify(&token(&k2, "k2"), identity::now()).await.is_ok());
            assert_eq!(pages.lock().expect("pages").hits.get("/jwks"), Some(&2));
            // Made-up key ids do not make it hammer the issuer.
            for _ in 0..5 {
                assert_eq!(source.verify(&token(&k2, "k3"), identity::now()).await, Err("unknown key"));
            }
            assert_eq!(pages.lock().expect("pages").hits.get("/jwks"), Some(&2));
        }

        #[tokio::test]
        async fn a_key_the_issuer_withdrew_stops_being_trusted_once_the_keys_are_old() {
            let (url, pages, root, [k1, k2]) = issuer(&["S256"]).await;
            let fetcher = Fetcher::with_roots(&[root], true, &[]).expect("a fetcher");
            let source = KeySource::from_issuer(fetcher, &url).await.expect("the issuer's keys");
            assert!(source.verify(&token(&k1, "k1"), identity::now()).await.is_ok());
            // The issuer withdraws k1; tokens naming it are still presented. Young keys are
            // kept; old ones are fetched again, and k1 is gone.
            pages.lock().expect("pages").answers.insert("/jwks".into(), (200, jwks(&[&k2])));
            assert!(source.verify(&token(&k1, "k1"), identity::now()).await.is_ok());
            let source = source.with_max_key_age(std::time::Duration::ZERO);
            assert_eq!(source.verify(&token(&k1, "k1"), identity::now()).await, Err("unknown key"));
            assert_eq!(pages.lock().expect("pages").hits.get("/jwks"), Some(&2));
        }

        #[tokio::test]
        async fn keys_the_issuer_cannot_be_asked_about_for_too_long_are_no_longer_trusted() {
            let (url, pages, root, [k1, _]) = issuer(&["S256"]).await;
            let fetcher = Fetcher::with_roots(&[root], true, &[]).expect("a fetcher");
            let source = KeySource::from_issuer(fetcher, &url).await.expect("the issuer's keys");
            // The keys can no longer be fetched (someone keeps the service from them): held
            // keys serve while young, and none once older than their life.
            pages.lock().expect("pages").answers.insert("/jwks".into(), (503, String::new()));
            let source = source.with_max_key_age(std::time::Duration::ZERO);
            assert!(source.verify(&token(&k1, "k1"), identity::now()).await.is_ok(), "young keys serve");
            let source = source.with_max_key_life(std::time::Duration::ZERO);
            assert_eq!(source.verify(&token(&k1, "k1"), identity::now()).await, Err("issuer keys too old"));
        }

        #[tokio::test]
        async fn an_issuer_without_pkce_s256_is_refused_at_start() {
            let (url, _, root, _) = issuer(&["plain"]).await;
            let fetcher = Fetcher::with_roots(&[root], true, &[]).expect("a fetcher");
            let error = KeySource::from_issuer(fetcher, &url).await.expect_err("no S256, no start");
            assert!(error.contains("S256"), "{error}");
        }

        #[tokio::test]
        async fn a_discovery_document_of_another_issuer_is_refused() {
            let (url, pages, root, _) = issuer(&["S256"]).await;
            // `{url}/other` serves a discovery document, but the one of `{url}`.
            pages.lock().expect("pages").answers.insert("/other/.well-known/openid-configuration".into(), (200, discovery(&url, &["S256"])));
            let fetcher = Fetcher::with_roots(&[root], true, &[]).expect("a fetcher");
            let error = KeySource::from_issuer(fetcher, &format!("{url}/other")).await.expect_err("another issuer");
            assert!(error.contains("another issuer"), "{error}");
        }

        #[tokio::test]
        async fn certificates_are_verified_and_redirects_not_followed() {
            let (url, _, root, _) = issuer(&["S256"]).await;
            let (other_root, _) = test_ca();
            let untrusting = Fetcher::with_roots(&[other_root], true, &[]).expect("a fetcher");
            assert!(untrusting.get_json(&format!("{url}/jwks")).await.is_err(), "a certificate of an unknown authority");
            let fetcher = Fetcher::with_roots(&[root], true, &[]).expect("a fetcher");
            assert!(fetcher.get_json(&format!("{url}/jwks")).await.is_ok());
            let error = fetcher.get_json(&format!("{url}/moved")).await.expect_err("a redirect");
            assert!(error.contains("302"), "{error}");
            let plain = url.replacen("https://", "http://", 1);
            let error = fetcher.get_json(&format!("{plain}/jwks")).await.expect_err("plain HTTP");
            assert!(error.contains("HTTPS"), "{error}");
        }

        #[tokio::test]
        async fn the_production_fetcher_reaches_no_internal_address() {
            let (url, pages, root, _) = issuer(&["S256"]).await;
            let port = url.rsplit(':').next().expect("a port");
            // A fetcher that trusts the test's authority and refuses loopback addresses
            // reaches nothing on loopback, whether by name or by address; the same fetcher
            // allowed loopback reaches the server, so only the address check stands between.
            let trusting = Fetcher::with_roots(std::slice::from_ref(&root), false, &[]).expect("a fetcher");
            assert!(trusting.get_json(&format!("{url}/jwks")).await.is_err(), "`localhost` resolves to loopback only");
            for literal in [format!("https://127.0.0.1:{port}/jwks"), format!("https://[::1]:{port}/jwks")] {
                let error = trusting.get_json(&literal).await.expect_err("a loopback address");
                assert!(error.contains("not a public address"), "{literal}: {error}");
            }
            assert_eq!(pages.lock().expect("pages").hits.get("/jwks"), None, "nothing reached the loopback server");
            let allowed = Fetcher::with_roots(&[root], true, &[]).expect("a fetcher");
            assert!(allowed.get_json(&format!("{url}/jwks")).await.is_ok());
            pages.lock().expect("pages").hits.clear();
            // The production fetcher refuses each for its address (not for a certificate it
            // does not trust, nor for silence: that would prove nothing).
            let fetcher = Fetcher::public().expect("the production fetcher");
            for (target, reason) in [
                (format!("{url}/jwks"), "has no public address"),
                (format!("https://127.0.0.1:{port}/jwks"), "is not a public address"),
                (format!("https://[::1]:{port}/jwks"), "is not a public address"),
                ("https://169.254.169.254/latest/meta-data".to_owned(), "is not a public address"),
                ("https://10.0.0.1/jwks".to_owned(), "is not a public address"),
                ("https://user:secret@example.com/jwks".to_owned(), "carries credentials"),
            ] {
                let error = fetcher.get_json(&target).await.expect_err("refused");
                assert!(error.contains(reason), "{target}: {error}");
            }
            assert_eq!(pages.lock().expect("pages").hits.get("/jwks"), None, "nothing reached the loopback server");
        }

        #[test]
        fn only_global_unicast_addresses_are_public() {
            for (address, public) in [
                ("8.8.8.8", true),
                ("2606:4700:4700::1111", true),
                ("127.0.0.1", false),
                ("10.1.2.3", false),
                ("172.16.0.1", false),
                ("192.168.1.1", false),
                ("169.254.169.254", false),
                ("100.64.0.1", false),
                ("0.0.0.0", false),
                ("255.255.255.255", false),
                ("224.0.0.1", false),
                ("198.18.0.1", false),
                ("::1", false),
                ("::", false),
                ("fd00::1", false),
                ("fe80::1", false),
                ("::ffff:127.0.0.1", false),
                ("::ffff:8.8.8.8", true),
                ("64:ff9b::a00:1", false),
                ("2001:db8::1", false),
                ("64:ff9b:1::a9fe:a9fe", false),
                ("2002:a9fe:a9fe::1", false),
                ("2002:808:808::1", true),
                ("::a9fe:a9fe", false),
                ("::ffff:0:a9fe:a9fe", false),
                ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false),
            ] {
                let ip: IpAddr = address.parse().expect("an address");
                assert_eq!(oidc::is_public(ip), public, "{address}");
            }
        }
        }
    }
}

/// Tests of the built-in routes: memberships managed by the spec's admins (role changes end
/// sessions, locked roles only by the operator command), sessions revoked by them and by
/// machine callers, each change and refusal in the audit trail.
fn builtin_tests(app: &App) -> TokenStream {
    let builtins = app.builtin_operations();
    let version = format!("/{}", app.api_version);
    let members = app.admins.as_ref().map(|admins| {
        let admin_role = &admins.roles[0];
        let non_admin: Option<&str> = app
            .roles
            .iter()
            .map(|r| r.name.as_str())
            .find(|r| !admins.roles.iter().any(|a| a == r));
        let non_admin = match non_admin {
            Some(role) => quote!(Some(#role)),
            None => quote!(None::<&str>),
        };
        let members = format!("{version}/memberships");
        let revoke = format!("{version}/sessions/revoke");
        quote! {
            #[tokio::test]
            async fn memberships_are_managed_through_guarded_routes() {
                let Some((op, path)) = guarded_operation() else { return };
                let db = TestDb::create().await;
                let tenant = db.tenant("tenant a").await;
                let other = db.tenant("tenant b").await;
                db.member(tenant, "admin", &[#admin_role]).await;
                db.member(other, "stranger", &[#admin_role]).await;
                let app = router_on(db.app.clone());
                let now = identity::now();
                let admin = signed(&dev::claims("admin", tenant.id(), &all_scopes(), &["mfa"], now, 60));
                let member = |name: &str| format!("{}/{name}", #members);
                let (roles, locked) = server::members::environment("production");
                let open = roles.iter().find(|r| !locked.contains(r)).copied();

                // A grant adds a member, ending tokens issued before it (a member removed and
                // added again gets none of them back); a role change ends the member's sessions.
                let (status, body) = send(&app, "PUT", &member("newbie"), &admin, Some(serde_json::json!({"roles": open.into_iter().collect::<Vec<_>>()}))).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["subject"], "newbie");
                let earlier = signed(&dev::claims("newbie", tenant.id(), &all_scopes(), &["mfa"], now - 5, 60));
                assert_eq!(call_on(&app, op.method, &path, Some(&earlier)).await.status(), StatusCode::UNAUTHORIZED, "a new membership ends earlier tokens");
                let (granted_at,): (i64,) = sqlx::query_as("SELECT extract(epoch FROM \"revoked_at\")::bigint FROM \"memberships\" WHERE \"tenant_id\" = $1 AND \"subject\" = 'newbie'")
                    .bind(tenant.id()).fetch_one(&db.pool).await.expect("the membership");
                let before = signed(&dev::claims("newbie", tenant.id(), &all_scopes(), &["mfa"], granted_at.unsigned_abs() + 1, 60));
                assert_ne!(call_on(&app, op.method, &path, Some(&before)).await.status(), StatusCode::UNAUTHORIZED);
                // Revocations count in whole seconds: the change comes a second after `before`.
                while identity::now() <= granted_at.unsigned_abs() + 1 {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                let (status, body) = send(&app, "PUT", &member("newbie"), &admin, Some(serde_json::json!({"roles": []}))).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                if open.is_some() {
                    assert_eq!(call_on(&app, op.method, &path, Some(&before)).await.status(), StatusCode::UNAUTHORIZED, "a role change ends earlier tokens");
                }
                let (grants,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"action\" = 'membership.grant' AND \"resource_id\" = 'newbie' AND \"outcome\" = 'allowed' AND \"actor\" = 'admin'")
                    .bind(tenant.id()).fetch_one(&db.pool).await.expect("count grants");
                assert_eq!(grants, 2);

                // Roles the spec does not define are refused.
                let (status, _) = send(&app, "PUT", &member("newbie"), &admin, Some(serde_json::json!({"roles": ["no such role"]}))).await;
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

                // Locked roles: not through the service, only by the operator command.
                if let Some(locked) = locked.first() {
                    let (status, body) = send(&app, "PUT", &member("newbie"), &admin, Some(serde_json::json!({"roles": [locked]}))).await;
                    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
                    assert!(body["detail"].as_str().is_some_and(|d| d.contains("locked")), "{body}");
                    let (refusals,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"outcome\" = 'denied' AND \"detail\" ->> 'reason' = 'locked_role'")
                        .bind(tenant.id()).fetch_one(&db.pool).await.expect("count refusals");
                    assert_eq!(refusals, 1);
                    let granted = server::members::grant(&db.pool, "production", tenant, "newbie", &[(*locked).to_owned()], "test").await.expect("the operator grants it");
                    assert_eq!(granted.roles, vec![(*locked).to_owned()]);
                    let (operator_events,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"system_audit_events\" WHERE \"actor\" = 'operator:test' AND \"action\" = 'membership.grant' AND \"resource_id\" = 'newbie'")
                        .fetch_one(&db.pool).await.expect("count operator events");
                    assert_eq!(operator_events, 1);
                    let (status, _) = send(&app, "DELETE", &member("newbie"), &admin, None).await;
                    assert_eq!(status, StatusCode::FORBIDDEN, "a member holding a locked role stays");
                }

                // The list holds this tenant's members only.
                let (status, body) = send(&app, "GET", #members, &admin, None).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let subjects: Vec<&str> = body["items"].as_array().expect("items").iter().filter_map(|m| m["subject"].as_str()).collect();
                assert_eq!(subjects, ["admin", "newbie"]);
                let stranger = signed(&dev::claims("stranger", other.id(), &all_scopes(), &["mfa"], now, 60));
                let (_, body) = send(&app, "GET", #members, &stranger, None).await;
                assert_eq!(body["items"].as_array().map(Vec::len), Some(1), "{body}");
                // Another tenant's admin cannot touch this tenant's members: there they do not exist.
                let (status, _) = send(&app, "DELETE", &member("admin"), &stranger, None).await;
                assert_eq!(status, StatusCode::NOT_FOUND);

                // Removing and revoking.
                let (status, _) = send(&app, "PUT", &member("temp"), &admin, Some(serde_json::json!({"roles": []}))).await;
                assert_eq!(status, StatusCode::OK);
                let temp = signed(&dev::claims("temp", tenant.id(), &all_scopes(), &["mfa"], now - 5, 60));
                let (status, _) = send(&app, "POST", #revoke, &admin, Some(serde_json::json!({"subject": "temp"}))).await;
                assert_eq!(status, StatusCode::NO_CONTENT);
                assert_eq!(call_on(&app, op.method, &path, Some(&temp)).await.status(), StatusCode::UNAUTHORIZED, "revoked sessions end");
                let (status, _) = send(&app, "POST", #revoke, &admin, Some(serde_json::json!({"subject": "nobody"}))).await;
                assert_eq!(status, StatusCode::NOT_FOUND);
                let (status, _) = send(&app, "DELETE", &member("temp"), &admin, None).await;
                assert_eq!(status, StatusCode::NO_CONTENT);
                let (status, _) = send(&app, "DELETE", &member("temp"), &admin, None).await;
                assert_eq!(status, StatusCode::NOT_FOUND);

                // A member without an admin role is refused by the policies, and the refusal
                // recorded. (Keeping the member's own roles: a change of a role locked in
                // production would be refused for that reason first.)
                if let Some(role) = #non_admin {
                    db.member(tenant, "plain", &[role]).await;
                    let plain = signed(&dev::claims("plain", tenant.id(), &all_scopes(), &["mfa"], now, 60));
                    let (status, body) = send(&app, "PUT", &member("plain"), &plain, Some(serde_json::json!({"roles": [role]}))).await;
                    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
                    let (denials,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"actor\" = 'plain' AND \"outcome\" = 'denied' AND \"action\" = 'membership.grant' AND \"detail\" ->> 'reason' IS DISTINCT FROM 'locked_role'")
                        .bind(tenant.id()).fetch_one(&db.pool).await.expect("count denials");
                    assert_eq!(denials, 1);
                    // Nor does such a member learn who is one: a subject that is none is
                    // refused like one that is.
                    for subject in ["nobody", "plain"] {
                        let (status, body) = send(&app, "DELETE", &member(subject), &plain, None).await;
                        assert_eq!(status, StatusCode::FORBIDDEN, "removing {subject}: {body}");
                        let (status, body) = send(&app, "POST", #revoke, &plain, Some(serde_json::json!({"subject": subject}))).await;
                        assert_eq!(status, StatusCode::FORBIDDEN, "revoking {subject}'s sessions: {body}");
                    }
                }

                // The only member able to manage a tenant's memberships cannot give that up,
                // in an environment where the role is not locked (which refuses it before).
                let unlocked = server::members::ENVIRONMENTS.iter().map(|(name, _, _)| *name).find(|name| {
                    let (roles, locked) = server::members::environment(name);
                    roles.contains(&#admin_role) && !locked.contains(&#admin_role)
                });
                if let Some(environment) = unlocked {
                    let keys = Keys::from_jwks(&test_key().1).expect("the test JWKS loads");
                    let unthrottled = server::guard::ClassLimits { public: None, sensitive: None, standard: None, unauthenticated: None };
                    let auth = Authority::new(keys, db.app.clone()).expect("the policies load").with_rate_limits(unthrottled).in_environment(environment);
                    let app = server::router(server::AppState { db: db.app.clone(), auth: std::sync::Arc::new(auth) });
                    let lone = db.tenant("tenant c").await;
                    db.member(lone, "lone", &[#admin_role]).await;
                    let token = signed(&dev::claims("lone", lone.id(), &all_scopes(), &["mfa"], identity::now(), 60));
                    let (status, body) = send(&app, "DELETE", &member("lone"), &token, None).await;
                    assert_eq!(status, StatusCode::CONFLICT, "the last admin removed, in {environment}: {body}");
                    let (status, body) = send(&app, "PUT", &member("lone"), &token, Some(serde_json::json!({"roles": []}))).await;
                    assert_eq!(status, StatusCode::CONFLICT, "the last admin's role taken, in {environment}: {body}");
                    let (refusals,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"actor\" = 'lone' AND \"outcome\" = 'denied' AND \"detail\" ->> 'reason' = 'leaves_no_admin'")
                        .bind(lone.id())
                        .fetch_one(&db.pool)
                        .await
                        .expect("count refusals");
                    assert_eq!(refusals, 2, "both refusals are in the trail");
                }

                // Someone who is no member, repeating a request on a route without a rate
                // limit, cannot fill the system trail: past the caller's budget, refusals are
                // refused as before but only logged. (The budget refills by one a second:
                // twice it in refusals, in far less than a minute, stores well short of all.)
                let unthrottled = server::OPERATIONS.iter().find(|o| {
                    !o.public && matches!(o.class, server::guard::RouteClass::Standard) && o.rate_limit.is_none() && !o.path.contains('{')
                });
                if let Some(operation) = unthrottled {
                    let outsider = signed(&dev::claims("outsider", tenant.id(), &all_scopes(), &["mfa"], now, 60));
                    let budget = server::audit::STORED_REFUSALS.get();
                    for _ in 0..2 * budget {
                        let status = call_on(&app, operation.method, operation.path, Some(&outsider)).await.status();
                        assert_eq!(status, StatusCode::FORBIDDEN);
                    }
                    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"system_audit_events\" WHERE \"actor\" = 'outsider' AND \"outcome\" = 'denied'")
                        .fetch_one(&db.pool).await.expect("count refusals");
                    assert!(stored >= i64::from(budget) && stored < i64::from(2 * budget), "refusals stored up to the budget: {stored}");
                }
                db.drop().await;
            }
        }
    });
    let machines = app.identity.machine_scope.as_ref().map(|scope| {
        let revoke = format!("{version}/sessions/revoke");
        let members = format!("{version}/memberships");
        let on_members = app.admins.is_some().then(|| {
            quote! {
                let (status, _) = send(&app, "GET", #members, &machine, None).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "machine callers do not manage members");
            }
        });
        quote! {
            /// A client-credentials token (RFC 9068 §2.2): no tenant claim, the client as
            /// `client_id` and `sub`, no user.
            fn machine_token(client: &str, scopes: &str) -> String {
                let mut claims = dev::claims(client, uuid::Uuid::now_v7(), scopes, &[], identity::now(), 60);
                let fields = claims.as_object_mut().expect("claims are an object");
                fields.remove(identity::TENANT_CLAIM);
                fields.remove(identity::EMAIL_CLAIM);
                fields.remove("email_verified");
                fields.insert("client_id".into(), client.into());
                signed(&claims)
            }

            #[tokio::test]
            async fn machine_callers_revoke_sessions_and_nothing_else() {
                let Some((op, path)) = guarded_operation() else { return };
                let db = TestDb::create().await;
                let tenant = db.tenant("tenant a").await;
                db.member(tenant, "user-1", ALL_ROLES).await;
                let app = router_on(db.app.clone());
                let before = signed(&dev::claims("user-1", tenant.id(), &all_scopes(), &["mfa"], identity::now() - 5, 60));
                assert_ne!(call_on(&app, op.method, &path, Some(&before)).await.status(), StatusCode::UNAUTHORIZED);
                let machine = machine_token("idp-hook", #scope);
                let (status, body) = send(&app, "POST", #revoke, &machine, Some(serde_json::json!({"subject": "user-1", "reason": "password_change"}))).await;
                assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
                assert_eq!(call_on(&app, op.method, &path, Some(&before)).await.status(), StatusCode::UNAUTHORIZED, "a password change ends every session");
                let (reason,): (Option<String>,) = sqlx::query_as("SELECT \"detail\" ->> 'reason' FROM \"system_audit_events\" WHERE \"actor\" = 'machine:idp-hook' AND \"action\" = 'session.revoke' AND \"resource_id\" = 'user-1' AND \"outcome\" = 'allowed'")
                    .fetch_one(&db.pool).await.expect("the revocation is recorded");
                assert_eq!(reason.as_deref(), Some("password_change"));
                // Without the machine scope: refused, and recorded.
                let unscoped = machine_token("idp-hook", "unrelated.scope");
                let (status, _) = send(&app, "POST", #revoke, &unscoped, Some(serde_json::json!({"subject": "user-1"}))).await;
                assert_eq!(status, StatusCode::FORBIDDEN);
                let (denials,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"system_audit_events\" WHERE \"actor\" = 'machine:idp-hook' AND \"outcome\" = 'denied'")
                    .fetch_one(&db.pool).await.expect("count denials");
                assert_eq!(denials, 1);
                // Everywhere else a token without a tenant is no credential.
                let status = call_on(&app, op.method, &path, Some(&machine)).await.status();
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                // Nor is a user's token without the tenant claim, even with the machine
                // scope, nor a client's token for another subject: neither is a client's own.
                let mut users = dev::claims("user-1", tenant.id(), #scope, &["pwd"], identity::now(), 60);
                let fields = users.as_object_mut().expect("claims are an object");
                fields.remove(identity::TENANT_CLAIM);
                fields.insert("client_id".into(), "idp-hook".into());
                let mut borrowed = users.clone();
                let (status, _) = send(&app, "POST", #revoke, &signed(&users), Some(serde_json::json!({"subject": "user-2"}))).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "a user's token is no machine's");
                let fields = borrowed.as_object_mut().expect("claims are an object");
                fields.remove("amr");
                fields.remove(identity::EMAIL_CLAIM);
                let (status, _) = send(&app, "POST", #revoke, &signed(&borrowed), Some(serde_json::json!({"subject": "user-2"}))).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "sub is not the client");
                #on_members
                db.drop().await;
            }
        }
    });
    if builtins.is_empty() {
        return TokenStream::new();
    }
    let matrix = builtin_matrix(app);
    quote! {
        #members
        #machines
        #matrix
    }
}

/// The role × operation matrix of the built-in routes members call: each role alone, with
/// and without a second factor, expected from the spec's `tenancy.admins`, the roles'
/// `mfa` and the production role templates (computed here, not by the generated policies).
fn builtin_matrix(app: &App) -> TokenStream {
    let calls: Vec<TokenStream> = app
        .builtin_operations()
        .into_iter()
        .filter(|op| !op.roles.is_empty())
        .map(|op| {
            // Requests that pass the guard without changing what the next one finds: no
            // claimed domain is verified (nothing is fetched), no member's roles change.
            let path = op
                .path
                .replace("{subject}", "matrix-subject")
                .replace("{domain}", "unclaimed.example");
            let body = match op.id {
                "membership.grant" => r#"{"roles":[]}"#,
                "domain.add" => r#"{"domain":"matrix.example"}"#,
                "session.revoke" => r#"{"subject":"matrix-subject"}"#,
                _ => "",
            };
            let (id, method) = (op.id, op.method);
            quote!((#id, #method, #path, #body))
        })
        .collect();
    let Some(admins) = app.admins.as_ref().filter(|_| !calls.is_empty()) else {
        return TokenStream::new();
    };
    let production = app.environments.iter().find(|e| e.name == "production");
    let expectations = app.roles.iter().flat_map(|role| {
        let counts = admins.roles.contains(&role.name)
            && production.is_none_or(|env| env.roles.contains(&role.name));
        [false, true].map(|mfa| {
            let expected = Literal::u16_unsuffixed(match (counts, role.mfa_required && !mfa) {
                (true, false) => 200,
                (true, true) => 401,
                (false, _) => 403,
            });
            let name = role.name.as_str();
            quote!((#name, #mfa, #expected))
        })
    });
    quote! {
        /// Each built-in route members call, for a member holding each role alone, with and
        /// without a second factor: past the guard (200 here: any answer but a refusal)
        /// where the role is one of `tenancy.admins` that counts, the step-up challenge
        /// where it would count with a second factor, else 403. Expected from the spec,
        /// not from the policies.
        #[tokio::test]
        async fn built_in_routes_answer_every_role_as_the_spec_says() {
            const CALLS: &[(&str, &str, &str, &str)] = &[#(#calls),*];
            const EXPECTED: &[(&str, bool, u16)] = &[#(#expectations),*];
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            let app = router_on(db.app.clone());
            for (role, mfa, expected) in EXPECTED {
                let caller = format!("matrix-{role}-{mfa}");
                db.member(tenant, &caller, &[*role]).await;
                let amr: &[&str] = if *mfa { &["mfa"] } else { &[] };
                let token = signed(&dev::claims(&caller, tenant.id(), &all_scopes(), amr, identity::now(), 60));
                for (id, method, path, body) in CALLS {
                    let mut request = Request::builder()
                        .method(Method::from_bytes(method.as_bytes()).expect("valid method"))
                        .uri(*path)
                        .header(header::AUTHORIZATION, format!("Bearer {token}"));
                    if !body.is_empty() {
                        request = request.header(header::CONTENT_TYPE, "application/json");
                    }
                    let request = request.body(Body::from(*body)).expect("valid request");
                    let response = app.clone().oneshot(request).await.expect("the router answers");
                    let status = response.status();
                    let case = format!("{id} by {role}, second factor: {mfa}: {status}");
                    match expected {
                        200 => assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN && !status.is_server_error(), "{case}"),
                        401 => {
                            assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
                            assert!(challenge(&response).contains("insufficient_user_authentication"), "{case}");
                        }
                        _ => assert_eq!(status, StatusCode::FORBIDDEN, "{case}"),
                    }
                }
            }
            db.drop().await;
        }
    }
}

/// `TestDb`: a database of its own for a test run (or a benchmark), migrated, dropped at
/// the end, with helpers to add tenants and members.
pub fn test_db(db_prefix: &str) -> TokenStream {
    quote! {
        /// A database of its own for one test run, dropped at the end, with an owner role and
        /// an app role of its own (roles are cluster-wide, so the names are unique to the run).
        struct TestDb {
            admin: sqlx::PgPool,
            name: String,
            /// The test's superuser connections: seeding and checking, around row-level
            /// security.
            pool: sqlx::PgPool,
            /// The app role's connections, as the server uses them: not a superuser, owns
            /// nothing, holds only what `grants` gives, so row-level security applies.
            app: sqlx::PgPool,
            role: String,
            /// The owner role: owns the database, ran the migrations and the grants.
            owner: String,
            /// Set by [`TestDb::drop`]; without it (a test that panicked) dropping the value
            /// still removes the database and the roles.
            dropped: bool,
        }

        impl Drop for TestDb {
            fn drop(&mut self) {
                if self.dropped {
                    return;
                }
                // The test's runtime may be unwinding, and its connections belong to it: a
                // thread of its own connects afresh and removes what the run created.
                let (name, role, owner) = (self.name.clone(), self.role.clone(), self.owner.clone());
                let cleanup = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                    runtime.block_on(async move {
                        use sqlx::Connection;
                        if let Ok(mut admin) = sqlx::PgConnection::connect(&database_url()).await {
                            remove_run(&mut admin, &name, [&role, &owner]).await;
                        }
                    });
                });
                let _ = cleanup.join();
            }
        }

        /// Removes a test run's database (its connections too) and roles.
        async fn remove_run(admin: &mut sqlx::PgConnection, name: &str, roles: [&str; 2]) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).execute(&mut *admin).await;
            for role in roles {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{role}\""))).execute(&mut *admin).await;
            }
        }

        impl TestDb {
            async fn create() -> TestDb {
                let admin = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&database_url()).await.expect("PostgreSQL is reachable at DATABASE_URL");
                // Unique per run (process id, time) and per test of the run (a counter: tests
                // start in parallel, within the clock's resolution of each other).
                static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
                let unique = format!("{}_{nanos}_{}", std::process::id(), CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                let name = format!("{}_{unique}", #db_prefix);
                let role = format!("app_{unique}");
                let owner = format!("owner_{unique}");
                // The names are ASCII letters, digits and underscores, made here. The owner
                // is not a superuser either: it owns the database and runs the migrations.
                for statement in [
                    format!("CREATE ROLE \"{owner}\" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"),
                    format!("CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"),
                    format!("CREATE DATABASE \"{name}\" OWNER \"{owner}\""),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&admin).await.expect("create the test roles and database");
                }
                let options: sqlx::postgres::PgConnectOptions = database_url().parse().expect("DATABASE_URL parses");
                let migrator = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options.clone().database(&name).username(&owner)).await.expect("connect as the owner");
                // Every migration in order, as `migrate` applies them.
                let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
                let mut migrations: Vec<std::path::PathBuf> = std::fs::read_dir(folder).expect("the migrations folder").map(|e| e.expect("an entry").path()).filter(|p| p.extension().is_some_and(|x| x == "sql")).collect();
                migrations.sort();
                for path in migrations {
                    let sql = std::fs::read_to_string(&path).expect("a migration");
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&migrator).await.unwrap_or_else(|e| panic!("{} applies as the owner: {e}", path.display()));
                }
                server::grants::grant_app_role(&migrator, &role).await.expect("the owner grants the app role");
                migrator.close().await;
                let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_with(options.clone().database(&name)).await.expect("connect to the test database");
                let app = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_with(options.database(&name).username(&role)).await.expect("connect as the app role");
                TestDb { admin, name, pool, app, role, owner, dropped: false }
            }

            async fn drop(mut self) {
                self.app.close().await;
                self.pool.close().await;
                if let Ok(mut admin) = self.admin.acquire().await {
                    remove_run(&mut admin, &self.name, [&self.role, &self.owner]).await;
                }
                self.dropped = true;
            }

            /// Makes `subject` a member of `tenant` with `roles`.
            async fn member(&self, tenant: TenantId, subject: &str, roles: &[&str]) {
                sqlx::query("INSERT INTO \"memberships\" (\"tenant_id\", \"subject\", \"roles\") VALUES ($1, $2, $3)")
                    .bind(tenant.id())
                    .bind(subject)
                    .bind(roles.iter().map(|r| r.to_string()).collect::<Vec<_>>())
                    .execute(&self.pool)
                    .await
                    .expect("add a membership");
            }

            /// A tenant whose verified domain is `example.com` (test tokens' emails are there).
            async fn tenant(&self, name: &str) -> TenantId {
                let id = uuid::Uuid::now_v7();
                sqlx::query("INSERT INTO \"tenants\" (\"id\", \"name\") VALUES ($1, $2)").bind(id).bind(name).execute(&self.pool).await.expect("create a tenant");
                sqlx::query("INSERT INTO \"tenant_domains\" (\"tenant_id\", \"domain\", \"token\", \"verified_at\") VALUES ($1, 'example.com', 'test', now())").bind(id).execute(&self.pool).await.expect("verify its domain");
                TenantId::system(id)
            }
        }

    }
}

/// The domain test: a member's email domain counts once the tenant has proven it owns it,
/// by a token the service fetches over HTTPS (from a loopback server with a test CA).
fn domain_test(app: &App) -> TokenStream {
    let builtins = app.builtin_operations();
    if !app.verify_domains || !builtins.iter().any(|b| b.id == "domain.verify") {
        return TokenStream::new();
    }
    let Some(admins) = &app.admins else {
        return TokenStream::new();
    };
    let admin_role = &admins.roles[0];
    let domains = format!("/{}/domains", app.api_version);
    let verified_email = app.identity.require_verified_email;
    quote! {
        #[tokio::test]
        async fn a_members_email_domain_counts_once_proven_over_https() {
            let Some((op, path)) = guarded_operation() else { return };
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            db.member(tenant, "admin", &[#admin_role]).await;
            db.member(tenant, "ext", ALL_ROLES).await;
            // The agency's web server: a loopback HTTPS server with a certificate of the test CA.
            let (root, config) = issuer::test_ca_for("agency.test");
            let pages = std::sync::Arc::new(std::sync::Mutex::new(issuer::Pages::default()));
            let base = issuer::listen(config, pages.clone()).await;
            let port: u16 = base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
            let fetcher = server::oidc::Fetcher::with_roots(&[root], true, &[("agency.test", std::net::SocketAddr::from(([127, 0, 0, 1], port)))]).expect("a fetcher");
            let keys = Keys::from_jwks(&test_key().1).expect("the test JWKS loads");
            let auth = Authority::new(keys, db.app.clone()).expect("the policies load").with_fetcher(fetcher);
            let app = server::router(server::AppState { db: db.app.clone(), auth: std::sync::Arc::new(auth) });
            let now = identity::now();
            let admin = signed(&dev::claims("admin", tenant.id(), &all_scopes(), &["mfa"], now, 60));
            let mut ext_claims = dev::claims("ext", tenant.id(), &all_scopes(), &["mfa"], now, 60);
            ext_claims[identity::EMAIL_CLAIM] = "ext@Agency.test".into();
            let ext = signed(&ext_claims);
            let refused = |reason: &'static str| {
                let pool = db.pool.clone();
                async move {
                    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"outcome\" = 'denied' AND \"detail\" ->> 'reason' = $2")
                        .bind(tenant.id()).bind(reason).fetch_one(&pool).await.expect("count refusals");
                    count
                }
            };

            // Not yet the tenant's domain: refused, and recorded.
            assert_eq!(call_on(&app, op.method, &path, Some(&ext)).await.status(), StatusCode::FORBIDDEN);
            assert_eq!(refused("domain_not_verified").await, 1);
            if #verified_email {
                let mut unverified = ext_claims.clone();
                unverified["email_verified"] = false.into();
                assert_eq!(call_on(&app, op.method, &path, Some(&signed(&unverified))).await.status(), StatusCode::FORBIDDEN);
                assert_eq!(refused("email_not_verified").await, 1);
            }

            // The admin claims the domain; the proof is not published yet.
            let (status, claimed) = send(&app, "POST", #domains, &admin, Some(serde_json::json!({"domain": "Agency.test"}))).await;
            assert_eq!(status, StatusCode::CREATED, "{claimed}");
            let token = claimed["token"].as_str().expect("a token").to_owned();
            let proof_url = claimed["proof_url"].as_str().expect("a proof URL").to_owned();
            let proof_path = proof_url.strip_prefix("https://agency.test").expect("the domain's URL").to_owned();
            let verify = format!("{}/agency.test/verify", #domains);
            let (status, _) = send(&app, "POST", &verify, &admin, None).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(refused("proof_not_found").await, 1);
            // Someone else's token does not prove it either.
            pages.lock().expect("pages").answers.insert(proof_path.clone(), (200, "not-the-token\n".into()));
            let (status, _) = send(&app, "POST", &verify, &admin, None).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            // Published: verified, and the member counts.
            pages.lock().expect("pages").answers.insert(proof_path, (200, format!("other\n{token}\n")));
            let (status, body) = send(&app, "POST", &verify, &admin, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(body["verified_at"].is_string(), "{body}");
            assert_ne!(call_on(&app, op.method, &path, Some(&ext)).await.status(), StatusCode::FORBIDDEN);
            let (_, listed) = send(&app, "GET", #domains, &admin, None).await;
            let names: Vec<&str> = listed["items"].as_array().expect("items").iter().filter_map(|d| d["domain"].as_str()).collect();
            assert_eq!(names, ["agency.test", "example.com"]);

            // Given up: the member is refused again.
            let (status, _) = send(&app, "DELETE", &format!("{}/agency.test", #domains), &admin, None).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            assert_eq!(call_on(&app, op.method, &path, Some(&ext)).await.status(), StatusCode::FORBIDDEN);
            let (status, _) = send(&app, "POST", #domains, &admin, Some(serde_json::json!({"domain": "10.0.0.1"}))).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an address is not a domain");
            db.drop().await;
        }
    }
}

/// The audit trail test: a create through the service by an allowed role commits with its
/// event, one by a refused role leaves no row and a denial event, and the trail refuses
/// updates, deletes and truncation. Uses the first tenant-scoped resource whose `create` has
/// no condition and whose input refers to no other row.
fn audit_test(app: &App, api: &proc_macro2::Ident) -> TokenStream {
    let chosen = app.resources.iter().find_map(|resource| {
        let create = resource
            .actions
            .iter()
            .find(|a| a.kind == ActionKind::Create)?;
        let plain = !resource.global
            && create.condition.is_none()
            && create.public.is_none()
            && !resource
                .fields
                .iter()
                .any(|f| matches!(f.ty, FieldType::Reference { .. }));
        plain.then_some((resource, create))
    });
    let Some((resource, create)) = chosen else {
        return TokenStream::new();
    };
    let module = ident(&resource.ident);
    let input = sample_call(resource, quote!(n), quote!(&ids));
    let op = format!("{}.{}", resource.name, create.name);
    let path = create.path.clone();
    let allowed: Vec<&str> = create.roles.iter().map(String::as_str).collect();
    let entity = resource.type_name.clone();
    let row_type = ident(&resource.type_name);
    let list = server::store_fn(api, resource, "list");
    quote! {
        #[tokio::test]
        async fn changes_and_denials_are_in_the_append_only_audit_trail() {
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            let allowed: &[&str] = &[#(#allowed),*];
            let refused = ALL_ROLES.iter().find(|role| !allowed.contains(role));
            db.member(tenant, "allowed", &allowed[..1]).await;
            if let Some(role) = refused {
                db.member(tenant, "refused", &[role]).await;
            }
            // Request ids are believed from a trusted proxy only.
            let keys = Keys::from_jwks(&test_key().1).expect("the test JWKS loads");
            let unthrottled = server::guard::ClassLimits { public: None, sensitive: None, standard: None, unauthenticated: None };
            let auth = Authority::new(keys, db.app.clone())
                .expect("the policies load")
                .with_rate_limits(unthrottled)
                .with_trusted_proxies(vec!["10.0.0.0/8".parse().expect("a network")]);
            let app = server::router(server::AppState { db: db.app.clone(), auth: std::sync::Arc::new(auth) });
            // The resource refers to no other: no rows to pick from.
            let ids = Ids::default();
            let post_from = |peer: &str, subject: &str, request_id: &str, n: i64| {
                let input = #input;
                let token = signed(&dev::claims(subject, tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
                let mut request = Request::builder()
                    .method(Method::POST)
                    .uri(#path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .header("x-request-id", request_id)
                    .body(Body::from(serde_json::to_vec(&input).expect("the input serializes")))
                    .expect("a request");
                let address: std::net::SocketAddr = peer.parse().expect("an address");
                request.extensions_mut().insert(axum::extract::ConnectInfo(address));
                request
            };
            let post = |subject: &str, request_id: &str, n: i64| post_from("10.0.0.1:40000", subject, request_id, n);
            // A client's own request id names none of its events: they get a new one.
            let response = app.clone().oneshot(post_from("203.0.113.9:40000", "allowed", "req-forged", 3)).await.expect("a response");
            assert_eq!(response.status(), StatusCode::CREATED);
            let given = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("a request id");
            assert_ne!(given, "req-forged");
            let (forged, filed): (i64, i64) = sqlx::query_as("SELECT count(*) FILTER (WHERE \"request_id\" = 'req-forged'), count(*) FILTER (WHERE \"request_id\" = $2) FROM \"audit_events\" WHERE \"tenant_id\" = $1")
                .bind(tenant.id())
                .bind(&given)
                .fetch_one(&db.pool)
                .await
                .expect("the events");
            assert_eq!((forged, filed), (0, 1), "the change's event is filed under the id the server gave");
            // Nor is one beside a proxy's (a proxy that adds its header instead of replacing it).
            let mut twice = post("allowed", "req-client", 4);
            twice.headers_mut().append("x-request-id", axum::http::HeaderValue::from_static("req-proxy"));
            let response = app.clone().oneshot(twice).await.expect("a response");
            assert_eq!(response.status(), StatusCode::CREATED);
            let given = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("a request id");
            assert!(given != "req-client" && given != "req-proxy", "two request ids: {given}");
            let response = app.clone().oneshot(post("allowed", "req-allowed", 1)).await.expect("a response");
            assert_eq!(response.status(), StatusCode::CREATED);
            assert_eq!(response.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("req-allowed"));
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("the body");
            let created: #api::#module::#row_type = serde_json::from_slice(&body).expect("the created row");
            let event: (String, String, String, Option<String>, String) = sqlx::query_as("SELECT \"actor\", \"action\", \"resource_type\", \"resource_id\", \"outcome\" FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"request_id\" = 'req-allowed'")
                .bind(tenant.id())
                .fetch_one(&db.pool)
                .await
                .expect("the change's event");
            assert_eq!(event, ("allowed".into(), #op.into(), #entity.into(), Some(created.id.to_string()), "allowed".into()));
            if refused.is_some() {
                let response = app.clone().oneshot(post("refused", "req-refused", 2)).await.expect("a response");
                assert_eq!(response.status(), StatusCode::FORBIDDEN);
                let mut conn = db.pool.acquire().await.expect("a connection");
                let page = #list(&mut conn, tenant, None, 100).await.expect("list");
                assert_eq!(page.items.len(), 3, "the three allowed creates only: a create refused for its role stored nothing (refusals by a condition, after the insert, are checked with the conditions)");
                let (outcome,): (String,) = sqlx::query_as("SELECT \"outcome\" FROM \"audit_events\" WHERE \"tenant_id\" = $1 AND \"request_id\" = 'req-refused' AND \"actor\" = 'refused'")
                    .bind(tenant.id())
                    .fetch_one(&db.pool)
                    .await
                    .expect("the denial's event");
                assert_eq!(outcome, "denied");
            }
            // Append-only, even for the superuser the tests connect as (row triggers need a row);
            // and an event's time is the database's: one sent backdated is stamped now.
            sqlx::query("INSERT INTO \"system_audit_events\" (\"id\", \"at\", \"actor\", \"action\", \"resource_type\", \"outcome\", \"request_id\") VALUES ($1, '2000-01-01T00:00:00Z', 'operator:test', 'grant', 'Membership', 'allowed', 'req-system')")
                .bind(uuid::Uuid::now_v7())
                .execute(&db.app)
                .await
                .expect("a system event, as the app role");
            let (recent,): (bool,) = sqlx::query_as("SELECT \"at\" > now() - interval '1 hour' FROM \"system_audit_events\" WHERE \"request_id\" = 'req-system'")
                .fetch_one(&db.pool)
                .await
                .expect("the system event");
            assert!(recent, "a backdated event keeps the database's time");
            for statement in [
                "UPDATE \"audit_events\" SET \"actor\" = 'someone else'",
                "DELETE FROM \"audit_events\"",
                "TRUNCATE \"audit_events\"",
                "UPDATE \"system_audit_events\" SET \"actor\" = 'someone else'",
                "DELETE FROM \"system_audit_events\"",
                "TRUNCATE \"system_audit_events\"",
            ] {
                let error = sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&db.pool).await.expect_err(statement);
                assert!(error.to_string().contains("append-only"), "{statement}: {error}");
            }
            db.drop().await;
        }
    }
}

/// A resource of tenant data whose rows must refer to rows of `resource` (a required
/// reference): one whose sample rows keep a row of `resource` from being deleted.
pub fn referrer<'a>(app: &'a App, resource: &Resource) -> Option<&'a Resource> {
    app.resources.iter().find(|other| {
        !other.global
            && other.fields.iter().any(|f| {
                !f.optional
                    && matches!(f.ty, FieldType::Reference { resource: target } if app.resources[target].ident == resource.ident)
            })
    })
}

/// Whether the role x operation test writes with `action`: a write of tenant data that is not
/// public. Every role is tried on the unconditional ones; on the conditional ones (whose
/// outcome depends on the row: the golden tables check those) only a member of another tenant.
fn write_checked(resource: &Resource, action: &crate::model::Action) -> bool {
    action.kind != ActionKind::Read
        && action.kind != ActionKind::List
        && action.public.is_none()
        && !resource.global
}

/// Where the role x operation test finds its tables, next to `tests/service.rs`.
const CASES_FILE: &str = "authorization_cases.json";

/// A read the role x operation test tries: every role, with and without a second factor; a
/// list shows the seeded row to the roles in `seen`.
#[derive(serde::Serialize)]
struct Read<'a> {
    id: String,
    resource: &'a str,
    path: &'a str,
    allowed: Vec<&'a str>,
    seen: Vec<&'a str>,
}

/// A conditional read or a list: a member of another tenant finds none of this tenant's rows.
#[derive(serde::Serialize)]
struct OutsiderRead<'a> {
    id: String,
    resource: &'a str,
    path: &'a str,
}

/// A write of tenant data, as the generated test's `Write` reads it (its fields say what
/// each one means).
#[derive(serde::Serialize)]
struct Write<'a> {
    id: String,
    resource: &'a str,
    method: &'a str,
    path: &'a str,
    allowed: Vec<&'a str>,
    success: u16,
    body: bool,
    fresh: bool,
    conditional: bool,
    conflict: bool,
    outsider: Option<u16>,
}

/// An entry of the test's tables, on one line: a spec change shows as the lines of the
/// entries it changes.
pub fn json_line(entry: &impl serde::Serialize) -> String {
    serde_json::to_string(entry).expect("the tables are plain data")
}

/// The text of `tests/authorization_cases.json`: each table by name, its entries one a line
/// (an entry of several lines indents its own). The tables are data, not code: as Rust they
/// were half of the test file, and rustfmt's slowest part of a generation.
fn cases_json(tables: &[(&str, &[String])]) -> String {
    let mut out = String::from(
        "{\n  \"@generated\": \"by bulwark. Do not edit by hand: change the spec and regenerate. The tables of the role x operation test in service.rs.\"",
    );
    for (name, entries) in tables {
        out.push_str(&format!(",\n  \"{name}\": ["));
        for (i, entry) in entries.iter().enumerate() {
            out.push_str(if i == 0 { "\n    " } else { ",\n    " });
            out.push_str(entry);
        }
        out.push_str(if entries.is_empty() { "]" } else { "\n  ]" });
    }
    out.push_str("\n}\n");
    out
}

/// The role x operation test of reads and unconditional writes: expected outcomes come from
/// the spec's permission table (roles, second factors), not from the generated policies.
/// Its tables go into `tests/authorization_cases.json` (the second part; a file of empty
/// tables, which nothing reads, when there is no such test).
fn authorization_test(
    app: &App,
    order: &[usize],
    plan: &super::condition_tests::Plan,
    api: &proc_macro2::Ident,
) -> (TokenStream, String) {
    let conditions = plan.checks(api);
    let mfa_roles = app.mfa_roles();
    let pairs = || {
        app.resources.iter().flat_map(|resource| {
            resource
                .actions
                .iter()
                .map(move |action| (resource, action))
        })
    };
    let creation_order: Vec<&str> = order.iter().map(|&i| ids_key(&app.resources[i])).collect();
    // Raw SQL as the app role, no tenant set: none of the seeded rows is visible, and a copy
    // of one (a new id) cannot be inserted.
    let tenant_tables: Vec<TokenStream> = app
        .resources
        .iter()
        .filter(|r| !r.global)
        .map(|resource| {
            let table = crate::render::escape::sql_ident(&resource.table);
            let name = resource.name.as_str();
            quote!((#name, #table))
        })
        .collect();
    // Unconditional reads and every list (a list refuses by role before reading rows): every
    // role, with and without a second factor.
    let reads: Vec<String> = pairs()
        .filter(|(resource, action)| {
            let read =
                action.kind == ActionKind::Read && action.condition.is_none() && !resource.global;
            (read || action.kind == ActionKind::List) && action.public.is_none()
        })
        .map(|(resource, action)| {
            let id = format!("{}.{}", resource.name, action.name);
            let key = ids_key(resource);
            let allowed: Vec<&str> = action.roles.iter().map(String::as_str).collect();
            let path = action.path.as_str();
            // The roles a list shows the seeded row to: it keeps the rows its own policy and
            // the read's allow, so only where neither has a condition.
            let read = resource.actions.iter().find(|a| a.kind == ActionKind::Read);
            let seen: Vec<&str> = match read {
                Some(read)
                    if action.kind == ActionKind::List
                        && action.condition.is_none()
                        && read.condition.is_none() =>
                {
                    allowed
                        .iter()
                        .copied()
                        .filter(|role| {
                            read.public.is_some() || read.roles.iter().any(|r| r == role)
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            json_line(&Read {
                id,
                resource: key,
                path,
                allowed,
                seen,
            })
        })
        .collect();
    // Conditional reads and every list: a member of another tenant finds none of this
    // tenant's rows (unconditional reads are checked with the roles above).
    let outsider_reads: Vec<String> = pairs()
        .filter(|(resource, action)| {
            (action.kind == ActionKind::List
                || (action.kind == ActionKind::Read && action.condition.is_some()))
                && action.public.is_none()
                && !resource.global
        })
        .map(|(resource, action)| {
            let id = format!("{}.{}", resource.name, action.name);
            let key = ids_key(resource);
            let path = action.path.as_str();
            json_line(&OutsiderRead {
                id,
                resource: key,
                path,
            })
        })
        .collect();
    // Writes: every unconditional create, update, delete and custom action of tenant data, by
    // every role with and without a second factor; a delete gets a fresh row each time.
    let mut bodies: Vec<&Resource> = Vec::new();
    let writes: Vec<String> = pairs()
        .filter(|(resource, action)| write_checked(resource, action))
        .map(|(resource, action)| {
            let id = format!("{}.{}", resource.name, action.name);
            let key = ids_key(resource);
            let allowed: Vec<&str> = action.roles.iter().map(String::as_str).collect();
            let path = action.path.as_str();
            let method = action.method.as_str();
            let body = matches!(action.kind, ActionKind::Create | ActionKind::Update);
            if body && !bodies.iter().any(|r| r.ident == resource.ident) {
                bodies.push(resource);
            }
            let fresh = action.kind == ActionKind::Delete;
            let success: u16 = match action.kind {
                ActionKind::Create => 201,
                ActionKind::Delete => 204,
                _ => 200,
            };
            // A member of another tenant, with every role: the row is not there for it, and a
            // row of its own cannot point at this tenant's rows (a global row it may).
            let references = resource.fields.iter().any(
                |f| matches!(f.ty, FieldType::Reference { resource: target } if !app.resources[target].global),
            );
            let outsider: Option<u16> = match &action.kind {
                ActionKind::Create if references => Some(422),
                ActionKind::Create => None,
                _ => Some(404),
            };
            let conditional = action.condition.is_some();
            // Found at commit, after the decision: a create's required unique value taken, a
            // delete of the seeded row, which a seeded row of another resource refers to.
            let conflict = match action.kind {
                ActionKind::Create => resource.fields.iter().any(|f| f.unique && !f.optional),
                ActionKind::Delete => referrer(app, resource).is_some(),
                _ => false,
            };
            json_line(&Write {
                id,
                resource: key,
                method,
                path,
                allowed,
                success,
                body,
                fresh,
                conditional,
                conflict,
                outsider,
            })
        })
        .collect();
    let condition_loop = plan.calls(app);
    let cases = cases_json(&[
        ("reads", &reads),
        ("outsider_reads", &outsider_reads),
        ("writes", &writes),
        ("conditions", &plan.case_lines()),
    ]);
    if reads.is_empty() && writes.is_empty() && outsider_reads.is_empty() {
        return (TokenStream::new(), cases);
    }
    let inserts = app.resources.iter().map(|resource| {
        let key = ids_key(resource);
        let insert = server::store_fn(api, resource, "insert");
        let sample = sample_call(resource, quote!(n), quote!(ids));
        let tenancy = server::tenancy_arg(resource, quote!(tenant));
        quote!(#key => #insert(conn, #tenancy, subject, &#sample).await.expect("a sample row").id,)
    });
    let jsons = bodies.iter().map(|resource| {
        let key = ids_key(resource);
        let sample = sample_call(resource, quote!(n), quote!(ids));
        quote!(#key => serde_json::to_value(#sample).expect("the input serializes"),)
    });
    // Fields only actions change, with a value other than the one a create leaves them at
    // (an action's): a create or an update sending it is refused.
    let held: Vec<TokenStream> = app
        .resources
        .iter()
        .filter(|resource| bodies.iter().any(|b| b.ident == resource.ident))
        .flat_map(|resource| {
            resource
                .held_fields()
                .into_iter()
                .filter_map(move |(field, actions)| {
                    // A required field without a default takes its first value from a create.
                    if !field.optional && field.default.is_none() {
                        return None;
                    }
                    let index = resource
                        .fields
                        .iter()
                        .position(|f| f.ident == field.ident)?;
                    let value = resource
                        .actions
                        .iter()
                        .filter(|a| actions.contains(&a.name.as_str()))
                        .flat_map(|a| a.sets.iter())
                        .filter(|(set, value)| {
                            *set == index && Some(value) != field.default.as_ref()
                        })
                        .map(|(_, value)| match value {
                            crate::model::Value::Bool(b) => b.to_string(),
                            crate::model::Value::Int(i) => i.to_string(),
                            crate::model::Value::Str(s) => {
                                serde_json::Value::from(s.as_str()).to_string()
                            }
                        })
                        .next()?;
                    let path = |kind: ActionKind| match resource
                        .action(&kind)
                        .filter(|a| a.public.is_none())
                    {
                        Some(action) => {
                            let path = action.path.as_str();
                            quote!(Some(#path))
                        }
                        None => quote!(None),
                    };
                    let (key, json) = (ids_key(resource), field.json.as_str());
                    let (create, update) = (path(ActionKind::Create), path(ActionKind::Update));
                    Some(quote!((#key, #create, #update, #json, #value)))
                })
        })
        .collect();
    let held_check = (!held.is_empty()).then(|| {
        quote! {
            // Fields only actions change: a create that sets one, an update that changes one,
            // are refused with 422 naming the field (by the rows' maker, whom the conditions
            // of updates allow).
            /// Resource, create path, update path, field, a value the create leaves it without.
            type Held = (&'static str, Option<&'static str>, Option<&'static str>, &'static str, &'static str);
            const HELD: &[Held] = &[#(#held),*];
            db.member(tenant, subject, ALL_ROLES).await;
            let maker = signed(&dev::claims(subject, tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
            for (resource, create, update, field, value) in HELD {
                counter += 1;
                let mut body = json_sample(resource, counter, &ids);
                body[*field] = serde_json::from_str(value).expect("a JSON value");
                let calls = [("POST", create.map(str::to_owned)), ("PUT", update.map(|p| p.replace("{id}", &ids.first(resource).to_string())))];
                for (method, path) in calls {
                    let Some(path) = path else { continue };
                    let (status, problem) = send(&app, method, &path, &maker, Some(body.clone())).await;
                    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{method} {path} setting {field}: {problem}");
                    assert!(problem.to_string().contains(field), "{method} {path}: {problem}");
                }
            }
        }
    });
    let writes_check = (!writes.is_empty()).then(|| {
        quote! {
            let writes: Vec<Write> = table("writes");
            for write in &writes {
                    for role in ALL_ROLES {
                        // A role the operation allows under a condition is checked by the
                        // condition's calls; every role it does not allow is refused here.
                        if write.conditional && named(&write.allowed, role) {
                            continue;
                        }
                        for mfa in [true, false] {
                            // Inputs are numbered so unique fields stay unique.
                            counter += 1;
                            let who = format!("{role}-{mfa}");
                            let amr: &[&str] = if mfa { &["mfa"] } else { &[] };
                            let token = signed(&dev::claims(&who, tenant.id(), &all_scopes(), amr, identity::now(), 60));
                            let (path, body) = write.request(&db, tenant, counter, &ids).await;
                            let (status, answer) = send(&app, &write.method, &path, &token, body).await;
                            let expected = if !named(&write.allowed, role) {
                                StatusCode::FORBIDDEN
                            } else if MFA_ROLES.contains(role) && !mfa {
                                StatusCode::UNAUTHORIZED
                            } else {
                                status_code(write.success)
                            };
                            assert_eq!(status, expected, "{} as {role}, second factor {mfa}", write.id);
                            if expected == StatusCode::UNAUTHORIZED {
                                // The step-up answer (RFC 9470), not a refused token.
                                assert_eq!(answer["detail"], "this needs a second factor: sign in again with one", "{} as {role}", write.id);
                            }
                        }
                    }
                if let Some(expected) = write.outsider {
                    counter += 1;
                    let outsider = signed(&dev::claims("outsider", other.id(), &all_scopes(), &["mfa"], identity::now(), 60));
                    let (path, body) = write.request(&db, tenant, counter, &ids).await;
                    let (status, _) = send(&app, &write.method, &path, &outsider, body).await;
                    assert_eq!(status, status_code(expected), "{} from another tenant", write.id);
                }
            }
            // Conflicts the database finds at commit, after the decision, answer 409
            // problem+json (not 500): a unique value taken, a row others still refer to.
            db.member(tenant, "every-role", ALL_ROLES).await;
            let every_role = signed(&dev::claims("every-role", tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
            for write in writes.iter().filter(|w| w.conflict && !w.conditional) {
                counter += 1;
                let (path, body) = if write.fresh {
                    (write.path.replace("{id}", &ids.first(&write.resource).to_string()), None)
                } else {
                    write.request(&db, tenant, counter, &ids).await
                };
                if write.body {
                    let (status, answer) = send(&app, &write.method, &path, &every_role, body.clone()).await;
                    assert_eq!(status, status_code(write.success), "{} the first time: {answer}", write.id);
                }
                let (status, answer) = send(&app, &write.method, &path, &every_role, body).await;
                assert_eq!(status, StatusCode::CONFLICT, "{}: {answer}", write.id);
                assert_eq!(answer["status"], 409, "{}: {answer}", write.id);
            }
        }
    });
    let write_support = (!writes.is_empty()).then(|| {
        quote! {
            /// A write of tenant data the role x operation test tries: by every role, with and
            /// without a second factor (when `conditional`, only the roles it does not allow:
            /// the condition tests and golden tables cover the others); and by a member of
            /// another tenant, expecting `outsider`.
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Write {
                id: String,
                resource: String,
                method: String,
                path: String,
                allowed: Vec<String>,
                success: u16,
                /// Whether it takes the resource's `n`-th sample input.
                body: bool,
                /// Whether each call gets a fresh row (a delete), else the first seeded row.
                fresh: bool,
                conditional: bool,
                /// Whether it conflicts at commit when repeated (a create's unique value) or
                /// on the first seeded row (a delete of a row others refer to): 409.
                conflict: bool,
                outsider: Option<u16>,
            }

            /// The status of a code in the cases.
            fn status_code(code: u16) -> StatusCode {
                StatusCode::from_u16(code).expect("a status code")
            }

            impl Write {
                /// The path of one call, and its body.
                async fn request(&self, db: &TestDb, tenant: TenantId, n: i64, ids: &Ids) -> (String, Option<serde_json::Value>) {
                    let row = if self.fresh {
                        let mut conn = db.pool.acquire().await.expect("a connection");
                        insert_sample(&mut conn, &self.resource, tenant, "seeder", n, ids).await
                    } else if self.path.contains("{id}") {
                        ids.first(&self.resource)
                    } else {
                        uuid::Uuid::nil()
                    };
                    let body = self.body.then(|| json_sample(&self.resource, n, ids));
                    (self.path.replace("{id}", &row.to_string()), body)
                }
            }

            /// The `n`-th sample input of `resource`, as JSON.
            fn json_sample(resource: &str, n: i64, ids: &Ids) -> serde_json::Value {
                let _ = (n, ids);
                match resource {
                    #(#jsons)*
                    other => panic!("no sample input of {other}"),
                }
            }
        }
    });
    let cases_file = CASES_FILE;
    let tokens = quote! {
        /// Roles that count only with a second factor.
        const MFA_ROLES: &[&str] = &[#(#mfa_roles),*];

        /// Resources in an order where every required reference points to rows already made.
        const CREATION_ORDER: &[&str] = &[#(#creation_order),*];

        /// Each tenant resource's name and table.
        const TENANT_TABLES: &[(&str, &str)] = &[#(#tenant_tables),*];

        /// A table of `tests/authorization_cases.json`: the role x operation test's cases,
        /// generated from the spec's permission table (and the conditions' expected outcomes
        /// from Cedar at generation time).
        fn table<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
            let cases: serde_json::Value = serde_json::from_str(include_str!(#cases_file)).expect("the cases are JSON");
            serde_json::from_value(cases[name].clone()).unwrap_or_else(|e| panic!("the cases' {name}: {e}"))
        }

        /// Whether `names` holds `name`.
        fn named(names: &[String], name: &str) -> bool {
            names.iter().any(|n| n == name)
        }

        /// An unconditional read of tenant data, or a list: the operation, its resource and
        /// path, the roles allowed, and (lists) the roles it shows the seeded row to.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Read {
            id: String,
            resource: String,
            path: String,
            allowed: Vec<String>,
            seen: Vec<String>,
        }

        /// A conditional read or a list of tenant data: operation, resource, path.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct OutsiderRead {
            id: String,
            resource: String,
            path: String,
        }

        #write_support

        #conditions

        /// Inserts the `n`-th sample row of `resource` (tenant rows into `tenant`, principal
        /// fields naming `subject`); its id.
        async fn insert_sample(conn: &mut sqlx::PgConnection, resource: &str, tenant: TenantId, subject: &str, n: i64, ids: &Ids) -> uuid::Uuid {
            let _ = (tenant, subject);
            match resource {
                #(#inserts)*
                other => panic!("no resource {other}"),
            }
        }

        #[tokio::test]
        async fn roles_decide_reads_and_writes_through_memberships_and_policies() {
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            let other = db.tenant("tenant b").await;
            let subject = "seeder";
            for role in ALL_ROLES {
                for mfa in [true, false] {
                    db.member(tenant, &format!("{role}-{mfa}"), &[role]).await;
                }
            }
            db.member(other, "outsider", ALL_ROLES).await;
            let app = router_on(db.app.clone());
            let mut conn = db.pool.acquire().await.expect("a connection");
            let mut ids = Ids::default();
            for resource in CREATION_ORDER {
                let id = insert_sample(&mut conn, resource, tenant, subject, 0, &ids).await;
                ids.push(resource, id);
            }
            drop(conn);
            for (name, table) in TENANT_TABLES {
                let (row,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT row_to_json(t)::text FROM {table} t LIMIT 1"))).fetch_one(&db.pool).await.expect("a seeded row");
                let (visible,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&db.app).await.expect("count as the app role");
                assert_eq!(visible, 0, "{name} rows visible without a tenant");
                let mut copy: serde_json::Value = serde_json::from_str(&row).expect("the row as JSON");
                copy["id"] = serde_json::json!(uuid::Uuid::now_v7());
                let insert = format!("INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, $1::json)");
                let refused = sqlx::query(sqlx::AssertSqlSafe(insert)).bind(copy.to_string()).execute(&db.app).await.expect_err("an insert without a tenant");
                let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
                assert_eq!(code.as_deref(), Some("42501"), "{name}: {refused}");
            }
            let outsider = signed(&dev::claims("outsider", other.id(), &all_scopes(), &["mfa"], identity::now(), 60));
            for Read { id, resource, path: template, allowed, seen } in table("reads") {
                let path = match template.contains("{id}") {
                    true => template.replace("{id}", &ids.first(&resource).to_string()),
                    false => template.clone(),
                };
                for role in ALL_ROLES {
                    for mfa in [true, false] {
                        let subject = format!("{role}-{mfa}");
                        let amr: &[&str] = if mfa { &["mfa"] } else { &[] };
                        let token = signed(&dev::claims(&subject, tenant.id(), &all_scopes(), amr, identity::now(), 60));
                        let response = call_on(&app, "GET", &path, Some(&token)).await;
                        let expected = if !named(&allowed, role) {
                            StatusCode::FORBIDDEN
                        } else if MFA_ROLES.contains(role) && !mfa {
                            StatusCode::UNAUTHORIZED
                        } else {
                            StatusCode::OK
                        };
                        assert_eq!(response.status(), expected, "{id} as {role}, second factor {mfa}");
                        if expected == StatusCode::UNAUTHORIZED {
                            // The step-up challenge (RFC 9470), not a refused token.
                            assert!(challenge(&response).contains("error=\"insufficient_user_authentication\""), "{id} as {role}: {}", challenge(&response));
                        }
                        // A list that answers lists the seeded row (so the other tenant's empty
                        // list below says something).
                        if expected == StatusCode::OK && named(&seen, role) {
                            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("the body");
                            let page: serde_json::Value = serde_json::from_slice(&bytes).expect("a page");
                            let first = ids.first(&resource).to_string();
                            let listed = page["items"].as_array().is_some_and(|items| items.iter().any(|item| item["id"] == first.as_str()));
                            assert!(listed, "{id} as {role}: the seeded row is not listed: {page}");
                        }
                    }
                }
                // A member of another tenant, with every role, finds nothing there (lists:
                // below).
                if template.contains("{id}") {
                    let status = call_on(&app, "GET", &path, Some(&outsider)).await.status();
                    assert_eq!(status, StatusCode::NOT_FOUND, "{id} from another tenant");
                }
            }
            for OutsiderRead { id, resource, path } in table("outsider_reads") {
                let (status, body) = send(&app, "GET", &path.replace("{id}", &ids.first(&resource).to_string()), &outsider, None).await;
                if path.contains("{id}") {
                    assert_eq!(status, StatusCode::NOT_FOUND, "{id} from another tenant");
                } else {
                    assert_eq!(status, StatusCode::OK, "{id} from another tenant");
                    assert_eq!(body["items"], serde_json::json!([]), "{id} from another tenant");
                }
            }
            let mut counter: i64 = 1000;
            #writes_check
            #held_check
            // Conditions: rows where each holds and rows where it fails (expected outcomes
            // from Cedar at generation time).
            #condition_loop
            let _ = (subject, &mut counter, &mut ids, MFA_ROLES);
            db.drop().await;
        }
    };
    (tokens, cases)
}

/// A handler acts only under its own operation's route: the first tenant resource with a
/// plain guarded read and a guarded delete has its delete handler called under the read's
/// operation (whose roles are usually wider) by a caller holding every role, which must
/// answer 500 and leave the row, as the read under its own operation shows. Nothing for a
/// spec without such a resource.
fn misrouted_test(app: &App, api: &proc_macro2::Ident) -> TokenStream {
    fn guarded(resource: &Resource, kind: ActionKind) -> Option<&crate::model::Action> {
        resource
            .actions
            .iter()
            .find(|a| a.kind == kind)
            .filter(|a| a.public.is_none() && a.condition.is_none())
    }
    let Some(resource) = app.resources.iter().find(|r| {
        !r.global
            && guarded(r, ActionKind::Read).is_some()
            && guarded(r, ActionKind::Delete).is_some()
    }) else {
        return quote!();
    };
    let module = ident(&resource.ident);
    let key = ids_key(resource);
    let read_const = server::operation_const(guarded(resource, ActionKind::Read).expect("a read"));
    let delete_const =
        server::operation_const(guarded(resource, ActionKind::Delete).expect("a delete"));
    let delete = server::store_fn(api, resource, "handle_delete");
    let read = server::store_fn(api, resource, "handle_read");
    let doc = super::doc(&format!(
        "`{}`'s delete handler registered under its read's route (an edit `bulwark audit` does \
         not see: both are guarded) deletes nothing: it answers 500, and the row is still there.",
        resource.name
    ));
    quote! {
        #doc
        #[tokio::test]
        async fn a_handler_under_another_operations_route_does_nothing() {
            use axum::extract::State;
            use server::guard::Current;
            use server::problem::ApiPath;
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            db.member(tenant, "every-role", ALL_ROLES).await;
            let mut conn = db.pool.acquire().await.expect("a connection");
            let mut ids = Ids::default();
            for resource in CREATION_ORDER {
                let id = insert_sample(&mut conn, resource, tenant, "seeder", 0, &ids).await;
                ids.push(resource, id);
            }
            // A row nothing refers to, so that its delete can succeed.
            let id = insert_sample(&mut conn, #key, tenant, "seeder", 1, &ids).await;
            drop(conn);
            let keys = Keys::from_jwks(&test_key().1).expect("the test JWKS loads");
            let auth = Authority::new(keys, db.app.clone()).expect("the policies load");
            let state = server::AppState { db: db.app.clone(), auth: std::sync::Arc::new(auth) };
            let principal = server::tenant::Principal {
                subject: "every-role".into(),
                tenant,
                roles: ALL_ROLES.iter().map(|r| (*r).to_owned()).collect(),
                scopes: OPERATIONS.iter().filter_map(|op| op.scope).map(str::to_owned).collect(),
                mfa: true,
                request_id: "misrouted".into(),
                email: None,
            };
            let read_op = &server::resources::#module::#read_const;
            let misrouted = #delete(State(state.clone()), Current(read_op), principal.clone(), ApiPath(id)).await;
            assert_eq!(misrouted.err().map(|problem| problem.status), Some(500), "the delete handler under the read's route");
            let read = #read(State(state.clone()), Current(read_op), principal.clone(), ApiPath(id)).await;
            assert!(read.is_ok(), "the row is still there, and its read handler answers under its own route");
            let delete_op = &server::resources::#module::#delete_const;
            let deleted = #delete(State(state), Current(delete_op), principal, ApiPath(id)).await;
            assert!(deleted.is_ok(), "the delete handler deletes under its own route");
            db.drop().await;
        }
    }
}

/// Every bound of a string, text, int or money field (`min`, `max`: a length, a value, an
/// amount's minor units; email addresses have their own test data) holds at the API: a sample input with that one field one past the bound fails
/// validation naming the field. Nothing for a spec without bounds.
fn bounds_test(app: &App, api: &proc_macro2::Ident) -> TokenStream {
    let mut cases = Vec::new();
    for resource in &app.resources {
        let sample = sample_call(resource, quote!(1), quote!(&ids));
        for field in resource.fields.iter().filter(|f| is_input(f)) {
            let f = ident(&field.ident);
            let below = field.min.and_then(|m| m.checked_sub(1));
            let above = field.max.map(|m| i64::from(m) + 1);
            // (the value, what it is past, the field the error names)
            let mut past: Vec<(TokenStream, &str, String)> = Vec::new();
            let key = field.json.clone();
            match &field.ty {
                FieldType::Int => {
                    past.extend(below.map(|v| (quote!(#v), "its minimum", key.clone())));
                    past.extend(above.map(|v| (quote!(#v), "its maximum", key.clone())));
                }
                FieldType::Money => {
                    let amount = format!("{key}.amount_minor");
                    let money = |v: i64| quote!(#api::Money { amount_minor: #v, currency: "EUR".to_owned() });
                    past.extend(below.map(|v| (money(v), "its minimum", amount.clone())));
                    past.extend(above.map(|v| (money(v), "its maximum", amount.clone())));
                }
                FieldType::String | FieldType::Text => {
                    let text = |n: i64| match n as usize {
                        0 => quote!(String::new()),
                        1 => quote!("x".to_owned()),
                        n => quote!("x".repeat(#n)),
                    };
                    past.extend(
                        below
                            .filter(|v| *v >= 0)
                            .map(|v| (text(v), "its shortest", key.clone())),
                    );
                    // (Not past a length too long to build in a test.)
                    let above = above.filter(|v| *v <= 1 << 20);
                    past.extend(above.map(|v| (text(v), "its longest", key.clone())));
                }
                _ => {}
            }
            for (value, bound, named) in past {
                let value = if super::input_optional(field) {
                    quote!(Some(#value))
                } else {
                    value
                };
                let what = format!("{}.{} past {bound}", resource.name, field.name);
                cases.push(quote! {
                    {
                        let mut input = #sample;
                        input.#f = #value;
                        assert!(names(input.validate(), #named), #what);
                    }
                });
            }
        }
    }
    if cases.is_empty() {
        return quote!();
    }
    quote! {
        /// The bounds of the spec's string, text, int and money fields hold at the API: each
        /// sample input with one field one past a bound (a length, a value, an amount's minor
        /// units) fails validation naming that field.
        #[test]
        fn inputs_past_a_fields_bounds_are_refused() {
            // Validation reads no references: any id will do.
            let mut ids = Ids::default();
            for resource in CREATION_ORDER {
                ids.push(resource, uuid::Uuid::nil());
            }
            let names = |checked: Result<(), Vec<#api::FieldError>>, field: &str| {
                checked.err().is_some_and(|errors| errors.iter().any(|e| e.field == field))
            };
            #(#cases)*
        }
    }
}

/// The key of a resource's rows in the tests' `Ids`.
pub fn ids_key(resource: &Resource) -> &str {
    &resource.ident
}

/// The function building a resource's `n`-th sample input: `sample_<resource>(n, &ids)`.
fn sample_fn(resource: &Resource) -> proc_macro2::Ident {
    format_ident!("sample_{}", resource.ident.trim_end_matches('_'))
}

/// A call of a resource's sample function; `ids` is an `&Ids` expression.
pub fn sample_call(resource: &Resource, n: TokenStream, ids: TokenStream) -> TokenStream {
    let f = sample_fn(resource);
    quote!(#f(#n, #ids))
}

/// Support shared by the generated test and bench targets, emitted once per file rather than
/// at each use (the role x operation test alone would otherwise grow by kilobytes per
/// resource): `Ids`, the rows made so far by resource; `text_sample`; and one function per
/// resource building its `n`-th sample input, within the field constraints.
pub fn sample_support<'a>(
    app: &App,
    resources: impl IntoIterator<Item = &'a Resource>,
    api: &proc_macro2::Ident,
) -> TokenStream {
    let resources: Vec<&Resource> = resources.into_iter().collect();
    let common = sample_common(&resources, quote!());
    let functions = resources
        .iter()
        .map(|resource| sample_function(app, resource, api, quote!()));
    quote! {
        #common
        #(#functions)*
    }
}

/// The generated tests' samples, a file per resource under `tests/samples/` (a change to one
/// resource of the spec changes its file alone, not the large `tests/service.rs`), with
/// `Ids` and `text_sample` in `tests/samples/mod.rs`.
fn render_samples(
    app: &App,
    files: &mut FileSet,
    dir: &str,
    api: &proc_macro2::Ident,
) -> Result<(), RenderError> {
    let resources: Vec<&Resource> = app.resources.iter().collect();
    let common = sample_common(&resources, quote!(pub));
    let modules = app.resources.iter().map(|resource| {
        let module = ident(&resource.ident);
        let f = sample_fn(resource);
        quote! {
            mod #module;
            pub use #module::#f;
        }
    });
    files.insert_rust(
        &format!("{dir}/tests/samples/mod.rs"),
        quote! {
            //! Sample inputs of every resource, within the field constraints: a file per
            //! resource, and what they share.

            #common
            #(#modules)*
        },
    )?;
    for resource in &app.resources {
        let doc = super::inner_doc(&format!("The `n`-th sample input of `{}`.", resource.name));
        let function = sample_function(app, resource, api, quote!(super::));
        files.insert_rust(
            &format!("{dir}/tests/samples/{}.rs", resource.ident),
            quote! {
                #doc

                #function
            },
        )?;
    }
    Ok(())
}

/// `Ids` and, when a sample needs it, `text_sample`; `vis` is their visibility.
fn sample_common(resources: &[&Resource], vis: TokenStream) -> TokenStream {
    let texts = resources.iter().any(|r| {
        r.fields
            .iter()
            .any(|f| is_input(f) && matches!(f.ty, FieldType::String | FieldType::Text))
    });
    let text_sample = texts.then(|| {
        quote! {
            /// `n` as text of `min..=max` characters: its last `max` characters, padded with `x`.
            #vis fn text_sample(n: i64, min: usize, max: usize) -> String {
                let text = if max >= 12 { format!("sample {n}") } else { n.to_string() };
                let skip = text.chars().count().saturating_sub(max);
                let text: String = text.chars().skip(skip).collect();
                format!("{text:x<min$}")
            }
        }
    });
    quote! {
        /// The ids of the rows a test made, by resource.
        #[derive(Default)]
        #vis struct Ids(std::collections::BTreeMap<&'static str, Vec<uuid::Uuid>>);

        // Which of these a target uses depends on the spec.
        #[allow(dead_code)]
        impl Ids {
            #vis fn push(&mut self, resource: &'static str, id: uuid::Uuid) {
                self.0.entry(resource).or_default().push(id);
            }
            #vis fn of(&self, resource: &str) -> &[uuid::Uuid] {
                self.0.get(resource).map_or(&[], Vec::as_slice)
            }
            #vis fn first(&self, resource: &str) -> uuid::Uuid {
                *self.of(resource).first().unwrap_or_else(|| panic!("no {resource} row yet"))
            }
            /// The `n`-th row (cycling), for a required reference.
            #vis fn pick(&self, resource: &str, n: i64) -> uuid::Uuid {
                let ids = self.of(resource);
                assert!(!ids.is_empty(), "no {resource} row to refer to");
                ids[n as usize % ids.len()]
            }
            /// The same for an optional reference: none while there is no row.
            #vis fn pick_optional(&self, resource: &str, n: i64) -> Option<uuid::Uuid> {
                let ids = self.of(resource);
                ids.get(n as usize % ids.len().max(1)).copied()
            }
            #vis fn pop(&mut self, resource: &str) -> Option<uuid::Uuid> {
                self.0.get_mut(resource)?.pop()
            }
        }

        #text_sample
    }
}

/// The `n`-th sample value of an int (`step` 1) or an amount of money (`step` 100) within the
/// field's `min` and `max`, `step` apart where they allow: code that cannot overflow, however
/// near the ends of `i64` the bounds are.
fn bounded_sample(n: &TokenStream, step: i64, field: &crate::model::Field) -> TokenStream {
    let max = field.max.map(i64::from);
    let min = field.min.unwrap_or(0).min(max.unwrap_or(i64::MAX));
    let unit = step == 1;
    let step = Literal::i64_unsuffixed(step);
    let span = max.map(|max| i128::from(max) - i128::from(min) + 1);
    let offset = match (span.and_then(|span| i64::try_from(span).ok()), unit) {
        (Some(span), true) => quote!(#n % #span),
        (Some(span), false) => quote!((#n * #step) % #span),
        (None, true) => n.clone(),
        (None, false) => quote!(#n * #step),
    };
    if min == 0 {
        offset
    } else {
        quote!(i64::saturating_add(#min, #offset))
    }
}

/// The function building a resource's `n`-th sample input; `scope` is the path to `Ids` and
/// `text_sample` (empty in the same file, `super::` from a file of its own, where the
/// function is public).
fn sample_function(
    app: &App,
    resource: &Resource,
    api: &proc_macro2::Ident,
    scope: TokenStream,
) -> TokenStream {
    let f = sample_fn(resource);
    let module = ident(&resource.ident);
    let input = input_type(resource);
    let refers = resource
        .fields
        .iter()
        .any(|f| is_input(f) && matches!(f.ty, FieldType::Reference { .. }));
    let ids = if refers { quote!(ids) } else { quote!(_) };
    let vis = (!scope.is_empty()).then(|| quote!(pub));
    let value = sample(app, resource, api, quote!(n), &scope);
    // Every field but those only actions change varies with `n`.
    let held = resource.held_fields();
    let varies = resource
        .fields
        .iter()
        .any(|f| is_input(f) && !held.iter().any(|(h, _)| h.ident == f.ident));
    let n = if varies { quote!(n) } else { quote!(_n) };
    quote! {
        #vis fn #f(#n: i64, #ids: &#scope Ids) -> #api::#module::#input {
            #value
        }
    }
}

/// Resources in an order where every required reference points to rows already created.
pub fn creation_order(app: &App) -> Vec<usize> {
    let mut done = vec![false; app.resources.len()];
    let mut order = Vec::new();
    while order.len() < app.resources.len() {
        let before = order.len();
        for (index, resource) in app.resources.iter().enumerate() {
            if done[index] {
                continue;
            }
            let ready = resource.fields.iter().all(|f| match f.ty {
                FieldType::Reference { resource: target } => {
                    f.optional || target == index || done[target]
                }
                _ => true,
            });
            if ready {
                done[index] = true;
                order.push(index);
            }
        }
        if order.len() == before {
            // Lowering refuses required reference cycles; anything left is created last.
            order.extend((0..app.resources.len()).filter(|i| !done[*i]));
            break;
        }
    }
    order
}

/// The expression of a resource's `n`-th sample input (the body of its sample function).
fn sample(
    app: &App,
    resource: &Resource,
    api: &proc_macro2::Ident,
    n: TokenStream,
    scope: &TokenStream,
) -> TokenStream {
    let module = ident(&resource.ident);
    let input = input_type(resource);
    let mut fields = Vec::new();
    let held = resource.held_fields();
    for field in resource.fields.iter().filter(|f| is_input(f)) {
        let f = ident(&field.ident);
        // A field only actions change is left to its default (or empty) by a create, and
        // kept by an update: every sample leaves it so, or, required without a default,
        // gives every sample the same value.
        let is_held = held.iter().any(|(h, _)| h.ident == field.ident);
        if is_held && (field.optional || field.default.is_some()) {
            fields.push(quote!(#f: None,));
            continue;
        }
        let n = if is_held { &quote!(0) } else { &n };
        let value = match &field.ty {
            FieldType::String | FieldType::Text => {
                let max = field.max.unwrap_or(200) as usize;
                let min = field.min.unwrap_or(0).max(0) as usize;
                quote!(#scope text_sample(#n, #min, #max))
            }
            FieldType::Email => quote!(format!("user{}@example.com", #n)),
            FieldType::Int => bounded_sample(n, 1, field),

            FieldType::Bool => quote!(#n % 2 == 0),
            FieldType::Decimal => quote!(rust_decimal::Decimal::new(#n * 125, 2)),
            FieldType::Money => {
                let currency = app
                    .payments
                    .as_ref()
                    .and_then(|p| p.currencies.first().cloned())
                    .unwrap_or_else(|| "EUR".into());
                // Within the amount's bounds (a hundred minor units apart, where they allow).
                let amount = bounded_sample(n, 100, field);
                quote!(#api::Money { amount_minor: #amount, currency: #currency.to_owned() })
            }
            FieldType::Timestamp => {
                quote!(chrono::DateTime::from_timestamp(1_700_000_000 + #n, 0).expect("valid time"))
            }
            FieldType::Date => {
                quote!(chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date") + chrono::Days::new(#n as u64))
            }
            FieldType::Uuid => quote!(uuid::Uuid::from_u128(#n as u128)),
            FieldType::Enum { .. } => {
                let ety = enum_type(field);
                quote!(#api::#module::#ety::ALL[#n as usize % #api::#module::#ety::ALL.len()])
            }
            FieldType::Reference { resource: target } => {
                let key = ids_key(&app.resources[*target]);
                if field.optional {
                    quote!(ids.pick_optional(#key, #n))
                } else {
                    quote!(ids.pick(#key, #n))
                }
            }
            FieldType::Principal => continue,
        };
        let optional_ref = field.optional && matches!(field.ty, FieldType::Reference { .. });
        let value = if (field.optional || field.default.is_some()) && !optional_ref {
            quote!(Some(#value))
        } else {
            value
        };
        fields.push(quote!(#f: #value,));
    }
    quote!(#api::#module::#input { #(#fields)* })
}

fn resource_steps(app: &App, index: usize, api: &proc_macro2::Ident) -> TokenStream {
    let resource = &app.resources[index];
    let module = ident(&resource.ident);
    let ty = ident(&resource.type_name);
    let key = ids_key(resource);
    let tenancy = server::tenancy_arg(resource, quote!(tenant));
    let other = if resource.global {
        quote!(None)
    } else {
        quote!(Some(other))
    };
    let sample = sample_fn(resource);
    let customs: Vec<TokenStream> = resource
        .actions
        .iter()
        .filter(|a| matches!(a.kind, ActionKind::Custom(_)))
        .map(|a| {
            let change = server::change_type(a);
            let checks: Vec<TokenStream> = a
                .sets
                .iter()
                .map(|(field_index, value)| {
                    let field = &resource.fields[*field_index];
                    let fi = ident(&field.ident);
                    let expected = match (&field.ty, value) {
                        (FieldType::Enum { variants, .. }, crate::model::Value::Str(v)) => {
                            let ety = enum_type(field);
                            let variant = variants.iter().find(|x| &x.value == v).map(|x| ident(&x.ident));
                            quote!(#api::#module::#ety::#variant)
                        }
                        (_, crate::model::Value::Bool(b)) => quote!(#b),
                        (_, crate::model::Value::Int(i)) => quote!(#i),
                        (_, crate::model::Value::Str(v)) => quote!(#v),
                    };
                    match (field.optional, value) {
                        (false, crate::model::Value::Bool(true)) => quote!(assert!(done.#fi);),
                        (false, crate::model::Value::Bool(false)) => quote!(assert!(!done.#fi);),
                        (true, _) => quote!(assert_eq!(done.#fi, Some(#expected));),
                        (false, _) => quote!(assert_eq!(done.#fi, #expected);),
                    }
                })
                .collect();
            quote! {
                let done = server::store::apply::<server::resources::#module::#change>(&mut conn, #tenancy, first).await.expect("custom action").expect("row exists");
                #(#checks)*
            }
        })
        .collect();
    let exercise = quote! {
        exercise::<#api::#module::#ty>(&mut conn, #tenancy, #other, subject, &mut ids, #key, #sample).await
    };
    if customs.is_empty() {
        quote!(#exercise;)
    } else {
        quote! {
            {
                let first = #exercise;
                #(#customs)*
            }
        }
    }
}

/// For a previous version whose bodies differ: rows created and updated through it carry its
/// property names, read back through the current version under the current names, and an
/// update through it keeps what it does not have.
fn previous_bodies_test(
    app: &App,
    order: &[usize],
    api: &proc_macro2::Ident,
) -> Option<TokenStream> {
    let mut cases = Vec::new();
    for version in &app.deprecated_versions {
        let version_mod = ident(&version.version);
        for resource in &app.resources {
            let Some(served) = version.serves(resource) else {
                continue;
            };
            let Some(fields) = &served.fields else {
                continue;
            };
            let action = |kind: ActionKind| served.actions.iter().find(|a| a.kind == kind).copied();
            let current_read = resource
                .action(&ActionKind::Read)
                .filter(|a| a.public.is_none());
            let (Some(create), Some(read), Some(current_read)) = (
                action(ActionKind::Create),
                action(ActionKind::Read),
                current_read,
            ) else {
                continue;
            };
            if create.public.is_some() {
                continue;
            }
            let module = ident(&resource.ident);
            let ty = ident(&resource.type_name);
            let input = input_type(resource);
            let key = ids_key(resource);
            let sample = sample_call(resource, quote!(7), quote!(&ids));
            let given: Vec<_> = fields
                .iter()
                .filter(|(f, _)| is_input(f))
                .map(|(f, _)| ident(&f.ident))
                .collect();
            let mut keys: Vec<&str> = fields.iter().map(|(_, json)| *json).collect();
            keys.extend(["id", "created_at", "updated_at"]);
            keys.sort_unstable();
            let create_path = version.path_of(app, resource, &served, create);
            let read_path = version.path_of(app, resource, &served, read);
            let current_path = current_read.path.as_str();
            let label = format!("{} in {}", resource.name, version.version);
            let update = action(ActionKind::Update).zip(resource.action(&ActionKind::Update)).map(|(old, now)| {
                let old_path = version.path_of(app, resource, &served, old);
                let now_path = now.path.as_str();
                let kept: Vec<_> = resource
                    .fields
                    .iter()
                    .filter(|f| is_input(f) && !fields.iter().any(|(g, _)| g.name == f.name))
                    .map(|f| ident(&f.ident))
                    .collect();
                quote! {
                    // The whole row through the current version, then an update through the
                    // previous one: what it does not have keeps its value.
                    let (status, before) = send(&app, "PUT", &#now_path.replace("{id}", &id), &token, Some(serde_json::to_value(&current).expect("serializes"))).await;
                    assert_eq!(status, StatusCode::OK, "{}: {before}", #label);
                    let before: #api::#module::#ty = serde_json::from_value(before).expect("the current body");
                    let (status, body) = send(&app, "PUT", &#old_path.replace("{id}", &id), &token, Some(serde_json::to_value(&old).expect("serializes"))).await;
                    assert_eq!(status, StatusCode::OK, "{}: {body}", #label);
                    let (_, after) = send(&app, "GET", &#current_path.replace("{id}", &id), &token, None).await;
                    let after: #api::#module::#ty = serde_json::from_value(after).expect("the current body");
                    #( assert_eq!(after.#kept, before.#kept, "{} kept {}", #label, stringify!(#kept)); )*
                }
            });
            cases.push(quote! {
                {
                    let current = #sample;
                    let #api::#module::#input { #(#given,)* .. } = current.clone();
                    let old = #api::#version_mod::#module::#input { #(#given),* };
                    let (status, body) = send(&app, "POST", #create_path, &token, Some(serde_json::to_value(&old).expect("serializes"))).await;
                    assert_eq!(status, StatusCode::CREATED, "{}: {body}", #label);
                    let mut keys: Vec<&str> = body.as_object().expect("an object").keys().map(String::as_str).collect();
                    keys.sort_unstable();
                    assert_eq!(keys, [#(#keys),*], "{} answers with its own properties", #label);
                    let created: #api::#version_mod::#module::#ty = serde_json::from_value(body).expect("its own body");
                    let id = created.id.to_string();
                    let (status, body) = send(&app, "GET", &#read_path.replace("{id}", &id), &token, None).await;
                    assert_eq!(status, StatusCode::OK, "{}: {body}", #label);
                    assert_eq!(serde_json::from_value::<#api::#version_mod::#module::#ty>(body).expect("its own body"), created);
                    let (status, body) = send(&app, "GET", &#current_path.replace("{id}", &id), &token, None).await;
                    assert_eq!(status, StatusCode::OK, "{}: {body}", #label);
                    let now: #api::#module::#ty = serde_json::from_value(body).expect("the current body");
                    assert_eq!(#api::#version_mod::#module::#ty::from(now), created, "{} reads the same row", #label);
                    #update
                    ids.push(#key, created.id);
                }
            });
        }
    }
    if cases.is_empty() {
        return None;
    }
    let rows = order.iter().map(|&index| {
        let resource = &app.resources[index];
        let insert = server::store_fn(api, resource, "insert");
        let key = ids_key(resource);
        let tenancy = server::tenancy_arg(resource, quote!(tenant));
        let sample = sample_call(resource, quote!(n), quote!(&ids));
        quote! {
            for n in 0..2i64 {
                let input = #sample;
                let created = #insert(&mut conn, #tenancy, subject, &input).await.expect("insert");
                ids.push(#key, created.id);
            }
        }
    });
    Some(quote! {
        /// A previous version whose bodies differ answers with its own property names, reads
        /// the rows the current version reads, and its updates keep what it does not have.
        #[tokio::test]
        async fn previous_versions_keep_their_own_bodies() {
            let db = TestDb::create().await;
            let tenant = db.tenant("tenant a").await;
            let subject = "user-1";
            db.member(tenant, subject, ALL_ROLES).await;
            let app = router_on(db.app.clone());
            let token = signed(&dev::claims(subject, tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
            // Rows to refer to, made through the data layer.
            let mut conn = db.pool.acquire().await.expect("a connection");
            let mut ids = Ids::default();
            #(#rows)*
            drop(conn);
            #(#cases)*
            db.drop().await;
        }
    })
}

#[cfg(test)]
mod cases {
    use super::*;

    /// The hostile spec's cases: JSON the generated test can read, every table entry on a
    /// line of its own (a condition's calls on theirs), as many as the spec has of each.
    #[test]
    fn the_cases_are_json_one_entry_a_line() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/hostile.yaml");
        let source = std::fs::read_to_string(path).expect("the example spec");
        let app = crate::compile(path, &source).expect("the example spec is valid");
        let files =
            crate::render::render(&app, &crate::render::Options::default()).expect("it renders");
        let text = &files.files[&format!("crates/server/tests/{CASES_FILE}")];
        let cases: serde_json::Value = serde_json::from_str(text).expect("the cases are JSON");
        let table = |name: &str| cases[name].as_array().expect("a table").clone();
        let writes = app
            .resources
            .iter()
            .flat_map(|r| r.actions.iter().map(move |a| (r, a)))
            .filter(|(r, a)| write_checked(r, a))
            .count();
        assert_eq!(table("writes").len(), writes);
        let conditions = table("conditions");
        assert!(
            !conditions.is_empty(),
            "the hostile spec's conditions are checked"
        );
        let calls: usize = conditions
            .iter()
            .map(|c| c["calls"].as_array().expect("calls").len())
            .sum();
        let entries = ["reads", "outsider_reads", "writes"]
            .iter()
            .map(|name| table(name).len())
            .sum::<usize>()
            + conditions.len()
            + calls;
        let lines = text
            .lines()
            .filter(|line| line.trim_start().starts_with('{') && line.len() > 1)
            .count();
        assert_eq!(lines, entries, "{text}");
        assert!(text.lines().take(3).any(|l| l.contains("@generated")));
    }
}
