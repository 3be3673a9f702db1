//! The incremental property test: rounds of random mutations of a real tree,
//! an incremental backup after each, then every backup of the chain restored
//! and compared with the tree as it was at its round.
//!
//! Seeded, so a failure names the seed that reproduces it
//! (`STRATA_MUTATION_SEED=<seed> cargo test ... mutation_rounds`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::harness::*;

/// splitmix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())].clone())
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        noise(len, self.next())
    }

    /// A size class: empty, small, one chunk, several chunks.
    fn size(&mut self) -> usize {
        match self.below(10) {
            0 => 0,
            1..=5 => 1 + self.below(40_000),
            6..=8 => 100_000 + self.below(400_000),
            _ => 1_500_000 + self.below(2_500_000),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

/// Every path below `root` (not `root` itself), sorted.
fn entries(root: &Path) -> Vec<(PathBuf, Kind)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let ft = fs::symlink_metadata(&p).unwrap().file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else {
                Kind::File
            };
            out.push((p, kind));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn of_kind(all: &[(PathBuf, Kind)], kind: Kind) -> Vec<PathBuf> {
    all.iter()
        .filter(|(_, k)| *k == kind)
        .map(|(p, _)| p.clone())
        .collect()
}

/// Applies seeded random mutations to a tree (also used by the prune tests).
pub(crate) struct Mutator {
    rng: Rng,
    root: PathBuf,
    names: u64,
    pub(crate) log: Vec<String>,
}

impl Mutator {
    pub(crate) fn new(seed: u64, root: &Path) -> Mutator {
        Mutator {
            rng: Rng(seed),
            root: root.to_path_buf(),
            names: 0,
            log: Vec::new(),
        }
    }

    /// A number in `0..n`, from the same seeded stream.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.rng.below(n)
    }

    fn fresh_name(&mut self, dir: &Path) -> PathBuf {
        self.names += 1;
        dir.join(format!("n{}", self.names))
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = of_kind(&entries(&self.root), Kind::Dir);
        dirs.push(self.root.clone());
        dirs
    }

    fn write_new(&mut self, path: &Path) {
        let size = self.rng.size();
        fs::write(path, self.rng.bytes(size)).unwrap();
    }

    /// Applies one random mutation and logs it, for failure reports.
    pub(crate) fn mutate(&mut self) {
        let all = entries(&self.root);
        let files = of_kind(&all, Kind::File);
        let dirs = self.dirs();
        let what = self.rng.below(16);
        let done = match what {
            0 | 1 => {
                let dir = self.rng.pick(&dirs).unwrap();
                let p = self.fresh_name(&dir);
                self.write_new(&p);
                format!("create {}", p.display())
            }
            2 => {
                let dir = self.rng.pick(&dirs).unwrap();
                let p = self.fresh_name(&dir);
                fs::create_dir(&p).unwrap();
                let inner = self.fresh_name(&p);
                self.write_new(&inner);
                format!("mkdir {}", p.display())
            }
            3 => match self.rng.pick(&all) {
                Some((p, Kind::Dir)) => {
                    fs::remove_dir_all(&p).unwrap();
                    format!("rm -r {}", p.display())
                }
                Some((p, _)) => {
                    fs::remove_file(&p).unwrap();
                    format!("rm {}", p.display())
                }
                None => "nothing to delete".into(),
            },
            4 => {
                let Some((from, _)) = self.rng.pick(&all) else {
                    return;
                };
                let into = self.rng.pick(&dirs).unwrap();
                if into.starts_with(&from) {
                    return;
                }
                let to = self.fresh_name(&into);
                fs::rename(&from, &to).unwrap();
                format!("mv {} {}", from.display(), to.display())
            }
            5 => self.edit(&files, |rng, data| {
                let len = 1 + rng.below(300_000);
                let extra = rng.bytes(len);
                data.extend_from_slice(&extra);
            }),
            6 => self.edit(&files, |rng, data| {
                let at = rng.below(data.len() + 1);
                let extra = rng.bytes(4096);
                data.splice(at..at, extra);
            }),
            7 => self.edit(&files, |rng, data| {
                let keep = rng.below(data.len() + 1);
                data.truncate(keep);
            }),
            8 => {
                let Some((p, kind)) = self.rng.pick(&all) else {
                    return;
                };
                let modes: &[u32] = match kind {
                    Kind::Dir => &[0o755, 0o750, 0o700, 0o1777],
                    Kind::File => &[0o644, 0o600, 0o755, 0o664, 0o2755],
                    Kind::Symlink => return,
                };
                let mode = modes[self.rng.below(modes.len())];
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
                format!("chmod {mode:o} {}", p.display())
            }
            9 => {
                let Some((p, _)) = self.rng.pick(&all) else {
                    return;
                };
                let secs = 1_000_000_000 + self.rng.below(700_000_000) as i64;
                set_mtime(&p, secs, self.rng.below(1_000_000_000) as i64);
                format!("touch {}", p.display())
            }
            10 => {
                // Same size, same mtime, other bytes: only the ctime tells.
                let Some(p) = self.rng.pick(&files) else {
                    return;
                };
                let m = fs::symlink_metadata(&p).unwrap();
                if m.len() == 0 {
                    return;
                }
                let mut data = fs::read(&p).unwrap();
                let at = self.rng.below(data.len());
                data[at] ^= 0x5a;
                fs::write(&p, &data).unwrap();
                set_mtime(&p, m.mtime(), m.mtime_nsec());
                format!("sneaky edit {}", p.display())
            }
            11 => {
                let Some(p) = self.rng.pick(&files) else {
                    return;
                };
                fs::remove_file(&p).unwrap();
                fs::create_dir(&p).unwrap();
                let inner = self.fresh_name(&p);
                self.write_new(&inner);
                format!("file -> dir {}", p.display())
            }
            12 => {
                let Some(p) = self.rng.pick(&of_kind(&all, Kind::Dir)) else {
                    return;
                };
                fs::remove_dir_all(&p).unwrap();
                self.write_new(&p);
                format!("dir -> file {}", p.display())
            }
            13 => {
                let Some(p) = self.rng.pick(&files) else {
                    return;
                };
                fs::remove_file(&p).unwrap();
                std::os::unix::fs::symlink(format!("target-{}", self.rng.below(9)), &p).unwrap();
                format!("file -> symlink {}", p.display())
            }
            14 => match self.rng.pick(&of_kind(&all, Kind::Symlink)) {
                Some(p) => {
                    fs::remove_file(&p).unwrap();
                    self.write_new(&p);
                    format!("symlink -> file {}", p.display())
                }
                None => {
                    let dir = self.rng.pick(&dirs).unwrap();
                    let p = self.fresh_name(&dir);
                    std::os::unix::fs::symlink("../somewhere", &p).unwrap();
                    format!("symlink {}", p.display())
                }
            },
            _ => {
                let Some(target) = self.rng.pick(&files) else {
                    return;
                };
                if self.rng.below(3) == 0 {
                    let len = 1 + self.rng.below(40);
                    let value = self.rng.bytes(len);
                    xattr::set(&target, "user.round", &value).unwrap();
                    format!("setxattr {}", target.display())
                } else {
                    let dir = self.rng.pick(&dirs).unwrap();
                    let link = self.fresh_name(&dir);
                    fs::hard_link(&target, &link).unwrap();
                    format!("ln {} {}", target.display(), link.display())
                }
            }
        };
        self.log.push(done);
    }

    fn edit(&mut self, files: &[PathBuf], change: impl FnOnce(&mut Rng, &mut Vec<u8>)) -> String {
        let Some(p) = self.rng.pick(files) else {
            return "no file to edit".into();
        };
        let mut data = fs::read(&p).unwrap();
        change(&mut self.rng, &mut data);
        fs::write(&p, &data).unwrap();
        format!("edit {} ({} bytes)", p.display(), data.len())
    }
}

fn run_rounds(seed: u64, rounds: usize) {
    let env = Env::new();
    let share = env.path("share");
    let mut m = Mutator::new(seed, &share);
    fs::create_dir(&share).unwrap();
    for _ in 0..30 {
        m.mutate();
    }
    // Let the first tree age past the racy window, so the first incrementals
    // trust metadata for what did not change and really skip it.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut kept: Vec<(String, BTreeMap<PathBuf, Node>)> = Vec::new();
    let full = backup(&env, &share);
    kept.push((full["id"].as_str().unwrap().to_string(), snapshot(&share)));
    for round in 1..=rounds {
        let mutations = if round % 5 == 0 { 0 } else { 1 + m.below(6) };
        for _ in 0..mutations {
            m.mutate();
        }
        let b = incremental_backup(&env, &share);
        assert_eq!(
            b["parent_id"].as_str(),
            Some(kept.last().unwrap().0.as_str())
        );
        if mutations == 0 {
            assert_eq!(
                (b["changed_count"].as_u64(), b["deleted_count"].as_u64()),
                (Some(0), Some(0)),
                "seed {seed} round {round}: a round without change recorded something"
            );
        }
        kept.push((b["id"].as_str().unwrap().to_string(), snapshot(&share)));
    }
    for (i, (id, expected)) in kept.iter().enumerate() {
        let target = env.path(&format!("restore-{i}"));
        let run = restore_to(&env, id, &target);
        assert_eq!(
            run.code, 0,
            "seed {seed}: restore of round {i} failed: {}",
            run.stderr
        );
        let got = snapshot(&target);
        if got != *expected {
            eprintln!("seed {seed}: mutations so far:\n{}", m.log.join("\n"));
            assert_same(expected, &got);
        }
    }
}

#[test]
fn mutation_rounds_restore_every_backup_of_the_chain() {
    let seeds: Vec<u64> = match std::env::var("STRATA_MUTATION_SEED") {
        Ok(s) => vec![s.parse().expect("STRATA_MUTATION_SEED is a number")],
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        run_rounds(seed, 12);
    }
}
