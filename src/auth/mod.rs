//! Who is calling: JWTs with a role (`patient`, `nurse`, `operator`), checked at every route and
//! at the WebSocket upgrade.
//!
//! Accepted ways to present a token (see `docs/protocol.md`): an `Authorization: Bearer` header,
//! or a `Sec-WebSocket-Protocol` entry `bearer.<token>` for browsers, which cannot set headers on
//! a WebSocket. A query parameter is not accepted: URLs end up in proxy logs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Nurse,
    Operator,
}

/// The claims we issue and accept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "no token: send `Authorization: Bearer <token>` or a `bearer.<token>` WebSocket protocol"
    )]
    Missing,
    #[error("the token has expired; get a new one and reconnect")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("this needs the {needed:?} role; the token has {had:?}")]
    WrongRole { needed: Role, had: Role },
    #[error("could not sign a token: {0}")]
    Sign(String),
}

/// Which signature tokens carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenAlgorithm {
    /// A shared secret (the identity provider and Carebridge both hold it).
    Hs256,
    /// An RSA key pair: Carebridge holds only the public key.
    Rs256,
    /// A P-256 key pair: Carebridge holds only the public key.
    Es256,
}

impl TokenAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

/// Where Carebridge runs: development accepts a printed development secret; production refuses
/// to start without real key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

/// The shortest HS256 secret production accepts (RFC 7518 asks for at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "production needs real key material: set auth.secret_file (HS256) or auth.algorithm = \"rs256\"/\"es256\" with auth.public_key_file; auth.dev_secret is for development only"
    )]
    NoProductionKey,
    #[error(
        "the HS256 secret in {path} is {length} bytes; production needs at least {MIN_SECRET_BYTES}"
    )]
    WeakSecret { path: PathBuf, length: usize },
    #[error("auth.algorithm = \"{algorithm}\" needs auth.public_key_file (a PEM public key)")]
    NoPublicKey { algorithm: &'static str },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable {algorithm} key: {detail}")]
    BadKey {
        path: PathBuf,
        algorithm: &'static str,
        detail: String,
    },
    #[error(
        "no token key: set auth.dev_secret for development, or auth.secret_file / auth.public_key_file"
    )]
    Missing,
}

/// The `[auth]` settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// HS256 secret for development tokens. Printed at start-up when empty (a random one is made).
    /// Refused in production.
    pub dev_secret: String,
    pub issuer: String,
    pub audience: String,
    pub algorithm: TokenAlgorithm,
    /// HS256: a file holding the shared secret (a mounted secret).
    pub secret_file: Option<PathBuf>,
    /// RS256/ES256: the PEM public key tokens are verified with.
    pub public_key_file: Option<PathBuf>,
    /// RS256/ES256: the PEM private key, only where Carebridge mints tokens itself
    /// (`carebridge token`, tests); production verifies only.
    pub private_key_file: Option<PathBuf>,
    /// Also accept `?access_token=` on the socket URL. Off: URLs end up in proxy and access
    /// logs. For clients that can set neither a header nor a sub-protocol.
    pub allow_query_token: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            dev_secret: String::new(),
            issuer: "carebridge".into(),
            audience: "carebridge".into(),
            algorithm: TokenAlgorithm::Hs256,
            secret_file: None,
            public_key_file: None,
            private_key_file: None,
            allow_query_token: false,
        }
    }
}

/// Signs (where a signing key is held) and checks tokens.
#[derive(Clone)]
pub struct TokenKeys {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
}

fn read_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

impl TokenKeys {
    pub fn hs256(secret: &str, issuer: &str, audience: &str) -> Self {
        Self {
            algorithm: Algorithm::HS256,
            encoding: Some(EncodingKey::from_secret(secret.as_bytes())),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// The keys the settings name, refusing development material in production.
    ///
    /// # Errors
    /// Missing, unreadable, weak or malformed key material.
    pub fn from_settings(
        settings: &AuthSettings,
        environment: Environment,
    ) -> Result<Self, KeyError> {
        let production = environment == Environment::Production;
        let named = |algorithm: TokenAlgorithm| match algorithm {
            TokenAlgorithm::Hs256 => "hs256",
            TokenAlgorithm::Rs256 => "rs256",
            TokenAlgorithm::Es256 => "es256",
        };
        let (encoding, decoding) = match settings.algorithm {
            TokenAlgorithm::Hs256 => {
                let secret = match (&settings.secret_file, production) {
                    (Some(path), _) => {
                        let bytes = read_key(path)?;
                        let secret = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
                        if production && secret.len() < MIN_SECRET_BYTES {
                            return Err(KeyError::WeakSecret {
                                path: path.clone(),
                                length: secret.len(),
                            });
                        }
                        secret
                    }
                    (None, true) => return Err(KeyError::NoProductionKey),
                    (None, false) if settings.dev_secret.is_empty() => {
                        return Err(KeyError::Missing);
                    }
                    (None, false) => settings.dev_secret.as_bytes().to_vec(),
                };
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            algorithm => {
                let path = settings
                    .public_key_file
                    .as_ref()
                    .ok_or(KeyError::NoPublicKey {
                        algorithm: named(algorithm),
                    })?;
                let bad = |path: &Path, error: jsonwebtoken::errors::Error| KeyError::BadKey {
                    path: path.to_owned(),
                    algorithm: named(algorithm),
                    detail: error.to_string(),
                };
                let pem = read_key(path)?;
                let decoding = match algorithm {
                    TokenAlgorithm::Rs256 => DecodingKey::from_rsa_pem(&pem),
                    _ => DecodingKey::from_ec_pem(&pem),
                }
                .map_err(|error| bad(path, error))?;
                let encoding = match &settings.private_key_file {
                    Some(private) => {
                        let pem = read_key(private)?;
                        Some(
                            match algorithm {
                                TokenAlgorithm::Rs256 => EncodingKey::from_rsa_pem(&pem),
                                _ => EncodingKey::from_ec_pem(&pem),
                            }
                            .map_err(|error| bad(private, error))?,
                        )
                    }
                    None => None,
                };
                (encoding, decoding)
            }
        };
        if production && !settings.dev_secret.is_empty() {
            return Err(KeyError::NoProductionKey);
        }
        Ok(Self {
            algorithm: settings.algorithm.jwt(),
            encoding,
            decoding,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// Mints a token (development, tools and tests).
    ///
    /// # Errors
    /// No signing key is held, or signing failed.
    pub fn mint(&self, subject: &str, role: Role, lifetime: Duration) -> Result<String, AuthError> {
        let encoding = self.encoding.as_ref().ok_or_else(|| {
            AuthError::Sign("no signing key: set auth.private_key_file to mint tokens".into())
        })?;
        let exp = now_unix() + lifetime.as_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            exp,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, encoding)
            .map_err(|error| AuthError::Sign(error.to_string()))
    }

    /// Checks signature, algorithm, issuer, audience and expiry.
    ///
    /// # Errors
    /// Expired or otherwise invalid tokens.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        // One algorithm only: a token may not choose how it is checked.
        let mut validation = Validation::new(self.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(error.to_string()),
            })
    }
}

/// Finds the token in a request: the headers, or (only when `allow_query` is set) an
/// `access_token` query parameter.
///
/// # Errors
/// No token in any accepted place.
pub fn token_from_request(
    request: &actix_web::HttpRequest,
    allow_query: bool,
) -> Result<String, AuthError> {
    match token_from_headers(request.headers()) {
        Err(AuthError::Missing) if allow_query => request
            .query_string()
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
            .filter(|token| !token.is_empty())
            .map(str::to_owned)
            .ok_or(AuthError::Missing),
        found => found,
    }
}

/// Finds the token in a request's headers.
///
/// # Errors
/// No token in any accepted place.
pub fn token_from_headers(
    headers: &actix_web::http::header::HeaderMap,
) -> Result<String, AuthError> {
    if let Some(value) = headers.get(actix_web::http::header::AUTHORIZATION)
        && let Ok(text) = value.to_str()
        && let Some(token) = text.strip_prefix("Bearer ")
    {
        return Ok(token.trim().to_owned());
    }
    if let Some(value) = headers.get(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        && let Ok(text) = value.to_str()
    {
        for entry in text.split(',') {
            if let Some(token) = entry.trim().strip_prefix("bearer.") {
                return Ok(token.to_owned());
            }
        }
    }
    Err(AuthError::Missing)
}

/// Checks a role: operators may do what nurses do only where a route says so.
///
/// # Errors
/// The claims carry another role.
pub fn require(claims: &Claims, role: Role) -> Result<(), AuthError> {
    if claims.role == role {
        Ok(())
    } else {
        Err(AuthError::WrongRole {
            needed: role,
            had: claims.role,
        })
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_their_role() {
        let keys = TokenKeys::hs256("secret", "carebridge", "carebridge");
        let token = keys
            .mint("p1", Role::Patient, Duration::from_secs(60))
            .expect("mint");
        let claims = keys.verify(&token).expect("valid");
        assert_eq!(claims.role, Role::Patient);
        assert!(require(&claims, Role::Nurse).is_err());
    }

    #[test]
    fn tokens_from_another_secret_are_refused() {
        let ours = TokenKeys::hs256("secret", "carebridge", "carebridge");
        let theirs = TokenKeys::hs256("other", "carebridge", "carebridge");
        let token = theirs
            .mint("p1", Role::Patient, Duration::from_secs(60))
            .expect("mint");
        assert!(matches!(ours.verify(&token), Err(AuthError::Invalid(_))));
    }

    fn fixture(name: &str) -> Option<PathBuf> {
        Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/keys")
                .join(name),
        )
    }

    fn pair(algorithm: TokenAlgorithm, stem: &str) -> AuthSettings {
        AuthSettings {
            algorithm,
            public_key_file: fixture(&format!("{stem}-public.pem")),
            private_key_file: fixture(&format!("{stem}-private.pem")),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn rs256_and_es256_tokens_verify_with_the_public_key_alone() {
        for (algorithm, stem) in [
            (TokenAlgorithm::Rs256, "rs256"),
            (TokenAlgorithm::Es256, "es256"),
        ] {
            let signer = TokenKeys::from_settings(&pair(algorithm, stem), Environment::Production)
                .expect("a key pair");
            let token = signer
                .mint("n1", Role::Nurse, Duration::from_secs(60))
                .expect("mint");
            let verifier = TokenKeys::from_settings(
                &AuthSettings {
                    private_key_file: None,
                    ..pair(algorithm, stem)
                },
                Environment::Production,
            )
            .expect("a public key");
            assert_eq!(verifier.verify(&token).expect("valid").role, Role::Nurse);
            assert!(matches!(
                verifier.mint("x", Role::Nurse, Duration::from_secs(1)),
                Err(AuthError::Sign(_))
            ));
        }
    }

    #[test]
    fn a_token_signed_with_another_algorithm_is_refused() {
        let rs = TokenKeys::from_settings(
            &pair(TokenAlgorithm::Rs256, "rs256"),
            Environment::Development,
        )
        .expect("rs256");
        let es = TokenKeys::from_settings(
            &pair(TokenAlgorithm::Es256, "es256"),
            Environment::Development,
        )
        .expect("es256");
        let hs = TokenKeys::hs256("secret", "carebridge", "carebridge");
        let from_es = es
            .mint("p1", Role::Patient, Duration::from_secs(60))
            .expect("mint");
        let from_hs = hs
            .mint("p1", Role::Patient, Duration::from_secs(60))
            .expect("mint");
        assert!(rs.verify(&from_es).is_err());
        assert!(rs.verify(&from_hs).is_err());
    }

    #[test]
    fn production_refuses_development_and_weak_key_material() {
        let development = AuthSettings {
            dev_secret: "printed-at-start-up".into(),
            ..AuthSettings::default()
        };
        assert!(TokenKeys::from_settings(&development, Environment::Development).is_ok());
        assert!(matches!(
            TokenKeys::from_settings(&development, Environment::Production),
            Err(KeyError::NoProductionKey)
        ));
        assert!(matches!(
            TokenKeys::from_settings(&AuthSettings::default(), Environment::Production),
            Err(KeyError::NoProductionKey)
        ));
        let dir = tempfile::tempdir().expect("temp dir");
        let weak = dir.path().join("secret");
        std::fs::write(&weak, "short\n").expect("write");
        let settings = AuthSettings {
            secret_file: Some(weak.clone()),
            ..AuthSettings::default()
        };
        assert!(matches!(
            TokenKeys::from_settings(&settings, Environment::Production),
            Err(KeyError::WeakSecret { length: 5, .. })
        ));
        std::fs::write(&weak, "0123456789abcdef0123456789abcdef\n").expect("write");
        assert!(TokenKeys::from_settings(&settings, Environment::Production).is_ok());
        assert!(matches!(
            TokenKeys::from_settings(
                &AuthSettings {
                    algorithm: TokenAlgorithm::Es256,
                    ..AuthSettings::default()
                },
                Environment::Production
            ),
            Err(KeyError::NoPublicKey { algorithm: "es256" })
        ));
        let wrong = AuthSettings {
            public_key_file: fixture("rs256-public.pem"),
            ..pair(TokenAlgorithm::Es256, "es256")
        };
        assert!(matches!(
            TokenKeys::from_settings(&wrong, Environment::Production),
            Err(KeyError::BadKey { .. })
        ));
    }
}
