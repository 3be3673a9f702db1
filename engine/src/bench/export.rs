//! The repository's side: pack-sized durable puts, reading them back, and
//! the latency of the small operations a backup does (a lease's put,
//! renewal and delete, a listing). Everything lives under a temporary prefix
//! that is removed at the end, also when a step fails.

use std::sync::Arc;
use std::time::Instant;

use super::{mb_per_s, Latencies, SizingOptions};
use crate::error::{Error, Result};
use crate::process::Tag;
use crate::repository::layout;
use crate::repository::objects::{Cond, Key, ObjectStore};

pub struct ExportFigures {
    pub write_mb_per_s: f64,
    pub read_mb_per_s: f64,
    pub latencies: Latencies,
}

/// Incompressible bytes, as packs of new data are.
fn noise(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"strata bench")
        .finalize_xof()
        .fill(&mut out);
    out
}

fn median_ms(mut secs: Vec<f64>) -> f64 {
    if secs.is_empty() {
        return 0.0;
    }
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2] * 1e3
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64())
}

pub fn measure(store: &Arc<dyn ObjectStore>, opts: &SizingOptions) -> Result<ExportFigures> {
    let prefix = layout::bench_prefix(&Tag::this());
    let measured = stages(store.as_ref(), &prefix, opts);
    let cleaned = remove_prefix(store.as_ref(), &prefix);
    let figures = measured?;
    cleaned?;
    Ok(figures)
}

fn key(prefix: &str, name: &str) -> Result<Key> {
    Key::new(format!("{prefix}{name}"))
}

fn stages(s: &dyn ObjectStore, prefix: &str, opts: &SizingOptions) -> Result<ExportFigures> {
    let size = usize::try_from(opts.object_size)
        .map_err(|_| Error::InvalidArgument("object size too large".into()))?;
    let count = (opts.write_bytes / opts.object_size).max(1);
    let data = noise(size);
    let started = Instant::now();
    for i in 0..count {
        let pack = key(prefix, &format!("pack-{i}"))?;
        let mut w = s.writer(&pack, Cond::IfAbsent)?;
        w.write_all(&data)
            .map_err(|e| Error::io(pack.as_str(), e))?;
        w.commit()?;
    }
    let write_mb_per_s = mb_per_s(count * opts.object_size, started.elapsed().as_secs_f64());

    let mut buf = vec![0u8; 4 << 20];
    let started = Instant::now();
    for i in 0..count {
        let r = s.open(&key(prefix, &format!("pack-{i}"))?)?;
        let mut at = 0;
        while at < r.len() {
            let n = (r.len() - at).min(buf.len() as u64) as usize;
            r.read_at(at, &mut buf[..n])?;
            at += n as u64;
        }
    }
    let read_mb_per_s = mb_per_s(count * opts.object_size, started.elapsed().as_secs_f64());

    let (mut put, mut replace, mut delete, mut list) = (vec![], vec![], vec![], vec![]);
    for i in 0..opts.small_ops {
        let small = key(prefix, &format!("small-{i}"))?;
        let mut etag = None;
        put.push(timed(|| {
            etag = Some(s.put(&small, b"lock owner\n", Cond::IfAbsent)?);
            Ok(())
        })?);
        let etag = etag.ok_or_else(|| Error::Bug("a timed put gave no etag".into()))?;
        replace.push(timed(|| {
            s.put(&small, b"lock owner, renewed\n", Cond::IfMatch(etag))
                .map(|_| ())
        })?);
        list.push(timed(|| s.list(prefix, None).map(|_| ()))?);
        delete.push(timed(|| s.delete(&small, Cond::Any))?);
    }
    Ok(ExportFigures {
        write_mb_per_s,
        read_mb_per_s,
        latencies: Latencies {
            put_ms: median_ms(put),
            replace_ms: median_ms(replace),
            delete_ms: median_ms(delete),
            list_ms: median_ms(list),
        },
    })
}

fn remove_prefix(s: &dyn ObjectStore, prefix: &str) -> Result<()> {
    for key in s.list_all(prefix)? {
        s.delete(&key, Cond::Any)?;
    }
    Ok(())
}
