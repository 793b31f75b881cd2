//! `colloquy health` and `colloquy modules`: what a database's health is, which hubs share
//! it and which modules they host (callers, the participants network clients speak as,
//! left out).

use std::time::Duration;

use anyhow::Result;
use colloquy_core::{Conversation, ModuleName};
use serde_json::json;

use crate::{
    db::Store,
    inspect::now,
    output::{duration, table, time},
    Out,
};

/// The names of the modules a hub hosts (callers left out).
fn hosted(hub: &colloquy_storage::MemberRecord) -> Vec<String> {
    hub.hosted().map(|m| m.name.to_string()).collect()
}

/// Returns whether the database is healthy.
pub(crate) async fn health(
    out: &mut Out,
    store: &Store,
    stale_after: Option<Duration>,
) -> Result<bool> {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let started = std::time::Instant::now();
    let ping = match store.ping().await {
        Ok(()) => Some(started.elapsed()),
        Err(e) => {
            problems.push(format!("the database does not answer: {e}"));
            None
        }
    };
    let integrity = match store.integrity_problems().await {
        Ok(Some(issues)) if issues.is_empty() => "passed".to_owned(),
        Ok(Some(issues)) => {
            problems.push(format!("integrity check failed: {}", issues.join("; ")));
            "failed".to_owned()
        }
        Ok(None) => "kept by the server".to_owned(),
        Err(e) => {
            problems.push(format!("integrity check could not run: {e}"));
            "not run".to_owned()
        }
    };
    let now = now();
    let (active_count, stale_count, stale): (u64, u64, Vec<Conversation>) =
        match colloquy_runtime::find_stale(&**store, now, stale_after, usize::MAX).await {
            Ok(scan) => (scan.active, scan.stale_count, scan.stale),
            Err(e) => {
                problems.push(format!("cannot read active conversations: {e}"));
                (0, 0, Vec::new())
            }
        };
    if !stale.is_empty() {
        problems.push(format!(
            "{stale_count} active conversation(s) idle past {}; no running hub is timing them out: `colloquy reap` times them out now, `colloquy end ID` ends one",
            stale_after.map_or_else(|| "their idle timeout".to_owned(), |d| format!("{d:?}")),
        ));
    }
    let hubs = match hubs(store).await {
        Ok(hubs) => hubs,
        Err(e) => {
            problems.push(format!("cannot read the hubs: {e}"));
            None
        }
    };
    let mut unreachable = Vec::new();
    if let Some(hubs) = &hubs {
        for hub in hubs.iter().filter(|h| h.state() == "lost") {
            notes.push(format!(
                "hub {} was lost (fenced after its last heartbeat at {}): the others took its exchanges over",
                hub.name,
                time(hub.heartbeat_at)
            ));
        }
        // A module that a hub gone in the last minute hosted and that no live hub hosts:
        // turns to it fail until a hub that registers it runs again.
        let live: std::collections::BTreeSet<String> =
            hubs.iter().filter(|h| h.alive).flat_map(hosted).collect();
        let gone: std::collections::BTreeSet<String> =
            hubs.iter().filter(|h| !h.alive).flat_map(hosted).collect();
        unreachable = gone.difference(&live).cloned().collect();
        if !unreachable.is_empty() {
            let them = if unreachable.len() == 1 { "it" } else { "them" };
            let message = format!(
                "no live hub hosts {}: turns to {them} fail until a hub that registers {them} runs again",
                unreachable.join(", "),
            );
            // With no hub alive at all nothing is serving: that is a stopped cluster, not a
            // broken one.
            if hubs.iter().any(|h| h.alive) {
                problems.push(message);
            } else {
                notes.push(message);
            }
        }
    }
    let healthy = problems.is_empty();
    if out.json {
        out.json_value(&json!({
            "healthy": healthy,
            "problems": problems,
            "notes": notes,
            "ping_us": ping.map(|d| d.as_micros() as u64),
            "integrity_check": integrity,
            "active_conversations": active_count,
            "stale_conversations": stale.iter().map(|c| c.id().to_string()).collect::<Vec<_>>(),
            "unreachable_modules": unreachable,
            "hubs": hubs.as_ref().map(|hubs| hubs.iter().map(|h| json!({
                "name": h.name,
                "id": h.member.id,
                "epoch": h.member.epoch,
                "state": h.state(),
                "alive": h.alive,
                "fenced": h.fenced,
                "left": h.left,
                "heartbeat_at": h.heartbeat_at,
                "modules": hosted(h),
            })).collect::<Vec<_>>()),
        }))?;
        return Ok(healthy);
    }
    let mut text = if healthy {
        "healthy\n".to_owned()
    } else {
        "unhealthy\n".to_owned()
    };
    for problem in &problems {
        text.push_str(&format!("  - {problem}\n"));
    }
    for note in &notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    text.push_str(&format!(
        "database {}: ping {}, integrity check {integrity}, {} active conversation(s)\n",
        store.describe(),
        ping.map_or_else(|| "failed".to_owned(), |d| format!("{}µs", d.as_micros())),
        active_count
    ));
    if let Some(hubs) = hubs.as_ref().filter(|h| !h.is_empty()) {
        let rows: Vec<Vec<String>> = hubs
            .iter()
            .map(|h| {
                vec![
                    h.name.clone(),
                    h.state().into(),
                    time(h.heartbeat_at),
                    hosted(h).join(", "),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(
            &["hub", "state", "last heartbeat", "modules"],
            &rows,
        ));
    }
    if !stale.is_empty() {
        let rows: Vec<Vec<String>> = stale
            .iter()
            .take(20)
            .map(|c| {
                vec![
                    c.id().to_string(),
                    time(c.last_activity()),
                    duration(c.idle_for(now).unwrap_or_default()),
                ]
            })
            .collect();
        text.push('\n');
        text.push_str(&table(
            &["stale conversation", "last activity", "idle for"],
            &rows,
        ));
    }
    out.text(&text)?;
    Ok(healthy)
}

/// The hubs sharing a database (PostgreSQL): alive ones, and those gone in the last
/// minute; `None` for a database of one process.
async fn hubs(store: &Store) -> Result<Option<Vec<colloquy_storage::MemberRecord>>> {
    let Some(cluster) = store.membership() else {
        return Ok(None);
    };
    Ok(Some(
        cluster
            .members(store.member_timeout(), Duration::from_secs(60))
            .await?,
    ))
}

/// The alive hubs hosting `module`.
fn hosts(hubs: &[colloquy_storage::MemberRecord], module: &ModuleName) -> Vec<String> {
    hubs.iter()
        .filter(|h| h.alive && h.modules.iter().any(|m| &m.name == module))
        .map(|h| h.name.clone())
        .collect()
}

pub(crate) async fn modules(out: &mut Out, store: &Store) -> Result<()> {
    // Callers (the participants network clients speak as) are not modules anyone can address.
    let (callers, modules): (Vec<_>, Vec<_>) = store
        .modules()
        .await?
        .into_iter()
        .partition(|m| m.info.is_caller());
    let hubs = hubs(store).await?;
    if out.json {
        let mut listed = json!(modules);
        if let (Some(hubs), Some(items)) = (&hubs, listed.as_array_mut()) {
            for (item, module) in items.iter_mut().zip(&modules) {
                item["hosted_by"] = json!(hosts(hubs, &module.info.name));
            }
        }
        return out.json_value(&listed);
    }
    let rows: Vec<Vec<String>> = modules
        .iter()
        .map(|m| {
            let mut row = vec![
                m.info.name.to_string(),
                m.info.version.clone(),
                m.info
                    .capabilities
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                time(m.registered_at),
                m.info.description.clone(),
            ];
            if let Some(hubs) = &hubs {
                row.insert(4, hosts(hubs, &m.info.name).join(", "));
            }
            row
        })
        .collect();
    let mut headers = vec![
        "module",
        "version",
        "capabilities",
        "registered",
        "description",
    ];
    if hubs.is_some() {
        headers.insert(4, "hosted by");
    }
    out.text(&table(&headers, &rows))?;
    if !callers.is_empty() {
        let names: Vec<String> = callers.iter().map(|c| c.info.name.to_string()).collect();
        out.text(&format!(
            "\ncallers (clients speak as them over the network; not addressable): {}\n",
            names.join(", ")
        ))?;
    }
    Ok(())
}
