//! Bulk writes that bypass the page cache (`O_DIRECT`) on local disk file
//! systems: the large files of a restore.
//!
//! Why: a buffered write copies every byte into a newly allocated page-cache
//! page. On the machines we measured, that copy cost 1–1.9 s of CPU per GB
//! written (against 0.16 s per GB to read the same pages back), a third of
//! a restore's CPU. A direct write has the device read the bytes from our
//! buffer instead: a restore of 1.1 GB took 1.43–1.47 s instead of
//! 1.84–2.00 s, with 2.24–2.34 s of CPU instead of 3.01–3.28 s. A restore's
//! data is not read again soon, so the cache those copies fill is no loss,
//! and skipping it spares the operator's own cached data. (Pack writes in
//! a backup were tried too: no faster, so they stay buffered.)
//!
//! The rules of `O_DIRECT`: the buffer's address, the file offset and the
//! length of every write are multiples of the device's logical block size.
//! [`BlockWriter`] keeps all three at multiples of [`ALIGN`] (4 KiB covers
//! 512-byte and 4 KiB devices), pads the last block with zeros and then cuts
//! the file to its exact length. Where a file system or device wants more
//! (it answers `EINVAL`), the writer clears `O_DIRECT` and carries on
//! buffered: the bytes on disk are the same either way.
//!
//! Only file systems known to be local take direct writes
//! ([`supported_at`]); on a network file system a direct write is a
//! synchronous round trip and loses the client's write-behind.
//! `STRATA_DIRECT_IO=0` turns direct writes off everywhere.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use rustix::fs::OFlags;

/// Alignment of buffer addresses, file offsets and write lengths.
pub const ALIGN: usize = 4096;

/// `f_type` of the file systems direct writes are used on: ext2/3/4, XFS,
/// btrfs, F2FS, bcachefs.
const LOCAL_DISK_FS: [u64; 5] = [0xEF53, 0x5846_5342, 0x9123_683E, 0xF2F5_2010, 0xCA45_1A4E];

/// Whether files created under `dir` should be written with `O_DIRECT`.
pub fn supported_at(dir: &Path) -> bool {
    match rustix::fs::statfs(dir) {
        Ok(s) => u64::try_from(s.f_type).is_ok_and(|t| LOCAL_DISK_FS.contains(&t)),
        Err(_) => false,
    }
}

/// Whether `e` is the `EINVAL` a file system answers when it refuses
/// direct I/O (at open, or for a write's alignment).
pub fn refused(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
}

/// Creates a file for writing with `O_DIRECT` when `direct`, through
/// `open(extra_flags, new)`: `new` asks for an exclusive create, otherwise
/// the file (made by the refused first attempt) is opened and truncated.
/// Returns the file and whether it is open for direct writes.
pub fn create_new(
    open: impl Fn(OFlags, bool) -> std::io::Result<File>,
    direct: bool,
) -> std::io::Result<(File, bool)> {
    if !direct {
        return open(OFlags::empty(), true).map(|f| (f, false));
    }
    match open(OFlags::DIRECT, true) {
        Ok(f) => Ok((f, true)),
        // The refusal may come after the file was made.
        Err(e) if refused(&e) => open(OFlags::empty(), false).map(|f| (f, false)),
        Err(e) => Err(e),
    }
}

/// A [`BlockWriter`]'s buffer, whose first byte is [`ALIGN`]-aligned (made
/// without `unsafe`: a little more is allocated and the aligned part used).
/// Kept from one writer for the next, it saves allocating and zeroing.
pub struct Buffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
    cap: usize,
}

impl Buffer {
    /// Writes go out in pieces of `cap` bytes, rounded up to [`ALIGN`].
    pub fn new(cap: usize) -> Buffer {
        let cap = cap.max(1).div_ceil(ALIGN) * ALIGN;
        let storage = vec![0u8; cap + ALIGN];
        let misalign = storage.as_ptr() as usize % ALIGN;
        let start = (ALIGN - misalign) % ALIGN;
        Buffer {
            storage,
            start,
            len: 0,
            cap,
        }
    }

    /// Appends as much of `data` as fits; returns how much that was.
    fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.cap - self.len);
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// The first `len` bytes (the filled ones and, past them, zeros).
    fn bytes(&self, len: usize) -> &[u8] {
        &self.storage[self.start..self.start + len]
    }

    /// Zeros the bytes from the filled length up to `to`.
    fn zero_to(&mut self, to: usize) {
        let from = self.start + self.len;
        if to > self.len {
            self.storage[from..self.start + to].fill(0);
        }
    }
}

/// Writes a file front to back through an aligned buffer, directly when the
/// file was opened with `O_DIRECT`. A direct write returns only once the
/// device has the bytes, so from the second full buffer on, a thread of the
/// writer's own writes one buffer while the caller fills the next.
///
/// Durability: none of its own. A direct write has reached the device when
/// it returns, but the file's size and block map have not; callers that
/// need the file durable still call `sync_all` on what [`finish`] returns.
///
/// [`finish`]: BlockWriter::finish
pub struct BlockWriter {
    /// The file, while no thread of ours is writing to it.
    sink: Option<Sink>,
    behind: Option<Behind>,
    /// Whether the last block is padded to [`ALIGN`] (the file was opened
    /// for direct writes).
    pad: bool,
    buf: Buffer,
    /// File offset of the buffer's first byte; a multiple of [`ALIGN`].
    pos: u64,
}

/// Where and how a [`BlockWriter`]'s bytes are written.
struct Sink {
    file: File,
    direct: bool,
    /// Leaves all-zero [`ALIGN`] blocks unwritten, as holes.
    sparse: bool,
}

impl Sink {
    /// Writes `bytes` at `pos`, in runs of non-zero blocks when sparse.
    fn put(&mut self, bytes: &[u8], pos: u64) -> std::io::Result<()> {
        if !self.sparse {
            return write_at(&self.file, &mut self.direct, bytes, pos);
        }
        let len = bytes.len();
        let mut at = 0;
        while at < len {
            let block_end = (at + ALIGN).min(len);
            if bytes[at..block_end].iter().all(|&b| b == 0) {
                at = block_end;
                continue;
            }
            let mut run_end = block_end;
            while run_end < len {
                let next = (run_end + ALIGN).min(len);
                if bytes[run_end..next].iter().all(|&b| b == 0) {
                    break;
                }
                run_end = next;
            }
            write_at(
                &self.file,
                &mut self.direct,
                &bytes[at..run_end],
                pos + at as u64,
            )?;
            at = run_end;
        }
        Ok(())
    }
}

/// The writing thread: takes filled buffers (with their file offsets) and
/// gives them back empty; ends with the sink, or the first error.
struct Behind {
    to: Option<Sender<(Buffer, u64)>>,
    back: Receiver<Buffer>,
    thread: JoinHandle<std::io::Result<Sink>>,
}

impl Behind {
    fn start(mut sink: Sink) -> std::io::Result<Behind> {
        let (to, filled) = mpsc::channel::<(Buffer, u64)>();
        let (give_back, back) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("strata-write".into())
            .spawn(move || {
                for (mut buf, pos) in filled {
                    sink.put(buf.bytes(buf.len), pos)?;
                    buf.len = 0;
                    // The writer may have stopped waiting: fine.
                    let _ = give_back.send(buf);
                }
                Ok(sink)
            })?;
        Ok(Behind {
            to: Some(to),
            back,
            thread,
        })
    }

    /// Hands `buf` over to be written at `pos`.
    fn send(&mut self, buf: Buffer, pos: u64) -> std::io::Result<()> {
        let sent = self.to.as_ref().map(|to| to.send((buf, pos)));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread stopped: on an error, which `end` returns.
            _ => Err(std::io::Error::other("the writing thread stopped")),
        }
    }

    /// An emptied buffer, once the thread has written one.
    fn take_back(&self) -> Option<Buffer> {
        self.back.recv().ok()
    }

    /// Waits for every buffer sent to be written; the sink, or the first error.
    fn end(mut self) -> std::io::Result<(Sink, Option<Buffer>)> {
        drop(self.to.take());
        let sink = self
            .thread
            .join()
            .map_err(|_| std::io::Error::other("the writing thread panicked"))??;
        Ok((sink, self.back.try_iter().next()))
    }
}

impl BlockWriter {
    /// `direct`: whether `file` was opened with `O_DIRECT`.
    pub fn new(file: File, direct: bool, sparse: bool, mut buf: Buffer) -> BlockWriter {
        buf.len = 0;
        BlockWriter {
            sink: Some(Sink {
                file,
                direct,
                sparse,
            }),
            behind: None,
            pad: direct,
            buf,
            pos: 0,
        }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.pos + self.buf.len as u64
    }

    /// Appends `data` to the file.
    pub fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = self.buf.push(data);
            data = &data[n..];
            if self.buf.len == self.buf.cap {
                self.write_full()?;
            }
        }
        Ok(())
    }

    /// The buffer's free space, to be filled in place and then accepted with
    /// [`filled`] (instead of handing bytes to [`write`], which copies
    /// them in). What it holds before it is filled is unspecified.
    ///
    /// [`filled`]: BlockWriter::filled
    /// [`write`]: BlockWriter::write
    pub fn spare(&mut self) -> &mut [u8] {
        let from = self.buf.start + self.buf.len;
        &mut self.buf.storage[from..self.buf.start + self.buf.cap]
    }

    /// Appends the first `n` bytes of [`spare`] to the file.
    ///
    /// [`spare`]: BlockWriter::spare
    pub fn filled(&mut self, n: usize) -> std::io::Result<()> {
        if n > self.buf.cap - self.buf.len {
            return Err(std::io::Error::other(format!(
                "{n} bytes filled where {} were spare",
                self.buf.cap - self.buf.len
            )));
        }
        self.buf.len += n;
        if self.buf.len == self.buf.cap {
            self.write_full()?;
        }
        Ok(())
    }

    /// Sends the full buffer to the writing thread (started on the first
    /// one) and goes on with an empty one.
    fn write_full(&mut self) -> std::io::Result<()> {
        let pos = self.pos;
        self.pos += self.buf.cap as u64;
        let first = match self.sink.take() {
            Some(sink) => {
                self.behind = Some(Behind::start(sink)?);
                true
            }
            None => false,
        };
        let Some(behind) = self.behind.as_mut() else {
            return Err(std::io::Error::other("block writer has no file"));
        };
        let next = match first {
            // A second buffer, to fill while the first is written.
            true => Buffer::new(self.buf.cap),
            false => match behind.take_back() {
                Some(buf) => buf,
                None => return self.fail(),
            },
        };
        let full = std::mem::replace(&mut self.buf, next);
        if behind.send(full, pos).is_err() {
            return self.fail();
        }
        Ok(())
    }

    /// The writing thread's error.
    fn fail(&mut self) -> std::io::Result<()> {
        match self.behind.take().map(Behind::end) {
            Some(Err(e)) => Err(e),
            _ => Err(std::io::Error::other("the writing thread stopped")),
        }
    }

    /// Writes `parts`, one after the other, as the whole file and finishes
    /// it ([`finish`]). A file written buffered is written straight from
    /// `parts`, not through the aligned buffer (which only direct writes
    /// need).
    ///
    /// [`finish`]: BlockWriter::finish
    pub fn write_whole(mut self, parts: &[&[u8]]) -> std::io::Result<(File, Buffer)> {
        let fresh = !self.pad && self.written() == 0;
        match self.sink.as_mut() {
            Some(sink) if fresh => {
                let mut at = 0;
                for part in parts {
                    sink.put(part, at)?;
                    at += part.len() as u64;
                }
                // Past the last write; only `finish` follows, which needs
                // no alignment when nothing is padded.
                self.pos = at;
            }
            _ => {
                for part in parts {
                    self.write(part)?;
                }
            }
        }
        self.finish()
    }

    /// Writes what is buffered and cuts the file to the bytes accepted
    /// (past a padded last block, or up to a trailing hole). Returns the
    /// file and a buffer, for another writer.
    pub fn finish(mut self) -> std::io::Result<(File, Buffer)> {
        let end = self.written();
        let len = match self.pad {
            true => self.buf.len.div_ceil(ALIGN) * ALIGN,
            false => self.buf.len,
        };
        self.buf.zero_to(len);
        let (sink, buf) = match (self.sink.take(), self.behind.take()) {
            (Some(mut sink), _) => {
                sink.put(self.buf.bytes(len), self.pos)?;
                (sink, self.buf)
            }
            (None, Some(mut behind)) => {
                let cap = self.buf.cap;
                self.buf.len = len;
                if let Err(stopped) = behind.send(self.buf, self.pos) {
                    // The thread's own error says more.
                    return Err(behind.end().err().unwrap_or(stopped));
                }
                let (sink, buf) = behind.end()?;
                (sink, buf.unwrap_or_else(|| Buffer::new(cap)))
            }
            (None, None) => return Err(std::io::Error::other("block writer has no file")),
        };
        if self.pad || sink.sparse {
            sink.file.set_len(end)?;
        }
        let mut buf = buf;
        buf.len = 0;
        Ok((sink.file, buf))
    }
}

/// One positioned write; a direct write the file system refuses clears
/// `O_DIRECT` and is made again, buffered.
fn write_at(file: &File, direct: &mut bool, bytes: &[u8], at: u64) -> std::io::Result<()> {
    match file.write_all_at(bytes, at) {
        Err(e) if *direct && refused(&e) => {
            let flags = rustix::fs::fcntl_getfl(file)?;
            rustix::fs::fcntl_setfl(file, flags - OFlags::DIRECT)?;
            *direct = false;
            file.write_all_at(bytes, at)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

    fn open(path: &Path, direct: bool) -> (File, bool) {
        let direct = direct && supported_at(path.parent().expect("parent"));
        let open = |flags: OFlags, new: bool| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).custom_flags(flags.bits() as i32);
            if new {
                opts.create_new(true);
            } else {
                opts.create(true).truncate(true);
            }
            opts.open(path)
        };
        create_new(open, direct).expect("create")
    }

    /// Writes `pieces` through a writer and returns what the file holds.
    fn round_trip(pieces: &[Vec<u8>], direct: bool, sparse: bool, piece: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        // A buffer a writer has used before, full of other bytes.
        let (scratch, scratch_direct) = open(&dir.path().join("scratch"), direct);
        let mut w = BlockWriter::new(scratch, scratch_direct, false, Buffer::new(piece));
        w.write(&vec![0xAB; piece * 2 - 1]).expect("write");
        let (_, used) = w.finish().expect("finish");
        let (file, direct) = open(&path, direct);
        let mut w = BlockWriter::new(file, direct, sparse, used);
        for p in pieces {
            w.write(p).expect("write");
        }
        let total: usize = pieces.iter().map(Vec::len).sum();
        assert_eq!(w.written(), total as u64);
        w.finish().expect("finish");
        // The same bytes in one slice.
        let whole_path = dir.path().join("whole");
        let (file, direct) = open(&whole_path, direct);
        let w = BlockWriter::new(file, direct, sparse, Buffer::new(piece));
        w.write_whole(&[&pieces.concat()]).expect("write whole");
        let whole = std::fs::read(&whole_path).expect("read back");
        let written = std::fs::read(path).expect("read back");
        assert_eq!(whole, written, "write_whole and write differ");
        // The same bytes given to write_whole in parts.
        std::fs::remove_file(&whole_path).expect("rm");
        let (file, direct) = open(&whole_path, direct);
        let w = BlockWriter::new(file, direct, sparse, Buffer::new(piece));
        let parts: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        w.write_whole(&parts).expect("write whole in parts");
        let in_parts = std::fs::read(&whole_path).expect("read back");
        assert_eq!(in_parts, written, "write_whole in parts and write differ");
        // The same bytes, each piece put in place as far as the buffer's
        // spare room goes and the rest written; the buffer is reused, so its
        // spare room starts out holding stale bytes.
        let in_place_path = dir.path().join("in-place");
        let (file, direct) = open(&in_place_path, direct);
        let (_, used) = BlockWriter::new(file, direct, false, Buffer::new(piece))
            .write_whole(&[&vec![0xCD; piece + 3]])
            .expect("stale");
        std::fs::remove_file(&in_place_path).expect("rm");
        let (file, direct) = open(&in_place_path, direct);
        let mut w = BlockWriter::new(file, direct, sparse, used);
        for p in pieces {
            let spare = w.spare();
            let n = spare.len().min(p.len());
            spare[..n].copy_from_slice(&p[..n]);
            w.filled(n).expect("filled");
            w.write(&p[n..]).expect("write");
        }
        let room = w.spare().len();
        assert!(w.filled(room + 1).is_err(), "filled past the spare room");
        w.finish().expect("finish");
        let in_place = std::fs::read(in_place_path).expect("read back");
        assert_eq!(in_place, written, "filling in place and write differ");
        written
    }

    fn piece_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..20_000),
            (0usize..20_000).prop_map(|n| vec![0u8; n]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Whatever the piece sizes, the file holds exactly the bytes written.
        #[test]
        fn file_holds_exactly_what_was_written(
            pieces in proptest::collection::vec(piece_strategy(), 0..8),
            direct in any::<bool>(),
            sparse in any::<bool>(),
            piece in 1usize..40_000,
        ) {
            let expected: Vec<u8> = pieces.concat();
            prop_assert_eq!(round_trip(&pieces, direct, sparse, piece), expected);
        }
    }

    /// A write that fails, in the writing thread or not, fails the writer
    /// with the file system's own error.
    #[test]
    fn a_failed_write_is_reported_with_its_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"").expect("create");
        for pieces in [1, 5] {
            let read_only = File::open(&path).expect("open");
            let mut w = BlockWriter::new(read_only, false, false, Buffer::new(ALIGN));
            let result = (0..pieces)
                .try_for_each(|_| w.write(&[1u8; ALIGN]))
                .and_then(|()| w.finish().map(drop));
            let err = result.expect_err("writing a read-only file");
            assert_eq!(
                err.raw_os_error(),
                Some(rustix::io::Errno::BADF.raw_os_error()),
                "{err}"
            );
        }
    }

    #[test]
    fn the_buffer_is_aligned() {
        for cap in [1, ALIGN - 1, ALIGN, 3 * ALIGN + 5] {
            let b = Buffer::new(cap);
            assert_eq!(b.bytes(0).as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.cap % ALIGN, 0);
            assert!(b.cap >= cap);
        }
    }

    #[test]
    fn zero_blocks_stay_holes_when_sparse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let (file, direct) = open(&path, true);
        let mut w = BlockWriter::new(file, direct, true, Buffer::new(1 << 20));
        w.write(&[7u8; 100]).expect("write");
        w.write(&vec![0u8; 8 << 20]).expect("write");
        w.write(&[9u8; 10]).expect("write");
        let (file, _) = w.finish().expect("finish");
        let meta = file.metadata().expect("stat");
        assert_eq!(meta.len(), 100 + (8 << 20) + 10);
        // Two data blocks, not 2049 (some file systems allocate a little more).
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
    }
}
