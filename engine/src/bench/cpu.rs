//! The CPU's side: chunk + hash + compress, the work a backup does on
//! every new byte, on one core and on all of them.

use std::time::Instant;

use crate::repository::codec;
use rayon::prelude::*;

use super::{mb_per_s, SizingOptions};
use crate::chunker::cut_slice;

pub struct CpuFigures {
    pub one_core: f64,
    pub all_cores: f64,
    /// Stored bytes per raw byte.
    pub ratio: f64,
}

/// Chunks, hashes and compresses `data`; returns the stored size.
fn process(data: &[u8], opts: &SizingOptions) -> u64 {
    let mut stored = 0u64;
    let mut at = 0;
    for len in cut_slice(data, &opts.chunker) {
        let chunk = &data[at..at + len];
        at += len;
        std::hint::black_box(blake3::hash(chunk));
        stored += match codec::encode(chunk, opts.zstd_level) {
            Ok((bytes, _)) => bytes.len() as u64,
            Err(_) => len as u64,
        };
    }
    stored
}

pub fn measure(sample: &[u8], opts: &SizingOptions) -> CpuFigures {
    if sample.is_empty() {
        return CpuFigures {
            one_core: 0.0,
            all_cores: 0.0,
            ratio: 1.0,
        };
    }
    let started = Instant::now();
    let stored = process(sample, opts);
    let one_core = mb_per_s(sample.len() as u64, started.elapsed().as_secs_f64());

    // As the pipeline does: files in parallel, each chunked on its own.
    let piece =
        (sample.len() / (4 * rayon::current_num_threads())).max(opts.chunker.max_size as usize);
    let started = Instant::now();
    let _: u64 = sample.par_chunks(piece).map(|p| process(p, opts)).sum();
    let all_cores = mb_per_s(sample.len() as u64, started.elapsed().as_secs_f64());
    CpuFigures {
        one_core,
        all_cores,
        ratio: stored as f64 / sample.len() as f64,
    }
}
