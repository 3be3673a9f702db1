//! Every key in a repository, named in one place (FORMAT.md, section 2):
//!
//! ```text
//! config                 repository config (JSON), written once
//! packs/<xx>/<pack-id>   packs, sharded by the first byte of the id
//! layers/<backup-id>     one layer per backup (`.<n>`: its n-th rewrite)
//! locks/exclusive        the exclusive lease
//! locks/shared-<op-id>   a backup's shared lease
//! strata-bench-<tag>-*  what `strata bench` writes and removes
//! ```
//!
//! Objects being written are the store adapter's business (`tmp/` on a
//! filesystem), never a key here.

use strata_format::{BackupId, PackId};

use super::objects::Key;
use crate::error::Result;

/// A key this module builds from parts it checked.
fn known(key: String) -> Key {
    // Proven: every part is hex, a UUID, a decimal or a checked name.
    Key::new(key).unwrap_or_else(|e| unreachable!("a layout key is invalid: {e}"))
}

pub fn config() -> Key {
    known("config".into())
}

pub const PACKS: &str = "packs/";

pub fn pack(id: &PackId) -> Key {
    known(format!("{PACKS}{}/{id}", id.shard()))
}

/// The pack a key names, if it is a pack's key.
pub fn pack_of(key: &Key) -> Option<PackId> {
    let rest = key.as_str().strip_prefix(PACKS)?;
    let (shard, name) = rest.split_once('/')?;
    let id: PackId = name.parse().ok()?;
    (id.shard() == shard).then_some(id)
}

pub const LAYERS: &str = "layers/";

/// One layer object: a backup's layer at one generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerName {
    pub id: BackupId,
    pub generation: u32,
}

impl LayerName {
    /// The name of the layer its backup wrote.
    pub fn first(id: BackupId) -> LayerName {
        LayerName { id, generation: 0 }
    }

    /// Parses `<backup-id>` or `<backup-id>.<n>` (n ≥ 1, no leading zero).
    pub fn parse(name: &str) -> Option<LayerName> {
        let (id, generation) = match name.split_once('.') {
            None => (name, 0),
            Some((id, n)) => {
                if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (id, n.parse().ok()?)
            }
        };
        let parsed: BackupId = id.parse().ok()?;
        // Only the canonical spelling names a layer.
        (parsed.to_string() == id).then_some(LayerName {
            id: parsed,
            generation,
        })
    }

    /// `layers/<id>` for the layer its backup wrote, `layers/<id>.<n>` for
    /// the n-th rewrite.
    pub fn key(&self) -> Key {
        match self.generation {
            0 => known(format!("{LAYERS}{}", self.id)),
            n => known(format!("{LAYERS}{}.{n}", self.id)),
        }
    }

    /// The layer a key names, if it is a layer's key.
    pub fn of(key: &Key) -> Option<LayerName> {
        LayerName::parse(key.as_str().strip_prefix(LAYERS)?)
    }
}

pub fn exclusive_lease() -> Key {
    known("locks/exclusive".into())
}

/// Names the catalog that keeps the repository's leases, when one does
/// (FORMAT.md section 7a): processes of any other catalog keep away.
pub fn lock_keeper() -> Key {
    known("locks/kept-by".into())
}

pub const SHARED_LEASES: &str = "locks/shared-";

/// A backup's shared lease, named after its operation.
pub fn shared_lease(op: &str) -> Result<Key> {
    Key::new(format!("{SHARED_LEASES}{op}")).and_then(|k| match op.contains('/') {
        true => Err(crate::Error::Bug(format!(
            "operation id {op:?} has a slash"
        ))),
        false => Ok(k),
    })
}

/// The operation whose shared lease `key` is.
pub fn shared_lease_of(key: &Key) -> Option<&str> {
    key.as_str()
        .strip_prefix(SHARED_LEASES)
        .filter(|op| !op.is_empty())
}

/// The prefix of what `strata bench` puts (and removes), named after its
/// process; at the top, so no directory is left on a filesystem.
pub fn bench_prefix(tag: &crate::process::Tag) -> String {
    format!("strata-bench-{tag}-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_parse_back(pack_bytes: [u8; 32], uuid: [u8; 16], generation in 0u32..1000) {
            let id = PackId(pack_bytes);
            prop_assert_eq!(pack_of(&pack(&id)), Some(id));
            let name = LayerName { id: BackupId(uuid), generation };
            prop_assert_eq!(LayerName::of(&name.key()), Some(name));
        }
    }

    #[test]
    fn only_canonical_names_parse() {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(LayerName::parse(id).is_some());
        for bad in [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            &format!("{id}.0"),
            &format!("{id}.01"),
            &format!("{id}."),
            &format!("{id}.x"),
        ] {
            assert_eq!(LayerName::parse(bad), None, "{bad}");
        }
        let other_shard = Key::new(format!("packs/00/{}", "ff".repeat(32))).unwrap();
        assert_eq!(pack_of(&other_shard), None);
    }
}
