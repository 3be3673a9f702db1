//! End-to-end tests: the real `strata` binary on real directories.

mod backup_types;
mod boundaries;
mod browse;
mod corruption;
mod crash;
mod errors;
mod ganesha;
mod harness;
mod hostile;
mod incremental;
mod mutations;
mod nfs;
mod nfs_v3;
mod prune;
mod read_data;
mod rebuild;
mod repack;
mod rest;
mod roundtrip;
mod service;
mod shared_repo;
mod snapshots;
mod target_restore;
mod unreadable;
mod validation;
