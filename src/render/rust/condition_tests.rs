//! The generated checks of the spec's conditions: for each conditional action of a tenant
//! resource whose condition reads only enum and principal fields of the row (and the caller's
//! `sub` and `roles`), rows with every combination of those fields, called by a member of each
//! allowed role. The expected outcome of each call comes from Cedar evaluating the condition
//! here, at generation time ([`crate::policy::condition_holds`]), not from the policies the
//! server loads; an action is tested only when some call is allowed and some refused, so each
//! condition meets a row where it holds and one where it fails.

use super::{enum_type, ident};
use crate::model::{ActionKind, App, Field, FieldType, Resource};
use proc_macro2::{Ident, TokenStream};
use quote::quote;

/// Above this many rows per action the combinations are not enumerated.
const MAX_CALLS: usize = 64;

/// The calls, spliced into the role × action test after its writes (which seeded a row of
/// every resource, so references have rows to point to). Its members `{role}-true` call.
pub fn condition_cases(app: &App, api: &Ident) -> Vec<TokenStream> {
    app.resources
        .iter()
        .filter(|r| !r.global)
        .flat_map(|resource| {
            resource
                .actions
                .iter()
                .map(move |action| (resource, action))
        })
        .filter_map(|(resource, action)| action_case(app, resource, action, api))
        .collect()
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

fn action_case(
    app: &App,
    resource: &Resource,
    action: &crate::model::Action,
    api: &Ident,
) -> Option<TokenStream> {
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
    let module = ident(&resource.ident);
    let sample = super::tests::sample(app, resource, api, quote!(n));
    let id = format!("{}.{}", resource.name, action.name);
    let (method, path) = (action.method.as_str(), action.path.as_str());
    let success: u16 = if action.kind == ActionKind::Delete {
        204
    } else {
        200
    };
    // One line per call: the caller, whether the row is the caller's, the enum values (by
    // index into each varied field's values), the expected status.
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
            let allowed = crate::policy::condition_holds(
                condition,
                &subject,
                &[role.as_str()],
                serde_json::Value::Object(attrs),
            )
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
    let sets = fields.iter().enumerate().map(|(k, field)| {
        let f = ident(&field.ident);
        let ety = enum_type(field);
        let value = quote!(#api::#module::#ety::ALL[values[#k]]);
        if field.optional || field.default.is_some() {
            quote!(input.#f = Some(#value);)
        } else {
            quote!(input.#f = #value;)
        }
    });
    let subject_arg = resource
        .fields
        .iter()
        .any(|f| f.ty == FieldType::Principal)
        .then(|| quote!(if *own { caller } else { "someone-else" },));
    // The row as written keeps the values the condition reads.
    let body = if action.kind == ActionKind::Update {
        quote!(Some(
            serde_json::to_value(&input).expect("the input serializes")
        ))
    } else {
        quote!(None)
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    Some(quote! {
        {
            let cases: &[(&str, bool, &[usize], u16)] = &[#(#cases),*];
            let varied: &[&str] = &[#(#names),*];
            for (caller, own, values, expected) in cases {
                counter += 1;
                let n = counter;
                #[allow(unused_mut)]
                let mut input = #sample;
                #(#sets)*
                let mut conn = db.pool.acquire().await.expect("a connection");
                let row = server::resources::#module::insert(&mut conn, tenant, #subject_arg &input).await.expect("a row");
                drop(conn);
                let token = signed(&dev::claims(caller, tenant.id(), &all_scopes(), &["mfa"], identity::now(), 60));
                let path = #path.replace("{id}", &row.id.to_string());
                let (status, _) = send(&app, #method, &path, &token, #body).await;
                assert_eq!(status.as_u16(), *expected, "{} by {caller} on a row of theirs: {own}, values {:?} of {:?}", #id, values, varied);
            }
        }
    })
}
