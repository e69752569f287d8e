//! Natural batching of the queue's hot statements.
//!
//! Under load, hundreds of workers lease, report and complete at once, and Postgres spends
//! most of its time on the fixed cost of each statement and commit, not on the rows. A
//! [`Batcher`] runs one flush at a time per operation: the first request is flushed at once
//! (no added latency when idle), and every request that arrives while a flush is in flight
//! joins the next one, up to a size limit. Each request still gets its own outcome.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// Most requests one flush takes.
pub const MAX_BATCH: usize = 128;

/// Requests of type `I`, each answered with an `O`, flushed together by a background task.
pub struct Batcher<I, O> {
    tx: mpsc::UnboundedSender<(I, oneshot::Sender<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Spawns the flushing task. `flush` must return exactly one output per input, in order.
    pub fn spawn<F, Fut>(flush: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(I, oneshot::Sender<O>)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut inputs = vec![first.0];
                let mut replies = vec![first.1];
                while inputs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok((i, r)) => {
                            inputs.push(i);
                            replies.push(r);
                        }
                        Err(_) => break,
                    }
                }
                let n = inputs.len();
                let outputs = flush(inputs).await;
                assert_eq!(outputs.len(), n, "a flush answers every request");
                for (reply, out) in replies.into_iter().zip(outputs) {
                    // A caller that went away (its RPC was cancelled) no longer needs the answer;
                    // the work itself is done either way.
                    let _ = reply.send(out);
                }
            }
        });
        Batcher { tx }
    }

    /// Submits one request and waits for its outcome. `None` if the flushing task is gone
    /// (its runtime is shutting down).
    pub async fn call(&self, input: I) -> Option<O> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((input, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn concurrent_requests_share_flushes_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let b = Batcher::spawn(move |xs: Vec<u32>| {
            seen.lock().unwrap().push(xs.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                xs.into_iter().map(|x| x * 10).collect::<Vec<_>>()
            }
        });
        let calls: Vec<_> = (0..50u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.call(i).await) })
            })
            .collect();
        for c in calls {
            let (i, out) = c.await.unwrap();
            assert_eq!(out, Some(i * 10));
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 50);
        assert!(
            sizes.len() < 50,
            "50 concurrent requests took {} flushes: {sizes:?}",
            sizes.len()
        );
    }
}
