//! The repository's side: pack-sized durable writes (create, write,
//! make durable, publish), reading them back, and the latency of the small
//! operations a backup does. Everything lives under a temporary prefix
//! that is removed at the end, also when a step fails.

use std::sync::Arc;
use std::time::Instant;

use super::{mb_per_s, Latencies, SizingOptions};
use crate::error::{Error, Result};
use crate::repository::objects::Backend;

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

pub fn measure(backend: &Arc<dyn Backend>, opts: &SizingOptions) -> Result<ExportFigures> {
    let tag: String = crate::process::owner_tag()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let prefix = format!("strata-bench-{tag}");
    let measured = (|| {
        backend.create_dir(&format!("{prefix}/tmp"))?;
        backend.create_dir(&format!("{prefix}/objects"))?;
        stages(backend.as_ref(), &prefix, opts)
    })();
    let cleaned = remove_prefix(backend.as_ref(), &prefix);
    let figures = measured?;
    cleaned?;
    Ok(figures)
}

fn stages(b: &dyn Backend, prefix: &str, opts: &SizingOptions) -> Result<ExportFigures> {
    let size = usize::try_from(opts.object_size)
        .map_err(|_| Error::InvalidArgument("object size too large".into()))?;
    let count = (opts.write_bytes / opts.object_size).max(1);
    let data = noise(size);
    let started = Instant::now();
    for i in 0..count {
        let tmp = format!("{prefix}/tmp/pack-{i}");
        let mut w = b.create(&tmp)?;
        w.write_all(&data).map_err(|e| Error::io(&tmp, e))?;
        w.finish()?;
        b.publish(&tmp, &format!("{prefix}/objects/pack-{i}"), true)?;
    }
    let write_mb_per_s = mb_per_s(count * opts.object_size, started.elapsed().as_secs_f64());

    let mut buf = vec![0u8; 4 << 20];
    let started = Instant::now();
    for i in 0..count {
        let r = b.open(&format!("{prefix}/objects/pack-{i}"))?;
        let mut at = 0;
        while at < r.len() {
            let n = (r.len() - at).min(buf.len() as u64) as usize;
            r.read_at(at, &mut buf[..n])?;
            at += n as u64;
        }
    }
    let read_mb_per_s = mb_per_s(count * opts.object_size, started.elapsed().as_secs_f64());

    let (mut create, mut rename, mut remove, mut list) = (vec![], vec![], vec![], vec![]);
    for i in 0..opts.small_ops {
        let tmp = format!("{prefix}/tmp/small-{i}");
        let named = format!("{prefix}/objects/small-{i}");
        create.push(timed(|| {
            let mut w = b.create(&tmp)?;
            w.write_all(b"lock owner\n")
                .map_err(|e| Error::io(&tmp, e))?;
            w.finish()
        })?);
        rename.push(timed(|| b.rename(&tmp, &named))?);
        list.push(timed(|| b.list(&format!("{prefix}/objects")).map(|_| ()))?);
        remove.push(timed(|| b.remove(&named))?);
    }
    Ok(ExportFigures {
        write_mb_per_s,
        read_mb_per_s,
        latencies: Latencies {
            create_ms: median_ms(create),
            rename_ms: median_ms(rename),
            remove_ms: median_ms(remove),
            list_ms: median_ms(list),
        },
    })
}

fn remove_prefix(b: &dyn Backend, prefix: &str) -> Result<()> {
    for dir in ["tmp", "objects"] {
        let dir = format!("{prefix}/{dir}");
        match b.list(&dir) {
            Ok(names) => {
                for name in names {
                    b.remove(&format!("{dir}/{name}"))?;
                }
            }
            Err(e)
                if crate::repository::objects::io_kind(&e)
                    == Some(std::io::ErrorKind::NotFound) => {}
            Err(e) => return Err(e),
        }
        b.remove_dir(&dir)?;
    }
    b.remove_dir(prefix)
}
