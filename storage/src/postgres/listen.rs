//! `LISTEN` for the cluster's wake-ups: one connection of its own, started on first use,
//! that turns each notification on the store's channel into a new version of a watch
//! channel. A hint only: while the connection is down notifications are lost, and every
//! waiter also polls.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use tokio::sync::{broadcast, watch};
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::debug;

use crate::Signal;

/// The wake-ups of one store.
#[derive(Debug)]
pub(crate) struct Listener {
    config: tokio_postgres::Config,
    /// The channel notifications arrive on (one per schema).
    pub(crate) channel: String,
    deliveries: watch::Sender<u64>,
    /// Answered deliveries, by request id: each waiter wakes for its own only.
    answers: broadcast::Sender<uuid::Uuid>,
    running: AtomicBool,
    /// Dropped with the listener (the last handle of its store): the listening connection
    /// closes then.
    alive: watch::Sender<()>,
}

impl Listener {
    pub(crate) fn new(config: tokio_postgres::Config, schema: &str) -> Arc<Self> {
        // A channel name is an identifier: at most 63 bytes.
        let channel = format!("colloquy_{}", &schema[..schema.len().min(50)]);
        Arc::new(Self {
            config,
            channel,
            deliveries: watch::channel(0).0,
            answers: broadcast::channel(1024).0,
            running: AtomicBool::new(false),
            alive: watch::channel(()).0,
        })
    }

    /// Starts the listening connection if it is not running.
    fn start(self: &Arc<Self>) {
        if !self.running.swap(true, Ordering::AcqRel) {
            // The task holds the listener weakly, so it ends when the store's last handle
            // is dropped.
            tokio::spawn(listen(Arc::downgrade(self), self.alive.subscribe()));
        }
    }

    /// A future that resolves at the next notification of `signal` after this call.
    pub(crate) fn wait(
        self: &Arc<Self>,
        signal: Signal,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.start();
        match signal {
            Signal::Answered(id) => {
                let mut answers = self.answers.subscribe();
                Box::pin(async move {
                    loop {
                        match answers.recv().await {
                            Ok(answered) if answered == id => return,
                            Ok(_) => {}
                            // Missed some: let the caller look.
                            Err(broadcast::error::RecvError::Lagged(_)) => return,
                            Err(broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                })
            }
            Signal::Deliveries => {
                let mut deliveries = self.deliveries.subscribe();
                Box::pin(async move {
                    if deliveries.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                })
            }
        }
    }

    async fn listen_once(
        this: &std::sync::Weak<Self>,
        mut alive: watch::Receiver<()>,
    ) -> Result<(), tokio_postgres::Error> {
        let Some(config) = this.upgrade().map(|listener| listener.config.clone()) else {
            return Ok(());
        };
        let channel = this
            .upgrade()
            .map(|l| l.channel.clone())
            .unwrap_or_default();
        let (client, mut connection) = config.connect(NoTls).await?;
        let (messages_tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
        // The connection is driven here; its notifications go to the loop below.
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(message)) => {
                        if messages_tx.send(message).is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        debug!(error = %e, "LISTEN connection failed");
                        return;
                    }
                    None => return,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await?;
        loop {
            let message = tokio::select! {
                message = messages.recv() => message,
                // The store is gone: stop listening.
                _ = alive.changed() => None,
            };
            let (Some(message), Some(listener)) = (message, this.upgrade()) else {
                break;
            };
            if let AsyncMessage::Notification(note) = message {
                match note
                    .payload()
                    .strip_prefix("a:")
                    .map(str::parse::<uuid::Uuid>)
                {
                    Some(Ok(id)) => {
                        // No receiver is normal: nobody here waits for that answer.
                        let _ = listener.answers.send(id);
                    }
                    _ => listener
                        .deliveries
                        .send_modify(|version| *version = version.wrapping_add(1)),
                }
            }
        }
        driver.abort();
        drop(client);
        Ok(())
    }
}

/// Listens until the connection ends or the store is dropped, then lets the next waiter
/// start it again.
async fn listen(this: std::sync::Weak<Listener>, alive: watch::Receiver<()>) {
    if let Err(e) = Listener::listen_once(&this, alive).await {
        debug!(error = %e, "the cluster's LISTEN connection ended; waiters poll until it restarts");
    }
    if let Some(listener) = this.upgrade() {
        listener.running.store(false, Ordering::Release);
    }
}
