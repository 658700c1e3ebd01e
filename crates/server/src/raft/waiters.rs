//! Proposals waiting for their entry to be applied, keyed by request ID.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::EtcdError;
use crate::server::ApplyResponse;

type Reply = Result<ApplyResponse, EtcdError>;

struct Waiter {
    tx: oneshot::Sender<Reply>,
    /// Handed to raft; until then the proposal waits for a leader, as etcd's does.
    proposed: bool,
}

#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<u64, Waiter>>,
}

impl Waiters {
    pub fn register(&self, id: u64) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.map.lock().insert(
            id,
            Waiter {
                tx,
                proposed: false,
            },
        );
        rx
    }

    /// Wakes the waiter of `id`, if it is on this member and still waiting.
    pub fn complete(&self, id: u64, reply: Reply) {
        if let Some(w) = self.map.lock().remove(&id) {
            let _ = w.tx.send(reply);
        }
    }

    pub fn fail(&self, id: u64, err: EtcdError) {
        self.complete(id, Err(err));
    }

    /// Marks `id` as handed to raft; false if its caller has already given up.
    pub fn mark_proposed(&self, id: u64) -> bool {
        match self.map.lock().get_mut(&id) {
            Some(w) => {
                w.proposed = true;
                true
            }
            None => false,
        }
    }

    pub fn is_waiting(&self, id: u64) -> bool {
        self.map.lock().contains_key(&id)
    }

    /// Forgets a waiter that gave up (timed out or was cancelled); tells whether its proposal
    /// had reached raft.
    pub fn forget(&self, id: u64) -> bool {
        self.map.lock().remove(&id).is_some_and(|w| w.proposed)
    }
}
