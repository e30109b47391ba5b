//! What a connection waits for between batches, and how that wait is kept small.
//!
//! Every connection's task carries, for its whole life, room for the largest thing it ever
//! waits on, and most connections are waiting at any time. Most of them wait on the same
//! few things: the socket, their session's messages, a request to leave (which includes
//! shutdown) and their alarm (keep alive, topic tally). Those are polled in place
//! (`poll_common`), so the wait carries nothing. The rest (an exact timer for a throttle or
//! a token's expiry, a token's revocation, acknowledgements held for the disk, message
//! bodies being read back, a store that is behind) is `wait_any`, which the caller boxes:
//! only connections that have one of them pay for its room, and only while they wait.

use std::task::{Context, Poll};

use tokio::sync::{oneshot, watch};
use tokio::time::{sleep_until, Instant};

use corvus_store::Ticket;

use super::{Bodies, Io, Task, Transport};
use crate::broker::SessionHandle;
use crate::kick::{KickReceiver, Leave};
use crate::listener_metrics::ListenerFigures;
use crate::security::TokenWatch;
use crate::signal::Signal;

/// When a connection must wake with nothing to read.
pub(super) struct Wake {
    /// Its keep alive running out or its topic tally due, the earlier (milliseconds on
    /// `clock::monotonic_millis`): rung by the broker's alarms (`alarms.rs`).
    pub alarm: Option<u64>,
    /// The end of a throttle or the token expiring, the earlier: rarer, and exact.
    pub timer: Option<Instant>,
    /// The client is beyond its message rate: it is not read until `timer`.
    pub throttled: bool,
}

/// What the connection waits for this time round, in the boxed wait.
pub(super) struct Wait<'a> {
    /// Whether the socket is read (not while throttled or while the store is behind).
    pub reading: bool,
    /// See [`Wake::timer`].
    pub timer: Option<Instant>,
    /// The store, while it is behind: the wait ends when it has caught up.
    pub backlog: Option<&'a corvus_store::Store>,
}

/// What ended the wait.
#[derive(Debug)]
pub(super) enum Woken {
    /// Asked to leave: taken over, kicked by an administrator, or shutdown.
    Leave(Leave),
    /// The socket was read (0 bytes: closed).
    Read(std::io::Result<usize>),
    /// Messages were queued into the session.
    Messages,
    /// The alarm or the timer (see [`Wake`]).
    Timer,
    /// A reloaded revocation list revoked the client's token.
    Revoked,
    /// More of the store is durable: held output may go out.
    Durable,
    /// Message bodies read back from the store.
    Bodies(Bodies),
    /// The store caught up.
    Backlog,
}

/// The common wake-up sources, polled in order of urgency: leaving first, then what the
/// client sent, then what it is sent. A source not chosen stays ready for the next round.
fn poll_common<S: Transport>(
    cx: &mut Context<'_>,
    io: &mut Io<S>,
    figures: &ListenerFigures,
    messages: &Signal,
    kick_rx: &mut KickReceiver,
    reading: bool,
) -> Poll<Woken> {
    if let Poll::Ready(leave) = kick_rx.poll_recv(cx) {
        return Poll::Ready(Woken::Leave(leave));
    }
    if reading {
        if let Poll::Ready(read) = io.poll_read_more(cx, figures) {
            return Poll::Ready(Woken::Read(read));
        }
    }
    if messages.poll_raised(cx).is_ready() {
        return Poll::Ready(Woken::Messages);
    }
    kick_rx.poll_alarm(cx).map(|()| Woken::Timer)
}

impl<S: Transport> Task<S> {
    /// The wait of a connection with none of the rare wake-up sources.
    pub(super) async fn wait_common(
        &mut self,
        handle: &SessionHandle,
        kick_rx: &mut KickReceiver,
        reading: bool,
    ) -> Woken {
        std::future::poll_fn(|cx| {
            poll_common(
                cx,
                &mut self.io,
                &self.listener.figures,
                &handle.notify,
                kick_rx,
                reading,
            )
        })
        .await
    }

    /// The wait with every wake-up source; boxed by the caller.
    pub(super) async fn wait_any(
        &mut self,
        handle: &SessionHandle,
        kick_rx: &mut KickReceiver,
        wait: Wait<'_>,
    ) -> Woken {
        let holding = !self.held.is_empty();
        let loading = self.loading.is_some();
        let Task {
            io,
            listener,
            token,
            durable,
            loading: bodies,
            ..
        } = self;
        let common = std::future::poll_fn(|cx| {
            poll_common(
                cx,
                io,
                &listener.figures,
                &handle.notify,
                kick_rx,
                wait.reading,
            )
        });
        let timer = wait.timer;
        // The rare sources first: the common ones are ready whenever traffic flows, and a
        // busy client must still see its timer, its revocation and its stored bodies.
        tokio::select! {
            biased;
            _ = sleep_until(timer.unwrap_or_else(far_future)), if timer.is_some() => Woken::Timer,
            _ = token_revoked(token) => Woken::Revoked,
            bodies = bodies_read(bodies), if loading => Woken::Bodies(bodies),
            _ = durable_changed(durable), if holding => Woken::Durable,
            _ = backlog_drained(wait.backlog) => Woken::Backlog,
            woken = common => woken,
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

async fn bodies_read(loading: &mut Option<oneshot::Receiver<Bodies>>) -> Bodies {
    match loading {
        Some(rx) => match rx.await {
            Ok(bodies) => bodies,
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Resolves when a reloaded revocation list revokes the client's token (never, without one).
async fn token_revoked(token: &mut Option<Box<TokenWatch>>) {
    match token {
        Some(token) => token.revoked().await,
        None => std::future::pending().await,
    }
}

/// Resolves once the store has caught up (never, when it is not behind).
async fn backlog_drained(store: Option<&corvus_store::Store>) {
    match store {
        Some(store) => store.backlog_drained().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the durable ticket changes (never, without a store that makes acks wait).
async fn durable_changed(durable: &mut Option<watch::Receiver<Ticket>>) {
    match durable {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The store is gone (shutdown): nothing more will become durable.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
