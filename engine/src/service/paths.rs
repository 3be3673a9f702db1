//! How this node reaches shares. A share records the path it was
//! registered under (on the node that registered it, or the export a
//! Manila share names); another node may mount the same export elsewhere.
//! A [`PathMap`] turns a recorded path into this node's local one, by the
//! longest recorded prefix (whole components only), and a local path back
//! into the recorded one when a command names a share by its directory.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Recorded path prefixes and where this node has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathMap(Vec<(PathBuf, PathBuf)>);

impl PathMap {
    /// A map of `(recorded, local)` prefixes, both absolute; a recorded
    /// prefix given twice is refused.
    pub fn new(pairs: impl IntoIterator<Item = (PathBuf, PathBuf)>) -> Result<PathMap> {
        let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
        for (recorded, local) in pairs {
            for p in [&recorded, &local] {
                if !p.is_absolute() {
                    return Err(Error::InvalidArgument(format!(
                        "path map entries must be absolute paths, not {}",
                        p.display()
                    )));
                }
            }
            if out.iter().any(|(r, _)| *r == recorded) {
                return Err(Error::InvalidArgument(format!(
                    "{} is mapped twice",
                    recorded.display()
                )));
            }
            out.push((recorded, local));
        }
        Ok(PathMap(out))
    }

    /// Where this node has the share recorded at `recorded`.
    pub fn local(&self, recorded: &str) -> PathBuf {
        swap(&self.0, Path::new(recorded), |(r, l)| (r, l))
    }

    /// The recorded path of a share this node has at `local`.
    pub fn recorded(&self, local: &Path) -> PathBuf {
        swap(&self.0, local, |(r, l)| (l, r))
    }
}

/// `path` with the longest `from` prefix that holds it replaced by its `to`.
fn swap<'a>(
    pairs: &'a [(PathBuf, PathBuf)],
    path: &Path,
    sides: impl Fn(&'a (PathBuf, PathBuf)) -> (&'a PathBuf, &'a PathBuf),
) -> PathBuf {
    pairs
        .iter()
        .map(&sides)
        .filter_map(|(from, to)| Some((from, to, path.strip_prefix(from).ok()?)))
        .max_by_key(|(from, _, _)| from.components().count())
        .map_or_else(
            || path.to_path_buf(),
            |(_, to, rest)| match rest.as_os_str().is_empty() {
                true => to.clone(),
                false => to.join(rest),
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_whole_prefix_wins_both_ways() {
        let map = PathMap::new([
            ("/exports".into(), "/mnt/nas".into()),
            ("/exports/fast".into(), "/mnt/ssd".into()),
        ])
        .unwrap();
        assert_eq!(map.local("/exports/a/b"), Path::new("/mnt/nas/a/b"));
        assert_eq!(map.local("/exports/fast/x"), Path::new("/mnt/ssd/x"));
        assert_eq!(map.local("/exports"), Path::new("/mnt/nas"));
        // Components, not characters.
        assert_eq!(map.local("/exportsX/a"), Path::new("/exportsX/a"));
        assert_eq!(map.local("/elsewhere"), Path::new("/elsewhere"));
        assert_eq!(
            map.recorded(Path::new("/mnt/ssd/x")),
            Path::new("/exports/fast/x")
        );
        assert_eq!(
            map.recorded(Path::new("/mnt/other")),
            Path::new("/mnt/other")
        );
        assert!(PathMap::new([("rel".into(), "/x".into())]).is_err());
        assert!(PathMap::new([("/a".into(), "/x".into()), ("/a".into(), "/y".into())]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn local_and_recorded_are_inverse_under_the_map(
            rest in proptest::collection::vec("[a-z]{1,5}", 0..4),
        ) {
            let map = PathMap::new([("/exports/site".into(), "/mnt/site-b".into())]).unwrap();
            let recorded = Path::new("/exports/site").join(rest.join("/"));
            let local = map.local(&recorded.display().to_string());
            proptest::prop_assert!(local.starts_with("/mnt/site-b"));
            proptest::prop_assert_eq!(map.recorded(&local), recorded);
        }
    }
}
