use super::*;
use proptest::prelude::*;
use strata_format::layer::Entry;

fn sel(include: &[&str], exclude: &[&str]) -> Selection {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Selection::new(&own(include), &own(exclude)).expect("valid patterns")
}

fn entry(p: &str, dir: bool) -> Entry {
    Entry {
        path: p.as_bytes().to_vec(),
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        xattrs: Vec::new(),
        kind: match dir {
            true => EntryKind::Dir,
            false => EntryKind::Symlink {
                target: b"x".to_vec(),
            },
        },
    }
}

/// The paths taken from a tree given as (path, is_dir), in path order.
fn taken(s: &Selection, tree: &[(&str, bool)]) -> Vec<String> {
    let entries = tree.iter().map(|&(p, d)| Ok(entry(p, d)));
    Selected::new(entries, s)
        .map(|e| String::from_utf8(e.expect("no error").path).expect("utf-8"))
        .collect()
}

const TREE: &[(&str, bool)] = &[
    ("a", true),
    ("a/b", true),
    ("a/b/c.log", false),
    ("a/b/d", false),
    ("a/cache", true),
    ("a/cache/x", false),
    ("e", false),
    ("e.log", false),
];

#[test]
fn names_match_at_any_depth_and_paths_from_the_root() {
    let p = Patterns::new(&["*.log".into()]).expect("valid");
    assert!(p.matches(b"e.log") && p.matches(b"a/b/c.log"));
    assert!(!p.matches(b"a/b.log/c"));
    let p = Patterns::new(&["/a/*".into()]).expect("valid");
    assert!(p.matches(b"a/b") && !p.matches(b"a/b/c") && !p.matches(b"x/a/b"));
    let p = Patterns::new(&["a/**/d".into()]).expect("valid");
    assert!(p.matches(b"a/b/d") && p.matches(b"a/d"));
}

#[test]
fn a_literal_leading_directory_is_where_matches_lie() {
    let prefix = |ps: &[&str]| {
        Patterns::new(&ps.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .expect("valid")
            .literal_prefix()
    };
    assert_eq!(prefix(&["etc/app/*.conf"]), Some(b"etc/app".to_vec()));
    assert_eq!(prefix(&["/etc/**/x", "etc/app/y"]), Some(b"etc".to_vec()));
    assert_eq!(prefix(&["etc/app"]), Some(b"etc".to_vec()));
    assert_eq!(prefix(&["*.conf"]), None);
    assert_eq!(prefix(&["*/etc/x"]), None);
    assert_eq!(prefix(&["a/x", "b/y"]), None);
    assert_eq!(prefix(&["x"]), None);
    // Whatever matches lies below the prefix.
    let p = Patterns::new(&["etc/a*/[xy].conf".into()]).expect("valid");
    let at = p.literal_prefix().expect("a prefix");
    for m in [&b"etc/ab/x.conf"[..], b"etc/a/y.conf"] {
        assert!(p.matches(m) && path::is_within(m, &at));
    }
}

#[test]
fn bad_patterns_are_refused() {
    for bad in ["", "/", "a[", "a\0b"] {
        assert!(
            matches!(Patterns::new(&[bad.into()]), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn an_included_directory_brings_its_subtree_and_its_ancestors() {
    assert_eq!(
        taken(&sel(&["a/b"], &[]), TREE),
        ["a", "a/b", "a/b/c.log", "a/b/d"]
    );
}

#[test]
fn a_name_pattern_brings_each_match_with_its_parents() {
    assert_eq!(
        taken(&sel(&["*.log"], &[]), TREE),
        ["a", "a/b", "a/b/c.log", "e.log"]
    );
}

#[test]
fn exclusion_wins_and_prunes_subtrees() {
    assert_eq!(
        taken(&sel(&[], &["cache", "*.log"]), TREE),
        ["a", "a/b", "a/b/d", "e"]
    );
    assert_eq!(
        taken(&sel(&["a"], &["a/b"]), TREE),
        ["a", "a/cache", "a/cache/x"]
    );
}

#[test]
fn nothing_selected_yields_nothing() {
    assert!(taken(&sel(&["zzz"], &[]), TREE).is_empty());
}

#[test]
fn a_subtree_is_its_path_alone_however_it_is_spelt() {
    let s = Selection::subtree(b"a/[b]*?").expect("utf-8");
    let tree = [("a", true), ("a/[b]*?", false), ("a/bx", false)];
    assert_eq!(taken(&s, &tree), ["a", "a/[b]*?"]);
}

proptest! {
    /// Whatever the patterns, what is taken is in path order, each entry's
    /// parent is taken before it, and no excluded name is taken.
    #[test]
    fn taken_entries_keep_the_tree_shape(
        names in proptest::collection::vec("[ab]{1,2}", 1..6),
        picks in proptest::collection::vec(0usize..8, 0..3),
        skips in proptest::collection::vec(0usize..8, 0..2),
    ) {
        let mut tree: Vec<(String, bool)> = Vec::new();
        for (i, n) in names.iter().enumerate() {
            tree.push((n.clone(), true));
            tree.push((format!("{n}/f{i}"), false));
            tree.push((format!("{n}/{n}"), true));
            tree.push((format!("{n}/{n}/g{i}"), false));
        }
        tree.sort_by(|a, b| path::cmp(a.0.as_bytes(), b.0.as_bytes()));
        tree.dedup_by(|a, b| a.0 == b.0);
        let pool = ["a", "b", "f*", "g*", "a/*", "b/b", "*0", "**/g1"];
        let include: Vec<&str> = picks.iter().map(|&i| pool[i]).collect();
        let exclude: Vec<&str> = skips.iter().map(|&i| pool[i]).collect();
        let s = sel(&include, &exclude);
        let view: Vec<(&str, bool)> = tree.iter().map(|(p, d)| (p.as_str(), *d)).collect();
        let out = taken(&s, &view);
        let ex = Patterns::new(&exclude.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid");
        for (i, p) in out.iter().enumerate() {
            if i > 0 {
                prop_assert!(path::cmp(out[i - 1].as_bytes(), p.as_bytes()).is_lt());
            }
            if let Some(cut) = p.rfind('/') {
                prop_assert!(out[..i].contains(&p[..cut].to_string()));
            }
            prop_assert!(!ex.matches(p.as_bytes()));
        }
    }
}
