//! The set of chunks the layers reference, in memory bounded by a budget.
//!
//! A sweep or a repack must know, for every chunk of every pack, whether
//! some layer references it. Kept exact, that set grows with the
//! repository (about 48 bytes a chunk: 480 MB for ten million chunks).
//! [`ChunkSet`] stays exact while it fits its budget, then turns into a
//! Bloom filter of exactly the budget's size. A Bloom filter never answers
//! "no" for a chunk that was inserted; it may answer "yes" for one that was
//! not, which only keeps a dead chunk (its pack survives the sweep, or it is
//! copied by a repack): never a loss, and rarer the larger the budget.

use std::collections::HashSet;

use strata_format::ChunkId;

/// Bytes an exact entry costs, table overhead and growth included.
const EXACT_ENTRY_BYTES: usize = 48;
/// Hashes per chunk: optimal near 10 bits per chunk (false positives ~0.8%).
const HASHES: u64 = 7;

/// A set of chunk ids that may answer "present" for an absent chunk once it
/// outgrows its budget, and never "absent" for a present one.
pub enum ChunkSet {
    Exact {
        set: HashSet<ChunkId>,
        budget: usize,
    },
    Bloom(Bloom),
}

impl ChunkSet {
    /// An empty set that holds at most `budget` bytes.
    pub fn with_budget(budget: usize) -> ChunkSet {
        ChunkSet::Exact {
            set: HashSet::new(),
            budget,
        }
    }

    pub fn insert(&mut self, id: &ChunkId) {
        match self {
            ChunkSet::Exact { set, budget } => {
                set.insert(*id);
                if set.len().saturating_mul(EXACT_ENTRY_BYTES) > *budget {
                    let mut bloom = Bloom::new(*budget);
                    for id in set.iter() {
                        bloom.insert(id);
                    }
                    *self = ChunkSet::Bloom(bloom);
                }
            }
            ChunkSet::Bloom(bloom) => bloom.insert(id),
        }
    }

    /// Whether `id` may have been inserted: always true if it was.
    pub fn contains(&self, id: &ChunkId) -> bool {
        match self {
            ChunkSet::Exact { set, .. } => set.contains(id),
            ChunkSet::Bloom(bloom) => bloom.contains(id),
        }
    }

    /// Whether every answer is exact (the set fits its budget).
    pub fn is_exact(&self) -> bool {
        matches!(self, ChunkSet::Exact { .. })
    }
}

/// A Bloom filter over chunk ids. Ids are BLAKE3 hashes, so their own bytes
/// serve as the two base hashes (double hashing).
pub struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    /// A filter of `bytes` bytes (at least one word).
    pub fn new(bytes: usize) -> Bloom {
        Bloom {
            words: vec![0; (bytes / 8).max(1)],
        }
    }

    /// The word and bit of each of the id's hashes.
    fn bits(&self, id: &ChunkId) -> [(usize, u64); HASHES as usize] {
        let b = &id.0;
        let h1 = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let h2 = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]) | 1;
        let m = self.words.len() as u64 * 64;
        std::array::from_fn(|i| {
            let bit = h1.wrapping_add((i as u64).wrapping_mul(h2)) % m;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    pub fn insert(&mut self, id: &ChunkId) {
        for (word, mask) in self.bits(id) {
            self.words[word] |= mask;
        }
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.bits(id)
            .iter()
            .all(|(word, mask)| self.words[*word] & mask != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u64) -> ChunkId {
        ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn stays_exact_within_its_budget_then_turns_into_a_filter_of_that_size() {
        let mut set = ChunkSet::with_budget(100 * EXACT_ENTRY_BYTES);
        for n in 0..100 {
            set.insert(&id(n));
        }
        assert!(set.is_exact());
        assert!(!set.contains(&id(100)));
        set.insert(&id(100));
        match &set {
            ChunkSet::Bloom(b) => assert_eq!(b.words.len() * 8, 100 * EXACT_ENTRY_BYTES),
            ChunkSet::Exact { .. } => panic!("over budget and still exact"),
        }
        assert!((0..=100).all(|n| set.contains(&id(n))));
    }

    #[test]
    fn false_positives_are_rare_at_ten_bits_a_chunk() {
        let n = 20_000u64;
        let mut set = ChunkSet::with_budget((n * 10 / 8) as usize);
        for i in 0..n {
            set.insert(&id(i));
        }
        assert!(!set.is_exact());
        let wrong = (n..2 * n).filter(|i| set.contains(&id(*i))).count();
        assert!(wrong < (n / 50) as usize, "{wrong} false positives in {n}");
    }

    proptest! {
        #[test]
        fn never_forgets_an_inserted_chunk(
            inserted in proptest::collection::vec(any::<u64>(), 0..400),
            budget in 0usize..4096,
        ) {
            let mut set = ChunkSet::with_budget(budget);
            for n in &inserted {
                set.insert(&id(*n));
            }
            for n in &inserted {
                prop_assert!(set.contains(&id(*n)));
            }
        }
    }
}
