//! Every command of the binary on PostgreSQL (`--db postgres://... --schema ...`), on a
//! fresh schema of the server in `COLLOQUY_TEST_POSTGRES`, dropped afterwards. Without the
//! variable the tests say so and pass, unless `COLLOQUY_REQUIRE_SERVICES` is set (as
//! `.ci/run` does).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::process::Command;

use serde_json::Value;

fn postgres_url() -> Option<String> {
    match std::env::var("COLLOQUY_TEST_POSTGRES") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("COLLOQUY_REQUIRE_SERVICES").is_some() => {
            panic!("COLLOQUY_TEST_POSTGRES is not set but COLLOQUY_REQUIRE_SERVICES is")
        }
        Err(_) => {
            eprintln!("skipped: set COLLOQUY_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test to run it");
            None
        }
    }
}

/// A schema of its own for one test, dropped when the test ends.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str, test: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: format!("colloquy_cli_{test}_{}", std::process::id()),
        }
    }

    /// Runs the binary on this schema; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_colloquy"))
            .args(args)
            .args(["--db", &self.url, "--schema", &self.name])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let (code, stdout, stderr) = self.run(&args);
        assert_eq!(code, 0, "{args:?} failed: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let dropped = Command::new("psql")
            .arg(&self.url)
            .args(["-qAt", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
            .output();
        if !dropped.is_ok_and(|o| o.status.success()) {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}

#[test]
fn every_command_works_on_postgres() {
    let Some(url) = postgres_url() else {
        return;
    };
    let schema = Schema::new(&url, "commands");
    // Reading commands never create the schema.
    let (code, _, stderr) = schema.run(&["conversations"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("does not exist"), "{stderr}");

    let demo = schema.json(&["demo", "--conversations", "6"]);
    assert_eq!(demo["ran"], 6);
    assert!(demo["database"].as_str().unwrap().contains(&schema.name));
    let listed = schema.json(&["conversations"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 6);
    let failed: Vec<&Value> = listed
        .iter()
        .filter(|c| c["status"]["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "the demo's deliberate failure");
    let id = failed[0]["id"].as_str().unwrap();
    let shown = schema.json(&["show", id]);
    let turns = shown["messages"].as_array().unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|m| m["turn"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=turns.len() as u64).collect::<Vec<_>>()
    );
    let analytics = schema.json(&["analytics"]);
    assert_eq!(analytics["conversations"], 6);
    assert_eq!(analytics["by_status"]["failed"], 1);
    let health = schema.json(&["health"]);
    assert_eq!(health["healthy"], true, "{health}");
    let modules = schema.json(&["modules"]);
    assert_eq!(modules.as_array().unwrap().len(), 5);
    let (code, exported, _) = schema.run(&["export", id]);
    assert_eq!(code, 0);
    assert_eq!(exported.lines().count(), turns.len());
    // Load writes into the same database; prune then removes every ended conversation.
    let load = schema.json(&["load", "--conversations", "4", "--turns", "3"]);
    assert_eq!(load["store"], "postgres");
    assert_eq!(load["round_trips"], 12);
    let dry = schema.json(&["prune", "--older-than", "0s", "--dry-run"]);
    assert_eq!(dry["pruned"], 6, "{dry}");
    let pruned = schema.json(&["prune", "--older-than", "0s"]);
    assert_eq!(pruned["pruned"], 6, "{pruned}");
    let left = schema.json(&["conversations"]);
    assert_eq!(
        left.as_array().unwrap().len(),
        4,
        "the load's conversations stay open"
    );
}
