//! The modules a router can address: this hub's registry, then those other alive hubs
//! host, each reached through its hub's link (or the database).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use colloquy_core::{ModuleInfo, ModuleName};
use colloquy_registry::{
    Delivery as HandlerDelivery, Module, ModuleDirectory, ModuleError, Registered, Registry,
    Response, Turn,
};
use colloquy_router::Clock;
use colloquy_storage::{ConversationStore, Member, MemberRecord};
use tracing::debug;

use crate::{link::Peer, queue};

/// The registry, and the modules alive members of the cluster host.
pub(crate) struct ClusterDirectory {
    local: Arc<Registry>,
    remote: RwLock<HashMap<ModuleName, Registered>>,
    /// The links to the other alive members, kept across refreshes (a connection lives as
    /// long as its member).
    peers: Mutex<HashMap<Member, Arc<Peer>>>,
    store: Arc<dyn ConversationStore>,
    clock: Clock,
    secret: Option<Arc<str>>,
    /// This hub's name, sent with each turn over a link.
    name: String,
}

impl ClusterDirectory {
    pub(crate) fn new(
        local: Arc<Registry>,
        store: Arc<dyn ConversationStore>,
        clock: Clock,
        secret: Option<Arc<str>>,
        name: String,
    ) -> Self {
        Self {
            local,
            remote: RwLock::default(),
            peers: Mutex::default(),
            store,
            clock,
            secret,
            name,
        }
    }

    /// Learns what the other alive members host (`own` is this hub). A member no longer
    /// alive loses its link: turns in flight to it give up on the link and go through the
    /// database, where another host (or its own next run) can answer.
    pub(crate) fn refresh(&self, members: &[MemberRecord], own: Option<Member>) {
        let alive: Vec<&MemberRecord> = members
            .iter()
            .filter(|m| m.alive && Some(m.member) != own)
            .collect();
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.retain(|member, peer| {
            let keep = alive.iter().any(|m| m.member == *member);
            if !keep {
                debug!(hub = %member.id, epoch = member.epoch, "a hub is no longer alive: its link is closed");
                peer.close();
            }
            keep
        });
        let mut remote = HashMap::new();
        for record in alive {
            let peer = record.address.as_ref().map(|address| {
                Arc::clone(peers.entry(record.member).or_insert_with(|| {
                    Arc::new(Peer::new(address.clone(), &self.name, self.secret.clone()))
                }))
            });
            for info in &record.modules {
                remote
                    .entry(info.name.clone())
                    .or_insert_with(|| Registered {
                        info: Arc::new(info.clone()),
                        module: Arc::new(RemoteModule {
                            info: info.clone(),
                            peer: peer.clone(),
                            store: Arc::clone(&self.store),
                            clock: self.clock,
                        }) as Arc<dyn Module>,
                        deadline: None,
                        // It only waits on the network: polled in place, no task of its own.
                        delivery: HandlerDelivery::Inline,
                    });
            }
        }
        drop(peers);
        *self.remote.write().unwrap_or_else(PoisonError::into_inner) = remote;
    }

    /// Closes every link (at stop).
    pub(crate) fn forget_peers(&self) {
        let peers = std::mem::take(&mut *self.peers.lock().unwrap_or_else(PoisonError::into_inner));
        for peer in peers.values() {
            peer.close();
        }
    }

    /// Modules other hubs host (those this hub does not host itself).
    pub(crate) fn remote_modules(&self) -> Vec<Arc<ModuleInfo>> {
        self.remote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|r| self.local.get(&r.info.name).is_none())
            .map(|r| Arc::clone(&r.info))
            .collect()
    }
}

impl ModuleDirectory for ClusterDirectory {
    fn get(&self, name: &ModuleName) -> Option<Registered> {
        self.local.get(name).or_else(|| {
            self.remote
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(name)
                .cloned()
        })
    }

    fn names(&self) -> Vec<ModuleName> {
        let mut names = self.local.names();
        names.extend(
            self.remote
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .cloned(),
        );
        names.sort();
        names.dedup();
        names
    }
}

/// A module another hub hosts, as the router calls it: over its hub's link when it has
/// one, else (and when the link fails) through the database.
struct RemoteModule {
    info: ModuleInfo,
    peer: Option<Arc<Peer>>,
    store: Arc<dyn ConversationStore>,
    /// The hub's clock: a queued delivery's deadline is a wall time.
    clock: Clock,
}

#[async_trait::async_trait]
impl Module for RemoteModule {
    fn info(&self) -> ModuleInfo {
        self.info.clone()
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        if let Some(peer) = &self.peer {
            match peer.call(&self.info.name, &turn).await {
                Ok(answer) => return answer.into_result(),
                Err(unreachable) => {
                    debug!(module = %self.info.name, peer = %peer.address(), reason = %unreachable,
                        "the hosting hub's link failed; queueing the turn in the database");
                }
            }
        }
        queue::through_store(&self.store, self.clock, &self.info.name, &turn).await
    }
}
