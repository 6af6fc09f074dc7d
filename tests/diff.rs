//! `bulwark diff OLD NEW`: security-relevant and API changes between two specs, as Markdown
//! and JSON, from files or from git revisions; exit 3 on a breaking API change without an
//! `api.version` bump.

#![allow(clippy::unwrap_used)]

mod common;

use common::ledgerly;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn diff(args: &[&str]) -> (i32, Value, String) {
    let json = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .args(["--format", "json", "diff"])
        .args(args)
        .output()
        .unwrap();
    let markdown = Command::new(env!("CARGO_BIN_EXE_bulwark"))
        .arg("diff")
        .args(args)
        .output()
        .unwrap();
    assert_eq!(json.status.code(), markdown.status.code());
    (
        json.status.code().unwrap(),
        serde_json::from_slice(&json.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&markdown.stdout).into_owned(),
    )
}

/// `(subject, message, flagged)` of one part of the report.
fn changes(json: &Value, part: &str) -> Vec<(String, String, bool)> {
    json["report"][part]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["subject"].as_str().unwrap().to_owned(),
                c["message"].as_str().unwrap().to_owned(),
                c["flagged"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The security part of the report from the spec at `old` to `text`.
fn security_changes(dir: &Path, old: &str, text: &str) -> Vec<(String, String, bool)> {
    let new = write(dir, "new.yaml", text);
    let (_, json, _) = diff(&[old, &new]);
    changes(&json, "security")
}

/// `found` holds a flagged change of `subject` whose message contains `message`.
fn assert_flagged(found: &[(String, String, bool)], subject: &str, message: &str) {
    assert!(
        found
            .iter()
            .any(|(s, m, f)| s == subject && m.contains(message) && *f),
        "{subject}: {message} in {found:?}"
    );
}

#[test]
fn the_same_spec_reformatted_has_no_changes() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.yaml", &ledgerly());
    let reformatted = ledgerly()
        .replace("# Ledgerly", "# Ledgerly, reworded")
        .replace(
            "      name:  { type: string, max: 200 }",
            "      name:\n        type: string\n        max: 200",
        );
    let new = write(dir.path(), "new.yaml", &reformatted);
    let (code, json, markdown) = diff(&[&old, &new]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(changes(&json, "security"), vec![]);
    assert_eq!(changes(&json, "api"), vec![]);
    assert!(
        markdown.contains("## Security-relevant changes\n\nNone."),
        "{markdown}"
    );
}

#[test]
fn loosened_access_and_breaking_api_changes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.yaml", &ledgerly());
    let changed = ledgerly()
        .replace(
            "      update: { roles: [owner, finance], scope: invoices.write }\n",
            "      update: { roles: [owner, finance, member], scope: invoices.write }\n",
        )
        .replace("        when: 'resource.status == \"open\"'\n", "")
        .replace(
            "  finance: { description: Bills and refunds, mfa: required }",
            "  finance: { description: Bills and refunds }",
        )
        .replace("rate_limit: 10/min", "rate_limit: 100/min")
        .replace(
            "      vat_id: { type: string, max: 32, optional: true }\n",
            "      vat_id: { type: int, optional: true }\n      segment: { type: string, max: 10 }\n",
        )
        .replace("dual_control_above: { EUR: 500.00", "dual_control_above: { EUR: 5000.00")
        .replace(
            "production: { locked_roles: [owner, finance] }",
            "production: { locked_roles: [owner] }",
        )
        .replace("max_token_lifetime: 10m", "max_token_lifetime: 1h")
        .replace("      status:   { type: enum, values: [draft, open, paid, void], default: draft }", "      status:   { type: enum, values: [draft, open, void], default: draft }");
    let new = write(dir.path(), "new.yaml", &changed);
    let (code, json, markdown) = diff(&[&old, &new]);
    assert_eq!(code, 3, "{json}");
    assert_eq!(json["ok"], false);
    let security = changes(&json, "security");
    for (subject, message) in [
        ("role finance", "no longer requires a second factor"),
        ("environment production", "no longer locks role `finance`"),
        (
            "customer.delete",
            "rate limit raised from 10 per 60 s to 100 per 60 s",
        ),
        ("customer.update", "role `member` may now do it"),
        (
            "invoice.void",
            "condition removed (was `resource.status == \"open\"`)",
        ),
        (
            "payments",
            "dual-control threshold in EUR raised from 50000 to 500000 minor units",
        ),
        (
            "identity",
            "maximum token lifetime raised from 600 s to 3600 s",
        ),
    ] {
        assert!(
            security
                .iter()
                .any(|(s, m, flagged)| s == subject && m.starts_with(message) && *flagged),
            "{subject}: {message}\n{security:#?}"
        );
    }
    let api = changes(&json, "api");
    for (subject, message) in [
        ("customer.vat_id", "type changed from string to int"),
        ("customer.segment", "new required input"),
        ("invoice.status", "enum values removed: `paid`"),
    ] {
        assert!(
            api.iter()
                .any(|(s, m, flagged)| s == subject && m.starts_with(message) && *flagged),
            "{subject}: {message}\n{api:#?}"
        );
    }
    assert!(
        markdown.contains("- `customer.update`: role `member` may now do it **(loosens access)**"),
        "{markdown}"
    );
    assert!(
        markdown.contains("**Breaking API changes under the same version `v1`**"),
        "{markdown}"
    );

    // The same changes under a new API version pass; paths are compared without the version.
    let bumped = write(
        dir.path(),
        "bumped.yaml",
        &changed.replace("version: v1", "version: v2"),
    );
    let (code, json, markdown) = diff(&[&old, &bumped]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["report"]["version_bumped"], true);
    assert!(
        !changes(&json, "api")
            .iter()
            .any(|(s, _, _)| s.starts_with("route ")),
        "{json}"
    );
    assert!(markdown.contains("API version: `v1` → `v2`."), "{markdown}");
}

#[test]
fn removed_routes_and_public_or_global_changes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.yaml", &ledgerly());
    let fewer = ledgerly().replace(
        "      delete: { roles: [owner], scope: invoices.write, rate_limit: 10/min }\n",
        "",
    );
    let new = write(dir.path(), "new.yaml", &fewer);
    let (code, json, _) = diff(&[&old, &new]);
    assert_eq!(code, 3, "{json}");
    assert!(
        changes(&json, "api").contains(&(
            "route DELETE /v1/customers/{id}".into(),
            "removed".into(),
            true
        )),
        "{json}"
    );
    assert!(
        changes(&json, "security").contains(&("customer.delete".into(), "removed".into(), false)),
        "{json}"
    );
    // The reverse: a route added is not breaking; the new action is flagged, shown whole.
    let (code, json, _) = diff(&[&new, &old]);
    assert_eq!(code, 0, "{json}");
    assert!(
        changes(&json, "security").contains(&(
            "customer.delete".into(),
            "added: roles `owner`, scope `invoices.write`, no condition, at most 10 per 60 s"
                .into(),
            true
        )),
        "{json}"
    );
    // Actions made public (on a global resource), and the reverse (a public list needs a
    // public read, so both change).
    let private = ledgerly()
        .replace(
            "      read: { public: true, reason: published reference data, rate_limit: 60/min }\n",
            "      read: { roles: [owner], scope: rates.admin }\n",
        )
        .replace(
            "      list: { public: true, reason: published reference data, rate_limit: 60/min }\n",
            "      list: { roles: [owner], scope: rates.admin }\n",
        );
    let private = write(dir.path(), "private.yaml", &private);
    let (_, json, _) = diff(&[&private, &old]);
    assert!(
        changes(&json, "security").contains(&(
            "exchange_rate.read".into(),
            "made public (published reference data)".into(),
            true
        )),
        "{json}"
    );
    let (_, json, _) = diff(&[&old, &private]);
    assert!(
        changes(&json, "security").contains(&(
            "exchange_rate.read".into(),
            "no longer public".into(),
            false
        )),
        "{json}"
    );
}

#[test]
fn untrusted_spec_strings_are_quoted_safely_in_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = ledgerly().replace(
        "        when: 'resource.status == \"open\"'",
        "        when: 'resource.status == \"open\" && resource.number != \"`<b>|x\"'",
    );
    let old = write(dir.path(), "old.yaml", &hostile);
    let new = write(dir.path(), "new.yaml", &ledgerly());
    let (code, json, markdown) = diff(&[&old, &new]);
    assert_eq!(code, 0, "{json}");
    // The backtick cannot end the code span early; the report is a list, not a table, so
    // a pipe stays a pipe (a `\|` would show its backslash).
    assert!(
        markdown.contains("`resource.status == \"open\" && resource.number != \"'<b>|x\"`"),
        "{markdown}"
    );
}

#[test]
fn specs_at_two_git_revisions_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .current_dir(dir.path())
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    write(dir.path(), "spec.yaml", &ledgerly());
    git(&["add", "."]);
    git(&["commit", "-qm", "one"]);
    write(
        dir.path(),
        "spec.yaml",
        &ledgerly().replace(
            "  finance: { description: Bills and refunds, mfa: required }",
            "  finance: { description: Bills and refunds }",
        ),
    );
    git(&["commit", "-qam", "two"]);
    let repo = dir.path().to_str().unwrap();
    let (code, json, _) = diff(&["--git", repo, "HEAD~1:spec.yaml", "HEAD:spec.yaml"]);
    assert_eq!(code, 0, "{json}");
    assert!(
        changes(&json, "security").contains(&(
            "role finance".into(),
            "no longer requires a second factor".into(),
            true
        )),
        "{json}"
    );
    // Bad revisions and paths are usage errors; an invalid spec is exit 1.
    for bad in ["HEAD~5:spec.yaml", "HEAD:missing.yaml", "HEAD", "HEAD:"] {
        let (code, json, _) = diff(&["--git", repo, bad, "HEAD:spec.yaml"]);
        assert_eq!(code, 2, "{bad}: {json}");
    }
    let broken = write(dir.path(), "broken.yaml", "bulwark: 1\napp: [\n");
    let (code, _, _) = diff(&[&broken, &dir.path().join("spec.yaml").display().to_string()]);
    assert_eq!(code, 1);
}

/// A bump that keeps the old version served, deprecated, then its retirement: announced
/// retirements are reported, and a version dropped without a deprecation period is breaking.
#[test]
fn deprecated_versions_and_their_retirement_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = ledgerly();
    assert!(v1.contains("  version: v1\n"));
    let bumped = v1.replace(
        "  version: v1\n",
        "  version: v2\n  deprecated:\n    v1: { since: 2026-11-01, sunset: 2027-05-01 }\n",
    );
    let dropped = v1.replace("  version: v1\n", "  version: v2\n");
    let v1 = write(dir.path(), "v1.yaml", &v1);
    let bumped = write(dir.path(), "bumped.yaml", &bumped);
    let dropped = write(dir.path(), "dropped.yaml", &dropped);

    let (code, json, markdown) = diff(&[&v1, &bumped]);
    assert_eq!(code, 0, "{markdown}");
    assert_eq!(
        changes(&json, "api"),
        [(
            "version v1".to_owned(),
            "served deprecated since 2026-11-01, until 2027-05-01".to_owned(),
            false
        )]
    );

    // Retired after its deprecation: reported, not breaking.
    let (code, json, markdown) = diff(&[&bumped, &dropped]);
    assert_eq!(code, 0, "{markdown}");
    assert_eq!(
        changes(&json, "api"),
        [(
            "version v1".to_owned(),
            "no longer served (it was deprecated)".to_owned(),
            false
        )]
    );

    // Bumped without a deprecation period: its clients break (the bump keeps the exit 0).
    let (code, json, markdown) = diff(&[&v1, &dropped]);
    assert_eq!(code, 0, "{markdown}");
    let api = changes(&json, "api");
    assert_eq!(api.len(), 1, "{api:?}");
    assert!(
        api[0]
            .1
            .starts_with("no longer served, without a deprecation period")
    );
    assert!(api[0].2);
    assert!(markdown.contains("**(breaking)**"), "{markdown}");
}

/// Changes that widen access without touching a role list: a renamed resource whose
/// condition went (compared as one action, not removed and added), a new custom action
/// (flagged, shown whole), a held field made writable, an action setting another value,
/// a held field's new default, a raised class budget and another tenant claim.
#[test]
fn access_widened_without_a_role_change_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.yaml", &ledgerly());
    // (A renamed resource's routes are an API break: exit 3; only security matters here.)
    let security = |text: String| security_changes(dir.path(), &old, &text);
    let flagged = assert_flagged;
    let renamed = ledgerly()
        .replace("  invoice:\n", "  bill:\n")
        .replace("resource: invoice,", "resource: bill,")
        .replace(
            "        when: 'resource.status == \"open\"'\n        sets: { status: void }\n",
            "        sets: { status: void }\n",
        )
        .replace(
            "payments:",
            "migrations:\n  rename: { invoice: bill }\n\npayments:",
        );
    let found = security(renamed);
    flagged(&found, "bill.void", "condition removed");
    assert!(
        !found
            .iter()
            .any(|(s, m, _)| s == "invoice.void" && m == "removed"),
        "{found:?}"
    );
    let found = security(ledgerly().replace(
        "      void:\n",
        "      mark_paid: { roles: [member], scope: invoices.write, sets: { status: paid } }\n      void:\n",
    ));
    flagged(
        &found,
        "invoice.mark_paid",
        "added: roles `member`, scope `invoices.write`, no condition, sets `status = paid`",
    );
    let found =
        security(ledgerly().replace("default: draft }", "default: draft, writable: true }"));
    flagged(
        &found,
        "field invoice.status",
        "create and update may now write it",
    );
    let found = security(ledgerly().replace(
        "        when: 'resource.status == \"open\"'\n        sets: { status: void }\n",
        "        when: 'resource.status == \"open\"'\n        sets: { status: paid }\n",
    ));
    flagged(&found, "invoice.void", "now sets `status = paid`");
    let found = security(ledgerly().replace("default: draft }", "default: paid }"));
    flagged(
        &found,
        "field invoice.status",
        "creates now start it at `paid`",
    );
    let found = security(ledgerly().replace(
        "  scopes:\n",
        "  rate_limits: { sensitive: 1000/s }\n  scopes:\n",
    ));
    flagged(
        &found,
        "rate limits sensitive",
        "budget changed from 30 per 60 s",
    );
    flagged(&found, "invoice.void", "rate limit raised from 30 per 60 s");
    let found =
        security(ledgerly().replace("claims: { tenant: org_id }", "claims: { tenant: sub }"));
    flagged(
        &found,
        "identity",
        "tenant claim changed from `org_id` to `sub`",
    );
    let found = security(ledgerly().replace(
        "email: { type: email, pii: true }",
        "email: { type: email }",
    ));
    flagged(
        &found,
        "field customer.email",
        "no longer marked as personal data",
    );
    // A condition quoted in the Markdown list keeps its `||` as written (no `\|`, which
    // only a table cell needs).
    let widened = write(
        dir.path(),
        "widened.yaml",
        &ledgerly().replace("<= 1000000))'", "<= 2000000))'"),
    );
    let (_, _, markdown) = diff(&[&old, &widened]);
    assert!(
        markdown.contains("||") && !markdown.contains("\\|"),
        "{markdown}"
    );
}

/// Inputs valid before and refused now break clients: a lower maximum, a higher minimum, a
/// new uniqueness rule, a field only an action may change now. And environments: a role
/// that now exists in one, and a new environment locking less than an unnamed one did.
#[test]
fn tighter_inputs_and_environment_changes_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.yaml", &ledgerly());
    let report = |text: String| {
        let new = write(dir.path(), "new.yaml", &text);
        let (code, json, _) = diff(&[&old, &new]);
        (code, json)
    };
    let (code, json) = report(
        ledgerly()
            .replace(
                "name:  { type: string, max: 200 }",
                "name:  { type: string, max: 20 }",
            )
            .replace(
                "vat_id: { type: string, max: 32, optional: true }",
                "vat_id: { type: string, max: 32, optional: true, unique: true }",
            ),
    );
    assert_eq!(code, 3, "{json}");
    let api = changes(&json, "api");
    for (subject, message) in [
        ("customer.name", "maximum lowered from 200 to 20"),
        ("customer.vat_id", "now unique"),
    ] {
        assert!(
            api.iter()
                .any(|(s, m, f)| s == subject && m.contains(message) && *f),
            "{subject}: {message} in {api:?}"
        );
    }
    let (code, json) = report(ledgerly().replace(
        "        sets: { status: void }\n    threats:",
        "        sets: { status: void, notes: written off }\n    threats:",
    ));
    assert_eq!(code, 3, "{json}");
    assert!(
        changes(&json, "api")
            .iter()
            .any(|(s, m, f)| s == "invoice.notes"
                && m.contains("only `write_off` change it now")
                && *f),
        "{json}"
    );
    let (_, json) = report(ledgerly().replace("  staging: {}\n", "  staging: {}\n  eu: {}\n"));
    assert!(
        changes(&json, "security")
            .iter()
            .any(|(s, m, f)| s == "environment eu"
                && m.contains("added without locking role")
                && *f),
        "{json}"
    );
}

/// Payment actions compared whole: a role gaining disputes, a refund scope changed, a
/// currency accepted without a dual-control threshold.
#[test]
fn payment_actions_scopes_and_currencies_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.yaml", &ledgerly());
    let security = |text: String| security_changes(dir.path(), &old, &text);
    let flagged = |found: &[(String, String, bool)], message: &str| {
        assert_flagged(found, "payments", message);
    };
    flagged(
        &security(ledgerly().replace(
            "disputes: { roles: [owner, finance], scope: refunds.manage }",
            "disputes: { roles: [owner, finance, member], scope: refunds.manage }",
        )),
        "role `member` may now do a dispute",
    );
    flagged(
        &security(ledgerly().replace(
            "request: { roles: [finance], scope: refunds.manage }",
            "request: { roles: [finance], scope: invoices.write }",
        )),
        "a refund request needs scope `invoices.write` instead of `refunds.manage`",
    );
    let text = ledgerly();
    let currencies = text
        .lines()
        .find(|l| l.trim_start().starts_with("currencies:"))
        .unwrap()
        .to_owned();
    flagged(
        &security(text.replace(&currencies, &currencies.replace(']', ", GBP]"))),
        "currency GBP accepted, with no dual-control threshold",
    );
    let found = security(
        ledgerly()
            .replace("provider: stripe", "provider: adyen")
            .replace("mode: redirect", "mode: hosted_fields")
            .replace(
                "DE: { vat: 19%, rounding: half_even",
                "DE: { vat: 7%, rounding: half_even",
            ),
    );
    flagged(&found, "provider changes from `stripe` to `adyen`");
    flagged(&found, "checkout by hosted fields instead of redirect");
    assert!(
        found.contains(&(
            "payments".into(),
            "tax rule for DE: VAT 7.00%, rounding half_even, per line (was VAT 19.00%, rounding half_even, per line)".into(),
            false
        )),
        "{found:?}"
    );
    // Payments taken for the first time: flagged, shown whole.
    let start = text.find("\npayments:\n").unwrap() + 1;
    let end = text[start..]
        .find("\n\n")
        .map_or(text.len(), |i| start + i + 2);
    let without = write(
        dir.path(),
        "without.yaml",
        &format!("{}{}", &text[..start], &text[end..]),
    );
    let added = security_changes(dir.path(), &without, &text);
    assert_flagged(
        &added,
        "payments",
        "payments added: provider `stripe`, checkout of `invoice.total` by redirect",
    );
}

#[test]
fn a_removed_threat_note_is_flagged_and_an_added_one_listed() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.yaml", &ledgerly());
    let removed = ledgerly().replacen(
        "      - stride: information_disclosure\n        risk: customer contact data read by another agency\n        mitigation: tenant-scoped table under forced row-level security\n",
        "      - stride: spoofing\n        risk: a customer record made up\n        mitigation: only members create them\n",
        1,
    );
    assert_ne!(removed, ledgerly());
    let found = security_changes(dir.path(), &old, &removed);
    assert_flagged(
        &found,
        "customer",
        "threat note removed: Information disclosure: `customer contact data read by another agency`",
    );
    assert!(
        found.iter().any(|(s, m, f)| s == "customer"
            && m.starts_with("threat note added: Spoofing")
            && !*f),
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");
}
