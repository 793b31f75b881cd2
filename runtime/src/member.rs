//! The hub as a member of a cluster: on a store that several hubs share (PostgreSQL), the
//! hub joins, heartbeats with the modules it hosts, fences members that went silent, and
//! leaves at shutdown. See ARCHITECTURE.md, "Cluster". On other stores none of this runs.

use std::{
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use colloquy_core::ModuleInfo;
use colloquy_storage::{ConversationStore, Member};
use tracing::{debug, warn};

use crate::hub::HubInner;

/// This hub's membership, once joined.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    member: Mutex<Option<Member>>,
}

impl Membership {
    /// The current member (`None` on a store of one process).
    pub(crate) fn get(&self) -> Option<Member> {
        *self.member.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, member: Option<Member>) {
        *self.member.lock().unwrap_or_else(PoisonError::into_inner) = member;
    }
}

/// Learns what the other members host, for the cluster's directory.
pub(crate) async fn refresh_directory(inner: &HubInner, store: &Arc<dyn ConversationStore>) {
    let (Some(cluster), Some(directory)) = (store.membership(), inner.directory.as_ref()) else {
        return;
    };
    match cluster.members(inner.member_timeout, Duration::ZERO).await {
        Ok(members) => directory.refresh(
            &members,
            inner.membership.get(),
            store,
            *inner.router.clock(),
        ),
        Err(e) => debug!(error = %e, "could not read the members' modules"),
    }
}

/// The name a hub gives itself: the host and the process.
pub(crate) fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

fn hosted(inner: &HubInner) -> Vec<ModuleInfo> {
    inner
        .registry
        .list()
        .iter()
        .map(|info| ModuleInfo::clone(info))
        .collect()
}

/// Joins the store's cluster, if it has one.
pub(crate) async fn join(inner: &HubInner, store: &Arc<dyn ConversationStore>) {
    let Some(cluster) = store.membership() else {
        return;
    };
    match cluster.join(&inner.member_name, &hosted(inner)).await {
        Ok(member) => {
            debug!(hub = %member.id, epoch = member.epoch, "joined the cluster");
            inner.membership.set(Some(member));
            // From now on, the store refuses this hub's writes if the others fence it.
            cluster.write_as(Some(member));
        }
        Err(e) => warn!(error = %e, "could not join the cluster; retrying at the next heartbeat"),
    }
}

/// Tells the other hubs at once which modules this hub hosts now (after a registration),
/// instead of at the next heartbeat: a module registered just before the hub dies is still
/// known as its, and reported unreachable, rather than never seen. A failure is left to the
/// next heartbeat, which records the same.
pub(crate) async fn announce(inner: &HubInner, store: &Arc<dyn ConversationStore>) {
    let (Some(cluster), Some(member)) = (store.membership(), inner.membership.get()) else {
        return;
    };
    if let Err(e) = cluster.heartbeat(member, &hosted(inner)).await {
        debug!(error = %e, "could not announce this hub's modules; the next heartbeat will");
    }
}

/// Heartbeats every `member_timeout / 5` while the hub lives: records the modules it hosts,
/// rejoins under a new epoch if it was fenced, and fences members silent for longer than
/// the timeout.
pub(crate) async fn heartbeat(hub: Weak<HubInner>, store: Arc<dyn ConversationStore>) {
    let Some(cluster) = store.membership() else {
        return;
    };
    loop {
        let interval = match hub.upgrade() {
            Some(inner) => inner.member_timeout / 5,
            None => return,
        };
        tokio::time::sleep(interval.max(Duration::from_millis(10))).await;
        let Some(inner) = hub.upgrade() else {
            return;
        };
        let modules = hosted(&inner);
        match inner.membership.get() {
            None => join(&inner, &store).await,
            Some(member) => match cluster.heartbeat(member, &modules).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(hub = %member.id, epoch = member.epoch,
                        "this hub was fenced (silent past the member timeout); joining again");
                    // The store keeps refusing writes as the fenced member until the hub
                    // has joined again under a new epoch.
                    inner.membership.set(None);
                    // Gives the conversations up: whatever it held in memory may have been
                    // taken over; the store is the truth from here.
                    inner.router.forget_idle();
                    join(&inner, &store).await;
                }
                Err(e) => warn!(error = %e, "heartbeat failed"),
            },
        }
        refresh_directory(&inner, &store).await;
        match cluster.fence_silent(inner.member_timeout).await {
            Ok(fenced) if !fenced.is_empty() => {
                warn!(?fenced, "fenced members that went silent");
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "could not check for silent members"),
        }
        take_over_orphans(&inner, &store).await;
    }
}

/// How many conversations a hub claims from fenced members at one heartbeat.
const ORPHANS_PER_HEARTBEAT: usize = 64;

/// Claims the exchanges fenced members left unanswered and concludes each in a task of its
/// own (a handler may take long; the heartbeat must not wait for it): the takeover needs no
/// next sender. Left claimed by this hub when it cannot be concluded here (its module is
/// nowhere reachable): its deadline then ends the wait of other senders.
async fn take_over_orphans(inner: &Arc<HubInner>, store: &Arc<dyn ConversationStore>) {
    let (Some(cluster), Some(member)) = (store.membership(), inner.membership.get()) else {
        return;
    };
    let claimed = match cluster.claim_orphans(member, ORPHANS_PER_HEARTBEAT).await {
        Ok(claimed) => claimed,
        Err(e) => {
            debug!(error = %e, "could not look for exchanges of fenced members");
            return;
        }
    };
    for id in claimed {
        let inner = Arc::clone(inner);
        tokio::spawn(async move {
            match inner.router.take_over_exchange(id).await {
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

/// Leaves the cluster (at shutdown): others need not wait for the timeout.
pub(crate) async fn leave(inner: &HubInner, store: &Arc<dyn ConversationStore>) {
    let (Some(cluster), Some(member)) = (store.membership(), inner.membership.get()) else {
        return;
    };
    if let Err(e) = cluster.leave(member).await {
        warn!(error = %e, "could not leave the cluster; others will fence this hub after the member timeout");
    }
    inner.membership.set(None);
}
