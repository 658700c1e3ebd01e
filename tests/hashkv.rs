//! HashKV agreement: the same pseudo-random traffic (puts, overwrites, deletes, range deletes,
//! a compaction) sent to random members of a 3-member etcd cluster and of a 3-member oxcd
//! cluster. Every member of a cluster must report the same hash, and oxcd's hashes must equal
//! etcd's, at the current revision and at earlier ones: HashKV hashes the MVCC history exactly
//! as etcd does, so an operator can compare members and compare oxcd with etcd.

use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::member::Kind;

/// A small deterministic generator (no dependency, the same sequence for both servers).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

const OPS: usize = 120;

/// (revision, hash) pairs.
type Hashes = Vec<(i64, u64)>;

/// Runs the traffic; returns (revision, hash) per member at the end, and the cluster's hashes
/// at a few earlier revisions (asked of member 0).
fn traffic(kind: Kind) -> (Hashes, Hashes) {
    let c = Cluster::start(kind, 3);
    c.wait_leader(&c.all());
    let mut rng = Lcg(0x5eed);
    let mut compacted = false;
    for n in 0..OPS {
        let member = (rng.next() % 3) as usize;
        let key = format!("k{:02}", rng.next() % 24);
        let args: Vec<String> = match rng.next() % 10 {
            0 => vec!["del".into(), key],
            1 => vec!["del".into(), "k1".into(), "--prefix".into()],
            _ => vec!["put".into(), key, format!("v{n}")],
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        c.ctl_ok(member, &args);
        if n == OPS / 2 && !compacted {
            compacted = true;
            c.ctl_ok(member, &["compaction", &(n as i64 / 2).to_string()]);
        }
    }
    c.wait_converged(&c.all());
    let now: Hashes = c
        .all()
        .iter()
        .map(|&i| c.hashkv(i).unwrap_or_else(|e| c.fail(&e)))
        .collect();
    let rev = now[0].0;
    let mut earlier = Vec::new();
    for at in [rev / 2 + 1, rev * 3 / 4, rev - 1] {
        let out = c.ctl_ok(
            0,
            &["endpoint", "hashkv", "-w", "json", &format!("--rev={at}")],
        );
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| c.fail(&format!("hashkv --rev={at}: {e}: {out}")));
        let hash = v[0]["HashKV"]["hash"]
            .as_u64()
            .unwrap_or_else(|| c.fail(&format!("hashkv --rev={at}: no hash in {v}")));
        earlier.push((at, hash));
    }
    (now, earlier)
}

#[test]
fn members_agree_and_match_etcd() {
    let (ox_now, ox_earlier) = traffic(Kind::Oxcd);
    assert!(
        ox_now.windows(2).all(|w| w[0] == w[1]),
        "oxcd members disagree: {ox_now:?}"
    );
    let (etcd_now, etcd_earlier) = traffic(Kind::Etcd);
    assert!(
        etcd_now.windows(2).all(|w| w[0] == w[1]),
        "etcd members disagree: {etcd_now:?}"
    );
    assert_eq!(
        ox_now[0], etcd_now[0],
        "(revision, hash) after the same traffic: oxcd vs etcd"
    );
    assert_eq!(
        ox_earlier, etcd_earlier,
        "(revision, hash) at earlier revisions: oxcd vs etcd"
    );
}
