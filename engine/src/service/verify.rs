//! `check --read-data`: every pack (or a deterministic slice of them) read
//! whole, each chunk checked against its id, each trailer and layer against
//! its checksum; damage named with the backups that need it, whole chains.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use rayon::prelude::*;
use strata_format::{BackupId, ChunkId, PackId};

use super::gc::{scan_layers, Collect};
use super::{Engine, Vault};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::packs::read::{verify_pack, Buffers, PackVerdict};

/// Which packs a data check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSubset {
    All,
    /// About this percentage of them (1–100), the same ones every time.
    Percent(u32),
    /// Slice `n` of `of` (1-based): the slices 1..=of together read every
    /// pack exactly once (seven nights, seven slices).
    Slice {
        n: u32,
        of: u32,
    },
}

impl DataSubset {
    /// Parses `10%` or `3/7`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "a read-data subset is a percentage (10%) or a slice (3/7), not {s:?}"
            ))
        };
        if let Some(pct) = s.strip_suffix('%') {
            let pct: u32 = pct.trim().parse().map_err(|_| bad())?;
            if !(1..=100).contains(&pct) {
                return Err(bad());
            }
            return Ok(DataSubset::Percent(pct));
        }
        let (n, of) = s.split_once('/').ok_or_else(bad)?;
        let (n, of): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            of.trim().parse().map_err(|_| bad())?,
        );
        if of == 0 || n == 0 || n > of {
            return Err(bad());
        }
        Ok(DataSubset::Slice { n, of })
    }

    /// Whether this subset reads `pack`: decided by the pack's id alone (its
    /// first eight bytes, uniformly random), so every run picks the same.
    pub fn takes(&self, pack: &PackId) -> bool {
        let mut head = [0u8; 8];
        head.copy_from_slice(&pack.0[..8]);
        let x = u64::from_le_bytes(head);
        match *self {
            DataSubset::All => true,
            DataSubset::Percent(pct) => x % 100 < u64::from(pct),
            DataSubset::Slice { n, of } => x % u64::from(of) == u64::from(n - 1),
        }
    }
}

/// What a data check read and found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DataReport {
    pub packs_read: u64,
    pub bytes_read: u64,
    pub chunks_verified: u64,
    /// The verified chunks' bytes, decompressed.
    pub chunk_bytes_verified: u64,
    pub layers_verified: u64,
    /// Packs that cannot be read at all (missing, or a damaged trailer).
    pub damaged_packs: Vec<String>,
    /// Chunks that fail their id, named by pack and offset.
    pub damaged_chunks: Vec<String>,
    pub damaged_layers: Vec<String>,
    /// Every backup that needs something damaged — the ones whose layer
    /// references it and every backup built on them — by id and name.
    pub affected_backups: Vec<String>,
}

impl DataReport {
    pub fn is_clean(&self) -> bool {
        self.damaged_packs.is_empty()
            && self.damaged_chunks.is_empty()
            && self.damaged_layers.is_empty()
    }
}

impl Engine {
    /// Reads the packs of `subset` in every repository, in parallel with
    /// bounded memory (a span per thread), and every layer.
    pub fn check_data(&self, subset: DataSubset, progress: &Progress) -> Result<DataReport> {
        let mut report = DataReport::default();
        let mut affected = BTreeSet::new();
        for vault in self.vaults() {
            self.check_site_data(vault, subset, progress, &mut report, &mut affected)?;
        }
        // The backups built on an affected one need it too.
        let mut chains = BTreeSet::new();
        let mut todo: Vec<BackupId> = affected.into_iter().collect();
        while let Some(id) = todo.pop() {
            if chains.insert(id) {
                todo.extend(self.store.dependents(id)?);
            }
        }
        for id in chains {
            let name = self.store.backup(id).ok().and_then(|b| b.name);
            report.affected_backups.push(match name {
                Some(name) => format!("{id} ({name})"),
                None => id.to_string(),
            });
        }
        progress.finish();
        Ok(report)
    }

    fn check_site_data(
        &self,
        vault: &Vault,
        subset: DataSubset,
        progress: &Progress,
        report: &mut DataReport,
        affected: &mut BTreeSet<BackupId>,
    ) -> Result<()> {
        let packs: Vec<PackId> = vault
            .repo
            .list_pack_files()?
            .into_iter()
            .filter(|p| subset.takes(p))
            .collect();
        for p in &packs {
            progress.add_total(vault.repo.pack_size(p)?.unwrap_or(0));
        }
        let pool = Buffers::new();
        let found: Mutex<Vec<(PackId, PackVerdict)>> = Mutex::new(Vec::new());
        packs.par_iter().try_for_each(|pack| -> Result<()> {
            progress.check()?;
            let verdict = verify_pack(&vault.repo, pack, &pool)?;
            progress.add_bytes(verdict.bytes);
            progress.add_files(1);
            found
                .lock()
                .map_err(|_| Error::Bug("a pack verifier panicked".into()))?
                .push((*pack, verdict));
            Ok(())
        })?;
        let found = found
            .into_inner()
            .map_err(|_| Error::Bug("a pack verifier panicked".into()))?;
        // The chunks whose backups are affected: those found damaged, and
        // those the index places in a pack that cannot be read at all.
        let mut bad: HashSet<ChunkId> = HashSet::new();
        for (pack, verdict) in found {
            report.packs_read += 1;
            report.bytes_read += verdict.bytes;
            report.chunks_verified += verdict.intact;
            report.chunk_bytes_verified += verdict.intact_bytes;
            for (chunk, why) in verdict.damaged {
                match chunk {
                    Some(chunk) => {
                        bad.insert(chunk);
                        report.damaged_chunks.push(why);
                    }
                    None => {
                        bad.extend(vault.index.pack_chunks(&pack)?.iter().map(|e| e.id));
                        report.damaged_packs.push(why);
                    }
                }
            }
        }
        let mut needs: HashMap<BackupId, bool> = HashMap::new();
        let scan = scan_layers(
            &vault.repo,
            Collect::PerLayer(&mut |id, chunks| {
                needs.insert(id, chunks.iter().any(|c| bad.contains(c)));
                Ok(())
            }),
        )?;
        report.layers_verified += scan.layers.len() as u64;
        for (id, e) in &scan.damaged {
            report.damaged_layers.push(e.to_string());
            affected.insert(*id);
        }
        affected.extend(needs.into_iter().filter(|(_, n)| *n).map(|(id, _)| id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_slices_of_a_night_cycle_take_each_pack_exactly_once(
            id in any::<[u8; 32]>(),
            of in 1u32..31,
        ) {
            let pack = PackId(id);
            let takers = (1..=of)
                .filter(|&n| DataSubset::Slice { n, of }.takes(&pack))
                .count();
            prop_assert_eq!(takers, 1);
            prop_assert!(DataSubset::All.takes(&pack));
            prop_assert!(DataSubset::Percent(100).takes(&pack));
        }

        #[test]
        fn a_subset_round_trips_its_text(n in 1u32..50, extra in 0u32..50, pct in 1u32..=100) {
            let of = n + extra;
            prop_assert_eq!(
                DataSubset::parse(&format!("{n}/{of}")).ok(),
                Some(DataSubset::Slice { n, of })
            );
            prop_assert_eq!(DataSubset::parse(&format!("{pct}%")).ok(), Some(DataSubset::Percent(pct)));
        }
    }

    #[test]
    fn nonsense_subsets_are_refused() {
        for bad in [
            "", "%", "0%", "101%", "1/0", "0/3", "4/3", "3", "a/b", "-1/3",
        ] {
            assert!(DataSubset::parse(bad).is_err(), "{bad}");
        }
    }
}
