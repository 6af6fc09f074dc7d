//! The server's `oidc` module: the issuer's discovery document and keys, fetched over HTTPS
//! with verified certificates and never from a private address, and the key source the
//! guard verifies tokens with (refreshed on an unknown key id, rate-limited). It takes
//! nothing from the spec: the issuer comes from `identity`.

use proc_macro2::TokenStream;
use quote::quote;

/// The `oidc` module of the server crate.
pub fn oidc_module() -> TokenStream {
    quote! {
        //! The identity provider over the network. In production the server reads the
        //! issuer's OpenID Connect discovery document at start, refuses to start unless it
        //! advertises PKCE `S256`, and fetches the keys it names; a token signed with a key id
        //! it does not know makes it fetch the keys again, at most once per
        //! [`REFRESH_INTERVAL`].
        //!
        //! Every fetch is HTTPS with a verified certificate, without redirects, within a size
        //! and time limit, and only to public addresses: a name that resolves to a loopback,
        //! private, link-local or otherwise internal address is refused (no SSRF), and the
        //! connection goes to the address that was checked.

        use crate::identity::{Keys, Token, ISSUER};
        use std::net::{IpAddr, SocketAddr};
        use std::sync::{Mutex, RwLock};
        use std::time::{Duration, Instant};

        /// The shortest time between two fetches of the issuer's keys.
        pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
        /// Keys held this long are fetched again before the next verification, so that a key
        /// the issuer withdrew (one that leaked, say) stops being trusted within it even while
        /// tokens keep naming it. Should the fetch fail, the keys held stay in use (logged),
        /// up to [`MAX_KEY_LIFE`].
        pub const MAX_KEY_AGE: Duration = Duration::from_secs(600);
        /// Keys not fetched again for this long are no longer trusted: whoever keeps the
        /// service from the issuer's keys (to keep a withdrawn one in use) stops every token
        /// instead. Longer than any access token lives.
        pub const MAX_KEY_LIFE: Duration = Duration::from_secs(3600);
        /// The largest document fetched.
        const MAX_BODY: usize = 1 << 20;

        /// An error with its causes (reqwest's own message leaves out why a request failed,
        /// such as an address the resolver refused).
        fn causes(error: &dyn std::error::Error) -> String {
            let mut text = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }

        /// Whether the service may connect to `ip`: a globally routable unicast address.
        pub fn is_public(ip: IpAddr) -> bool {
            match ip {
                IpAddr::V4(v4) => {
                    let [a, b, c, _] = v4.octets();
                    !(v4.is_unspecified()
                        || v4.is_loopback()
                        || v4.is_private()
                        || v4.is_link_local()
                        || v4.is_broadcast()
                        || v4.is_documentation()
                        || v4.is_multicast()
                        || a == 0
                        || a >= 240
                        || (a == 100 && (64..128).contains(&b))
                        || (a == 198 && (b == 18 || b == 19))
                        || (a == 192 && b == 0 && c == 0))
                }
                IpAddr::V6(v6) => {
                    if let Some(v4) = v6.to_ipv4_mapped() {
                        return is_public(IpAddr::V4(v4));
                    }
                    let segments = v6.segments();
                    // NAT64 (64:ff9b::/96) reaches the IPv4 address it embeds.
                    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                        let [_, _, _, _, _, _, hi, lo] = segments;
                        let v4 = std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
                        return is_public(IpAddr::V4(v4));
                    }
                    // 6to4 (2002::/16) reaches the IPv4 address it embeds too.
                    if segments[0] == 0x2002 {
                        let v4 = std::net::Ipv4Addr::from((u32::from(segments[1]) << 16) | u32::from(segments[2]));
                        return is_public(IpAddr::V4(v4));
                    }
                    !(v6.is_unspecified()
                        || v6.is_loopback()
                        // IPv4-compatible (::/96) and IPv4-translated (::ffff:0:0:0/96) forms.
                        || segments[..5] == [0, 0, 0, 0, 0]
                        || segments[..6] == [0, 0, 0, 0, 0xffff, 0]
                        // Local-use NAT64 (64:ff9b:1::/48) and Teredo (2001::/32), whose
                        // IPv4 addresses are not plain to see.
                        || segments[..3] == [0x64, 0xff9b, 1]
                        || segments[..2] == [0x2001, 0]
                        || v6.is_multicast()
                        || v6.is_unique_local()
                        || v6.is_unicast_link_local()
                        || (segments[0] & 0xffc0) == 0xfec0
                        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
                        || segments[..4] == [0x100, 0, 0, 0])
                }
            }
        }

        /// A resolver that gives the HTTP client only the public addresses of a name.
        struct PublicOnly {
            allow_loopback: bool,
        }

        impl reqwest::dns::Resolve for PublicOnly {
            fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
                let host = name.as_str().to_owned();
                let allow_loopback = self.allow_loopback;
                Box::pin(async move {
                    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 443)).await?
                        .filter(|a| is_public(a.ip()) || (allow_loopback && a.ip().is_loopback()))
                        .collect();
                    if addrs.is_empty() {
                        return Err(format!("`{host}` has no public address").into());
                    }
                    let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
                    Ok(addrs)
                })
            }
        }

        /// Fetches JSON documents for the service: HTTPS only, certificates verified, no
        /// redirects, public addresses only.
        #[derive(Clone, Debug)]
        pub struct Fetcher {
            client: reqwest::Client,
            allow_loopback: bool,
        }

        impl Fetcher {
            /// The production fetcher: the platform's certificate roots, public addresses only.
            pub fn public() -> Result<Self, String> {
                Self::build(reqwest::Client::builder(), false)
            }

            /// A fetcher that trusts only `roots` (DER certificates) and, when
            /// `allow_loopback`, loopback addresses too, with names pinned to addresses by
            /// `overrides`: for tests, which serve on loopback with a certificate authority of
            /// their own.
            pub fn with_roots(roots: &[Vec<u8>], allow_loopback: bool, overrides: &[(&str, SocketAddr)]) -> Result<Self, String> {
                let certificates = roots
                    .iter()
                    .map(|der| reqwest::Certificate::from_der(der))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("a root certificate: {e}"))?;
                let mut builder = reqwest::Client::builder().tls_certs_only(certificates);
                for (name, addr) in overrides {
                    builder = builder.resolve(name, *addr);
                }
                Self::build(builder, allow_loopback)
            }

            fn build(builder: reqwest::ClientBuilder, allow_loopback: bool) -> Result<Self, String> {
                let client = builder
                    .https_only(true)
                    // A proxy from the environment (`HTTPS_PROXY`) would resolve and reach
                    // the target itself, past the public-address check below.
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(10))
                    .dns_resolver(PublicOnly { allow_loopback })
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
                Ok(Fetcher { client, allow_loopback })
            }

            /// GETs `url` and parses its JSON body.
            pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
                let body = self.get(url).await?;
                serde_json::from_slice(&body).map_err(|e| format!("`{url}` is not JSON: {e}"))
            }

            /// GETs `url`: its body, as text.
            pub async fn get_text(&self, url: &str) -> Result<String, String> {
                let body = self.get(url).await?;
                String::from_utf8(body).map_err(|_| format!("`{url}` is not text"))
            }

            async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
                let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
                if parsed.scheme() != "https" {
                    return Err(format!("`{url}` is not an HTTPS URL"));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(format!("`{url}` carries credentials"));
                }
                // An address written into the URL never meets the resolver: check it here.
                let host = parsed.host_str().ok_or_else(|| format!("`{url}` names no host"))?;
                if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()
                    && !(is_public(ip) || (self.allow_loopback && ip.is_loopback()))
                {
                    return Err(format!("`{url}` is not a public address"));
                }
                let mut response = self.client.get(parsed).send().await.map_err(|e| format!("`{url}`: {}", causes(&e)))?;
                if !response.status().is_success() {
                    return Err(format!("`{url}` answered {}", response.status()));
                }
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| format!("`{url}`: {e}"))? {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(format!("`{url}` sent more than {MAX_BODY} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(body)
            }
        }

        /// Reads the issuer's discovery document: it must name the issuer exactly, advertise
        /// PKCE `S256` and give an HTTPS `jwks_uri`, which is returned.
        pub async fn discover(fetcher: &Fetcher, issuer: &str) -> Result<String, String> {
            let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
            let document = fetcher.get_json(&url).await?;
            if document.get("issuer").and_then(serde_json::Value::as_str) != Some(issuer) {
                return Err(format!("the discovery document at `{url}` is for another issuer"));
            }
            let pkce = document
                .get("code_challenge_methods_supported")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|methods| methods.iter().any(|m| m.as_str() == Some("S256")));
            if !pkce {
                return Err(format!("the issuer does not advertise PKCE `S256` (code_challenge_methods_supported at `{url}`); refusing to start"));
            }
            let jwks_uri = document
                .get("jwks_uri")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("the discovery document at `{url}` names no `jwks_uri`"))?;
            if !jwks_uri.starts_with("https://") {
                return Err(format!("`jwks_uri` `{jwks_uri}` is not HTTPS"));
            }
            Ok(jwks_uri.to_owned())
        }

        /// Where keys come from again when a token names one the service does not know.
        #[derive(Debug)]
        struct Remote {
            fetcher: Fetcher,
            jwks_uri: String,
            last_fetch: Mutex<Option<Instant>>,
            /// When the keys held were fetched.
            loaded: Mutex<Instant>,
            max_age: Duration,
            max_life: Duration,
        }

        /// The keys the guard verifies tokens with.
        #[derive(Debug)]
        pub struct KeySource {
            keys: RwLock<Keys>,
            remote: Option<Remote>,
        }

        impl From<Keys> for KeySource {
            fn from(keys: Keys) -> Self {
                KeySource { keys: RwLock::new(keys), remote: None }
            }
        }

        impl KeySource {
            /// The issuer's keys, found through its discovery document (which must advertise
            /// PKCE `S256`).
            pub async fn from_issuer(fetcher: Fetcher, issuer: &str) -> Result<Self, String> {
                let jwks_uri = discover(&fetcher, issuer).await?;
                let keys = Keys::from_jwks(&fetcher.get_json(&jwks_uri).await?.to_string())?;
                Ok(KeySource {
                    keys: RwLock::new(keys),
                    // The first unknown key id may fetch at once (keys rotated at start-up).
                    remote: Some(Remote { fetcher, jwks_uri, last_fetch: Mutex::new(None), loaded: Mutex::new(Instant::now()), max_age: MAX_KEY_AGE, max_life: MAX_KEY_LIFE }),
                })
            }

            /// The same, keeping keys at most `max_age` (tests).
            pub fn with_max_key_age(mut self, max_age: Duration) -> Self {
                if let Some(remote) = &mut self.remote {
                    remote.max_age = max_age;
                }
                self
            }

            /// The same, trusting keys not fetched again for at most `max_life` (tests).
            pub fn with_max_key_life(mut self, max_life: Duration) -> Self {
                if let Some(remote) = &mut self.remote {
                    remote.max_life = max_life;
                }
                self
            }

            /// The keys this process may trust: none without an issuer in the spec; a local
            /// JWKS file only with `APP_ENV=development`; else the issuer's, over HTTPS.
            pub async fn from_environment() -> Result<Self, String> {
                if !crate::identity::CONFIGURED {
                    return Ok(Keys::none().into());
                }
                let development = std::env::var("APP_ENV").is_ok_and(|e| e == "development");
                if development && let Ok(path) = std::env::var("DEV_JWKS_FILE") {
                    let json = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
                    return Ok(Keys::from_jwks(&json)?.into());
                }
                Self::from_issuer(Fetcher::public()?, ISSUER).await
            }

            /// Verifies `token` with the keys held now.
            pub fn verify_now(&self, token: &str, now: u64) -> Result<Token, &'static str> {
                match self.keys.read() {
                    Ok(keys) => keys.verify(token, now),
                    Err(_) => Err("keys unavailable"),
                }
            }

            /// Verifies `token`; when it names a key the service does not know, fetches the
            /// issuer's keys again (at most once per [`REFRESH_INTERVAL`]) and tries once more.
            /// Keys older than [`MAX_KEY_AGE`] are fetched again first.
            pub async fn verify(&self, token: &str, now: u64) -> Result<Token, &'static str> {
                let age = |remote: &Remote| remote.loaded.lock().map_or(Duration::MAX, |at| at.elapsed());
                if self.remote.as_ref().is_some_and(|remote| age(remote) >= remote.max_age) {
                    self.refresh().await;
                }
                if let Some(remote) = &self.remote
                    && age(remote) > remote.max_life
                {
                    tracing::error!(jwks_uri = remote.jwks_uri.as_str(), "issuer keys not fetched for too long; tokens refused");
                    return Err("issuer keys too old");
                }
                match self.verify_now(token, now) {
                    Err("unknown key") if self.refresh().await => self.verify_now(token, now),
                    other => other,
                }
            }

            /// Fetches the keys again unless that happened within [`REFRESH_INTERVAL`];
            /// whether new keys were loaded.
            pub async fn refresh(&self) -> bool {
                let Some(remote) = &self.remote else { return false };
                {
                    let Ok(mut last) = remote.last_fetch.lock() else { return false };
                    if last.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
                        return false;
                    }
                    *last = Some(Instant::now());
                }
                let fetched = match remote.fetcher.get_json(&remote.jwks_uri).await {
                    Ok(json) => Keys::from_jwks(&json.to_string()),
                    Err(error) => Err(error),
                };
                match fetched {
                    Ok(keys) => match self.keys.write() {
                        Ok(mut held) => {
                            *held = keys;
                            if let Ok(mut loaded) = remote.loaded.lock() {
                                *loaded = Instant::now();
                            }
                            tracing::info!(jwks_uri = remote.jwks_uri.as_str(), "issuer keys refreshed");
                            true
                        }
                        Err(_) => false,
                    },
                    Err(error) => {
                        tracing::warn!(error = error.as_str(), "issuer keys not refreshed");
                        false
                    }
                }
            }
        }
    }
}
