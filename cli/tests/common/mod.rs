//! Shared by the tests that run `colloquy serve` (and the Python agent): start a process
//! that prints one JSON line when it is ready, and stop it when the test ends.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use serde_json::Value;

/// A child process killed when the test ends, pass or fail.
pub(crate) struct Running(pub(crate) Child);

impl Running {
    /// Sends SIGTERM and waits: true if the process then exited cleanly.
    pub(crate) fn terminate(mut self) -> bool {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        sent && self.0.wait().unwrap().success()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a process that prints one JSON line when ready; returns it and that line.
pub(crate) fn start(command: &mut Command) -> (Running, Value) {
    let mut child = command
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (Running(child), ready)
}

/// `colloquy serve --demo-modules` on a free loopback port and `db`, with `extra`
/// arguments; returns it, its ready line and its base URL.
pub(crate) fn serve(db: &Path, extra: &[&str]) -> (Running, Value, String) {
    let (server, ready) = start(
        Command::new(env!("CARGO_BIN_EXE_colloquy"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--json",
                "--demo-modules",
            ])
            .args(extra)
            .arg("--db")
            .arg(db),
    );
    let base = format!("http://{}", ready["listening"].as_str().unwrap());
    (server, ready, base)
}
