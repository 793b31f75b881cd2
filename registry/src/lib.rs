//! colloquy-registry: see ARCHITECTURE.md. Filled by issue 3.
