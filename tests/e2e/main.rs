//! End-to-end tests: the real `strata` binary on real directories.

mod corruption;
mod crash;
mod errors;
mod harness;
mod incremental;
mod mutations;
mod roundtrip;
mod service;
