//! The generated checks of the spec's conditions: for each conditional action of a tenant
//! resource whose condition reads only enum and principal fields of the row (and the caller's
//! `sub` and `roles`), rows with every combination of those fields, called by a member of each
//! allowed role. The expected outcome of each call comes from Cedar evaluating the condition
//! here, at generation time ([`crate::policy::Condition`]), not from the policies the
//! server loads; an action is tested only when some call is allowed and some refused, so each
//! condition meets a row where it holds and one where it fails.

use super::{enum_type, ident};
use crate::model::{ActionKind, App, Field, FieldType, Resource};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

/// Above this many rows per action the combinations are not enumerated.
const MAX_CALLS: usize = 64;

/// The condition checks, spliced into the role × action test after its writes (which seeded
/// a row of every resource, so references have rows to point to). Its members `{role}-true`
/// call. Empty when no condition of the spec can be checked this way.
pub fn condition_checks(app: &App, api: &Ident) -> TokenStream {
    let mut cases = Vec::new();
    let mut varied: Vec<(&Resource, Vec<&Field>)> = Vec::new();
    for resource in app.resources.iter().filter(|r| !r.global) {
        for action in &resource.actions {
            let Some((case, fields)) = action_case(resource, action) else {
                continue;
            };
            cases.push(case);
            match varied.iter_mut().find(|(r, _)| r.ident == resource.ident) {
                Some((_, known)) => {
                    for field in fields {
                        if !known.iter().any(|f| f.ident == field.ident) {
                            known.push(field);
                        }
                    }
                }
                None => varied.push((resource, fields)),
            }
        }
    }
    if cases.is_empty() {
        return TokenStream::new();
    }
    let inserts = varied.iter().map(|(resource, fields)| {
        let key = super::tests::ids_key(resource);
        let module = ident(&resource.ident);
        let sample = super::tests::sample_call(resource, quote!(n), quote!(ids));
        let sets = fields.iter().map(|field| {
            let name = field.name.as_str();
            let f = ident(&field.ident);
            let ety = enum_type(field);
            let value = quote!(#api::#module::#ety::ALL[value]);
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
        // Conditions that read only principal fields vary no enum field.
        let vary = (!fields.is_empty()).then(|| {
            quote! {
                for (field, &value) in varied.iter().zip(values) {
                    match *field {
                        #(#sets)*
                        other => panic!("{other} is not varied"),
                    }
                }
            }
        });
        let binding = if fields.is_empty() { quote!(input) } else { quote!(mut input) };
        quote! {
            #key => {
                let #binding = #sample;
                #vary
                let row = server::resources::#module::insert(conn, tenant, #owner &input).await.expect("a row");
                (row.id, serde_json::to_value(&input).expect("the input serializes"))
            }
        }
    });
    quote! {
        /// A conditional action and its calls: the caller, whether the row's principal fields
        /// name the caller, the index of each varied field's enum value, the status expected.
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

        /// Inserts a sample row of `resource` with the `varied` fields set to the enum values
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

/// The fields a condition reads on the row (by their Cedar attribute name), if it reads
/// only enum and principal fields and only `sub` and `roles` of the caller.
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
        if !matches!(field.ty, FieldType::Enum { .. } | FieldType::Principal) {
            return None;
        }
        if !fields.iter().any(|f| f.json == field.json) {
            fields.push(field);
        }
    }
    Some(fields)
}

/// One value a varied field takes in a row.
#[derive(Clone)]
enum Choice {
    /// The index of an enum value, and the value.
    Variant(usize, String),
    /// A principal field: the caller, or someone else.
    Caller(bool),
}

fn action_case<'a>(
    resource: &'a Resource,
    action: &crate::model::Action,
) -> Option<(TokenStream, Vec<&'a Field>)> {
    let condition = action.condition.as_deref()?;
    if action.public.is_some()
        || action.roles.is_empty()
        || !matches!(
            action.kind,
            ActionKind::Read | ActionKind::Update | ActionKind::Delete | ActionKind::Custom(_)
        )
    {
        return None;
    }
    let read = read_fields(resource, condition)?;
    // The row's principal fields all take the inserting subject's name, so they vary
    // together: the caller's, or someone else's.
    let reads_principal = read.iter().any(|f| f.ty == FieldType::Principal);
    let fields: Vec<&Field> = read
        .into_iter()
        .filter(|f| f.ty != FieldType::Principal)
        .collect();
    let mut rows: Vec<Vec<Choice>> = if reads_principal {
        vec![vec![Choice::Caller(true)], vec![Choice::Caller(false)]]
    } else {
        vec![Vec::new()]
    };
    for field in &fields {
        let FieldType::Enum { variants, .. } = &field.ty else {
            return None;
        };
        let choices: Vec<Choice> = variants
            .iter()
            .enumerate()
            .map(|(i, v)| Choice::Variant(i, v.value.clone()))
            .collect();
        rows = rows
            .into_iter()
            .flat_map(|row| {
                choices.iter().map(move |c| {
                    let mut next = row.clone();
                    next.push(c.clone());
                    next
                })
            })
            .collect();
    }
    if rows.len() * action.roles.len() > MAX_CALLS {
        return None;
    }
    let key = super::tests::ids_key(resource);
    let id = format!("{}.{}", resource.name, action.name);
    let (method, path) = (action.method.as_str(), action.path.as_str());
    let success: u16 = if action.kind == ActionKind::Delete {
        204
    } else {
        200
    };
    // One line per call: the caller, whether the row is the caller's, the enum values (by
    // index into each varied field's values), the expected status.
    let condition = crate::policy::Condition::parse(condition).ok()?;
    let mut cases = Vec::new();
    let (mut holds, mut fails) = (false, false);
    for role in &action.roles {
        let subject = format!("{role}-true");
        for row in &rows {
            let mut attrs = serde_json::Map::new();
            let mut own = false;
            let mut indexes = Vec::new();
            let mut varied = fields.iter();
            for choice in row {
                match choice {
                    Choice::Caller(is_caller) => own = *is_caller,
                    Choice::Variant(index, value) => {
                        attrs.insert(varied.next()?.json.clone(), value.clone().into());
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
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let body = action.kind == ActionKind::Update;
    Some((
        quote! {
            ConditionCase { id: #id, resource: #key, method: #method, path: #path, body: #body, varied: &[#(#names),*], calls: &[#(#cases),*] }
        },
        fields,
    ))
}
