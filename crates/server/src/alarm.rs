//! Alarms: the set of (member, alarm type) pairs raised in the cluster, as etcd keeps it.
//!
//! Every change goes through raft (`InternalRaftRequest.alarm`) and is applied by the apply
//! loop, which writes the whole set into the backend's meta table in the batch of the entry
//! (so it survives restart and travels with snapshots) and keeps it in memory. Listing goes
//! through raft too, as in etcd, so a list follows every alarm raised before it.
//!
//! While an alarm is active the apply loop refuses some requests, on every member alike:
//! - NOSPACE: Put, Txn whose puts cost something, LeaseGrant fail with
//!   `etcdserver: mvcc: database space exceeded`;
//! - CORRUPT: Put, DeleteRange, Txn, Compaction, LeaseGrant, LeaseRevoke fail with
//!   `etcdserver: corrupt cluster`.
//!
//! Reads are served outside the apply loop and never refused.

use std::collections::BTreeSet;

use oxcd_api::etcdserverpb::alarm_request::AlarmAction;
use oxcd_api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, InternalRaftRequest,
};
use parking_lot::RwLock;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::error::{EtcdError, Result};
use crate::mvcc::{MvccStore, WriteBatch};
use crate::quota::Quota;
use crate::raft::waiters::Waiters;
use crate::raft::RaftHandle;
use crate::server::{ApplyResponse, EtcdServer};

/// The meta-table key holding the alarm set (an encoded `AlarmResponse` listing the alarms).
pub const META_ALARMS: &str = "alarm";

/// A reply the apply loop holds back until this member's NOSPACE alarm has been proposed, so
/// that a client told "database space exceeded" finds the alarm in `alarm list`.
pub struct HeldReply {
    pub id: u64,
    pub reply: Result<ApplyResponse>,
}

/// The alarm set, the quota, and the way the apply loop raises NOSPACE.
pub struct Alarms {
    /// (alarm type, member ID).
    set: RwLock<BTreeSet<(i32, u64)>>,
    quota: Quota,
    held_tx: mpsc::UnboundedSender<HeldReply>,
    held_rx: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<HeldReply>>>,
}

/// etcd's text form of an alarm (gogoproto's compact text: zero fields left out, a trailing
/// space), as `endpoint status` shows it in its errors and `etcdctl alarm list` prints it.
pub fn alarm_text(m: &AlarmMember) -> String {
    let mut s = String::new();
    if m.member_id != 0 {
        s.push_str(&format!("memberID:{} ", m.member_id));
    }
    if m.alarm != 0 {
        let name = AlarmType::try_from(m.alarm)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| m.alarm.to_string());
        s.push_str(&format!("alarm:{name} "));
    }
    s
}

fn decode_set(raw: Option<Vec<u8>>) -> Result<BTreeSet<(i32, u64)>> {
    let Some(raw) = raw else {
        return Ok(BTreeSet::new());
    };
    let list = AlarmResponse::decode(&raw[..])
        .map_err(|e| EtcdError::Internal(format!("backend: malformed alarm record: {e}")))?;
    Ok(list
        .alarms
        .into_iter()
        .map(|a| (a.alarm, a.member_id))
        .collect())
}

impl Alarms {
    /// The alarms stored in `store`.
    pub fn load(store: &MvccStore, quota: Quota) -> Result<Alarms> {
        let set = decode_set(store.meta_get(META_ALARMS)?)?;
        for &(t, m) in &set {
            let a = AlarmMember {
                member_id: m,
                alarm: t,
            };
            tracing::warn!(alarm = %alarm_text(&a), "alarm is active");
        }
        let (held_tx, held_rx) = mpsc::unbounded_channel();
        Ok(Alarms {
            set: RwLock::new(set),
            quota,
            held_tx,
            held_rx: parking_lot::Mutex::new(Some(held_rx)),
        })
    }

    /// Re-reads the set after the backend was replaced by a snapshot.
    pub fn reload(&self, store: &MvccStore) -> Result<()> {
        *self.set.write() = decode_set(store.meta_get(META_ALARMS)?)?;
        Ok(())
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Alarms of type `at`; every alarm for NONE. Ordered by type, then member.
    pub fn get(&self, at: i32) -> Vec<AlarmMember> {
        self.set
            .read()
            .iter()
            .filter(|(t, _)| at == AlarmType::None as i32 || *t == at)
            .map(|&(alarm, member_id)| AlarmMember { member_id, alarm })
            .collect()
    }

    fn count(&self, at: i32) -> usize {
        self.set.read().iter().filter(|(t, _)| *t == at).count()
    }

    pub fn nospace(&self) -> bool {
        self.count(AlarmType::Nospace as i32) > 0
    }

    pub fn corrupt(&self) -> bool {
        self.count(AlarmType::Corrupt as i32) > 0
    }

    fn persist(&self, batch: &mut WriteBatch<'_>) -> Result<()> {
        let list = AlarmResponse {
            header: None,
            alarms: self.get(AlarmType::None as i32),
        };
        batch.meta_put(META_ALARMS, &list.encode_to_vec())
    }

    /// Applies a committed alarm request with etcd's semantics: GET lists (all for NONE);
    /// ACTIVATE returns the alarm (already active or not; nothing for NONE); DEACTIVATE returns
    /// it if it was active.
    pub fn apply(&self, batch: &mut WriteBatch<'_>, r: &AlarmRequest) -> Result<AlarmResponse> {
        let mut resp = AlarmResponse::default();
        let at = r.alarm;
        let before = self.count(at);
        let member = AlarmMember {
            member_id: r.member_id,
            alarm: at,
        };
        let from = format!("{:x}", r.member_id);
        let name = alarm_text(&AlarmMember {
            member_id: 0,
            alarm: at,
        });
        let name = name.trim_start_matches("alarm:").trim_end();
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => resp.alarms = self.get(at),
            Ok(AlarmAction::Activate) => {
                if at == AlarmType::None as i32 {
                    return Ok(resp);
                }
                if self.set.write().insert((at, r.member_id)) {
                    self.persist(batch)?;
                }
                resp.alarms.push(member);
                if before == 0 && self.count(at) == 1 {
                    if AlarmType::try_from(at).is_ok() {
                        tracing::warn!(alarm = name, from = %from, "alarm raised");
                    } else {
                        tracing::warn!(alarm = name, "unimplemented alarm activation");
                    }
                }
            }
            Ok(AlarmAction::Deactivate) => {
                if !self.set.write().remove(&(at, r.member_id)) {
                    return Ok(resp);
                }
                self.persist(batch)?;
                resp.alarms.push(member);
                if before > 0 && self.count(at) == 0 {
                    if AlarmType::try_from(at).is_ok() {
                        tracing::warn!(alarm = name, from = %from, "alarm disarmed");
                    } else {
                        tracing::warn!(alarm = name, "unimplemented alarm deactivation");
                    }
                }
            }
            Err(_) => {}
        }
        Ok(resp)
    }

    /// Hands a reply to the task that raises this member's NOSPACE alarm first.
    pub fn hold(&self, held: HeldReply, waiters: &Waiters) {
        if let Err(e) = self.held_tx.send(held) {
            // No raiser (tests without one): answer at once.
            waiters.complete(e.0.id, e.0.reply);
        }
    }

    /// Starts the task that raises NOSPACE for `member_id` and then releases held replies.
    /// Call once, inside a tokio runtime.
    pub fn spawn_raiser(&self, raft: RaftHandle, waiters: std::sync::Arc<Waiters>) {
        let Some(mut rx) = self.held_rx.lock().take() else {
            return;
        };
        tokio::spawn(async move {
            while let Some(held) = rx.recv().await {
                let _ = raft.propose(activate_nospace(raft.member_id())).await;
                waiters.complete(held.id, held.reply);
            }
        });
    }
}

fn activate_nospace(member_id: u64) -> InternalRaftRequest {
    InternalRaftRequest {
        alarm: Some(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id,
            alarm: AlarmType::Nospace as i32,
        }),
        ..Default::default()
    }
}

impl EtcdServer {
    /// etcd's quota check before proposing a write of `cost` bytes: over the quota, this member
    /// raises its NOSPACE alarm through raft and the request fails.
    pub async fn check_quota(&self, cost: usize) -> Result<()> {
        if self.alarms.quota().available(self.store.db_size(), cost) {
            return Ok(());
        }
        let _ = self.propose(activate_nospace(self.member_id())).await;
        Err(EtcdError::NoSpace)
    }

    /// Alarm GET / ACTIVATE / DEACTIVATE through raft.
    pub async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse> {
        let req = InternalRaftRequest {
            alarm: Some(r),
            ..Default::default()
        };
        match self.propose(req).await? {
            ApplyResponse::Alarm(a) => Ok(a),
            other => Err(EtcdError::Internal(format!(
                "unexpected apply response to an alarm request: {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form() {
        let a = AlarmMember {
            member_id: 10890999222781109408,
            alarm: AlarmType::Nospace as i32,
        };
        assert_eq!(
            alarm_text(&a),
            "memberID:10890999222781109408 alarm:NOSPACE "
        );
        let c = AlarmMember {
            member_id: 1,
            alarm: AlarmType::Corrupt as i32,
        };
        assert_eq!(alarm_text(&c), "memberID:1 alarm:CORRUPT ");
    }

    fn req(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn activate_get_deactivate_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = MvccStore::open(&path).unwrap();
            let alarms = Alarms::load(&store, Quota::disabled()).unwrap();
            let mut b = store.write().unwrap();
            let r = alarms
                .apply(&mut b, &req(AlarmAction::Activate, 7, AlarmType::Nospace))
                .unwrap();
            assert_eq!(r.alarms.len(), 1);
            // Again: still answered with the alarm.
            let r = alarms
                .apply(&mut b, &req(AlarmAction::Activate, 7, AlarmType::Nospace))
                .unwrap();
            assert_eq!(r.alarms.len(), 1);
            let r = alarms
                .apply(&mut b, &req(AlarmAction::Activate, 7, AlarmType::None))
                .unwrap();
            assert!(r.alarms.is_empty());
            alarms
                .apply(&mut b, &req(AlarmAction::Activate, 3, AlarmType::Corrupt))
                .unwrap();
            let all = alarms
                .apply(&mut b, &req(AlarmAction::Get, 0, AlarmType::None))
                .unwrap();
            assert_eq!(all.alarms.len(), 2);
            let ns = alarms
                .apply(&mut b, &req(AlarmAction::Get, 0, AlarmType::Nospace))
                .unwrap();
            assert_eq!(ns.alarms.len(), 1);
            // Not active: nothing returned.
            let r = alarms
                .apply(&mut b, &req(AlarmAction::Deactivate, 9, AlarmType::Nospace))
                .unwrap();
            assert!(r.alarms.is_empty());
            let r = alarms
                .apply(&mut b, &req(AlarmAction::Deactivate, 3, AlarmType::Corrupt))
                .unwrap();
            assert_eq!(r.alarms.len(), 1);
            assert!(alarms.nospace() && !alarms.corrupt());
            b.commit(true).unwrap();
        }
        let store = MvccStore::open(&path).unwrap();
        let alarms = Alarms::load(&store, Quota::disabled()).unwrap();
        assert_eq!(
            alarms.get(AlarmType::None as i32),
            vec![AlarmMember {
                member_id: 7,
                alarm: AlarmType::Nospace as i32
            }]
        );
    }
}
