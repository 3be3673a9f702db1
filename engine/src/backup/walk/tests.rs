//! Walk tests: items in order, listing inline or ahead, names of every length, read-ahead.
use super::*;
use std::path::Path;

fn watch<'a>(report: &'a Report, progress: &'a Progress) -> Watch<'a> {
    static COUNTERS: std::sync::OnceLock<Counters> = std::sync::OnceLock::new();
    Watch {
        counters: COUNTERS.get_or_init(Counters::default),
        report,
        progress,
        exclude: None,
    }
}

/// An item's number, path, kind and size.
type Seen = (u64, Vec<u8>, String, u64);

/// What a walk hands out, and the problems it reports.
fn walked(root: &Path, ahead: bool) -> (Vec<Seen>, Vec<String>) {
    let report = Report::default();
    let progress = Progress::default();
    let items = std::thread::scope(|s| {
        let (rx, handle, _) = spawn_listing(
            s,
            root.to_path_buf(),
            None,
            None,
            watch(&report, &progress),
            ahead,
        )
        .unwrap();
        let items: Vec<_> = rx
            .into_iter()
            .flatten()
            .map(|item| {
                let kind = match &item.kind {
                    ItemKind::File => "file".to_string(),
                    ItemKind::Dir => "dir".to_string(),
                    ItemKind::Symlink => "symlink".to_string(),
                    ItemKind::Hardlink(to) => {
                        format!("link to {}", String::from_utf8_lossy(to))
                    }
                    ItemKind::Nothing => "nothing".to_string(),
                };
                (item.seq, item.rel, kind, item.meta.map_or(0, |m| m.size))
            })
            .collect();
        handle.join().unwrap().unwrap();
        items
    });
    let problems = report
        .take()
        .into_iter()
        .map(|p| format!("{p:?}"))
        .collect();
    (items, problems)
}

#[test]
fn listing_ahead_hands_out_the_same_items_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in 0..12 {
        for sub in 0..(d % 4) {
            let p = root.join(format!("d{d:02}/s{sub}/deeper"));
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("leaf"), vec![b'x'; d * 10 + sub]).unwrap();
        }
        fs::create_dir_all(root.join(format!("d{d:02}"))).unwrap();
        for f in 0..(d * 7) {
            fs::write(root.join(format!("d{d:02}/f{f}")), vec![b'y'; f]).unwrap();
        }
    }
    fs::create_dir(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("d01", root.join("to-dir")).unwrap();
    fs::hard_link(root.join("d03/f2"), root.join("d11/zz")).unwrap();
    let (inline, problems) = walked(root, false);
    let (ahead, ahead_problems) = walked(root, true);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(ahead_problems.is_empty(), "{ahead_problems:?}");
    assert_eq!(inline, ahead);
    // Every path, in order, each once: the root's 12 + 2 names and
    // everything below them.
    let paths: Vec<&Vec<u8>> = inline.iter().map(|i| &i.1).collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| strata_format::path::cmp(a, b));
    sorted.dedup();
    assert_eq!(paths, sorted);
    let files = inline.iter().filter(|i| i.2 == "file").count();
    assert_eq!(files, (0..12).map(|d| d * 7 + d % 4).sum::<usize>());
    assert!(inline
        .iter()
        .any(|i| i.1 == b"d11/zz" && i.2 == "link to d03/f2"));
    assert!(inline.iter().any(|i| i.1 == b"to-dir" && i.2 == "symlink"));
    let seqs: Vec<u64> = inline.iter().map(|i| i.0).collect();
    assert_eq!(seqs, (0..inline.len() as u64).collect::<Vec<_>>());
}

/// With reads, where storage is slow (forced here), the walk opens the
/// files a backup will read, at most 256 at once, never an empty one; a
/// worker reads each from there.
/// Names are held inline up to a length and on the heap beyond it;
/// either way the walk hands out each path whole, and enters long-named
/// directories like short-named ones, listed inline or ahead.
#[test]
fn names_of_every_length_are_walked_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let name = |len: usize, c: char| c.to_string().repeat(len);
    let mut expected = Vec::new();
    for len in [1, 31, 32, 33, 64, 255] {
        let d = name(len, 'd');
        fs::create_dir(root.join(&d)).unwrap();
        expected.push(d.clone().into_bytes());
        for inner in [1, 32, 33, 255] {
            let f = name(inner, 'f');
            fs::write(root.join(&d).join(&f), f.as_bytes()).unwrap();
            expected.push(format!("{d}/{f}").into_bytes());
        }
        let f = name(len, 'g');
        fs::write(root.join(&f), b"x").unwrap();
        expected.push(f.into_bytes());
    }
    expected.sort_by(|a, b| strata_format::path::cmp(a, b));
    for ahead in [false, true] {
        let (items, problems) = walked(root, ahead);
        assert!(problems.is_empty(), "{problems:?}");
        let paths: Vec<Vec<u8>> = items.into_iter().map(|i| i.1).collect();
        assert_eq!(paths, expected, "listing ahead: {ahead}");
    }
}

#[test]
fn files_to_read_are_opened_ahead_within_a_budget() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    for f in 0..300 {
        fs::write(dir.path().join(format!("f{f:03}")), format!("file {f}")).unwrap();
    }
    fs::write(dir.path().join("g-empty"), b"").unwrap();
    let report = Report::default();
    let progress = Progress::default();
    let reads = Reads {
        racy_from: i64::MIN,
        rehash: false,
    };
    let items: Vec<WalkItem> = std::thread::scope(|s| {
        let root = dir.path().to_path_buf();
        let (rx, handle, _) =
            spawn_listing(s, root, None, Some(reads), watch(&report, &progress), true).unwrap();
        // Every item is held, so no file opened ahead is given back.
        let items = rx.into_iter().flatten().collect();
        handle.join().unwrap().unwrap();
        items
    });
    assert_eq!(items.len(), 301);
    let opened: Vec<bool> = items
        .iter()
        .map(|item| {
            let opened = item.opened.take();
            let was = opened.is_some();
            item.opened.set(opened);
            was
        })
        .collect();
    assert_eq!(opened.iter().filter(|&&o| o).count(), 256);
    assert!(
        opened[..256].iter().all(|&o| o),
        "the first files are opened"
    );
    assert!(!opened[300], "an empty file is not opened ahead");
    for (f, item) in items.iter().take(300).enumerate() {
        let mut text = String::new();
        item.open().unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, format!("file {f}"));
    }
}
