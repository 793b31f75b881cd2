//! Tasks in flight: the exchanges whose handler is running, so that `CancelTask` can stop
//! one and `SubscribeToTask` can follow it; and a bounded memory of recent answers.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use a2a::{StreamResponse, TaskState, TaskStatus, TaskStatusUpdateEvent};
use colloquy_runtime::{Message, ModuleName};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::mapping::{task, Outcome, TaskRef};

/// One exchange under way: who asked whom, its cancel switch, and the events it has to
/// report (the stored request, then the outcome).
#[derive(Debug)]
pub(crate) struct Flight {
    pub(crate) caller: ModuleName,
    pub(crate) module: ModuleName,
    pub(crate) cancel: CancellationToken,
    events: broadcast::Sender<StreamResponse>,
    request: OnceLock<Arc<Message>>,
}

/// The longest stream of one exchange: submitted, working, the artifact, the final status.
const EVENTS: usize = 8;

impl Flight {
    pub(crate) fn new(caller: ModuleName, module: ModuleName) -> Arc<Self> {
        Arc::new(Self {
            caller,
            module,
            cancel: CancellationToken::new(),
            events: broadcast::channel(EVENTS).0,
            request: OnceLock::new(),
        })
    }

    /// Events from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StreamResponse> {
        self.events.subscribe()
    }

    /// The stored request, once there is one.
    pub(crate) fn request(&self) -> Option<&Arc<Message>> {
        self.request.get()
    }

    /// The task as it stands while the handler runs.
    pub(crate) fn working(&self) -> Option<a2a::Task> {
        self.request()
            .map(|request| task(request, Outcome::Without(TaskState::Working), &self.caller))
    }

    pub(crate) fn emit(&self, event: StreamResponse) {
        // No receiver is normal: nobody streams this exchange.
        let _ = self.events.send(event);
    }
}

/// The exchanges in flight, by task id.
#[derive(Debug, Default)]
pub(crate) struct Flights(Mutex<HashMap<String, Arc<Flight>>>);

impl Flights {
    /// The request of `flight` is stored: it becomes findable by its task id, and streams
    /// hear "submitted" then "working".
    pub(crate) fn stored(&self, flight: &Arc<Flight>, request: &Arc<Message>) {
        if flight.request.set(Arc::clone(request)).is_err() {
            return;
        }
        let id = TaskRef::of(request);
        self.lock().insert(id.to_string(), Arc::clone(flight));
        let submitted = task(
            request,
            Outcome::Without(TaskState::Submitted),
            &flight.caller,
        );
        flight.emit(StreamResponse::Task(submitted));
        flight.emit(status_update(
            request,
            TaskStatus {
                state: TaskState::Working,
                message: None,
                timestamp: None,
            },
        ));
    }

    /// `flight` is over: no longer findable, so nobody subscribes after its last event.
    /// Called before the last events are sent.
    pub(crate) fn landed(&self, flight: &Flight) {
        if let Some(request) = flight.request() {
            self.lock().remove(&TaskRef::of(request).to_string());
        }
    }

    /// The flight of task `id`, if it is in flight between `caller` and `module`, with a
    /// receiver of its next events (subscribed before it can land).
    pub(crate) fn follow(
        &self,
        id: &str,
        caller: &ModuleName,
        module: &ModuleName,
    ) -> Option<(Arc<Flight>, broadcast::Receiver<StreamResponse>)> {
        let flights = self.lock();
        let flight = flights
            .get(id)
            .filter(|f| &f.caller == caller && &f.module == module)?;
        Some((Arc::clone(flight), flight.subscribe()))
    }

    /// How many exchanges are in flight.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Flight>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A status update of the exchange `request` started.
pub(crate) fn status_update(request: &Message, status: TaskStatus) -> StreamResponse {
    StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
        task_id: TaskRef::of(request).to_string(),
        context_id: request.conversation_id.to_string(),
        status,
        metadata: None,
    })
}

/// True if `event` ends its stream: a final task state, or a message (a direct answer).
pub(crate) fn is_last(event: &StreamResponse) -> bool {
    match event {
        StreamResponse::Task(task) => is_final(&task.status.state),
        StreamResponse::StatusUpdate(update) => is_final(&update.status.state),
        StreamResponse::Message(_) => true,
        StreamResponse::ArtifactUpdate(_) => false,
    }
}

/// True for the states a task never leaves.
pub(crate) fn is_final(state: &TaskState) -> bool {
    matches!(
        state,
        TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
    )
}

/// A bounded memory: the last `capacity` entries, the oldest forgotten first.
#[derive(Debug)]
pub(crate) struct Remembered<K, V> {
    entries: Mutex<(HashMap<K, V>, VecDeque<K>)>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Remembered<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new((HashMap::new(), VecDeque::new())),
            capacity,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock().0.get(key).cloned()
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        if map.insert(key.clone(), value).is_none() {
            order.push_back(key);
        }
        while order.len() > self.capacity {
            if let Some(oldest) = order.pop_front() {
                map.remove(&oldest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<K, V>, VecDeque<K>)> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_forgets_the_oldest_beyond_its_capacity() {
        let memory = Remembered::new(2);
        memory.insert(1, "a");
        memory.insert(2, "b");
        memory.insert(1, "a again");
        memory.insert(3, "c");
        assert_eq!(memory.get(&1), None);
        assert_eq!(memory.get(&2), Some("b"));
        assert_eq!(memory.get(&3), Some("c"));
    }

    #[test]
    fn only_final_states_and_messages_end_a_stream() {
        assert!(is_final(&TaskState::Canceled));
        assert!(!is_final(&TaskState::Working));
        assert!(!is_final(&TaskState::Submitted));
        assert!(is_last(&StreamResponse::Message(a2a::Message::new(
            a2a::Role::Agent,
            vec![]
        ))));
    }
}
