//! One task per client connection: reads and decodes packets, feeds them to the core's
//! `Connection` with the session lent for the call, carries out the resulting actions, and
//! writes packets out in batches (everything produced by one wake-up goes in one write).
//!
//! The task owns its connection's state; the session is shared with publishers, who queue
//! messages into it and wake the task through the session's `Signal`. How little an idle
//! connection holds is the subject of `wait.rs` and `io.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use corvus_core::{Action, Authentication, ClientId, ConnectRequest, Connection};
use mqtt_codec::{Decoder, Packet, ProtocolVersion, ReasonCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch};
use tokio::time::{timeout, timeout_at, Instant};
use tracing::{debug, info};

use corvus_store::Ticket;

use crate::broker::{
    Broker, Claim, Evict, EvictReason, MessageRouting, Owner, Receipt, SessionHandle,
    SessionOwnership,
};
use crate::clock::now;
use crate::connection_info::{ConnectionFacts, ConnectionInfo};
use crate::held::HeldOutput;
use crate::listener_metrics::ListenerFigures;
use crate::metrics::Metrics;
use crate::rate::MessageRate;
use crate::security::{
    Credentials, Denied, Exchange, Identity, ListenerAuth, Security, TokenWatch,
};
use crate::sources::SourceSlot;
use crate::topic_rates::TopicTally;

mod io;
mod wait;

pub(crate) use io::Transport;
use io::{Io, ReadError};
use wait::{Wait, Woken};

/// How long a new connection waits for the previous owner of its session to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// Bytes of queued messages turned into packets per wake-up, so one busy session cannot
/// build an unbounded write buffer.
const WRITE_BUDGET: usize = 256 * 1024;
/// How long a closing connection waits for the store to make its last acknowledgements
/// sendable.
const HELD_GRACE: Duration = Duration::from_secs(1);
/// Queued messages whose bodies are read back from the store at a time, when a session's
/// client returns: a window at the front of the queue (at most this many, and about this
/// many payload bytes), so memory stays bounded however much was queued.
const LOAD_WINDOW: usize = 256;
const LOAD_BYTES: usize = 1024 * 1024;

/// How long a busy connection keeps its buffers after its last round (and how close its
/// rounds come to count as busy): it does not make them again for every message, and an
/// idle one gives them back.
const BUFFERS_KEPT_IDLE: corvus_core::Millis = 1_000;

/// What ended a flush.
enum Flushed {
    Done(std::io::Result<()>),
    Leave(crate::kick::Leave),
    Alarm,
}

/// Message bodies read back from the store, by stored id (`None`: lost).
type Bodies = Vec<(u64, Option<Arc<corvus_core::Message>>)>;

/// Why the connection task stopped.
#[derive(Debug)]
enum End {
    /// The client closed or the network failed.
    Network,
    /// The protocol state machine closed it (DISCONNECT, error, timeout).
    Protocol,
    /// Asked to leave: taken over by a new connection, or kicked by an administrator.
    Evicted(Evict),
    Shutdown,
}

impl From<crate::kick::Leave> for End {
    fn from(leave: crate::kick::Leave) -> End {
        match leave {
            crate::kick::Leave::Evicted(evict) => End::Evicted(evict),
            crate::kick::Leave::Shutdown => End::Shutdown,
        }
    }
}

/// What a listener gives each of its connections.
#[derive(Debug)]
pub struct ListenerShared {
    pub broker: Arc<Broker>,
    pub security: Arc<Security>,
    pub auth: ListenerAuth,
    /// The limits of this listener's connections (`[limits]` with its `[listener.limits]`),
    /// replaced by a reload: each connection keeps those it started with (its CONNACK
    /// announced some of them).
    pub limits: RwLock<ConnectionLimits>,
    /// This listener's connections and bytes.
    pub figures: Arc<ListenerFigures>,
}

/// The limits a connection starts with.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Sessions are created with the broker's (`Broker::config`).
    pub config: Arc<corvus_core::BrokerConfig>,
    /// PUBLISH packets per second a client may send, and how long it may stay beyond that.
    pub message_rate: Option<(u32, Duration)>,
    /// Time it has for TLS, the WebSocket upgrade and CONNECT.
    pub connect_timeout: Duration,
}

impl ListenerShared {
    /// The limits in force now, for a new connection.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One accepted connection, before MQTT.
#[derive(Debug)]
pub struct Accepted {
    pub peer: SocketAddr,
    /// The name in its verified client certificate, when the listener reads one.
    pub certificate_name: Option<String>,
    /// Counts the connection against its source address while it is open.
    pub slot: SourceSlot,
    /// The listener's limits when it was accepted.
    pub limits: ConnectionLimits,
}

/// Serves one client connection until it ends.
///
/// Not an `async fn`: the connection's state is built here and moved into the future,
/// where it is used in place. An `async fn` would keep its arguments (the stream, the
/// `Accepted`) in the future beside the `Task` made of them, for the connection's life.
pub fn serve<S>(
    stream: S,
    accepted: Accepted,
    listener: Arc<ListenerShared>,
    connect_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()>
where
    S: Transport,
{
    let Accepted {
        peer,
        certificate_name,
        slot,
        limits,
    } = accepted;
    let broker = listener.broker.clone();
    let mut task = Task {
        // Until CONNECT, only a small packet: an unknown client may not make the broker
        // buffer much (raised to max_packet_size once it is connected).
        io: Io::new(
            stream,
            Decoder::new(ProtocolVersion::V5).with_max_packet_size(
                limits
                    .config
                    .max_connect_size
                    .min(limits.config.max_packet_size),
            ),
        ),
        conn: Connection::new(limits.config.clone(), now()),
        actions: Vec::new(),
        id: broker.next_connection_id(),
        peer,
        needed: 0,
        held: HeldOutput::default(),
        loading: None,
        broker: broker.clone(),
        rate: limits
            .message_rate
            .map(|(rate, grace)| Box::new(MessageRate::new(rate, grace))),
        token: None,
        reauth: None,
        info: None,
        topics: TopicTally::default(),
        max_packet_size: limits.config.max_packet_size,
        last_round: 0,
        read_at: None,
        listener,
    };
    // What only the CONNECT phase needs, boxed: the future keeps a pointer for its life.
    let admission = Box::new(Admission {
        certificate_name,
        // The whole CONNECT (and any AUTH exchange) must arrive in time.
        deadline: Instant::now() + connect_timeout,
        shutdown,
    });
    async move {
        task.listener.figures.connected();
        // The phases before and after serving are boxed: inline, the largest of them (and
        // the packets they read) would set the size of every connection's task for its
        // whole life.
        let mut connected = Box::pin(task.connect(admission)).await;
        // Served by reference: a value bound out of the `Option` would be a second copy.
        if let Some(connected) = &mut connected {
            task.serve(connected).await;
        }
        // The slot last: it counts the connection open (`open_connections.rs`), and nothing
        // of it (the broker and the store it holds) may outlive the count.
        drop(connected);
        let figures = task.listener.figures.clone();
        drop(task);
        figures.disconnected();
        drop(slot);
    }
}

struct Task<S> {
    io: Io<S>,
    conn: Connection,
    actions: Vec<Action>,
    id: u64,
    peer: SocketAddr,
    broker: Arc<Broker>,
    /// The store batch everything sent from now on depends on (see `held`; 0: none).
    needed: Ticket,
    /// Output waiting for the store; only used when acknowledgements wait for the disk.
    held: HeldOutput,
    /// Queued message bodies being read back from the store.
    loading: Option<oneshot::Receiver<Bodies>>,
    listener: Arc<ListenerShared>,
    /// The client's PUBLISH rate allowance, when the listener limits it. This and the
    /// token are boxed: most connections have neither, and inline they would cost every
    /// connection their size.
    rate: Option<Box<MessageRate>>,
    /// The capability token the client connected with: watched for expiry and revocation.
    token: Option<Box<TokenWatch>>,
    /// For a client that authenticated with AUTH: who it proved to be, and a
    /// re-authentication under way. Boxed: few clients use it, and inline every connection
    /// would carry its SCRAM state (about 200 bytes).
    reauth: Option<Box<Reauth>>,
    /// The connection as the admin API shows it, once the session is claimed.
    info: Option<Arc<ConnectionInfo>>,
    /// Messages it published by topic, not yet handed to the broker's topic rates.
    topics: TopicTally,
    /// The largest packet it may send once connected.
    max_packet_size: u32,
    /// When the last round ran (`clock::now`, low 32 bits: only differences of under a
    /// second count): two rounds within a second make a busy connection.
    last_round: u32,
    /// When the batch of packets being handled was read (at its first PUBLISH: one clock
    /// read per batch): the publish-to-delivery latency of its messages counts from here.
    read_at: Option<corvus_core::Stamp>,
}

/// What the CONNECT phase is given: the name in the client's certificate, if the listener
/// reads one, when the CONNECT (with any AUTH exchange) must be done, and the listener's
/// shutdown (a connection that is serving hears of it through its kick slot instead).
struct Admission {
    certificate_name: Option<String>,
    deadline: Instant,
    shutdown: watch::Receiver<bool>,
}

/// A connection whose client is connected: its client id, its session, and where requests
/// to leave arrive.
struct Connected {
    client_id: ClientId,
    handle: Arc<SessionHandle>,
    kick_rx: crate::kick::KickReceiver,
}

/// Re-authentication (MQTT 5.0 section 4.12.1) of a client that authenticated with
/// SCRAM-SHA-256 at CONNECT: it must prove again to be the same user.
#[derive(Debug)]
enum Reauth {
    Proven(String),
    Running { user: String, exchange: Exchange },
}

impl<S: Transport> Task<S> {
    /// Serves the connected client until the connection ends, and ends it.
    ///
    /// This and `serve_session` are not `async fn`s: an `async fn`'s future holds its
    /// arguments twice (as given and as bound in the body) for its whole life, and these
    /// futures live as long as the connection.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn serve<'a>(&'a mut self, connected: &'a mut Connected) -> impl Future<Output = ()> + 'a {
        async move {
            let end = self.serve_session(connected).await;
            connected.kick_rx.forget_alarm(&self.broker.alarms);
            connected.handle.notify.forget_waiter();
            Box::pin(self.finish(&connected.client_id, &connected.handle, end)).await;
        }
    }

    /// Reads the CONNECT, authenticates the client and claims its session: the client id,
    /// the session, and where requests to leave arrive; `None` if the connection ends here.
    async fn connect(&mut self, admission: Box<Admission>) -> Option<Connected> {
        let Admission {
            certificate_name,
            deadline,
            mut shutdown,
        } = *admission;
        let request = Box::pin(self.read_connect(deadline, &mut shutdown)).await?;
        let identity = Box::pin(self.admit(&request, certificate_name, deadline)).await?;
        let (kick_tx, kick_rx) = crate::kick::channel();
        let handle = Box::pin(self.claim(&request, identity, kick_tx)).await?;
        debug!(peer = %self.peer, client = %request.client_id, "connected");
        Some(Connected {
            client_id: request.client_id,
            handle,
            kick_rx,
        })
    }

    /// Reads the CONNECT, which must come first [MQTT-3.1.0-1] and by `deadline`, and checks
    /// it; `None` (after answering, when there is an answer) if the connection ends here.
    async fn read_connect(
        &mut self,
        deadline: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<ConnectRequest> {
        let read = tokio::select! {
            read = timeout_at(deadline, self.io.read_packet(&self.listener.figures)) => read,
            // A shutdown does not wait for a CONNECT.
            _ = shutdown.changed() => return None,
        };
        let first = match read {
            Err(_) => {
                debug!(peer = %self.peer, "no CONNECT in time");
                return None;
            }
            Ok(Ok(Some(packet))) => packet,
            Ok(Ok(None)) | Ok(Err(ReadError::Io(_))) => return None,
            Ok(Err(ReadError::Decode(e))) => {
                info!(peer = %self.peer, error = %e, reason = %e.reason_code(), "refused connection: bad CONNECT");
                self.conn.on_decode_error(&e, &mut self.actions);
                self.flush_without_session().await;
                return None;
            }
        };
        let Packet::Connect(connect) = first else {
            info!(peer = %self.peer, "refused connection: first packet was not CONNECT");
            return None;
        };
        self.io.decoder.set_max_packet_size(self.max_packet_size);
        // Named in the log if the CONNECT is refused (as sent: it may be empty or invalid).
        let asked_id = connect.client_id.clone();
        match self.conn.on_connect(*connect, now(), generated_client_id) {
            Ok(request) => Some(request),
            Err(refusal) => {
                info!(peer = %self.peer, client = %asked_id, reason = %refusal.reason, "refused connection");
                self.send_refusal(refusal).await;
                None
            }
        }
    }

    /// Authenticates the client and hands the connection what it may do: who the client is,
    /// for people (`Identity::describe`); `None` (after sending the refusal) if it may not
    /// connect.
    async fn admit(
        &mut self,
        request: &ConnectRequest,
        certificate_name: Option<String>,
        deadline: Instant,
    ) -> Option<Arc<str>> {
        let security = self.listener.security.clone();
        let authenticated = match &request.authentication {
            Some(asked) => self.authenticate_enhanced(asked, deadline).await,
            None => {
                let credentials = Credentials {
                    username: request.username.as_ref().map(|u| u.as_str().to_owned()),
                    password: request.password.clone(),
                    certificate_name,
                };
                security
                    .authenticate(credentials, self.listener.auth)
                    .await
                    .map_err(Some)
            }
        };
        let refusal = match authenticated {
            Ok(identity) => {
                let authorizer = security.authorizer(&identity, &request.client_id, &self.broker);
                match self.conn.authorize(authorizer) {
                    Ok(()) => {
                        let described = identity.describe();
                        debug!(peer = %self.peer, client = %request.client_id, identity = %described, "authenticated");
                        match &identity {
                            Identity::Token(token) => {
                                self.token = Some(Box::new(TokenWatch::new(
                                    token.clone(),
                                    security.revocations(),
                                )));
                            }
                            Identity::User(user) if request.authentication.is_some() => {
                                self.reauth = Some(Box::new(Reauth::Proven(user.clone())));
                            }
                            _ => {}
                        }
                        return Some(described);
                    }
                    Err(refusal) => {
                        info!(peer = %self.peer, client = %request.client_id, identity = %identity.describe(), reason = %refusal.reason, "refused connection: will not authorized");
                        refusal
                    }
                }
            }
            // The client broke off the exchange, or the network did.
            Err(None) => return None,
            Err(Some(denied)) => {
                info!(peer = %self.peer, client = %request.client_id, reason = %denied.reason, why = %denied.why, "refused connection");
                self.conn.refuse(denied.reason)
            }
        };
        self.send_refusal(refusal).await;
        None
    }

    /// Runs the enhanced authentication a CONNECT asks for, before CONNACK: one AUTH round
    /// trip for SCRAM-SHA-256. `Err(None)`: the client left, broke the exchange's rules
    /// (answered already) or ran out of time; nothing more to send.
    async fn authenticate_enhanced(
        &mut self,
        asked: &Authentication,
        deadline: Instant,
    ) -> Result<Identity, Option<Denied>> {
        let security = self.listener.security.clone();
        if !security.knows_method(asked.method.as_str(), self.listener.auth) {
            return Err(Some(Denied {
                reason: ReasonCode::BadAuthenticationMethod,
                why: format!("unknown authentication method {:?}", asked.method.as_str()),
            }));
        }
        let (exchange, server_first) = security.scram_start(asked.data.as_deref())?;
        self.conn.auth_continue(server_first, &mut self.actions);
        self.flush_without_session().await;
        let answer = match timeout_at(deadline, self.io.read_packet(&self.listener.figures)).await {
            Ok(Ok(Some(packet))) => packet,
            Err(_) => {
                debug!(peer = %self.peer, user = exchange.claimed_user(), "no AUTH answer in time");
                return Err(None);
            }
            Ok(Err(ReadError::Decode(e))) => {
                info!(peer = %self.peer, client = %self.client_label(), error = %e, reason = %e.reason_code(), "refused connection: bad packet during AUTH");
                self.conn.on_decode_error(&e, &mut self.actions);
                self.flush_without_session().await;
                return Err(None);
            }
            Ok(Ok(None) | Err(ReadError::Io(_))) => return Err(None),
        };
        let data = match self.conn.on_auth_response(answer) {
            Ok(data) => data,
            // The client gave up (DISCONNECT): nothing to answer.
            Err(refusal) if refusal.connack.is_none() => {
                debug!(peer = %self.peer, client = %self.client_label(), "client left during AUTH");
                return Err(None);
            }
            Err(refusal) => {
                info!(peer = %self.peer, client = %self.client_label(), reason = %refusal.reason, "refused connection: AUTH out of sequence");
                self.send_refusal(refusal).await;
                return Err(None);
            }
        };
        let (identity, server_final) = security.scram_finish(exchange, data.as_deref())?;
        self.conn.auth_completed(Some(server_final));
        Ok(identity)
    }

    /// Claims the client's session, taking it over from another connection if needed, and
    /// completes the CONNECT.
    async fn claim(
        &mut self,
        request: &ConnectRequest,
        identity: Arc<str>,
        kick: crate::kick::Kick,
    ) -> Option<Arc<SessionHandle>> {
        let give_up = Instant::now() + TAKEOVER_WAIT;
        let info = Arc::new(ConnectionInfo::new(ConnectionFacts {
            peer: self.peer,
            listener: self.listener.figures.clone(),
            protocol: request.protocol,
            username: request.username.as_ref().map(|u| u.as_str().into()),
            identity,
            connected_at: now(),
            keep_alive: self.conn.keep_alive(),
            clean_start: request.clean_start,
        }));
        self.info = Some(info.clone());
        let (handle, existed) = loop {
            let owner = Owner {
                connection: self.id,
                kick: kick.clone(),
                info: info.clone(),
            };
            match self.broker.claim_session(&request.client_id, owner) {
                Claim::Owned { handle, existed } => break (handle, existed),
                Claim::Busy(_) if Instant::now() >= give_up => {
                    // The previous connection did not let go in time; the client may retry.
                    info!(peer = %self.peer, client = %request.client_id, reason = %ReasonCode::ServerBusy, "refused connection: session still owned by another connection");
                    let refusal = self.conn.refuse(ReasonCode::ServerBusy);
                    self.send_refusal(refusal).await;
                    return None;
                }
                Claim::Busy(previous) => {
                    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                    let evict = Evict {
                        reason: EvictReason::TakenOver,
                        done: done_tx,
                    };
                    match previous.try_send(evict) {
                        Ok(()) => {
                            let _ = tokio::time::timeout_at(give_up, done_rx).await;
                        }
                        // Already asked to leave, or leaving: give it a moment.
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }
        };
        let now = now();
        let resumable = existed && !request.clean_start && !handle.lock().is_expired(now);
        if existed && !resumable {
            self.broker.reset_session(&handle, now);
        }
        let ticket = {
            let mut session = handle.lock();
            self.conn
                .accept(request, &mut session, resumable, now, &mut self.actions);
            // The session's record (or its end, when it no longer outlives the connection),
            // before the CONNACK goes out; and a re-send too large for this connection is
            // dropped and counted.
            let record = handle.record_op(&session);
            self.broker
                .settle_with(&mut session, record.into_iter().collect())
        };
        self.need(ticket);
        self.execute(&handle);
        Some(handle)
    }

    /// Serves the connected client until the connection is to end, and says why.
    fn serve_session<'a>(
        &'a mut self,
        connected: &'a mut Connected,
    ) -> impl Future<Output = End> + 'a {
        let Connected {
            handle, kick_rx, ..
        } = connected;
        async move {
            loop {
                // Everything already buffered is handled before waiting again.
                let mut published = 0;
                self.read_at = None;
                loop {
                    match self.io.decoder.decode(&mut self.io.read_buf) {
                        Ok(Some(packet)) => {
                            if let Packet::Publish(publish) = &packet {
                                self.read_at.get_or_insert_with(crate::clock::stamp);
                                published += 1;
                                self.broker
                                    .metrics
                                    .count_publish_received(publish.qos, publish.payload.len());
                            }
                            let now = now();
                            let ticket = {
                                let mut session = handle.lock();
                                self.conn
                                    .on_packet(packet, &mut session, now, &mut self.actions);
                                // A refused PUBLISH is counted against this session.
                                self.broker.settle(&mut session)
                            };
                            self.need(ticket);
                            self.execute(handle);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            info!(peer = %self.peer, client = %self.client_label(), error = %e, reason = %e.reason_code(), "closing connection: bad packet");
                            self.conn.on_decode_error(&e, &mut self.actions);
                            self.execute(handle);
                            break;
                        }
                    }
                    if self.conn.is_closed() {
                        break;
                    }
                }
                if let (1.., Some(info)) = (published, &self.info) {
                    info.count_received(u64::from(published));
                }
                // After a batch, or when the timer below woke the task for it.
                if !self.topics.is_empty() {
                    let now = now();
                    if self.topics.is_due(now) {
                        self.broker.topic_rates.absorb(&mut self.topics, now);
                    }
                }
                if let (Some(rate), 1..) = (&mut self.rate, published) {
                    let now = std::time::Instant::now();
                    rate.record(published, now);
                    if rate.over_for_too_long(now) {
                        info!(peer = %self.peer, client = %self.client_label(), reason = %ReasonCode::MessageRateTooHigh, "closing connection: message rate too high");
                        self.conn.protocol_error(
                            ReasonCode::MessageRateTooHigh,
                            "message rate too high",
                            &mut self.actions,
                        );
                        self.execute(handle);
                    }
                }
                let more = self.fill_outgoing(handle);
                self.release_held();
                // Every round, also when the next one comes without a wait (`more`).
                let throttled = self.set_alarm(kick_rx);
                // A client that stopped reading must not hold up its leaving, nor outlive its
                // keep alive or its token: the flush watches the kick slot and the alarm.
                loop {
                    let flushed = std::future::poll_fn(|cx| {
                        if let Poll::Ready(leave) = kick_rx.poll_recv(cx) {
                            return Poll::Ready(Flushed::Leave(leave));
                        }
                        if kick_rx.poll_alarm(cx).is_ready() {
                            return Poll::Ready(Flushed::Alarm);
                        }
                        self.io
                            .poll_flush(cx, &self.listener.figures)
                            .map(Flushed::Done)
                    })
                    .await;
                    match flushed {
                        Flushed::Leave(leave) => return End::from(leave),
                        Flushed::Done(Err(_)) => return End::Network,
                        Flushed::Done(Ok(())) => break,
                        Flushed::Alarm => {
                            self.on_alarm(handle);
                            // What is still unwritten is given the close's short grace (`finish`).
                            if self.conn.is_closed() {
                                return End::Protocol;
                            }
                            // It rang for something else (buffers, the tally): set it again.
                            self.set_alarm(kick_rx);
                        }
                    }
                }
                if self.conn.is_closed() {
                    return End::Protocol;
                }
                if more {
                    continue;
                }
                // While the store is behind, clients are not read: backpressure instead of memory.
                let backlogged = self.broker.store().is_some_and(|s| s.is_backlogged());
                let reading = !backlogged && !throttled;
                // What few connections wait for (a token's revocation, the store) is waited for
                // in a boxed future, so the common wait is all an idle connection's task carries.
                let woken = if backlogged
                    || self.token.is_some()
                    || !self.held.is_empty()
                    || self.loading.is_some()
                {
                    let wait = Wait {
                        reading,
                        backlogged,
                    };
                    Box::pin(self.wait_any(handle, kick_rx, wait)).await
                } else {
                    let figures = &self.listener.figures;
                    wait::common(&mut self.io, figures, &handle.notify, kick_rx, reading).await
                };
                match woken {
                    Woken::Read(Ok(0) | Err(_)) => return End::Network,
                    Woken::Read(Ok(_)) | Woken::Messages | Woken::Durable | Woken::Backlog => {}
                    Woken::Alarm => self.on_alarm(handle),
                    Woken::Revoked => self.close_unauthorized(handle, "token revoked"),
                    Woken::Bodies(bodies) => {
                        self.loading = None;
                        let mut session = handle.lock();
                        session.load_bodies(bodies);
                        // Bodies the store lost are finished and counted.
                        let ticket = self.broker.settle(&mut session);
                        drop(session);
                        self.need(ticket);
                    }
                    Woken::Leave(leave) => return End::from(leave),
                }
            }
        }
    }

    /// Sets the connection's alarm (`alarms.rs`) for whatever comes first: the keep alive
    /// running out, the token expiring, the topic tally due, the end of a throttle, or the
    /// time to give idle buffers back. True while the client is throttled (beyond its
    /// message rate, it is not read until back within it).
    fn set_alarm(&mut self, kick_rx: &crate::kick::KickReceiver) -> bool {
        let now = now();
        let throttled = self
            .rate
            .as_mut()
            .map_or(Duration::ZERO, |r| r.wait(std::time::Instant::now()));
        let throttle_end = (!throttled.is_zero()).then(|| now + throttled.as_millis() as u64);
        // A busy connection (its rounds come within a second) keeps its buffers until a
        // second after its last round, so it does not make them again for every message;
        // any other gives them back at once (a PINGREQ now and then, a storm of CONNECTs).
        let round = now as u32;
        let busy = u64::from(round.wrapping_sub(self.last_round)) < BUFFERS_KEPT_IDLE;
        self.last_round = round;
        if !busy {
            self.release_empty_buffers();
        }
        let release_buffers = self.holds_buffers().then_some(now + BUFFERS_KEPT_IDLE);
        let at = [
            self.conn.keep_alive_deadline(),
            self.token.as_ref().map(|t| t.expires()),
            // A client that published and went quiet still hands its tally over in time.
            self.topics.due_at(),
            throttle_end,
            release_buffers,
        ]
        .into_iter()
        .flatten()
        .min();
        kick_rx.set_alarm(&self.broker.alarms, at);
        throttle_end.is_some()
    }

    fn holds_buffers(&self) -> bool {
        self.actions.capacity() > 0 || self.io.holds_buffers()
    }

    /// The alarm rang: closes the connection if its token expired or its keep alive ran
    /// out (on the core's clock, as the core keeps the keep alive), and gives back empty
    /// buffers. The tally due and the throttle's end are the next round's.
    fn on_alarm(&mut self, handle: &SessionHandle) {
        let now = now();
        if self.token.as_ref().is_some_and(|t| now >= t.expires()) {
            self.close_unauthorized(handle, "token expired");
        } else if self.conn.keep_alive_deadline().is_some_and(|at| now >= at) {
            info!(peer = %self.peer, client = %self.client_label(), reason = %ReasonCode::KeepAliveTimeout, "closing connection: keep alive timeout");
            self.conn.on_keep_alive_timeout(&mut self.actions);
            self.execute(handle);
        } else {
            // Quiet for a second: what a burst grew is given back.
            self.release_empty_buffers();
        }
    }

    fn release_empty_buffers(&mut self) {
        if self.actions.is_empty() {
            self.actions = Vec::new();
        }
        self.io.release_empty_buffers();
    }

    /// The client id for logs (empty before CONNECT is read).
    fn client_label(&self) -> &str {
        self.conn.client_id().map_or("", |id| id.as_ref())
    }

    /// The client's token no longer holds: DISCONNECT 0x87 and close.
    fn close_unauthorized(&mut self, handle: &SessionHandle, why: &str) {
        info!(peer = %self.peer, client = %self.client_label(), reason = %ReasonCode::NotAuthorized, "closing connection: {why}");
        self.conn
            .protocol_error(ReasonCode::NotAuthorized, why, &mut self.actions);
        self.execute(handle);
    }

    /// Turns queued messages into packets; true if more are waiting. When the queue waits
    /// for bodies in the store, asks the store for the next window of them.
    fn fill_outgoing(&mut self, handle: &SessionHandle) -> bool {
        let (more, ticket, wanted) = {
            let mut session = handle.lock();
            let more =
                self.conn
                    .fill_outgoing(&mut session, now(), WRITE_BUDGET, &mut self.actions);
            let wanted = match self.loading {
                None => session.bodies_wanted(LOAD_WINDOW, LOAD_BYTES),
                Some(_) => Vec::new(),
            };
            (more, self.broker.settle(&mut session), wanted)
        };
        if let (false, Some(store)) = (wanted.is_empty(), self.broker.store()) {
            self.loading = Some(store.read_bodies(wanted));
        }
        self.need(ticket);
        self.execute(handle);
        // The copies sent for the first time are encoded now (under sync `always`, into the
        // output held for the disk): their latency ends here.
        self.broker
            .metrics
            .observe_deliveries(self.conn.sent_stamps(), crate::clock::stamp);
        more
    }

    /// Everything sent from now on waits for `ticket` to be durable (sync `always`).
    fn need(&mut self, ticket: Option<Ticket>) {
        if let (Some(ticket), Some(_)) = (ticket, self.waits_for_disk()) {
            self.needed = self.needed.max(ticket);
        }
    }

    /// The store, when acknowledgements wait for it (sync `always`).
    fn waits_for_disk(&self) -> Option<&corvus_store::Store> {
        waits_for_disk(&self.broker)
    }

    /// Moves output whose store batch is durable to the write buffer.
    fn release_held(&mut self) {
        if !self.held.is_empty() {
            let durable = durable_ticket(&self.broker);
            self.held.release(durable, &mut self.io.write_buf);
        }
    }

    /// Ends the connection: tells the client why where the protocol allows, settles the
    /// session and the will, and lets a waiting successor go on.
    async fn finish(&mut self, client: &ClientId, handle: &Arc<SessionHandle>, end: End) {
        let mut successor = None;
        match end {
            End::Evicted(Evict {
                reason: EvictReason::TakenOver,
                done,
            }) => {
                info!(peer = %self.peer, client = %client, reason = %ReasonCode::SessionTakenOver, "session taken over by a new connection");
                self.conn.on_taken_over(&mut self.actions);
                successor = Some(done);
            }
            End::Evicted(Evict {
                reason: EvictReason::Administrator,
                done,
            }) => {
                info!(peer = %self.peer, client = %client, reason = %ReasonCode::AdministrativeAction, "closing connection: disconnected by an administrator");
                self.conn.protocol_error(
                    ReasonCode::AdministrativeAction,
                    "disconnected by an administrator",
                    &mut self.actions,
                );
                successor = Some(done);
            }
            End::Shutdown => self.conn.on_shutdown(&mut self.actions),
            End::Network | End::Protocol => {}
        }
        self.execute(handle);
        if let (Some(wanted), Some(store)) = (self.held.last_ticket(), self.waits_for_disk()) {
            let mut durable = store.durable();
            let _ = timeout(HELD_GRACE, durable.wait_for(|&d| d >= wanted)).await;
            self.release_held();
        }
        let _ = timeout(
            Duration::from_secs(1),
            self.io.flush(&self.listener.figures),
        )
        .await;
        let now = now();
        // The session is settled (offline, will published or pending, ended if it expires
        // with the connection) before the client sees the close, so whatever it does next
        // finds the session as it should be.
        let closed = {
            let mut session = handle.lock();
            let closed = self.conn.on_closed(&mut session, now);
            let record = if closed.session_ended {
                None // `end_session` deletes it.
            } else {
                handle.record_op(&session)
            };
            self.broker
                .settle_with(&mut session, record.into_iter().collect());
            closed
        };
        self.broker.release_session(handle, self.id);
        if let Some(will) = closed.will {
            self.broker.publish(will, None, now);
        }
        if closed.session_ended {
            self.broker.end_session(client, handle, now);
        }
        if !self.topics.is_empty() {
            self.broker.topic_rates.absorb(&mut self.topics, now);
        }
        let _ = timeout(Duration::from_secs(1), self.io.stream.shutdown()).await;
        if let Some(done) = successor {
            let _ = done.send(());
        }
    }

    /// Carries out the actions the state machine produced, in order.
    fn execute(&mut self, handle: &SessionHandle) {
        let client = self.conn.client_id().cloned();
        let version = self.conn.version();
        let mut actions = std::mem::take(&mut self.actions);
        let mut reauth_steps = Vec::new();
        // PUBLISH packets written, counted for the connection once per call.
        let mut sent = 0;
        for action in actions.drain(..) {
            match action {
                Action::Send(packet) => {
                    let broker = &self.broker;
                    let buf = self.held.buffer(
                        self.needed,
                        || durable_ticket(broker),
                        &mut self.io.write_buf,
                    );
                    encode(&packet, version, buf, &self.broker.metrics);
                    sent += u64::from(matches!(packet, Packet::Publish(_)));
                }
                Action::Publish {
                    mut message,
                    receipt,
                } => {
                    // The core made the `Arc` just now and shares it with nobody; if it ever
                    // did, the message would go untimed rather than be copied.
                    if let (Some(at), Some(fresh)) = (self.read_at, Arc::get_mut(&mut message)) {
                        fresh.received_at = Some(at);
                    }
                    self.topics.record(&message.topic);
                    let receipt = receipt
                        .zip(client.clone())
                        .map(|(packet_id, client)| Receipt { client, packet_id });
                    let routed = self.broker.publish(message, receipt, now());
                    self.need(routed.ticket);
                }
                Action::Subscribe { filter, entry } => {
                    if let Some(client) = &client {
                        self.broker.subscribe(client, &filter, entry);
                    }
                }
                Action::Unsubscribe { filter } => {
                    if let Some(client) = &client {
                        self.broker.unsubscribe(client, &filter);
                    }
                }
                Action::SendRetained { filter, entry } => {
                    let ticket = self.broker.send_retained(handle, &filter, &entry, now());
                    self.need(ticket);
                }
                Action::Authenticate { data } => reauth_steps.push(data),
                Action::Close => {}
            }
        }
        // The vector keeps its capacity for the next call.
        self.actions = actions;
        if let (1.., Some(info)) = (sent, &self.info) {
            info.count_sent(sent);
        }
        if !reauth_steps.is_empty() {
            for data in reauth_steps {
                self.reauthenticate(data);
            }
            // Only packets (AUTH, DISCONNECT) and Close come of it.
            self.execute(handle);
        }
    }

    /// A step of re-authentication (the core checked its sequence: a first message when
    /// nothing runs, the proof when an exchange does): answers it, or disconnects the client
    /// (0x87) if it does not prove to be the user it was.
    fn reauthenticate(&mut self, data: Option<bytes::Bytes>) {
        let security = self.listener.security.clone();
        let failure = match self.reauth.take().map(|r| *r) {
            Some(Reauth::Proven(user)) => match security.scram_start(data.as_deref()) {
                Ok((exchange, server_first)) => {
                    self.conn.auth_continue(server_first, &mut self.actions);
                    self.reauth = Some(Box::new(Reauth::Running { user, exchange }));
                    return;
                }
                Err(denied) => denied.why,
            },
            Some(Reauth::Running { user, exchange }) => {
                match security.scram_finish(exchange, data.as_deref()) {
                    Ok((Identity::User(proven), server_final)) if proven == user => {
                        debug!(peer = %self.peer, client = %self.client_label(), user = %user, "re-authenticated");
                        self.conn
                            .reauth_succeeded(Some(server_final), &mut self.actions);
                        self.reauth = Some(Box::new(Reauth::Proven(user)));
                        return;
                    }
                    Ok((identity, _)) => format!(
                        "proved to be {} instead of user {user:?}",
                        identity.describe()
                    ),
                    Err(denied) => denied.why,
                }
            }
            // The core asks only of a client whose CONNECT named a method, and this broker
            // admits those only through SCRAM (which sets `reauth`).
            None => "no authentication method in use".into(),
        };
        info!(peer = %self.peer, client = %self.client_label(), reason = %ReasonCode::NotAuthorized, why = %failure, "closing connection: re-authentication failed");
        self.conn.auth_failed(&mut self.actions);
    }

    /// Sends a refused CONNECT its CONNACK (if it gets one).
    async fn send_refusal(&mut self, refusal: corvus_core::Refusal) {
        self.actions
            .extend(refusal.connack.map(|p| Action::Send(*p)));
        self.flush_without_session().await;
    }

    /// Before a session exists only packets can result (CONNACK refusals): writes them out.
    async fn flush_without_session(&mut self) {
        let version = self.conn.version();
        for action in self.actions.drain(..) {
            if let Action::Send(packet) = action {
                encode(
                    &packet,
                    version,
                    &mut self.io.write_buf,
                    &self.broker.metrics,
                );
            }
        }
        let _ = self.io.flush(&self.listener.figures).await;
    }
}

/// The broker's store, when acknowledgements wait for it (sync `always`).
fn waits_for_disk(broker: &Broker) -> Option<&corvus_store::Store> {
    let store = broker.store()?;
    store.acks_wait_for_sync().then_some(&**store)
}

/// The highest durable ticket; everything is, when acknowledgements do not wait.
fn durable_ticket(broker: &Broker) -> Ticket {
    waits_for_disk(broker).map_or(Ticket::MAX, |store| store.durable_ticket())
}

fn encode(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut, metrics: &Metrics) {
    match packet.encode(version, buf) {
        Ok(()) => match packet {
            Packet::Publish(publish) => {
                metrics.count_publish_sent(publish.qos, publish.payload.len())
            }
            Packet::Disconnect(disconnect) => metrics.count_disconnect(disconnect.reason_code),
            Packet::ConnAck(ack) if !ack.reason_code.is_success() => {
                metrics.count_refused_connect(ack.reason_code)
            }
            _ => {}
        },
        // Every packet the broker builds is valid by construction; this would be a bug.
        Err(e) => tracing::error!(error = %e, "could not encode an outgoing packet"),
    }
}

/// A client identifier for a client that sent none: unique within this broker's lifetime.
fn generated_client_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "corvus-{:x}-{}",
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sources::SourceLimits;

    /// What every connection carries for its whole life, mostly while it waits: the task's
    /// future (tokio allocates it in a cell of 96 bytes more, in steps of 128), the session
    /// handle, the admin API's record and the kick slot. Growing one is a memory regression
    /// for every connection (docs/benchmarks.md, "Profiling notes"); these bounds are what
    /// an idle connection costs now, about 2 kB in all.
    #[tokio::test]
    async fn a_connection_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let config = Arc::new(corvus_core::BrokerConfig::default());
        let limits = ConnectionLimits {
            config: config.clone(),
            message_rate: None,
            connect_timeout: Duration::from_secs(10),
        };
        let shared = Arc::new(ListenerShared {
            broker: Arc::new(Broker::new((*config).clone())),
            security: Arc::new(Security::load(&Config::default()).unwrap()),
            auth: ListenerAuth {
                anonymous: true,
                cert_identity: None,
            },
            limits: RwLock::new(limits.clone()),
            figures: Arc::new(ListenerFigures::new(addr, "mqtt")),
        });
        let sources = SourceLimits::new(0, 0);
        let accepted = Accepted {
            peer: addr,
            certificate_name: None,
            slot: sources.admit(addr.ip(), std::time::Instant::now()).unwrap(),
            limits,
        };
        let (_stop, shutdown) = watch::channel(false);
        let connection = serve(stream, accepted, shared, Duration::from_secs(10), shutdown);
        let future = std::mem::size_of_val(&connection);
        // 672 + 96 is the cell of 768 bytes (6 steps of 128).
        assert!(future <= 672, "a connection's future is {future} bytes");
        // The shared pieces are allocated with the `Arc`'s 16 bytes and the allocator's 8,
        // in steps of 16.
        let session = std::mem::size_of::<SessionHandle>();
        assert!(session <= 336, "a session handle is {session} bytes");
        let info = std::mem::size_of::<ConnectionInfo>();
        assert!(info <= 104, "a connection's info is {info} bytes");
        let kick = std::mem::size_of::<crate::kick::Slot>();
        assert!(kick <= 80, "a kick slot is {kick} bytes");
    }
}
