//! The official A2A Python SDK (`a2a-sdk`, pinned in `tests/python/requirements.txt`)
//! against `colloquy serve`: card discovery, SendMessage, a retried messageId, GetTask and a
//! failing module, as an outside agent written in Python sees them.
//!
//! Needs a Python with the SDK in `COLLOQUY_TEST_PYTHON` (`.ci/run` makes the virtual
//! environment). Without it the test says why and passes, unless
//! `COLLOQUY_REQUIRE_SERVICES` is set, as `.ci/run` does: then a missing Python fails it,
//! so CI can never pass by skipping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

/// The Python to use, or `None` (with the reason printed) where the test may skip.
fn python() -> Option<PathBuf> {
    match std::env::var_os("COLLOQUY_TEST_PYTHON") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("COLLOQUY_REQUIRE_SERVICES").is_some() => panic!(
            "COLLOQUY_TEST_PYTHON is not set but COLLOQUY_REQUIRE_SERVICES is: \
             the Python interop test must run (see .ci/run)"
        ),
        None => {
            eprintln!(
                "skipped: set COLLOQUY_TEST_PYTHON to a Python with a2a-sdk installed \
                 (pip install -r cli/tests/python/requirements.txt) to run it"
            );
            None
        }
    }
}

#[test]
fn the_official_python_sdk_converses_with_served_modules() {
    let Some(python) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("interop.db");
    let mut server = Command::new(env!("CARGO_BIN_EXE_colloquy"))
        .args(["serve", "--listen", "127.0.0.1:0", "--json", "--demo-modules", "--db"])
        .arg(&db)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let ready: Value = serde_json::from_str(&ready).unwrap();
    let base = format!("http://{}", ready["listening"].as_str().unwrap());

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/interop.py");
    let run = Command::new(&python)
        .arg(script)
        .arg(&base)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        run.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: Value = serde_json::from_slice(&run.stdout).unwrap();

    let first = &seen["first"]["task"];
    assert_eq!(first["status"]["state"], "TASK_STATE_COMPLETED", "{seen}");
    let record = &first["artifacts"][0]["parts"][0]["data"]["record"];
    assert_eq!(record["name"], "Grace");
    assert_eq!(record["language"], "COBOL");
    let context = first["contextId"].as_str().unwrap();
    assert_eq!(first["id"], format!("{context}:1"));
    // The retried messageId: the same task, no new turn.
    assert_eq!(seen["retried"], seen["first"]);
    // GetTask reads the same exchange back from the store.
    assert_eq!(seen["fetched"]["id"], first["id"]);
    assert_eq!(seen["fetched"]["artifacts"], first["artifacts"]);
    // A failing handler is a failed task with the reason, not an error.
    let failed = &seen["failed"]["task"];
    assert_eq!(failed["status"]["state"], "TASK_STATE_FAILED", "{seen}");
    let reason = failed["status"]["message"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(reason.contains("expected"), "{reason}");
}
