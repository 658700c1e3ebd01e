#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oxcd_server::fuzzing::request_validation(data);
});
