//! How a connection is asked to leave (taken over by a new connection for its session,
//! kicked by an administrator, or the broker shutting down): a one-request slot the
//! connection task polls.
//!
//! It does what a bounded channel of one would, in about a tenth of the memory: every
//! connection has one for its whole life, and a tokio channel costs about 1 kB (its
//! cache-padded shared state and a block of 32 slots). It is polled, not awaited, so a
//! waiting connection carries no future for it either. The slot also holds the
//! connection's alarm (`alarms.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::alarms::{Alarm, Alarmed, Alarms};
use crate::broker::Evict;

/// The alarms of a broker's connections, held by their kick slots.
pub type ConnectionAlarms = Alarms<Slot>;

/// What a connection and those who may ask it to leave share.
#[derive(Debug, Default)]
pub struct Slot {
    /// Something is in `state` for the connection (a request or shutdown): polls look at
    /// `state`, and take its lock, only then.
    asked: AtomicBool,
    /// The alarm rang and the connection has not looked yet.
    rang: AtomicBool,
    state: Mutex<State>,
    /// The connection task, woken by a request and by its alarm: one task polls both.
    waker: AtomicWaker,
    /// The connection's timer (`alarms.rs`): here, so it needs no allocation of its own.
    alarm: Alarm,
}

impl Alarmed for Slot {
    fn alarm(&self) -> &Alarm {
        &self.alarm
    }

    fn ring(&self) {
        self.rang.store(true, Ordering::Release);
        self.waker.wake();
    }
}

#[derive(Debug, Default)]
struct State {
    pending: Option<Evict>,
    /// The broker is shutting down: every connection leaves. Stays set.
    shutdown: bool,
    /// The connection no longer listens (its task is finishing).
    closed: bool,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why the connection must leave.
#[derive(Debug)]
pub enum Leave {
    Evicted(Evict),
    Shutdown,
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
        self.0.asked.store(true, Ordering::Release);
        drop(state);
        // Kept by the slot if the connection is not waiting right now: nothing is missed.
        self.0.waker.wake();
        Ok(())
    }

    /// Tells the connection the broker is shutting down.
    pub fn shutdown(&self) {
        self.0.state().shutdown = true;
        self.0.asked.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl KickReceiver {
    /// Ready with the request to leave once there is one (shutdown first); otherwise the
    /// task is woken when one comes.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Leave> {
        if let Some(leave) = self.take() {
            return Poll::Ready(leave);
        }
        self.0.waker.register(cx.waker());
        // A request that came between the check and the registration may have woken the
        // previous waker.
        match self.take() {
            Some(leave) => Poll::Ready(leave),
            None => Poll::Pending,
        }
    }

    /// The connection is ending: its alarm never rings again.
    pub fn forget_alarm(&self, alarms: &ConnectionAlarms) {
        alarms.forget(&self.0);
    }

    /// Sets when the connection's alarm rings (`clock::now` milliseconds; `None`: not at
    /// all).
    pub fn set_alarm(&self, alarms: &ConnectionAlarms, at: Option<u64>) {
        alarms.set(&self.0, at);
    }

    /// Ready (once) after the alarm set with [`set_alarm`](Self::set_alarm) rang;
    /// otherwise the task is woken when it does.
    pub fn poll_alarm(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Checked first so a ring needs no waker registration.
        if self.0.rang.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        // A ring between the check and the registration may have woken the previous waker.
        match self.0.rang.swap(false, Ordering::AcqRel) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    #[cfg(test)]
    async fn recv(&mut self) -> Leave {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn take(&self) -> Option<Leave> {
        if !self.0.asked.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.0.state();
        match state.shutdown {
            true => Some(Leave::Shutdown),
            false => {
                self.0.asked.store(false, Ordering::Release);
                state.pending.take().map(Leave::Evicted)
            }
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
        assert!(matches!(got, Leave::Evicted(e) if matches!(e.reason, EvictReason::Administrator)));
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
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        assert!(kick.try_send(evict().0).is_ok());
        let reason = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert!(
            matches!(reason, Leave::Evicted(e) if matches!(e.reason, EvictReason::Administrator))
        );
    }

    #[tokio::test]
    async fn shutdown_comes_first_and_stays() {
        let (kick, mut rx) = channel();
        assert!(kick.try_send(evict().0).is_ok());
        kick.shutdown();
        assert!(matches!(rx.recv().await, Leave::Shutdown));
        // Every later look still says shutdown: the connection cannot miss it.
        assert!(matches!(rx.recv().await, Leave::Shutdown));
    }
}
