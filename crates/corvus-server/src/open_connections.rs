//! A listener's open connections, counted so that it can wait for them at shutdown.
//!
//! A `JoinSet` would do it with an entry of 56 bytes per connection (and a join handle);
//! a count kept where each connection already holds a share (its source address slot,
//! `sources.rs`) does it with none. Connections are not aborted: shutdown reaches each of
//! them (`Broker::shutdown_connections`, and the shutdown flag before a session is
//! claimed), and every step of a closing connection is bounded in time.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct OpenConnections {
    open: AtomicUsize,
    none_left: Notify,
}

impl OpenConnections {
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::AcqRel);
    }

    pub fn closed(&self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_left.notify_waiters();
        }
    }

    pub fn len(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until every connection counted open has closed.
    pub async fn all_closed(&self) {
        loop {
            let none_left = self.none_left.notified();
            let mut none_left = std::pin::pin!(none_left);
            // Registered before the check, so a last close in between is not missed.
            none_left.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            none_left.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_the_last_connection_and_not_longer() {
        let open = Arc::new(OpenConnections::default());
        // None open: returns at once.
        open.all_closed().await;
        open.opened();
        open.opened();
        assert_eq!(open.len(), 2);
        let waiting = tokio::spawn({
            let open = open.clone();
            async move { open.all_closed().await }
        });
        tokio::task::yield_now().await;
        open.closed();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one is still open");
        open.closed();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the last close")
            .expect("task");
        assert_eq!(open.len(), 0);
    }
}
