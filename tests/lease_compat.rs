//! Lease commands: grant, list, timetolive (with --keys), keep-alive --once, revoke, keys with
//! leases, keys vanishing on revoke and on expiry. etcdctl against oxcd and oxctl against both
//! must print what etcdctl prints against etcd.
//!
//! Lease ids differ between servers; `{leaseN}` in a step is the N-th granted lease's id and
//! outputs show it as `<LEASEN>`. Remaining TTLs are not compared (they depend on timing);
//! expiry is awaited by polling ([`Step::until`]), never timed.

use oxcd_process_tests::compat_tests;
use oxcd_process_tests::scenario::{all_formats, step, Scenario};

fn lease_basic() -> Scenario {
    let mut s = vec![
        step("lease grant 100"),
        step("lease grant 200 -w json"),
        step("lease grant 300 -w fields"),
    ];
    s.extend(all_formats("lease list"));
    s.extend([
        step("lease list -w table"),
        step("put k1 v1 --lease={lease1}"),
        step("put k3 v3 --lease={lease2} -w json"),
        step("get k1 -w json"),
        step("get k --prefix -w fields"),
    ]);
    s.extend(all_formats("lease timetolive {lease1}"));
    s.extend(all_formats("lease timetolive {lease1} --keys"));
    s.extend([
        step("lease timetolive {lease3} --keys"),
        step("lease timetolive {lease3} --keys -w json"),
    ]);
    // A second key joins lease1 only now: etcd lists a lease's keys in Go map order, which is
    // random, so `--keys` output is compared while the lease holds a single key.
    s.push(step("put k2 v2 --lease={lease1}"));
    s.extend(all_formats("lease keep-alive --once {lease1}"));
    s.extend([
        step("lease revoke {lease1}"),
        step("get k --prefix"),
        step("lease timetolive {lease1}"),
        step("lease timetolive {lease1} --keys -w json"),
        step("lease revoke {lease1}"),
        step("lease keep-alive --once {lease1}"),
        step("lease revoke {lease2} -w json"),
        step("lease revoke {lease3} -w fields"),
        step("get k --prefix -w json"),
        step("lease list"),
        step("lease list -w json"),
    ]);
    s.into()
}

fn lease_attach() -> Scenario {
    vec![
        step("lease grant 100"),
        step("lease grant 100"),
        step("put a 1 --lease={lease1}"),
        step("put a 2 --ignore-lease"),
        step("get a -w json"),
        step("put a 3 --lease={lease2} --prev-kv -w json"),
        step("lease timetolive {lease1} --keys"),
        step("lease timetolive {lease2} --keys"),
        step("put a --ignore-value --lease={lease1}"),
        step("get a -w fields"),
        step("put a 4"),
        step("get a -w json"),
        step("put b 1 --lease={lease1}"),
        step("del b"),
        step("lease timetolive {lease1} --keys"),
        step("txn").stdin("\nput t1 x --lease={lease1}\nput t2 y --lease={lease2}\n\n\n"),
        step("get t --prefix -w json"),
        step("lease revoke {lease2}"),
        step("get '' --prefix --keys-only"),
        step("lease revoke {lease1}"),
        step("get '' --prefix --keys-only"),
    ]
    .into()
}

fn lease_errors() -> Scenario {
    vec![
        step("put x y --lease=1234"),
        step("put x y --lease=zz"),
        step("lease timetolive 1234"),
        step("lease timetolive 1234 -w json"),
        step("lease revoke 1234"),
        step("lease keep-alive --once 1234"),
        step("lease grant abc"),
        step("lease grant"),
        step("lease revoke zz"),
        step("lease timetolive"),
        // TTLs below the minimum are raised to it (1.5 election timeouts, rounded up).
        step("lease grant 1"),
        step("lease grant 0 -w json"),
        step("get x"),
    ]
    .into()
}

fn lease_expiry() -> Scenario {
    vec![
        step("lease grant 4"),
        step("put e1 v1 --lease={lease1}"),
        step("put e2 v2 --lease={lease1}"),
        step("put keep me"),
        step("get e --prefix --keys-only"),
        step("get e --prefix --keys-only").until(""),
        step("lease timetolive {lease1}").until("lease <LEASE1> already expired\n"),
        step("lease timetolive {lease1} -w json"),
        step("lease list"),
        step("lease keep-alive --once {lease1}"),
        step("get '' --prefix -w json"),
    ]
    .into()
}

compat_tests!(lease_basic, lease_attach, lease_errors, lease_expiry);
