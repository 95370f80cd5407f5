//! Group commit: submissions queue up while a transaction is being written, and the next
//! transaction takes them all, so one fsync serves many requests.

use super::{Store, StoreError, Submission, Written};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most submissions written in one transaction.
const MAX_BATCH: usize = 512;

type Job = (Submission, oneshot::Sender<Result<Written, StoreError>>);

/// A handle to the writer task of a store.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    /// The store, for reads.
    pub store: Arc<dyn Store>,
}

impl Batcher {
    /// Starts the writer task.
    pub fn start(store: Arc<dyn Store>) -> Batcher {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        let writer = store.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let (subs, replies): (Vec<Submission>, Vec<_>) = jobs.into_iter().unzip();
                match writer.write(subs).await {
                    Ok(results) => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Batcher { tx, store }
    }

    /// Writes one submission; returns once it is committed (or refused for its key).
    pub async fn submit(&self, s: Submission) -> Result<Written, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((s, tx)).await.map_err(|_| StoreError("the writer stopped".into()))?;
        rx.await.map_err(|_| StoreError("the writer stopped".into()))?
    }
}
