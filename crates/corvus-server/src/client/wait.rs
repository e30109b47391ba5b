//! What a connection waits for between batches, and how that wait is kept small.
//!
//! Every connection's task carries, for its whole life, room for the largest thing it ever
//! waits on, and most connections are waiting at any time. Most of them wait on the same
//! few things: a request to leave (which includes shutdown), their alarm (keep alive, token
//! expiry, topic tally, throttle, idle buffers: `alarms.rs`), the socket and their
//! session's messages. Those are polled in place (`poll_common`), so the wait carries
//! nothing. The rest (a token's revocation, acknowledgements held for the disk, message
//! bodies being read back, a store that is behind) is `wait_any`, which the caller boxes:
//! only connections that have one of them pay for its room, and only while they wait.

use std::future::Future;
use std::task::{Context, Poll};

use tokio::sync::{oneshot, watch};

use corvus_store::Ticket;

use super::{Bodies, Io, Task, Transport};
use crate::broker::SessionHandle;
use crate::kick::{KickReceiver, Leave};
use crate::listener_metrics::ListenerFigures;
use crate::security::TokenWatch;
use crate::signal::Signal;

/// What the connection waits for this time round, in the boxed wait.
pub(super) struct Wait {
    /// Whether the socket is read (not while throttled or while the store is behind).
    pub reading: bool,
    /// The store is behind: the wait ends when it has caught up.
    pub backlogged: bool,
}

/// What ended the wait.
#[derive(Debug)]
pub(super) enum Woken {
    /// Asked to leave: taken over, kicked by an administrator, or shutdown.
    Leave(Leave),
    /// The connection's alarm rang.
    Alarm,
    /// The socket was read (0 bytes: closed).
    Read(std::io::Result<usize>),
    /// Messages were queued into the session.
    Messages,
    /// A reloaded revocation list revoked the client's token.
    Revoked,
    /// More of the store is durable: held output may go out.
    Durable,
    /// Message bodies read back from the store.
    Bodies(Bodies),
    /// The store caught up.
    Backlog,
}

/// The common wake-up sources, polled in place, in order of urgency: leaving, the alarm
/// (deadlines must not wait behind traffic), what the client sent, what it is sent. A
/// source not chosen stays ready for the next round.
pub(super) fn common<'a, S: Transport>(
    io: &'a mut Io<S>,
    figures: &'a ListenerFigures,
    messages: &'a Signal,
    kick_rx: &'a mut KickReceiver,
    reading: bool,
) -> impl Future<Output = Woken> + 'a {
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        if let Poll::Ready(leave) = kick_rx.poll_recv(cx) {
            return Poll::Ready(Woken::Leave(leave));
        }
        if kick_rx.poll_alarm(cx).is_ready() {
            return Poll::Ready(Woken::Alarm);
        }
        if reading {
            if let Poll::Ready(read) = io.poll_read_more(cx, figures) {
                return Poll::Ready(Woken::Read(read));
            }
        }
        messages.poll_raised(cx).map(|()| Woken::Messages)
    })
}

impl<S: Transport> Task<S> {
    /// The wait with every wake-up source; boxed by the caller.
    pub(super) async fn wait_any(
        &mut self,
        handle: &SessionHandle,
        kick_rx: &mut KickReceiver,
        wait: Wait,
    ) -> Woken {
        // Held output waits for its first segment's ticket to be durable. Checked on a fresh
        // receiver (`wait_for` looks at the current value first), so a ticket that became
        // durable since the round released what it could is not missed.
        let held_for = self.held.first_ticket();
        let durable = held_for.and_then(|_| self.waits_for_disk().map(|s| s.durable()));
        let loading = self.loading.is_some();
        let Task {
            io,
            listener,
            broker,
            token,
            loading: bodies,
            ..
        } = self;
        let backlog = broker.store().filter(|_| wait.backlogged);
        let common = common(io, &listener.figures, &handle.notify, kick_rx, wait.reading);
        // The rare sources first: the common ones are ready whenever traffic flows, and a
        // busy client must still see its revocation and its stored bodies.
        tokio::select! {
            biased;
            _ = token_revoked(token) => Woken::Revoked,
            bodies = bodies_read(bodies), if loading => Woken::Bodies(bodies),
            _ = durable_reached(durable, held_for.unwrap_or(0)) => Woken::Durable,
            _ = backlog_drained(backlog.map(|s| &**s)) => Woken::Backlog,
            woken = common => woken,
        }
    }
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

/// Resolves when `ticket` is durable (never, without held output).
async fn durable_reached(durable: Option<watch::Receiver<Ticket>>, ticket: Ticket) {
    match durable {
        Some(mut rx) => {
            if rx.wait_for(|&d| d >= ticket).await.is_err() {
                // The store is gone (shutdown): nothing more will become durable.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
