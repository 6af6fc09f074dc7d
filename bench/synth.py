#!/usr/bin/env python3
"""Write deterministic synthetic bulwark specs for the generation benchmark.

    python3 bench/synth.py N [N ...] --out DIR      # writes DIR/synth-N.yaml for each N

Each spec has N resources shaped like the ones in specs/ledgerly.yaml:

* tenant resources (19 in every 20): about six fields of mixed types -- always a bounded
  string and an enum with values and a default, a reference to an earlier tenant resource
  (all but the first), and three more taken in rotation from optional text, int, bool,
  decimal, money, timestamp and date; the five CRUD actions with roles and scopes (update
  with a `when` condition, delete rate-limited) plus one custom action with `when` and
  `sets`; one threat note;
* every 20th resource is `global: true`: reference data with only public `read`/`list`
  (each with a `reason` and a rate limit), no writes, no references to tenant resources.

Roles, scopes, identity, environments and a payments section (checkout on the first
resource's money field) are defined once per spec. Output depends only on N: no randomness,
no timestamps, so the same N always gives the same bytes.

Only the standard library is used; the YAML is written by hand (flow mappings, quoted
strings) rather than through a YAML library.
"""

import argparse
import os
import sys

NOUNS = [
    "customer", "invoice", "project", "contract", "shipment", "order", "product",
    "supplier", "warehouse", "ticket", "asset", "vendor", "payment_plan", "budget",
    "timesheet", "expense", "campaign", "lead", "opportunity", "quote", "meeting",
    "document", "approval", "policy", "incident", "release", "milestone", "deliverable",
    "inventory_item", "purchase_order", "receipt", "subscription", "license", "device",
    "location", "department", "team", "course", "enrollment", "booking",
]
GLOBAL_NOUNS = ["exchange_rate", "country", "holiday", "tax_code", "unit", "industry"]

# (field name, YAML flow mapping) in rotation; three per tenant resource.
EXTRA_FIELDS = [
    ("notes", "{ type: text, optional: true, max: 4000 }"),
    ("quantity", "{ type: int, min: 0 }"),
    ("billable", "{ type: bool }"),
    ("weight", "{ type: decimal }"),
    ("amount", "{ type: money }"),
    ("occurred_at", "{ type: timestamp }"),
    ("due_on", "{ type: date }"),
]
STRIDES = [
    ("information_disclosure", "records read by another tenant",
     "tenant-scoped table under forced row-level security"),
    ("tampering", "a record changed after it was closed",
     "updates only while draft or open; every change audited"),
    ("repudiation", "a member denies having archived a record",
     "the audit log records actor, tenant, scope and outcome of every mutation"),
    ("elevation_of_privilege", "a member performs an owner-only action",
     "role and scope checked on every operation; deny by default"),
    ("denial_of_service", "a client floods the list endpoint",
     "paginated lists with a hard page limit; rate-limited deletes"),
    ("spoofing", "a forged token is accepted",
     "tokens validated against the issuer's keys, audience and lifetime"),
]


def q(text: str) -> str:
    """A single-quoted YAML scalar."""
    return "'" + text.replace("'", "''") + "'"


def names(n: int):
    """N distinct resource names and whether each is global (every 20th)."""
    out = []
    tenant_i = global_i = 0
    for i in range(n):
        if i % 20 == 19:
            base, k = GLOBAL_NOUNS[global_i % len(GLOBAL_NOUNS)], global_i // len(GLOBAL_NOUNS)
            global_i += 1
            glob = True
        else:
            base, k = NOUNS[tenant_i % len(NOUNS)], tenant_i // len(NOUNS)
            tenant_i += 1
            glob = False
        out.append((base if k == 0 else f"{base}_{k + 1}", glob))
    return out


def tenant_resource(i: int, name: str, earlier_tenant: list) -> list:
    lines = [f"  {name}:"]
    lines.append(f"    description: {q(f'Synthetic tenant resource {i + 1} ({name})')}")
    lines.append("    fields:")
    lines.append("      title: { type: string, max: 200 }")
    lines.append("      status: { type: enum, values: [draft, open, closed], default: draft }")
    if earlier_tenant:
        # A deterministic spread over earlier resources, not always the previous one.
        target = earlier_tenant[(i * 7) % len(earlier_tenant)]
        lines.append(f"      {target}: {{ type: reference, to: {target} }}")
    if i == 0:
        # The payments checkout needs a money field on the first resource.
        extras = [EXTRA_FIELDS[4], EXTRA_FIELDS[0], EXTRA_FIELDS[5]]
    else:
        extras = [EXTRA_FIELDS[(i * 3 + k) % len(EXTRA_FIELDS)] for k in range(3)]
    for fname, spec in extras:
        lines.append(f"      {fname}: {spec}")
    lines += [
        "    actions:",
        "      list:   { roles: [owner, manager, member, auditor], scope: data.read }",
        "      read:   { roles: [owner, manager, member, auditor], scope: data.read }",
        "      create: { roles: [owner, manager, member], scope: data.write }",
        "      update:",
        "        roles: [owner, manager, member]",
        "        scope: data.write",
        "        when: 'resource.status != \"closed\"'",
        "      delete: { roles: [owner], scope: data.admin, rate_limit: 10/min }",
        "      archive:",
        f"        description: {q(f'Close an open {name}')}",
        "        roles: [owner, manager]",
        "        scope: data.write",
        "        when: 'resource.status == \"open\"'",
        "        sets: { status: closed }",
        "    threats:",
    ]
    stride, risk, mitigation = STRIDES[i % len(STRIDES)]
    lines += [
        f"      - stride: {stride}",
        f"        risk: {q(risk)}",
        f"        mitigation: {q(mitigation)}",
    ]
    return lines


def global_resource(i: int, name: str) -> list:
    reason = "published reference data"
    return [
        f"  {name}:",
        f"    description: {q(f'Synthetic reference data {i + 1}, shared by all tenants')}",
        "    global: true",
        "    fields:",
        "      code: { type: string, max: 16, unique: true }",
        "      label: { type: string, max: 200 }",
        "      factor: { type: decimal }",
        "      published_at: { type: timestamp }",
        "      valid_from: { type: date, optional: true }",
        "      kind: { type: enum, values: [standard, reduced, exempt], default: standard }",
        "    actions:",
        f"      read: {{ public: true, reason: {reason}, rate_limit: 60/min }}",
        f"      list: {{ public: true, reason: {reason}, rate_limit: 60/min }}",
        "    threats:",
        "      - stride: tampering",
        "        risk: 'reference data changed by a tenant'",
        "        mitigation: 'no tenant write actions; changes only through operator commands'",
    ]


def spec(n: int) -> str:
    if n < 1:
        raise ValueError("need at least one resource")
    lines = [
        "# Synthetic spec written by bench/synth.py for the generation benchmark.",
        "bulwark: 1",
        "app:",
        f"  name: synth{n}",
        f"  description: Synthetic app with {n} resources",
        "  owners: ['@synth/platform', '@synth/security']",
        "",
        "api:",
        "  version: v1",
        "  scopes:",
        "    data.read: Read records",
        "    data.write: Create and change records",
        "    data.admin: Delete records",
        "    refunds.manage: Request and approve refunds",
        "",
        "identity:",
        "  issuer: https://id.example.com/",
        f"  audience: synth{n}-api",
        "  max_token_lifetime: 10m",
        "  claims: { tenant: org_id }",
        "  require_verified_email: true",
        "",
        "tenancy:",
        "  verify_domains: true",
        "",
        "roles:",
        "  owner:   { description: Runs the organization, mfa: required }",
        "  manager: { description: Manages day-to-day work, mfa: required }",
        "  member:  { description: Does the work }",
        "  auditor: { description: 'Reads everything, changes nothing' }",
        "",
        "environments:",
        "  production: { locked_roles: [owner] }",
        "  staging: {}",
        "",
        "resources:",
    ]
    earlier_tenant = []
    first = None
    for i, (name, glob) in enumerate(names(n)):
        if glob:
            lines += global_resource(i, name)
        else:
            lines += tenant_resource(i, name, earlier_tenant)
            earlier_tenant.append(name)
            first = first or name
    if first is not None:
        lines += [
            "",
            "payments:",
            "  provider: stripe",
            f"  checkout: {{ resource: {first}, amount: amount, mode: redirect }}",
            "  currencies: [EUR, USD]",
            "  tax:",
            "    DE: { vat: 19%, rounding: half_even, per: line }",
            "  refunds:",
            "    request: { roles: [manager], scope: refunds.manage }",
            "    approve: { roles: [owner], scope: refunds.manage, mfa: required }",
            "    dual_control_above: { EUR: 500.00, USD: 500.00 }",
            "  disputes: { roles: [owner, manager], scope: refunds.manage }",
            "  webhooks: { tolerance: 300s }",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="+", type=int, help="numbers of resources")
    parser.add_argument("--out", required=True, help="directory for synth-N.yaml")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for n in args.sizes:
        path = os.path.join(args.out, f"synth-{n}.yaml")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(spec(n))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
