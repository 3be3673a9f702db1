//! Verifying a layer by byte ranges and streaming its body must fail
//! cleanly on arbitrary bytes, and every entry it does yield must carry a
//! safe relative path.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_format::layer::{LayerRecord, LayerTail};

fuzz_target!(|data: &[u8]| {
    let read_at = |at: u64, buf: &mut [u8]| -> std::io::Result<()> {
        let at = at as usize;
        let piece = data
            .get(at..at + buf.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(piece);
        Ok(())
    };
    let Ok(tail) = LayerTail::verify(data.len() as u64, read_at) else {
        return;
    };
    let Some(body) = data.get(tail.body.start as usize..tail.body.end as usize) else {
        panic!("a verified layer's body lies outside it");
    };
    let Ok(records) = tail.records(body) else {
        return;
    };
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
