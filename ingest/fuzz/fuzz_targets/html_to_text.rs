#![no_main]
//! HTML to text never panics and always yields canonical text.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|html: &str| {
    poet_ingest::fuzzing::check_html(html);
});
