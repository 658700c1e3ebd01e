//! Range: etcd's `RangeRequest` semantics over the key index and the key table.
//!
//! Split in two phases so a reader holds the index lock only for the in-memory part: `plan` walks
//! the index (revision checks, count, min/max revision filters, sorting by revision or version,
//! limit), `fetch` then reads just the surviving rows from a redb snapshot taken under the lock.
//!
//! The limit/sort/filter interplay follows etcd's `applierV3backend.Range` exactly, quirks included:
//! `count` is the number of keys in the range at the revision regardless of filters and limit;
//! `more` says the (filtered) result had more than `limit` entries; and a sort target other than KEY
//! with order NONE sorts ascending, but only the first `limit + 1` keys of the range.

use std::collections::VecDeque;

use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use oxcd_api::mvccpb::KeyValue;
use redb::ReadableTable;

use super::codec::{parse_kv, KvView};
use super::key_index::{Hit, KeyIndexTree, KeyRange};
use super::revision::Revision;
use crate::error::{EtcdError, Result};

/// The key table as both read and write transactions expose it.
pub trait KeyTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> KeyTable for T {}

/// Resolves a requested revision (0 = `cur`) against the readable window `[compact, cur]`.
pub fn check_rev(rev: i64, cur: i64, compact: i64) -> Result<i64> {
    if rev > cur {
        return Err(EtcdError::FutureRev);
    }
    let at = if rev <= 0 { cur } else { rev };
    if at < compact {
        return Err(EtcdError::Compacted);
    }
    Ok(at)
}

/// Reads one live row and hands it to `f` without copying.
pub fn with_row<T: KeyTable + ?Sized, R>(
    table: &T,
    rev: Revision,
    f: impl FnOnce(KvView<'_>) -> R,
) -> Result<R> {
    let k = rev.to_bytes();
    let guard = table.get(&k[..])?.ok_or_else(|| {
        EtcdError::Internal(format!(
            "mvcc: revision {}_{} is indexed but missing from the key table",
            rev.main, rev.sub
        ))
    })?;
    Ok(f(parse_kv(guard.value())?))
}

pub fn read_kv<T: KeyTable + ?Sized>(
    table: &T,
    rev: Revision,
    keys_only: bool,
) -> Result<KeyValue> {
    with_row(table, rev, |v| v.to_kv(keys_only))
}

/// The outcome of the index phase.
#[derive(Debug)]
pub struct RangePlan {
    /// Header revision: the store's revision when the read ran (not the revision read at).
    pub header_rev: i64,
    pub count: i64,
    /// Rows to return, already in their final order unless `value_sort` is set.
    pub hits: Vec<Hit>,
    pub more: bool,
    /// Sort by value after fetching: Some(descending).
    value_sort: Option<bool>,
    limit: usize,
}

impl RangePlan {
    pub fn needs_fetch(&self) -> bool {
        !self.hits.is_empty()
    }
}

/// Which hits, in key order, can end up in the answer.
enum Collect {
    None,
    First(usize),
    Last(usize),
    All,
}

pub fn plan(index: &KeyIndexTree, req: &RangeRequest, cur: i64, compact: i64) -> Result<RangePlan> {
    let at = check_rev(req.revision, cur, compact)?;
    let limit = req.limit.max(0) as usize;
    let raw_order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let order = if target != SortTarget::Key && raw_order == SortOrder::None {
        SortOrder::Ascend
    } else {
        raw_order
    };
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;

    // Filters prune before the limit applies, so bounding what we keep in key order is exact for
    // key order; etcd also bounds (to limit + 1, before sorting) when the order is NONE.
    let collect = match (target, order) {
        _ if req.count_only => Collect::None,
        _ if limit == 0 => Collect::All,
        (SortTarget::Key, SortOrder::Descend) => Collect::Last(limit + 1),
        (SortTarget::Key, _) => Collect::First(limit + 1),
        _ if raw_order == SortOrder::None && !filtered => Collect::First(limit + 1),
        _ => Collect::All,
    };
    let keep = |h: &Hit| {
        !(req.max_mod_revision != 0 && h.rev.main > req.max_mod_revision
            || req.min_mod_revision != 0 && h.rev.main < req.min_mod_revision
            || req.max_create_revision != 0 && h.created > req.max_create_revision
            || req.min_create_revision != 0 && h.created < req.min_create_revision)
    };

    let mut count = 0i64;
    let mut hits = Vec::new();
    let mut tail = VecDeque::new();
    index.visit(KeyRange::new(&req.key, &req.range_end), |_, ki| {
        if let Some(h) = ki.get(at) {
            count += 1;
            match collect {
                Collect::None => {}
                Collect::First(n) if hits.len() < n && keep(&h) => hits.push(h),
                Collect::Last(n) if keep(&h) => {
                    if tail.len() == n {
                        tail.pop_front();
                    }
                    tail.push_back(h);
                }
                Collect::All if keep(&h) => hits.push(h),
                _ => {}
            }
        }
        true
    });
    if let Collect::Last(_) = collect {
        hits = tail.into();
    }

    let mut value_sort = None;
    let desc = order == SortOrder::Descend;
    match (target, order) {
        (_, SortOrder::None) | (SortTarget::Key, SortOrder::Ascend) => {}
        (SortTarget::Key, _) => hits.reverse(),
        (SortTarget::Value, _) => value_sort = Some(desc),
        // Stable sorts: ties stay in key order, as Go's sort does for the small results it
        // sorts by insertion.
        (SortTarget::Version, _) => sort_hits(&mut hits, desc, |h| h.ver),
        (SortTarget::Create, _) => sort_hits(&mut hits, desc, |h| h.created),
        (SortTarget::Mod, _) => sort_hits(&mut hits, desc, |h| h.rev.main),
    }

    let mut more = false;
    if value_sort.is_none() && limit > 0 && hits.len() > limit {
        hits.truncate(limit);
        more = true;
    }
    Ok(RangePlan {
        header_rev: cur,
        count,
        hits,
        more,
        value_sort,
        limit,
    })
}

fn sort_hits(hits: &mut [Hit], desc: bool, key: impl Fn(&Hit) -> i64) {
    if desc {
        hits.sort_by_key(|h| std::cmp::Reverse(key(h)));
    } else {
        hits.sort_by_key(key);
    }
}

/// Reads the planned rows and builds the response (header carries only the revision).
pub fn fetch<T: KeyTable + ?Sized>(
    plan: RangePlan,
    table: Option<&T>,
    req: &RangeRequest,
) -> Result<RangeResponse> {
    let mut kvs = Vec::with_capacity(plan.hits.len());
    if let Some(table) = table {
        // A value sort needs the values even for keys_only.
        let keys_only = req.keys_only && plan.value_sort.is_none();
        if plan.hits.len() < 64 {
            for h in &plan.hits {
                kvs.push(read_kv(table, h.rev, keys_only)?);
            }
        } else {
            // Many rows: read them in revision (= table) order, which walks the B-tree pages
            // sequentially instead of jumping around, then put them back in result order.
            let mut order: Vec<u32> = (0..plan.hits.len() as u32).collect();
            order.sort_unstable_by_key(|&i| plan.hits[i as usize].rev);
            let mut slots: Vec<Option<KeyValue>> = vec![None; plan.hits.len()];
            let rev_of = |i: u32| plan.hits[i as usize].rev;
            let (first, last) = (rev_of(order[0]), rev_of(order[order.len() - 1]));
            if ((last.main - first.main) as u64) < 4 * order.len() as u64 {
                // Dense: one scan over the revision span beats a lookup per row.
                let (lo, hi) = (first.to_bytes(), last.to_bytes());
                let mut want = order.iter().copied().peekable();
                for row in table.range::<&[u8]>(&lo[..]..=&hi[..])? {
                    let Some(&i) = want.peek() else { break };
                    let (k, v) = row?;
                    if k.value() == &rev_of(i).to_bytes()[..] {
                        slots[i as usize] = Some(parse_kv(v.value())?.to_kv(keys_only));
                        want.next();
                    }
                }
                if want.peek().is_some() {
                    return Err(EtcdError::Internal(
                        "mvcc: indexed revisions missing from the key table".into(),
                    ));
                }
            } else {
                for i in order {
                    slots[i as usize] = Some(read_kv(table, rev_of(i), keys_only)?);
                }
            }
            kvs.extend(slots.into_iter().flatten());
        }
    }
    let mut more = plan.more;
    if let Some(desc) = plan.value_sort {
        if desc {
            kvs.sort_by(|a, b| b.value.cmp(&a.value));
        } else {
            kvs.sort_by(|a, b| a.value.cmp(&b.value));
        }
        if plan.limit > 0 && kvs.len() > plan.limit {
            kvs.truncate(plan.limit);
            more = true;
        }
        if req.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value = Vec::new());
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: plan.header_rev,
            ..Default::default()
        }),
        kvs,
        more,
        count: plan.count,
    })
}

/// Both phases at once, for callers that already hold the index lock (the writer, read txns).
pub fn range<T: KeyTable + ?Sized>(
    index: &KeyIndexTree,
    table: &T,
    req: &RangeRequest,
    cur: i64,
    compact: i64,
) -> Result<RangeResponse> {
    crate::metrics::MVCC_RANGE.inc();
    let p = plan(index, req, cur, compact)?;
    fetch(p, Some(table), req)
}
