//! How a connection is asked to leave (taken over by a new connection for its session, or
//! kicked by an administrator): a one-request slot the connection task waits on.
//!
//! It does what a bounded channel of one would, in about a tenth of the memory: every
//! connection has one for its whole life, and a tokio channel costs about 1 kB (its
//! cache-padded shared state and a block of 32 slots).

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::broker::Evict;

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    pending: Option<Evict>,
    /// The connection no longer listens (its task is finishing).
    closed: bool,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        let mut state = self.0.state();
        if state.closed || state.pending.is_some() {
            return Err(evict);
        }
        state.pending = Some(evict);
        drop(state);
        // A permit is stored if the connection is not waiting right now: nothing is missed.
        self.0.wake.notify_one();
        Ok(())
    }
}

impl KickReceiver {
    /// The next request to leave (waits for it).
    pub async fn recv(&mut self) -> Evict {
        loop {
            if let Some(evict) = self.0.state().pending.take() {
                return evict;
            }
            self.0.wake.notified().await;
        }
    }
}

impl Drop for KickReceiver {
    fn drop(&mut self) {
        // Under the lock, so that no request is left behind after the check: one that came
        // first is dropped here, and its sender sees `done` fall (the connection is gone).
        let mut state = self.0.state();
        state.closed = true;
        state.pending = None;
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
    async fn a_request_left_when_the_receiver_goes_tells_its_sender() {
        let (kick, rx) = channel();
        let (e, left) = evict();
        assert!(kick.try_send(e).is_ok());
        drop(rx);
        // The request was dropped with the receiver: whoever waits on `done` is not kept
        // waiting for a connection that is gone.
        assert!(left.await.is_err());
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
