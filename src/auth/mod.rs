//! Who is calling: JWTs with a role (`patient`, `nurse`, `operator`), checked at every route and
//! at the WebSocket upgrade.
//!
//! Accepted ways to present a token (see `docs/protocol.md`): an `Authorization: Bearer` header,
//! or a `Sec-WebSocket-Protocol` entry `bearer.<token>` for browsers, which cannot set headers on
//! a WebSocket. A query parameter is not accepted: URLs end up in proxy logs.

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

/// Signs and checks tokens with one HS256 secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
}

impl TokenKeys {
    pub fn hs256(secret: &str, issuer: &str, audience: &str) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Mints a token (development and tests).
    ///
    /// # Errors
    /// Signing failed.
    pub fn mint(&self, subject: &str, role: Role, lifetime: Duration) -> Result<String, AuthError> {
        let exp = now_unix() + lifetime.as_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            exp,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| AuthError::Sign(error.to_string()))
    }

    /// Checks signature, issuer, audience and expiry.
    ///
    /// # Errors
    /// Expired or otherwise invalid tokens.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
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
}
