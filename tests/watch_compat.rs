//! `watch` running as a child process while writes happen: the events printed by etcdctl
//! against oxcd, and by oxctl against both, must equal what etcdctl prints against etcd.
//!
//! See `common/watch.rs` for how fences make the output independent of timing.

use oxcd_process_tests::compat_tests;
use oxcd_process_tests::scenario::{split, step, Scenario, Step};
use oxcd_process_tests::watch::WatchScenario;

fn ws(watch: &str, fence: &str, actions: &[&str]) -> WatchScenario {
    WatchScenario {
        watch: split(watch),
        fence: fence.to_string(),
        actions: actions.iter().map(|a| step(a)).collect(),
        ..Default::default()
    }
}

fn live(watch: &str, fence: &str, actions: &[&str]) -> WatchScenario {
    WatchScenario {
        live_sync: true,
        ..ws(watch, fence, actions)
    }
}

const KEY_ACTIONS: &[&str] = &[
    "put foo 1",
    "put foo 2",
    "put other x",
    "del foo",
    "del foo",
    "put foo 3",
    "put foo ''",
];

const PREFIX_ACTIONS: &[&str] = &[
    "put w/a 1",
    "put w/b 2",
    "put x 1",
    "put w/a 11",
    "del w/ --prefix",
    "put w/c 3",
    "put wx no",
];

fn txn_action() -> Step {
    step("txn").stdin("\nput w/t1 a\nput w/t2 b\ndel w/c\n\n\n")
}

fn watch_key() -> WatchScenario {
    live("watch foo", "foo", KEY_ACTIONS)
}

fn watch_key_prev_kv() -> WatchScenario {
    live("watch foo --prev-kv", "foo", KEY_ACTIONS)
}

fn watch_prefix() -> WatchScenario {
    let mut s = live("watch w/ --prefix", "w/", PREFIX_ACTIONS);
    s.actions.push(txn_action());
    s
}

fn watch_prefix_prev_kv() -> WatchScenario {
    let mut s = live("watch --prefix --prev-kv w/", "w/", PREFIX_ACTIONS);
    s.actions.push(txn_action());
    s
}

fn watch_range() -> WatchScenario {
    live(
        "watch r1 r5",
        "r2",
        &[
            "put r1 a",
            "put r4 b",
            "put r5 outside",
            "put r0 outside",
            "del r1 r9",
        ],
    )
}

fn watch_json() -> WatchScenario {
    let mut s = ws(
        "watch w/ --prefix --rev {next} -w json",
        "w/",
        PREFIX_ACTIONS,
    );
    s.actions.push(txn_action());
    s
}

fn watch_json_prev_kv() -> WatchScenario {
    let mut s = ws(
        "watch w/ --prefix --prev-kv --rev {next} -w json",
        "w/",
        PREFIX_ACTIONS,
    );
    s.actions.push(txn_action());
    s
}

fn watch_fields() -> WatchScenario {
    ws(
        "watch foo --prev-kv --rev {next} -w fields",
        "foo",
        KEY_ACTIONS,
    )
}

fn watch_fields_prefix() -> WatchScenario {
    let mut s = ws(
        "watch w/ --prefix --rev {next} -w fields",
        "w/",
        PREFIX_ACTIONS,
    );
    s.actions.push(txn_action());
    s
}

fn history(watch: &str, fence: &str) -> WatchScenario {
    WatchScenario {
        setup: [
            "put h/a 1",
            "put h/b 2",
            "put other 0",
            "put h/a 3",
            "del h/b",
            "put h/c 4",
        ]
        .iter()
        .map(|a| step(a))
        .chain([step("txn").stdin("\nput h/a 5\ndel h/c\n\n\n")])
        .collect(),
        ..ws(watch, fence, &["put h/live 1", "del h/a"])
    }
}

fn watch_history() -> WatchScenario {
    history("watch h/ --prefix --rev 2", "h/")
}

fn watch_history_prev_kv() -> WatchScenario {
    history("watch h/ --prefix --rev 1 --prev-kv", "h/")
}

fn watch_history_json() -> WatchScenario {
    history("watch h/ --prefix --rev 3 --prev-kv -w json", "h/")
}

fn watch_history_fields() -> WatchScenario {
    history("watch h/ --prefix --rev 5 -w fields", "h/")
}

fn watch_history_key() -> WatchScenario {
    history("watch h/a --rev 1 -w json", "h/a")
}

fn watch_compacted() -> Scenario {
    let mut s: Vec<Step> = (1..=6)
        .map(|i| Step::args(&["put", "foo", &format!("v{i}")]))
        .collect();
    s.extend([
        step("compaction 4"),
        step("watch foo --rev 2"),
        step("watch foo --rev 3 -w json"),
        step("watch foo --rev 1 --prefix -w fields"),
        step("watch --rev 2 --prefix ''"),
    ]);
    s.into()
}

compat_tests!(
    watch_key,
    watch_key_prev_kv,
    watch_prefix,
    watch_prefix_prev_kv,
    watch_range,
    watch_json,
    watch_json_prev_kv,
    watch_fields,
    watch_fields_prefix,
    watch_history,
    watch_history_prev_kv,
    watch_history_json,
    watch_history_fields,
    watch_history_key,
    watch_compacted,
);
