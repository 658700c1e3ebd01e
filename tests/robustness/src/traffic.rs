//! Random client traffic: many clients sending puts, deletes, txns with compares, ranges
//! (linearizable, serializable, at old revisions) and lease calls to random members, and
//! watchers (one that follows every key from revision 1, others from now or from old revisions),
//! all recorded in a [`Recorder`].

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::client::MemberClient;
use crate::history::{
    Compare, CompareResult, CompareTarget, Outcome, Request, Response, TxnOp, TxnResult,
};
use crate::recorder::Recorder;
use crate::watcher::{self, WatchSpec};

/// Every key the traffic touches starts with this prefix; [`KEYS_END`] ends the range.
pub const KEY_PREFIX: &str = "/k/";
pub const KEYS_END: &[u8] = b"/k0";

/// How much traffic, of what kind.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    /// Concurrent clients, each with one request in flight.
    pub clients: usize,
    /// Distinct keys (few keys: many writes race on each).
    pub keys: usize,
    /// Watchers besides the one that follows every key from revision 1.
    pub watchers: usize,
    /// Pause between two requests of one client (0: as fast as answers come).
    pub think: Duration,
    pub leases: bool,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            clients: 8,
            keys: 10,
            watchers: 3,
            think: Duration::ZERO,
            leases: true,
        }
    }
}

/// Running traffic; [`Traffic::stop`] ends it.
pub struct Traffic {
    runtime: Arc<Runtime>,
    stop: Arc<AtomicBool>,
    watch_stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
    watchers: Vec<JoinHandle<()>>,
    pub recorder: Arc<Recorder>,
    /// The last revision the all-keys watcher has seen: compaction must stay at or below it, or
    /// the checker loses the events it needs.
    pub reference_progress: Arc<AtomicI64>,
    members: Vec<MemberClient>,
}

impl Traffic {
    /// Starts `cfg.clients` clients and the watchers against the members at `urls` (index =
    /// member), with randomness from `seed`.
    pub fn start(
        runtime: Arc<Runtime>,
        urls: &[String],
        cfg: &TrafficConfig,
        seed: u64,
        recorder: Arc<Recorder>,
    ) -> Traffic {
        let _guard = runtime.enter();
        let members: Vec<MemberClient> = urls
            .iter()
            .enumerate()
            .map(|(i, u)| MemberClient::new(i, u))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let watch_stop = Arc::new(AtomicBool::new(false));
        let reference_progress = Arc::new(AtomicI64::new(0));
        let mut watchers = Vec::new();
        let reference = WatchSpec {
            watcher: 0,
            key: vec![0],
            range_end: vec![0],
            start_revision: 1,
            prev_kv: true,
            lifetime: None,
        };
        watchers.push(runtime.spawn(watcher::follow(
            reference,
            members.clone(),
            recorder.clone(),
            watch_stop.clone(),
            Some(reference_progress.clone()),
            seed ^ 0x5eed,
        )));
        for w in 1..=cfg.watchers {
            watchers.push(runtime.spawn(watcher::random_watches(
                w as u32,
                cfg.keys,
                members.clone(),
                recorder.clone(),
                watch_stop.clone(),
                seed.wrapping_add(1000 + w as u64),
            )));
        }
        let clients = (0..cfg.clients)
            .map(|c| {
                let client = Client {
                    id: c as u32,
                    rng: StdRng::seed_from_u64(seed.wrapping_add(c as u64)),
                    members: members.clone(),
                    recorder: recorder.clone(),
                    cfg: cfg.clone(),
                    seq: 0,
                    grants: 0,
                    leases: Vec::new(),
                    mod_revisions: vec![0; cfg.keys],
                    values: vec![Vec::new(); cfg.keys],
                };
                runtime.spawn(client.run(stop.clone()))
            })
            .collect();
        Traffic {
            runtime,
            stop,
            watch_stop,
            clients,
            watchers,
            recorder,
            reference_progress,
            members,
        }
    }

    pub fn members(&self) -> &[MemberClient] {
        &self.members
    }

    /// Stops the clients; each finishes its request in flight (bounded by the request timeout).
    pub fn stop_clients(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let clients = std::mem::take(&mut self.clients);
        self.runtime.block_on(async {
            for c in clients {
                let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
            }
        });
    }

    /// Stops the watchers once the all-keys watcher has seen revision `until` (or `grace`
    /// passed). Returns whether it saw `until`.
    pub fn stop_watchers(mut self, until: i64, grace: Duration) -> bool {
        self.stop_clients();
        let progress = self.reference_progress.clone();
        let watch_stop = self.watch_stop.clone();
        let watchers = std::mem::take(&mut self.watchers);
        self.runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + grace;
            while progress.load(Ordering::SeqCst) < until && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            watch_stop.store(true, Ordering::SeqCst);
            for w in watchers {
                let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
            }
        });
        progress.load(Ordering::SeqCst) >= until
    }
}

/// One client: one request at a time, to a random member.
struct Client {
    id: u32,
    rng: StdRng,
    members: Vec<MemberClient>,
    recorder: Arc<Recorder>,
    cfg: TrafficConfig,
    seq: u64,
    /// Lease grants sent (the low half of the next lease id).
    grants: i64,
    /// Leases this client granted and has not revoked.
    leases: Vec<i64>,
    /// Per key, the last mod revision and value this client read or wrote (for txn compares).
    mod_revisions: Vec<i64>,
    values: Vec<Vec<u8>>,
}

pub fn key(i: usize) -> Vec<u8> {
    format!("{KEY_PREFIX}{i}").into_bytes()
}

impl Client {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            let member = self.rng.random_range(0..self.members.len());
            let req = self.next_request();
            let (id, call) = self.recorder.begin();
            let outcome = self.members[member].call(&req).await;
            self.learn(&req, &outcome);
            let failed = matches!(outcome, Outcome::Err { .. });
            self.recorder
                .finish(id, self.id, member, call, req, outcome);
            if failed {
                // A dead or partitioned member fails fast; do not spin on it.
                tokio::time::sleep(Duration::from_millis(20)).await;
            } else if !self.cfg.think.is_zero() {
                tokio::time::sleep(self.cfg.think).await;
            }
        }
    }

    fn unique_value(&mut self) -> Vec<u8> {
        self.seq += 1;
        format!("c{}-{}", self.id, self.seq).into_bytes()
    }

    fn random_key(&mut self) -> usize {
        self.rng.random_range(0..self.cfg.keys)
    }

    fn next_request(&mut self) -> Request {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..25 => {
                let k = self.random_key();
                let lease =
                    if self.cfg.leases && !self.leases.is_empty() && self.rng.random_bool(0.15) {
                        self.leases[self.rng.random_range(0..self.leases.len())]
                    } else {
                        0
                    };
                Request::Put {
                    key: key(k),
                    value: self.unique_value(),
                    lease,
                }
            }
            25..32 => Request::Delete {
                key: key(self.random_key()),
                range_end: Vec::new(),
            },
            32..34 => {
                let a = self.random_key();
                let b = (a + self.rng.random_range(1..4)).min(self.cfg.keys);
                Request::Delete {
                    key: key(a),
                    range_end: key(b),
                }
            }
            34..49 => self.txn(),
            49..69 => self.range(false, 0),
            69..79 => self.range(true, 0),
            79..84 => {
                let newest = self.recorder.max_revision();
                let back = self.rng.random_range(0..50);
                let serializable = self.rng.random_bool(0.5);
                self.range(serializable, (newest - back).max(1))
            }
            84..88 if self.cfg.leases => {
                // Never the same id twice: a grant whose answer was lost is still told apart.
                self.grants += 1;
                Request::LeaseGrant {
                    id: ((self.id as i64 + 1) << 32) | self.grants,
                    ttl: self.rng.random_range(2..8),
                }
            }
            88..94 if self.cfg.leases && !self.leases.is_empty() => Request::LeaseKeepAlive {
                id: self.leases[self.rng.random_range(0..self.leases.len())],
            },
            94..97 if self.cfg.leases && !self.leases.is_empty() => {
                let i = self.rng.random_range(0..self.leases.len());
                Request::LeaseRevoke {
                    id: self.leases.swap_remove(i),
                }
            }
            _ => self.range(false, 0),
        }
    }

    fn range(&mut self, serializable: bool, revision: i64) -> Request {
        if self.rng.random_bool(0.5) {
            Request::Range {
                key: key(self.random_key()),
                range_end: Vec::new(),
                revision,
                limit: 0,
                serializable,
            }
        } else {
            Request::Range {
                key: KEY_PREFIX.as_bytes().to_vec(),
                range_end: KEYS_END.to_vec(),
                revision,
                limit: if self.rng.random_bool(0.3) { 3 } else { 0 },
                serializable,
            }
        }
    }

    /// A txn whose compare holds or not depending on what other clients did meanwhile.
    fn txn(&mut self) -> Request {
        let k = self.random_key();
        let other = self.random_key();
        match self.rng.random_range(0..3) {
            // Compare-and-swap on the last mod revision this client saw.
            0 => Request::Txn {
                compares: vec![Compare {
                    key: key(k),
                    target: CompareTarget::ModRevision(self.mod_revisions[k]),
                    result: CompareResult::Equal,
                }],
                success: vec![TxnOp::Put {
                    key: key(k),
                    value: self.unique_value(),
                    lease: 0,
                }],
                failure: vec![TxnOp::Range {
                    key: key(k),
                    range_end: Vec::new(),
                }],
            },
            // On the last value this client saw: delete it, or write two keys.
            1 => Request::Txn {
                compares: vec![Compare {
                    key: key(k),
                    target: CompareTarget::Value(self.values[k].clone()),
                    result: CompareResult::Equal,
                }],
                success: vec![TxnOp::Delete {
                    key: key(k),
                    range_end: Vec::new(),
                }],
                failure: vec![
                    TxnOp::Put {
                        key: key(k),
                        value: self.unique_value(),
                        lease: 0,
                    },
                    TxnOp::Put {
                        key: key(other),
                        value: self.unique_value(),
                        lease: 0,
                    },
                ],
            },
            // Exists or not: a read-only branch on one side.
            _ => Request::Txn {
                compares: vec![Compare {
                    key: key(k),
                    target: CompareTarget::Version(0),
                    result: CompareResult::Greater,
                }],
                success: vec![
                    TxnOp::Range {
                        key: KEY_PREFIX.as_bytes().to_vec(),
                        range_end: KEYS_END.to_vec(),
                    },
                    TxnOp::Put {
                        key: key(other),
                        value: self.unique_value(),
                        lease: 0,
                    },
                ],
                failure: vec![TxnOp::Range {
                    key: key(k),
                    range_end: Vec::new(),
                }],
            },
        }
    }

    /// Keeps what the next compares should look at, and the leases granted.
    fn learn(&mut self, req: &Request, outcome: &Outcome) {
        let Outcome::Ok(resp) = outcome else {
            return;
        };
        let index_of = |key: &[u8]| -> Option<usize> {
            std::str::from_utf8(key)
                .ok()?
                .strip_prefix(KEY_PREFIX)?
                .parse()
                .ok()
        };
        let seen = |kvs: &[crate::history::KeyValue], this: &mut Client| {
            for kv in kvs {
                if let Some(i) = index_of(&kv.key) {
                    if i < this.cfg.keys {
                        this.mod_revisions[i] = kv.mod_revision;
                        this.values[i] = kv.value.clone();
                    }
                }
            }
        };
        match (req, resp) {
            (Request::Range { revision: 0, .. }, Response::Range { kvs, .. }) => seen(kvs, self),
            (Request::Put { key, value, .. }, Response::Put { revision }) => {
                if let Some(i) = index_of(key) {
                    self.mod_revisions[i] = *revision;
                    self.values[i] = value.clone();
                }
            }
            (Request::Txn { .. }, Response::Txn { results, .. }) => {
                for r in results {
                    if let TxnResult::Range { kvs, .. } = r {
                        seen(kvs, self);
                    }
                }
            }
            (Request::LeaseGrant { id, .. }, Response::LeaseGrant { .. }) => {
                self.leases.push(*id);
            }
            (Request::LeaseKeepAlive { id }, Response::LeaseKeepAlive { ttl, .. }) if *ttl <= 0 => {
                self.leases.retain(|l| l != id);
            }
            _ => {}
        }
    }
}
