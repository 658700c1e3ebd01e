//! Errors a client can see, with etcd's exact gRPC codes and texts.
//!
//! The texts are part of the wire contract: clients (etcdctl, clientv3, Kubernetes) match on them,
//! so every variant renders exactly as etcd's `rpctypes` error of the same meaning.

use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A CORRUPT alarm is active: the cluster refuses writes.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    /// A proposal that never reached raft because no leader appeared before the request's
    /// deadline: etcd's blocked proposal returns the bare context error, with code Unknown.
    #[error("context deadline exceeded")]
    DeadlineExceeded,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: not capable")]
    NotCapable,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: unhealthy cluster")]
    UnhealthyCluster,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// etcd 3.4 lets this one through untranslated, so clients see the auth package's text.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// A failure with no etcd counterpart (disk error, corrupt entry): reported as Unknown with
    /// its own text, never silently dropped.
    #[error("{0}")]
    Internal(String),
}

impl EtcdError {
    /// The gRPC status code etcd uses for this error.
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | RequestTooLarge => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            Corrupt => Code::DataLoss,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExist | NotLeader | AuthNotEnabled | MemberExist | PeerUrlExist
            | MemberNotLearner | LearnerNotReady | TooManyLearners | BadLeaderTransferee => {
                Code::FailedPrecondition
            }
            MemberBadUrls => Code::InvalidArgument,
            AuthFailed | InvalidAuthMgmt | AuthOldRevision | UserEmpty | RoleEmpty
            | PermissionNotGiven => Code::InvalidArgument,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            UserAlreadyExist | UserNotFound | RoleAlreadyExist | RoleNotFound
            | RootUserNotExist | RootRoleNotExist | RoleNotGranted | PermissionNotGranted => {
                Code::FailedPrecondition
            }
            NoLeader
            | Timeout
            | Stopped
            | NotCapable
            | UnhealthyCluster
            | NotSupportedForLearner
            | LeaderTransferTimeout => Code::Unavailable,
            // etcd 3.4 maps this one to a client-side error value, which gRPC sends as Unknown.
            Internal(_) | DeadlineExceeded | NotEnoughStartedMembers | NoPasswordUser => {
                Code::Unknown
            }
        }
    }
}

impl EtcdError {
    /// The error a remote member answered with (a request forwarded to the leader), turned back
    /// into the variant whose text it carries, so the client sees the leader's answer unchanged.
    pub fn from_remote(status: &Status) -> EtcdError {
        use EtcdError::*;
        let known = [
            MemberNotFound,
            MemberExist,
            PeerUrlExist,
            MemberBadUrls,
            NotEnoughStartedMembers,
            MemberNotLearner,
            LearnerNotReady,
            TooManyLearners,
            NoLeader,
            NotLeader,
            Timeout,
            Stopped,
            UnhealthyCluster,
            DeadlineExceeded,
            NoSpace,
            Corrupt,
        ];
        known
            .into_iter()
            .find(|e| e.to_string() == status.message())
            .unwrap_or_else(|| Internal(status.message().to_string()))
    }
}

/// grpc-go's name of a status code.
pub fn go_code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// A status as grpc-go prints it (`rpc error: code = X desc = ...`), which etcd puts in texts
/// such as a refused watch's cancel reason.
pub fn grpc_go_text(s: &Status) -> String {
    let code = go_code_name(s.code());
    format!("rpc error: code = {code} desc = {}", s.message())
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<redb::Error> for EtcdError {
    fn from(e: redb::Error) -> Self {
        EtcdError::Internal(format!("backend: {e}"))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for EtcdError {
            fn from(e: $t) -> Self {
                EtcdError::Internal(format!("backend: {e}"))
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

pub type Result<T, E = EtcdError> = std::result::Result<T, E>;
