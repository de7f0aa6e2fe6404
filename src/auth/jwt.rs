//! HS256 access tokens: issued at login and refresh, verified strictly at the edge of every
//! request. Each names its session (`sid`), which the server holds against current state on every
//! use; refresh tokens are not JWTs at all (see [`crate::auth::sessions`]).

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub const ISSUER: &str = "tenantgraph";
pub const AUDIENCE: &str = "tenantgraph-api";

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenKind {
    Platform,
    TenantUser,
}

/// What a token may be used for. Only access tokens are JWTs today; the claim is required, so a
/// JWT minted for any other use can never pass as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    Access,
}

/// The claims of a tenantgraph token. Tenant tokens also carry the tenant (`tid`, `schema`) and
/// the user's roles when the token was issued (for clients to read); the server holds the
/// session, the tenant and the user's current roles against the database on every use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: Uuid,
    pub kind: TokenKind,
    /// The session the token belongs to; ending the session ends the token.
    pub sid: Uuid,
    pub typ: TokenUse,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    /// Tokens that verified lately, by their whole text: a client sends the same token with
    /// every request until it expires, and looking it up costs a fraction of decoding it and
    /// checking its signature. Only tokens that verified are kept, and the expiry is checked
    /// again on every use; what a token's session and user may do is looked up per request
    /// after this either way.
    verified: moka::sync::Cache<String, Arc<Claims>>,
}

/// How many verified tokens are remembered (a token's text is some 400 bytes).
const VERIFIED_TOKENS: u64 = 4096;

/// A freshly signed token.
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

impl JwtKeys {
    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        // One algorithm only: a token naming any other (`none`, RS256 with the secret as a public
        // key, ...) is refused before its signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        // `sid` and `typ` are required by the shape of `Claims` itself.
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        JwtKeys {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            ttl,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs an access token for `sub` in session `sid`; `tenant` is `(tenant id, schema,
    /// roles)` for tenant users.
    pub fn issue(
        &self,
        kind: TokenKind,
        sub: Uuid,
        sid: Uuid,
        tenant: Option<(Uuid, String, Vec<String>)>,
    ) -> AppResult<IssuedToken> {
        let now = chrono::Utc::now().timestamp();
        let (tid, schema, roles) = match tenant {
            Some((tid, schema, roles)) => (Some(tid), Some(schema), roles),
            None => (None, None, Vec::new()),
        };
        let claims = Claims {
            sub,
            kind,
            sid,
            typ: TokenUse::Access,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            jti: Uuid::new_v4(),
            tid,
            schema,
            roles,
        };
        self.sign(&claims)
            .map(|token| IssuedToken { token, claims })
    }

    /// Signs arbitrary claims; tests use it to forge expired or foreign tokens.
    pub fn sign(&self, claims: &Claims) -> AppResult<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AppError::internal(anyhow::anyhow!("signing a token failed: {e}")))
    }

    /// Verifies signature, algorithm, expiry, issuer and audience, and the shape of the claims.
    pub fn verify(&self, token: &str) -> AppResult<Arc<Claims>> {
        let invalid = || AppError::Unauthenticated("invalid or expired token".into());
        if let Some(claims) = self.verified.get(token) {
            // The same test as the decoder's: expired `leeway` seconds after `exp`.
            let expired =
                claims.exp < chrono::Utc::now().timestamp() - self.validation.leeway as i64;
            return if expired { Err(invalid()) } else { Ok(claims) };
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| invalid())?
            .claims;
        let tenant_claims_present = claims.tid.is_some() && claims.schema.is_some();
        let shape_ok = match claims.kind {
            TokenKind::Platform => claims.tid.is_none() && claims.schema.is_none(),
            TokenKind::TenantUser => tenant_claims_present,
        };
        if !shape_ok {
            return Err(invalid());
        }
        let claims = Arc::new(claims);
        self.verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&secret.to_owned().into(), Duration::from_secs(600))
    }

    #[test]
    fn a_token_verifies_with_its_own_key_only() {
        let ours = keys("0123456789abcdef0123456789abcdef");
        let theirs = keys("fedcba9876543210fedcba9876543210");
        let issued = ours
            .issue(TokenKind::Platform, Uuid::new_v4(), Uuid::new_v4(), None)
            .unwrap();
        assert_eq!(*ours.verify(&issued.token).unwrap(), issued.claims);
        assert!(theirs.verify(&issued.token).is_err());
    }

    #[test]
    fn expired_tokens_and_wrong_audiences_are_refused() {
        let keys = keys("0123456789abcdef0123456789abcdef");
        let mut claims = keys
            .issue(TokenKind::Platform, Uuid::new_v4(), Uuid::new_v4(), None)
            .unwrap()
            .claims;
        claims.exp = chrono::Utc::now().timestamp() - 60;
        assert!(keys.verify(&keys.sign(&claims).unwrap()).is_err());

        claims.exp = chrono::Utc::now().timestamp() + 60;
        claims.aud = "someone-else".into();
        assert!(keys.verify(&keys.sign(&claims).unwrap()).is_err());
    }

    #[test]
    fn a_jwt_without_a_session_or_for_another_use_is_refused() {
        let keys = keys("0123456789abcdef0123456789abcdef");
        let claims = keys
            .issue(TokenKind::Platform, Uuid::new_v4(), Uuid::new_v4(), None)
            .unwrap()
            .claims;
        let mut json = serde_json::to_value(&claims).unwrap();
        let sign = |json: &serde_json::Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), json, &keys.encoding).unwrap()
        };
        assert!(keys.verify(&sign(&json)).is_ok());
        json["typ"] = "refresh".into();
        assert!(keys.verify(&sign(&json)).is_err());
        json["typ"] = "access".into();
        json.as_object_mut().unwrap().remove("sid");
        assert!(keys.verify(&sign(&json)).is_err());
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let keys = keys("0123456789abcdef0123456789abcdef");
        let issued = keys
            .issue(TokenKind::Platform, Uuid::new_v4(), Uuid::new_v4(), None)
            .unwrap();
        assert!(keys.verify(&issued.token).is_ok());
        assert!(keys.verified.contains_key(&issued.token));
        // As if the clock had passed its expiry since it was remembered.
        let mut aged = issued.claims.clone();
        aged.exp = chrono::Utc::now().timestamp() - keys.validation.leeway as i64 - 1;
        keys.verified.insert(issued.token.clone(), Arc::new(aged));
        assert!(keys.verify(&issued.token).is_err());
    }
}
