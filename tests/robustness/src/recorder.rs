//! The shared record of a run: operations and watch streams as they complete, stamped with one
//! monotonic clock.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::history::{Op, Outcome, Request, Time, WatchStream};

pub struct Recorder {
    start: Instant,
    next_id: AtomicUsize,
    ops: Mutex<Vec<Op>>,
    watches: Mutex<Vec<WatchStream>>,
    /// The highest revision any successful answer carried: where a "recent" revision is.
    max_revision: AtomicI64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            next_id: AtomicUsize::new(0),
            ops: Mutex::new(Vec::new()),
            watches: Mutex::new(Vec::new()),
            max_revision: AtomicI64::new(1),
        }
    }

    pub fn now(&self) -> Time {
        self.start.elapsed().as_nanos() as Time
    }

    /// An operation id and its invocation time, taken just before the request is sent.
    pub fn begin(&self) -> (usize, Time) {
        (self.next_id.fetch_add(1, Ordering::Relaxed), self.now())
    }

    /// Records a finished operation (`ret` is taken now).
    pub fn finish(
        &self,
        id: usize,
        client: u32,
        member: usize,
        call: Time,
        req: Request,
        outcome: Outcome,
    ) {
        let ret = self.now();
        if let Outcome::Ok(r) = &outcome {
            self.max_revision.fetch_max(r.revision(), Ordering::Relaxed);
        }
        self.ops.lock().unwrap().push(Op {
            id,
            client,
            member,
            call,
            ret: Some(ret),
            req,
            outcome,
        });
    }

    /// Records an operation that was sent but never answered before the run ended.
    pub fn abandon(&self, id: usize, client: u32, member: usize, call: Time, req: Request) {
        self.ops.lock().unwrap().push(Op {
            id,
            client,
            member,
            call,
            ret: None,
            req,
            outcome: Outcome::Err {
                code: tonic::Code::Cancelled as i32,
                message: "not answered before the run ended".to_string(),
            },
        });
    }

    pub fn push_watch(&self, stream: WatchStream) {
        self.watches.lock().unwrap().push(stream);
    }

    pub fn max_revision(&self) -> i64 {
        self.max_revision.load(Ordering::Relaxed)
    }

    pub fn op_count(&self) -> usize {
        self.ops.lock().unwrap().len()
    }

    /// Everything recorded so far, operations in id order.
    pub fn take(&self) -> (Vec<Op>, Vec<WatchStream>) {
        let mut ops = std::mem::take(&mut *self.ops.lock().unwrap());
        ops.sort_by_key(|o| o.id);
        let watches = std::mem::take(&mut *self.watches.lock().unwrap());
        (ops, watches)
    }
}
