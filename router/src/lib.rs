//! colloquy-router: see ARCHITECTURE.md. Filled by issue 3.
