#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // oxcd catches redb's panics on damaged database files (and reports the file as
        // invalid or damaged); libFuzzer's panic hook would abort on those caught panics too.
        // With the default hook a panic that escapes still aborts the run (libfuzzer-sys
        // aborts on any unwind out of the target).
        drop(std::panic::take_hook());
    },
    |data: &[u8]| {
        oxcd_server::fuzzing::snapshot_file(data);
    }
);
