//! The apply side of auth: auth entries change the replicated state in raft order, and write
//! entries are checked against the identity they carry, on every member alike.

use oxcd_api::authpb::Permission;
use oxcd_api::etcdserverpb::request_op::Request as Op;
use oxcd_api::etcdserverpb::{InternalRaftRequest, TxnRequest};

use super::store::{State, META_AUTH};
use super::{AuthInfo, AuthStore};
use crate::error::{EtcdError, Result};
use crate::mvcc::WriteBatch;

/// What an applied auth entry answers, besides the header.
#[derive(Debug, Clone)]
pub enum AuthReply {
    Done,
    Token(String),
    Status { enabled: bool, revision: u64 },
    UserRoles(Vec<String>),
    RolePermissions(Vec<Permission>),
    Names(Vec<String>),
}

/// The identity an entry was proposed with.
fn entry_identity(req: &InternalRaftRequest) -> Option<AuthInfo> {
    req.header.as_ref().map(|h| AuthInfo {
        username: h.username.clone(),
        revision: h.auth_revision,
    })
}

/// Whether the entry is an auth request (handled by [`AuthStore::apply`]).
pub fn is_auth_entry(r: &InternalRaftRequest) -> bool {
    r.auth_enable.is_some()
        || r.auth_disable.is_some()
        || r.auth_status.is_some()
        || r.authenticate.is_some()
        || r.auth_user_add.is_some()
        || r.auth_user_delete.is_some()
        || r.auth_user_get.is_some()
        || r.auth_user_change_password.is_some()
        || r.auth_user_grant_role.is_some()
        || r.auth_user_revoke_role.is_some()
        || r.auth_user_list.is_some()
        || r.auth_role_list.is_some()
        || r.auth_role_add.is_some()
        || r.auth_role_delete.is_some()
        || r.auth_role_get.is_some()
        || r.auth_role_grant_permission.is_some()
        || r.auth_role_revoke_permission.is_some()
}

impl AuthStore {
    /// Applies an auth entry at raft `index`. Management needs the root role (while auth is
    /// enabled), except reading one's own user or one's own role.
    pub fn apply(
        &self,
        batch: &mut WriteBatch<'_>,
        req: &InternalRaftRequest,
        index: u64,
    ) -> Result<AuthReply> {
        let who = entry_identity(req);
        if req.auth_status.is_some() {
            let s = self.state.read();
            return Ok(AuthReply::Status {
                enabled: s.enabled,
                revision: s.revision,
            });
        }
        if let Some(r) = &req.authenticate {
            return self.apply_authenticate(&r.name, &r.simple_token, index);
        }
        if let Some(r) = &req.auth_user_get {
            if let Err(e) = self.check_admin(who.as_ref()) {
                if who.as_ref().is_none_or(|w| w.username != r.name) {
                    return Err(e);
                }
            }
            let s = self.state.read();
            let user = s.users.get(&r.name).ok_or(EtcdError::UserNotFound)?;
            return Ok(AuthReply::UserRoles(user.roles.clone()));
        }
        if let Some(r) = &req.auth_role_get {
            if let Err(e) = self.check_admin(who.as_ref()) {
                if !who
                    .as_ref()
                    .is_some_and(|w| self.has_role(&w.username, &r.role))
                {
                    return Err(e);
                }
            }
            let s = self.state.read();
            let role = s.roles.get(&r.role).ok_or(EtcdError::RoleNotFound)?;
            return Ok(AuthReply::RolePermissions(role.key_permission.clone()));
        }
        self.check_admin(who.as_ref())?;
        if req.auth_user_list.is_some() {
            return Ok(AuthReply::Names(
                self.state.read().users.keys().cloned().collect(),
            ));
        }
        if req.auth_role_list.is_some() {
            return Ok(AuthReply::Names(
                self.state.read().roles.keys().cloned().collect(),
            ));
        }
        let mut s = self.state.write();
        // Enabling keeps the revision; every other change moves it on.
        let bump = if req.auth_enable.is_some() {
            if s.enable()? {
                tracing::info!("enabled authentication");
                self.tokens.clear();
                persist(batch, &s)?;
            }
            return Ok(AuthReply::Done);
        } else if req.auth_disable.is_some() {
            if s.disable() {
                tracing::info!("disabled authentication");
                self.tokens.clear();
            }
            true
        } else if let Some(r) = &req.auth_user_add {
            let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
            let hashed = if r.hashed_password.is_empty() && !no_password {
                self.hash_password(&r.password)?
            } else {
                r.hashed_password.clone()
            };
            s.user_add(&r.name, &hashed, no_password)?
        } else if let Some(r) = &req.auth_user_delete {
            let changed = s.user_delete(&r.name)?;
            self.tokens.invalidate_user(&r.name);
            changed
        } else if let Some(r) = &req.auth_user_change_password {
            let hashed = if r.hashed_password.is_empty() {
                self.hash_password(&r.password)?
            } else {
                r.hashed_password.clone()
            };
            let changed = s.user_change_password(&r.name, &hashed)?;
            self.tokens.invalidate_user(&r.name);
            changed
        } else if let Some(r) = &req.auth_user_grant_role {
            s.user_grant_role(&r.user, &r.role)?
        } else if let Some(r) = &req.auth_user_revoke_role {
            s.user_revoke_role(&r.name, &r.role)?
        } else if let Some(r) = &req.auth_role_add {
            s.role_add(&r.name)?
        } else if let Some(r) = &req.auth_role_delete {
            s.role_delete(&r.role)?
        } else if let Some(r) = &req.auth_role_grant_permission {
            s.role_grant_permission(&r.name, r.perm.as_ref())?
        } else if let Some(r) = &req.auth_role_revoke_permission {
            s.role_revoke_permission(&r.role, &r.key, &r.range_end)?
        } else {
            return Err(EtcdError::Internal(
                "etcdserver: unsupported auth request in raft entry".to_string(),
            ));
        };
        if bump {
            s.revision += 1;
            persist(batch, &s)?;
        }
        Ok(AuthReply::Done)
    }

    fn apply_authenticate(&self, name: &str, prefix: &str, index: u64) -> Result<AuthReply> {
        let revision = {
            let s = self.state.read();
            if !s.enabled {
                return Err(EtcdError::AuthNotEnabled);
            }
            // The password was checked by the member that proposed this entry.
            let user = s.users.get(name).ok_or(EtcdError::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::NoPasswordUser);
            }
            s.revision
        };
        let token = self
            .tokens
            .assign(prefix, index, name, revision)
            .map_err(EtcdError::Internal)?;
        Ok(AuthReply::Token(token))
    }

    /// The permission checks of a write entry, against the identity it carries: puts and
    /// deletes need write access (and read access for `prev_kv`), a txn needs read access to
    /// what it compares and access to every operation of both branches, and revoking a lease
    /// (or attaching one) needs write access to every key the lease holds.
    pub fn check_entry(
        &self,
        req: &InternalRaftRequest,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let who = entry_identity(req);
        let who = who.as_ref();
        if let Some(r) = &req.put {
            self.check_put(who, &r.key, r.lease, r.prev_kv, lease_keys)?;
        }
        if let Some(r) = &req.delete_range {
            self.check_write(who, &r.key, &r.range_end)?;
            if r.prev_kv {
                self.check_range(who, &r.key, &r.range_end)?;
            }
        }
        if let Some(r) = &req.txn {
            self.check_txn(who, r, lease_keys)?;
        }
        if let Some(r) = &req.lease_revoke {
            self.check_lease_keys(who, r.id, lease_keys)?;
        }
        Ok(())
    }

    /// The checks of a txn served without raft (it only reads).
    pub fn check_txn_reads(&self, who: Option<&AuthInfo>, txn: &TxnRequest) -> Result<()> {
        self.check_txn(who, txn, &|_| Vec::new())
    }

    fn check_put(
        &self,
        who: Option<&AuthInfo>,
        key: &[u8],
        lease: i64,
        prev_kv: bool,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<()> {
        self.check_write(who, key, &[])?;
        if lease != 0 {
            // A user who could not revoke the lease must not attach keys to it either.
            self.check_lease_keys(who, lease, lease_keys)?;
        }
        if prev_kv {
            self.check_range(who, key, &[])?;
        }
        Ok(())
    }

    fn check_lease_keys(
        &self,
        who: Option<&AuthInfo>,
        lease: i64,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<()> {
        for k in lease_keys(lease) {
            self.check_write(who, &k, &[])?;
        }
        Ok(())
    }

    fn check_txn(
        &self,
        who: Option<&AuthInfo>,
        txn: &TxnRequest,
        lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
    ) -> Result<()> {
        for c in &txn.compare {
            self.check_range(who, &c.key, &c.range_end)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            match &op.request {
                Some(Op::RequestRange(r)) => self.check_range(who, &r.key, &r.range_end)?,
                Some(Op::RequestPut(r)) => {
                    self.check_put(who, &r.key, r.lease, r.prev_kv, lease_keys)?
                }
                Some(Op::RequestDeleteRange(r)) => {
                    self.check_write(who, &r.key, &r.range_end)?;
                    if r.prev_kv {
                        self.check_range(who, &r.key, &r.range_end)?;
                    }
                }
                Some(Op::RequestTxn(t)) => self.check_txn(who, t, lease_keys)?,
                None => {}
            }
        }
        Ok(())
    }
}

fn persist(batch: &mut WriteBatch<'_>, s: &State) -> Result<()> {
    batch.meta_put(META_AUTH, &s.encode())
}
