//! Modules that live in another hub of the cluster (ARCHITECTURE.md, "Cluster"): the
//! directory that finds them, the proxy the router calls for them, and the loop that
//! answers the deliveries addressed to this hub's own modules.
//!
//! A turn crosses hubs as a delivery in the shared database, keyed by the request's
//! message id: the sender's proxy queues it and polls for the answer; the host claims it,
//! runs its module with what is left of the deadline, and records the module's
//! `Response` (or its failure). The sender's router stores the reply as for a local
//! module, so the transcript is written in one place, under one turn lock.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock, Weak},
    time::Duration,
};

use colloquy_core::{Message, ModuleInfo, ModuleName};
use colloquy_registry::{
    ConversationView, Delivery as HandlerDelivery, History, Module, ModuleDirectory, ModuleError,
    Registered, Registry, Response, Turn,
};
use colloquy_storage::{ConversationStore, Delivery, Member, MemberRecord, Signal};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::{hub::HubInner, Clock};

/// The longest pause between two polls, for a delivery's answer and for new deliveries. A
/// store's wake-up ([`Signal`], `NOTIFY` on PostgreSQL) usually comes first; polling is the
/// fallback for the wake-ups lost while its listening connection is down.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Most deliveries one hub claims at once.
const CLAIM_BATCH: usize = 32;

/// A turn as it crosses processes.
#[derive(Debug, Serialize, Deserialize)]
struct WireTurn {
    message: Message,
    conversation: ConversationView,
    history: Vec<Message>,
}

/// The in-process registry, and the modules alive members of the cluster host.
pub(crate) struct ClusterDirectory {
    local: Arc<Registry>,
    remote: RwLock<HashMap<ModuleName, Registered>>,
}

impl ClusterDirectory {
    pub(crate) fn new(local: Arc<Registry>) -> Self {
        Self {
            local,
            remote: RwLock::default(),
        }
    }

    /// Learns what the other alive members host (`own` is this hub).
    pub(crate) fn refresh(
        &self,
        members: &[MemberRecord],
        own: Option<Member>,
        store: &Arc<dyn ConversationStore>,
        clock: Clock,
    ) {
        let mut remote = HashMap::new();
        for member in members.iter().filter(|m| m.alive && Some(m.member) != own) {
            for info in &member.modules {
                remote
                    .entry(info.name.clone())
                    .or_insert_with(|| Registered {
                        info: Arc::new(info.clone()),
                        module: Arc::new(RemoteModule {
                            info: info.clone(),
                            store: Arc::clone(store),
                            clock,
                        }) as Arc<dyn Module>,
                        deadline: None,
                        delivery: HandlerDelivery::Task,
                    });
            }
        }
        *self.remote.write().unwrap_or_else(PoisonError::into_inner) = remote;
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

/// A module another hub hosts, as the router calls it: the turn goes out as a delivery,
/// the host's answer comes back.
struct RemoteModule {
    info: ModuleInfo,
    store: Arc<dyn ConversationStore>,
    /// The hub's clock: the delivery's deadline is a wall time the host compares with its own.
    clock: Clock,
}

#[async_trait::async_trait]
impl Module for RemoteModule {
    fn info(&self) -> ModuleInfo {
        self.info.clone()
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let cluster = self
            .store
            .membership()
            .ok_or_else(|| ModuleError::new("the store no longer offers a cluster"))?;
        let wire = WireTurn {
            message: Message::clone(&turn.message),
            conversation: turn.conversation.clone(),
            history: turn.history.iter().map(|m| Message::clone(m)).collect(),
        };
        let now = self.clock.now().as_millis();
        let delivery = Delivery {
            message_id: turn.message.id.as_uuid(),
            module: self.info.name.to_string(),
            turn: serde_json::to_value(&wire)
                .map_err(|e| ModuleError::new(format!("the turn cannot be sent: {e}")))?,
            deadline_ms: now.saturating_add(colloquy_core::duration_millis(turn.deadline)),
        };
        let unreachable = |e: colloquy_storage::StoreError| {
            ModuleError::new(format!(
                "{} lives in another hub and cannot be reached: {e}",
                self.info.name
            ))
        };
        // Subscribed before queueing: the answer's notification cannot come first.
        let mut answered = cluster.signal(Signal::Answered(delivery.message_id));
        // A new delivery has no answer yet: the first look waits for the signal (or the
        // first poll). One queued before (a takeover delivers again) may have one already.
        let mut look = !cluster
            .send_delivery(&delivery)
            .await
            .map_err(unreachable)?;
        // The router drops this future at the deadline; until then, wait for the answer:
        // woken by the store's signal, or by polling.
        let mut pause = Duration::from_millis(1);
        loop {
            if look {
                answered = cluster.signal(Signal::Answered(delivery.message_id));
                if let Some(answer) = cluster
                    .take_answer(delivery.message_id)
                    .await
                    .map_err(unreachable)?
                {
                    return decode(answer);
                }
            }
            look = true;
            tokio::select! {
                () = &mut answered => {}
                () = tokio::time::sleep(pause) => {}
            }
            pause = pause.saturating_mul(2).min(MAX_POLL);
        }
    }
}

fn decode(answer: Value) -> Result<Response, ModuleError> {
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        return Err(ModuleError::new(error));
    }
    let response = answer
        .get("response")
        .cloned()
        .ok_or_else(|| ModuleError::new("the hosting hub's answer has no response"))?;
    serde_json::from_value(response)
        .map_err(|e| ModuleError::new(format!("the hosting hub's answer cannot be read: {e}")))
}

/// Answers the deliveries addressed to this hub's modules while the hub lives.
pub(crate) async fn deliver(hub: Weak<HubInner>, store: Arc<dyn ConversationStore>) {
    let Some(cluster) = store.membership() else {
        return;
    };
    let mut pause = Duration::from_millis(1);
    let mut queued = cluster.signal(Signal::Deliveries);
    loop {
        tokio::select! {
            () = &mut queued => {}
            () = tokio::time::sleep(pause) => {}
        }
        // Subscribed before claiming, so a delivery queued meanwhile wakes the next round.
        queued = cluster.signal(Signal::Deliveries);
        let Some(inner) = hub.upgrade() else {
            return;
        };
        let Some(member) = inner.membership.get() else {
            continue;
        };
        let modules: Vec<String> = inner
            .registry
            .names()
            .iter()
            .map(ToString::to_string)
            .collect();
        let claimed = match cluster
            .claim_deliveries(member, &modules, CLAIM_BATCH)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                debug!(error = %e, "could not claim deliveries");
                Vec::new()
            }
        };
        pause = if claimed.is_empty() {
            pause.saturating_mul(2).min(MAX_POLL)
        } else {
            Duration::from_millis(1)
        };
        for delivery in claimed {
            let registered = delivery
                .module
                .parse()
                .ok()
                .and_then(|name| inner.registry.get(&name));
            let store = Arc::clone(&store);
            let clock = *inner.router.clock();
            tokio::spawn(async move {
                let answer = match registered {
                    Some(registered) => run(registered, &delivery, clock).await,
                    None => {
                        json!({"error": format!("{} is no longer hosted here", delivery.module)})
                    }
                };
                if let Some(cluster) = store.membership() {
                    match cluster
                        .answer_delivery(member, delivery.message_id, &answer)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => warn!(message = %delivery.message_id,
                            "answer refused: this hub was fenced and the delivery passed to another"),
                        Err(e) => warn!(error = %e, "could not record a delivery's answer"),
                    }
                }
            });
        }
    }
}

/// Runs a delivered turn on the local module within what is left of its deadline.
async fn run(registered: Registered, delivery: &Delivery, clock: Clock) -> Value {
    let wire: WireTurn = match serde_json::from_value(delivery.turn.clone()) {
        Ok(wire) => wire,
        Err(e) => return json!({"error": format!("the delivered turn cannot be read: {e}")}),
    };
    let left = delivery.deadline_ms.saturating_sub(clock.now().as_millis());
    let deadline = Duration::from_millis(left);
    let turn = Turn {
        message: Arc::new(wire.message),
        conversation: wire.conversation,
        history: History::from(wire.history.into_iter().map(Arc::new).collect::<Vec<_>>()),
        deadline,
    };
    match tokio::time::timeout(deadline, registered.module.handle(turn)).await {
        Ok(Ok(response)) => json!({ "response": response }),
        Ok(Err(e)) => json!({ "error": e.message() }),
        Err(_) => {
            json!({ "error": format!("{} did not answer within {deadline:?}", registered.info.name) })
        }
    }
}
