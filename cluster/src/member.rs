//! The member's work: join, heartbeat with the modules hosted, fence members that went
//! silent, take over the exchanges they left, learn what the others host.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tracing::{debug, warn};

use crate::Cluster;

/// Learns what the other members host, and where their links are.
pub(crate) async fn refresh_directory(cluster: &Cluster) {
    match cluster.members(Duration::ZERO).await {
        Ok(members) => cluster.directory.refresh(&members, cluster.member()),
        Err(e) => debug!(error = %e, "could not read the members' modules"),
    }
}

/// Joins the cluster under a new epoch.
pub(crate) async fn join(cluster: &Cluster) {
    let table = match cluster.table() {
        Ok(table) => table,
        Err(e) => return warn!(error = %e, "cannot join the cluster"),
    };
    let sent = tokio::time::Instant::now();
    match table
        .join(&cluster.name, cluster.address(), &cluster.hosted())
        .await
    {
        Ok(member) => {
            debug!(hub = %member.id, epoch = member.epoch, address = ?cluster.address(), "joined the cluster");
            cluster.set_member(Some(member));
            cluster.confirmed_unfenced(sent);
            // From now on, the store refuses this hub's writes if the others fence it.
            table.write_as(Some(member));
        }
        Err(e) => warn!(error = %e, "could not join the cluster; retrying at the next heartbeat"),
    }
}

/// Records the modules hosted now, at once (after a registration). A failure is left to the
/// next heartbeat, which records the same.
pub(crate) async fn announce(cluster: &Cluster) {
    let (Ok(table), Some(member)) = (cluster.table(), cluster.member()) else {
        return;
    };
    let sent = tokio::time::Instant::now();
    match table.heartbeat(member, &cluster.hosted()).await {
        Ok(true) => cluster.confirmed_unfenced(sent),
        Ok(false) => {}
        Err(e) => {
            debug!(error = %e, "could not announce this hub's modules; the next heartbeat will")
        }
    }
}

/// Heartbeats every `member_timeout / 5` while the cluster lives: records the modules
/// hosted, joins again under a new epoch if this hub was fenced, fences members silent for
/// longer than the timeout, and takes over what they left.
pub(crate) async fn heartbeat(cluster: Weak<Cluster>) {
    loop {
        let interval = match cluster.upgrade() {
            Some(cluster) => cluster.member_timeout / 5,
            None => return,
        };
        tokio::time::sleep(interval.max(Duration::from_millis(10))).await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        beat(&cluster).await;
    }
}

async fn beat(cluster: &Arc<Cluster>) {
    let table = match cluster.table() {
        Ok(table) => table,
        Err(e) => return warn!(error = %e, "heartbeat failed"),
    };
    match cluster.member() {
        None => join(cluster).await,
        Some(member) => {
            let sent = tokio::time::Instant::now();
            match table.heartbeat(member, &cluster.hosted()).await {
                Ok(true) => cluster.confirmed_unfenced(sent),
                Ok(false) => {
                    warn!(hub = %member.id, epoch = member.epoch,
                        "this hub was fenced (silent past the member timeout); joining again");
                    // The store keeps refusing writes as the fenced member until the hub has
                    // joined again under a new epoch.
                    cluster.set_member(None);
                    // Gives the conversations up: whatever it held in memory may have been
                    // taken over; the store is the truth from here.
                    if let Some(router) = cluster.router() {
                        router.forget_idle();
                    }
                    join(cluster).await;
                }
                Err(e) => warn!(error = %e, "heartbeat failed"),
            }
        }
    }
    refresh_directory(cluster).await;
    match table.fence_silent(cluster.member_timeout).await {
        Ok(fenced) if !fenced.is_empty() => warn!(?fenced, "fenced members that went silent"),
        Ok(_) => {}
        Err(e) => debug!(error = %e, "could not check for silent members"),
    }
    take_over_orphans(cluster).await;
}

/// How many conversations a hub claims from fenced members at one heartbeat.
const ORPHANS_PER_HEARTBEAT: usize = 64;

/// Claims the exchanges fenced members left unanswered and concludes each in a task of its
/// own (a handler may take long; the heartbeat must not wait for it): the takeover needs no
/// next sender. Left claimed by this hub when it cannot be concluded here (its module is
/// nowhere reachable): its deadline then ends the wait of other senders.
async fn take_over_orphans(cluster: &Cluster) {
    let (Ok(table), Some(member), Some(router)) =
        (cluster.table(), cluster.member(), cluster.router())
    else {
        return;
    };
    let claimed = match table.claim_orphans(member, ORPHANS_PER_HEARTBEAT).await {
        Ok(claimed) => claimed,
        Err(e) => return debug!(error = %e, "could not look for exchanges of fenced members"),
    };
    for id in claimed {
        let router = Arc::clone(&router);
        tokio::spawn(async move {
            match router.take_over_exchange(id).await {
                Ok(concluded) => {
                    debug!(conversation_id = %id, concluded, "took over a fenced member's exchange");
                }
                Err(e) => {
                    warn!(conversation_id = %id, error = %e, "could not take over a fenced member's exchange");
                }
            }
        });
    }
}
