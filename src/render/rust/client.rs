//! The `<app>-client` crate: a typed reqwest client with one method per operation.

use super::{crate_ident, doc, ident, input_type};
use crate::model::{ActionKind, App};
use crate::render::{FileSet, RenderError};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

pub fn render_client(
    app: &App,
    files: &mut FileSet,
    dir: &str,
    api_crate: &str,
) -> Result<(), RenderError> {
    let api = crate_ident(api_crate);
    let mut accessors = Vec::new();
    let mut handles = Vec::new();
    for resource in &app.resources {
        let module = ident(&resource.ident);
        let ty = ident(&resource.type_name);
        let input = input_type(resource);
        let calls = format_ident!("{}Calls", resource.type_name);
        let accessor_doc = doc(&format!("Operations on `{}`.", resource.name));
        accessors.push(quote! {
            #accessor_doc
            pub fn #module(&self) -> #calls<'_> {
                #calls { client: self }
            }
        });
        let mut methods = Vec::new();
        for action in &resource.actions {
            let name = ident(&action.ident);
            let method = action.method.as_str();
            let scope = action
                .scope
                .as_ref()
                .map(|s| format!(" (scope `{s}`)"))
                .unwrap_or_default();
            let mdoc = doc(&format!("`{method} {}`{scope}.", action.path));
            let base = action
                .path
                .split("/{id}")
                .next()
                .unwrap_or(&action.path)
                .to_owned();
            let tail = action.path.split("/{id}").nth(1).unwrap_or("").to_owned();
            methods.push(match &action.kind {
                ActionKind::Create => quote! {
                    #mdoc
                    pub async fn #name(&self, input: &#api::#module::#input) -> Result<#api::#module::#ty, Error> {
                        self.client.send(self.client.request(reqwest::Method::POST, #base).json(input)).await
                    }
                },
                ActionKind::List => quote! {
                    #mdoc
                    pub async fn #name(&self, query: &#api::ListQuery) -> Result<#api::Page<#api::#module::#ty>, Error> {
                        self.client.send(self.client.request(reqwest::Method::GET, #base).query(query)).await
                    }
                },
                ActionKind::Read => quote! {
                    #mdoc
                    pub async fn #name(&self, id: uuid::Uuid) -> Result<#api::#module::#ty, Error> {
                        self.client.send(self.client.request(reqwest::Method::GET, &format!("{}/{id}", #base))).await
                    }
                },
                ActionKind::Update => quote! {
                    #mdoc
                    pub async fn #name(&self, id: uuid::Uuid, input: &#api::#module::#input) -> Result<#api::#module::#ty, Error> {
                        self.client.send(self.client.request(reqwest::Method::PUT, &format!("{}/{id}", #base)).json(input)).await
                    }
                },
                ActionKind::Delete => quote! {
                    #mdoc
                    pub async fn #name(&self, id: uuid::Uuid) -> Result<(), Error> {
                        let response = self.client.request(reqwest::Method::DELETE, &format!("{}/{id}", #base)).send().await?;
                        check(response).await.map(drop)
                    }
                },
                ActionKind::Custom(_) => quote! {
                    #mdoc
                    pub async fn #name(&self, id: uuid::Uuid) -> Result<#api::#module::#ty, Error> {
                        self.client.send(self.client.request(reqwest::Method::POST, &format!("{}/{id}{}", #base, #tail))).await
                    }
                },
            });
        }
        let handle_doc = doc(&format!(
            "The operations on `{}`, from `Client::{}`.",
            resource.name, resource.ident
        ));
        handles.push(quote! {
            #handle_doc
            #[derive(Clone, Copy, Debug)]
            pub struct #calls<'a> {
                client: &'a Client,
            }

            impl #calls<'_> {
                #(#methods)*
            }
        });
    }
    let title = super::inner_doc(&format!("Typed client of the `{}` API.", app.name));
    let (builtin_accessor, builtin) = builtin_calls(app, &api);
    let tokens = quote! {
        #![forbid(unsafe_code)]
        #title

        pub use #api as types;

        /// An access token; never printed.
        #[derive(Clone)]
        pub struct Token(String);

        impl Token {
            /// Wraps a bearer access token.
            pub fn new(token: impl Into<String>) -> Self {
                Token(token.into())
            }
        }

        impl std::fmt::Debug for Token {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Token(<redacted>)")
            }
        }

        /// A problem+json body returned by the service.
        #[derive(Clone, Debug, serde::Deserialize)]
        pub struct Problem {
            /// Short summary.
            pub title: String,
            /// HTTP status.
            pub status: u16,
            /// Details, when given.
            #[serde(default)]
            pub detail: Option<String>,
            /// Invalid fields, when given.
            #[serde(default)]
            pub errors: Vec<#api::FieldError>,
        }

        /// What can go wrong calling the service.
        #[derive(Debug)]
        pub enum Error {
            /// The request did not complete (connection, TLS, decoding).
            Transport(reqwest::Error),
            /// The service answered with a problem.
            Api(Problem),
        }

        impl std::fmt::Display for Error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    Error::Transport(e) => write!(f, "request failed: {e}"),
                    Error::Api(p) => write!(f, "{} ({})", p.title, p.status),
                }
            }
        }

        impl std::error::Error for Error {}

        impl From<reqwest::Error> for Error {
            fn from(e: reqwest::Error) -> Self {
                Error::Transport(e)
            }
        }

        /// The client.
        #[derive(Clone, Debug)]
        pub struct Client {
            http: reqwest::Client,
            base_url: String,
            token: Option<Token>,
        }

        impl Client {
            /// A client for the service at `base_url` (e.g. `https://api.example.com`).
            pub fn new(base_url: impl Into<String>) -> Self {
                Client { http: reqwest::Client::new(), base_url: base_url.into().trim_end_matches('/').to_owned(), token: None }
            }

            /// Sends `token` as the bearer access token.
            pub fn with_token(mut self, token: Token) -> Self {
                self.token = Some(token);
                self
            }

            fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
                let request = self.http.request(method, format!("{}{path}", self.base_url));
                match &self.token {
                    Some(token) => request.bearer_auth(&token.0),
                    None => request,
                }
            }

            async fn send<T: serde::de::DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, Error> {
                let response = check(request.send().await?).await?;
                Ok(response.json().await?)
            }

            #(#accessors)*
            #builtin_accessor
        }

        #(#handles)*

        #builtin

        async fn check(response: reqwest::Response) -> Result<reqwest::Response, Error> {
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let problem = response.json::<Problem>().await.unwrap_or(Problem {
                title: "unexpected response".into(),
                status,
                detail: None,
                errors: Vec::new(),
            });
            Err(Error::Api(problem))
        }
    };
    files.insert_rust(&format!("{dir}/src/lib.rs"), tokens)
}

/// The calls of the built-in routes (memberships, sessions), in a module of their own so
/// that no resource's names can meet them.
fn builtin_calls(app: &App, api: &proc_macro2::Ident) -> (TokenStream, TokenStream) {
    let builtins = app.builtin_operations();
    if builtins.is_empty() {
        return (TokenStream::new(), TokenStream::new());
    }
    let path = |id: &str| {
        builtins.iter().find(|b| b.id == id).map(|b| {
            b.path
                .split("/{subject}")
                .next()
                .unwrap_or(&b.path)
                .to_owned()
        })
    };
    let mut methods = Vec::new();
    if let Some(base) = path("membership.list") {
        methods.push(quote! {
            /// Lists the tenant's members (built-in `membership.list`).
            pub async fn list_memberships(&self, query: &#api::memberships::MembershipQuery) -> Result<#api::memberships::MembershipPage, Error> {
                self.client.send(self.client.request(reqwest::Method::GET, #base).query(query)).await
            }

            /// Sets a member's roles, adding the member (built-in `membership.grant`).
            pub async fn grant(&self, subject: &str, grant: &#api::memberships::MembershipGrant) -> Result<#api::memberships::Membership, Error> {
                let path = format!("{}/{}", #base, segment(subject));
                self.client.send(self.client.request(reqwest::Method::PUT, &path).json(grant)).await
            }

            /// Removes a member (built-in `membership.remove`).
            pub async fn remove_membership(&self, subject: &str) -> Result<(), Error> {
                let path = format!("{}/{}", #base, segment(subject));
                let response = self.client.request(reqwest::Method::DELETE, &path).send().await?;
                check(response).await.map(drop)
            }
        });
    }
    if let Some(base) = path("domain.add") {
        methods.push(quote! {
            /// Lists the tenant's domains (built-in `domain.list`).
            pub async fn list_domains(&self) -> Result<#api::memberships::DomainList, Error> {
                self.client.send(self.client.request(reqwest::Method::GET, #base)).await
            }

            /// Claims a domain; publish the answer's token at its `proof_url` (built-in `domain.add`).
            pub async fn add_domain(&self, claim: &#api::memberships::DomainClaim) -> Result<#api::memberships::Domain, Error> {
                self.client.send(self.client.request(reqwest::Method::POST, #base).json(claim)).await
            }

            /// Asks the service to fetch a claimed domain's proof (built-in `domain.verify`).
            pub async fn verify_domain(&self, domain: &str) -> Result<#api::memberships::Domain, Error> {
                let path = format!("{}/{}/verify", #base, segment(domain));
                self.client.send(self.client.request(reqwest::Method::POST, &path)).await
            }

            /// Gives up a domain (built-in `domain.remove`).
            pub async fn remove_domain(&self, domain: &str) -> Result<(), Error> {
                let path = format!("{}/{}", #base, segment(domain));
                let response = self.client.request(reqwest::Method::DELETE, &path).send().await?;
                check(response).await.map(drop)
            }
        });
    }
    if let Some(path) = path("session.revoke") {
        methods.push(quote! {
            /// Ends a subject's sessions (built-in `session.revoke`).
            pub async fn revoke_sessions(&self, revocation: &#api::memberships::SessionRevocation) -> Result<(), Error> {
                let response = self.client.request(reqwest::Method::POST, #path).json(revocation).send().await?;
                check(response).await.map(drop)
            }
        });
    }
    let accessor = quote! {
        /// The built-in operations: memberships and sessions.
        pub fn builtin(&self) -> builtin::BuiltinCalls<'_> {
            builtin::BuiltinCalls { client: self }
        }
    };
    let module = quote! {
        /// The built-in operations of the service.
        pub mod builtin {
            use super::{check, Client, Error};

            /// The built-in operations, from `Client::builtin`.
            #[derive(Clone, Copy, Debug)]
            pub struct BuiltinCalls<'a> {
                pub(crate) client: &'a Client,
            }

            impl BuiltinCalls<'_> {
                #(#methods)*
            }

            /// A subject as one path segment: everything but RFC 3986's unreserved
            /// characters percent-encoded.
            fn segment(subject: &str) -> String {
                let mut out = String::with_capacity(subject.len());
                for byte in subject.bytes() {
                    if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                        out.push(char::from(byte));
                    } else {
                        out.push_str(&format!("%{byte:02X}"));
                    }
                }
                out
            }
        }
    };
    (accessor, module)
}
