//! Criterion benchmarks of colloquy (routing, persistence, concurrency, history reads).
//!
//! Empty until the benchmarks land; the crate exists so the workspace layout is final.
//!
//! # What this crate deliberately does not do
//!
//! - It exports nothing and is never a dependency of another crate.
//! - Benchmarks use public APIs only, so they measure what users get.
