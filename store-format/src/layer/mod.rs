//! Layer manifests: the record of one backup.
//!
//! ```text
//! LAYER   = HEADER || BODY || FOOTER
//! HEADER  = "STRATALY" || version:u32le (= 4; 1 to 3 are still read) 12 bytes
//! BODY    = zstd frames (the pieces); decompressed, one after the other: RECORD*
//! RECORD  = len:u32le || postcard(Record)
//! FOOTER  = META || meta_len:u32le || body_len:u64le
//!           || entry_count:u64le || tombstone_count:u64le || checksum:[32]
//! META    = postcard(LayerMeta) || postcard([Piece])
//!           (version 1: without `service`; 2 and 3: without `exclusions`,
//!           and without the index: the body is one frame)
//! checksum = BLAKE3(HEADER || FOOTER before it)   (before version 4: of
//!            every byte of the layer before it)
//! ```
//!
//! The body holds all entries first, strictly increasing in path order
//! (see [`crate::path`]), then all tombstones, also strictly increasing. The
//! metadata sits at the end so a writer can stream entries and add the totals
//! last; a reader checks the checksum before it trusts anything.

use std::io::{self, BufRead, Read};

use serde::{Deserialize, Serialize};

use crate::error::{FormatError, Result};
use crate::id::{BackupId, ChunkId, FileHash, ShareId};
use crate::path;

pub const LAYER_MAGIC: &[u8; 8] = b"STRATALY";
pub const LAYER_VERSION: u32 = 4;
/// The first layer version whose body is in pieces, with an index.
pub const LAYER_VERSION_PIECES: u32 = 4;
/// The first layer version whose file hashes are [`FileHash::of_chunks`].
pub const LAYER_VERSION_CHUNK_HASH: u32 = 3;
/// The oldest layer version this build reads.
pub const LAYER_VERSION_MIN: u32 = 1;
const HEADER_LEN: usize = 12;
const FOOTER_FIXED: usize = 4 + 8 + 8 + 8 + 32;
/// Upper bound on one decoded record, so a hostile length cannot exhaust memory.
const MAX_RECORD: u32 = 1 << 30;

/// The backup's own metadata, stored at the end of its layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub backup_id: BackupId,
    pub share_id: ShareId,
    pub parent_id: Option<BackupId>,
    pub project: String,
    pub name: String,
    pub description: String,
    pub share_name: String,
    pub share_path: String,
    /// Unix time (ns) when the backup started reading the share.
    pub data_timestamp_ns: i64,
    pub created_at_ns: i64,
    pub finished_at_ns: i64,
    pub stats: LayerStats,
    /// What a catalog rebuilt from the repository needs beyond the above
    /// (version 2; a version-1 layer reads as the default).
    pub service: ServiceMeta,
    /// What the backup left out of the share, and by which rules (version
    /// 4; earlier layers read as none).
    pub exclusions: Exclusions,
}

/// The rules by which a backup left paths of its share out, and how many
/// it left out. A path left out is not in the backup's tree: an
/// incremental whose parent had it records it as removed, like a path
/// deleted from the share, and its rules here say why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusions {
    /// Globs over stored paths (a name at any depth when without a `/`).
    pub patterns: Vec<String>,
    /// Whether a directory tagged `CACHEDIR.TAG` (with the cache directory
    /// signature) had its contents left out.
    pub caches: bool,
    /// File names whose presence in a directory left its contents out.
    pub if_present: Vec<String>,
    /// Entries left out: each excluded path counts once, however much its
    /// subtree held (an excluded subtree is never read).
    pub excluded: u64,
}

impl Exclusions {
    /// Whether the rules are those of `other` (the counts aside).
    pub fn same_rules(&self, other: &Exclusions) -> bool {
        self.patterns == other.patterns
            && self.caches == other.caches
            && self.if_present == other.if_present
    }
}

/// The service's view of the backup and its share when it was taken: what
/// a catalog rebuilt from the repository alone would otherwise lose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMeta {
    /// The share's size in GiB, if it had one.
    pub share_size_gib: Option<u64>,
    /// The share's protocol (`NFS`, `CIFS`, …); empty in version-1 layers.
    pub share_protocol: String,
    pub backup_type: Option<String>,
    /// The share snapshot the backup read, if any.
    pub snapshot_id: Option<String>,
    pub availability_zone: Option<String>,
    /// The node that took the backup.
    pub host: Option<String>,
    /// The device of the share's root when the backup read it.
    pub share_root_dev: Option<u64>,
    /// Paths the backup skipped or warned about, with why.
    pub problems: Vec<(String, String)>,
}

/// [`LayerMeta`] as version 1 stored it.
#[derive(Deserialize)]
struct LayerMetaV1 {
    backup_id: BackupId,
    share_id: ShareId,
    parent_id: Option<BackupId>,
    project: String,
    name: String,
    description: String,
    share_name: String,
    share_path: String,
    data_timestamp_ns: i64,
    created_at_ns: i64,
    finished_at_ns: i64,
    stats: LayerStats,
}

impl From<LayerMetaV1> for LayerMeta {
    fn from(v1: LayerMetaV1) -> Self {
        LayerMeta {
            backup_id: v1.backup_id,
            share_id: v1.share_id,
            parent_id: v1.parent_id,
            project: v1.project,
            name: v1.name,
            description: v1.description,
            share_name: v1.share_name,
            share_path: v1.share_path,
            data_timestamp_ns: v1.data_timestamp_ns,
            created_at_ns: v1.created_at_ns,
            finished_at_ns: v1.finished_at_ns,
            stats: v1.stats,
            service: ServiceMeta::default(),
            exclusions: Exclusions::default(),
        }
    }
}

/// What one backup saw and stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Entries skipped: unreadable files, sockets, devices.
    pub skipped: u64,
    /// Bytes of regular-file content in the backed-up tree.
    pub logical_bytes: u64,
    /// Raw bytes of chunks this backup was first to store.
    pub new_bytes: u64,
    /// Bytes those chunks take in packs (after compression).
    pub stored_bytes: u64,
    pub new_chunks: u64,
}

/// A chunk of a file: its id and raw length, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// What an entry is, with what only that kind has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File {
        size: u64,
        chunks: Vec<ChunkRef>,
        hash: FileHash,
    },
    Dir,
    Symlink {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
    /// A further name of a file recorded earlier under `target`.
    Hardlink {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
}

/// One path of the share and its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// Change-detection stamp: status-change time and inode number at backup.
    pub ctime_ns: i64,
    pub inode: u64,
    /// Sorted by name.
    pub xattrs: Vec<Xattr>,
    pub kind: EntryKind,
}

/// A path (and everything below it) deleted since the parent layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
enum Record {
    Entry(Entry),
    Tombstone(Tombstone),
}

/// Checks what an entry of a layer of `version` must satisfy on its own.
fn check_entry(entry: &Entry, version: u32) -> Result<()> {
    path::validate(&entry.path)?;
    let bad = |detail: String| FormatError::corrupt("layer entry", detail);
    let shown = || String::from_utf8_lossy(&entry.path).into_owned();
    for pair in entry.xattrs.windows(2) {
        if pair[0].name >= pair[1].name {
            return Err(bad(format!("{}: xattrs unsorted or repeated", shown())));
        }
    }
    if entry
        .xattrs
        .iter()
        .any(|x| x.name.is_empty() || x.name.contains(&0))
    {
        return Err(bad(format!("{}: invalid xattr name", shown())));
    }
    match &entry.kind {
        EntryKind::File { size, chunks, hash } => {
            let sum: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
            if sum != *size || chunks.iter().any(|c| c.len == 0) {
                return Err(bad(format!(
                    "{}: chunks add up to {sum} bytes, size is {size}",
                    shown()
                )));
            }
            // Earlier versions hashed the content, which only a reader of
            // every byte can check.
            if version >= LAYER_VERSION_CHUNK_HASH
                && *hash != FileHash::of_chunks(chunks.iter().map(|c| &c.id))
            {
                return Err(bad(format!(
                    "{}: file hash differs from its chunks'",
                    shown()
                )));
            }
        }
        EntryKind::Symlink { target } => {
            if target.is_empty() || target.contains(&0) {
                return Err(bad(format!("{}: invalid symlink target", shown())));
            }
        }
        EntryKind::Hardlink { target } => {
            path::validate(target)?;
            if path::cmp(target, &entry.path) != std::cmp::Ordering::Less {
                return Err(bad(format!(
                    "{}: hardlink target does not precede it",
                    shown()
                )));
            }
        }
        EntryKind::Dir => {}
    }
    Ok(())
}

fn invalid_from_corrupt(e: FormatError) -> FormatError {
    match e {
        FormatError::Corrupt { what, detail } => FormatError::Invalid { what, detail },
        other => other,
    }
}

fn check_order(prev: Option<&[u8]>, next: &[u8], what: &str) -> Result<()> {
    if let Some(prev) = prev {
        if path::cmp(prev, next) != std::cmp::Ordering::Less {
            return Err(FormatError::corrupt(
                "layer",
                format!(
                    "{what} out of order or repeated: {:?} then {:?}",
                    String::from_utf8_lossy(prev),
                    String::from_utf8_lossy(next)
                ),
            ));
        }
    }
    Ok(())
}

/// A layer whose checksum and footer have been verified, ready to stream.
pub struct Layer<'a> {
    /// The header's version: what the records' file hashes mean.
    pub version: u32,
    pub meta: LayerMeta,
    pub entry_count: u64,
    pub tombstone_count: u64,
    tail: LayerTail,
    body: &'a [u8],
}

impl<'a> Layer<'a> {
    /// Verifies the checksum, footer and (version 4) every piece of a whole
    /// layer held in memory.
    pub fn decode(bytes: &'a [u8]) -> Result<Self> {
        let tail = LayerTail::verify(bytes.len() as u64, |at, buf| {
            let from = usize::try_from(at).unwrap_or(usize::MAX);
            let piece = from
                .checked_add(buf.len())
                .and_then(|to| bytes.get(from..to))
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(piece);
            Ok(())
        })?;
        let body = &bytes[tail.body.start as usize..tail.body.end as usize];
        for p in &tail.pieces {
            let stored = &body[p.offset as usize..(p.offset + p.len) as usize];
            if blake3::hash(stored).as_bytes() != &p.hash {
                return Err(FormatError::corrupt(
                    "layer",
                    "a piece does not match its hash",
                ));
            }
        }
        Ok(Layer {
            version: tail.version,
            meta: tail.meta.clone(),
            entry_count: tail.entry_count,
            tombstone_count: tail.tombstone_count,
            tail,
            body,
        })
    }

    /// Streams the records; each one is checked (paths, order, counts),
    /// the pieces having been checked by [`Layer::decode`].
    pub fn records(&self) -> Result<Stream<&'a [u8]>> {
        self.tail.records_checked(self.body)
    }

    /// Decodes everything at once (tests and small layers).
    pub fn decode_all(&self) -> Result<(Vec<Entry>, Vec<Tombstone>)> {
        let mut entries = Vec::new();
        let mut tombstones = Vec::new();
        for record in self.records()? {
            match record? {
                LayerRecord::Entry(e) => entries.push(e),
                LayerRecord::Tombstone(t) => tombstones.push(t),
            }
        }
        Ok((entries, tombstones))
    }
}

/// One decoded record of a layer body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerRecord {
    Entry(Entry),
    Tombstone(Tombstone),
}

/// Iterator over a layer's records; ends with an error at the first bad one.
pub struct Records<R: BufRead> {
    /// Decompressed a piece at a time: records are small, and a call into
    /// the decoder per record field costs more than copying out of a buffer.
    body: io::BufReader<zstd::Decoder<'static, R>>,
    version: u32,
    /// The record being decoded; reused.
    buf: Vec<u8>,
    last_entry: Option<Vec<u8>>,
    last_tombstone: Option<Vec<u8>>,
    entries: u64,
    tombstones: u64,
    expected_entries: u64,
    expected_tombstones: u64,
    /// The path the first record must have (its piece's, from the index).
    first: Option<Vec<u8>>,
    done: bool,
}

impl<R: BufRead> Records<R> {
    /// Streams the records of a body (its bytes exactly, from `body`) of a
    /// layer of `version`, and checks them against the footer's counts at
    /// the end.
    pub(crate) fn new(
        body: R,
        version: u32,
        (entries, tombstones): (u64, u64),
        first: Option<Vec<u8>>,
    ) -> Result<Self> {
        Ok(Records {
            body: io::BufReader::with_capacity(DECODED_PIECE, zstd::Decoder::with_buffer(body)?),
            version,
            buf: Vec::new(),
            last_entry: None,
            last_tombstone: None,
            entries: 0,
            tombstones: 0,
            expected_entries: entries,
            expected_tombstones: tombstones,
            first,
            done: false,
        })
    }

    fn next_record(&mut self) -> Result<Option<LayerRecord>> {
        let mut len = [0u8; 4];
        match read_full(&mut self.body, &mut len)? {
            0 => {
                if self.entries != self.expected_entries
                    || self.tombstones != self.expected_tombstones
                {
                    return Err(FormatError::corrupt("layer", "record counts disagree"));
                }
                return Ok(None);
            }
            4 => {}
            _ => return Err(FormatError::corrupt("layer", "truncated record length")),
        }
        let len = u32::from_le_bytes(len);
        if len > MAX_RECORD {
            return Err(FormatError::corrupt("layer", "record too large"));
        }
        self.buf.resize(len as usize, 0);
        if read_full(&mut self.body, &mut self.buf)? != self.buf.len() {
            return Err(FormatError::corrupt("layer", "truncated record"));
        }
        let record: Record =
            postcard::from_bytes(&self.buf).map_err(|e| FormatError::corrupt("layer record", e))?;
        if let Some(first) = self.first.take() {
            let at = match &record {
                Record::Entry(e) => &e.path,
                Record::Tombstone(t) => &t.path,
            };
            if *at != first {
                return Err(FormatError::corrupt(
                    "layer",
                    "a piece does not start where its index says",
                ));
            }
        }
        match record {
            Record::Entry(entry) => {
                if self.tombstones > 0 {
                    return Err(FormatError::corrupt("layer", "entry after tombstones"));
                }
                check_entry(&entry, self.version)?;
                check_order(self.last_entry.as_deref(), &entry.path, "entries")?;
                remember(&mut self.last_entry, &entry.path);
                self.entries += 1;
                Ok(Some(LayerRecord::Entry(entry)))
            }
            Record::Tombstone(t) => {
                path::validate(&t.path)?;
                check_order(self.last_tombstone.as_deref(), &t.path, "tombstones")?;
                remember(&mut self.last_tombstone, &t.path);
                self.tombstones += 1;
                Ok(Some(LayerRecord::Tombstone(t)))
            }
        }
    }
}

/// Decompressed bytes buffered while records are read.
const DECODED_PIECE: usize = 32 << 10;

/// Keeps `path` as the last one seen, in the buffer already held.
fn remember(last: &mut Option<Vec<u8>>, path: &[u8]) {
    let kept = last.get_or_insert_with(Vec::new);
    kept.clear();
    kept.extend_from_slice(path);
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FormatError::corrupt("layer", format!("zstd: {e}"))),
        }
    }
    Ok(filled)
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = Result<LayerRecord>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_record().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

mod pieces;
mod stream;
mod write;
pub use pieces::{Checked, Piece};
pub use stream::{LayerTail, Stream};
pub use write::{LayerWriter, PIECE_RAW};

#[cfg(test)]
mod tests;
