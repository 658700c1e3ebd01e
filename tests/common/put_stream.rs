//! A stream of acknowledged puts for crash tests: what was acknowledged is what must survive.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;

use crate::ctl::{ctl, Ctl};

/// Acknowledged puts: (index, revision from the response header).
pub type Acked = Vec<(usize, i64)>;

/// Puts `k/<i>` = `v<i>` for each `i` in `keys` through `endpoints[i % n]`, one etcdctl process
/// each, until one fails or `stop` is set. `count` tracks acknowledgements for the killer thread.
pub fn put_stream(
    endpoints: &[String],
    keys: Range<usize>,
    stop: &AtomicBool,
    count: &AtomicUsize,
) -> Acked {
    let mut acked = Vec::new();
    for i in keys {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let out = ctl(
            Ctl::Etcdctl,
            &endpoints[i % endpoints.len()],
            &[
                "put",
                &format!("k/{i:05}"),
                &format!("v{i}"),
                "-w",
                "json",
                "--command-timeout=5s",
                "--dial-timeout=2s",
            ],
        );
        if out.code != 0 {
            break;
        }
        let json: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("put answered without JSON ({e}): {out}"));
        let rev = json["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in {json}"));
        acked.push((i, rev));
        count.fetch_add(1, Ordering::SeqCst);
    }
    acked
}
