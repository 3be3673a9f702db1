//! The repository's `config` object: format version, identity and the
//! parameters every writer of the repository must agree on.
//!
//! Stored as JSON (UTF-8), written once when the repository is created and
//! never modified in place.

use serde::{Deserialize, Serialize};

use crate::error::{FormatError, Result};
use crate::id::RepositoryId;
use crate::pack::MAX_CHUNK_LEN;

pub const REPO_FORMAT_VERSION: u32 = 1;

/// FastCDC parameters. The same data cut with other parameters deduplicates
/// poorly, so they are fixed per repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min_size: 256 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the bounds the FastCDC implementation supports and their order.
    pub fn validate(&self) -> Result<()> {
        let ok = (64..=1 << 20).contains(&self.min_size)
            && (256..=4 << 20).contains(&self.avg_size)
            && (1024..=MAX_CHUNK_LEN).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(FormatError::Invalid {
                what: "chunker parameters",
                detail: format!(
                    "min {} / avg {} / max {} (need 64 B ≤ min ≤ 1 MiB, 256 B ≤ avg ≤ 4 MiB, \
                     1 KiB ≤ max ≤ 16 MiB, min ≤ avg ≤ max)",
                    self.min_size, self.avg_size, self.max_size
                ),
            })
        }
    }
}

/// The `backup_compression_algorithm` setting, with the zstd level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase")]
pub enum CompressionSetting {
    None,
    Zstd { level: i32 },
}

impl Default for CompressionSetting {
    fn default() -> Self {
        CompressionSetting::Zstd { level: 3 }
    }
}

impl CompressionSetting {
    /// The zstd level to use, or `None` to store chunks raw.
    pub fn zstd_level(&self) -> Option<i32> {
        match self {
            CompressionSetting::None => None,
            CompressionSetting::Zstd { level } => Some(*level),
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            CompressionSetting::Zstd { level } if !(1..=19).contains(level) => {
                Err(FormatError::Invalid {
                    what: "compression",
                    detail: format!("zstd level {level} (need 1..=19)"),
                })
            }
            _ => Ok(()),
        }
    }
}

/// The repository `config` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format_version: u32,
    #[serde(with = "as_text")]
    pub repository_id: RepositoryId,
    pub chunker: ChunkerParams,
    pub compression: CompressionSetting,
    /// A pack is closed once it holds at least this many bytes.
    pub pack_target_size: u64,
}

/// The repository id as its UUID text, so the config stays readable.
mod as_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::id::RepositoryId;

    pub fn serialize<S: Serializer>(id: &RepositoryId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RepositoryId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }
}

impl RepoConfig {
    pub fn new(repository_id: RepositoryId) -> Self {
        RepoConfig {
            format_version: REPO_FORMAT_VERSION,
            repository_id,
            chunker: ChunkerParams::default(),
            compression: CompressionSetting::default(),
            pack_target_size: 32 * 1024 * 1024,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.format_version != REPO_FORMAT_VERSION {
            return Err(FormatError::Unsupported {
                what: "repository",
                version: self.format_version,
                supported: REPO_FORMAT_VERSION,
            });
        }
        self.chunker.validate()?;
        self.compression.validate()?;
        if !(1 << 20..=1 << 30).contains(&self.pack_target_size) {
            return Err(FormatError::Invalid {
                what: "pack target size",
                detail: format!("{} (need 1 MiB ..= 1 GiB)", self.pack_target_size),
            });
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let config: RepoConfig = serde_json::from_slice(bytes)
            .map_err(|e| FormatError::corrupt("repository config", e))?;
        config.validate()?;
        Ok(config)
    }
}
