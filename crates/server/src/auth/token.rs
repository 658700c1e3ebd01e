//! Auth tokens: etcd's two providers, chosen with `--auth-token`.
//!
//! - `simple`: an opaque random string (`<16 letters>.<raft index>`) that every member learns
//!   when the `Authenticate` entry is applied, kept in memory with a TTL that each use renews
//!   (`--auth-token-ttl`). It dies with a restart, a password change, the user's deletion or
//!   `auth disable`, as in etcd.
//! - `jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`: a signed token carrying the user
//!   name and the auth revision, valid on any member holding the public key, until `exp`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Length of the random part of a simple token (etcd's).
const SIMPLE_TOKEN_LEN: usize = 16;
/// A JWT's lifetime when the spec gives no `ttl` (etcd's default).
const JWT_DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Who a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub username: String,
    /// The auth revision the token was made at (JWT); simple tokens carry none.
    pub revision: Option<u64>,
}

pub enum TokenProvider {
    Simple(SimpleTokens),
    Jwt(JwtTokens),
}

impl TokenProvider {
    /// Parses `--auth-token`, reading the key files of a JWT spec.
    pub fn from_flag(spec: &str, ttl: Duration) -> anyhow::Result<TokenProvider> {
        let mut parts = spec.split(',');
        match parts.next().unwrap_or("") {
            "simple" => Ok(TokenProvider::Simple(SimpleTokens::new(ttl))),
            "jwt" => Ok(TokenProvider::Jwt(JwtTokens::from_options(parts)?)),
            other => anyhow::bail!("unknown token type: {other}"),
        }
    }

    /// The part of a new token chosen before the `Authenticate` entry is proposed: the random
    /// letters of a simple token (every member must store the same token), nothing for JWT.
    pub fn prefix(&self) -> String {
        match self {
            TokenProvider::Simple(_) => {
                const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
                let mut rng = rand::rng();
                (0..SIMPLE_TOKEN_LEN)
                    .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
                    .collect()
            }
            TokenProvider::Jwt(_) => String::new(),
        }
    }

    /// Makes the token for `username` when its `Authenticate` entry at `index` is applied.
    pub fn assign(
        &self,
        prefix: &str,
        index: u64,
        username: &str,
        revision: u64,
    ) -> Result<String, String> {
        match self {
            TokenProvider::Simple(s) => {
                let token = format!("{prefix}.{index}");
                s.insert(&token, username);
                Ok(token)
            }
            TokenProvider::Jwt(j) => j.sign(username, revision),
        }
    }

    /// The user a token names, if it is valid now.
    pub fn info(&self, token: &str) -> Option<TokenInfo> {
        match self {
            TokenProvider::Simple(s) => s.lookup(token).map(|username| TokenInfo {
                username,
                revision: None,
            }),
            TokenProvider::Jwt(j) => j.verify(token),
        }
    }

    /// Forgets every token of `username` (password changed, user deleted).
    pub fn invalidate_user(&self, username: &str) {
        if let TokenProvider::Simple(s) = self {
            s.tokens.lock().retain(|_, t| t.username != username);
        }
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&self) {
        if let TokenProvider::Simple(s) = self {
            s.tokens.lock().clear();
        }
    }
}

/// The raft index a simple token names (`<letters>.<index>`).
pub fn simple_token_index(token: &str) -> Option<u64> {
    let (prefix, index) = token.rsplit_once('.')?;
    if prefix.len() != SIMPLE_TOKEN_LEN {
        return None;
    }
    index.parse().ok()
}

struct SimpleToken {
    username: String,
    expires: Instant,
}

pub struct SimpleTokens {
    ttl: Duration,
    tokens: Mutex<HashMap<String, SimpleToken>>,
}

impl SimpleTokens {
    fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn insert(&self, token: &str, username: &str) {
        let mut tokens = self.tokens.lock();
        let now = Instant::now();
        // Expired tokens are dropped lazily, when a new one is made.
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(
            token.to_string(),
            SimpleToken {
                username: username.to_string(),
                expires: now + self.ttl,
            },
        );
    }

    /// The token's user; a use renews the token's TTL.
    fn lookup(&self, token: &str) -> Option<String> {
        let mut tokens = self.tokens.lock();
        let now = Instant::now();
        let t = tokens.get_mut(token)?;
        if t.expires <= now {
            tokens.remove(token);
            return None;
        }
        t.expires = now + self.ttl;
        Some(t.username.clone())
    }
}

/// A JWT's claims, in etcd's (sorted) order. A token without `exp` never expires, as in etcd;
/// one without `revision` or `username` is invalid.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    revision: u64,
    username: String,
}

pub struct JwtTokens {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

impl JwtTokens {
    fn from_options<'a>(options: impl Iterator<Item = &'a str>) -> anyhow::Result<JwtTokens> {
        let mut pub_key: Option<PathBuf> = None;
        let mut priv_key: Option<PathBuf> = None;
        let mut method = None;
        let mut ttl = JWT_DEFAULT_TTL;
        for opt in options {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("invalid jwt option {opt:?}: want key=value"))?;
            match k {
                "pub-key" => pub_key = Some(v.into()),
                "priv-key" => priv_key = Some(v.into()),
                "sign-method" => method = Some(v.to_string()),
                "ttl" => {
                    ttl = humantime::parse_duration(v)
                        .map_err(|e| anyhow::anyhow!("invalid jwt ttl {v:?}: {e}"))?
                }
                _ => anyhow::bail!("unknown jwt option {k:?}"),
            }
        }
        let method =
            method.ok_or_else(|| anyhow::anyhow!("jwt: sign-method is required (e.g. RS256)"))?;
        let algorithm: Algorithm = method
            .parse()
            .map_err(|_| anyhow::anyhow!("jwt: unsupported sign-method {method:?}"))?;
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                // A shared secret: the private key file doubles as the verification key.
                let secret = read_key(priv_key.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("jwt: {method} needs priv-key (the shared secret)")
                })?)?;
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => key_pair(
                pub_key.as_ref(),
                priv_key.as_ref(),
                EncodingKey::from_rsa_pem,
                DecodingKey::from_rsa_pem,
            )?,
            Algorithm::ES256 | Algorithm::ES384 => key_pair(
                pub_key.as_ref(),
                priv_key.as_ref(),
                EncodingKey::from_ec_pem,
                DecodingKey::from_ec_pem,
            )?,
            Algorithm::EdDSA => key_pair(
                pub_key.as_ref(),
                priv_key.as_ref(),
                EncodingKey::from_ed_pem,
                DecodingKey::from_ed_pem,
            )?,
        };
        Ok(JwtTokens {
            algorithm,
            encoding,
            decoding,
            ttl,
        })
    }

    fn sign(&self, username: &str, revision: u64) -> Result<String, String> {
        let key = self
            .encoding
            .as_ref()
            .ok_or_else(|| "auth: token signing attempted with verify-only key".to_string())?;
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.ttl)
            .as_secs();
        let claims = Claims {
            exp: Some(exp),
            revision,
            username: username.to_string(),
        };
        // Made by hand rather than with `jsonwebtoken::encode` so the header's fields come in
        // etcd's order (`alg`, then `typ`): the token's bytes are the same as etcd's.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = format!(r#"{{"alg":"{:?}","typ":"JWT"}}"#, self.algorithm);
        let claims = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
        let message = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, self.algorithm)
            .map_err(|e| e.to_string())?;
        Ok(format!("{message}.{signature}"))
    }

    fn verify(&self, token: &str) -> Option<TokenInfo> {
        let mut v = Validation::new(self.algorithm);
        v.leeway = 0;
        v.required_spec_claims = Default::default();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok()?;
        Some(TokenInfo {
            username: data.claims.username,
            revision: Some(data.claims.revision),
        })
    }
}

fn read_key(p: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| anyhow::anyhow!("jwt: reading {}: {e}", p.display()))
}

type KeyParser<K> = fn(&[u8]) -> jsonwebtoken::errors::Result<K>;

/// The verification key from `pub-key` (required) and the signing key from `priv-key`
/// (optional: a member without it verifies tokens but cannot issue them).
fn key_pair(
    pub_key: Option<&PathBuf>,
    priv_key: Option<&PathBuf>,
    encoding: KeyParser<EncodingKey>,
    decoding: KeyParser<DecodingKey>,
) -> anyhow::Result<(Option<EncodingKey>, DecodingKey)> {
    let pub_key = pub_key.ok_or_else(|| anyhow::anyhow!("jwt: pub-key is required"))?;
    let enc = match priv_key {
        Some(p) => Some(encoding(&read_key(p)?)?),
        None => None,
    };
    Ok((enc, decoding(&read_key(pub_key)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_tokens_expire_and_renew() {
        let p = TokenProvider::from_flag("simple", Duration::from_millis(300)).unwrap();
        let prefix = p.prefix();
        assert_eq!(prefix.len(), SIMPLE_TOKEN_LEN);
        let t = p.assign(&prefix, 7, "alice", 3).unwrap();
        assert_eq!(t, format!("{prefix}.7"));
        assert_eq!(p.info(&t).unwrap().username, "alice");
        assert!(p.info("nope.1").is_none());
        p.invalidate_user("alice");
        assert!(p.info(&t).is_none());
        let t = p.assign(&p.prefix(), 8, "bob", 3).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert!(p.info(&t).is_none(), "expired");
    }

    #[test]
    fn jwt_hs256_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"a shared secret").unwrap();
        let spec = format!("jwt,priv-key={},sign-method=HS256,ttl=1m", secret.display());
        let p = TokenProvider::from_flag(&spec, Duration::from_secs(1)).unwrap();
        assert_eq!(p.prefix(), "");
        let t = p.assign("", 1, "carol", 9).unwrap();
        assert_eq!(
            p.info(&t),
            Some(TokenInfo {
                username: "carol".into(),
                revision: Some(9)
            })
        );
        assert!(p.info(&format!("{t}x")).is_none());
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(TokenProvider::from_flag("opaque", Duration::from_secs(1)).is_err());
        assert!(TokenProvider::from_flag("jwt,sign-method=RS256", Duration::from_secs(1)).is_err());
        assert!(TokenProvider::from_flag("jwt,foo", Duration::from_secs(1)).is_err());
    }
}
