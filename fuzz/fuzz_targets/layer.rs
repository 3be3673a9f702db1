//! Decoding a layer from arbitrary bytes must fail cleanly, and every entry
//! it does yield must carry a safe relative path.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_format::layer::{Layer, LayerRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(layer) = Layer::decode(data) else {
        return;
    };
    let Ok(records) = layer.records() else { return };
    for record in records {
        match record {
            Ok(LayerRecord::Entry(e)) => assert!(strata_format::path::validate(&e.path).is_ok()),
            Ok(LayerRecord::Tombstone(t)) => {
                assert!(strata_format::path::validate(&t.path).is_ok())
            }
            Err(_) => break,
        }
    }
});
