//! A wake-up for one waiting task that costs nothing while it waits.
//!
//! A tokio `Notify` is waited on through a `Notified` future (64 bytes) that the waiting
//! task must carry; with a connection per client, every idle connection carries one. A
//! `Signal` is polled instead: the flag and the waker live here, with the session, and the
//! waiting task holds nothing.
//!
//! One task waits on a signal at a time (the connection that owns the session): a second
//! waiter would take the first one's waker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

#[derive(Debug, Default)]
pub struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Wakes the waiting task, or the next one to poll if none waits now: nothing is missed.
    pub fn raise(&self) {
        // Raised already: the task was woken and has not looked yet (a publisher raises once
        // per message queued; only the first of a burst needs to wake it).
        if self.raised.load(Ordering::Acquire) {
            return;
        }
        if !self.raised.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Ready (and lowered) if raised since the last time it was ready; otherwise the task
    /// is woken when it is.
    pub fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Checked first so a raised signal needs no waker registration.
        if self.raised.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Raised between the check and the registration: its wake may have gone to the
        // previous waker.
        match self.raised.swap(false, Ordering::AcqRel) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    /// Forgets the waiting task's waker. A waker keeps its task's memory alive, so a
    /// session whose connection ended must not keep the last one's.
    pub fn forget_waiter(&self) {
        drop(self.waker.take());
    }

    #[cfg(test)]
    async fn raised(&self) {
        std::future::poll_fn(|cx| self.poll_raised(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_raise_before_the_wait_is_not_missed_and_is_taken_once() {
        let signal = Signal::default();
        signal.raise();
        signal.raise();
        tokio::time::timeout(Duration::from_secs(5), signal.raised())
            .await
            .expect("raised before");
        // Both raises were one wake-up: nothing is left.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(signal.poll_raised(&mut cx).is_pending());
    }

    #[tokio::test]
    async fn a_waiting_task_wakes() {
        let signal = Arc::new(Signal::default());
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.raised().await }
        });
        tokio::task::yield_now().await;
        signal.raise();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
    }
}
