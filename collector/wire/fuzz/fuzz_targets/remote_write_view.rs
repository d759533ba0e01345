//! Fuzzes the borrowed remote_write decoder the ingest path uses against
//! prost's owned decoder on the same decompressed bytes: both accept or
//! both refuse, and what they accept has the same series, labels and
//! sample counts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use vigil_wire::remote_write::{ReceivedWriteRequest, WriteRequestView};

fuzz_target!(|data: &[u8]| {
    let view = WriteRequestView::decode(data);
    let owned = ReceivedWriteRequest::decode(data);
    assert_eq!(view.is_ok(), owned.is_ok(), "the decoders disagree on {data:?}");
    if let (Ok(view), Ok(owned)) = (view, owned) {
        assert_eq!(view.series.len(), owned.timeseries.len());
        for (s, t) in view.series.iter().zip(&owned.timeseries) {
            let got: Vec<(&str, &str)> = view.labels_of(s).iter().map(|l| (l.name, l.value)).collect();
            let want: Vec<(&str, &str)> = t
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            assert_eq!(got, want);
            assert_eq!(view.samples_of(s).len(), t.samples.len());
        }
    }
});
