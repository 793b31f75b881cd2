//! colloquy-runtime: see ARCHITECTURE.md. Filled by issue 3.
