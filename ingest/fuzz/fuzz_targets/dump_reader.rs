#![no_main]
//! The dump reader and the per-document pipeline never panic on any bytes, in any format,
//! and account for every line.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    poet_ingest::fuzzing::check_reader(data);
});
