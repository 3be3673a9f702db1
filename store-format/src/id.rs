//! Typed identifiers. A `PackId` cannot be passed where a `ChunkId` is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::error::FormatError;

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn parse_hex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], FormatError> {
    let bad = || FormatError::Invalid {
        what,
        detail: format!("{s:?} is not {} hex digits", N * 2),
    };
    if s.len() != N * 2 || !s.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Builds the id from a 32-byte slice; `None` when the length is wrong.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; 32]>::try_from(bytes).ok().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($what, "("))?;
                write_hex(f, &self.0[..8])?;
                write!(f, ")")
            }
        }

        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, FormatError> {
                parse_hex::<32>(s, $what).map($name)
            }
        }
    };
}

hash_id!(
    /// BLAKE3-256 of a chunk's uncompressed bytes.
    ChunkId,
    "chunk id"
);
hash_id!(
    /// Random 256-bit name of a pack file, chosen by its writer.
    PackId,
    "pack id"
);
hash_id!(
    /// A regular file's content identity. From layer version 3 it is
    /// [`FileHash::of_chunks`] of the file's chunk ids; in versions 1 and 2
    /// it was BLAKE3-256 of the whole content. Both agree for a file of at
    /// most one chunk.
    FileHash,
    "file hash"
);

impl ChunkId {
    /// The id of `data`: BLAKE3-256 of the raw bytes.
    pub fn of(data: &[u8]) -> Self {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    /// The id of the bytes of `parts`, one after the other: the same as
    /// [`ChunkId::of`] their concatenation, without making it.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(part);
        }
        ChunkId(*hasher.finalize().as_bytes())
    }
}

/// The BLAKE3 key-derivation context of a many-chunk file's hash.
const FILE_HASH_CONTEXT: &str = "strata 2026 layer v3 file hash over chunk ids";

impl FileHash {
    /// The hash of a file made of the chunks `ids`, in file order: BLAKE3 of
    /// the empty string for no chunk, the chunk's own id for one (BLAKE3 of
    /// the content either way), else BLAKE3 in key-derivation mode, under
    /// its own context, of the ids one after the other. Every byte of the
    /// file is still covered: each chunk id is the BLAKE3 of its bytes.
    pub fn of_chunks<'a, I>(ids: I) -> FileHash
    where
        I: IntoIterator<Item = &'a ChunkId>,
    {
        let mut ids = ids.into_iter();
        let Some(first) = ids.next() else {
            return FileHash(ChunkId::of(b"").0);
        };
        let Some(second) = ids.next() else {
            return FileHash(first.0);
        };
        let mut hasher = blake3::Hasher::new_derive_key(FILE_HASH_CONTEXT);
        hasher.update(&first.0);
        hasher.update(&second.0);
        for id in ids {
            hasher.update(&id.0);
        }
        FileHash(*hasher.finalize().as_bytes())
    }
}

impl PackId {
    /// The two-hex-digit directory a pack lives under: `packs/<xx>/<id>`.
    pub fn shard(&self) -> String {
        format!("{:02x}", self.0[0])
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 16]);

        impl fmt::Display for $name {
            /// Hyphenated lowercase UUID form, as the OpenStack CLIs print ids.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let b = &self.0;
                write_hex(f, &b[0..4])?;
                f.write_str("-")?;
                write_hex(f, &b[4..6])?;
                f.write_str("-")?;
                write_hex(f, &b[6..8])?;
                f.write_str("-")?;
                write_hex(f, &b[8..10])?;
                f.write_str("-")?;
                write_hex(f, &b[10..16])
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($what, "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, FormatError> {
                let compact: String = s.chars().filter(|c| *c != '-').collect();
                let dashes = s.len() - compact.len();
                if dashes != 0 && dashes != 4 {
                    return Err(FormatError::Invalid {
                        what: $what,
                        detail: format!("{s:?} is not a UUID"),
                    });
                }
                parse_hex::<16>(&compact, $what).map($name)
            }
        }
    };
}

uuid_id!(
    /// Identity of one backup (one layer). Printed as a UUID.
    BackupId,
    "backup id"
);
uuid_id!(
    /// Identity of one share. Printed as a UUID.
    ShareId,
    "share id"
);
uuid_id!(
    /// Identity of one share snapshot. Printed as a UUID.
    SnapshotId,
    "snapshot id"
);
uuid_id!(
    /// Identity of one repository, recorded in its config.
    RepositoryId,
    "repository id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn chunk_id_hex_round_trips(bytes in any::<[u8; 32]>()) {
            let id = ChunkId(bytes);
            prop_assert_eq!(id.to_string().parse::<ChunkId>().ok(), Some(id));
        }

        #[test]
        fn backup_id_uuid_round_trips(bytes in any::<[u8; 16]>()) {
            let id = BackupId(bytes);
            let text = id.to_string();
            prop_assert_eq!(text.len(), 36);
            prop_assert_eq!(text.parse::<BackupId>().ok(), Some(id));
        }

        /// Two chunk lists get one file hash exactly when they are equal
        /// (order, count and every id matter), and a list of at most one
        /// chunk hashes like the content itself.
        #[test]
        fn file_hash_tells_chunk_lists_apart(
            a in proptest::collection::vec(0u8..4, 0..6),
            b in proptest::collection::vec(0u8..4, 0..6),
        ) {
            let ids = |l: &[u8]| l.iter().map(|&n| ChunkId::of(&[n])).collect::<Vec<_>>();
            let (ia, ib) = (ids(&a), ids(&b));
            prop_assert_eq!(FileHash::of_chunks(&ia) == FileHash::of_chunks(&ib), a == b);
            if a.len() <= 1 {
                let content: Vec<u8> = a.clone();
                prop_assert_eq!(FileHash::of_chunks(&ia).0, ChunkId::of(&content).0);
            }
        }
    }

    /// Pins the definition of a many-chunk file's hash (FORMAT.md section 5).
    #[test]
    fn file_hash_of_two_chunks_is_stable() {
        let ids = [ChunkId::of(b"a"), ChunkId::of(b"b")];
        assert_eq!(
            FileHash::of_chunks(&ids).to_string(),
            "a9ad7e3152933fd87752431417eeeba0ecb50d651896c2e920518d6c6af20ca3"
        );
    }

    #[test]
    fn rejects_malformed_ids() {
        assert!("xyz".parse::<ChunkId>().is_err());
        assert!("00".repeat(31).parse::<ChunkId>().is_err());
        assert!("zz".repeat(32).parse::<ChunkId>().is_err());
        assert!("0000-0000".parse::<BackupId>().is_err());
        assert!("é".repeat(16).parse::<BackupId>().is_err());
    }

    #[test]
    fn chunk_id_is_blake3() {
        assert_eq!(
            ChunkId::of(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
