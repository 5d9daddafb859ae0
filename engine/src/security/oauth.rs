//! The JWT validator behind OAUTHBEARER: a signed token (RS*/PS* with an RSA key, ES* with an EC
//! key, EdDSA with an Ed25519 key) whose signature checks out against the configured public
//! key, that has not expired (`exp` is required), whose `nbf` has passed, and whose `iss` and
//! `aud` match `sasl.oauthbearer.expected.issuer` and `.audience` when those are set. The user
//! is the `sasl.oauthbearer.sub.claim.name` claim (`sub` by default).

use std::path::Path;

use anyhow::{Context, Result};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::sasl::Authenticated;

pub struct OAuthValidator {
    key: DecodingKey,
    validation: Validation,
    sub_claim: String,
}

impl OAuthValidator {
    pub fn new(key_path: &Path, issuer: Option<String>, audience: Option<Vec<String>>, sub_claim: String, skew_seconds: u64) -> Result<OAuthValidator> {
        let pem = std::fs::read(key_path).with_context(|| format!("cannot read the OAUTHBEARER public key {}", key_path.display()))?;
        let (key, algorithms) = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
            (k, vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512])
        } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
            (k, vec![Algorithm::ES256, Algorithm::ES384])
        } else if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
            (k, vec![Algorithm::EdDSA])
        } else {
            anyhow::bail!("{} is not a PEM public key (RSA, EC or Ed25519)", key_path.display());
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = skew_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(issuer) = issuer {
            validation.set_issuer(&[issuer]);
        }
        match audience {
            Some(audience) => validation.set_audience(&audience),
            None => validation.validate_aud = false,
        }
        Ok(OAuthValidator { key, validation, sub_claim })
    }

    /// Checks a token as sent in OAUTHBEARER's `auth=` field (`Bearer <jwt>`).
    pub fn validate(&self, token: &str) -> Result<Authenticated, String> {
        let jwt = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        let data = jsonwebtoken::decode::<serde_json::Value>(jwt, &self.key, &self.validation).map_err(|e| e.to_string())?;
        let user = data.claims.get(&self.sub_claim).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        let Some(user) = user else {
            return Err(format!("the token has no {:?} claim naming the user", self.sub_claim));
        };
        let expires_ms = data.claims.get("exp").and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))).map(|s| s.saturating_mul(1000));
        Ok(Authenticated { user: user.to_string(), credential_expires_ms: expires_ms })
    }
}
