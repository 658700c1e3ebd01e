//! Authentication and role-based access control, with etcd's semantics.
//!
//! - `store`: the replicated users, roles, enabled flag and auth revision.
//! - `perm`: whether granted key ranges cover a requested range.
//! - `token`: simple and JWT tokens.
//! - `apply`: auth entries applied in raft order, and the permission checks of writes (done at
//!   apply time against the user and auth revision the entry carries, as etcd does).
//!
//! Who is asking: the `token` metadata of the call (from `Authenticate`), else, with
//! `--client-cert-auth`, the common name of the verified client certificate.

pub mod apply;
pub mod perm;
pub mod store;
pub mod token;

use oxcd_api::authpb::permission::Type as PermType;
use parking_lot::RwLock;

use crate::config::Config;
use crate::error::{EtcdError, Result};
use crate::mvcc::MvccStore;
use store::{State, META_AUTH};
use token::TokenProvider;

/// The gRPC metadata key carrying the token (etcd's), and the one its JSON gateway uses.
pub const TOKEN_METADATA: &str = "token";
pub const TOKEN_METADATA_GATEWAY: &str = "authorization";

/// The largest cost factor bcrypt accepts.
const BCRYPT_MAX_COST: u32 = 31;
/// What a cost below bcrypt's minimum (4) means: the default, as Go's bcrypt (and so etcd) has it.
const BCRYPT_DEFAULT_COST: u32 = 10;
const BCRYPT_MIN_COST: u32 = 4;

/// The verified identity of a client, resolved from its token or certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    /// The auth revision the identity was resolved at; a write checked at apply time against a
    /// newer revision is refused with `revision of auth store is old` and re-tried.
    pub revision: u64,
}

/// What a call says about its caller, before it is checked: kept from the request so that an
/// identity can be resolved again when a retry needs a fresh revision.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub token: Option<String>,
    /// Common name of the client certificate verified by the TLS layer.
    pub common_name: Option<String>,
}

impl Caller {
    pub fn of<T>(req: &tonic::Request<T>) -> Caller {
        Caller::from_parts(req.metadata(), req.extensions())
    }

    pub fn from_parts(md: &tonic::metadata::MetadataMap, ext: &tonic::Extensions) -> Caller {
        let token = md
            .get(TOKEN_METADATA)
            .or_else(|| md.get(TOKEN_METADATA_GATEWAY))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let common_name = ext
            .get::<crate::tls::PeerIdentity>()
            .map(|p| p.common_name.clone())
            .filter(|cn| !cn.is_empty());
        Caller { token, common_name }
    }
}

pub struct AuthStore {
    state: RwLock<State>,
    pub tokens: TokenProvider,
    bcrypt_cost: u32,
    /// `--client-cert-auth`: a certificate's common name may stand for the user.
    client_cert_auth: bool,
}

impl AuthStore {
    pub fn load(store: &MvccStore, cfg: &Config) -> anyhow::Result<AuthStore> {
        // etcd would start and then fail every password hash; refuse up front instead.
        if cfg.bcrypt_cost > BCRYPT_MAX_COST {
            anyhow::bail!(
                "invalid --bcrypt-cost {}: bcrypt allows at most {BCRYPT_MAX_COST}",
                cfg.bcrypt_cost
            );
        }
        let bcrypt_cost = if cfg.bcrypt_cost < BCRYPT_MIN_COST {
            BCRYPT_DEFAULT_COST
        } else {
            cfg.bcrypt_cost
        };
        let tokens =
            TokenProvider::from_flag(&cfg.auth_token, cfg.auth_token_ttl).map_err(|e| {
                // etcd logs the reason and stops with a generic message.
                tracing::error!("auth: {e:#}");
                anyhow::anyhow!("auth: invalid auth options")
            })?;
        let state = State::decode(store.meta_get(META_AUTH)?)?;
        Ok(AuthStore {
            state: RwLock::new(state),
            tokens,
            bcrypt_cost,
            client_cert_auth: cfg.client_tls.client_cert_auth,
        })
    }

    /// Reads the state again after the backend was replaced by a snapshot.
    pub fn reload(&self, store: &MvccStore) -> Result<()> {
        *self.state.write() = State::decode(store.meta_get(META_AUTH)?)?;
        self.tokens.clear();
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.state.read().enabled
    }

    pub fn revision(&self) -> u64 {
        self.state.read().revision
    }

    /// Hashes a password for `UserAdd`/`UserChangePassword` before the request is proposed, so
    /// the slow hash runs once, off the apply loop, and the raft log never holds the password.
    pub fn hash_password(&self, password: &str) -> Result<String> {
        bcrypt::hash(password, self.bcrypt_cost)
            .map_err(|e| EtcdError::Internal(format!("hashing password: {e}")))
    }

    /// Checks a user's password; returns the auth revision it was checked at.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64> {
        let (hash, revision) = {
            let s = self.state.read();
            if !s.enabled {
                return Err(EtcdError::AuthNotEnabled);
            }
            let user = s.users.get(name).ok_or(EtcdError::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::NoPasswordUser);
            }
            (
                String::from_utf8_lossy(&user.password).into_owned(),
                s.revision,
            )
        };
        match bcrypt::verify(password, &hash) {
            Ok(true) => Ok(revision),
            _ => Err(EtcdError::AuthFailed),
        }
    }

    /// The identity of a caller: its token if it sent one, else its certificate's common name
    /// (with `--client-cert-auth`), else nobody. A token is looked up even while auth is
    /// disabled (then no simple token is valid), as etcd does.
    pub fn resolve(&self, caller: &Caller) -> Result<Option<AuthInfo>> {
        if let Some(t) = &caller.token {
            let info = self.tokens.info(t).ok_or_else(|| {
                tracing::warn!(token = %t, "invalid auth token");
                EtcdError::InvalidAuthToken
            })?;
            // A simple token carries no revision: it stands for its user as of now.
            let revision = info.revision.unwrap_or_else(|| self.revision());
            return Ok(Some(AuthInfo {
                username: info.username,
                revision,
            }));
        }
        if !self.enabled() {
            return Ok(None);
        }
        if self.client_cert_auth {
            if let Some(cn) = &caller.common_name {
                return Ok(Some(AuthInfo {
                    username: cn.clone(),
                    revision: self.revision(),
                }));
            }
        }
        Ok(None)
    }

    /// etcd's check of one operation on `[key, range_end)` by `info`.
    pub fn check_op(
        &self,
        info: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        wanted: PermType,
    ) -> Result<()> {
        let s = self.state.read();
        if !s.enabled {
            return Ok(());
        }
        let info = match info {
            Some(i) if i.revision != 0 => i,
            _ => return Err(EtcdError::UserEmpty),
        };
        // etcd compares for equality: a JWT made at another revision is refused too.
        if info.revision != s.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        let user = s
            .users
            .get(&info.username)
            .ok_or(EtcdError::PermissionDenied)?;
        if State::has_root_role(user)
            || perm::covers(s.permissions_of(user), wanted, key, range_end)
        {
            return Ok(());
        }
        Err(EtcdError::PermissionDenied)
    }

    pub fn check_range(&self, info: Option<&AuthInfo>, key: &[u8], end: &[u8]) -> Result<()> {
        self.check_op(info, key, end, PermType::Read)
    }

    pub fn check_write(&self, info: Option<&AuthInfo>, key: &[u8], end: &[u8]) -> Result<()> {
        self.check_op(info, key, end, PermType::Write)
    }

    /// Operations reserved to users with the root role.
    pub fn check_admin(&self, info: Option<&AuthInfo>) -> Result<()> {
        let s = self.state.read();
        if !s.enabled {
            return Ok(());
        }
        let name = info
            .map(|i| i.username.as_str())
            .filter(|n| !n.is_empty())
            .ok_or(EtcdError::UserEmpty)?;
        let user = s.users.get(name).ok_or(EtcdError::UserNotFound)?;
        if State::has_root_role(user) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// Whether `user` holds `role` (a user may read its own roles without being root).
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.state
            .read()
            .users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }
}
