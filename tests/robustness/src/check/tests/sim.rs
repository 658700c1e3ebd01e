//! A tiny model of an etcd server for building histories in tests: it applies writes, keeps the
//! events of every revision, and records operations with the answers a correct server gives.
//! Tests then break the recorded history to see that the checker notices.

use std::collections::BTreeMap;

use crate::history::{
    Compare, CompareResult, CompareTarget, Event, EventKind, History, KeyValue, MemberState, Op,
    Outcome, Request, Response, TxnOp, TxnResult, WatchResponse, WatchStream,
};

pub(super) fn k(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Milliseconds to the history's nanoseconds.
pub(super) fn ms(t: u64) -> u64 {
    t * 1_000_000
}

pub(super) struct Sim {
    pub(super) rev: i64,
    kv: BTreeMap<Vec<u8>, KeyValue>,
    /// State after each revision (index = revision), when kept.
    snapshots: Option<Vec<BTreeMap<Vec<u8>, KeyValue>>>,
    /// (revision, time the events were sent, events).
    pub(super) log: Vec<(i64, u64, Vec<Event>)>,
    pub(super) h: History,
}

/// One write of a txn branch or a plain write.
#[derive(Clone)]
pub(super) enum W {
    Put(&'static str, &'static str, i64),
    Del(&'static str),
}

impl Sim {
    pub(super) fn new() -> Sim {
        Sim::with_snapshots(true)
    }

    pub(super) fn with_snapshots(keep: bool) -> Sim {
        Sim {
            rev: 1,
            kv: BTreeMap::new(),
            snapshots: keep.then(|| vec![BTreeMap::new(), BTreeMap::new()]),
            log: Vec::new(),
            h: History {
                seed: 7,
                scenario: "test".to_string(),
                ..History::default()
            },
        }
    }

    /// Applies writes as one revision (if they change anything) at time `t`; returns the events.
    pub(super) fn apply(&mut self, writes: &[W], t: u64) -> Vec<Event> {
        let rev = self.rev + 1;
        let mut events = Vec::new();
        for w in writes {
            match w {
                W::Put(key, value, lease) => {
                    let prev = self.kv.get(&k(key)).cloned();
                    let kv = KeyValue {
                        key: k(key),
                        value: k(value),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: *lease,
                    };
                    self.kv.insert(k(key), kv.clone());
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev_kv: prev,
                    });
                }
                W::Del(key) => {
                    if let Some(prev) = self.kv.remove(&k(key)) {
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv: KeyValue {
                                key: k(key),
                                value: vec![],
                                create_revision: 0,
                                mod_revision: rev,
                                version: 0,
                                lease: 0,
                            },
                            prev_kv: Some(prev),
                        });
                    }
                }
            }
        }
        if !events.is_empty() {
            self.rev = rev;
            if let Some(s) = &mut self.snapshots {
                s.push(self.kv.clone());
            }
            self.log.push((rev, t, events.clone()));
        }
        events
    }

    fn state_at(&self, rev: i64) -> &BTreeMap<Vec<u8>, KeyValue> {
        match &self.snapshots {
            Some(s) => &s[rev as usize],
            None => {
                assert_eq!(rev, self.rev, "old states are not kept");
                &self.kv
            }
        }
    }

    pub(super) fn record(
        &mut self,
        client: u32,
        member: usize,
        call: u64,
        ret: Option<u64>,
        req: Request,
        outcome: Outcome,
    ) -> usize {
        let id = self.h.ops.len();
        self.h.ops.push(Op {
            id,
            client,
            member,
            call: ms(call),
            ret: ret.map(ms),
            req,
            outcome,
        });
        id
    }

    pub(super) fn put(
        &mut self,
        member: usize,
        call: u64,
        ret: u64,
        key: &'static str,
        value: &'static str,
        lease: i64,
    ) -> usize {
        self.apply(&[W::Put(key, value, lease)], ms(ret));
        let req = Request::Put {
            key: k(key),
            value: k(value),
            lease,
        };
        self.record(
            1,
            member,
            call,
            Some(ret),
            req,
            Outcome::Ok(Response::Put { revision: self.rev }),
        )
    }

    /// A put that timed out; `applied` says whether the server applied it anyway.
    pub(super) fn put_unknown(
        &mut self,
        call: u64,
        key: &'static str,
        value: &'static str,
        applied: bool,
    ) -> usize {
        if applied {
            self.apply(&[W::Put(key, value, 0)], ms(call + 1));
        }
        let req = Request::Put {
            key: k(key),
            value: k(value),
            lease: 0,
        };
        let outcome = Outcome::Err {
            code: 4,
            message: "context deadline exceeded".to_string(),
        };
        self.record(2, 0, call, Some(call + 100), req, outcome)
    }

    /// A delete that timed out; `applied` says whether the server applied it anyway.
    pub(super) fn delete_unknown(&mut self, call: u64, key: &'static str, applied: bool) -> usize {
        if applied {
            self.apply(&[W::Del(key)], ms(call + 1));
        }
        let req = Request::Delete {
            key: k(key),
            range_end: vec![],
        };
        let outcome = Outcome::Err {
            code: 14,
            message: "connection reset".to_string(),
        };
        self.record(2, 1, call, Some(call + 100), req, outcome)
    }

    pub(super) fn delete(
        &mut self,
        member: usize,
        call: u64,
        ret: u64,
        key: &'static str,
    ) -> usize {
        let deleted = self.apply(&[W::Del(key)], ms(ret)).len() as i64;
        let req = Request::Delete {
            key: k(key),
            range_end: vec![],
        };
        let outcome = Outcome::Ok(Response::Delete {
            revision: self.rev,
            deleted,
        });
        self.record(1, member, call, Some(ret), req, outcome)
    }

    fn holds(&self, c: &Compare) -> bool {
        let kv = self.kv.get(&c.key);
        let ord = match (&c.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(v), Some(kv)) => kv.value.cmp(v),
            (CompareTarget::ModRevision(n), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(n),
            (CompareTarget::CreateRevision(n), kv) => kv.map_or(0, |kv| kv.create_revision).cmp(n),
            (CompareTarget::Version(n), kv) => kv.map_or(0, |kv| kv.version).cmp(n),
        };
        match c.result {
            CompareResult::Equal => ord.is_eq(),
            CompareResult::NotEqual => ord.is_ne(),
            CompareResult::Greater => ord.is_gt(),
            CompareResult::Less => ord.is_lt(),
        }
    }

    /// A txn of single-key ranges, puts and deletes. `force` makes the server run that branch
    /// whatever the compares say (a broken server).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn txn(
        &mut self,
        member: usize,
        call: u64,
        ret: u64,
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
        force: Option<bool>,
    ) -> usize {
        let succeeded = force.unwrap_or_else(|| compares.iter().all(|c| self.holds(c)));
        let branch = if succeeded { &success } else { &failure };
        let mut results = Vec::new();
        let mut writes = Vec::new();
        for op in branch {
            match op {
                TxnOp::Range { key, .. } => {
                    let kvs: Vec<KeyValue> = self.kv.get(key).cloned().into_iter().collect();
                    results.push(TxnResult::Range {
                        count: kvs.len() as i64,
                        kvs,
                    });
                }
                TxnOp::Put { key, value, lease } => {
                    let (key, value) = (leak(key), leak(value));
                    writes.push(W::Put(key, value, *lease));
                    results.push(TxnResult::Put);
                }
                TxnOp::Delete { key, .. } => {
                    let deleted = i64::from(self.kv.contains_key(key));
                    writes.push(W::Del(leak(key)));
                    results.push(TxnResult::Delete { deleted });
                }
            }
        }
        self.apply(&writes, ms(ret));
        let req = Request::Txn {
            compares,
            success,
            failure,
        };
        let outcome = Outcome::Ok(Response::Txn {
            revision: self.rev,
            succeeded,
            results,
        });
        self.record(1, member, call, Some(ret), req, outcome)
    }

    /// A range read answered with the state at `header` (0: the current revision).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn range(
        &mut self,
        member: usize,
        call: u64,
        ret: u64,
        key: &str,
        range_end: &str,
        header: i64,
        limit: i64,
        serializable: bool,
    ) -> usize {
        let header = if header == 0 { self.rev } else { header };
        let (key, range_end) = (k(key), k(range_end));
        let all: Vec<KeyValue> = self
            .state_at(header)
            .values()
            .filter(|kv| {
                if range_end.is_empty() {
                    kv.key == key
                } else {
                    kv.key >= key && (range_end == [0] || kv.key < range_end)
                }
            })
            .cloned()
            .collect();
        let count = all.len() as i64;
        let more = limit > 0 && count > limit;
        let kvs = if more {
            all[..limit as usize].to_vec()
        } else {
            all
        };
        let req = Request::Range {
            key,
            range_end,
            revision: 0,
            limit,
            serializable,
        };
        let outcome = Outcome::Ok(Response::Range {
            revision: header,
            kvs,
            count,
            more,
        });
        self.record(3, member, call, Some(ret), req, outcome)
    }

    pub(super) fn ok(&mut self, member: usize, call: u64, ret: u64, req: Request) -> usize {
        let revision = self.rev;
        let resp = match &req {
            Request::LeaseGrant { id, ttl } => Response::LeaseGrant {
                revision,
                id: *id,
                ttl: *ttl,
            },
            Request::LeaseKeepAlive { .. } => Response::LeaseKeepAlive { revision, ttl: 10 },
            Request::Compact { .. } => Response::Compact { revision },
            _ => panic!("use the dedicated helper"),
        };
        self.record(4, member, call, Some(ret), req, Outcome::Ok(resp))
    }

    /// Revokes (`op` true: acknowledged revoke) or expires a lease: deletes its keys.
    pub(super) fn end_lease(&mut self, lease: i64, call: u64, ret: u64, op: bool) {
        let keys: Vec<&'static str> = self
            .kv
            .values()
            .filter(|kv| kv.lease == lease)
            .map(|kv| leak(&kv.key))
            .collect();
        let writes: Vec<W> = keys.into_iter().map(W::Del).collect();
        self.apply(&writes, ms(ret));
        if op {
            let resp = Response::LeaseRevoke { revision: self.rev };
            self.record(
                4,
                0,
                call,
                Some(ret),
                Request::LeaseRevoke { id: lease },
                Outcome::Ok(resp),
            );
        }
    }

    /// A watch stream over every key from `start` (0: from now, created at `call`), reporting
    /// each revision of the log from there on in one response.
    pub(super) fn watch_all(&self, watcher: u32, start: i64, call: u64) -> WatchStream {
        self.watch(watcher, "\0", "\0", start, self.rev, call)
    }

    /// A watch stream over `[key, range_end)` from `start`, or when `start` is 0 from the
    /// revision after `created` (the revision when it was created).
    pub(super) fn watch(
        &self,
        watcher: u32,
        key: &str,
        range_end: &str,
        start: i64,
        created: i64,
        call: u64,
    ) -> WatchStream {
        let from = if start == 0 { created + 1 } else { start };
        let (key, range_end) = (k(key), k(range_end));
        let within = |e: &Event| {
            if range_end.is_empty() {
                e.kv.key == key
            } else {
                e.kv.key >= key && (range_end == [0] || e.kv.key < range_end)
            }
        };
        let mut responses = vec![WatchResponse {
            time: ms(call),
            revision: created,
            created: true,
            canceled: false,
            compact_revision: 0,
            cancel_reason: String::new(),
            events: vec![],
        }];
        for (rev, t, events) in self.log.iter().filter(|(r, _, _)| *r >= from) {
            let events: Vec<Event> = events.iter().filter(|e| within(e)).cloned().collect();
            if events.is_empty() {
                continue;
            }
            responses.push(WatchResponse {
                time: (*t).max(ms(call)),
                revision: *rev,
                created: false,
                canceled: false,
                compact_revision: 0,
                cancel_reason: String::new(),
                events,
            });
        }
        WatchStream {
            watcher,
            member: 0,
            key,
            range_end,
            start_revision: start,
            prev_kv: true,
            call: ms(call),
            responses,
            error: None,
        }
    }

    /// The history: the given extra streams after the all-keys watcher 0 from revision 1, the
    /// final read and three members that agree.
    pub(super) fn finish(self, extra: Vec<WatchStream>) -> History {
        let mut watches = vec![self.watch_all(0, 1, 0)];
        watches.extend(extra);
        self.finish_streams(watches)
    }

    /// The history with exactly these watch streams.
    pub(super) fn finish_streams(mut self, watches: Vec<WatchStream>) -> History {
        self.h.watches = watches;
        self.h.final_kvs = self.kv.values().cloned().collect();
        self.h.final_revision = self.rev;
        self.h.members = (0..3)
            .map(|member| MemberState {
                member,
                revision: self.rev,
                compact_revision: 0,
                hash_kv: 0xfeed,
            })
            .collect();
        self.h
    }
}

/// Test keys and values as `&'static str` (tests are short-lived).
fn leak(b: &[u8]) -> &'static str {
    Box::leak(String::from_utf8(b.to_vec()).unwrap().into_boxed_str())
}

pub(super) fn value_is(key: &str, value: &str) -> Compare {
    Compare {
        key: k(key),
        target: CompareTarget::Value(k(value)),
        result: CompareResult::Equal,
    }
}

pub(super) fn tput(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: k(key),
        value: k(value),
        lease: 0,
    }
}

pub(super) fn tget(key: &str) -> TxnOp {
    TxnOp::Range {
        key: k(key),
        range_end: vec![],
    }
}
