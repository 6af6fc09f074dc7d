//! The generated checks of the spec's conditions: for each conditional action of a tenant
//! resource whose condition reads only enum, bool, int, string, text, email and principal
//! fields of the row (and the caller's `sub` and `roles`), rows with every combination of
//! values worth trying on those fields (every enum value; both booleans; the condition's own
//! literals, a string each `like` pattern matches, and integers beside the literals; another
//! string), called by a member of each allowed role. The expected outcome of each call comes
//! from Cedar evaluating the condition here, at generation time ([`crate::policy::Condition`]),
//! not from the policies the server loads; an action is tested only when some call is allowed
//! and some refused, so each condition meets a row where it holds and one where it fails.

use super::{enum_type, ident};
use crate::model::{Action, ActionKind, App, Field, FieldType, Resource};
use crate::policy::Condition;
use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

/// Above this many rows per action the combinations are not enumerated.
const MAX_CALLS: usize = 64;

/// At most this many values are tried on one field that is not an enum.
const MAX_VALUES: usize = 6;

/// The values tried on one varied field: each as Cedar sees it (for the expected outcome)
/// and as the generated input sets it.
struct Candidates<'a> {
    field: &'a Field,
    values: Vec<(serde_json::Value, TokenStream)>,
}

/// The condition checks, spliced into the role × action test after its writes (which seeded
/// a row of every resource, so references have rows to point to). Its members `{role}-true`
/// call. Empty when no condition of the spec can be checked this way.
pub fn condition_checks(app: &App, api: &Ident) -> TokenStream {
    let mut cases = Vec::new();
    let mut inserts = Vec::new();
    for resource in app.resources.iter().filter(|r| !r.global) {
        let checked: Vec<(&Action, Condition, Vec<&Field>)> = resource
            .actions
            .iter()
            .filter_map(|action| {
                let text = checkable(action)?;
                let fields = read_fields(resource, text)?;
                Some((action, Condition::parse(text).ok()?, fields))
            })
            .collect();
        // The values tried on a field are the same for all the resource's conditions, so
        // that one function sets them: the literals of all of them count.
        let mut literals = Vec::new();
        for (_, condition, _) in &checked {
            for literal in condition.literals() {
                if !literals.contains(&literal) {
                    literals.push(literal);
                }
            }
        }
        let mut candidates: Vec<Candidates> = Vec::new();
        let mut any = false;
        'actions: for (action, condition, fields) in &checked {
            // The candidates of each field it varies; a field that cannot vary drops the action.
            let mut mine = Vec::new();
            for field in fields.iter().filter(|f| f.ty != FieldType::Principal) {
                let at = match candidates.iter().position(|c| c.field.ident == field.ident) {
                    Some(at) => at,
                    None => {
                        let Some(values) = values(resource, field, &literals, api) else {
                            continue 'actions;
                        };
                        candidates.push(Candidates { field, values });
                        candidates.len() - 1
                    }
                };
                mine.push(at);
            }
            let reads_principal = fields.iter().any(|f| f.ty == FieldType::Principal);
            let varied: Vec<&Candidates> = mine.iter().map(|at| &candidates[*at]).collect();
            if let Some(case) = action_case(resource, action, condition, reads_principal, &varied) {
                cases.push(case);
                any = true;
            }
        }
        if any {
            inserts.push(insert_arm(resource, &candidates, api));
        }
    }
    if cases.is_empty() {
        return TokenStream::new();
    }
    quote! {
        /// A conditional action and its calls: the caller, whether the row's principal fields
        /// name the caller, the index of each varied field's value, the status expected.
        struct ConditionCase {
            id: &'static str,
            resource: &'static str,
            method: &'static str,
            path: &'static str,
            /// Whether the call sends the row as written (an update keeps what the condition reads).
            body: bool,
            varied: &'static [&'static str],
            calls: &'static [(&'static str, bool, &'static [usize], u16)],
        }

        const CONDITIONS: &[ConditionCase] = &[#(#cases),*];

        /// Inserts a sample row of `resource` with the `varied` fields set to their values
        /// at `values`, its principal fields naming `owner`; its id and its input as JSON.
        #[allow(clippy::too_many_arguments)]
        async fn insert_varied(conn: &mut sqlx::PgConnection, resource: &str, tenant: TenantId, owner: &str, n: i64, ids: &Ids, varied: &[&str], values: &[usize]) -> (uuid::Uuid, serde_json::Value) {
            let _ = (owner, varied, values);
            match resource {
                #(#inserts)*
                other => panic!("no conditions of {other}"),
            }
        }
    }
}

/// The arm of `insert_varied` for one resource: its sample input with the varied fields set.
fn insert_arm(resource: &Resource, candidates: &[Candidates], api: &Ident) -> TokenStream {
    let key = super::tests::ids_key(resource);
    let module = ident(&resource.ident);
    let sample = super::tests::sample_call(resource, quote!(n), quote!(ids));
    let sets = candidates.iter().map(|Candidates { field, values }| {
        let name = field.name.as_str();
        let f = ident(&field.ident);
        let value = match enum_type(field) {
            Some(ety) => quote!(#api::#module::#ety::ALL[value]),
            None => {
                let arms = values.iter().enumerate().map(|(i, (_, rust))| {
                    let i = Literal::usize_unsuffixed(i);
                    quote!(#i => #rust,)
                });
                quote!(match value { #(#arms)* other => panic!("no value {other} of {}", #name) })
            }
        };
        if field.optional || field.default.is_some() {
            quote!(#name => input.#f = Some(#value),)
        } else {
            quote!(#name => input.#f = #value,)
        }
    });
    let owner = resource
        .fields
        .iter()
        .any(|f| f.ty == FieldType::Principal)
        .then(|| quote!(owner,));
    // Conditions that read only principal fields vary no other field.
    let vary = (!candidates.is_empty()).then(|| {
        quote! {
            for (field, &value) in varied.iter().zip(values) {
                match *field {
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
            let row = server::resources::#module::insert(conn, tenant, #owner &input).await.expect("a row");
            (row.id, serde_json::to_value(&input).expect("the input serializes"))
        }
    }
}

/// The values tried on a field the conditions read: every enum value; both booleans; the
/// integer literals and their neighbours (within the field's bounds), or 0 to 2; the string
/// literals (and strings matching `like` patterns) that fit the field, and a string that is
/// none of them. `None` for a field that
/// cannot vary this way (another type, or unique: the rows would collide).
fn values(
    resource: &Resource,
    field: &Field,
    literals: &[serde_json::Value],
    api: &Ident,
) -> Option<Vec<(serde_json::Value, TokenStream)>> {
    if field.unique {
        return None;
    }
    let values = match &field.ty {
        FieldType::Enum { variants, .. } => {
            let module = ident(&resource.ident);
            let ety = enum_type(field)?;
            variants
                .iter()
                .enumerate()
                .map(|(i, v)| (v.value.clone().into(), quote!(#api::#module::#ety::ALL[#i])))
                .collect()
        }
        FieldType::Bool => vec![(true.into(), quote!(true)), (false.into(), quote!(false))],
        FieldType::Int => {
            let mut numbers: Vec<i64> = Vec::new();
            for literal in literals.iter().filter_map(serde_json::Value::as_i64) {
                for n in [
                    literal.checked_sub(1),
                    Some(literal),
                    literal.checked_add(1),
                ] {
                    numbers.extend(n);
                }
            }
            if numbers.is_empty() {
                numbers = vec![0, 1, 2];
            }
            // i64::MIN has no literal of its own (its magnitude is out of range).
            let within = |n: &i64| {
                *n != i64::MIN
                    && field.min.is_none_or(|min| *n >= min)
                    && field.max.is_none_or(|max| *n <= i64::from(max))
            };
            let mut kept: Vec<i64> = Vec::new();
            for n in numbers.into_iter().filter(within) {
                if !kept.contains(&n) && kept.len() < MAX_VALUES {
                    kept.push(n);
                }
            }
            kept.into_iter()
                .map(|n| {
                    let magnitude = Literal::u64_unsuffixed(n.unsigned_abs());
                    let rust = if n < 0 {
                        quote!(-#magnitude)
                    } else {
                        quote!(#magnitude)
                    };
                    (n.into(), rust)
                })
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
            let mut texts: Vec<String> = literals
                .iter()
                .filter_map(serde_json::Value::as_str)
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
                .find(|text| fits(text) && !texts.contains(text))?;
            texts.push(other);
            texts
                .into_iter()
                .map(|text| (text.clone().into(), quote!(#text.to_owned())))
                .collect()
        }
        _ => return None,
    };
    Some(values)
}

/// The loop over [`condition_checks`]' cases, in the role × action test.
pub fn condition_loop() -> TokenStream {
    quote! {
        for case in CONDITIONS {
            for (caller, own, values, expected) in case.calls {
                counter += 1;
                let owner = if *own { caller } else { "someone-else" };
                let mut conn = db.pool.acquire().await.expect("a connection");
                let (row, input) = insert_varied(&mut conn, case.resource, tenant, owner, counter, &ids, case.varied, values).await;
                drop(conn);
                let token = signed(&dev::claims(caller, tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
                let path = case.path.replace("{id}", &row.to_string());
                let (status, _) = send(&app, case.method, &path, &token, case.body.then_some(input)).await;
                assert_eq!(status.as_u16(), *expected, "{} by {caller} on a row of theirs: {own}, values {values:?} of {:?}", case.id, case.varied);
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

/// The fields a condition reads on the row (by their Cedar attribute name), if it reads
/// only enum, bool, int, string, text, email and principal fields and only `sub` and `roles`
/// of the caller.
fn read_fields<'a>(resource: &'a Resource, condition: &str) -> Option<Vec<&'a Field>> {
    if condition.contains("resource[")
        || condition.contains("principal[")
        || condition.contains("context")
    {
        return None;
    }
    let names = |prefix: &str| -> Vec<String> {
        condition
            .match_indices(prefix)
            .map(|(at, _)| {
                condition[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    };
    if names("principal.")
        .iter()
        .any(|n| n != "sub" && n != "roles")
    {
        return None;
    }
    let mut fields: Vec<&Field> = Vec::new();
    for name in names("resource.") {
        let field = resource.fields.iter().find(|f| f.json == name)?;
        if !matches!(
            field.ty,
            FieldType::Enum { .. }
                | FieldType::Principal
                | FieldType::Bool
                | FieldType::Int
                | FieldType::String
                | FieldType::Text
                | FieldType::Email
        ) {
            return None;
        }
        if !fields.iter().any(|f| f.json == field.json) {
            fields.push(field);
        }
    }
    Some(fields)
}

/// The condition of an action the checks can call: not public, with roles, on a row.
fn checkable(action: &Action) -> Option<&str> {
    let condition = action.condition.as_deref()?;
    (action.public.is_none()
        && !action.roles.is_empty()
        && matches!(
            action.kind,
            ActionKind::Read | ActionKind::Update | ActionKind::Delete | ActionKind::Custom(_)
        ))
    .then_some(condition)
}

/// One value a varied field takes in a row.
#[derive(Clone)]
enum Choice {
    /// The index of one of the field's values.
    Value(usize),
    /// A principal field: the caller, or someone else.
    Caller(bool),
}

fn action_case(
    resource: &Resource,
    action: &Action,
    condition: &Condition,
    reads_principal: bool,
    varied: &[&Candidates],
) -> Option<TokenStream> {
    // The row's principal fields all take the inserting subject's name, so they vary
    // together: the caller's, or someone else's.
    let mut rows: Vec<Vec<Choice>> = if reads_principal {
        vec![vec![Choice::Caller(true)], vec![Choice::Caller(false)]]
    } else {
        vec![Vec::new()]
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
        if rows.len() * action.roles.len() > MAX_CALLS {
            return None;
        }
    }
    let key = super::tests::ids_key(resource);
    let id = format!("{}.{}", resource.name, action.name);
    let (method, path) = (action.method.as_str(), action.path.as_str());
    let success: u16 = if action.kind == ActionKind::Delete {
        204
    } else {
        200
    };
    // One line per call: the caller, whether the row is the caller's, the values (by index
    // into each varied field's values), the expected status.
    let mut cases = Vec::new();
    let (mut holds, mut fails) = (false, false);
    for role in &action.roles {
        let subject = format!("{role}-true");
        for row in &rows {
            let mut attrs = serde_json::Map::new();
            let mut own = false;
            let mut indexes = Vec::new();
            let mut fields = varied.iter();
            for choice in row {
                match choice {
                    Choice::Caller(is_caller) => own = *is_caller,
                    Choice::Value(index) => {
                        let candidates = fields.next()?;
                        let (value, _) = &candidates.values[*index];
                        attrs.insert(candidates.field.json.clone(), value.clone());
                        indexes.push(*index);
                    }
                }
            }
            let owner = if own {
                subject.as_str()
            } else {
                "someone-else"
            };
            for field in resource
                .fields
                .iter()
                .filter(|f| f.ty == FieldType::Principal)
            {
                attrs.insert(field.json.clone(), owner.into());
            }
            let allowed = condition
                .holds(&subject, &[role.as_str()], serde_json::Value::Object(attrs))
                .ok()?;
            holds |= allowed;
            fails |= !allowed;
            let expected: u16 = if allowed { success } else { 403 };
            cases.push(quote!((#subject, #own, &[#(#indexes),*], #expected)));
        }
    }
    if !(holds && fails) {
        return None;
    }
    let names: Vec<&str> = varied.iter().map(|c| c.field.name.as_str()).collect();
    let body = action.kind == ActionKind::Update;
    Some(quote! {
        ConditionCase { id: #id, resource: #key, method: #method, path: #path, body: #body, varied: &[#(#names),*], calls: &[#(#cases),*] }
    })
}
