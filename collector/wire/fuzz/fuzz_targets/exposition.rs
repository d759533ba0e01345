//! Fuzzes the text exposition parser; whatever parses must write back and
//! parse again to the same samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_wire::exposition::{parse, write_sample};
use vigil_wire::labels::LabelLimits;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = LabelLimits::default();
    if let Ok(parsed) = parse(text, &limits) {
        let mut out = String::new();
        for s in &parsed.samples {
            write_sample(&mut out, &s.labels, s.value, s.timestamp_ms);
        }
        let again = parse(&out, &limits).expect("written exposition parses");
        assert_eq!(again.samples.len(), parsed.samples.len());
        for (a, b) in again.samples.iter().zip(&parsed.samples) {
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.timestamp_ms, b.timestamp_ms);
            assert!(a.value.to_bits() == b.value.to_bits() || (a.value.is_nan() && b.value.is_nan()));
        }
    }
});
