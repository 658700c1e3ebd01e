//! One-line descriptions of operations and watch streams for reports.

use crate::history::{
    Compare, CompareResult, CompareTarget, Op, Outcome, Request, Response, TxnOp, TxnResult,
    WatchStream,
};

use super::keys::{show, KeyRange};

fn range(key: &[u8], range_end: &[u8]) -> String {
    KeyRange::new(key, range_end).to_string()
}

fn compare(c: &Compare) -> String {
    let op = match c.result {
        CompareResult::Equal => "==",
        CompareResult::NotEqual => "!=",
        CompareResult::Greater => ">",
        CompareResult::Less => "<",
    };
    let (what, to) = match &c.target {
        CompareTarget::Value(v) => ("value", show(v)),
        CompareTarget::ModRevision(n) => ("mod", n.to_string()),
        CompareTarget::CreateRevision(n) => ("create", n.to_string()),
        CompareTarget::Version(n) => ("version", n.to_string()),
    };
    format!("{what}({}) {op} {to}", show(&c.key))
}

fn txn_op(op: &TxnOp) -> String {
    match op {
        TxnOp::Range { key, range_end } => format!("range {}", range(key, range_end)),
        TxnOp::Put { key, value, lease } => put(key, value, *lease),
        TxnOp::Delete { key, range_end } => format!("delete {}", range(key, range_end)),
    }
}

fn put(key: &[u8], value: &[u8], lease: i64) -> String {
    let lease = if lease != 0 {
        format!(" lease {lease}")
    } else {
        String::new()
    };
    format!("put {}={}{lease}", show(key), show(value))
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join("; ")
}

pub(crate) fn request(req: &Request) -> String {
    match req {
        Request::Range {
            key,
            range_end,
            revision,
            limit,
            serializable,
        } => {
            let mut s = format!("range {}", range(key, range_end));
            if *revision != 0 {
                s.push_str(&format!(" at rev {revision}"));
            }
            if *limit != 0 {
                s.push_str(&format!(" limit {limit}"));
            }
            if *serializable {
                s.push_str(" serializable");
            }
            s
        }
        Request::Put { key, value, lease } => put(key, value, *lease),
        Request::Delete { key, range_end } => format!("delete {}", range(key, range_end)),
        Request::Txn {
            compares,
            success,
            failure,
        } => format!(
            "txn if [{}] then [{}] else [{}]",
            list(compares, compare),
            list(success, txn_op),
            list(failure, txn_op)
        ),
        Request::LeaseGrant { id, ttl } => format!("lease grant {id} ttl {ttl}"),
        Request::LeaseRevoke { id } => format!("lease revoke {id}"),
        Request::LeaseKeepAlive { id } => format!("lease keep-alive {id}"),
        Request::Compact { revision, physical } => {
            format!(
                "compact {revision}{}",
                if *physical { " physical" } else { "" }
            )
        }
        Request::Defragment => "defragment".to_string(),
    }
}

fn txn_result(r: &TxnResult) -> String {
    match r {
        TxnResult::Range { kvs, count } => {
            let kvs: Vec<String> = kvs
                .iter()
                .map(|kv| format!("{}={}@{}", show(&kv.key), show(&kv.value), kv.mod_revision))
                .collect();
            format!("[{}] count {count}", kvs.join(", "))
        }
        TxnResult::Put => "put".to_string(),
        TxnResult::Delete { deleted } => format!("deleted {deleted}"),
    }
}

pub(crate) fn outcome(op: &Op) -> String {
    if op.ret.is_none() {
        return "no answer".to_string();
    }
    let resp = match &op.outcome {
        Outcome::Err { code, message } => return format!("error {code}: {message}"),
        Outcome::Ok(resp) => resp,
    };
    let rev = resp.revision();
    match resp {
        Response::Range {
            kvs, count, more, ..
        } => {
            let kvs: Vec<String> = kvs
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}@{}/{}/v{}",
                        show(&kv.key),
                        show(&kv.value),
                        kv.mod_revision,
                        kv.create_revision,
                        kv.version
                    )
                })
                .collect();
            format!(
                "ok rev {rev} [{}] count {count}{}",
                kvs.join(", "),
                if *more { " more" } else { "" }
            )
        }
        Response::Delete { deleted, .. } => format!("ok rev {rev} deleted {deleted}"),
        Response::Txn {
            succeeded, results, ..
        } => format!(
            "ok rev {rev} {} [{}]",
            if *succeeded { "succeeded" } else { "failed" },
            list(results, txn_result)
        ),
        Response::LeaseGrant { id, ttl, .. } => format!("ok rev {rev} lease {id} ttl {ttl}"),
        Response::LeaseKeepAlive { ttl, .. } => format!("ok rev {rev} ttl {ttl}"),
        Response::Defragment => "ok".to_string(),
        _ => format!("ok rev {rev}"),
    }
}

fn ms(t: u64) -> String {
    format!("{:.3}", t as f64 / 1e6)
}

/// `op 12 client 3 member 1 10.000..12.500 ms: put a=1 -> ok rev 5`
pub(crate) fn op(op: &Op) -> String {
    let ret = op.ret.map_or("?".to_string(), ms);
    format!(
        "op {} client {} member {} {}..{} ms: {} -> {}",
        op.id,
        op.client,
        op.member,
        ms(op.call),
        ret,
        request(&op.req),
        outcome(op)
    )
}

pub(crate) fn stream(index: usize, w: &WatchStream) -> String {
    let events: usize = w.responses.iter().map(|r| r.events.len()).sum();
    format!(
        "stream {index}: watcher {} member {} keys {} from revision {}{} called at {} ms, {} responses, {events} events{}",
        w.watcher,
        w.member,
        KeyRange::new(&w.key, &w.range_end),
        w.start_revision,
        if w.prev_kv { " prev_kv" } else { "" },
        ms(w.call),
        w.responses.len(),
        w.error.as_ref().map_or(String::new(), |e| format!(", ended: {e}"))
    )
}
