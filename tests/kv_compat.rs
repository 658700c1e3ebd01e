//! KV commands: the real etcdctl against oxcd must print exactly what it prints against etcd
//! (after normalising ids), and oxctl must print exactly what etcdctl prints.
//!
//! Each scenario runs on a fresh member, so revisions are compared as they are.

use oxcd_process_tests::compat_tests;
use oxcd_process_tests::scenario::{all_formats, formats, step, Scenario, Step};

const ALL: &[&str] = &["simple", "json", "fields"];

fn put_get() -> Scenario {
    let mut s = vec![
        step("put foo bar"),
        step("put foo bar -w json"),
        step("put foo bar -w fields"),
    ];
    s.extend(all_formats("put foo baz --prev-kv"));
    s.extend(all_formats("get foo"));
    s.extend(all_formats("get nokey"));
    s.extend([
        step("get foo -w table"),
        step("put 'key with space' 'value with space'"),
        step("get 'key with space'"),
        step("put empty ''"),
        step("get empty"),
        step("get empty -w json"),
        step("get foo --hex"),
        step("get foo --hex -w json"),
        step("put foo bar --prev-kv --hex"),
        // Missing arguments are client-side errors; both clients must say the same.
        step("put onlykey"),
        step("get"),
    ]);
    s.into()
}

fn get_flags() -> Scenario {
    let mut s = vec![];
    for (k, v) in [
        ("a1", "5"),
        ("a2", "4"),
        ("a3", "3"),
        ("b1", "2"),
        ("b2", "1"),
        ("c", "0"),
        ("a2", "44"),
        ("a1", "55"),
        ("a1", "555"),
    ] {
        s.push(Step::args(&["put", k, v]));
    }
    for cmd in [
        "get a --prefix",
        "get a --prefix --limit 2",
        "get b --from-key",
        "get a2 b2",
        "get '' --prefix --keys-only",
        "get '' --from-key --limit 3",
        "get a --prefix --order DESCEND",
        "get a --prefix --order ASCEND",
        "get '' --prefix --sort-by KEY --order DESCEND",
        "get '' --prefix --sort-by CREATE",
        "get '' --prefix --sort-by CREATE --order DESCEND",
        "get '' --prefix --sort-by MODIFY",
        "get '' --prefix --sort-by MODIFY --order DESCEND",
        "get '' --prefix --sort-by VALUE",
        "get '' --prefix --sort-by VALUE --order DESCEND",
        "get '' --prefix --sort-by VERSION --order DESCEND",
        "get '' --prefix --sort-by VERSION --limit 2",
        "get a1 --rev 2",
        "get a --prefix --rev 5",
        "get a --prefix --rev 9 --limit 1",
        "get a1 --consistency s",
        "get a --prefix --consistency s --keys-only",
        "get a --prefix --keys-only --limit 1",
    ] {
        s.extend(formats(cmd, ALL));
    }
    s.extend([
        step("get a --prefix --print-value-only"),
        step("get a --prefix --print-value-only --keys-only"),
        step("get a --prefix --print-value-only -w json"),
        step("get a --prefix --sort-by BOGUS"),
        step("get a --prefix --order SIDEWAYS"),
        step("get a --prefix --consistency x"),
        step("get a --prefix --from-key"),
        step("get a --rev -1"),
    ]);
    s.into()
}

fn del() -> Scenario {
    let mut s = vec![];
    for k in ["k1", "k2", "k3", "k4", "p/a", "p/b", "p/c", "z1", "z2"] {
        s.push(Step::args(&["put", k, &format!("v-{k}")]));
    }
    s.extend([
        step("del k1"),
        step("del k1"),
        step("del k2 --prev-kv"),
        step("del nothing --prev-kv -w json"),
        step("del k3 k4 -w json"),
        step("del p/ --prefix --prev-kv -w fields"),
        step("put p/a again"),
        step("del p/ --prefix -w json"),
        step("del z --from-key --prev-kv -w json"),
        step("get '' --prefix"),
        step("put x1 1"),
        step("put x2 2"),
        step("del x1 --prev-kv"),
        step("del x2 --prev-kv -w fields"),
        step("del '' --prefix"),
        step("get '' --prefix -w json"),
        step("del"),
    ]);
    s.into()
}

const TXN_CMP_VALUE: &str = "value(\"t\") = \"1\"\n\nput t 2\nput u 1\n\nput t 100\n\n";
const TXN_CMP_VERSION: &str = "version(\"t\") > \"1\"\n\nget t\nget u\n\nput fail 1\n\n";
const TXN_CMP_CREATE: &str =
    "create(\"t\") = \"2\"\nmod(\"t\") < \"100\"\n\ndel u --prev-kv\nget t --prefix\n\nput x x\n\n";
const TXN_CMP_FAIL: &str =
    "value(\"t\") != \"2\"\n\nput never 1\n\nput else 1\nget else\ndel nothing\n\n";
const TXN_MULTI_CMP: &str =
    "value(\"t\") = \"2\"\nversion(\"else\") = \"1\"\nmod(\"missing\") = \"0\"\ncreate(\"missing\") = \"0\"\n\nput m1 1\nput m2 2\nget m --prefix --limit 1\n\n\n";
const TXN_NO_CMP: &str = "\nput n 1\ndel m1\n\nput never 1\n\n";
const TXN_EMPTY: &str = "\n\n\n";
const TXN_MALFORMED: &str = "bogus\n\nput a 1\n\n\n";
const TXN_BAD_OP: &str = "\nfrobnicate a\n\n\n";
const TXN_DUP: &str = "\nput a 1\nput a 2\n\n\n";

fn txn() -> Scenario {
    let mut s = vec![step("put t 1")];
    for body in [TXN_CMP_VALUE, TXN_CMP_VERSION, TXN_CMP_CREATE, TXN_CMP_FAIL] {
        // Each body runs once per format; later runs see the earlier runs' writes, which is
        // what the reference sees too.
        for f in ALL {
            s.push(step("txn").format(f).stdin(body));
        }
    }
    for body in [
        TXN_MULTI_CMP,
        TXN_NO_CMP,
        TXN_EMPTY,
        TXN_MALFORMED,
        TXN_BAD_OP,
        TXN_DUP,
    ] {
        s.push(step("txn").stdin(body));
        s.push(step("txn -w json").stdin(body));
    }
    s.push(step("get '' --prefix -w json"));
    s.into()
}

fn compaction() -> Scenario {
    let mut s = vec![];
    for i in 1..=8 {
        s.push(Step::args(&["put", "c", &format!("v{i}")]));
    }
    s.push(step("put other x"));
    s.extend([
        step("compaction 3"),
        step("get c --rev 2"),
        step("get c --rev 3"),
        step("get c --rev 3 -w json"),
        step("get c --rev 4 -w fields"),
        step("compaction 3"),
        step("compaction 2"),
        step("compaction 5 -w json"),
        step("compaction 6 --physical"),
        step("get c --rev 5 -w json"),
        step("get c --rev 6"),
        step("get c --rev 6 -w fields"),
        step("compaction 100"),
        step("compaction 11"),
        step("compaction 10"),
        step("get c"),
        step("get c --rev 10"),
        step("get c --rev 9"),
        step("put c v9"),
        step("get c -w json"),
        step("compaction"),
        step("compaction abc"),
    ]);
    s.into()
}

fn future_revision() -> Scenario {
    let mut s = vec![step("put f 1"), step("put f 2")];
    s.extend(all_formats("get f --rev 3"));
    s.extend(all_formats("get f --rev 4"));
    s.extend(all_formats("get f --rev 100"));
    s.extend([
        step("get f --rev 3 --consistency s"),
        step("get f --rev 100 --consistency s"),
    ]);
    s.into()
}

fn big_and_binary_values() -> Scenario {
    let long = "v".repeat(100_000);
    vec![
        Step::args(&["put", "long", &long]),
        step("get long -w json"),
        step("get long --print-value-only"),
        Step::args(&["put", "utf8", "grüße ✓"]),
        step("get utf8"),
        step("get utf8 -w json"),
        step("get utf8 --hex"),
        Step::args(&["put", "tabs", "a\tb"]),
        step("get tabs -w fields"),
        Step::args(&["put", "quote\"key", "back\\slash"]),
        Step::args(&["get", "quote\"key", "-w", "fields"]),
        Step::args(&["get", "quote\"key", "-w", "json"]),
    ]
    .into()
}

fn status_and_members() -> Scenario {
    let mut s = vec![step("put a 1")];
    for cmd in ["endpoint status", "endpoint health", "member list"] {
        s.extend(formats(cmd, &["simple", "json", "fields", "table"]));
    }
    s.into()
}

fn hashkv() -> Scenario {
    let mut s = vec![step("endpoint hashkv")];
    for i in 0..5 {
        s.push(Step::args(&["put", &format!("h{i}"), &format!("{i}")]));
    }
    s.extend([step("del h1"), step("put h0 again")]);
    s.extend(formats(
        "endpoint hashkv",
        &["simple", "json", "fields", "table"],
    ));
    s.push(step("compaction 5"));
    s.extend(formats("endpoint hashkv", &["simple", "json"]));
    s.into()
}

compat_tests!(
    put_get,
    get_flags,
    del,
    txn,
    compaction,
    future_revision,
    big_and_binary_values,
    status_and_members,
    hashkv,
);
