//! Coalescing: small writes of one kind that arrive while an earlier group
//! of them is being written wait, and go together as the next group: one
//! job of the group commit with a constant number of statements, however
//! many writes it holds.
//!
//! The group commit alone shares a commit between jobs, but every job
//! still runs its own statements, each a round trip to the database (on
//! SQLite, to its worker thread). A kind of write that comes in thousands
//! a second (agents' reports) is cheaper written as multi-row statements.
//!
//! A group holds at most one write per key: a second write of the same key
//! waits for the next group, so that it sees the first one's effects as if
//! the two had been written one after another. Each caller is answered
//! only after its group is committed, with its own result; a group that
//! fails fails all of its writes.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::writer::{copy, refused, stopped, QUEUE_DEPTH};
use super::{StoreError, StoreResult};

type Reply<O> = oneshot::Sender<StoreResult<O>>;

/// Writes one group: its outcomes, one per item, in the items' order.
pub(crate) type WriteGroup<I, O> =
    Box<dyn FnMut(Vec<I>) -> BoxFuture<'static, StoreResult<Vec<O>>> + Send>;

/// The handle writes are submitted through; cheap to clone.
pub(crate) struct Coalescer<I, O> {
    queue: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for Coalescer<I, O> {
    fn clone(&self) -> Self {
        Coalescer {
            queue: self.queue.clone(),
        }
    }
}

impl<I, O> std::fmt::Debug for Coalescer<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    /// Starts the task that writes the groups, on the current runtime: at
    /// most `most` items a group, at most one of each `key`. It stops once
    /// every handle is dropped.
    pub(crate) fn start<K>(most: usize, key: fn(&I) -> K, write: WriteGroup<I, O>) -> Self
    where
        K: Eq + Hash + Send + 'static,
    {
        let (queue, items) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(items, most.max(1), key, write));
        Coalescer { queue }
    }

    /// Writes `item` in the next group; answers its outcome once that
    /// group is committed.
    pub(crate) async fn submit(&self, item: I) -> StoreResult<O> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send((item, reply)).map_err(refused)?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run<I, O, K>(
    mut items: mpsc::Receiver<(I, Reply<O>)>,
    most: usize,
    key: fn(&I) -> K,
    mut write: WriteGroup<I, O>,
) where
    K: Eq + Hash,
{
    // Items taken off the queue but not yet written, oldest first: those
    // of a key already in the group wait here for the next one.
    let mut waiting: VecDeque<(I, Reply<O>)> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match items.recv().await {
                Some(item) => waiting.push_back(item),
                None => return,
            }
        }
        // Bounded, so that the queue's depth still bounds what waits.
        while waiting.len() < 2 * most {
            match items.try_recv() {
                Ok(item) => waiting.push_back(item),
                Err(_) => break,
            }
        }
        let mut keys = HashSet::new();
        let mut group = Vec::new();
        let mut replies = Vec::new();
        let mut later = VecDeque::new();
        for (item, reply) in waiting.drain(..) {
            if group.len() < most && keys.insert(key(&item)) {
                group.push(item);
                replies.push(reply);
            } else {
                later.push_back((item, reply));
            }
        }
        waiting = later;
        let n = group.len();
        let failed = match write(group).await {
            Ok(outcomes) if outcomes.len() == n => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The caller may have gone (a dropped request).
                    let _ = reply.send(Ok(outcome));
                }
                continue;
            }
            Ok(outcomes) => StoreError::Other(format!(
                "a group of {n} writes answered {} outcomes",
                outcomes.len()
            )),
            Err(e) => e,
        };
        for reply in replies {
            let _ = reply.send(Err(copy(&failed)));
        }
    }
}
