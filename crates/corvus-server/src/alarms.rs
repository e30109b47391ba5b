//! Every connection's timer in one place: the keep alive running out, the topic tally due.
//! One task wakes each connection when its deadline passes.
//!
//! A tokio `Sleep` per waiting connection costs 112 bytes in each connection's task (most
//! connections are waiting at any time), and a timer registration per wake-up. Here a
//! connection's deadline is an atomic in its [`Alarm`]: activity moves it later with one
//! store. The heap holds one live entry per alarm, at the time it was armed for; when that
//! time comes and the deadline has moved on, the entry goes back in at the new deadline
//! instead of ringing. Only a deadline moved earlier takes the lock.
//!
//! An alarm lives in whatever the connection already shares (its kick slot, `kick.rs`), so
//! it costs no allocation of its own. Times are milliseconds on the process's monotonic
//! clock (`clock::monotonic_millis`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::{watch, Notify};

use crate::clock::monotonic_millis;

/// No deadline, or no entry in the heap.
const NONE: u64 = u64::MAX;

/// What holds an alarm (shared, so the task can reach it while it lives).
pub trait Alarmed: Send + Sync {
    fn alarm(&self) -> &Alarm;
}

/// One connection's alarm.
#[derive(Debug)]
pub struct Alarm {
    /// When it should ring ([`NONE`]: never).
    deadline: AtomicU64,
    /// The time of its live heap entry ([`NONE`]: none). Written under the heap's lock.
    queued_for: AtomicU64,
    rang: AtomicBool,
    waker: AtomicWaker,
}

impl Default for Alarm {
    fn default() -> Alarm {
        Alarm {
            deadline: AtomicU64::new(NONE),
            queued_for: AtomicU64::new(NONE),
            rang: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }
}

impl Alarm {
    /// Ready (once) after the alarm rang; otherwise the task is woken when it does.
    pub fn poll_rang(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.rang.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        match self.rang.swap(false, Ordering::AcqRel) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    fn ring(&self) {
        self.rang.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// An entry of the heap: an alarm and the time it was queued for.
struct Entry {
    at: u64,
    owner: Weak<dyn Alarmed>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

/// The alarms of every connection of a broker, and the task that rings them ([`run`]).
#[derive(Default)]
pub struct Alarms {
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
    /// An entry earlier than all the others went in: the task sleeps less.
    earlier: Notify,
}

impl std::fmt::Debug for Alarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarms").finish_non_exhaustive()
    }
}

impl Alarms {
    fn heap(&self) -> MutexGuard<'_, BinaryHeap<Reverse<Entry>>> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets when `owner`'s alarm rings (`None`: not at all), replacing what was set before.
    pub fn set<A: Alarmed + 'static>(&self, owner: &Arc<A>, at: Option<u64>) {
        let alarm = owner.alarm();
        let at = at.unwrap_or(NONE);
        alarm.deadline.store(at, Ordering::SeqCst);
        // A later deadline needs nothing more: the entry there now comes first and goes
        // back in at the new time. (If the task is taking that entry right now, it reads
        // the new deadline after marking the entry gone, or this reads the mark below.)
        if at >= alarm.queued_for.load(Ordering::SeqCst) {
            return;
        }
        let mut heap = self.heap();
        if at >= alarm.queued_for.load(Ordering::SeqCst) {
            return;
        }
        let first = heap.peek().is_none_or(|Reverse(e)| at < e.at);
        // The entry queued before stays in the heap, stale: it is dropped when it comes up.
        alarm.queued_for.store(at, Ordering::SeqCst);
        let owner: Weak<dyn Alarmed> = Arc::downgrade(owner) as Weak<dyn Alarmed>;
        heap.push(Reverse(Entry { at, owner }));
        drop(heap);
        if first {
            self.earlier.notify_one();
        }
    }

    /// Rings the alarms due at `now` and requeues the ones whose deadline moved; the time
    /// of the next entry, if any.
    fn ring_due(&self, now: u64) -> Option<u64> {
        let mut heap = self.heap();
        while let Some(Reverse(entry)) = heap.peek() {
            if entry.at > now {
                return Some(entry.at);
            }
            let Some(Reverse(entry)) = heap.pop() else {
                break;
            };
            // Gone with its connection, or a stale entry (a newer one is queued).
            let Some(owner) = entry.owner.upgrade() else {
                continue;
            };
            let alarm = owner.alarm();
            if alarm.queued_for.load(Ordering::SeqCst) != entry.at {
                continue;
            }
            alarm.queued_for.store(NONE, Ordering::SeqCst);
            match alarm.deadline.load(Ordering::SeqCst) {
                NONE => {}
                deadline if deadline <= now => alarm.ring(),
                deadline => {
                    alarm.queued_for.store(deadline, Ordering::SeqCst);
                    heap.push(Reverse(Entry {
                        at: deadline,
                        owner: entry.owner,
                    }));
                }
            }
        }
        None
    }

    /// Rings alarms as they come due, until shutdown.
    pub async fn run(self: Arc<Alarms>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next = self.ring_due(monotonic_millis());
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(monotonic_millis()))
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.earlier.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Holder(Alarm);

    impl Alarmed for Holder {
        fn alarm(&self) -> &Alarm {
            &self.0
        }
    }

    fn rang(holder: &Holder) -> bool {
        let alarm = &holder.0;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        alarm.poll_rang(&mut cx).is_ready()
    }

    #[test]
    fn an_alarm_rings_once_at_its_deadline_and_not_before() {
        let alarms = Alarms::default();
        let alarm = Arc::new(Holder::default());
        alarms.set(&alarm, Some(100));
        assert_eq!(alarms.ring_due(99), Some(100));
        assert!(!rang(&alarm));
        assert_eq!(alarms.ring_due(100), None);
        assert!(rang(&alarm));
        assert!(!rang(&alarm), "rings once");
    }

    #[test]
    fn a_deadline_moved_later_takes_no_new_entry_and_rings_at_the_new_time() {
        let alarms = Alarms::default();
        let alarm = Arc::new(Holder::default());
        alarms.set(&alarm, Some(100));
        alarms.set(&alarm, Some(250));
        assert_eq!(alarms.len(), 1);
        // The entry at 100 comes up, finds the deadline moved and goes back in at 250.
        assert_eq!(alarms.ring_due(100), Some(250));
        assert!(!rang(&alarm));
        assert_eq!(alarms.ring_due(250), None);
        assert!(rang(&alarm));
    }

    #[test]
    fn a_deadline_moved_earlier_rings_early_and_the_stale_entry_is_dropped() {
        let alarms = Alarms::default();
        let alarm = Arc::new(Holder::default());
        alarms.set(&alarm, Some(500));
        alarms.set(&alarm, Some(50));
        assert_eq!(alarms.ring_due(50), Some(500));
        assert!(rang(&alarm));
        // The entry at 500 is stale: it rings nothing.
        assert_eq!(alarms.ring_due(500), None);
        assert!(!rang(&alarm));
        assert_eq!(alarms.len(), 0);
    }

    #[test]
    fn a_cleared_alarm_does_not_ring_and_a_dropped_one_is_forgotten() {
        let alarms = Alarms::default();
        let cleared = Arc::new(Holder::default());
        let dropped = Arc::new(Holder::default());
        alarms.set(&cleared, Some(10));
        alarms.set(&dropped, Some(10));
        alarms.set(&cleared, None);
        drop(dropped);
        assert_eq!(alarms.ring_due(10), None);
        assert!(!rang(&cleared));
        assert_eq!(alarms.len(), 0);
        // Set again after its entry went: a new entry.
        alarms.set(&cleared, Some(20));
        assert_eq!(alarms.ring_due(20), None);
        assert!(rang(&cleared));
    }

    #[tokio::test]
    async fn the_task_wakes_a_waiting_connection() {
        let alarms = Arc::new(Alarms::default());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(alarms.clone().run(shutdown));
        let alarm = Arc::new(Holder::default());
        // Armed after the task went to sleep for an hour: it must wake for this one.
        tokio::task::yield_now().await;
        alarms.set(&alarm, Some(monotonic_millis() + 20));
        tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| alarm.0.poll_rang(cx)),
        )
        .await
        .expect("rang");
        let _ = stop.send(true);
        task.await.expect("task");
    }
}
