//! Benchmarks live in `throughput.rs`.
