//! Hand-written golden table of ledgerly's permissions (`specs/ledgerly.yaml`), run against the
//! generated service and a real PostgreSQL. Unlike the generated tests, whose expectations are
//! derived from the spec by bulwark, every expected status here was written down by a person
//! reading the spec, including each condition with a row where it holds and one where it
//! fails. bulwark's `generated_workspaces` test copies this file into the generated ledgerly
//! workspace as `crates/server/tests/golden.rs`.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use server::authz::Authority;
use server::identity::{self, Keys, dev};
use tower::ServiceExt;

struct Service {
    admin: sqlx::PgPool,
    name: String,
    /// Superuser connections: seeding and the race's other transaction.
    pool: sqlx::PgPool,
    /// The app role the service connects as: no superuser, no owner, only what `grants`
    /// gives it, so row-level security and the grants apply as in production.
    role: String,
    app_pool: sqlx::PgPool,
    app: axum::Router,
    key: (Vec<u8>, String),
    tenant: uuid::Uuid,
}

impl Service {
    /// A database of its own with one tenant whose members are `owner`, `finance`, `member`
    /// and `auditor` (one role each, named after it).
    async fn start() -> Service {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("PostgreSQL is reachable");
        let name = format!("ledgerly_golden_{}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .expect("create the database");
        let options: sqlx::postgres::PgConnectOptions = url.parse().expect("DATABASE_URL");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().database(&name))
            .await
            .expect("connect");
        sqlx::raw_sql(include_str!("../../../migrations/0001_init.sql"))
            .execute(&pool)
            .await
            .expect("migrate");
        let tenant = uuid::Uuid::now_v7();
        sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'agency')")
            .bind(tenant)
            .execute(&pool)
            .await
            .expect("a tenant");
        sqlx::query("INSERT INTO tenant_domains (tenant_id, domain, token, verified_at) VALUES ($1, 'example.com', 't', now())")
            .bind(tenant)
            .execute(&pool)
            .await
            .expect("its domain");
        for role in ["owner", "finance", "member", "auditor"] {
            sqlx::query("INSERT INTO memberships (tenant_id, subject, roles) VALUES ($1, $2, $3)")
                .bind(tenant)
                .bind(role)
                .bind(vec![role.to_owned()])
                .execute(&pool)
                .await
                .expect("a member");
        }
        let role = format!("{name}_app");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        )))
        .execute(&admin)
        .await
        .expect("create the app role");
        server::grants::grant_app_role(&pool, &role)
            .await
            .expect("grant the app role");
        let app_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.database(&name).username(&role))
            .await
            .expect("connect as the app role");
        let key = dev::generate("golden").expect("a key pair");
        let keys = Keys::from_jwks(&key.1).expect("the JWKS");
        let auth = Authority::new(keys, app_pool.clone()).expect("the policies");
        let app = server::router(server::AppState {
            db: app_pool.clone(),
            auth: std::sync::Arc::new(auth),
        });
        Service {
            admin,
            name,
            pool,
            role,
            app_pool,
            app,
            key,
            tenant,
        }
    }

    /// Calls the service as `subject` (with a second factor when `mfa`); the status and body.
    async fn call(
        &self,
        subject: &str,
        mfa: bool,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let amr: &[&str] = if mfa { &["hwk"] } else { &["pwd"] };
        let scopes = "invoices.read invoices.write";
        let claims = dev::claims(subject, self.tenant, scopes, amr, identity::now(), 60);
        let token = dev::mint(&self.key.0, "golden", &claims).expect("a token");
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("a request");
        let response = self.app.clone().oneshot(request).await.expect("a response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("the body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// Creates a row as `subject` (with a second factor) and returns its id.
    async fn create(&self, subject: &str, path: &str, body: serde_json::Value) -> String {
        let (status, row) = self
            .call(subject, true, Method::POST, path, Some(body))
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "seeding {path} as {subject}: {row}"
        );
        row["id"].as_str().expect("an id").to_owned()
    }

    async fn stop(self) {
        self.pool.close().await;
        self.app_pool.close().await;
        for statement in [
            format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS \"{}\"", self.role),
        ] {
            let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&self.admin)
                .await;
        }
    }
}

fn customer(n: u32) -> serde_json::Value {
    serde_json::json!({ "name": format!("Client {n}"), "email": format!("c{n}@example.com"), "country": "DE" })
}

fn invoice(customer: &str, number: &str, status: &str) -> serde_json::Value {
    serde_json::json!({
        "customer": customer, "number": number,
        "total": { "amount_minor": 12_000, "currency": "EUR" },
        "issued_on": "2026-11-01", "status": status,
    })
}

#[tokio::test]
async fn ledgerly_permissions_match_the_golden_table() {
    let s = Service::start().await;
    use Method as M;
    use StatusCode as S;
    let c = s.create("owner", "/v1/customers", customer(1)).await;
    let customer_path = format!("/v1/customers/{c}");

    // customer: everyone reads; owner and finance (second factor required) write; owner deletes.
    let customer_table: &[(&str, bool, Method, Option<serde_json::Value>, StatusCode)] = &[
        ("owner", true, M::GET, None, S::OK),
        ("finance", true, M::GET, None, S::OK),
        ("member", false, M::GET, None, S::OK),
        ("auditor", false, M::GET, None, S::OK),
        ("owner", false, M::GET, None, S::UNAUTHORIZED), // step-up: owner needs a second factor
        ("finance", true, M::PUT, Some(customer(2)), S::OK),
        ("finance", false, M::PUT, Some(customer(2)), S::UNAUTHORIZED),
        ("member", false, M::PUT, Some(customer(2)), S::FORBIDDEN),
        ("auditor", false, M::PUT, Some(customer(2)), S::FORBIDDEN),
    ];
    for (who, mfa, method, body, expected) in customer_table {
        let (status, answer) = s
            .call(who, *mfa, method.clone(), &customer_path, body.clone())
            .await;
        assert_eq!(
            status, *expected,
            "{method} customer as {who} (mfa {mfa}): {answer}"
        );
    }
    for (who, mfa, expected) in [
        ("member", false, S::FORBIDDEN),
        ("auditor", false, S::FORBIDDEN),
        ("finance", false, S::UNAUTHORIZED),
        ("finance", true, S::CREATED),
    ] {
        let (status, _) = s
            .call(who, mfa, M::POST, "/v1/customers", Some(customer(3)))
            .await;
        assert_eq!(status, expected, "create customer as {who} (mfa {mfa})");
    }
    let spare = s.create("owner", "/v1/customers", customer(4)).await;
    for (who, expected) in [
        ("finance", S::FORBIDDEN),
        ("member", S::FORBIDDEN),
        ("owner", S::NO_CONTENT),
    ] {
        let (status, _) = s
            .call(
                who,
                true,
                M::DELETE,
                &format!("/v1/customers/{spare}"),
                None,
            )
            .await;
        assert_eq!(status, expected, "delete customer as {who}");
    }

    // invoice.update: `resource.status == "draft" && (finance || resource.owner == caller)`,
    // on the stored row and on the row as it would be written.
    let by_member = s
        .create("member", "/v1/invoices", invoice(&c, "M-1", "draft"))
        .await;
    let by_finance = s
        .create("finance", "/v1/invoices", invoice(&c, "F-1", "draft"))
        .await;
    let update = |id: &str| format!("/v1/invoices/{id}");
    let update_table: &[(&str, &str, &str, &str, StatusCode)] = &[
        // (caller, row, number, status written, expected)
        ("member", by_member.as_str(), "M-1", "draft", S::OK), // its owner, draft
        ("finance", by_member.as_str(), "M-1", "draft", S::OK), // finance, draft
        ("owner", by_member.as_str(), "M-1", "draft", S::FORBIDDEN), // neither finance nor its owner
        ("auditor", by_member.as_str(), "M-1", "draft", S::FORBIDDEN), // role not allowed
        ("member", by_finance.as_str(), "F-1", "draft", S::FORBIDDEN), // not its owner
        // `status` changes only through send, void and write_off: an update may not write it.
        (
            "finance",
            by_member.as_str(),
            "M-1",
            "open",
            S::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (who, row, number, status_written, expected) in update_table {
        let (status, answer) = s
            .call(
                who,
                true,
                M::PUT,
                &update(row),
                Some(invoice(&c, number, status_written)),
            )
            .await;
        assert_eq!(
            status, *expected,
            "update invoice {number} as {who} writing {status_written}: {answer}"
        );
    }
    let (_, stored) = s
        .call("owner", true, M::GET, &update(&by_member), None)
        .await;
    assert_eq!(
        stored["status"], "draft",
        "a refused update left the row as it was"
    );
    // A member keeps their own draft at most 10,000.00; finance may raise it, after which
    // the member's updates are refused on the row as stored.
    let mut raised = invoice(&c, "M-1", "draft");
    raised["total"]["amount_minor"] = 1_000_001.into();
    let mut at_limit = invoice(&c, "M-1", "draft");
    at_limit["total"]["amount_minor"] = 1_000_000.into();
    let member_draft = update(&by_member);
    for (who, body, expected, why) in [
        (
            "member",
            &raised,
            S::FORBIDDEN,
            "the written row is over the member's limit",
        ),
        ("member", &at_limit, S::OK, "at the limit"),
        ("finance", &raised, S::OK, "finance has no limit"),
        (
            "member",
            &at_limit,
            S::FORBIDDEN,
            "the stored row is over the member's limit",
        ),
    ] {
        let (status, answer) = s
            .call(who, true, M::PUT, &member_draft, Some(body.clone()))
            .await;
        assert_eq!(status, expected, "{why}: {answer}");
    }

    // invoice.send: owner or finance, `resource.status == "draft"`; invoice.void: finance,
    // `resource.status == "open"`.
    let send = |id: &str| format!("/v1/invoices/{id}/send");
    let void = |id: &str| format!("/v1/invoices/{id}/void");
    let steps: &[(&str, String, StatusCode, &str)] = &[
        (
            "member",
            send(&by_finance),
            S::FORBIDDEN,
            "member may not send",
        ),
        (
            "auditor",
            send(&by_finance),
            S::FORBIDDEN,
            "auditor may not send",
        ),
        (
            "finance",
            void(&by_finance),
            S::FORBIDDEN,
            "void holds only for open invoices",
        ),
        ("owner", send(&by_finance), S::OK, "owner sends a draft"),
        (
            "owner",
            send(&by_finance),
            S::FORBIDDEN,
            "send holds only for drafts",
        ),
        (
            "owner",
            void(&by_finance),
            S::FORBIDDEN,
            "owner may not void",
        ),
        (
            "finance",
            update(&by_finance),
            S::FORBIDDEN,
            "update holds only for drafts",
        ),
        (
            "finance",
            void(&by_finance),
            S::OK,
            "finance voids an open invoice",
        ),
        (
            "finance",
            void(&by_finance),
            S::FORBIDDEN,
            "void holds only once",
        ),
    ];
    for (who, path, expected, why) in steps {
        let method = if path.ends_with("send") || path.ends_with("void") {
            M::POST
        } else {
            M::PUT
        };
        let body = (method == M::PUT).then(|| invoice(&c, "F-1", "draft"));
        let (status, answer) = s.call(who, true, method, path, body).await;
        assert_eq!(status, *expected, "{why}: {answer}");
    }
    let (_, voided) = s
        .call("auditor", false, M::GET, &update(&by_finance), None)
        .await;
    assert_eq!(voided["status"], "void");

    // invoice.write_off: owner or finance, `resource.status == "open" &&
    // resource.total.currency != "JPY" && resource.total.amount_minor <= 5000`.
    let with_total = |number: &str, status: &str, amount: i64, currency: &str| {
        let mut body = invoice(&c, number, status);
        body["total"] = serde_json::json!({ "amount_minor": amount, "currency": currency });
        body
    };
    // Invoices start as drafts (a create may not set `status`); the open ones are sent.
    let mut rows = Vec::new();
    for (number, open, amount, currency) in [
        ("W-1", true, 5_000, "EUR"),
        ("W-2", true, 5_001, "EUR"),
        ("W-3", true, 500, "JPY"),
        ("W-4", false, 100, "USD"),
    ] {
        let body = with_total(number, "draft", amount, currency);
        let id = s.create("owner", "/v1/invoices", body).await;
        if open {
            let (status, answer) = s.call("owner", true, M::POST, &send(&id), None).await;
            assert_eq!(status, S::OK, "sending {number}: {answer}");
        }
        rows.push(id);
    }
    let (status, answer) = s
        .call(
            "owner",
            true,
            M::POST,
            "/v1/invoices",
            Some(with_total("W-5", "open", 100, "EUR")),
        )
        .await;
    assert_eq!(
        status,
        S::UNPROCESSABLE_ENTITY,
        "an invoice created open: {answer}"
    );
    let write_off = |row: usize| format!("/v1/invoices/{}/write-off", rows[row]);
    let steps: &[(&str, String, StatusCode, &str)] = &[
        (
            "member",
            write_off(0),
            S::FORBIDDEN,
            "member may not write off",
        ),
        (
            "auditor",
            write_off(0),
            S::FORBIDDEN,
            "auditor may not write off",
        ),
        (
            "finance",
            write_off(1),
            S::FORBIDDEN,
            "50.01 is over the limit",
        ),
        ("owner", write_off(2), S::FORBIDDEN, "never in JPY"),
        ("owner", write_off(3), S::FORBIDDEN, "only open invoices"),
        ("finance", write_off(0), S::OK, "finance writes off 50.00"),
        ("owner", write_off(0), S::FORBIDDEN, "written off once"),
    ];
    for (who, path, expected, why) in steps {
        let (status, answer) = s.call(who, true, M::POST, path, None).await;
        assert_eq!(status, *expected, "{why}: {answer}");
    }

    // Check and write are atomic: while another transaction holds the draft and sends it,
    // the member's update waits, then sees the invoice open and is refused; it never writes
    // over a row it checked before the change.
    let racing = s
        .create("member", "/v1/invoices", invoice(&c, "R-1", "draft"))
        .await;
    let id: uuid::Uuid = racing.parse().expect("a uuid");
    let mut other = s.pool.begin().await.expect("a transaction");
    sqlx::query("SELECT 1 FROM invoice WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *other)
        .await
        .expect("lock the row");
    let racing_path = update(&racing);
    let (update_result, ()) = tokio::join!(
        s.call(
            "member",
            false,
            M::PUT,
            &racing_path,
            Some(invoice(&c, "R-1", "draft"))
        ),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            sqlx::query("UPDATE invoice SET status = 'open' WHERE id = $1")
                .bind(id)
                .execute(&mut *other)
                .await
                .expect("send it meanwhile");
            other.commit().await.expect("commit");
        }
    );
    assert_eq!(update_result.0, S::FORBIDDEN, "{}", update_result.1);
    let (_, after) = s
        .call("auditor", false, M::GET, &update(&racing), None)
        .await;
    assert_eq!(after["status"], "open");

    // Invoices are never deleted: there is no such route.
    let (status, _) = s
        .call("owner", true, M::DELETE, &update(&by_member), None)
        .await;
    assert_eq!(status, S::METHOD_NOT_ALLOWED);
    s.stop().await;
}
