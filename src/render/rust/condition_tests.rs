//! The generated checks of the spec's conditions: for each conditional action of a tenant
//! resource whose condition reads only the row's own fields, the caller's `sub` and `roles`,
//! and the token's second factor and scopes (`context.mfa`, `context.scopes`), calls with
//! every combination of what is worth trying: on the fields, every enum value, both
//! booleans, the condition's own literals and, beside an integer, decimal or timestamp
//! literal, its neighbours, a string each `like` pattern matches, another value, for a
//! reference a row the tests made (checked only where the outcome does not depend on which
//! row), an empty optional field the condition tests with `has`; tokens with and without a
//! second factor, with every scope and without those the condition names. Each
//! call is made by a member of an allowed role: on the stored row (read, update, delete,
//! custom actions), with the row to create (create), or listing every page to see whether
//! the row is there (list); each call's row is deleted after it, so a unique field can take
//! a value again. The expected outcome of each call comes from Cedar evaluating the
//! condition here, at generation time ([`crate::policy::Condition`]), not from the policies
//! the server loads (a refusal a second factor would lift is the 401 step-up); an action is
//! tested only when some call is allowed and some refused, so each condition meets a row
//! where it holds and one where it fails. What is not checked is said, with the reason, in
//! PERMISSIONS.md ([`Plan::coverage`]).

use super::{enum_type, ident};
use crate::model::{Action, ActionKind, App, Field, FieldType, Resource};
use crate::policy::Condition;
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

/// Above this many rows per action the combinations are not enumerated.
const MAX_CALLS: usize = 256;

/// At most this many values are tried on one field that is not an enum.
const MAX_VALUES: usize = 6;

/// The ids Cedar sees for a reference at generation time, in place of the row the tests
/// will make: the first in the calls, the second to see whether the outcome depends on it;
/// each plus the target resource's index, so that two references are equal exactly when the
/// tests point them at the same row (`ids.pick` of one resource with the same `n`).
const REFERENCE_STAND_INS: [u128; 2] = [
    0x0190_0000_0000_7000_8000_0000_0000_0b01,
    0x0190_0000_0000_7000_8000_0000_0000_0b02,
];

/// The `which` stand-in id of a row of the resource at `target`.
fn stand_in(which: usize, target: usize) -> u128 {
    REFERENCE_STAND_INS[which] + target as u128
}

/// The values tried on one varied field: each as Cedar sees it (for the expected outcome)
/// and the Rust expression, as text, that the generated input sets it to (text, not tokens:
/// the plan is shared between threads).
struct Candidates<'a> {
    field: &'a Field,
    values: Vec<(serde_json::Value, String)>,
}

/// One checked action: the fields it varies and its calls.
struct Case<'a> {
    resource: &'a Resource,
    action: &'a Action,
    varied: Vec<&'a str>,
    calls: Vec<CaseCall>,
}

/// One call of a checked action (an entry of the generated cases, as the test reads it).
#[derive(Clone, serde::Serialize)]
struct CaseCall {
    /// The caller's roles: one the action allows, and maybe a role that needs a second
    /// factor the condition names.
    roles: Vec<String>,
    /// Whether the row's principal fields name the caller.
    own: bool,
    /// The index of each varied field's value.
    values: Vec<usize>,
    /// An update that writes other values than the row holds: theirs.
    written: Option<Vec<usize>>,
    /// Whether the token shows a second factor.
    mfa: bool,
    /// Scopes left out of the token (the condition reads them).
    dropped: Vec<String>,
    /// The status expected.
    expected: u16,
}

/// What of the request's context a condition reads (`context.mfa`, `context.scopes`): the
/// checks vary it through the token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ContextReads {
    mfa: bool,
    scopes: bool,
}

/// What the generated tests do with the spec's conditions: the checks ([`Plan::checks`]) and,
/// for each conditional operation, whether it is checked.
pub struct Plan<'a> {
    cases: Vec<Case<'a>>,
    /// The resources with checked conditions and the values tried on their fields.
    varied: Vec<(&'a Resource, Vec<Candidates<'a>>)>,
    pub coverage: Vec<Coverage>,
}

/// Whether one conditional operation's condition is checked by the generated tests.
pub struct Coverage {
    /// `resource.action`.
    pub operation: String,
    /// The number of calls that check it, or why it is not checked.
    pub checked: Result<usize, String>,
}

/// The plan for `app`, whose API crate is `api_crate`.
pub fn plan<'a>(app: &'a App, api_crate: &str) -> Plan<'a> {
    let api = &super::crate_ident(api_crate);
    let mut cases = Vec::new();
    let mut varied_resources = Vec::new();
    let mut coverage = Vec::new();
    // What the tokens of the calls may hold.
    let mfa_roles = app.mfa_roles();
    let every_scope = scopes_of(app);
    for resource in &app.resources {
        // Each conditional action's coverage, by its place in the resource (to list them in
        // the spec's order).
        let mut covered: Vec<(usize, Coverage)> = Vec::new();
        let mut checked: Vec<(usize, &Action, Condition, Vec<&Field>, ContextReads)> = Vec::new();
        // The fields any of them tests with `has`: worth trying empty.
        let mut tested: Vec<String> = Vec::new();
        // The literals of the spec's own conditions: the values worth trying on a field (a
        // list's check adds the read's role and scope names, which are not).
        let mut literals = Vec::new();
        for (index, action) in resource.actions.iter().enumerate() {
            // A list shows only the rows a read allows: the read's condition is the list's too.
            let listed = (action.kind == ActionKind::List)
                .then(|| crate::policy::listed_condition(app, resource, action))
                .flatten();
            // The condition as Cedar printed it from its syntax tree, as the policies hold it
            // (the spec's text may end in a `//` comment, say).
            let Some(text) = listed.as_deref().or(action.cedar_condition.as_deref()) else {
                continue;
            };
            // Parsed once where the condition checked is the action's own (all but lists).
            let parsed_text = Condition::parse(text);
            let own_text = action.cedar_condition.as_deref();
            let other = own_text
                .filter(|own| *own != text)
                .and_then(|own| Condition::parse(own).ok());
            let own = match own_text {
                Some(own) if own == text => parsed_text.as_ref().ok(),
                _ => other.as_ref(),
            };
            for literal in own.iter().flat_map(|own| own.literals()) {
                if !literals.contains(&literal) {
                    literals.push(literal);
                }
            }
            let operation = format!("{}.{}", resource.name, action.name);
            let parsed = checkable(resource, action, text).and_then(|_| {
                let condition =
                    parsed_text.map_err(|e| format!("Cedar could not parse it here: {e}"))?;
                let (fields, context, has) = read_fields(resource, &condition)?;
                Ok((condition, fields, context, has))
            });
            match parsed {
                Ok((condition, fields, context, has)) => {
                    checked.push((index, action, condition, fields, context));
                    tested.extend(has);
                }
                Err(why) => covered.push((
                    index,
                    Coverage {
                        operation,
                        checked: Err(why),
                    },
                )),
            }
        }
        // The values tried on a field are the same for all the resource's conditions, so
        // that one function sets them: the literals of all of them count.
        let mut candidates: Vec<Candidates> = Vec::new();
        let mut any = false;
        let held = resource.held_fields();
        'actions: for (index, action, condition, fields, context) in &checked {
            let operation = format!("{}.{}", resource.name, action.name);
            // A create leaves the fields only actions change at their default: its condition
            // meets no other value of them.
            let fixed = fields.iter().find(|f| {
                action.kind == ActionKind::Create && held.iter().any(|(h, _)| h.ident == f.ident)
            });
            if let Some(field) = fixed {
                let checked = Err(format!(
                    "it reads `{}`, which a create leaves at its default (only actions change it)",
                    field.name
                ));
                covered.push((*index, Coverage { operation, checked }));
                continue;
            }
            // The candidates of each field it varies; a field that cannot vary drops the action.
            let mut mine = Vec::new();
            for field in fields.iter().filter(|f| f.ty != FieldType::Principal) {
                let at = match candidates.iter().position(|c| c.field.ident == field.ident) {
                    Some(at) => at,
                    None => match values(app, resource, field, &literals, &tested, api) {
                        Ok(values) => {
                            candidates.push(Candidates { field, values });
                            candidates.len() - 1
                        }
                        Err(why) => {
                            let checked = Err(why);
                            covered.push((*index, Coverage { operation, checked }));
                            continue 'actions;
                        }
                    },
                };
                mine.push(at);
            }
            let reads_principal = fields.iter().any(|f| f.ty == FieldType::Principal);
            let varied: Vec<&Candidates> = mine.iter().map(|at| &candidates[*at]).collect();
            let reads = Reads {
                principal: reads_principal,
                context: *context,
            };
            match action_case(
                (&mfa_roles, &every_scope),
                resource,
                action,
                condition,
                reads,
                &varied,
            ) {
                Ok(case) => {
                    any = true;
                    let checked = Ok(case.calls.len());
                    covered.push((*index, Coverage { operation, checked }));
                    cases.push(case);
                }
                Err(why) => {
                    let checked = Err(why);
                    covered.push((*index, Coverage { operation, checked }));
                }
            }
        }
        if any {
            varied_resources.push((resource, candidates));
        }
        covered.sort_by_key(|(index, _)| *index);
        coverage.extend(covered.into_iter().map(|(_, c)| c));
    }
    Plan {
        cases,
        varied: varied_resources,
        coverage,
    }
}

impl Plan<'_> {
    /// The cases as entries of the test's table `conditions` (`tests/authorization_cases.json`):
    /// a case's fields on its first line, then its calls one a line, which read as a table.
    pub fn case_lines(&self) -> Vec<String> {
        /// A case without its calls.
        #[derive(serde::Serialize)]
        struct Head<'a> {
            id: String,
            resource: &'a str,
            method: &'a str,
            path: &'a str,
            call: String,
            varied: &'a [&'a str],
        }
        self.cases
            .iter()
            .map(|case| {
                let head = super::tests::json_line(&Head {
                    id: format!("{}.{}", case.resource.name, case.action.name),
                    resource: super::tests::ids_key(case.resource),
                    method: case.action.method.as_str(),
                    path: case.action.path.as_str(),
                    call: Call::of(case.action).ident().to_string(),
                    varied: &case.varied,
                });
                let calls: Vec<String> = case.calls.iter().map(super::tests::json_line).collect();
                // `{..., "varied": [...]}` opened again for the calls.
                let head = head.strip_suffix('}').expect("an object");
                format!(
                    "{head},\"calls\":[\n      {}\n    ]}}",
                    calls.join(",\n      ")
                )
            })
            .collect()
    }

    /// What the cases' calls need (their types, rows and helpers), spliced into the role ×
    /// action test file, which reads the cases from [`Plan::case_lines`]; the
    /// test runs them ([`Plan::calls`]) after its writes, which seeded a row of every resource,
    /// so references have rows to point to. Empty when no condition of the spec can be
    /// checked this way.
    pub fn checks(&self, api: &Ident) -> TokenStream {
        if self.cases.is_empty() {
            return TokenStream::new();
        }
        let inserts = self
            .varied
            .iter()
            .map(|(resource, candidates)| insert_arm(resource, candidates, api));
        let removes = self.varied.iter().map(|(resource, _)| {
            let key = super::tests::ids_key(resource);
            let delete = super::server::store_fn(api, resource, "delete");
            quote!(#key => { #delete(conn, tenant, id).await.expect("a delete"); })
        });
        let listed = self.calls_of(Call::List).then(listed_fn);
        // A refused create must leave no row behind: the rows counted around each create.
        let stored_rows = self.calls_of(Call::Create).then(|| {
            let arms = self.varied.iter().map(|(resource, _)| {
                let key = super::tests::ids_key(resource);
                let count = format!(
                    "SELECT count(*) FROM {} WHERE \"tenant_id\" = $1",
                    crate::render::escape::sql_ident(&resource.table)
                );
                quote!(#key => #count,)
            });
            quote! {
                /// How many rows of `resource` the tenant holds (asked as the owner).
                async fn stored_rows(conn: &mut sqlx::PgConnection, resource: &str, tenant: TenantId) -> i64 {
                    let count = match resource {
                        #(#arms)*
                        other => panic!("no conditions of {other}"),
                    };
                    let (rows,): (i64,) = sqlx::query_as(count).bind(tenant.id()).fetch_one(conn).await.expect("a count");
                    rows
                }
            }
        });
        let variants = Call::ALL
            .iter()
            .filter(|call| self.calls_of(**call))
            .map(|call| {
                let (name, doc) = (call.ident(), call.doc());
                quote! {
                    #[doc = #doc]
                    #name,
                }
            });
        quote! {
            /// How a conditional action is called.
            #[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize)]
            enum Call {
                #(#variants)*
            }

            /// A conditional action and its calls (the table `conditions` of the cases).
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct ConditionCase {
                id: String,
                resource: String,
                method: String,
                path: String,
                call: Call,
                varied: Vec<String>,
                calls: Vec<ConditionCall>,
            }

            /// One call: the caller's roles, whether the row's principal fields name the caller,
            /// the index of each varied field's value (and of the values an update writes over
            /// them), whether the token shows a second factor and which scopes it leaves out,
            /// the status expected.
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct ConditionCall {
                roles: Vec<String>,
                own: bool,
                values: Vec<usize>,
                written: Option<Vec<usize>>,
                mfa: bool,
                dropped: Vec<String>,
                expected: u16,
            }

            #listed

            #stored_rows

            /// A sample row of `resource` with the `varied` fields set to their values at
            /// `values`, its principal fields naming `owner`, as JSON input; and its id once
            /// inserted, when `insert` (else the nil id).
            #[allow(clippy::too_many_arguments)]
            async fn varied_row(conn: &mut sqlx::PgConnection, resource: &str, tenant: TenantId, owner: &str, n: i64, ids: &Ids, varied: &[String], values: &[usize], insert: bool) -> (uuid::Uuid, serde_json::Value) {
                let _ = (owner, varied, values);
                match resource {
                    #(#inserts)*
                    other => panic!("no conditions of {other}"),
                }
            }

            /// Deletes the row `id` of `resource` (none: nothing), so that the next call may
            /// give a unique field the same value.
            async fn remove_row(conn: &mut sqlx::PgConnection, resource: &str, tenant: TenantId, id: uuid::Uuid) {
                match resource {
                    #(#removes)*
                    other => panic!("no conditions of {other}"),
                }
            }
        }
    }
}

/// The arm of `varied_row` for one resource: its sample input with the varied fields set.
fn insert_arm(resource: &Resource, candidates: &[Candidates], api: &Ident) -> TokenStream {
    let key = super::tests::ids_key(resource);
    let module = ident(&resource.ident);
    let sample = super::tests::sample_call(resource, quote!(n), quote!(ids));
    let sets = candidates.iter().map(|Candidates { field, values }| {
        let name = field.name.as_str();
        let f = ident(&field.ident);
        let wrapped = field.optional || field.default.is_some();
        let unset = values.iter().any(|(cedar, _)| cedar.is_null());
        let value = match enum_type(field) {
            Some(ety) if !unset => quote!(#api::#module::#ety::ALL[value]),
            _ => {
                let arms = values.iter().enumerate().map(|(i, (cedar, rust))| {
                    let i = Literal::usize_unsuffixed(i);
                    let rust: TokenStream = rust.parse().expect("bulwark's own expression parses");
                    match (cedar.is_null(), unset && wrapped) {
                        (true, _) => quote!(#i => None,),
                        (false, true) => quote!(#i => Some(#rust),),
                        (false, false) => quote!(#i => #rust,),
                    }
                });
                quote!(match value { #(#arms)* other => panic!("no value {other} of {}", #name) })
            }
        };
        if wrapped && !unset {
            quote!(#name => input.#f = Some(#value),)
        } else {
            quote!(#name => input.#f = #value,)
        }
    });
    let insert = super::server::store_fn(api, resource, "insert");
    // Conditions that read only principal fields vary no other field.
    let vary = (!candidates.is_empty()).then(|| {
        quote! {
            for (field, &value) in varied.iter().zip(values) {
                match field.as_str() {
                    #(#sets)*
                    other => panic!("{other} is not varied"),
                }
            }
        }
    });
    let binding = if candidates.is_empty() {
        quote!(input)
    } else {
        quote!(mut input)
    };
    quote! {
        #key => {
            let #binding = #sample;
            #vary
            let json = serde_json::to_value(&input).expect("the input serializes");
            if !insert {
                return (uuid::Uuid::nil(), json);
            }
            let row = #insert(conn, tenant, owner, &input).await.expect("a row");
            (row.id, json)
        }
    }
}

/// The values tried on a field the conditions read, each as Cedar sees it (`null`: an empty
/// optional field, left out) and as the generated input sets it: every enum value; both
/// booleans; the integer, decimal and timestamp literals with their neighbours (within the
/// field's bounds), or two values of the type; the string, date and uuid literals (and
/// strings matching `like` patterns) that fit the field, and one that is none of them; amounts
/// and accepted currencies for money; and, for an optional field some condition tests with
/// `has`, no value. An error says why a field cannot vary this way.
fn values(
    app: &App,
    resource: &Resource,
    field: &Field,
    literals: &[serde_json::Value],
    tested: &[String],
    api: &Ident,
) -> Result<Vec<(serde_json::Value, String)>, String> {
    let strings = || literals.iter().filter_map(serde_json::Value::as_str);
    // The arguments of the conditions' `decimal("..")` or `datetime("..")` calls.
    let extension_args = |name: &'static str| {
        literals.iter().filter_map(move |l| {
            (l["__extn"]["fn"] == name)
                .then(|| l["__extn"]["arg"].as_str())
                .flatten()
        })
    };
    let mut values: Vec<(serde_json::Value, TokenStream)> = match &field.ty {
        FieldType::Enum { variants, .. } => {
            let module = ident(&resource.ident);
            let ety = enum_type(field).ok_or("an enum field without its type")?;
            variants
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let i = Literal::usize_unsuffixed(i);
                    (v.value.clone().into(), quote!(#api::#module::#ety::ALL[#i]))
                })
                .collect()
        }
        FieldType::Bool => vec![(true.into(), quote!(true)), (false.into(), quote!(false))],
        FieldType::Int => {
            let literals = literals.iter().filter_map(serde_json::Value::as_i64);
            around(literals, 1, [0, 1, 2], |n| within_bounds(field, *n))
                .into_iter()
                .map(|n| (n.into(), int(n)))
                .collect()
        }
        FieldType::String | FieldType::Text | FieldType::Email => {
            let email = field.ty == FieldType::Email;
            // Within the field's length, and for an email what the API accepts as one.
            let fits = |text: &str| {
                let count = text.chars().count();
                field.max.is_none_or(|max| count <= max as usize)
                    && field.min.is_none_or(|min| count as i64 >= min)
                    && (!email || plausible_email(text))
            };
            let mut texts: Vec<String> = strings()
                .filter(|text| fits(text))
                .take(MAX_VALUES - 1)
                .map(str::to_owned)
                .collect();
            // A string the conditions do not name: the shortest of "other", "otherx", ... (an
            // address at `other.invalid` for an email) that fits and is new.
            let other = (0..8)
                .map(|pad| format!("other{}", "x".repeat(pad)))
                .chain(["o".to_owned(), "z".to_owned()])
                .map(|text| {
                    if email {
                        format!("{text}@other.invalid")
                    } else {
                        text
                    }
                })
                .find(|text| fits(text) && !texts.contains(text))
                .ok_or_else(|| {
                    format!("no string fits {} beside the conditions' own", field.name)
                })?;
            texts.push(other);
            texts
                .into_iter()
                .map(|text| (text.clone().into(), quote!(#text.to_owned())))
                .collect()
        }
        FieldType::Decimal => {
            // Cedar's decimals have four places: each value is in ten-thousandths, and a
            // literal's neighbours are one unit of its last place away.
            let mut scaled = Vec::new();
            for (n, unit) in extension_args("decimal").filter_map(cedar_decimal) {
                scaled.extend(around([n], unit, [], |_| true));
            }
            if scaled.is_empty() {
                scaled = vec![0, 12_500];
            }
            scaled.dedup();
            scaled
                .into_iter()
                .take(MAX_VALUES)
                .map(|n| {
                    let cedar =
                        serde_json::json!({"__extn": {"fn": "decimal", "arg": decimal_text(n)}});
                    let n = int(n);
                    (cedar, quote!(rust_decimal::Decimal::new(#n, 4)))
                })
                .collect()
        }
        FieldType::Timestamp => {
            // In milliseconds, as the server gives them to Cedar; a literal's neighbours are a
            // second away. Years Cedar and PostgreSQL both take.
            let representable = |ms: &i64| {
                DateTime::from_timestamp_millis(*ms).is_some_and(|t| (1..=9999).contains(&t.year()))
            };
            let literals = extension_args("datetime").filter_map(cedar_datetime);
            around(
                literals,
                1000,
                [1_700_000_000_000, 1_700_086_400_000],
                representable,
            )
            .into_iter()
            .filter_map(|ms| {
                let text = DateTime::from_timestamp_millis(ms)?
                    .to_rfc3339_opts(SecondsFormat::Millis, true);
                let cedar = serde_json::json!({"__extn": {"fn": "datetime", "arg": text}});
                let ms = int(ms);
                Some((
                    cedar,
                    quote!(chrono::DateTime::from_timestamp_millis(#ms).expect("a time")),
                ))
            })
            .collect()
        }
        FieldType::Date => {
            // Dates are strings to Cedar: equal or not, so the literals and one other.
            let parse = |text: &str| {
                (text.len() == 10)
                    .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                    .flatten()
            };
            let mut dates: Vec<NaiveDate> =
                strings().filter_map(parse).take(MAX_VALUES - 1).collect();
            let first = NaiveDate::from_ymd_opt(2000, 1, 1).ok_or("a date")?;
            let others = first.iter_days().filter(|d| !dates.contains(d));
            let wanted = if dates.is_empty() { 2 } else { 1 };
            let others: Vec<NaiveDate> = others.take(wanted).collect();
            dates.extend(others);
            dates
                .into_iter()
                .map(|date| {
                    let y = Literal::i32_unsuffixed(date.year());
                    let (m, d) = (
                        Literal::u32_unsuffixed(date.month()),
                        Literal::u32_unsuffixed(date.day()),
                    );
                    (
                        date.to_string().into(),
                        quote!(chrono::NaiveDate::from_ymd_opt(#y, #m, #d).expect("a date")),
                    )
                })
                .collect()
        }
        FieldType::Uuid => {
            // Strings to Cedar too, in the server's form (lower case, hyphenated).
            let mut ids: Vec<u128> = strings()
                .filter_map(uuid_bits)
                .take(MAX_VALUES - 1)
                .collect();
            let wanted = if ids.is_empty() { 2 } else { 1 };
            let others: Vec<u128> = (1..).filter(|n| !ids.contains(n)).take(wanted).collect();
            ids.extend(others);
            ids.into_iter()
                .map(|bits| {
                    let literal = Literal::u128_unsuffixed(bits);
                    (
                        uuid_text(bits).into(),
                        quote!(uuid::Uuid::from_u128(#literal)),
                    )
                })
                .collect()
        }
        FieldType::Money => {
            // Amounts around the integer literals, in accepted currencies the conditions name
            // (at most one) and the one the samples use.
            let default = app
                .payments
                .as_ref()
                .and_then(|p| p.currencies.first().cloned())
                .unwrap_or_else(|| "EUR".into());
            let accepted = |code: &str| match app.payments.as_ref().map(|p| &p.currencies) {
                Some(list) if !list.is_empty() => list.iter().any(|c| c == code),
                _ => code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()),
            };
            let mut currencies: Vec<String> = strings()
                .filter(|code| accepted(code) && *code != default)
                .take(1)
                .map(str::to_owned)
                .collect();
            currencies.push(default.clone());
            let amounts = around(
                literals.iter().filter_map(serde_json::Value::as_i64),
                1,
                [0, 100],
                |n| within_bounds(field, *n),
            );
            // Every amount (each literal and its neighbours: the boundaries) in the samples'
            // currency, and the lowest and the highest in the one a condition names: a
            // condition on the currency, the amount or both meets rows where it holds and
            // where it fails, even beside another condition's literals.
            let ends: std::collections::BTreeSet<i64> = amounts
                .iter()
                .min()
                .into_iter()
                .chain(amounts.iter().max())
                .copied()
                .collect();
            let mut pairs: Vec<(i64, String)> = Vec::new();
            for currency in &currencies {
                let kept: Vec<i64> = if *currency == default {
                    amounts.clone()
                } else {
                    ends.iter().copied().collect()
                };
                pairs.extend(kept.into_iter().map(|amount| (amount, currency.clone())));
            }
            pairs
                .into_iter()
                .map(|(amount, currency)| {
                    let cedar = serde_json::json!({"amount_minor": amount, "currency": currency});
                    let amount = int(amount);
                    (cedar, quote!(#api::Money { amount_minor: #amount, currency: #currency.to_owned() }))
                })
                .collect()
        }
        FieldType::Reference { resource: target } => {
            // A row the tests made, known only when they run: Cedar sees a stand-in here,
            // and a call is kept only where another stand-in gives the same outcome (see
            // `action_case`), which is then the outcome for any row.
            let key = super::tests::ids_key(&app.resources[*target]);
            vec![(
                uuid_text(stand_in(0, *target)).into(),
                quote!(ids.pick(#key, n)),
            )]
        }
        FieldType::Principal => {
            return Err(format!(
                "it reads {}, the name of a caller, other than against the caller",
                field.name
            ));
        }
    };
    // An empty optional field, when a condition tests for it (without `has`, reading it
    // errors, which denies: a row worth trying only where the condition asks).
    if field.optional && tested.contains(&field.json) {
        values.push((serde_json::Value::Null, TokenStream::new()));
    }
    Ok(values
        .into_iter()
        .map(|(cedar, rust)| (cedar, rust.to_string()))
        .collect())
}

/// At most [`MAX_VALUES`] values: each of `literals` with its neighbours `unit` away, or
/// `otherwise` when there are none; only those `within`, once each, in order.
/// Whether `n` keeps within the field's `min` and `max` (an int's value, an amount's minor
/// units).
fn within_bounds(field: &Field, n: i64) -> bool {
    field.min.is_none_or(|min| n >= min) && field.max.is_none_or(|max| n <= i64::from(max))
}

fn around(
    literals: impl IntoIterator<Item = i64>,
    unit: i64,
    otherwise: impl IntoIterator<Item = i64>,
    within: impl Fn(&i64) -> bool,
) -> Vec<i64> {
    let mut numbers: Vec<i64> = Vec::new();
    for literal in literals {
        numbers.extend(
            [
                literal.checked_sub(unit),
                Some(literal),
                literal.checked_add(unit),
            ]
            .into_iter()
            .flatten(),
        );
    }
    if numbers.is_empty() {
        numbers.extend(otherwise);
    }
    let mut kept: Vec<i64> = Vec::new();
    // i64::MIN has no literal of its own (its magnitude is out of range).
    for n in numbers.into_iter().filter(|n| *n != i64::MIN && within(n)) {
        if !kept.contains(&n) && kept.len() < MAX_VALUES {
            kept.push(n);
        }
    }
    kept
}

/// An integer literal (negative ones as a negation).
fn int(n: i64) -> TokenStream {
    let magnitude = Literal::u64_unsuffixed(n.unsigned_abs());
    if n < 0 {
        quote!(-#magnitude)
    } else {
        quote!(#magnitude)
    }
}

/// A Cedar decimal literal (`-12.5`: digits, a point, one to four places) in ten-thousandths,
/// and the unit of its last place.
fn cedar_decimal(text: &str) -> Option<(i64, i64)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, places) = digits.split_once('.')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(places) || places.len() > 4 {
        return None;
    }
    let scaled = whole
        .parse::<i64>()
        .ok()?
        .checked_mul(10_000)?
        .checked_add(format!("{places:0<4}").parse::<i64>().ok()?)?;
    let unit = 10_i64.pow(4 - places.len() as u32);
    Some((if negative { -scaled } else { scaled }, unit))
}

/// Ten-thousandths as the server gives a decimal to Cedar (`authz::decimal`): no trailing
/// zeros, at least one place.
fn decimal_text(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let magnitude = n.unsigned_abs();
    let places = format!("{:04}", magnitude % 10_000);
    let places = places.trim_end_matches('0');
    let places = if places.is_empty() { "0" } else { places };
    format!("{sign}{}.{places}", magnitude / 10_000)
}

/// A Cedar datetime literal (`2024-01-31`, or with a time, `Z` or an offset like `+0100`)
/// in milliseconds since the epoch.
fn cedar_datetime(text: &str) -> Option<i64> {
    if text.len() == 10 {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    let text = match text.strip_suffix('Z') {
        Some(rest) => format!("{rest}+0000"),
        None => text.to_owned(),
    };
    let time = DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f%z").ok()?;
    Some(time.with_timezone(&Utc).timestamp_millis())
}

/// A uuid literal (hyphenated or not, either case) as its 128 bits.
fn uuid_bits(text: &str) -> Option<u128> {
    let hex = match text.len() {
        32 => text.to_owned(),
        36 if text
            .char_indices()
            .all(|(at, c)| (c == '-') == [8, 13, 18, 23].contains(&at)) =>
        {
            text.replace('-', "")
        }
        _ => return None,
    };
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// A uuid as the server gives it to Cedar: lower case, hyphenated.
fn uuid_text(bits: u128) -> String {
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// How the generated checks call an action.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Row,
    Update,
    Create,
    List,
}

impl Call {
    const ALL: [Call; 4] = [Call::Row, Call::Update, Call::Create, Call::List];

    fn of(action: &Action) -> Call {
        match action.kind {
            ActionKind::Update => Call::Update,
            ActionKind::Create => Call::Create,
            ActionKind::List => Call::List,
            ActionKind::Read | ActionKind::Delete | ActionKind::Custom(_) => Call::Row,
        }
    }

    fn ident(self) -> Ident {
        ident(match self {
            Call::Row => "Row",
            Call::Update => "Update",
            Call::Create => "Create",
            Call::List => "List",
        })
    }

    /// The generated variant's documentation.
    fn doc(self) -> &'static str {
        match self {
            Call::Row => " On a stored row.",
            Call::Update => {
                " On a stored row, sending it as written (an update keeps what the condition reads)."
            }
            Call::Create => {
                " With the row to create (the condition decides on it): nothing is stored first."
            }
            Call::List => {
                " Listing every page: the status expected is 200 when the stored row is listed, 403 when the list leaves it out, else the status refusing the list."
            }
        }
    }
}

impl Plan<'_> {
    /// Whether some checked action is called so.
    fn calls_of(&self, call: Call) -> bool {
        self.cases.iter().any(|case| Call::of(case.action) == call)
    }

    /// The loop over [`Plan::checks`]' cases, in the role × action test; empty without
    /// cases. Each call is made by a member of its own: rate limits count per principal and
    /// operation, and an action may be called more often than its limit allows one principal.
    /// Only the ways of calling that some case uses are spelled out (the test is linted with
    /// warnings denied).
    pub fn calls(&self, app: &App) -> TokenStream {
        if self.cases.is_empty() {
            return TokenStream::new();
        }
        let path = quote!(let path = case.path.replace("{id}", &row.to_string()););
        // Conditional deletes of rows another resource's rows must refer to (tenant data):
        // the resource, that other resource, and its table.
        let mut referrers: Vec<(&str, &str, String)> = Vec::new();
        for case in self
            .cases
            .iter()
            .filter(|c| c.action.kind == ActionKind::Delete)
        {
            let referrer = super::tests::referrer(app, case.resource);
            let key = super::tests::ids_key(case.resource);
            if let Some(referrer) = referrer
                && !referrers.iter().any(|(k, _, _)| *k == key)
            {
                let table = crate::render::escape::sql_ident(&referrer.table);
                referrers.push((key, super::tests::ids_key(referrer), table));
            }
        }
        let row_call = if referrers.is_empty() {
            quote!(
                send(&app, &case.method, &path, &token, None)
                    .await
                    .0
                    .as_u16()
            )
        } else {
            let entries = referrers.iter().map(|(key, referrer, table)| {
                let delete = format!("DELETE FROM {table} WHERE \"id\" = $1");
                quote!((#key, #referrer, #delete))
            });
            quote! {
                /// Resources whose rows a conditional delete removes, another resource whose
                /// rows must refer to them, and how to remove such a row.
                const REFERRERS: &[(&str, &str, &str)] = &[#(#entries),*];
                let status = send(&app, &case.method, &path, &token, None).await.0;
                // Refused again while another row refers to this one: the reference is
                // checked at commit, after the decision (a 409 would tell of that row).
                if case.method == "DELETE"
                    && (status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED)
                    && let Some((_, referrer, remove)) = REFERRERS.iter().find(|(r, _, _)| *r == case.resource)
                {
                    let mut refs = Ids::default();
                    for resource in CREATION_ORDER {
                        if *resource == case.resource {
                            refs.push(resource, row);
                        } else {
                            ids.of(resource).iter().for_each(|id| refs.push(resource, *id));
                        }
                    }
                    let mut conn = db.pool.acquire().await.expect("a connection");
                    let referring = insert_sample(&mut conn, referrer, tenant, owner, counter, &refs).await;
                    let (again, _) = send(&app, &case.method, &path, &token, None).await;
                    assert_eq!(again, status, "{} refused ({status}), then answered {again} once a {referrer} row referred to it", case.id);
                    sqlx::query(*remove).bind(referring).execute(&mut *conn).await.expect("remove the referring row");
                }
                status.as_u16()
            }
        };
        let arms = Call::ALL.iter().filter(|call| self.calls_of(**call)).map(|call| match call {
            Call::Row => quote! {
                Call::Row => { #path #row_call }
            },
            Call::Update => quote! {
                Call::Update => { #path send(&app, &case.method, &path, &token, Some(input)).await.0.as_u16() }
            },
            Call::Create => quote! {
                Call::Create => {
                    let mut conn = db.pool.acquire().await.expect("a connection");
                    let before = stored_rows(&mut conn, &case.resource, tenant).await;
                    let resent = input.clone();
                    let (status, body) = send(&app, &case.method, &case.path, &token, Some(input)).await;
                    created = body["id"].as_str().and_then(|id| id.parse().ok());
                    if status != StatusCode::CREATED {
                        assert_eq!(stored_rows(&mut conn, &case.resource, tenant).await, before, "{} refused ({status}), yet a row was stored", case.id);
                    }
                    // Refused again once a row holds the same values: a unique value taken
                    // must not answer 409 before the decision (it would tell of that row).
                    if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
                        let (taken, _) = varied_row(&mut conn, &case.resource, tenant, owner, counter, &ids, &case.varied, &call.values, true).await;
                        let (again, _) = send(&app, &case.method, &case.path, &token, Some(resent)).await;
                        assert_eq!(again, status, "{} refused ({status}), then answered {again} once another row held its values", case.id);
                        created = Some(taken);
                    }
                    status.as_u16()
                }
            },
            Call::List => quote! {
                Call::List => listed(&app, &case.path, &token, row).await,
            },
        });
        let creates = self.calls_of(Call::Create);
        let insert = if creates {
            quote!(case.call != Call::Create)
        } else {
            quote!(true)
        };
        // A create's row is the one it made (nothing was stored first).
        let (created, removed) = if creates {
            (
                quote!(let mut created: Option<uuid::Uuid> = None;),
                quote!(created.unwrap_or(row)),
            )
        } else {
            (quote!(), quote!(row))
        };
        // An update writing other values than the row's: the input made with those.
        let written = self.calls_of(Call::Update).then(|| {
            quote! {
                let input = match &call.written {
                    Some(written) => varied_row(&mut conn, &case.resource, tenant, owner, counter, &ids, &case.varied, written, false).await.1,
                    None => input,
                };
            }
        });
        let input = if self.calls_of(Call::Update) || creates {
            quote!(input)
        } else {
            quote!(_)
        };
        quote! {
            for case in table::<ConditionCase>("conditions") {
                for call in &case.calls {
                    counter += 1;
                    let caller = format!("{}-check-{counter}", call.roles.join("-"));
                    let roles: Vec<&str> = call.roles.iter().map(String::as_str).collect();
                    db.member(tenant, &caller, &roles).await;
                    let owner = if call.own { caller.as_str() } else { "someone-else" };
                    let mut conn = db.pool.acquire().await.expect("a connection");
                    let (row, #input) = varied_row(&mut conn, &case.resource, tenant, owner, counter, &ids, &case.varied, &call.values, #insert).await;
                    #written
                    drop(conn);
                    let scopes = OPERATIONS.iter().filter_map(|op| op.scope).filter(|scope| !named(&call.dropped, scope)).collect::<Vec<_>>().join(" ");
                    let amr: &[&str] = if call.mfa { &["mfa"] } else { &[] };
                    let token = signed(&dev::claims(&caller, tenant.id(), &scopes, amr, identity::now(), 60));
                    #created
                    let status = match case.call {
                        #(#arms)*
                    };
                    assert_eq!(status, call.expected, "{} by {caller} on a row of theirs: {}, values {:?} of {:?}, written {:?}, second factor: {}, scopes left out: {:?}", case.id, call.own, call.values, case.varied, call.written, call.mfa, call.dropped);
                    // The row goes, so that the next call may give a unique field the same value.
                    let mut conn = db.pool.acquire().await.expect("a connection");
                    remove_row(&mut conn, &case.resource, tenant, #removed).await;
                }
            }
        }
    }
}

/// The test's `listed`: whether a list shows a row, on any page.
fn listed_fn() -> TokenStream {
    quote! {
        /// Whether any page of the list at `path` shows the bearer of `token` the row `id`:
        /// 200 when one does, 403 when none does, else the status refusing the list.
        async fn listed(app: &axum::Router, path: &str, token: &str, id: uuid::Uuid) -> u16 {
            let mut after: Option<String> = None;
            loop {
                let page = match &after {
                    Some(after) => format!("{path}?limit=100&after={after}"),
                    None => format!("{path}?limit=100"),
                };
                let (status, body) = send(app, "GET", &page, token, None).await;
                if status != StatusCode::OK {
                    assert!(after.is_none(), "{page}: {status} after a first page: {body}");
                    return status.as_u16();
                }
                let items = body["items"].as_array().expect("a page");
                if items.iter().any(|item| item["id"] == id.to_string()) {
                    return 200;
                }
                match body["next_after"].as_str() {
                    Some(next) => after = Some(next.to_owned()),
                    None => return 403,
                }
            }
        }
    }
}

/// What the generated API accepts as an email address (`check::email`): one `@`, a dot
/// inside the domain, no whitespace.
fn plausible_email(text: &str) -> bool {
    text.len() <= 254
        && !text.chars().any(char::is_whitespace)
        && text.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
}

/// The fields a condition reads on the row (by their Cedar attribute name) and those it
/// tests with `has`, if it reads only the row's fields, the caller's `sub` and `roles` and
/// the context's `mfa` and `scopes`; else why not. Read from its syntax tree.
fn read_fields<'a>(
    resource: &'a Resource,
    condition: &Condition,
) -> Result<(Vec<&'a Field>, ContextReads, Vec<String>), String> {
    let reads = condition.reads();
    if let Some(whole) = reads.whole.first() {
        return Err(format!(
            "it reads {whole} as a whole, not only its attributes"
        ));
    }
    if let Some(name) = reads
        .principal
        .iter()
        .find(|n| *n != "sub" && *n != "roles")
    {
        return Err(format!("it reads the caller's {name}"));
    }
    // The context the server gives: the token's second factor and scopes (the checks vary
    // them through the token).
    let mut context = ContextReads::default();
    for name in &reads.context {
        match name.as_str() {
            "mfa" => context.mfa = true,
            "scopes" => context.scopes = true,
            other => return Err(format!("it reads the request's context.{other}")),
        }
    }
    // `resource has x` reads whether the field is set: a read too.
    let mut fields: Vec<&Field> = Vec::new();
    for name in reads.resource.iter().chain(&reads.tested) {
        let field = resource
            .fields
            .iter()
            .find(|f| f.json == *name)
            .ok_or_else(|| format!("it reads the row's {name}, which the checks do not set"))?;
        if !fields.iter().any(|f| f.json == field.json) {
            fields.push(field);
        }
    }
    Ok((fields, context, reads.tested))
}

/// Every scope an operation of `app` needs, in the order of `OPERATIONS` (each once): a
/// token with all of them may call every operation.
fn scopes_of(app: &App) -> Vec<String> {
    let resources = app
        .resources
        .iter()
        .flat_map(|r| &r.actions)
        .filter_map(|a| a.scope.clone());
    let builtins = app.builtin_operations().into_iter().filter_map(|b| b.scope);
    let mut scopes: Vec<String> = Vec::new();
    for scope in resources.chain(builtins) {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

/// The condition of an action the checks can call (not public, with roles, on rows of a
/// tenant), or why it is not checked.
fn checkable<'a>(
    resource: &Resource,
    action: &Action,
    condition: &'a str,
) -> Result<&'a str, String> {
    if resource.global {
        return Err("the resource is global: the checks insert rows of a tenant".into());
    }
    if action.public.is_some() || action.roles.is_empty() {
        return Err("the action is public: no caller's role to check it with".into());
    }
    Ok(condition)
}

/// One value a varied field takes in a row.
#[derive(Clone)]
enum Choice {
    /// The index of one of the field's values.
    Value(usize),
    /// A principal field: the caller, or someone else.
    Caller(bool),
}

/// What a condition reads besides the row's fields.
#[derive(Clone, Copy)]
struct Reads {
    /// The row's principal fields (compared with the caller).
    principal: bool,
    context: ContextReads,
}

fn action_case<'a>(
    (mfa_roles, every_scope): (&[&str], &[String]),
    resource: &'a Resource,
    action: &'a Action,
    condition: &Condition,
    reads: Reads,
    varied: &[&Candidates<'a>],
) -> Result<Case<'a>, String> {
    // The row's principal fields all take the inserting subject's name, so they vary
    // together: the caller's, or someone else's (a created row's are always the caller's).
    let mut rows: Vec<Vec<Choice>> = if reads.principal && action.kind == ActionKind::Create {
        vec![vec![Choice::Caller(true)]]
    } else if reads.principal {
        vec![vec![Choice::Caller(true)], vec![Choice::Caller(false)]]
    } else {
        vec![Vec::new()]
    };
    // The token: with a second factor or without, when the condition reads it; with every
    // scope, or without those the condition names (the operation's own stays: without it the
    // guard refuses first).
    let mfas: &[bool] = if reads.context.mfa {
        &[true, false]
    } else {
        &[true]
    };
    // (Reading the literals walks the policy's JSON form: only when they matter.)
    let named: Vec<String> = if reads.context.scopes {
        condition
            .literals()
            .iter()
            .filter_map(|l| l.as_str())
            .filter(|l| every_scope.iter().any(|s| s == l) && action.scope.as_deref() != Some(*l))
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    // The roles that need a second factor the condition names (`principal.roles.contains(..)`).
    let named_mfa_roles: Vec<&str> = condition
        .literals()
        .iter()
        .filter_map(|l| l.as_str())
        .filter_map(|l| mfa_roles.iter().copied().find(|r| *r == l))
        .collect();
    let droppings: Vec<Vec<String>> = if named.is_empty() {
        vec![Vec::new()]
    } else {
        vec![Vec::new(), named]
    };
    for candidates in varied {
        rows = rows
            .into_iter()
            .flat_map(|row| {
                (0..candidates.values.len()).map(move |i| {
                    let mut next = row.clone();
                    next.push(Choice::Value(i));
                    next
                })
            })
            .collect();
        if rows.len() * action.roles.len() * mfas.len() * droppings.len() > MAX_CALLS {
            return Err(format!(
                "trying its fields' values takes more than {MAX_CALLS} calls"
            ));
        }
    }
    // A list "succeeds" when it shows the row (see the generated `Call::List`).
    let success: u16 = match action.kind {
        ActionKind::Delete => 204,
        ActionKind::Create => 201,
        _ => 200,
    };
    // One call per role, row and token: the caller, whether the row is the caller's, the
    // values (by index into each varied field's values), the token, the expected status.
    let mut calls = Vec::new();
    let (mut holds, mut fails) = (false, false);
    // The caller's name only has to differ from someone else's.
    let subject = "caller";
    for role in &action.roles {
        for row in &rows {
            let mut attrs = serde_json::Map::new();
            let mut own = false;
            let mut indexes = Vec::new();
            let mut fields = varied.iter();
            // The references set, whose stand-in is swapped for the second evaluation.
            let mut references = Vec::new();
            for choice in row {
                match choice {
                    Choice::Caller(is_caller) => own = *is_caller,
                    Choice::Value(index) => {
                        let candidates = fields.next().ok_or("a value of no field")?;
                        let (value, _) = &candidates.values[*index];
                        if !value.is_null() {
                            attrs.insert(candidates.field.json.clone(), value.clone());
                            if let FieldType::Reference { resource: target } = candidates.field.ty {
                                references.push((candidates.field, target));
                            }
                        }
                        indexes.push(*index);
                    }
                }
            }
            let owner = if own { subject } else { "someone-else" };
            for field in resource
                .fields
                .iter()
                .filter(|f| f.ty == FieldType::Principal)
            {
                attrs.insert(field.json.clone(), owner.into());
            }
            let mut other_rows = attrs.clone();
            for (field, target) in &references {
                other_rows.insert(field.json.clone(), uuid_text(stand_in(1, *target)).into());
            }
            let (attrs, other_rows) = (
                serde_json::Value::Object(attrs),
                serde_json::Value::Object(other_rows),
            );
            for dropped in &droppings {
                let scopes: Vec<&str> = every_scope
                    .iter()
                    .filter(|s| !dropped.contains(s))
                    .map(String::as_str)
                    .collect();
                // As the server decides: a role that needs a second factor counts only with
                // one, in the role clause (the policies ask `context.mfa` of it) and in the
                // condition (without one, the condition must hold with those roles left out
                // too), and the condition must hold.
                let decides = |roles: &[&str], mfa: bool| -> Result<bool, String> {
                    let counts = |role: &str| mfa || !mfa_roles.contains(&role);
                    let counted: Vec<&str> = roles.iter().copied().filter(|r| counts(r)).collect();
                    if !counted.iter().any(|r| action.roles.iter().any(|a| a == r)) {
                        return Ok(false);
                    }
                    let holds = |roles: &[&str], attrs: &serde_json::Value| {
                        condition
                            .holds(subject, roles, attrs.clone(), (mfa, &scopes))
                            .map_err(|e| format!("Cedar could not evaluate it here: {e}"))
                    };
                    let mut allowed = true;
                    for roles in [roles, &counted] {
                        let here = holds(roles, &attrs)?;
                        if !references.is_empty() && holds(roles, &other_rows)? != here {
                            return Err(format!(
                                "its outcome depends on which row {} points at, known only when the tests run",
                                references
                                    .iter()
                                    .map(|(f, _)| f.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            ));
                        }
                        allowed &= here;
                    }
                    Ok(allowed)
                };
                // A refusal a second factor would lift is a step-up challenge (401). The
                // guard asks for one before any row is read when none of the caller's roles
                // counts without it; otherwise the row decides (a list leaves it out).
                let expected = |roles: &[&str], mfa: bool| -> Result<u16, String> {
                    let lifted = roles.iter().all(|r| mfa_roles.contains(r))
                        || (action.kind != ActionKind::List && decides(roles, true)?);
                    Ok(if decides(roles, mfa)? {
                        success
                    } else if !mfa && lifted {
                        401
                    } else {
                        403
                    })
                };
                for &mfa in mfas {
                    let status = expected(&[role.as_str()], mfa)?;
                    holds |= status == success;
                    fails |= status != success;
                    calls.push(CaseCall {
                        roles: vec![role.clone()],
                        own,
                        values: indexes.clone(),
                        written: None,
                        mfa,
                        dropped: dropped.clone(),
                        expected: status,
                    });
                }
                // The same caller also holding a role that needs a second factor the condition
                // names, with a token that shows one and a token that does not: without it,
                // that role must neither meet the condition nor escape it.
                if mfa_roles.contains(&role.as_str()) {
                    continue;
                }
                for unproven in &named_mfa_roles {
                    let roles = [role.as_str(), unproven];
                    for mfa in [true, false] {
                        let status = expected(&roles, mfa)?;
                        holds |= status == success;
                        fails |= status != success;
                        calls.push(CaseCall {
                            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                            own,
                            values: indexes.clone(),
                            written: None,
                            mfa,
                            dropped: dropped.clone(),
                            expected: status,
                        });
                    }
                }
            }
        }
    }
    if !holds {
        return Err("no row the checks try makes it hold".into());
    }
    if !fails {
        return Err("no row the checks try makes it fail".into());
    }
    // An update is decided on the row as stored and as written: a row where the condition
    // holds, written with values where it fails, is refused as that row would be (the values
    // of fields only actions change stay as stored: an update must keep them).
    if action.kind == ActionKind::Update {
        let held = resource.held_fields();
        let kept: Vec<bool> = varied
            .iter()
            .map(|c| held.iter().any(|(h, _)| h.ident == c.field.ident))
            .collect();
        let same_kept =
            |a: &[usize], b: &[usize]| a.iter().zip(b).zip(&kept).all(|((x, y), k)| !k || x == y);
        let mut transitions = Vec::new();
        for refused in calls
            .iter()
            .filter(|c| c.expected != success && c.roles.len() == 1)
        {
            let from = calls.iter().find(|c| {
                c.expected == success
                    && (&c.roles, c.own, c.mfa, &c.dropped)
                        == (&refused.roles, refused.own, refused.mfa, &refused.dropped)
                    && c.values != refused.values
                    && same_kept(&c.values, &refused.values)
            });
            if let Some(from) = from {
                transitions.push(CaseCall {
                    written: Some(refused.values.clone()),
                    expected: refused.expected,
                    ..from.clone()
                });
            }
        }
        calls.extend(transitions);
    }
    Ok(Case {
        resource,
        action,
        varied: varied.iter().map(|c| c.field.name.as_str()).collect(),
        calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cedar_decimals_are_read_in_ten_thousandths_and_written_as_the_server_writes_them() {
        assert_eq!(cedar_decimal("24.0"), Some((240_000, 1_000)));
        assert_eq!(cedar_decimal("-0.5"), Some((-5_000, 1_000)));
        assert_eq!(cedar_decimal("1.2345"), Some((12_345, 1)));
        for not_one in ["1", ".5", "1.", "1.23456", "1.2x", "--1.0"] {
            assert_eq!(cedar_decimal(not_one), None, "{not_one}");
        }
        assert_eq!(decimal_text(240_000), "24.0");
        assert_eq!(decimal_text(239_000), "23.9");
        assert_eq!(decimal_text(-5), "-0.0005");
        assert_eq!(decimal_text(0), "0.0");
        assert_eq!(decimal_text(12_345), "1.2345");
    }

    #[test]
    fn cedar_datetimes_are_read_in_milliseconds() {
        assert_eq!(cedar_datetime("2026-01-01"), Some(1_767_225_600_000));
        assert_eq!(
            cedar_datetime("2030-01-01T00:00:00Z"),
            Some(1_893_456_000_000)
        );
        assert_eq!(
            cedar_datetime("2030-01-01T01:00:00.500+0100"),
            Some(1_893_456_000_500)
        );
        assert_eq!(cedar_datetime("2030-01-01T00:00:00"), None);
        assert_eq!(cedar_datetime("2030-13-01"), None);
    }

    #[test]
    fn uuids_are_compared_in_the_servers_form() {
        let bits = uuid_bits("0190A0B0-0000-7000-8000-00000000000A").expect("a uuid");
        assert_eq!(uuid_text(bits), "0190a0b0-0000-7000-8000-00000000000a");
        assert_eq!(uuid_bits("0190a0b000007000800000000000000a"), Some(bits));
        assert_eq!(uuid_bits("0190a0b0-0000-7000-8000-00000000000"), None);
        assert_eq!(uuid_bits("0190a0b0-00007000-8000-00000000000a-"), None);
    }

    #[test]
    fn what_a_condition_reads_comes_from_its_syntax_tree() {
        let reads = |text: &str| Condition::parse(text).expect("a condition").reads();
        let read = reads(
            r#"resource has closed_at && resource["café"] == "resource.x" && resource.price.currency == "EUR" && principal.roles.contains("a") && context.mfa"#,
        );
        assert_eq!(read.tested, ["closed_at"]);
        assert_eq!(read.resource, ["café", "price"]);
        assert_eq!(read.principal, ["roles"]);
        assert_eq!(read.context, ["mfa"]);
        assert!(read.whole.is_empty());
        assert_eq!(reads(r#"resource has "where""#).tested, ["where"]);
        assert_eq!(
            reads("resource.closed_at_x > 1").tested,
            Vec::<String>::new()
        );
        assert_eq!(reads(r#"resource in Test::Row::"x""#).whole, ["resource"]);
        assert_eq!(
            reads("context.scopes.contains(\"s\") && context == context").whole,
            ["context"]
        );
    }

    const SPEC: &str = r#"
bulwark: 1
app: { name: checks }
api:
  version: v1
  scopes: { s: Everything, t: Others }
identity: { issuer: "https://id.example.com/", audience: checks, max_token_lifetime: 10m }
roles: { admin: { description: Admin }, clerk: { description: Clerk, mfa: required } }
payments:
  provider: stripe
  checkout: { resource: item, amount: price, mode: redirect }
  currencies: [EUR, JPY]
  webhooks: { tolerance: 300s }
resources:
  other:
    fields: { name: { type: string, max: 10 } }
    actions: { read: { roles: [admin], scope: t } }
  item:
    fields:
      rate: { type: decimal }
      at: { type: timestamp, optional: true }
      on: { type: date }
      code: { type: uuid }
      price: { type: money }
      other: { type: reference, to: other }
      owner: { type: principal }
      serial: { type: string, max: 10, unique: true }
    actions:
      read: { roles: [admin, clerk], scope: s, when: 'resource.rate.lessThan(decimal("1.5"))' }
      update: { roles: [admin], scope: s, when: 'resource has at && resource.at >= datetime("2026-01-01")' }
      delete: { roles: [admin], scope: s, when: 'resource.on == "2024-02-29" && resource.code != "0190A0B0-0000-7000-8000-00000000000A"' }
      create: { roles: [admin], scope: s, when: 'resource.rate.lessThan(decimal("1.5")) && resource.owner == principal.sub' }
      list: { roles: [admin], scope: s, when: 'resource.rate.greaterThan(decimal("1.5")) || resource has at' }
      pay: { roles: [admin], scope: s, when: 'resource.price.currency == "JPY" && resource.price.amount_minor > 100', sets: { serial: paid } }
      link: { roles: [admin], scope: s, when: 'resource.other == "x"', sets: { serial: linked } }
      step: { roles: [admin, clerk], scope: s, when: 'context.mfa', sets: { serial: stepped } }
      scoped: { roles: [admin], scope: s, when: 'context.scopes.contains("t")', sets: { serial: scoped } }
      odd: { roles: [admin], scope: s, when: 'context has mfa', sets: { serial: odd } }
      tag: { roles: [admin], scope: s, when: 'resource.serial == "a"', sets: { serial: b } }
      always: { roles: [admin], scope: s, when: 'resource.rate == resource.rate', sets: { serial: c } }
      vouch: { roles: [admin], scope: s, when: 'principal.roles.contains("clerk")', sets: { serial: d } }
      exempt: { roles: [admin], scope: s, when: '!principal.roles.contains("clerk")', sets: { serial: e } }
  node:
    fields:
      parent: { type: reference, to: other, optional: true }
      link: { type: reference, to: other }
      thing: { type: reference, to: item, optional: true }
    actions:
      read: { roles: [admin], scope: s }
      update: { roles: [admin], scope: s, when: '!(resource has parent)' }
      delete: { roles: [admin], scope: s, when: 'resource.link like "*b01"' }
      create: { roles: [admin], scope: s, when: 'resource has parent && resource.parent == resource.link' }
      list: { roles: [admin], scope: s, when: 'resource has thing && resource.thing != resource.link' }
"#;

    #[test]
    fn each_conditional_operation_is_checked_or_says_why_not() {
        let app = crate::compile("checks.yaml", SPEC).expect("the spec is valid");
        let plan = plan(&app, "checks-api");
        let coverage: Vec<(&str, Result<usize, &str>)> = plan
            .coverage
            .iter()
            .map(|c| {
                (
                    c.operation.as_str(),
                    c.checked.as_ref().map(|n| *n).map_err(String::as_str),
                )
            })
            .collect();
        assert_eq!(
            coverage,
            [
                // rate: 1.4, 1.5, 1.6 (the literal's last place), by two roles.
                ("item.read", Ok(6)),
                // at: a second either side of the cut-off, and empty.
                ("item.update", Ok(6)),
                // on: the literal and another date; code: the literal and another uuid.
                ("item.delete", Ok(4)),
                // The created row is always the caller's: only the rate varies.
                ("item.create", Ok(3)),
                // rate, and at (set either side of the cut-off, or empty): is the row listed?
                ("item.list", Ok(48)),
                // 99 to 101 in EUR, the samples' currency; 99 and 101 in JPY, the one it names.
                ("item.pay", Ok(5)),
                // A row the tests make is never "x".
                ("item.link", Err("no row the checks try makes it hold")),
                // With a second factor and without, by each role.
                ("item.step", Ok(4)),
                // With every scope, and without t.
                ("item.scoped", Ok(2)),
                // The server always gives the second factor: `has` always holds.
                ("item.odd", Err("no row the checks try makes it fail")),
                // serial is unique: each call's row is deleted before the next, so the
                // literals of the resource's conditions that fit (a, x, t, JPY, 2024-02-29)
                // and another value are tried one after another.
                ("item.tag", Ok(6)),
                ("item.always", Err("no row the checks try makes it fail")),
                ("item.vouch", Ok(3)),
                ("item.exempt", Ok(3)),
                // parent set (to a row the tests made) and empty.
                ("node.update", Ok(3)),
                (
                    "node.delete",
                    Err(
                        "its outcome depends on which row link points at, known only when the tests run"
                    )
                ),
                // parent and link are rows of one resource, picked alike: equal when set.
                ("node.create", Ok(2)),
                // thing and link are rows of two resources: never equal.
                ("node.list", Ok(2)),
            ]
        );
        let checks = plan
            .checks(&crate::render::rust::crate_ident("checks-api"))
            .to_string();
        for expected in [
            "rust_decimal :: Decimal :: new (16000 , 4)",
            "0 => Some (ids . pick (\"other\" , n)) , 1 => None ,",
            "chrono :: DateTime :: from_timestamp_millis (1767225599000)",
            "chrono :: NaiveDate :: from_ymd_opt (2024 , 2 , 29)",
            "uuid :: Uuid :: from_u128 (2080177873107646743472899992747769866)",
            "checks_api :: Money { amount_minor : 101 , currency : \"JPY\" . to_owned () }",
        ] {
            assert!(checks.contains(expected), "{expected} in {checks}");
        }
        // The token varies as the condition reads it; a refusal a second factor would lift
        // is a step-up challenge.
        let statuses = |id: &str| -> Vec<(String, bool, Vec<String>, u16)> {
            let case = plan
                .cases
                .iter()
                .find(|c| format!("{}.{}", c.resource.name, c.action.name) == id)
                .expect("a checked case");
            case.calls
                .iter()
                .map(|c| (c.roles.join("+"), c.mfa, c.dropped.clone(), c.expected))
                .collect()
        };
        // An update is decided on the row as stored and as written: a row where the
        // condition holds, written with values where it fails, is refused.
        let case = plan
            .cases
            .iter()
            .find(|c| c.resource.name == "item" && c.action.name == "update")
            .expect("item.update");
        let transitions: Vec<_> = case.calls.iter().filter(|c| c.written.is_some()).collect();
        assert_eq!(transitions.len(), 2, "one per refused row");
        for t in transitions {
            assert_eq!(t.expected, 403);
            let from = case
                .calls
                .iter()
                .find(|c| c.written.is_none() && c.values == t.values)
                .expect("the stored row's call");
            assert_eq!(from.expected, 200, "the row as stored is allowed");
        }
        // A role that needs a second factor (clerk) counts in a condition only with one:
        // without, it neither meets the condition (401: a factor would) nor escapes it.
        assert_eq!(
            statuses("item.vouch"),
            [
                ("admin".into(), true, vec![], 403),
                ("admin+clerk".into(), true, vec![], 200),
                ("admin+clerk".into(), false, vec![], 401),
            ]
        );
        assert_eq!(
            statuses("item.exempt"),
            [
                ("admin".into(), true, vec![], 200),
                ("admin+clerk".into(), true, vec![], 403),
                ("admin+clerk".into(), false, vec![], 403),
            ]
        );
        assert_eq!(
            statuses("item.step"),
            [
                ("admin".into(), true, vec![], 200),
                ("admin".into(), false, vec![], 401),
                ("clerk".into(), true, vec![], 200),
                ("clerk".into(), false, vec![], 401),
            ]
        );
        assert_eq!(
            statuses("item.scoped"),
            [
                ("admin".into(), true, vec![], 200),
                ("admin".into(), true, vec!["t".into()], 403),
            ]
        );
    }
}
