//! Password checks off the runtime threads, a bounded number at a time. argon2 costs tens of
//! milliseconds and megabytes of memory per check, on purpose: a flood of CONNECTs with
//! passwords must queue for a few blocking threads, not take hundreds of them (tokio's
//! blocking pool would grow to 512) and gigabytes with them.

use tokio::sync::Semaphore;

#[derive(Debug)]
pub struct BoundedBlocking {
    permits: Semaphore,
}

impl BoundedBlocking {
    /// At most `concurrent` calls run at once (at least one).
    pub fn new(concurrent: usize) -> BoundedBlocking {
        BoundedBlocking {
            permits: Semaphore::new(concurrent.max(1)),
        }
    }

    /// One per core: the checks are CPU-bound.
    pub fn per_core() -> BoundedBlocking {
        BoundedBlocking::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Runs `work` on a blocking thread once a permit is free; `None` if it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        // Never closed, so acquiring cannot fail.
        let _permit = self.permits.acquire().await.ok()?;
        tokio::task::spawn_blocking(work).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_bound_run_at_once() {
        let bounded = Arc::new(BoundedBlocking::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (bounded, running, most) = (bounded.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                bounded
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Some(()));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
