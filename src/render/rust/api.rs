//! The `<app>-api` crate: request and response types shared by server and client, with the
//! input validation the spec's field constraints ask for.

use super::{
    doc, doc_opt, enum_type, ident, inner_doc, input_optional, input_type, is_input, value_type,
};
use crate::model::{ActionKind, App, DeprecatedVersion, Field, FieldType, Resource};
use crate::render::{FileSet, RenderError};
use crate::versions::Served;
use proc_macro2::TokenStream;
use quote::quote;

pub fn render_api(app: &App, files: &mut FileSet, dir: &str) -> Result<(), RenderError> {
    let modules: Vec<_> = app.resources.iter().map(|r| ident(&r.ident)).collect();
    let currencies: Vec<&str> = app
        .payments
        .as_ref()
        .map(|p| p.currencies.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let currency_check = if currencies.is_empty() {
        quote! { code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) }
    } else {
        quote! { [#(#currencies),*].contains(&code) }
    };
    let builtins = !app.builtin_operations().is_empty();
    let memberships_mod = builtins.then(|| {
        quote!(
            pub mod memberships;
        )
    });
    // Earlier versions whose bodies differ somewhere have types of their own.
    let previous: Vec<(&DeprecatedVersion, Vec<(&Resource, Served<'_>)>)> = app
        .deprecated_versions
        .iter()
        .map(|v| {
            let reshaped = app
                .resources
                .iter()
                .filter_map(|r| v.serves(r).filter(|s| s.fields.is_some()).map(|s| (r, s)))
                .collect::<Vec<_>>();
            (v, reshaped)
        })
        .filter(|(_, reshaped)| !reshaped.is_empty())
        .collect();
    let version_mods = previous.iter().map(|(v, _)| ident(&v.version));
    let lib = quote! {
        #![forbid(unsafe_code)]
        //! Request and response types of the API, shared by the server and the typed client.

        #(pub mod #modules;)*
        #memberships_mod
        #(pub mod #version_mods;)*

        use serde::{Deserialize, Serialize};

        /// An amount of money in integer minor units of an ISO 4217 currency (cents for EUR).
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Money {
            /// Amount in minor units.
            pub amount_minor: i64,
            /// ISO 4217 code.
            pub currency: String,
        }

        impl Money {
            /// Whether the currency is one this service accepts.
            pub fn currency_accepted(code: &str) -> bool {
                #currency_check
            }
        }

        /// One page of a keyset-paginated list.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct Page<T> {
            /// The rows of this page, in id order.
            pub items: Vec<T>,
            /// Pass as `after` to get the next page; absent on the last page. A page may hold
            /// fewer items than asked for, even none, and still have one after it: rows the
            /// caller may not see are left out, and one request reads a bounded number.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub next_after: Option<uuid::Uuid>,
        }

        /// Query parameters of list operations.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ListQuery {
            /// Return rows after this id.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub after: Option<uuid::Uuid>,
            /// Page size, 1 to 100 (default 50).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub limit: Option<u32>,
        }

        /// A field that failed validation.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub struct FieldError {
            /// The JSON property.
            pub field: String,
            /// What is wrong with it.
            pub message: String,
        }

        /// Checks shared by the generated `validate` methods.
        pub mod check {
            use super::FieldError;

            /// Length in characters within bounds.
            pub fn length(errors: &mut Vec<FieldError>, field: &str, value: &str, min: Option<i64>, max: Option<usize>) {
                let count = value.chars().count();
                if let Some(max) = max && count > max {
                    errors.push(FieldError { field: field.into(), message: format!("at most {max} characters") });
                }
                if let Some(min) = min && (count as i64) < min {
                    errors.push(FieldError { field: field.into(), message: format!("at least {min} characters") });
                }
            }

            /// A plausible email address (one `@`, a dot in the domain, no spaces).
            pub fn email(errors: &mut Vec<FieldError>, field: &str, value: &str) {
                let ok = value.len() <= 254
                    && !value.chars().any(char::is_whitespace)
                    && value.split_once('@').is_some_and(|(local, domain)| {
                        !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@')
                    });
                if !ok {
                    errors.push(FieldError { field: field.into(), message: "not an email address".into() });
                }
            }

            /// An accepted currency.
            pub fn money(errors: &mut Vec<FieldError>, field: &str, value: &super::Money) {
                if !super::Money::currency_accepted(&value.currency) {
                    errors.push(FieldError { field: field.into(), message: format!("currency `{}` is not accepted", value.currency) });
                }
            }

            /// A decimal the policies can read exactly: Cedar's decimals have four places and
            /// the range of an `i64` of ten-thousandths.
            pub fn decimal(errors: &mut Vec<FieldError>, field: &str, value: &rust_decimal::Decimal) {
                if value.normalize().scale() > 4 {
                    errors.push(FieldError { field: field.into(), message: "at most four decimal places".into() });
                } else if value.abs() > rust_decimal::Decimal::new(i64::MAX, 4) {
                    errors.push(FieldError { field: field.into(), message: "out of range".into() });
                }
            }

            /// An integer within bounds.
            pub fn int(errors: &mut Vec<FieldError>, field: &str, value: i64, min: Option<i64>, max: Option<i64>) {
                if let Some(min) = min && value < min {
                    errors.push(FieldError { field: field.into(), message: format!("at least {min}") });
                }
                if let Some(max) = max && value > max {
                    errors.push(FieldError { field: field.into(), message: format!("at most {max}") });
                }
            }
        }
    };
    files.insert_rust(&format!("{dir}/src/lib.rs"), lib)?;
    if builtins {
        files.insert_rust(
            &format!("{dir}/src/memberships.rs"),
            super::members::api_module(),
        )?;
    }
    for resource in &app.resources {
        let tokens = resource_module(resource);
        files.insert_rust(&format!("{dir}/src/{}.rs", resource.ident), tokens)?;
    }
    for (version, reshaped) in &previous {
        let modules = reshaped.iter().map(|(r, _)| ident(&r.ident));
        let title = inner_doc(&format!(
            "The bodies of API version `{}` (deprecated, sunset {}) where they differ from the current version's: its property names, without the fields added since.",
            version.version, version.sunset_day
        ));
        files.insert_rust(
            &format!("{dir}/src/{}.rs", version.version),
            quote! { #title #(pub mod #modules;)* },
        )?;
        for (resource, served) in reshaped {
            let tokens = previous_module(version, resource, served);
            files.insert_rust(
                &format!("{dir}/src/{}/{}.rs", version.version, resource.ident),
                tokens,
            )?;
        }
    }
    Ok(())
}

/// The fields every row has after its own.
fn timestamps() -> TokenStream {
    quote! {
        /// When it was created.
        pub created_at: chrono::DateTime<chrono::Utc>,
        /// When it was last changed.
        pub updated_at: chrono::DateTime<chrono::Utc>,
    }
}

/// Whether a field's value type is `Copy` (clippy refuses a `clone` of one).
fn is_copy(ty: &FieldType) -> bool {
    !matches!(
        ty,
        FieldType::String
            | FieldType::Text
            | FieldType::Email
            | FieldType::Principal
            | FieldType::Money
    )
}

/// A resource's types in an earlier version whose fields differ from the current ones, with
/// their conversions from and to the current types.
fn previous_module(
    version: &DeprecatedVersion,
    resource: &Resource,
    served: &Served<'_>,
) -> TokenStream {
    let fields = served.fields.as_deref().unwrap_or_default();
    let name = ident(&resource.type_name);
    let input = input_type(resource);
    let module = ident(&resource.ident);
    let title = inner_doc(&format!(
        "`{}` as API version `{}` serves it.",
        resource.name, version.version
    ));
    let mut out_fields = Vec::new();
    let mut out_convert = Vec::new();
    let mut in_fields = Vec::new();
    let mut in_given = Vec::new();
    for (field, json) in fields {
        let f = ident(&field.ident);
        let ty = value_type(resource, field, None);
        let fdoc = doc_opt(field.description.as_deref());
        let out_ty = if field.optional {
            quote!(Option<#ty>)
        } else {
            ty.clone()
        };
        let rename = (field.ident != *json).then(|| quote!(#[serde(rename = #json)]));
        out_fields.push(quote! { #fdoc #rename pub #f: #out_ty, });
        out_convert.push(quote! { #f: current.#f, });
        if !is_input(field) {
            continue;
        }
        if input_optional(field) {
            in_fields.push(quote! {
                #fdoc
                #rename
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub #f: Option<#ty>,
            });
        } else {
            in_fields.push(quote! { #fdoc #rename pub #f: #ty, });
        }
        in_given.push(quote! { #f: self.#f, });
    }
    // The current input's fields this version does not have: left to their defaults when a
    // row is created, kept as stored when one is updated.
    let missing: Vec<&Field> = resource
        .fields
        .iter()
        .filter(|f| is_input(f) && !fields.iter().any(|(g, _)| g.name == f.name))
        .collect();
    let creates = served.actions.iter().any(|a| a.kind == ActionKind::Create);
    let updates = served.actions.iter().any(|a| a.kind == ActionKind::Update);
    let into_new = creates.then(|| {
        let none = missing.iter().map(|f| {
            let f = ident(&f.ident);
            quote!(#f: None,)
        });
        quote! {
            /// The current input of a create: the fields this version does not have are
            /// left out, so their defaults apply.
            pub fn into_new(self) -> crate::#module::#input {
                crate::#module::#input { #(#in_given)* #(#none)* }
            }
        }
    });
    let into_current = updates.then(|| {
        let kept = missing.iter().map(|field| {
            let f = ident(&field.ident);
            let value = if is_copy(&field.ty) {
                quote!(stored.#f)
            } else {
                quote!(stored.#f.clone())
            };
            if input_optional(field) && !field.optional {
                quote!(#f: Some(#value),)
            } else {
                quote!(#f: #value,)
            }
        });
        quote! {
            /// The current input of an update of `stored`: the fields this version does not
            /// have keep their stored values.
            pub fn into_current(self, stored: &crate::#module::#name) -> crate::#module::#input {
                crate::#module::#input { #(#in_given)* #(#kept)* }
            }
        }
    });
    let version_name = &version.version;
    let timestamps = timestamps();
    let struct_doc = doc(&format!("`{}` in `{version_name}`.", resource.name));
    let input_doc = doc(&format!(
        "The body of a create or update request in `{version_name}`."
    ));
    quote! {
        #title

        use serde::{Deserialize, Serialize};

        #struct_doc
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct #name {
            /// Identifier.
            pub id: uuid::Uuid,
            #(#out_fields)*
            #timestamps
        }

        impl From<crate::#module::#name> for #name {
            fn from(current: crate::#module::#name) -> Self {
                #name { id: current.id, #(#out_convert)* created_at: current.created_at, updated_at: current.updated_at }
            }
        }

        #input_doc
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct #input {
            #(#in_fields)*
        }

        impl #input {
            #into_new
            #into_current
        }
    }
}

fn resource_module(resource: &Resource) -> TokenStream {
    let name = ident(&resource.type_name);
    let input = input_type(resource);
    let resource_doc = doc_opt(resource.description.as_deref());
    let title = inner_doc(&format!("`{}` resource.", resource.name));
    let mut enums = Vec::new();
    let mut out_fields = Vec::new();
    let mut in_fields = Vec::new();
    let mut checks = Vec::new();
    for field in &resource.fields {
        let f = ident(&field.ident);
        let ty = value_type(resource, field, None);
        let fdoc = doc_opt(field.description.as_deref());
        if let (FieldType::Enum { variants, .. }, Some(enum_name)) = (&field.ty, enum_type(field)) {
            let idents: Vec<_> = variants.iter().map(|v| ident(&v.ident)).collect();
            let values: Vec<&str> = variants.iter().map(|v| v.value.as_str()).collect();
            let edoc = doc(&format!("Values of `{}`.", field.name));
            enums.push(quote! {
                #edoc
                #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
                pub enum #enum_name {
                    #( #[serde(rename = #values)] #idents, )*
                }

                impl #enum_name {
                    /// Every value, in spec order.
                    pub const ALL: &'static [#enum_name] = &[#(#enum_name::#idents),*];

                    /// The value as stored and sent.
                    pub fn as_str(self) -> &'static str {
                        match self { #(#enum_name::#idents => #values,)* }
                    }

                    /// Parses a stored value.
                    pub fn parse(value: &str) -> Option<Self> {
                        Self::ALL.iter().copied().find(|v| v.as_str() == value)
                    }
                }
            });
        }
        let out_ty = if field.optional {
            quote!(Option<#ty>)
        } else {
            ty.clone()
        };
        // The JSON property is the name's snake_case form, even where the Rust field had to
        // avoid a keyword (`type` → `type_`).
        let rename = (field.ident != field.json).then(|| {
            let json = &field.json;
            quote!(#[serde(rename = #json)])
        });
        let fdoc = quote!(#fdoc #rename);
        out_fields.push(quote! { #fdoc pub #f: #out_ty, });
        if !is_input(field) {
            continue;
        }
        let key = field.json.as_str();
        if input_optional(field) {
            in_fields.push(quote! {
                #fdoc
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub #f: Option<#ty>,
            });
        } else {
            in_fields.push(quote! { #fdoc pub #f: #ty, });
        }
        let min = match field.min {
            Some(m) => quote!(Some(#m)),
            None => quote!(None),
        };
        let max = match field.max {
            Some(m) => {
                let m = m as usize;
                quote!(Some(#m))
            }
            None => quote!(None),
        };
        let check = match &field.ty {
            FieldType::String | FieldType::Text => {
                Some(quote! { check::length(&mut errors, #key, value, #min, #max); })
            }
            FieldType::Email => Some(quote! {
                check::length(&mut errors, #key, value, #min, #max);
                check::email(&mut errors, #key, value);
            }),
            FieldType::Money if field.min.is_some() || field.max.is_some() => {
                let amount = format!("{key}.amount_minor");
                let max = max_value(field);
                Some(quote! {
                    check::money(&mut errors, #key, value);
                    check::int(&mut errors, #amount, value.amount_minor, #min, #max);
                })
            }
            FieldType::Money => Some(quote! { check::money(&mut errors, #key, value); }),
            FieldType::Decimal => Some(quote! { check::decimal(&mut errors, #key, value); }),
            FieldType::Int if field.min.is_some() || field.max.is_some() => {
                let max = max_value(field);
                Some(quote! { check::int(&mut errors, #key, *value, #min, #max); })
            }
            _ => None,
        };
        if let Some(check) = check {
            if input_optional(field) {
                checks.push(quote! { if let Some(value) = &self.#f { #check } });
            } else {
                checks.push(quote! { { let value = &self.#f; #check } });
            }
        }
    }
    let timestamps = timestamps();
    let check_use = (!checks.is_empty()).then(|| {
        quote!(
            use crate::check;
        )
    });
    let errors_binding = if checks.is_empty() {
        quote! { let errors: Vec<FieldError> = Vec::new(); }
    } else {
        quote! { let mut errors = Vec::new(); }
    };
    quote! {
        #title

        use serde::{Deserialize, Serialize};
        use crate::FieldError;
        #check_use

        #resource_doc
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct #name {
            /// Identifier.
            pub id: uuid::Uuid,
            #(#out_fields)*
            #timestamps
        }

        /// The body of a create or update request.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct #input {
            #(#in_fields)*
        }

        impl #input {
            /// Checks the field constraints of the spec; every failing field is reported.
            pub fn validate(&self) -> Result<(), Vec<FieldError>> {
                #errors_binding
                #(#checks)*
                if errors.is_empty() { Ok(()) } else { Err(errors) }
            }
        }

        #(#enums)*
    }
}

/// A field's `max` as the bound of a value (an int, or an amount of money in minor units).
fn max_value(field: &Field) -> TokenStream {
    match field.max {
        Some(m) => {
            let m = i64::from(m);
            quote!(Some(#m))
        }
        None => quote!(None),
    }
}
