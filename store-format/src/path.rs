//! Relative paths inside a share, as stored in layers, and their order.
//!
//! A stored path is a non-empty byte string of components joined by `/`. No
//! component is empty, `.` or `..`; no byte is NUL; the path neither starts nor
//! ends with `/`. Paths are ordered component by component, which is the order
//! a depth-first walk with sorted directory listings produces (`a`, `a/b`,
//! `a.txt`), and equals byte order with `/` read as the lowest byte.

use std::cmp::Ordering;

use crate::error::{FormatError, Result};

fn invalid(path: &[u8], reason: &'static str) -> FormatError {
    FormatError::InvalidPath {
        path: String::from_utf8_lossy(path).into_owned(),
        reason,
    }
}

/// Checks that `path` is a safe relative path (see the module docs).
pub fn validate(path: &[u8]) -> Result<()> {
    if path.is_empty() {
        return Err(invalid(path, "empty path"));
    }
    if path.contains(&0) {
        return Err(invalid(path, "contains a NUL byte"));
    }
    if path[0] == b'/' {
        return Err(invalid(path, "absolute path"));
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" => return Err(invalid(path, "empty component")),
            b"." => return Err(invalid(path, "'.' component")),
            b".." => return Err(invalid(path, "'..' component")),
            _ => {}
        }
    }
    Ok(())
}

/// Component-wise order of two stored paths: byte order with `/` read as
/// the lowest byte. Paths compared in a walk or a merge share long prefixes
/// (their directories), so the shared prefix is skipped a block at a time
/// and only the first differing byte is mapped.
pub fn cmp(a: &[u8], b: &[u8]) -> Ordering {
    let same = common_prefix(a, b);
    let key = |c: &u8| if *c == b'/' { 0u8 } else { *c };
    a[same..].iter().map(key).cmp(b[same..].iter().map(key))
}

/// The length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 16;
    let most = a.len().min(b.len());
    let mut at = 0;
    while at + BLOCK <= most && a[at..at + BLOCK] == b[at..at + BLOCK] {
        at += BLOCK;
    }
    while at < most && a[at] == b[at] {
        at += 1;
    }
    at
}

/// True when `path` is `ancestor` itself or lies below it.
pub fn is_within(path: &[u8], ancestor: &[u8]) -> bool {
    path == ancestor
        || (path.len() > ancestor.len()
            && path.starts_with(ancestor)
            && path[ancestor.len()] == b'/')
}

/// Joins a parent path (empty for the share root) and one component.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        out.extend_from_slice(parent);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_hostile_paths() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"a/../../b",
            b"..",
            b"a/./b",
            b"a//b",
            b"a/",
            b"a\0b",
        ] {
            assert!(validate(bad).is_err(), "{:?} accepted", bad);
        }
        for good in [&b"a"[..], b"a/b/c", b"...", b"a/..b", b".hidden"] {
            validate(good).unwrap();
        }
    }

    #[test]
    fn order_is_depth_first() {
        let mut paths = vec![&b"a.txt"[..], b"a/b", b"a", b"a/b/c", b"b", b"a-"];
        paths.sort_by(|x, y| cmp(x, y));
        assert_eq!(
            paths,
            vec![&b"a"[..], b"a/b", b"a/b/c", b"a-", b"a.txt", b"b"]
        );
    }

    #[test]
    fn within() {
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"ab", b"a"));
    }

    /// The order as first written: every byte mapped, one by one.
    fn cmp_bytewise(a: &[u8], b: &[u8]) -> Ordering {
        let key = |c: &u8| if *c == b'/' { 0u8 } else { *c };
        a.iter().map(key).cmp(b.iter().map(key))
    }

    proptest! {
        #[test]
        fn order_matches_bytewise_mapping_on_any_bytes(
            prefix in proptest::collection::vec(prop_oneof![Just(b'/'), Just(0u8), any::<u8>()], 0..40),
            a in proptest::collection::vec(prop_oneof![Just(b'/'), Just(0u8), any::<u8>()], 0..40),
            b in proptest::collection::vec(prop_oneof![Just(b'/'), Just(0u8), any::<u8>()], 0..40),
        ) {
            let pa = [&prefix[..], &a[..]].concat();
            let pb = [&prefix[..], &b[..]].concat();
            prop_assert_eq!(cmp(&pa, &pb), cmp_bytewise(&pa, &pb));
            prop_assert_eq!(cmp(&pa, &pa), Ordering::Equal);
        }

        #[test]
        fn order_matches_component_comparison(
            a in proptest::collection::vec("[a-c./-]{1,3}", 1..4),
            b in proptest::collection::vec("[a-c./-]{1,3}", 1..4),
        ) {
            let (pa, pb) = (a.join("/"), b.join("/"));
            let by_components = pa.split('/').cmp(pb.split('/'));
            prop_assert_eq!(cmp(pa.as_bytes(), pb.as_bytes()), by_components);
        }
    }
}
