//! The replicated auth state: users, roles, the enabled flag and the auth revision.
//!
//! It changes only in the apply loop, in raft order, so every member holds the same state; each
//! change is written, whole, to the backend's meta table in the batch of its entry (so it
//! survives restart and travels in snapshots). The state is small (users and roles of one
//! cluster), so it is kept in memory and re-encoded on every change.

use std::collections::BTreeMap;

use oxcd_api::authpb::{Permission, Role, User, UserAddOptions};

use crate::error::{EtcdError, Result};

/// The meta-table key holding the encoded [`StoredAuth`].
pub const META_AUTH: &str = "auth";
/// The user and the role that may do everything.
pub const ROOT: &str = "root";

/// The backend encoding of the auth state.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredAuth {
    #[prost(bool, tag = "1")]
    pub enabled: bool,
    #[prost(uint64, tag = "2")]
    pub revision: u64,
    #[prost(message, repeated, tag = "3")]
    pub users: Vec<User>,
    #[prost(message, repeated, tag = "4")]
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Default)]
pub struct State {
    pub enabled: bool,
    /// Bumped by every change of users, roles or permissions: a request authorised against an
    /// older revision is re-checked.
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
}

fn name_of(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

impl State {
    pub fn decode(raw: Option<Vec<u8>>) -> Result<State> {
        let Some(raw) = raw else {
            // etcd's auth revision starts at 1.
            return Ok(State {
                revision: 1,
                ..State::default()
            });
        };
        let s = <StoredAuth as prost::Message>::decode(&raw[..])
            .map_err(|e| EtcdError::Internal(format!("decoding auth state: {e}")))?;
        Ok(State {
            enabled: s.enabled,
            revision: s.revision,
            users: s.users.into_iter().map(|u| (name_of(&u.name), u)).collect(),
            roles: s.roles.into_iter().map(|r| (name_of(&r.name), r)).collect(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&StoredAuth {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        })
    }

    pub fn has_root_role(user: &User) -> bool {
        user.roles.iter().any(|r| r == ROOT)
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User> {
        self.users.get_mut(name).ok_or(EtcdError::UserNotFound)
    }

    fn role_mut(&mut self, name: &str) -> Result<&mut Role> {
        self.roles.get_mut(name).ok_or(EtcdError::RoleNotFound)
    }

    /// Every permission granted to `user` through its roles.
    pub fn permissions_of<'a>(&'a self, user: &'a User) -> impl Iterator<Item = &'a Permission> {
        user.roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter())
    }

    // Changes. Each returns whether the state changed (and so the revision moves on).

    pub fn enable(&mut self) -> Result<bool> {
        if self.enabled {
            return Ok(false);
        }
        let root = self.users.get(ROOT).ok_or(EtcdError::RootUserNotExist)?;
        if !State::has_root_role(root) {
            return Err(EtcdError::RootRoleNotExist);
        }
        self.enabled = true;
        Ok(true)
    }

    pub fn disable(&mut self) -> bool {
        let was = self.enabled;
        self.enabled = false;
        was
    }

    pub fn user_add(&mut self, name: &str, hashed: &str, no_password: bool) -> Result<bool> {
        if name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if self.users.contains_key(name) {
            return Err(EtcdError::UserAlreadyExist);
        }
        let user = User {
            name: name.as_bytes().to_vec(),
            password: if no_password {
                Vec::new()
            } else {
                hashed.as_bytes().to_vec()
            },
            roles: Vec::new(),
            options: Some(UserAddOptions { no_password }),
        };
        self.users.insert(name.to_string(), user);
        Ok(true)
    }

    pub fn user_delete(&mut self, name: &str) -> Result<bool> {
        if self.enabled && name == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        self.users.remove(name).ok_or(EtcdError::UserNotFound)?;
        Ok(true)
    }

    pub fn user_change_password(&mut self, name: &str, hashed: &str) -> Result<bool> {
        let user = self.user_mut(name)?;
        user.password = hashed.as_bytes().to_vec();
        if let Some(o) = user.options.as_mut() {
            o.no_password = false;
        }
        Ok(true)
    }

    pub fn user_grant_role(&mut self, name: &str, role: &str) -> Result<bool> {
        if !self.users.contains_key(name) {
            return Err(EtcdError::UserNotFound);
        }
        // The root role exists implicitly: granting it is how a root user is made.
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(EtcdError::RoleNotFound);
        }
        let user = self.user_mut(name)?;
        match user.roles.binary_search_by(|r| r.as_str().cmp(role)) {
            // Granting a role twice is accepted and changes nothing, as in etcd.
            Ok(_) => Ok(false),
            Err(at) => {
                user.roles.insert(at, role.to_string());
                Ok(true)
            }
        }
    }

    pub fn user_revoke_role(&mut self, name: &str, role: &str) -> Result<bool> {
        if self.enabled && name == ROOT && role == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let user = self.user_mut(name)?;
        let at = user
            .roles
            .iter()
            .position(|r| r == role)
            .ok_or(EtcdError::RoleNotGranted)?;
        user.roles.remove(at);
        Ok(true)
    }

    pub fn role_add(&mut self, name: &str) -> Result<bool> {
        if name.is_empty() {
            return Err(EtcdError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(EtcdError::RoleAlreadyExist);
        }
        self.roles.insert(
            name.to_string(),
            Role {
                name: name.as_bytes().to_vec(),
                key_permission: Vec::new(),
            },
        );
        Ok(true)
    }

    pub fn role_delete(&mut self, name: &str) -> Result<bool> {
        if self.enabled && name == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        self.roles.remove(name).ok_or(EtcdError::RoleNotFound)?;
        // Users holding the role lose it with the role.
        for u in self.users.values_mut() {
            u.roles.retain(|r| r != name);
        }
        Ok(true)
    }

    pub fn role_grant_permission(&mut self, name: &str, perm: Option<&Permission>) -> Result<bool> {
        let role = self.role_mut(name)?;
        let perm = perm.ok_or(EtcdError::PermissionNotGiven)?;
        // etcd's order and quirk: sorted by key alone, equal keys in the order granted, and only
        // the first permission on the key is looked at: with the same range end its type is
        // replaced, else the grant is added after the others on that key.
        let key = perm.key.as_slice();
        let at = role
            .key_permission
            .partition_point(|p| p.key.as_slice() < key);
        match role.key_permission.get_mut(at) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                p.perm_type = perm.perm_type
            }
            _ => {
                let end = role
                    .key_permission
                    .partition_point(|p| p.key.as_slice() <= key);
                role.key_permission.insert(end, perm.clone());
            }
        }
        Ok(true)
    }

    pub fn role_revoke_permission(&mut self, name: &str, key: &[u8], end: &[u8]) -> Result<bool> {
        let role = self.role_mut(name)?;
        let at = role
            .key_permission
            .iter()
            .position(|p| p.key == key && p.range_end == end)
            .ok_or(EtcdError::PermissionNotGranted)?;
        role.key_permission.remove(at);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(key: &str, end: &str) -> Permission {
        Permission {
            perm_type: oxcd_api::authpb::permission::Type::Readwrite as i32,
            key: key.into(),
            range_end: end.into(),
        }
    }

    #[test]
    fn enable_needs_root_with_root_role() {
        let mut s = State::default();
        assert_eq!(s.enable(), Err(EtcdError::RootUserNotExist));
        s.user_add("root", "h", false).unwrap();
        assert_eq!(s.enable(), Err(EtcdError::RootRoleNotExist));
        assert_eq!(s.user_grant_role("root", "root"), Ok(true));
        assert_eq!(s.user_grant_role("root", "root"), Ok(false));
        assert_eq!(s.enable(), Ok(true));
        assert_eq!(s.user_delete("root"), Err(EtcdError::InvalidAuthMgmt));
        assert_eq!(
            s.user_revoke_role("root", "root"),
            Err(EtcdError::InvalidAuthMgmt)
        );
    }

    #[test]
    fn users_and_roles() {
        let mut s = State::default();
        assert_eq!(s.user_add("", "h", false), Err(EtcdError::UserEmpty));
        s.user_add("u", "h", false).unwrap();
        assert_eq!(
            s.user_add("u", "h", false),
            Err(EtcdError::UserAlreadyExist)
        );
        assert_eq!(s.user_grant_role("u", "r"), Err(EtcdError::RoleNotFound));
        assert_eq!(s.user_grant_role("x", "r"), Err(EtcdError::UserNotFound));
        s.role_add("r").unwrap();
        assert_eq!(s.role_add("r"), Err(EtcdError::RoleAlreadyExist));
        s.user_grant_role("u", "r").unwrap();
        assert_eq!(s.user_revoke_role("u", "q"), Err(EtcdError::RoleNotGranted));
        s.role_grant_permission("r", Some(&rw("b", ""))).unwrap();
        s.role_grant_permission("r", Some(&rw("a", "c"))).unwrap();
        s.role_grant_permission("r", Some(&rw("a", "c"))).unwrap();
        s.role_grant_permission("r", Some(&rw("a", "b"))).unwrap();
        let got: Vec<(&[u8], &[u8])> = s.roles["r"]
            .key_permission
            .iter()
            .map(|p| (p.key.as_slice(), p.range_end.as_slice()))
            .collect();
        let want: Vec<(&[u8], &[u8])> = vec![(b"a", b"c"), (b"a", b"b"), (b"b", b"")];
        assert_eq!(got, want);
        assert_eq!(
            s.role_revoke_permission("r", b"a", b""),
            Err(EtcdError::PermissionNotGranted)
        );
        s.role_revoke_permission("r", b"a", b"c").unwrap();
        s.role_revoke_permission("r", b"a", b"b").unwrap();
        s.role_delete("r").unwrap();
        assert!(s.users["u"].roles.is_empty());
        let again = State::decode(Some(s.encode())).unwrap();
        assert_eq!(again.users.len(), 1);
    }
}
