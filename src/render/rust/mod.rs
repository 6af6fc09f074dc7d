//! Rust output: token streams built with `quote`, printed with `prettyplease`. (The `format`
//! stage then runs rustfmt so the files match what engineers' tools produce.)

pub mod api;
pub mod audit_log;
pub mod bench;
pub mod client;
pub mod condition_tests;
pub mod grants;
pub mod members;
pub mod oidc;
pub mod server;
pub mod store;
pub mod tests;

use crate::model::{Field, FieldType, Resource};
use crate::render::escape;
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

/// An identifier from a name already made safe by `model::names`.
pub fn ident(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

/// A crate name as it is written in paths (`ledgerly-api` → `ledgerly_api`).
pub fn crate_ident(crate_name: &str) -> Ident {
    ident(&crate_name.replace('-', "_"))
}

/// A `#[doc]` attribute from untrusted spec text.
pub fn doc(text: &str) -> TokenStream {
    let text = format!(" {}", escape::rust_doc(text));
    quote! { #[doc = #text] }
}

/// A `#![doc]` attribute (module docs) from untrusted spec text.
pub fn inner_doc(text: &str) -> TokenStream {
    let text = format!(" {}", escape::rust_doc(text));
    quote! { #![doc = #text] }
}

/// Optional doc attribute.
pub fn doc_opt(text: Option<&str>) -> TokenStream {
    match text {
        // Blank once escaped (invisible characters are dropped): no empty doc comment.
        Some(t) if !escape::rust_doc(t).trim().is_empty() => doc(t),
        _ => TokenStream::new(),
    }
}

/// Prints a file's tokens. The tokens come from this generator, so failing to parse them is
/// a bug in bulwark, reported with the file it happened in.
pub fn print(path: &str, tokens: TokenStream) -> Result<String, crate::render::RenderError> {
    let file =
        syn::parse2::<syn::File>(tokens).map_err(|e| crate::render::RenderError::Tokens {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    Ok(space_items(&prettyplease::unparse(&file)))
}

/// A digest of a file's header and tokens as they print (spans, which do not print, are left
/// out): the key of its finished text in [`crate::render::Printed`].
pub fn digest(header: &str, tokens: &TokenStream) -> String {
    use sha2::Digest;
    /// Feeds what is written into the hash, without building the text.
    struct Feed(sha2::Sha256);
    impl std::fmt::Write for Feed {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            self.0.update(text.as_bytes());
            Ok(())
        }
    }
    let mut feed = Feed(sha2::Sha256::new());
    feed.0.update(header.as_bytes());
    let _ = std::fmt::Write::write_fmt(&mut feed, format_args!("{tokens}"));
    hex::encode(feed.0.finalize())
}

/// Puts a blank line between top-level items (prettyplease prints none; rustfmt keeps what
/// it finds), so generated files read like hand-written ones.
fn space_items(printed: &str) -> String {
    let mut out = String::with_capacity(printed.len() + printed.len() / 16);
    let mut previous: Option<&str> = None;
    for line in printed.lines() {
        if let Some(prev) = previous {
            let top = |l: &str| !l.is_empty() && !l.starts_with(char::is_whitespace);
            let item_ended =
                !prev.starts_with("//") && (prev.ends_with('}') || prev.ends_with(';'));
            let closes = line.starts_with(['}', ')', ']']);
            let uses = prev.starts_with("use ") && line.starts_with("use ");
            let after_module_docs = prev.starts_with("//!") && !line.starts_with("//!");
            if top(prev) && top(line) && ((item_ended && !closes && !uses) || after_module_docs) {
                out.push('\n');
            }
        }
        out.push_str(line);
        out.push('\n');
        previous = Some(line);
    }
    out
}

/// The request body type of a resource (`InvoiceInput`; `Self_` gives `SelfInput`).
pub fn input_type(resource: &Resource) -> Ident {
    ident(&format!(
        "{}Input",
        resource.type_name.trim_end_matches('_')
    ))
}

/// The enum type of an enum field (named in lowering, clear of the resource's own types).
pub fn enum_type(field: &Field) -> Option<Ident> {
    match &field.ty {
        FieldType::Enum { type_name, .. } => Some(ident(type_name)),
        _ => None,
    }
}

/// The Rust type of a field's value (without `Option`), as seen from outside the api crate
/// when `api` is given, or from inside it.
pub fn value_type(resource: &Resource, field: &Field, api: Option<&Ident>) -> TokenStream {
    let root = match api {
        Some(api) => quote!(#api),
        None => quote!(crate),
    };
    match &field.ty {
        FieldType::String | FieldType::Text | FieldType::Email | FieldType::Principal => {
            quote!(String)
        }
        FieldType::Int => quote!(i64),
        FieldType::Bool => quote!(bool),
        FieldType::Decimal => quote!(rust_decimal::Decimal),
        FieldType::Money => quote!(#root::Money),
        FieldType::Timestamp => quote!(chrono::DateTime<chrono::Utc>),
        FieldType::Date => quote!(chrono::NaiveDate),
        FieldType::Uuid | FieldType::Reference { .. } => quote!(uuid::Uuid),
        FieldType::Enum { .. } => {
            let module = ident(&resource.ident);
            let ty = enum_type(field);
            quote!(#root::#module::#ty)
        }
    }
}

/// Whether a field is taken from the request (principal fields come from the caller).
pub fn is_input(field: &Field) -> bool {
    field.ty != FieldType::Principal
}

/// Whether the input may leave the field out.
pub fn input_optional(field: &Field) -> bool {
    field.optional || field.default.is_some()
}
