//! The peer benchmark's datasets and their seeded mutations.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::common::{files_below, noise, text};

/// What a dataset holds.
pub struct Size {
    pub files: u64,
    pub bytes: u64,
}

/// Real text files: the sources of the crates the build downloaded, copied
/// as often as it takes to reach `min_files` and `min_bytes`. Each copy's
/// files start with a line naming the copy, so no copy deduplicates against
/// another (a small file is one chunk). Without such sources (or for a
/// smoke run, `real` false) it is generated text.
pub fn source_tree(root: &Path, min_files: u64, min_bytes: u64, real: bool) -> Size {
    let sources = if real { cargo_sources() } else { Vec::new() };
    let mut size = Size { files: 0, bytes: 0 };
    let mut copy = 0u64;
    while size.files < min_files || size.bytes < min_bytes {
        let into = root.join(format!("copy{copy:02}"));
        if sources.is_empty() {
            generated(&into, copy, &mut size);
        } else {
            copied(&sources, &into, copy, &mut size);
        }
        copy += 1;
    }
    size
}

/// Every regular file under the registry's source directories, with the
/// part of its path to keep, sorted (so copies are made in one order).
fn cargo_sources() -> Vec<(PathBuf, PathBuf)> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Vec::new();
    };
    if !src.is_dir() {
        return Vec::new();
    }
    files_below(&src)
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .filter_map(|p| Some((p.strip_prefix(&src).ok()?.to_path_buf(), p)))
        .collect()
}

fn copied(sources: &[(PathBuf, PathBuf)], into: &Path, copy: u64, size: &mut Size) {
    for (rel, from) in sources {
        let Ok(data) = fs::read(from) else { continue };
        let to = into.join(rel);
        fs::create_dir_all(to.parent().expect("below the copy")).expect("mkdir");
        let mut out = fs::File::create(&to).expect("create");
        let header = format!("copy {copy}\n");
        out.write_all(header.as_bytes()).expect("write");
        out.write_all(&data).expect("write");
        size.files += 1;
        size.bytes += (header.len() + data.len()) as u64;
    }
}

fn generated(into: &Path, copy: u64, size: &mut Size) {
    for i in 0..200u64 {
        let seed = copy * 1000 + i;
        let dir = into.join(format!("d{:02}", i % 20));
        fs::create_dir_all(&dir).expect("mkdir");
        let data = text(1000 + (seed * 7919 % 30_000) as usize, seed);
        fs::write(dir.join(format!("f{i}.txt")), &data).expect("write");
        size.files += 1;
        size.bytes += data.len() as u64;
    }
}

/// A small deterministic generator, so a mutation is the same every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// What a mutation did.
#[derive(Debug, Default)]
pub struct Mutation {
    pub edited: u64,
    pub deleted: u64,
    pub added: u64,
}

/// Edits 1% of the files (a line inserted in the middle), deletes 0.2% and
/// adds as many new ones, chosen by `seed`.
pub fn mutate_tree(root: &Path, seed: u64) -> Mutation {
    let files = files_below(root);
    let mut rng = Rng::new(seed);
    let mut done = Mutation::default();
    let n = files.len() as u64;
    for _ in 0..(n / 100).max(1) {
        let path = &files[rng.below(n) as usize];
        let Ok(mut data) = fs::read(path) else {
            continue;
        };
        let at = data.len() / 2;
        let line = format!("edited by mutation {seed}\n");
        data.splice(at..at, line.bytes());
        fs::write(path, &data).expect("edit");
        done.edited += 1;
    }
    for i in 0..(n / 500).max(1) {
        let path = &files[rng.below(n) as usize];
        if fs::remove_file(path).is_ok() {
            done.deleted += 1;
        }
        let dir = files[rng.below(n) as usize].parent().expect("below root");
        if dir.is_dir() {
            let data = text(500 + rng.below(20_000) as usize, seed + i);
            fs::write(dir.join(format!("added-{seed}-{i}.txt")), &data).expect("add");
            done.added += 1;
        }
    }
    done
}

/// Writes `tar` as one archive of `tree` (GNU tar, no compression).
pub fn tar(tree: &Path, tar: &Path) {
    fs::create_dir_all(tar.parent().expect("tar's directory")).expect("mkdir");
    let ok = std::process::Command::new("tar")
        .arg("-cf")
        .arg(tar)
        .arg("-C")
        .arg(tree)
        .arg(".")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tar failed");
}

/// Inserts `count` short runs of bytes at seeded offsets of `file`
/// (everything after each insert shifts), rewriting it in place.
pub fn insert_into(file: &Path, count: usize, seed: u64) {
    let len = fs::metadata(file).expect("stat").len();
    let mut rng = Rng::new(seed);
    let mut at: Vec<u64> = (0..count).map(|_| rng.below(len)).collect();
    at.sort_unstable();
    let tmp = file.with_extension("inserting");
    {
        let mut input =
            std::io::BufReader::with_capacity(1 << 20, fs::File::open(file).expect("open"));
        let mut output =
            std::io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp).expect("create"));
        let mut pos = 0u64;
        for (i, &offset) in at.iter().enumerate() {
            let copied =
                std::io::copy(&mut (&mut input).take(offset - pos), &mut output).expect("copy");
            pos += copied;
            let mut insert = vec![0u8; 16 + i * 8];
            noise(&mut insert, seed + i as u64);
            output.write_all(&insert).expect("insert");
        }
        std::io::copy(&mut input, &mut output).expect("copy");
        output.flush().expect("flush");
    }
    fs::rename(&tmp, file).expect("rename");
}
