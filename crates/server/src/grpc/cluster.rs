//! The Cluster service: membership as this member knows it.

use std::sync::Arc;

use oxcd_api::etcdserverpb::cluster_server::Cluster;
use oxcd_api::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use crate::membership::Member;
use crate::server::EtcdServer;

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        ClusterService { server }
    }
}

pub fn to_pb(m: &Member) -> PbMember {
    PbMember {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        // Membership changes are for root alone, checked before anything else as in etcd.
        self.server
            .check_admin(&crate::auth::Caller::of(&req))
            .await?;
        let r = req.into_inner();
        let reply = self.server.member_add(r.peer_ur_ls, r.is_learner).await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.header(reply.header)),
            member: reply.member.as_ref().map(to_pb),
            members: reply.members.iter().map(to_pb).collect(),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        // Membership changes are for root alone, checked before anything else as in etcd.
        self.server
            .check_admin(&crate::auth::Caller::of(&req))
            .await?;
        let reply = self.server.member_remove(req.into_inner().id).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.header(reply.header)),
            members: reply.members.iter().map(to_pb).collect(),
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        // Membership changes are for root alone, checked before anything else as in etcd.
        self.server
            .check_admin(&crate::auth::Caller::of(&req))
            .await?;
        let r = req.into_inner();
        let reply = self.server.member_update(r.id, r.peer_ur_ls).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.header(reply.header)),
            members: reply.members.iter().map(to_pb).collect(),
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.server.read_index().await?;
        }
        let members = self.server.membership.members().iter().map(to_pb).collect();
        // Cluster responses carry no revision in etcd: membership is not part of the keyspace.
        Ok(Response::new(MemberListResponse {
            header: Some(self.server.header_at(0)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        // Membership changes are for root alone, checked before anything else as in etcd.
        self.server
            .check_admin(&crate::auth::Caller::of(&req))
            .await?;
        let reply = self.server.member_promote(req.into_inner().id).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.header(reply.header)),
            members: reply.members.iter().map(to_pb).collect(),
        }))
    }
}

impl ClusterService {
    /// Cluster responses carry no revision in etcd: membership is not part of the keyspace.
    fn header(&self, mut h: ResponseHeader) -> ResponseHeader {
        h.revision = 0;
        h.raft_term = self.server.raft.term();
        h
    }
}
