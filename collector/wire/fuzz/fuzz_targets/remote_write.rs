//! Fuzzes the remote_write decoder (snappy block + protobuf) and the label
//! validation every decoded series goes through on the ingest path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_wire::labels::LabelLimits;
use vigil_wire::remote_write::decode_write_request;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode_write_request(data, 1 << 20) {
        for ts in req.timeseries {
            let _ = vigil_wire::Labels::try_from_pairs(
                ts.labels.into_iter().map(|l| (l.name, l.value)),
                &LabelLimits::default(),
            );
        }
    }
});
