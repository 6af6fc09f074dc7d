//! What one authorization decision costs through cedar-policy's API, piece by piece, and how
//! the generated layout (one policy per operation) compares with one policy per role for the
//! same permissions. The schema and policies are those of ledgerly's `customer.read` (four
//! roles, two of them needing a second factor) with a condition on the row, as a conditional
//! operation is evaluated on every request; and, to show where Cedar's time goes, its floor
//! (one policy permitting everything), the typed head alone and the condition alone. Run:
//! `cargo bench --bench cedar`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression,
};
use std::collections::HashSet;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

const ROLES: [(&str, bool); 4] = [
    ("owner", true),
    ("finance", true),
    ("member", false),
    ("auditor", false),
];
const HEAD: &str = "permit (principal is App::Principal, action == App::Action::\"customer.read\", resource is App::Customer)";

/// The same permissions, one policy per role (the layout before `bc3f62d`).
fn per_role() -> String {
    ROLES
        .iter()
        .map(|(role, mfa)| {
            let mfa = if *mfa { " && context.mfa" } else { "" };
            format!(
                "@id(\"customer.read/{role}\")\n{HEAD} when {{ principal.roles.contains(\"{role}\") && context.scopes.contains(\"invoices.read\"){mfa} && resource.status == \"open\" }};\n"
            )
        })
        .collect()
}

/// One policy for the operation, as bulwark generates it.
fn per_operation() -> String {
    format!(
        "@id(\"customer.read\")\n{HEAD} when {{ context.scopes.contains(\"invoices.read\") && (principal.roles.containsAny([\"member\", \"auditor\"]) || (context.mfa && principal.roles.containsAny([\"owner\", \"finance\"]))) && resource.status == \"open\" }};\n"
    )
}

/// The same policy with each role asked by `contains` rather than `containsAny` of a set.
fn per_operation_contains() -> String {
    format!(
        "@id(\"customer.read\")\n{HEAD} when {{ context.scopes.contains(\"invoices.read\") && (principal.roles.contains(\"member\") || principal.roles.contains(\"auditor\") || (context.mfa && (principal.roles.contains(\"owner\") || principal.roles.contains(\"finance\")))) && resource.status == \"open\" }};\n"
    )
}

/// The median time of one call of `f`, in µs, over 21 batches of 2000 calls.
fn median(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..2000 {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / 2000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[10]
}

fn main() {
    let name = |text: &str| EntityTypeName::from_str(text).expect("a type name");
    let (principal_type, customer_type, action_type) = (
        name("App::Principal"),
        name("App::Customer"),
        name("App::Action"),
    );
    let uid = |kind: &EntityTypeName, id: &str| {
        EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
    };
    let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
    let principal = || {
        let attrs = [
            ("sub".to_owned(), string("user-1")),
            (
                "tenant".to_owned(),
                string("0190a0b0-0000-7000-8000-00000000000a"),
            ),
            (
                "roles".to_owned(),
                RestrictedExpression::new_set([string("auditor")]),
            ),
        ];
        Entity::new(uid(&principal_type, "user-1"), attrs.into(), HashSet::new())
            .expect("an entity")
    };
    let row = || {
        let attrs = [
            ("name".to_owned(), string("Acme")),
            ("status".to_owned(), string("open")),
        ];
        Entity::new(uid(&customer_type, "row-1"), attrs.into(), HashSet::new()).expect("an entity")
    };
    let context = || {
        Context::from_pairs([
            (
                "scopes".to_owned(),
                RestrictedExpression::new_set([string("invoices.read")]),
            ),
            ("mfa".to_owned(), RestrictedExpression::new_bool(false)),
        ])
        .expect("a context")
    };
    let request = || {
        let entities = Entities::from_entities([principal(), row()], None).expect("entities");
        let request = Request::new(
            uid(&principal_type, "user-1"),
            uid(&action_type, "customer.read"),
            uid(&customer_type, "row-1"),
            context(),
            None,
        )
        .expect("a request");
        (request, entities)
    };
    let authorizer = Authorizer::new();
    let (built, entities) = request();
    let (one, two) = (principal(), row());

    println!("| step | median µs |");
    println!("|---|---:|");
    println!(
        "| parse a type name (`EntityTypeName::from_str`; the server parses them once) | {:.2} |",
        median(|| {
            black_box(name("App::Principal"));
        })
    );
    println!(
        "| build the principal entity | {:.2} |",
        median(|| {
            black_box(principal());
        })
    );
    println!(
        "| collect two entities (`Entities::from_entities`) | {:.2} |",
        median(|| {
            black_box(Entities::from_entities([one.clone(), two.clone()], None).expect("entities"));
        })
    );
    println!(
        "| build the context | {:.2} |",
        median(|| {
            black_box(context());
        })
    );
    // A token of ledgerly's six scopes, as the guard's benchmark has: its context built anew,
    // against the same context kept under a key of the second factor and scopes.
    let six: Vec<String> = [
        "invoices.read",
        "invoices.write",
        "refunds.manage",
        "rates.admin",
        "members.manage",
        "idp.events",
    ]
    .map(str::to_owned)
    .to_vec();
    let build = |scopes: &[String], mfa: bool| {
        let set = RestrictedExpression::new_set(
            scopes
                .iter()
                .map(|s| RestrictedExpression::new_string(s.clone())),
        );
        Context::from_pairs([
            ("scopes".to_owned(), set),
            ("mfa".to_owned(), RestrictedExpression::new_bool(mfa)),
        ])
        .expect("a context")
    };
    let key = |scopes: &[String], mfa: bool| {
        use std::fmt::Write as _;
        let mut key = String::from(if mfa { "mfa" } else { "-" });
        for scope in scopes {
            let _ = write!(key, "|{}:{scope}", scope.len());
        }
        key
    };
    let kept = std::sync::RwLock::new(std::collections::HashMap::from([(
        key(&six, true),
        build(&six, true),
    )]));
    println!(
        "| build the context of a token with six scopes | {:.2} |",
        median(|| {
            black_box(build(&six, true));
        })
    );
    println!(
        "| the same context kept (its key, a read lock, a lookup, a clone) | {:.2} |",
        median(|| {
            let key = key(&six, true);
            black_box(kept.read().expect("the lock").get(&key).cloned());
        })
    );
    println!(
        "| everything before evaluation (entities, context, request) | {:.2} |",
        median(|| {
            black_box(request());
        })
    );
    for (layout, text) in [
        ("one policy per role (4)", per_role()),
        ("one policy per operation (1)", per_operation()),
        (
            "one policy per operation, roles by `contains`",
            per_operation_contains(),
        ),
        // Where Cedar's time goes: its floor for one policy, the typed head, the condition.
        (
            "one policy permitting all (Cedar's floor)",
            "permit (principal, action, resource);".to_owned(),
        ),
        (
            "the operation's typed head, `when { true }`",
            format!("{HEAD} when {{ true }};"),
        ),
        (
            "the operation's condition under an untyped head",
            per_operation().replacen(HEAD, "permit (principal, action, resource)", 1),
        ),
    ] {
        let policies = PolicySet::from_str(&text).expect("the policies parse");
        println!(
            "| `is_authorized`, {layout} | {:.2} |",
            median(|| {
                let answer = authorizer.is_authorized(&built, &policies, &entities);
                assert_eq!(answer.decision(), Decision::Allow);
            })
        );
    }
}
