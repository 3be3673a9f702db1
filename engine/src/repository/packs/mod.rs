//! Packs as restore, backup, check, rebuild and repack touch them:
//! [`read`](mod@read) lists a pack's chunks from its trailer alone and reads its
//! blobs in spans, checked against their ids; [`write`](mod@write) fills packs and
//! publishes each before its chunks enter the index.

pub mod read;
pub mod write;
