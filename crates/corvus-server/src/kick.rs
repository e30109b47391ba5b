//! How a connection is asked to leave (taken over by a new connection for its session, or
//! kicked by an administrator): a one-request slot the connection task waits on.
//!
//! It does what a bounded channel of one would, in about a tenth of the memory: every
//! connection has one for its whole life, and a tokio channel costs about 1 kB (its
//! cache-padded shared state and a block of 32 slots).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::broker::Evict;

#[derive(Debug, Default)]
struct Slot {
    pending: Mutex<Option<Evict>>,
    wake: Notify,
    /// Set when the connection no longer listens (its task is finishing).
    closed: AtomicBool,
}

/// Asks the connection to leave. Clones ask the same connection.
#[derive(Debug, Clone)]
pub struct Kick(Arc<Slot>);

/// The connection's end: where requests to leave arrive.
#[derive(Debug)]
pub struct KickReceiver(Arc<Slot>);

/// A new slot: the handle to give out, and the connection's end.
pub fn channel() -> (Kick, KickReceiver) {
    let slot = Arc::new(Slot::default());
    (Kick(slot.clone()), KickReceiver(slot))
}

impl Kick {
    /// Hands `evict` to the connection. Given back if it is already being asked (one request
    /// at a time) or no longer listens.
    pub fn try_send(&self, evict: Evict) -> Result<(), Evict> {
        if self.0.closed.load(Ordering::Acquire) {
            return Err(evict);
        }
        let mut pending = self.0.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_some() {
            return Err(evict);
        }
        *pending = Some(evict);
        drop(pending);
        // A permit is stored if the connection is not waiting right now: nothing is missed.
        self.0.wake.notify_one();
        Ok(())
    }
}

impl KickReceiver {
    /// The next request to leave (waits for it).
    pub async fn recv(&mut self) -> Evict {
        loop {
            if let Some(evict) = self
                .0
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                return evict;
            }
            self.0.wake.notified().await;
        }
    }
}

impl Drop for KickReceiver {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::EvictReason;
    use tokio::sync::oneshot;

    fn evict() -> (Evict, oneshot::Receiver<()>) {
        let (done, left) = oneshot::channel();
        let e = Evict {
            reason: EvictReason::Administrator,
            done,
        };
        (e, left)
    }

    #[tokio::test]
    async fn one_request_at_a_time_and_none_after_the_receiver_left() {
        let (kick, mut rx) = channel();
        let other = kick.clone();
        assert!(kick.try_send(evict().0).is_ok());
        // Already being asked.
        assert!(other.try_send(evict().0).is_err());
        let got = rx.recv().await;
        assert!(matches!(got.reason, EvictReason::Administrator));
        // Taken: the slot is free again.
        assert!(other.try_send(evict().0).is_ok());
        drop(rx);
        assert!(kick.try_send(evict().0).is_err());
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes() {
        let (kick, mut rx) = channel();
        let waiting = tokio::spawn(async move { rx.recv().await.reason });
        tokio::task::yield_now().await;
        assert!(kick.try_send(evict().0).is_ok());
        let reason = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert!(matches!(reason, EvictReason::Administrator));
    }
}
