//! End-to-end tests: the real `strata` binary on real directories.

mod corruption;
mod crash;
mod errors;
mod ganesha;
mod harness;
mod incremental;
mod mutations;
mod nfs;
mod nfs_v3;
mod roundtrip;
mod service;
