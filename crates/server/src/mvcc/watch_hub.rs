//! The watch hub: delivers MVCC events to watchers, etcd's `watchableStore`.
//!
//! Watchers are grouped in streams (one per gRPC Watch call, [`WatchStream`]). A watcher is
//! either *synced* — it has been sent every event up to the last revision the apply loop
//! announced, and is in the hub's index so `notify` matches new events to it — or *unsynced*,
//! owned by its stream, which reads what it misses from the store (`events_between`) and then
//! puts it back into the index.
//!
//! Ordering without blocking the writer:
//! - `notify` (apply loop) matches events under the hub lock and `try_send`s one message per
//!   stream into a bounded channel; it never waits. If a stream's channel is full, the watchers
//!   that message was for leave the index and become "lagged", remembering the first revision
//!   they did not get and how many messages had been queued before (`after`). Nothing else is
//!   lost: every message ever queued is still delivered, in order.
//! - The stream catches a lagged watcher up only once it has consumed those earlier messages, so
//!   per watcher the catch-up follows everything it was already sent.
//! - Catch-up reads up to the last announced revision; a watcher rejoins the index only if that
//!   is still the last announced revision (checked under the hub lock), else it reads again.
//!   From then on `notify` covers it, and its `min_rev` drops anything catch-up already sent.
//! - Everything that is queued into a stream's channel is queued under the hub lock, so
//!   progress markers (a revision with no events) are ordered after every event up to that
//!   revision, which is what clients rely on when they resume from a progress notification.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxcd_api::etcdserverpb::{watch_create_request::FilterType, WatchCreateRequest};
use oxcd_api::mvccpb::{event::EventType, Event};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::MvccStore;
use crate::error::{EtcdError, Result};

/// etcd's default `--experimental-watch-progress-notify-interval`.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);
/// Messages a stream may have queued before its watchers fall back to catch-up (etcd's
/// `chanBufLen`).
pub const DEFAULT_STREAM_BUFFER: usize = 128;
/// Revisions read per catch-up step (etcd's `watchBatchMaxRevs`): bounds the memory and the
/// time one step takes, so a far-behind watcher does not stall its stream's other watchers.
const CATCH_UP_REVISIONS: usize = 1000;
/// Up to this many prev_kv lookups are done inline; more go to a blocking thread.
const INLINE_PREV_KV: usize = 16;
/// etcd's reply text when a client-chosen watch id is taken.
pub const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// etcd's reply text when range_end <= key.
pub const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// The watch id etcd uses for responses that belong to no watcher.
pub const INVALID_WATCH_ID: i64 = -1;

/// Which keys a watcher covers, with etcd's conventions already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    key: Arc<[u8]>,
    /// None: the single key `key`. Some(empty): every key >= `key`. Some(end): [key, end).
    end: Option<Arc<[u8]>>,
}

impl Target {
    fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => k == &*self.key,
            Some(end) => k >= &*self.key && (end.is_empty() || k < &**end),
        }
    }

    /// `range_end` as the store's API spells it (etcd's: empty = one key, "\0" = to the end).
    fn store_range_end(&self) -> &[u8] {
        match &self.end {
            None => &[],
            Some(end) if end.is_empty() => &[0],
            Some(end) => end,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Filters {
    no_put: bool,
    no_delete: bool,
}

impl Filters {
    fn from_request(filters: &[i32]) -> Filters {
        let mut f = Filters::default();
        for &x in filters {
            match FilterType::try_from(x) {
                Ok(FilterType::Noput) => f.no_put = true,
                Ok(FilterType::Nodelete) => f.no_delete = true,
                // etcd ignores filter values it does not know.
                Err(_) => {}
            }
        }
        f
    }

    fn accepts(self, ev: &Event) -> bool {
        if ev.r#type == EventType::Delete as i32 {
            !self.no_delete
        } else {
            !self.no_put
        }
    }
}

/// A watcher in the hub's index.
struct Synced {
    stream: u64,
    target: Target,
    filters: Filters,
    /// Events below this revision were sent by catch-up (or precede the watch's start).
    min_rev: i64,
}

/// A watcher taken out of the index because its stream's channel was full.
#[derive(Debug)]
struct Lagged {
    watcher: u64,
    /// The first revision it has not been sent.
    next_rev: i64,
    /// How many messages had been queued to the stream before: they precede its catch-up.
    after: u64,
}

/// What `notify` and the progress requests queue for a stream.
enum HubMsg {
    Events {
        revision: i64,
        /// The events of the batch that matched any watcher of any stream, shared.
        events: Arc<[Event]>,
        /// Per watcher, the indexes into `events` it gets, ascending.
        matches: Vec<(u64, Vec<u32>)>,
    },
    /// Periodic progress for these watchers: nothing for them up to `revision` is pending.
    Progress { revision: i64, watchers: Vec<u64> },
    /// Answer to a WatchProgressRequest: every watcher of the stream is synced to `revision`.
    ProgressAll { revision: i64 },
}

struct StreamSlot {
    tx: mpsc::Sender<HubMsg>,
    /// Messages queued so far.
    sent: u64,
    lagged: Vec<Lagged>,
    /// Set (and `wake` notified) when `lagged` gets entries.
    lag_flag: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

/// The synced watchers by key: single keys hashed, ranges ordered by start key and grouped by
/// identical range so that many watchers on one prefix cost one comparison per event.
#[derive(Default)]
struct Index {
    single: HashMap<Arc<[u8]>, Vec<u64>>,
    /// start key -> the groups of watchers starting there, one per distinct end.
    ranges: BTreeMap<Arc<[u8]>, Vec<RangeGroup>>,
}

struct RangeGroup {
    /// Empty: unbounded.
    end: Arc<[u8]>,
    watchers: Vec<u64>,
}

impl Index {
    fn insert(&mut self, t: &Target, w: u64) {
        match &t.end {
            None => self.single.entry(t.key.clone()).or_default().push(w),
            Some(end) => {
                let groups = self.ranges.entry(t.key.clone()).or_default();
                match groups.iter_mut().find(|g| g.end == *end) {
                    Some(g) => g.watchers.push(w),
                    None => groups.push(RangeGroup {
                        end: end.clone(),
                        watchers: vec![w],
                    }),
                }
            }
        }
    }

    fn remove(&mut self, t: &Target, w: u64) {
        fn drop_from(ws: &mut Vec<u64>, w: u64) {
            if let Some(i) = ws.iter().position(|&x| x == w) {
                ws.swap_remove(i);
            }
        }
        match &t.end {
            None => {
                if let Some(ws) = self.single.get_mut(&t.key) {
                    drop_from(ws, w);
                    if ws.is_empty() {
                        self.single.remove(&t.key);
                    }
                }
            }
            Some(end) => {
                if let Some(groups) = self.ranges.get_mut(&t.key) {
                    if let Some(gi) = groups.iter().position(|g| g.end == *end) {
                        drop_from(&mut groups[gi].watchers, w);
                        if groups[gi].watchers.is_empty() {
                            groups.swap_remove(gi);
                        }
                    }
                    if groups.is_empty() {
                        self.ranges.remove(&t.key);
                    }
                }
            }
        }
    }

    /// Calls `f` for every watcher whose range holds `key`.
    fn for_each_match(&self, key: &[u8], mut f: impl FnMut(u64)) {
        if let Some(ws) = self.single.get(key) {
            ws.iter().for_each(|&w| f(w));
        }
        for (_, groups) in self
            .ranges
            .range::<[u8], _>((std::ops::Bound::Unbounded, std::ops::Bound::Included(key)))
        {
            for g in groups {
                if g.end.is_empty() || key < &*g.end {
                    g.watchers.iter().for_each(|&w| f(w));
                }
            }
        }
    }
}

struct HubState {
    /// The last revision `notify` announced: every synced watcher has been queued every event
    /// up to it.
    notified_rev: i64,
    index: Index,
    synced: HashMap<u64, Synced>,
    streams: HashMap<u64, StreamSlot>,
}

impl HubState {
    fn unindex(&mut self, w: u64) -> Option<Synced> {
        let s = self.synced.remove(&w)?;
        self.index.remove(&s.target, w);
        Some(s)
    }
}

/// Counts for metrics (etcd's `etcd_debugging_mvcc_*watch*` gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchStats {
    pub streams: usize,
    pub watchers: usize,
    /// Watchers catching up from the store (etcd's "slow" watchers).
    pub unsynced: usize,
}

pub struct WatchHub {
    store: Arc<MvccStore>,
    state: Mutex<HubState>,
    /// `state.notified_rev`, readable without the lock.
    notified_rev: AtomicI64,
    next_stream: AtomicU64,
    next_watcher: AtomicU64,
    watchers: AtomicUsize,
    progress_interval_ms: AtomicU64,
    stream_buffer: AtomicUsize,
}

impl WatchHub {
    /// A hub whose watchers start after the store's current revision.
    pub fn new(store: Arc<MvccStore>) -> Arc<WatchHub> {
        let rev = store.current_revision();
        Arc::new(WatchHub {
            store,
            state: Mutex::new(HubState {
                notified_rev: rev,
                index: Index::default(),
                synced: HashMap::new(),
                streams: HashMap::new(),
            }),
            notified_rev: AtomicI64::new(rev),
            next_stream: AtomicU64::new(1),
            next_watcher: AtomicU64::new(1),
            watchers: AtomicUsize::new(0),
            progress_interval_ms: AtomicU64::new(DEFAULT_PROGRESS_INTERVAL.as_millis() as u64),
            stream_buffer: AtomicUsize::new(DEFAULT_STREAM_BUFFER),
        })
    }

    pub fn store(&self) -> &Arc<MvccStore> {
        &self.store
    }

    /// Interval of progress notifications to watchers that asked for them; applies to streams
    /// opened afterwards.
    pub fn set_progress_interval(&self, d: Duration) {
        let ms = (d.as_millis() as u64).max(1);
        self.progress_interval_ms.store(ms, Ordering::Relaxed);
    }

    pub fn progress_interval(&self) -> Duration {
        Duration::from_millis(self.progress_interval_ms.load(Ordering::Relaxed))
    }

    /// Channel capacity of streams opened afterwards (tests shrink it to force catch-up).
    pub fn set_stream_buffer(&self, n: usize) {
        self.stream_buffer.store(n.max(1), Ordering::Relaxed);
    }

    /// The last revision announced by `notify`.
    pub fn notified_revision(&self) -> i64 {
        self.notified_rev.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> WatchStats {
        let st = self.state.lock();
        let watchers = self.watchers.load(Ordering::Relaxed);
        WatchStats {
            streams: st.streams.len(),
            watchers,
            unsynced: watchers.saturating_sub(st.synced.len()),
        }
    }

    /// Called by the apply loop after each committed batch: `events` in revision order, all
    /// above the previous call's `revision`; `revision` is the store's new current revision.
    /// Never blocks: a stream that cannot take the events has its watchers catch up later.
    pub fn notify(&self, events: &[Event], revision: i64) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let from_rev = st.notified_rev + 1;
        if revision > st.notified_rev {
            st.notified_rev = revision;
            self.notified_rev.store(revision, Ordering::Release);
        }
        if st.synced.is_empty() || events.is_empty() {
            return;
        }

        // Match: watcher -> indexes of its events (ascending, since events are walked in order).
        let mut per_watcher: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut used = vec![false; events.len()];
        for (i, ev) in events.iter().enumerate() {
            let Some(kv) = ev.kv.as_ref() else { continue };
            st.index.for_each_match(&kv.key, |w| {
                let s = &st.synced[&w];
                if kv.mod_revision >= s.min_rev
                    && s.filters.accepts(ev)
                    && !crate::failpoints::fires(crate::failpoints::BUG_WATCH_SKIP_EVENT)
                {
                    per_watcher.entry(w).or_default().push(i as u32);
                    used[i] = true;
                }
            });
        }
        if per_watcher.is_empty() {
            return;
        }

        // Share only the matched events, once for all streams.
        let mut remap = vec![u32::MAX; events.len()];
        let mut shared = Vec::with_capacity(used.iter().filter(|&&u| u).count());
        for (i, ev) in events.iter().enumerate() {
            if used[i] {
                remap[i] = shared.len() as u32;
                shared.push(ev.clone());
            }
        }
        let shared: Arc<[Event]> = shared.into();

        let mut by_stream: HashMap<u64, Vec<(u64, Vec<u32>)>> = HashMap::new();
        for (w, mut idx) in per_watcher {
            idx.iter_mut().for_each(|i| *i = remap[*i as usize]);
            by_stream
                .entry(st.synced[&w].stream)
                .or_default()
                .push((w, idx));
        }

        for (sid, matches) in by_stream {
            let Some(slot) = st.streams.get_mut(&sid) else {
                continue;
            };
            let msg = HubMsg::Events {
                revision,
                events: shared.clone(),
                matches,
            };
            match slot.tx.try_send(msg) {
                Ok(()) => slot.sent += 1,
                Err(mpsc::error::TrySendError::Full(HubMsg::Events { matches, .. })) => {
                    // The stream is behind: these watchers catch up from the store, starting
                    // with this batch, after the messages already queued.
                    for (w, _) in matches {
                        if let Some(s) = st.synced.remove(&w) {
                            st.index.remove(&s.target, w);
                            slot.lagged.push(Lagged {
                                watcher: w,
                                next_rev: s.min_rev.max(from_rev),
                                after: slot.sent,
                            });
                        }
                    }
                    slot.lag_flag.store(true, Ordering::Release);
                    slot.wake.notify_one();
                }
                // Closed: the stream is being dropped and removes its watchers itself.
                Err(_) => {}
            }
        }
    }

    /// After the store was replaced (raft snapshot) or otherwise jumped: every synced watcher
    /// catches up from the new store contents (or is cancelled as compacted), as etcd's
    /// watchable store does on restore.
    pub fn resync(&self) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let from_rev = st.notified_rev + 1;
        for (w, s) in st.synced.drain() {
            if let Some(slot) = st.streams.get_mut(&s.stream) {
                slot.lagged.push(Lagged {
                    watcher: w,
                    next_rev: s.min_rev.max(from_rev),
                    after: slot.sent,
                });
                slot.lag_flag.store(true, Ordering::Release);
                slot.wake.notify_one();
            }
        }
        st.index = Index::default();
        let rev = self.store.current_revision();
        st.notified_rev = rev;
        self.notified_rev.store(rev, Ordering::Release);
    }

    /// A new multiplexed stream of watchers (one per gRPC Watch call).
    pub fn open_stream(self: &Arc<Self>) -> WatchStream {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.stream_buffer.load(Ordering::Relaxed));
        let wake = Arc::new(Notify::new());
        let lag_flag = Arc::new(AtomicBool::new(false));
        self.state.lock().streams.insert(
            id,
            StreamSlot {
                tx,
                sent: 0,
                lagged: Vec::new(),
                lag_flag: lag_flag.clone(),
                wake: wake.clone(),
            },
        );
        let period = self.progress_interval();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        WatchStream {
            hub: self.clone(),
            id,
            rx,
            wake,
            lag_flag,
            received: 0,
            watchers: HashMap::new(),
            ids: HashMap::new(),
            next_watch_id: 0,
            catch_up: VecDeque::new(),
            waiting: Vec::new(),
            job: None,
            ready: VecDeque::new(),
            tick,
            deferred_progress: false,
        }
    }
}

/// What a stream hands to its gRPC layer, in the order it must be sent.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchOutput {
    /// Events of whole revisions for one watcher; `revision` goes in the header.
    Events {
        watch_id: i64,
        revision: i64,
        events: Vec<Event>,
        /// The watcher accepts the response split into fragments.
        fragment: bool,
    },
    /// No events for `watch_id` up to `revision` are pending; `INVALID_WATCH_ID` for the
    /// answer to a WatchProgressRequest (all watchers of the stream).
    Progress { watch_id: i64, revision: i64 },
    /// The watcher is gone: its start revision was compacted (`compact_revision` > 0) or its
    /// catch-up failed (`reason`).
    Canceled {
        watch_id: i64,
        compact_revision: i64,
        reason: String,
    },
}

/// The reply to a create request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// `INVALID_WATCH_ID` when rejected.
    pub watch_id: i64,
    /// The revision for the response header: events after it will be delivered (for a watch
    /// from "now").
    pub revision: i64,
    /// Rejected (the response is created=true, canceled=true, as etcd answers).
    pub canceled: bool,
    pub cancel_reason: String,
}

struct Local {
    watcher: u64,
    target: Target,
    filters: Filters,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// No events were sent since the last progress tick (etcd's `progress[id]`).
    progress_due: bool,
}

#[derive(Clone, Copy, Debug)]
struct CatchUp {
    watcher: u64,
    next_rev: i64,
}

enum JobKind {
    /// prev_kv lookups for ready-made outputs.
    PrevKv,
    /// One catch-up read for a watcher, up to `to`.
    CatchUp { watcher: u64, to: i64 },
}

enum JobOutput {
    PrevKv(Vec<(u64, WatchOutput)>),
    CatchUp(Result<CatchUpRead>),
}

struct Job {
    kind: JobKind,
    handle: JoinHandle<JobOutput>,
}

struct CatchUpRead {
    /// Events after filtering, prev_kv filled if asked.
    events: Vec<Event>,
    /// The revision to continue from.
    next_rev: i64,
}

/// One gRPC Watch stream's watchers. Owned by the stream's task; `next` yields what to send.
/// Dropping it removes all its watchers.
pub struct WatchStream {
    hub: Arc<WatchHub>,
    id: u64,
    rx: mpsc::Receiver<HubMsg>,
    wake: Arc<Notify>,
    lag_flag: Arc<AtomicBool>,
    /// Messages taken from `rx` so far (compared with `Lagged::after`).
    received: u64,
    watchers: HashMap<i64, Local>,
    /// Hub watcher key -> watch id.
    ids: HashMap<u64, i64>,
    next_watch_id: i64,
    /// Unsynced watchers ready for their next catch-up step.
    catch_up: VecDeque<CatchUp>,
    /// Lagged watchers whose earlier messages are still in `rx`.
    waiting: Vec<Lagged>,
    job: Option<Job>,
    ready: VecDeque<WatchOutput>,
    tick: tokio::time::Interval,
    deferred_progress: bool,
}

/// etcd looks prev_kv up for every event but a creation, which has no previous value.
fn needs_prev_lookup(ev: &Event) -> bool {
    ev.kv.as_ref().is_some_and(|kv| {
        !(ev.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision)
    })
}

/// The key's value just before each event; a lookup that fails (e.g. compacted) leaves it
/// unset, as etcd does.
fn fill_prev_kv(store: &MvccStore, events: &mut [Event]) {
    for ev in events {
        if !needs_prev_lookup(ev) {
            continue;
        }
        let kv = ev.kv.as_ref().expect("checked by needs_prev_lookup");
        if let Ok(Some(prev)) = store.kv_at(&kv.key, kv.mod_revision - 1) {
            ev.prev_kv = Some(prev);
        }
    }
}

impl WatchStream {
    /// Registers a watcher; the caller sends the created response before anything `next`
    /// yields afterwards, so it always precedes the watcher's events.
    pub fn create(&mut self, req: &WatchCreateRequest) -> Created {
        let rejected = |reason: &str, revision: i64| Created {
            watch_id: INVALID_WATCH_ID,
            revision,
            canceled: true,
            cancel_reason: reason.to_string(),
        };
        let hub = self.hub.clone();
        // etcd: an empty key is "\0", the smallest key; range_end "\0" means "to the end".
        let key: Arc<[u8]> = if req.key.is_empty() {
            Arc::from(&[0u8][..])
        } else {
            Arc::from(&req.key[..])
        };
        let end: Option<Arc<[u8]>> = match &req.range_end[..] {
            [] => None,
            [0] => Some(Arc::from(&[][..])),
            e => Some(Arc::from(e)),
        };
        if let Some(e) = &end {
            if !e.is_empty() && *key >= **e {
                return rejected(ERR_EMPTY_RANGE, hub.notified_revision());
            }
        }
        let watch_id = if req.watch_id == 0 {
            while self.watchers.contains_key(&self.next_watch_id) {
                self.next_watch_id += 1;
            }
            self.next_watch_id += 1;
            self.next_watch_id - 1
        } else if self.watchers.contains_key(&req.watch_id) {
            return rejected(ERR_DUPLICATE_ID, hub.notified_revision());
        } else {
            req.watch_id
        };

        let watcher = hub.next_watcher.fetch_add(1, Ordering::Relaxed);
        let target = Target { key, end };
        let filters = Filters::from_request(&req.filters);
        let revision = {
            let mut st = hub.state.lock();
            let rev = st.notified_rev;
            let start = req.start_revision;
            if start == 0 || start > rev {
                // Nothing to read back: notify delivers everything from min_rev on.
                let min_rev = if start == 0 { rev + 1 } else { start };
                st.index.insert(&target, watcher);
                st.synced.insert(
                    watcher,
                    Synced {
                        stream: self.id,
                        target: target.clone(),
                        filters,
                        min_rev,
                    },
                );
            } else {
                self.catch_up.push_back(CatchUp {
                    watcher,
                    next_rev: start,
                });
            }
            rev
        };
        hub.watchers.fetch_add(1, Ordering::Relaxed);
        self.ids.insert(watcher, watch_id);
        self.watchers.insert(
            watch_id,
            Local {
                watcher,
                target,
                filters,
                prev_kv: req.prev_kv,
                fragment: req.fragment,
                progress_notify: req.progress_notify,
                progress_due: true,
            },
        );
        Created {
            watch_id,
            revision,
            canceled: false,
            cancel_reason: String::new(),
        }
    }

    /// Cancels a watcher; returns the header revision for the canceled response, or None for
    /// an unknown id (etcd sends nothing then).
    pub fn cancel(&mut self, watch_id: i64) -> Option<i64> {
        let local = self.watchers.remove(&watch_id)?;
        self.forget(local.watcher);
        let mut st = self.hub.state.lock();
        st.unindex(local.watcher);
        if let Some(slot) = st.streams.get_mut(&self.id) {
            slot.lagged.retain(|l| l.watcher != local.watcher);
        }
        Some(st.notified_rev)
    }

    /// Drops stream-local traces of a watcher (messages already queued for it are ignored).
    fn forget(&mut self, watcher: u64) {
        self.ids.remove(&watcher);
        self.catch_up.retain(|c| c.watcher != watcher);
        self.waiting.retain(|l| l.watcher != watcher);
        self.hub.watchers.fetch_sub(1, Ordering::Relaxed);
    }

    /// A WatchProgressRequest: once every watcher of the stream is synced, `next` yields
    /// `Progress { watch_id: -1, .. }` at a revision all of them have been sent everything up
    /// to (etcd 3.5's deferred progress; 3.4 answered at once, even while catching up).
    pub fn request_progress(&mut self) {
        if !self.deferred_progress && !self.try_progress_all() {
            self.deferred_progress = true;
        }
    }

    fn all_synced_locally(&self) -> bool {
        self.catch_up.is_empty()
            && self.waiting.is_empty()
            && !matches!(
                self.job,
                Some(Job {
                    kind: JobKind::CatchUp { .. },
                    ..
                })
            )
    }

    fn try_progress_all(&mut self) -> bool {
        if !self.all_synced_locally() {
            return false;
        }
        let mut st = self.hub.state.lock();
        let revision = st.notified_rev;
        let Some(slot) = st.streams.get_mut(&self.id) else {
            return false;
        };
        if !slot.lagged.is_empty() {
            return false;
        }
        if slot.tx.try_send(HubMsg::ProgressAll { revision }).is_err() {
            return false;
        }
        slot.sent += 1;
        true
    }

    /// etcd's progress ticker: watchers that asked for progress notifications and got no
    /// events since the last tick get one, if synced.
    fn on_tick(&mut self) {
        let mut due = Vec::new();
        for l in self.watchers.values_mut() {
            if l.progress_notify {
                if l.progress_due {
                    due.push(l.watcher);
                }
                l.progress_due = true;
            }
        }
        if due.is_empty() {
            return;
        }
        let mut st = self.hub.state.lock();
        let revision = st.notified_rev;
        due.retain(|w| st.synced.contains_key(w));
        if due.is_empty() {
            return;
        }
        if let Some(slot) = st.streams.get_mut(&self.id) {
            // Like etcd, a progress notification that does not fit is skipped, not waited for.
            if slot
                .tx
                .try_send(HubMsg::Progress {
                    revision,
                    watchers: due,
                })
                .is_ok()
            {
                slot.sent += 1;
            }
        }
    }

    /// The next response to send. Cancel-safe: state changes only between awaits, and a
    /// blocking job in flight is kept and resumed by the next call.
    pub async fn next(&mut self) -> WatchOutput {
        loop {
            if let Some(out) = self.ready.pop_front() {
                return out;
            }
            if let Some(job) = self.job.as_mut() {
                let res = (&mut job.handle).await;
                let job = self.job.take().expect("job present");
                match res {
                    Ok(out) => self.finish_job(job.kind, out),
                    Err(e) => {
                        // A panicked lookup: fail the watcher rather than the server.
                        if let JobKind::CatchUp { watcher, .. } = job.kind {
                            self.fail(watcher, 0, format!("watch catch-up failed: {e}"));
                        }
                    }
                }
                continue;
            }
            match self.rx.try_recv() {
                Ok(msg) => {
                    self.received += 1;
                    self.handle_msg(msg);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => {}
            }
            self.collect_lagged();
            if let Some(c) = self.catch_up.pop_front() {
                self.step_catch_up(c);
                continue;
            }
            if self.deferred_progress && self.try_progress_all() {
                self.deferred_progress = false;
                continue;
            }
            tokio::select! {
                msg = self.rx.recv() => {
                    if let Some(msg) = msg {
                        self.received += 1;
                        self.handle_msg(msg);
                    }
                }
                _ = self.wake.notified() => {}
                _ = self.tick.tick() => self.on_tick(),
            }
        }
    }

    /// Takes the watchers `notify` moved out of the index; they catch up once the messages
    /// queued before their lag have been consumed.
    fn collect_lagged(&mut self) {
        if self.lag_flag.swap(false, Ordering::AcqRel) {
            let mut st = self.hub.state.lock();
            if let Some(slot) = st.streams.get_mut(&self.id) {
                self.waiting.append(&mut slot.lagged);
            }
        }
        if self.waiting.is_empty() {
            return;
        }
        let received = self.received;
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].after <= received {
                let l = self.waiting.swap_remove(i);
                if self.ids.contains_key(&l.watcher) {
                    self.catch_up.push_back(CatchUp {
                        watcher: l.watcher,
                        next_rev: l.next_rev,
                    });
                }
            } else {
                i += 1;
            }
        }
    }

    fn local(&self, watcher: u64) -> Option<(i64, &Local)> {
        let id = *self.ids.get(&watcher)?;
        Some((id, self.watchers.get(&id)?))
    }

    fn local_mut(&mut self, watcher: u64) -> Option<(i64, &mut Local)> {
        let id = *self.ids.get(&watcher)?;
        Some((id, self.watchers.get_mut(&id)?))
    }

    fn handle_msg(&mut self, msg: HubMsg) {
        match msg {
            HubMsg::Events {
                revision,
                events,
                matches,
            } => {
                let mut outs = Vec::with_capacity(matches.len());
                let mut lookups = 0;
                for (w, idx) in matches {
                    let Some((watch_id, l)) = self.local_mut(w) else {
                        continue; // canceled since
                    };
                    l.progress_due = false;
                    let evs: Vec<Event> = idx.iter().map(|&i| events[i as usize].clone()).collect();
                    if l.prev_kv {
                        lookups += evs.iter().filter(|e| needs_prev_lookup(e)).count();
                    }
                    let out = WatchOutput::Events {
                        watch_id,
                        revision,
                        events: evs,
                        fragment: l.fragment,
                    };
                    outs.push((w, l.prev_kv, out));
                }
                if lookups == 0 {
                    self.ready.extend(outs.into_iter().map(|(_, _, o)| o));
                } else if lookups <= INLINE_PREV_KV {
                    let store = self.hub.store.clone();
                    for (_, prev, mut out) in outs {
                        if let (true, WatchOutput::Events { events, .. }) = (prev, &mut out) {
                            fill_prev_kv(&store, events);
                        }
                        self.ready.push_back(out);
                    }
                } else {
                    let store = self.hub.store.clone();
                    let handle = tokio::task::spawn_blocking(move || {
                        let mut done = Vec::with_capacity(outs.len());
                        for (w, prev, mut out) in outs {
                            if let (true, WatchOutput::Events { events, .. }) = (prev, &mut out) {
                                fill_prev_kv(&store, events);
                            }
                            done.push((w, out));
                        }
                        JobOutput::PrevKv(done)
                    });
                    self.job = Some(Job {
                        kind: JobKind::PrevKv,
                        handle,
                    });
                }
            }
            HubMsg::Progress { revision, watchers } => {
                for w in watchers {
                    if let Some((watch_id, _)) = self.local(w) {
                        self.ready
                            .push_back(WatchOutput::Progress { watch_id, revision });
                    }
                }
            }
            HubMsg::ProgressAll { revision } => self.ready.push_back(WatchOutput::Progress {
                watch_id: INVALID_WATCH_ID,
                revision,
            }),
        }
    }

    /// One catch-up step: rejoin the index if there is nothing left to read, else start a read.
    fn step_catch_up(&mut self, c: CatchUp) {
        let Some((_, l)) = self.local(c.watcher) else {
            return;
        };
        let to = self.hub.notified_revision();
        if c.next_rev > to {
            self.rejoin(c);
            return;
        }
        let store = self.hub.store.clone();
        let (target, filters, prev_kv) = (l.target.clone(), l.filters, l.prev_kv);
        let handle = tokio::task::spawn_blocking(move || {
            JobOutput::CatchUp(read_catch_up(
                &store, &target, filters, prev_kv, c.next_rev, to,
            ))
        });
        self.job = Some(Job {
            kind: JobKind::CatchUp {
                watcher: c.watcher,
                to,
            },
            handle,
        });
    }

    /// Puts a caught-up watcher back into the index, unless more revisions were announced
    /// meanwhile (then it reads again).
    fn rejoin(&mut self, c: CatchUp) {
        let Some((_, l)) = self.local(c.watcher) else {
            return;
        };
        let (target, filters) = (l.target.clone(), l.filters);
        let mut st = self.hub.state.lock();
        if c.next_rev > st.notified_rev {
            st.index.insert(&target, c.watcher);
            st.synced.insert(
                c.watcher,
                Synced {
                    stream: self.id,
                    target,
                    filters,
                    min_rev: c.next_rev,
                },
            );
        } else {
            drop(st);
            self.catch_up.push_back(c);
        }
    }

    fn finish_job(&mut self, kind: JobKind, out: JobOutput) {
        match (kind, out) {
            (JobKind::PrevKv, JobOutput::PrevKv(outs)) => {
                for (w, out) in outs {
                    if self.ids.contains_key(&w) {
                        self.ready.push_back(out);
                    }
                }
            }
            (JobKind::CatchUp { watcher, to }, JobOutput::CatchUp(res)) => {
                let Some((watch_id, l)) = self.local_mut(watcher) else {
                    return;
                };
                match res {
                    Ok(read) => {
                        if !read.events.is_empty() {
                            l.progress_due = false;
                            let fragment = l.fragment;
                            self.ready.push_back(WatchOutput::Events {
                                watch_id,
                                revision: to,
                                events: read.events,
                                fragment,
                            });
                        }
                        let c = CatchUp {
                            watcher,
                            next_rev: read.next_rev,
                        };
                        if read.next_rev > to {
                            self.rejoin(c);
                        } else {
                            self.catch_up.push_back(c);
                        }
                    }
                    Err(EtcdError::Compacted) => {
                        let compact = self.hub.store.compact_revision();
                        self.fail(watcher, compact, String::new());
                    }
                    Err(e) => self.fail(watcher, 0, e.to_string()),
                }
            }
            _ => unreachable!("job output matches its kind"),
        }
    }

    /// Removes a watcher and reports it canceled.
    fn fail(&mut self, watcher: u64, compact_revision: i64, reason: String) {
        let Some(watch_id) = self.ids.get(&watcher).copied() else {
            return;
        };
        self.watchers.remove(&watch_id);
        self.forget(watcher);
        self.hub.state.lock().unindex(watcher);
        self.ready.push_back(WatchOutput::Canceled {
            watch_id,
            compact_revision,
            reason,
        });
    }
}

/// Reads revisions `from..=to` (at most `CATCH_UP_REVISIONS` of them) for one watcher.
fn read_catch_up(
    store: &MvccStore,
    target: &Target,
    filters: Filters,
    prev_kv: bool,
    from: i64,
    to: i64,
) -> Result<CatchUpRead> {
    let events = store.events_between(
        &target.key,
        target.store_range_end(),
        from,
        to,
        CATCH_UP_REVISIONS,
    )?;
    let mut revs = 0usize;
    let mut last = i64::MIN;
    for ev in &events {
        let r = ev.kv.as_ref().map_or(last, |kv| kv.mod_revision);
        if r != last {
            revs += 1;
            last = r;
        }
    }
    // A full batch may have stopped early; continue after its last revision.
    let next_rev = if revs >= CATCH_UP_REVISIONS {
        last + 1
    } else {
        to + 1
    };
    let mut events: Vec<Event> = events
        .into_iter()
        .filter(|e| filters.accepts(e) && e.kv.as_ref().is_some_and(|kv| target.contains(&kv.key)))
        .collect();
    if prev_kv {
        fill_prev_kv(store, &mut events);
    }
    Ok(CatchUpRead { events, next_rev })
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut st = self.hub.state.lock();
        for l in self.watchers.values() {
            st.unindex(l.watcher);
        }
        st.streams.remove(&self.id);
        drop(st);
        self.hub
            .watchers
            .fetch_sub(self.watchers.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_api::etcdserverpb::request_op::Request;
    use oxcd_api::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
    use tempfile::TempDir;

    struct Env {
        _dir: TempDir,
        store: Arc<MvccStore>,
        hub: Arc<WatchHub>,
    }

    fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MvccStore::open(&dir.path().join("db")).unwrap());
        let hub = WatchHub::new(store.clone());
        Env {
            _dir: dir,
            store,
            hub,
        }
    }

    fn op(o: &str) -> RequestOp {
        let request = if let Some(k) = o.strip_prefix('-') {
            Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                ..Default::default()
            })
        } else {
            let (k, v) = o.split_once('=').unwrap();
            Request::RequestPut(PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })
        };
        RequestOp {
            request: Some(request),
        }
    }

    /// What the apply loop does: one batch of committed entries, each a txn of puts ("k=v")
    /// and deletes ("-k") and so one revision (if it writes anything), then one notify.
    fn apply_batch(store: &MvccStore, hub: &WatchHub, txns: &[&[&str]]) -> i64 {
        let mut b = store.write().unwrap();
        for ops in txns {
            let req = TxnRequest {
                success: ops.iter().map(|o| op(o)).collect(),
                ..Default::default()
            };
            b.txn(&req, &|_| true).unwrap();
        }
        let rev = b.revision();
        let events = b.commit(false).unwrap();
        if !events.is_empty() {
            hub.notify(&events, rev);
        }
        rev
    }

    fn apply(store: &MvccStore, hub: &WatchHub, ops: &[&str]) -> i64 {
        apply_batch(store, hub, &[ops])
    }

    fn put(e: &Env, ops: &[&str]) -> i64 {
        apply(&e.store, &e.hub, ops)
    }

    fn create(ws: &mut WatchStream, key: &str, end: &str, start: i64) -> i64 {
        let c = ws.create(&WatchCreateRequest {
            key: key.into(),
            range_end: end.into(),
            start_revision: start,
            ..Default::default()
        });
        assert!(!c.canceled, "{c:?}");
        c.watch_id
    }

    /// Everything the stream yields until it is idle for a moment. Dropping `next` on the
    /// timeout also exercises its cancel-safety.
    async fn drain(ws: &mut WatchStream) -> Vec<WatchOutput> {
        let mut out = Vec::new();
        while let Ok(o) = tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            out.push(o);
        }
        out
    }

    /// (watch_id, "PUT k@rev" / "DEL k@rev") for each event, in delivery order.
    fn flat(outs: &[WatchOutput]) -> Vec<(i64, String)> {
        let mut v = Vec::new();
        for o in outs {
            if let WatchOutput::Events {
                watch_id, events, ..
            } = o
            {
                for ev in events {
                    let kv = ev.kv.as_ref().unwrap();
                    let t = if ev.r#type == EventType::Delete as i32 {
                        "DEL"
                    } else {
                        "PUT"
                    };
                    let key = String::from_utf8_lossy(&kv.key);
                    v.push((*watch_id, format!("{t} {key}@{}", kv.mod_revision)));
                }
            }
        }
        v
    }

    fn of(v: &[(i64, String)], id: i64) -> Vec<String> {
        v.iter()
            .filter(|(w, _)| *w == id)
            .map(|(_, s)| s.clone())
            .collect()
    }

    #[tokio::test]
    async fn matches_keys_ranges_prefixes_and_filters() {
        let e = env();
        let mut ws = e.hub.open_stream();
        let single = create(&mut ws, "a", "", 0);
        let range = create(&mut ws, "b", "d", 0);
        let prefix = create(&mut ws, "p/", "p0", 0);
        let from_key = create(&mut ws, "c", "\0", 0);
        let all = create(&mut ws, "", "\0", 0);
        let no_put = ws
            .create(&WatchCreateRequest {
                key: "a".into(),
                filters: vec![FilterType::Noput as i32],
                ..Default::default()
            })
            .watch_id;
        let same_range = create(&mut ws, "b", "d", 0);
        assert_eq!(
            (single, range, prefix, from_key, all, no_put, same_range),
            (0, 1, 2, 3, 4, 5, 6)
        );

        put(&e, &["a=1", "b=1", "c=1", "d=1", "p/x=1", "p=1"]);
        put(&e, &["-a"]);
        put(&e, &["zz=1"]);
        let v = flat(&drain(&mut ws).await);
        assert_eq!(of(&v, single), ["PUT a@2", "DEL a@3"]);
        assert_eq!(of(&v, range), ["PUT b@2", "PUT c@2"]);
        assert_eq!(of(&v, same_range), ["PUT b@2", "PUT c@2"]);
        assert_eq!(of(&v, prefix), ["PUT p/x@2"]);
        assert_eq!(
            of(&v, from_key),
            ["PUT c@2", "PUT d@2", "PUT p/x@2", "PUT p@2", "PUT zz@4"]
        );
        assert_eq!(of(&v, all).len(), 8);
        assert_eq!(of(&v, no_put), ["DEL a@3"]);

        // A batch of several revisions: one response per watcher, the header at the batch's
        // last revision.
        let outs = {
            apply_batch(&e.store, &e.hub, &[&["b=2"], &["x=1"], &["c=2"], &["x=2"]]);
            drain(&mut ws).await
        };
        let mine: Vec<_> = outs
            .iter()
            .filter(|o| matches!(o, WatchOutput::Events { watch_id, .. } if *watch_id == range))
            .collect();
        assert_eq!(mine.len(), 1);
        assert!(matches!(mine[0], WatchOutput::Events { revision: 8, .. }));
        assert_eq!(of(&flat(&outs), range), ["PUT b@5", "PUT c@7"]);
        assert_eq!(e.hub.stats().watchers, 7);
        drop(ws);
        assert_eq!(e.hub.stats(), WatchStats::default());
    }

    #[tokio::test]
    async fn ids_and_rejections_like_etcd() {
        let e = env();
        put(&e, &["x=1"]);
        let mut ws = e.hub.open_stream();
        assert_eq!(create(&mut ws, "a", "", 0), 0);
        let c = ws.create(&WatchCreateRequest {
            key: "a".into(),
            watch_id: 5,
            ..Default::default()
        });
        assert_eq!((c.watch_id, c.revision, c.canceled), (5, 2, false));
        let dup = ws.create(&WatchCreateRequest {
            key: "a".into(),
            watch_id: 5,
            ..Default::default()
        });
        assert_eq!(
            dup,
            Created {
                watch_id: -1,
                revision: 2,
                canceled: true,
                cancel_reason: ERR_DUPLICATE_ID.into()
            }
        );
        let empty = ws.create(&WatchCreateRequest {
            key: "b".into(),
            range_end: "a".into(),
            ..Default::default()
        });
        assert_eq!((empty.watch_id, empty.canceled), (-1, true));
        assert_eq!(empty.cancel_reason, ERR_EMPTY_RANGE);
        assert_eq!(create(&mut ws, "a", "", 0), 1);

        assert_eq!(ws.cancel(0), Some(2));
        assert_eq!(ws.cancel(0), None);
        assert_eq!(ws.cancel(77), None);
        put(&e, &["a=1"]);
        let mut v = flat(&drain(&mut ws).await);
        v.sort();
        assert_eq!(v, [(1, "PUT a@3".into()), (5, "PUT a@3".into())]);
    }

    #[tokio::test]
    async fn history_compaction_and_future_starts() {
        let e = env();
        for i in 0..6 {
            put(&e, &[&format!("k{i}=v")]); // revisions 2..=7
        }
        let mut b = e.store.write().unwrap();
        b.compact(4).unwrap();
        b.commit(false).unwrap();

        let mut ws = e.hub.open_stream();
        let before = create(&mut ws, "k", "l", 3);
        let at = create(&mut ws, "k", "l", 4);
        let future = create(&mut ws, "k", "l", 9);
        let outs = drain(&mut ws).await;
        assert!(outs.contains(&WatchOutput::Canceled {
            watch_id: before,
            compact_revision: 4,
            reason: String::new()
        }));
        let v = flat(&outs);
        // etcd: starting exactly at the compacted revision is allowed.
        assert_eq!(of(&v, at), ["PUT k2@4", "PUT k3@5", "PUT k4@6", "PUT k5@7"]);
        put(&e, &["k=8"]);
        put(&e, &["k=9"]);
        let v = flat(&drain(&mut ws).await);
        assert_eq!(of(&v, at), ["PUT k@8", "PUT k@9"]);
        assert_eq!(of(&v, future), ["PUT k@9"]);
        assert_eq!(of(&v, before), Vec::<String>::new());
    }

    #[tokio::test]
    async fn prev_kv_inline_and_in_a_blocking_job() {
        let e = env();
        let mut ws = e.hub.open_stream();
        let w = ws
            .create(&WatchCreateRequest {
                key: "k".into(),
                range_end: "l".into(),
                prev_kv: true,
                ..Default::default()
            })
            .watch_id;
        put(&e, &["k1=a"]);
        put(&e, &["k1=b"]);
        put(&e, &["-k1"]);
        // Many updates in one batch: more lookups than are done inline.
        let keys: Vec<String> = (0..40).map(|i| format!("k/{i:02}=x")).collect();
        let ops: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
        put(&e, &ops);
        let keys2: Vec<String> = (0..40).map(|i| format!("k/{i:02}=y")).collect();
        let ops2: Vec<&str> = keys2.iter().map(|s| s.as_str()).collect();
        let last = put(&e, &ops2);
        let mut evs = Vec::new();
        for o in drain(&mut ws).await {
            if let WatchOutput::Events {
                watch_id, events, ..
            } = o
            {
                assert_eq!(watch_id, w);
                evs.extend(events);
            }
        }
        assert_eq!(evs.len(), 83);
        let prev = |i: usize| {
            evs[i]
                .prev_kv
                .as_ref()
                .map(|p| (p.value.clone(), p.mod_revision))
        };
        assert_eq!(prev(0), None); // a creation has none
        assert_eq!(prev(1), Some((b"a".to_vec(), 2)));
        assert_eq!(prev(2), Some((b"b".to_vec(), 3)));
        for i in 3..43 {
            assert_eq!(prev(i), None);
        }
        for i in 43..83 {
            assert_eq!(prev(i), Some((b"x".to_vec(), last - 1)));
        }
    }

    #[tokio::test]
    async fn progress_all_waits_for_catch_up() {
        let e = env();
        put(&e, &["a=1"]);
        put(&e, &["a=2"]);
        let mut ws = e.hub.open_stream();
        ws.request_progress();
        assert_eq!(
            drain(&mut ws).await,
            [WatchOutput::Progress {
                watch_id: -1,
                revision: 3
            }]
        );
        let w = create(&mut ws, "a", "", 2);
        ws.request_progress();
        let outs = drain(&mut ws).await;
        assert_eq!(outs.len(), 2, "{outs:?}");
        assert_eq!(of(&flat(&outs[..1]), w), ["PUT a@2", "PUT a@3"]);
        assert_eq!(
            outs[1],
            WatchOutput::Progress {
                watch_id: -1,
                revision: 3
            }
        );
    }

    #[tokio::test]
    async fn periodic_progress_only_when_idle() {
        let e = env();
        e.hub.set_progress_interval(Duration::from_millis(150));
        let mut ws = e.hub.open_stream();
        let busy = ws
            .create(&WatchCreateRequest {
                key: "a".into(),
                progress_notify: true,
                ..Default::default()
            })
            .watch_id;
        let idle = ws
            .create(&WatchCreateRequest {
                key: "b".into(),
                progress_notify: true,
                ..Default::default()
            })
            .watch_id;
        let _quiet = create(&mut ws, "c", "", 0);
        put(&e, &["a=1"]);
        let mut outs = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(o) = tokio::time::timeout_at(deadline, ws.next()).await {
            outs.push(o);
        }
        // First tick: `busy` got an event in the interval, so only `idle` is notified.
        assert_eq!(of(&flat(&outs), busy), ["PUT a@2"]);
        let progress: Vec<_> = outs
            .iter()
            .filter(|o| matches!(o, WatchOutput::Progress { .. }))
            .collect();
        assert_eq!(
            progress,
            [&WatchOutput::Progress {
                watch_id: idle,
                revision: 2
            }]
        );
        // Next tick: both are idle.
        let mut ids = Vec::new();
        for _ in 0..2 {
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(WatchOutput::Progress { watch_id, revision }) => {
                    assert_eq!(revision, 2);
                    ids.push(watch_id);
                }
                other => panic!("{other:?}"),
            }
        }
        ids.sort();
        assert_eq!(ids, [busy, idle]);
    }

    /// The handover: a stream whose channel is tiny and which is read slowly while writes go
    /// on gets every event exactly once, in order, per watcher; a second stream read promptly
    /// is unaffected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_stream_loses_nothing() {
        let e = env();
        e.hub.set_stream_buffer(2);
        let mut slow = e.hub.open_stream();
        e.hub.set_stream_buffer(1024);
        let mut fast = e.hub.open_stream();
        let s_all = create(&mut slow, "k", "l", 0);
        let s_one = create(&mut slow, "k3", "", 0);
        let s_hist = create(&mut slow, "k", "l", 1);
        let f_all = create(&mut fast, "k", "l", 0);

        const WRITES: usize = 400;
        let (store, hub) = (e.store.clone(), e.hub.clone());
        let writer = std::thread::spawn(move || {
            for i in 0..WRITES {
                let op = if i % 7 == 6 {
                    format!("-k{}", i % 5)
                } else {
                    format!("k{}={i}", i % 5)
                };
                let op2 = format!("k{}={i}", (i + 1) % 5);
                match i % 3 {
                    // Two events in one revision.
                    0 => apply(&store, &hub, &[&op, &op2]),
                    // Two revisions in one notify.
                    1 => apply_batch(&store, &hub, &[&[&op], &[&op2]]),
                    _ => apply(&store, &hub, &[&op]),
                };
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });

        let mut slow_out = Vec::new();
        let mut fast_out = Vec::new();
        let mut n = 0;
        loop {
            // The slow reader takes one response, then dawdles.
            if let Ok(o) = tokio::time::timeout(Duration::from_millis(300), slow.next()).await {
                slow_out.push(o);
            } else if writer.is_finished() {
                break;
            }
            n += 1;
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            while let Ok(o) = tokio::time::timeout(Duration::from_millis(1), fast.next()).await {
                fast_out.push(o);
            }
        }
        writer.join().unwrap();
        slow_out.extend(drain(&mut slow).await);
        fast_out.extend(drain(&mut fast).await);

        // The truth: everything the store has, per watcher.
        let cur = e.store.current_revision();
        let truth = |key: &[u8], end: &[u8]| -> Vec<String> {
            let evs = e.store.events_between(key, end, 2, cur, 0).unwrap();
            let outs = [WatchOutput::Events {
                watch_id: 0,
                revision: cur,
                events: evs,
                fragment: false,
            }];
            of(&flat(&outs), 0)
        };
        let all = truth(b"k", b"l");
        assert!(all.len() > WRITES);
        let s = flat(&slow_out);
        assert_eq!(of(&s, s_all), all);
        assert_eq!(of(&s, s_hist), all);
        assert_eq!(of(&s, s_one), truth(b"k3", b""));
        assert_eq!(of(&flat(&fast_out), f_all), all);
        // The slow stream really did fall back to catching up.
        let slow_responses = slow_out
            .iter()
            .filter(|o| matches!(o, WatchOutput::Events { watch_id, .. } if *watch_id == s_all))
            .count();
        assert!(slow_responses < WRITES, "{slow_responses}");
        assert_eq!(e.hub.stats().unsynced, 0);
    }
}
