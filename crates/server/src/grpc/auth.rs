//! The Auth service. Every call but `Authenticate` is one raft entry, applied (and permission
//! checked) by the apply loop, so its answer reflects every auth change committed before it.

use std::sync::Arc;

use oxcd_api::etcdserverpb::auth_server::Auth;
use oxcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::auth::apply::AuthReply;
use crate::auth::Caller;
use crate::error::EtcdError;
use crate::server::{ApplyResponse, EtcdServer};

/// How often `Authenticate` re-checks a password that raced with an auth change.
const AUTHENTICATE_ATTEMPTS: u32 = 3;

pub struct AuthService {
    server: Arc<EtcdServer>,
}

impl AuthService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        AuthService { server }
    }

    /// Proposes an auth entry as the caller; returns the header and the entry's answer.
    async fn apply(
        &self,
        caller: &Caller,
        req: InternalRaftRequest,
    ) -> Result<(ResponseHeader, AuthReply), Status> {
        match self.server.propose_as(caller, req).await? {
            ApplyResponse::Auth(header, reply) => Ok((header, reply)),
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    /// Applies a call whose answer is only the header; `wrap` puts the request in its entry.
    async fn header_only<T>(
        &self,
        req: Request<T>,
        wrap: impl FnOnce(T) -> InternalRaftRequest,
    ) -> Result<Option<ResponseHeader>, Status> {
        let caller = Caller::of(&req);
        let (header, _) = self.apply(&caller, wrap(req.into_inner())).await?;
        Ok(Some(header))
    }

    /// bcrypt is slow by design: hash on the blocking pool, not on a runtime thread.
    async fn hash(&self, password: String) -> Result<String, Status> {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || server.auth.hash_password(&password))
            .await
            .map_err(|e| Status::internal(format!("hashing password: {e}")))?
            .map_err(Status::from)
    }
}

fn unexpected(reply: AuthReply) -> Status {
    Status::internal(format!("unexpected auth reply {reply:?}"))
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        req: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_enable: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        req: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_disable: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_user_delete: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_user_grant_role: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_user_revoke_role: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        req: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_role_add: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_role_delete: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_role_grant_permission: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let header = self
            .header_only(req, |r| InternalRaftRequest {
                auth_role_revoke_permission: Some(r),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }

    async fn auth_status(
        &self,
        req: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let caller = Caller::of(&req);
        let entry = InternalRaftRequest {
            auth_status: Some(req.into_inner()),
            ..Default::default()
        };
        match self.apply(&caller, entry).await? {
            (header, AuthReply::Status { enabled, revision }) => {
                Ok(Response::new(AuthStatusResponse {
                    header: Some(header),
                    enabled,
                    auth_revision: revision,
                }))
            }
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        self.server.read_index().await?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let server = self.server.clone();
            let (name, password) = (r.name.clone(), r.password.clone());
            let checked =
                tokio::task::spawn_blocking(move || server.auth.check_password(&name, &password))
                    .await
                    .map_err(|e| Status::internal(format!("checking password: {e}")))?;
            let checked = match checked {
                Ok(rev) => rev,
                Err(e) => {
                    if e != EtcdError::AuthNotEnabled {
                        tracing::warn!(user = %r.name, error = %e, "invalid authentication was requested");
                    }
                    return Err(e.into());
                }
            };
            let entry = InternalRaftRequest {
                authenticate: Some(InternalAuthenticateRequest {
                    name: r.name.clone(),
                    // Checked above: the password itself never enters the raft log.
                    password: String::new(),
                    simple_token: self.server.auth.tokens.prefix(),
                }),
                ..Default::default()
            };
            let (header, reply) = self.apply(&caller, entry).await?;
            if checked != self.server.auth.revision() && attempts < AUTHENTICATE_ATTEMPTS {
                tracing::info!("revision when password checked became stale; retrying");
                continue;
            }
            return match reply {
                AuthReply::Token(token) => Ok(Response::new(AuthenticateResponse {
                    header: Some(header),
                    token,
                })),
                other => Err(unexpected(other)),
            };
        }
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let caller = Caller::of(&req);
        let mut r = req.into_inner();
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        if !no_password && r.hashed_password.is_empty() {
            r.hashed_password = self.hash(std::mem::take(&mut r.password)).await?;
        }
        r.password.clear();
        let entry = InternalRaftRequest {
            auth_user_add: Some(r),
            ..Default::default()
        };
        let (header, _) = self.apply(&caller, entry).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: Some(header),
        }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let caller = Caller::of(&req);
        let mut r = req.into_inner();
        if r.hashed_password.is_empty() {
            r.hashed_password = self.hash(std::mem::take(&mut r.password)).await?;
        }
        r.password.clear();
        let entry = InternalRaftRequest {
            auth_user_change_password: Some(r),
            ..Default::default()
        };
        let (header, _) = self.apply(&caller, entry).await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: Some(header),
        }))
    }

    async fn user_get(
        &self,
        req: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let caller = Caller::of(&req);
        let entry = InternalRaftRequest {
            auth_user_get: Some(req.into_inner()),
            ..Default::default()
        };
        match self.apply(&caller, entry).await? {
            (header, AuthReply::UserRoles(roles)) => Ok(Response::new(AuthUserGetResponse {
                header: Some(header),
                roles,
            })),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn user_list(
        &self,
        req: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let caller = Caller::of(&req);
        let entry = InternalRaftRequest {
            auth_user_list: Some(req.into_inner()),
            ..Default::default()
        };
        match self.apply(&caller, entry).await? {
            (header, AuthReply::Names(users)) => Ok(Response::new(AuthUserListResponse {
                header: Some(header),
                users,
            })),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn role_get(
        &self,
        req: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let caller = Caller::of(&req);
        let entry = InternalRaftRequest {
            auth_role_get: Some(req.into_inner()),
            ..Default::default()
        };
        match self.apply(&caller, entry).await? {
            (header, AuthReply::RolePermissions(perm)) => Ok(Response::new(AuthRoleGetResponse {
                header: Some(header),
                perm,
            })),
            (_, other) => Err(unexpected(other)),
        }
    }

    async fn role_list(
        &self,
        req: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let caller = Caller::of(&req);
        let entry = InternalRaftRequest {
            auth_role_list: Some(req.into_inner()),
            ..Default::default()
        };
        match self.apply(&caller, entry).await? {
            (header, AuthReply::Names(roles)) => Ok(Response::new(AuthRoleListResponse {
                header: Some(header),
                roles,
            })),
            (_, other) => Err(unexpected(other)),
        }
    }
}
