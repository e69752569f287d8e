#![no_main]
//! The sweep-spec parser never panics, in any format, on any input; a spec that parses
//! expands (or is refused on the size limit) without panicking, deterministically.

use libfuzzer_sys::fuzz_target;
use poet_core::sweep::{ExpandOptions, SpecFormat, SweepSpec};

fuzz_target!(|text: &str| {
    for format in [SpecFormat::Toml, SpecFormat::Yaml, SpecFormat::Json] {
        if let Ok(spec) = SweepSpec::parse(text, format) {
            let opts = ExpandOptions { max_runs: 64 };
            let a = spec.expand(&opts);
            let b = spec.expand(&opts);
            assert_eq!(a.is_ok(), b.is_ok());
            if let (Ok(a), Ok(b)) = (a, b) {
                assert_eq!(a, b, "expansion is deterministic");
                assert!(a.configs.len() <= 64);
                for c in &a.configs {
                    c.validate().expect("expanded configs are valid");
                }
            }
        }
    }
});
