//! Proposals waiting for their entry to be applied, keyed by request ID.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::EtcdError;
use crate::server::ApplyResponse;

type Reply = Result<ApplyResponse, EtcdError>;

#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
}

impl Waiters {
    pub fn register(&self, id: u64) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.map.lock().insert(id, tx);
        rx
    }

    /// Wakes the waiter of `id`, if it is on this member and still waiting.
    pub fn complete(&self, id: u64, reply: Reply) {
        if let Some(tx) = self.map.lock().remove(&id) {
            let _ = tx.send(reply);
        }
    }

    pub fn fail(&self, id: u64, err: EtcdError) {
        self.complete(id, Err(err));
    }

    /// Forgets a waiter that gave up (timed out or was cancelled).
    pub fn forget(&self, id: u64) {
        self.map.lock().remove(&id);
    }
}
