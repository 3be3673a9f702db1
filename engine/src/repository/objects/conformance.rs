//! The contract every [`ObjectStore`] must keep, as one suite: the POSIX
//! and memory stores run it in unit tests (`conformance_object_store_*`),
//! the NFS store against a real server in the end-to-end tests. It takes an
//! empty store and leaves it empty.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{io_kind, Cond, Key, ObjectStore, PAGE};
use crate::error::Error;

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

fn is_precondition<T>(r: &crate::error::Result<T>) -> bool {
    matches!(r, Err(Error::Precondition { .. }))
}

/// Bytes that differ at every offset modulo a large prime, so a piece
/// written at the wrong offset shows.
fn is_unsupported<T>(r: &crate::error::Result<T>) -> bool {
    matches!(r, Err(Error::Unsupported(_)))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + i / 65_521) % 251) as u8)
        .collect()
}

fn key(k: &str) -> Key {
    Key(k.to_string())
}

fn e(what: &str) -> impl FnOnce(Error) -> Failure + '_ {
    move |err| format!("{what}: {err}")
}

/// Runs the suite; the first broken promise is the error.
pub fn run(s: &dyn ObjectStore) -> Result<(), Failure> {
    ensure!(
        s.list("", None).map_err(e("list"))?.keys.is_empty(),
        "the store is not empty"
    );
    whole_and_ranges(s)?;
    conditions(s)?;
    listing(s)?;
    racing(s)?;
    for bad in ["../x", "/abs", "a//b", "a/./b", ""] {
        ensure!(Key::new(bad).is_err(), "key {bad:?} was accepted");
    }
    let left = s.list_all("").map_err(e("list"))?;
    ensure!(left.is_empty(), "the suite left {left:?}");
    Ok(())
}

/// A large object crosses every write buffer; read back whole and by range.
fn whole_and_ranges(s: &dyn ObjectStore) -> Result<(), Failure> {
    let big = pattern(20 * 1024 * 1024 + 12_345);
    let k = key("packs/ab/big");
    let mut w = s.writer(&k, Cond::IfAbsent).map_err(e("writer"))?;
    // Odd-sized writes, so pieces and buffers never line up with them.
    for part in big.chunks(1_000_003) {
        w.write_all(part).map_err(|x| format!("write: {x}"))?;
    }
    ensure!(
        s.stat(&k).map_err(e("stat"))?.is_none(),
        "an uncommitted put is visible"
    );
    let etag = w.commit().map_err(e("commit"))?;
    let meta = s
        .stat(&k)
        .map_err(e("stat"))?
        .ok_or("committed object missing")?;
    ensure!(meta.len == big.len() as u64, "size {}", meta.len);
    ensure!(
        meta.etag == etag,
        "stat's etag {meta:?} is not commit's {etag:?}"
    );
    ensure!(s.get(&k).map_err(e("get"))? == big, "read back differs");
    let r = s.open(&k).map_err(e("open"))?;
    ensure!(r.len() == big.len() as u64, "reader length {}", r.len());
    for (at, len) in [(0usize, 1usize), (8 << 20, 3 << 20), (big.len() - 7, 7)] {
        let got = s
            .get_range(&k, at as u64..(at + len) as u64)
            .map_err(e("get_range"))?;
        ensure!(got == big[at..at + len], "range {at}+{len} differs");
    }
    let mut past = vec![0u8; 10];
    let kind = kind_of(r.read_at(big.len() as u64 - 5, &mut past));
    ensure!(
        kind == Some(ErrorKind::UnexpectedEof),
        "read past the end gave {kind:?}"
    );

    // Shared reads: the bytes of the ranges in order, each range starting
    // a piece, whatever pieces the store received them in.
    let piece = r.piece_len().unwrap_or(1 << 20) as u64;
    let from = 1_000_001u64;
    let bounds = [
        from,
        from + 1,
        from + piece,
        from + piece + 7,
        from + 4 * piece + 3,
    ];
    let ranges: Vec<_> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
    let pieces = r.read_shared(&ranges).map_err(e("read_shared"))?;
    let end = bounds[bounds.len() - 1] as usize;
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
    let kind = kind_of(r.read_shared(&[tail - 100..tail, tail..tail + 10]));
    ensure!(
        kind == Some(ErrorKind::UnexpectedEof),
        "shared read past the end gave {kind:?}"
    );
    drop(r);

    // A writer dropped uncommitted leaves nothing behind.
    let mut w = s
        .writer(&key("packs/ab/dropped"), Cond::Any)
        .map_err(e("writer"))?;
    w.write_all(b"never").map_err(|x| format!("write: {x}"))?;
    drop(w);
    ensure!(
        s.stat(&key("packs/ab/dropped"))
            .map_err(e("stat"))?
            .is_none(),
        "a dropped put is visible"
    );
    ensure!(
        s.unfinished().map_err(e("unfinished"))?.is_empty(),
        "a dropped put left an unfinished one"
    );
    let kind = kind_of(s.open(&key("packs/ab/missing")));
    ensure!(
        kind == Some(ErrorKind::NotFound),
        "opening a missing object gave {kind:?}"
    );
    s.delete(&k, Cond::Any).map_err(e("delete"))?;
    s.delete(&k, Cond::Any).map_err(e("delete twice"))?;
    ensure!(
        s.stat(&k).map_err(e("stat"))?.is_none(),
        "deleted object remains"
    );
    Ok(())
}

/// `IfAbsent`, `IfMatch` and `Any` on put and delete.
fn conditions(s: &dyn ObjectStore) -> Result<(), Failure> {
    let k = key("locks/exclusive");
    let first = s.put(&k, b"one\n", Cond::IfAbsent).map_err(e("put"))?;
    ensure!(
        is_precondition(&s.put(&k, b"two\n", Cond::IfAbsent)),
        "IfAbsent over an object was not refused"
    );
    ensure!(
        s.get(&k).map_err(e("get"))? == b"one\n",
        "a refused put changed the object"
    );

    // The same bytes again are a put like any other (the etag may stay).
    let same = s
        .put(&k, b"one\n", Cond::IfMatch(first.clone()))
        .map_err(e("IfMatch, same bytes"))?;
    let current = s.stat(&k).map_err(e("stat"))?.ok_or("object gone")?.etag;
    ensure!(
        current == same,
        "stat's etag {current:?} is not the put's {same:?}"
    );
    // Other bytes are a new version.
    let second = s
        .put(&k, b"two\n", Cond::IfMatch(same.clone()))
        .map_err(e("IfMatch"))?;
    ensure!(
        second != first,
        "a put of new bytes kept the etag {first:?}"
    );
    ensure!(
        is_precondition(&s.put(&k, b"one\n", Cond::IfMatch(first.clone()))),
        "IfMatch of a superseded version was not refused"
    );
    let third = s
        .put(&k, b"other bytes\n", Cond::IfMatch(second.clone()))
        .map_err(e("IfMatch, new bytes"))?;
    ensure!(
        s.get(&k).map_err(e("get"))? == b"other bytes\n",
        "IfMatch did not replace"
    );
    let conditional_delete = !is_unsupported(&s.delete(&k, Cond::IfMatch(second.clone())));
    ensure!(
        !conditional_delete || is_precondition(&s.delete(&k, Cond::IfMatch(second))),
        "delete of a superseded version was not refused"
    );
    ensure!(
        s.stat(&k).map_err(e("stat"))?.is_some(),
        "a refused delete removed the object"
    );
    let fourth = s.put(&k, b"any\n", Cond::Any).map_err(e("put Any"))?;
    ensure!(fourth != third, "a put under Any kept the etag");
    if conditional_delete {
        s.delete(&k, Cond::IfMatch(fourth.clone()))
            .map_err(e("delete IfMatch"))?;
        ensure!(
            s.stat(&k).map_err(e("stat"))?.is_none(),
            "delete IfMatch left the object"
        );
        ensure!(
            is_precondition(&s.delete(&k, Cond::IfMatch(fourth.clone()))),
            "delete IfMatch of a missing object was not refused"
        );
    } else {
        // A store that cannot delete on condition says so every time, and
        // removes nothing.
        ensure!(
            is_unsupported(&s.delete(&k, Cond::IfMatch(fourth.clone()))),
            "a conditional delete was refused once, then accepted"
        );
        ensure!(
            s.stat(&k).map_err(e("stat"))?.is_some(),
            "an unsupported conditional delete removed the object"
        );
        s.delete(&k, Cond::Any).map_err(e("delete"))?;
    }
    ensure!(
        is_precondition(&s.put(&k, b"x", Cond::IfMatch(fourth))),
        "IfMatch on a missing object was not refused"
    );
    // An empty object is an object.
    s.put(&k, b"", Cond::IfAbsent).map_err(e("put empty"))?;
    ensure!(
        s.get(&k).map_err(e("get empty"))?.is_empty(),
        "empty object has bytes"
    );
    s.delete(&k, Cond::Any).map_err(e("delete"))
}

/// Recursive listing in key order, by prefix, in pages.
fn listing(s: &dyn ObjectStore) -> Result<(), Failure> {
    let mut keys: Vec<String> = (0..PAGE + 37)
        .map(|i| format!("packs/{:02x}/{i:05}", i % 7))
        .collect();
    keys.extend(["packs.x", "layers/a", "layers/a.1", "layers/ab", "config"].map(String::from));
    for k in &keys {
        s.put(&key(k), k.as_bytes(), Cond::IfAbsent)
            .map_err(e("put"))?;
    }
    keys.sort();
    let all: Vec<String> = s
        .list_all("")
        .map_err(e("list"))?
        .into_iter()
        .map(|k| k.to_string())
        .collect();
    ensure!(all == keys, "a full listing is not every key in order");
    let first = s.list("packs/", None).map_err(e("list"))?;
    ensure!(
        first.keys.len() == PAGE,
        "a first page of {}",
        first.keys.len()
    );
    let next = first.next.clone().ok_or("a full page has no next")?;
    let second = s.list("packs/", Some(&next)).map_err(e("list"))?;
    ensure!(
        second.keys.len() == 37 && second.next.is_none(),
        "second page {second:?}"
    );
    let layers = s.list_all("layers/a").map_err(e("list"))?;
    ensure!(
        layers.iter().map(Key::as_str).collect::<Vec<_>>()
            == ["layers/a", "layers/a.1", "layers/ab"],
        "prefix listing gave {layers:?}"
    );
    ensure!(
        s.list_all("nowhere/").map_err(e("list"))?.is_empty(),
        "listed a missing prefix"
    );
    for k in &keys {
        s.delete(&key(k), Cond::Any).map_err(e("delete"))?;
    }
    Ok(())
}

/// Concurrent callers: of racing creators one wins; of racing deleters of
/// one version, one wins.
fn racing(s: &dyn ObjectStore) -> Result<(), Failure> {
    const RACERS: usize = 6;
    let k = key("locks/race");
    for _round in 0..3 {
        let won = AtomicUsize::new(0);
        let failed = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for i in 0..RACERS {
                let (won, failed, k) = (&won, &failed, &k);
                scope.spawn(
                    move || match s.put(k, format!("{i}\n").as_bytes(), Cond::IfAbsent) {
                        Ok(_) => {
                            won.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(Error::Precondition { .. }) => {}
                        Err(x) => failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(x.to_string()),
                    },
                );
            }
        });
        let failed = failed.into_inner().unwrap_or_default();
        ensure!(failed.is_empty(), "racing creators failed: {failed:?}");
        ensure!(
            won.load(Ordering::SeqCst) == 1,
            "{} racing creators won",
            won.load(Ordering::SeqCst)
        );
        let etag = s
            .stat(&k)
            .map_err(e("stat"))?
            .ok_or("the winner's object is missing")?
            .etag;
        let won = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..RACERS {
                let (won, k, etag) = (&won, &k, &etag);
                scope.spawn(move || {
                    if s.delete(k, Cond::IfMatch(etag.clone())).is_ok() {
                        won.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        let winners = won.load(Ordering::SeqCst);
        if winners == 0 && is_unsupported(&s.delete(&k, Cond::IfMatch(etag.clone()))) {
            // No conditional deletes here (checked in `conditions`).
            s.delete(&k, Cond::Any).map_err(e("delete"))?;
        }
        ensure!(
            winners <= 1 && (winners == 1 || s.stat(&k).map_err(e("stat"))?.is_none()),
            "{winners} racing deleters won"
        );
        ensure!(
            s.stat(&k).map_err(e("stat"))?.is_none(),
            "racing deleters left the object"
        );
    }
    Ok(())
}
