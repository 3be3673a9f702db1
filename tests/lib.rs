//! End-to-end tests of the `strata` binary live in `e2e/`.
