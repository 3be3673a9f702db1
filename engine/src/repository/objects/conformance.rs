//! The contract every [`Backend`] must keep, as one suite: the POSIX
//! backend runs it in unit tests, the NFS backend against a real server in
//! the end-to-end tests. It works below a fresh prefix and removes it.

use std::io::ErrorKind;
use std::time::{Duration, SystemTime};

use super::{io_kind, Backend};

/// A failed expectation, with what was seen.
pub type Failure = String;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn kind_of<T>(r: crate::error::Result<T>) -> Option<ErrorKind> {
    r.err().as_ref().and_then(io_kind)
}

/// Bytes that differ at every offset modulo a large prime, so a piece
/// written at the wrong offset shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + i / 65_521) % 251) as u8)
        .collect()
}

fn write(b: &dyn Backend, key: &str, data: &[u8]) -> Result<(), Failure> {
    let mut w = b.create(key).map_err(|e| format!("create {key}: {e}"))?;
    // Odd-sized writes, so pieces and buffers never line up with them.
    for part in data.chunks(1_000_003) {
        w.write_all(part).map_err(|e| format!("write {key}: {e}"))?;
    }
    w.finish().map_err(|e| format!("finish {key}: {e}"))
}

/// Runs the suite; the first broken promise is the error.
pub fn run(b: &dyn Backend) -> Result<(), Failure> {
    let prefix = format!("conformance-{}", std::process::id());
    let p = |k: &str| format!("{prefix}/{k}");
    let e = |what: &str| {
        let what = what.to_string();
        move |err: crate::error::Error| format!("{what}: {err}")
    };
    b.create_dir(&p("tmp")).map_err(e("create_dir"))?;
    b.create_dir(&p("tmp")).map_err(e("create_dir twice"))?;

    // A large object crosses every write buffer; published exclusively
    // into a directory that does not exist yet.
    let big = pattern(20 * 1024 * 1024 + 12_345);
    write(b, &p("tmp/big"), &big)?;
    b.publish(&p("tmp/big"), &p("packs/ab/big"), true)
        .map_err(e("publish"))?;
    ensure!(
        b.stat(&p("tmp/big")).map_err(e("stat"))?.is_none(),
        "the temporary name survived publish"
    );
    let meta = b.stat(&p("packs/ab/big")).map_err(e("stat"))?;
    ensure!(
        meta.map(|m| m.len) == Some(big.len() as u64),
        "published size {meta:?}"
    );
    ensure!(
        b.read(&p("packs/ab/big")).map_err(e("read"))? == big,
        "read back differs"
    );
    let r = b.open(&p("packs/ab/big")).map_err(e("open"))?;
    ensure!(r.len() == big.len() as u64, "reader length {}", r.len());
    for (at, len) in [
        (0usize, 1usize),
        (8 << 20, 3 << 20),
        (big.len() - 7, 7),
        (1_234_567, 4_000_000),
    ] {
        let mut buf = vec![0u8; len];
        r.read_at(at as u64, &mut buf).map_err(e("read_at"))?;
        ensure!(buf == big[at..at + len], "range {at}+{len} differs");
    }
    let mut past = vec![0u8; 10];
    let k = kind_of(r.read_at(big.len() as u64 - 5, &mut past));
    ensure!(
        k == Some(ErrorKind::UnexpectedEof),
        "read past the end gave {k:?}"
    );

    // Shared reads: the bytes of the ranges in order, each range starting
    // a piece, whatever pieces the backend received them in.
    let piece = r.piece_len().unwrap_or(1 << 20) as u64;
    let from = 1_000_001u64;
    let ends = [
        from + 1,
        from + piece,
        from + piece + 7,
        from + 4 * piece + 3,
    ];
    let ranges: Vec<_> = std::iter::once(from)
        .chain(ends)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[0]..w[1])
        .collect();
    let pieces = r.read_shared(&ranges).map_err(e("read_shared"))?;
    let end = ends[ends.len() - 1] as usize;
    ensure!(
        pieces.concat() == big[from as usize..end],
        "shared read of {ranges:?} differs"
    );
    let mut at = from;
    let mut starts = Vec::new();
    for p in &pieces {
        starts.push(at);
        at += p.len() as u64;
    }
    ensure!(
        ranges.iter().all(|r| starts.contains(&r.start)),
        "a range does not start a piece: ranges {ranges:?}, pieces at {starts:?}"
    );
    let tail = big.len() as u64 - 5;
    let k = kind_of(r.read_shared(&[tail - 100..tail, tail..tail + 10]));
    ensure!(
        k == Some(ErrorKind::UnexpectedEof),
        "shared read past the end gave {k:?}"
    );

    // Exclusive publish refuses an existing name and touches neither.
    write(b, &p("tmp/other"), b"other")?;
    let k = kind_of(b.publish(&p("tmp/other"), &p("packs/ab/big"), true));
    ensure!(
        k == Some(ErrorKind::AlreadyExists),
        "exclusive publish over a name gave {k:?}"
    );
    ensure!(
        b.read(&p("tmp/other")).map_err(e("read"))? == b"other",
        "refused source changed"
    );
    ensure!(
        b.stat(&p("packs/ab/big"))
            .map_err(e("stat"))?
            .map(|m| m.len)
            == Some(big.len() as u64),
        "refused target changed"
    );

    // Plain publish replaces; rename moves.
    b.publish(&p("tmp/other"), &p("config"), false)
        .map_err(e("publish"))?;
    write(b, &p("tmp/newer"), b"newer")?;
    b.publish(&p("tmp/newer"), &p("config"), false)
        .map_err(e("publish over"))?;
    ensure!(
        b.read(&p("config")).map_err(e("read"))? == b"newer",
        "publish did not replace"
    );
    b.rename(&p("config"), &p("tmp/moved"))
        .map_err(e("rename"))?;
    ensure!(
        b.stat(&p("config")).map_err(e("stat"))?.is_none(),
        "rename left the old name"
    );

    // An empty object is an object.
    write(b, &p("tmp/empty"), b"")?;
    ensure!(
        b.read(&p("tmp/empty")).map_err(e("read empty"))?.is_empty(),
        "empty object has bytes"
    );

    let mut names = b.list(&p("tmp")).map_err(e("list"))?;
    names.sort();
    ensure!(names == ["empty", "moved"], "list gave {names:?}");
    let k = kind_of(b.list(&p("nowhere")));
    ensure!(
        k == Some(ErrorKind::NotFound),
        "listing a missing directory gave {k:?}"
    );
    let k = kind_of(b.open(&p("tmp/missing")));
    ensure!(
        k == Some(ErrorKind::NotFound),
        "opening a missing object gave {k:?}"
    );

    // touch moves the mtime to now, by the server's clock.
    let before = SystemTime::now() - Duration::from_secs(2);
    b.touch(&p("tmp/moved")).map_err(e("touch"))?;
    let m = b
        .stat(&p("tmp/moved"))
        .map_err(e("stat"))?
        .ok_or("touched object vanished")?;
    ensure!(m.mtime >= before, "touch left mtime at {:?}", m.mtime);

    let space = b.space().map_err(e("space"))?;
    ensure!(
        space.total > 0 && space.available <= space.total,
        "space {space:?}"
    );

    for bad in ["../x", "/abs", "a//b", "a/./b", ""] {
        ensure!(b.stat(bad).is_err(), "key {bad:?} was accepted");
    }

    for key in ["tmp/moved", "tmp/empty", "packs/ab/big"] {
        b.remove(&p(key)).map_err(e("remove"))?;
    }
    b.remove(&p("tmp/moved")).map_err(e("remove twice"))?;
    ensure!(
        b.stat(&p("packs/ab/big")).map_err(e("stat"))?.is_none(),
        "removed object remains"
    );
    for dir in ["tmp", "packs/ab", "packs", ""] {
        let dir = if dir.is_empty() {
            prefix.clone()
        } else {
            p(dir)
        };
        b.remove_dir(&dir).map_err(e("remove_dir"))?;
    }
    ensure!(
        b.stat(&prefix).map_err(e("stat"))?.is_none(),
        "the prefix remains"
    );
    Ok(())
}
