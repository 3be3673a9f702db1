//! The rules every value must pass before it is stored, whoever supplies it:
//! a command's arguments, a REST request's body, an imported record or a
//! layer read back from the repository during a rebuild. Front ends call
//! these; the engine calls them again where values enter the catalog, so no
//! door skips them.

use std::path::{Component, Path};

use crate::error::{Error, Result};

/// Longest name or description accepted (Manila's limit).
pub const MAX_TEXT: usize = 255;

/// Largest share size in GiB: Manila keeps sizes in a 32-bit signed integer.
pub const MAX_SHARE_GIB: u64 = i32::MAX as u64;

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

/// A name or description: `None` passes; a name (`may_be_empty` false) must
/// not be empty; neither may hold a control character (a newline breaks
/// `-f value` rows, an escape sequence drives the reader's terminal) or
/// exceed [`MAX_TEXT`] characters.
pub fn text(what: &str, value: Option<&str>, may_be_empty: bool) -> Result<()> {
    let Some(value) = value else {
        return Ok(());
    };
    if value.is_empty() && !may_be_empty {
        return Err(invalid(format!("the {what} is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the {what} {:?} holds a control character",
            value.escape_default().to_string()
        )));
    }
    if value.chars().count() > MAX_TEXT {
        return Err(invalid(format!(
            "the {what} is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(())
}

/// A share's size: at least 1 GiB, at most [`MAX_SHARE_GIB`].
pub fn share_size(gib: Option<u64>) -> Result<()> {
    match gib {
        Some(0) => Err(invalid("a share's size is at least 1 GiB".into())),
        Some(g) if g > MAX_SHARE_GIB => Err(invalid(format!(
            "a share's size of {g} GiB is larger than the largest allowed, {MAX_SHARE_GIB} GiB"
        ))),
        _ => Ok(()),
    }
}

/// A share's path: absolute and normalized (no `.` or `..` component, no
/// empty or doubled separator, no trailing separator but for `/` itself),
/// without control characters. A relative path would be resolved against
/// whichever directory a later process runs in; `..` would escape whatever
/// the path was meant to name.
pub fn share_path(path: &str) -> Result<()> {
    absolute_path("share path", path)
}

/// [`share_path`]'s rules for any path, named `what` in the refusal.
pub fn absolute_path(what: &str, path: &str) -> Result<()> {
    if path.chars().any(char::is_control) {
        return Err(invalid(format!(
            "the {what} {:?} holds a control character",
            path.escape_default().to_string()
        )));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(invalid(format!("the {what} {path:?} is not absolute")));
    }
    let normal = p
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let rebuilt: std::path::PathBuf = p.components().collect();
    if !normal || rebuilt.as_os_str() != p.as_os_str() {
        return Err(invalid(format!(
            "the {what} {path:?} is not normalized (no `.`, `..`, doubled or trailing `/`)"
        )));
    }
    Ok(())
}

/// A share's name: [`text`], and not a name that reads as a path
/// (`.`/`..`, or holding `/`), since shares are also found by path.
pub fn share_name(name: &str) -> Result<()> {
    text("share name", Some(name), false)?;
    if name == "." || name == ".." || name.contains('/') {
        return Err(invalid(format!(
            "the share name {name:?} is a path; a share name may not be `.`, `..` or hold `/`"
        )));
    }
    Ok(())
}

/// The `backup_options` of a new backup (Manila's), as every front end
/// passes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupOptions {
    /// `backup_type`: an enabled type's name (checked when the backup is
    /// made).
    pub backup_type: Option<String>,
    /// `incremental`: `true`/`false` (also `1`/`0`, `yes`/`no`); unsaid,
    /// the front end's default.
    pub incremental: Option<bool>,
}

/// Parses `backup_options` given as key/value pairs; an unknown key or a
/// bad value is refused, naming it.
pub fn backup_options<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BackupOptions> {
    let mut out = BackupOptions::default();
    for (key, value) in pairs {
        match key {
            "backup_type" if !value.is_empty() => {
                text("backup type", Some(value), false)?;
                out.backup_type = Some(value.to_string());
            }
            "incremental" => {
                out.incremental = Some(match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(invalid(format!("incremental={value:?} is not a boolean"))),
                })
            }
            _ => {
                return Err(invalid(format!(
                    "unknown backup option {key}={value:?} (known: backup_type=NAME, \
                     incremental=true|false)"
                )))
            }
        }
    }
    Ok(out)
}

/// Whether a project already using `used` GiB may add `estimate` GiB under
/// `limit`: the sum is checked, so no size wraps past the limit.
pub fn fits(used: u64, estimate: u64, limit: Option<u64>) -> bool {
    match limit {
        None => true,
        Some(limit) => used.checked_add(estimate).is_some_and(|sum| sum <= limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_descriptions() {
        assert!(text("n", Some("nightly"), false).is_ok());
        assert!(text("n", Some(""), false).is_err());
        assert!(text("n", Some(""), true).is_ok());
        assert!(text("n", Some("a\nb"), true).is_err());
        assert!(text("n", Some("a\u{1b}]0;x\u{7}"), true).is_err());
        assert!(text("n", Some("nul\0"), true).is_err());
        assert!(text("n", Some(&"x".repeat(256)), true).is_err());
        assert!(text("n", Some("ünïcode ok"), false).is_ok());
        assert!(text("n", None, false).is_ok());
        assert!(share_name("..").is_err());
        assert!(share_name("a/b").is_err());
        assert!(share_name("projects").is_ok());
    }

    #[test]
    fn backup_options_are_known_or_refused() {
        let o = backup_options([("backup_type", "gold"), ("incremental", "Yes")]).unwrap();
        assert_eq!(o.backup_type.as_deref(), Some("gold"));
        assert_eq!(o.incremental, Some(true));
        assert_eq!(backup_options([]).unwrap(), BackupOptions::default());
        for bad in [
            [("backup_type", "")],
            [("incremental", "maybe")],
            [("compression", "zstd")],
            [("backup_type", "a\u{1b}b")],
        ] {
            assert!(backup_options(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        for good in ["/", "/srv/projects", "/a b/c"] {
            assert!(share_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "relative",
            "../../victim",
            "/srv/../etc",
            "/srv/./x",
            "//srv",
            "/srv//x",
            "/srv/",
            "/srv/\u{1b}x",
            "/srv/\0",
        ] {
            assert!(share_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert!(share_size(None).is_ok());
        assert!(share_size(Some(1)).is_ok());
        assert!(share_size(Some(MAX_SHARE_GIB)).is_ok());
        assert!(share_size(Some(0)).is_err());
        assert!(share_size(Some(MAX_SHARE_GIB + 1)).is_err());
        assert!(share_size(Some(u64::MAX)).is_err());
    }

    proptest! {
        /// Admission never wraps: it agrees with arithmetic done in 128 bits.
        #[test]
        fn admission_is_exact_over_the_whole_range(
            used in any::<u64>(),
            estimate in any::<u64>(),
            limit in any::<u64>(),
        ) {
            let exact = u128::from(used) + u128::from(estimate) <= u128::from(limit);
            prop_assert_eq!(fits(used, estimate, Some(limit)), exact);
            prop_assert!(fits(used, estimate, None));
        }

        #[test]
        fn admission_at_the_edges(used in any::<u64>(), limit in any::<u64>()) {
            for estimate in [u64::MAX, u64::MAX - 1, u64::MAX - used] {
                let exact = u128::from(used) + u128::from(estimate) <= u128::from(limit);
                prop_assert_eq!(fits(used, estimate, Some(limit)), exact);
            }
        }
    }
}
