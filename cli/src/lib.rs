//! The `colloquy` command-line tool: the demo workflow and inspection of any conversation
//! database.
//!
//! Empty until the CLI lands; the crate exists so the workspace layout is final.
//!
//! # What this crate deliberately does not do
//!
//! - It holds no logic of its own beyond argument parsing and output: everything it shows
//!   comes from the runtime and storage crates.
