//! strata-format: the bytes strata keeps in a repository.
//!
//! A repository holds three kinds of object, all immutable once published:
//!
//! - the [`config::RepoConfig`], which fixes the format version, the chunker
//!   parameters and the default compression;
//! - **packs** ([`pack`]), files of compressed chunks with a trailer listing
//!   each chunk's [`ChunkId`], offset and lengths;
//! - **layers** ([`layer`]), one per backup: the backup's metadata and its
//!   entries (files with their chunk lists, directories, symlinks, hardlinks)
//!   sorted by [`path`] order, plus tombstones for incremental deletions.
//!
//! Everything here is pure encode/decode over byte slices and `Read`/`Write`;
//! where the bytes live is the engine's business. `FORMAT.md` beside this
//! crate is the normative description of the same bytes.
//!
//! ```
//! use strata_format::{pack, ChunkId};
//! let chunk = b"hello, strata".to_vec();
//! let mut writer = pack::PackWriter::new(Vec::new()).unwrap();
//! let (stored, compression) = pack::compress_chunk(&chunk, Some(3)).unwrap();
//! writer.add(ChunkId::of(&chunk), &stored, chunk.len() as u32, compression).unwrap();
//! let (bytes, _, _) = writer.finish().unwrap();
//! let entries = pack::decode_index(&bytes).unwrap();
//! let e = &entries[0];
//! let blob = &bytes[e.offset as usize..][..e.stored_len as usize];
//! assert_eq!(&pack::decode_chunk(e, blob).unwrap()[..], &chunk[..]);
//! ```

pub mod config;
pub mod error;
pub mod id;
pub mod layer;
pub mod pack;
pub mod path;

pub use error::{FormatError, Result};
pub use id::{BackupId, ChunkId, FileHash, PackId, RepositoryId, ShareId, SnapshotId};
