//! Interoperability with Eclipse Paho's Python client (paho-mqtt 2.x), talking to the real
//! `corvus` binary over TCP, for MQTT 3.1.1 and 5.0.
//!
//! Each test runs a small Python script (`python3 -c`): the prelude below plus the test's
//! body. A script exits 0 on success, or prints "FAIL: why" and exits nonzero; it stops
//! itself after `CORVUS_SCRIPT_TIMEOUT` seconds, and the harness kills it after its own limit.
//!
//! Skipped when python3 or paho-mqtt is missing, unless CORVUS_INTEROP=1 (CI) requires them.
//! Install: `pip install 'paho-mqtt>=2,<3'`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Broker, Proc};

const TOOL: &str = "python3 with paho-mqtt 2.x";
/// The script's own limit, in seconds; the harness allows a little more.
const SCRIPT_SECONDS: u64 = 30;

/// Helpers every script starts with: a watchdog, `fail`/`check`, and `Client`, a paho client
/// on its own network thread whose acknowledgements and messages can be waited for.
const PRELUDE: &str = r#"
import os, queue, sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = os.environ["CORVUS_HOST"]
PORT = int(os.environ["CORVUS_PORT"])
LIMIT = float(os.environ["CORVUS_SCRIPT_TIMEOUT"])
WAIT = 10.0
V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5
PROTOCOL = V5 if os.environ.get("CORVUS_PROTOCOL") == "5" else V311

def fail(message):
    print("FAIL: " + message, file=sys.stderr, flush=True)
    os._exit(1)

def check(condition, message):
    if not condition:
        fail(message)

def _watchdog():
    print("FAIL: script timed out after %.0fs" % LIMIT, file=sys.stderr, flush=True)
    os._exit(2)

_timer = threading.Timer(LIMIT, _watchdog)
_timer.daemon = True
_timer.start()

def get(q, what, timeout=WAIT):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        fail("timed out waiting for " + what)

def publish_props(**fields):
    p = Properties(PacketTypes.PUBLISH)
    for name, value in fields.items():
        setattr(p, name, value)
    return p

class Client:
    def __init__(self, client_id, protocol=None, clean=True, session_expiry=None, keepalive=30,
                 connect_properties=None):
        self.name = client_id or "(no id)"
        self.protocol = PROTOCOL if protocol is None else protocol
        self.messages = queue.Queue()
        self._connacks = queue.Queue()
        self._subacks = queue.Queue()
        self._unsubacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.closing = False
        # Set when the test expects the broker to close the connection.
        self.may_drop = False
        extra = {"clean_session": clean} if self.protocol == V311 else {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=self.protocol, reconnect_on_failure=False, **extra)
        self.c.on_connect = lambda c, u, flags, rc, p: self._connacks.put((flags, rc, p))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self._subacks.put((mid, rcs))
        self.c.on_unsubscribe = lambda c, u, mid, rcs, p: self._unsubacks.put((mid, rcs))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_disconnect = self._on_disconnect
        connect = {}
        if self.protocol == V5:
            p = Properties(PacketTypes.CONNECT)
            if session_expiry is not None:
                p.SessionExpiryInterval = session_expiry
            for name, value in (connect_properties or {}).items():
                setattr(p, name, value)
            connect = {"clean_start": clean, "properties": p}
        self.c.connect(HOST, PORT, keepalive=keepalive, **connect)
        self.c.loop_start()
        flags, rc, p = get(self._connacks, self.name + ": CONNACK")
        check(not rc.is_failure, "%s: connection refused: %s" % (self.name, rc))
        self.session_present = bool(flags.session_present)
        self.connack_properties = p

    def _on_disconnect(self, c, u, flags, rc, p):
        if not (self.closing or self.may_drop):
            fail("%s: disconnected unexpectedly: %s" % (self.name, rc))
        self.disconnects.put((rc, p))

    def subscribe(self, topic, qos=0, options=None, properties=None):
        """Subscribes and returns the granted QoS (or reason code) values."""
        kwargs = {"properties": properties}
        if options is not None:
            kwargs["options"] = options
        else:
            kwargs["qos"] = qos
        result, mid = self.c.subscribe(topic, **kwargs)
        check(result == mqtt.MQTT_ERR_SUCCESS, "%s: subscribe: %s" % (self.name, result))
        got, rcs = get(self._subacks, "%s: SUBACK for %s" % (self.name, topic))
        check(got == mid, "%s: SUBACK for %s, expected %s" % (self.name, got, mid))
        return [rc.value for rc in rcs]

    def unsubscribe(self, topic):
        result, mid = self.c.unsubscribe(topic)
        check(result == mqtt.MQTT_ERR_SUCCESS, "%s: unsubscribe: %s" % (self.name, result))
        got, rcs = get(self._unsubacks, "%s: UNSUBACK for %s" % (self.name, topic))
        check(got == mid, "%s: UNSUBACK for %s, expected %s" % (self.name, got, mid))
        return rcs

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes and waits until it is complete (sent, PUBACK or PUBCOMP)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(WAIT)
        check(info.is_published(), "%s: publish to %r not acknowledged" % (self.name, topic))

    def expect(self, n, what="messages"):
        return [get(self.messages, "%s: %s (%d of %d)" % (self.name, what, i + 1, n))
                for i in range(n)]

    def expect_until(self, topic, what="messages"):
        """Messages up to and including the first on `topic`."""
        got = []
        while not got or got[-1].topic != topic:
            got.append(get(self.messages, "%s: %s until %s" % (self.name, what, topic)))
        return got

    def close(self):
        self.closing = True
        self.c.disconnect()
        self.c.loop_stop()
"#;

/// The command that runs the prelude and `body` against `broker`; `protocol` is "311" or
/// "5" (the scripts' default PROTOCOL).
fn script(broker: &Broker, protocol: &str, body: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(format!(
            "{PRELUDE}\n{body}\nprint('ok', flush=True)\nos._exit(0)\n"
        ))
        .env("CORVUS_HOST", broker.host())
        .env("CORVUS_PORT", broker.port())
        .env("CORVUS_PROTOCOL", protocol)
        .env("CORVUS_SCRIPT_TIMEOUT", SCRIPT_SECONDS.to_string())
        .env("PYTHONUNBUFFERED", "1");
    cmd
}

/// The harness's limit for a script: a little more than the script's own.
const HARNESS_LIMIT: Duration = Duration::from_secs(SCRIPT_SECONDS + 10);

/// Runs the prelude and `body` against `broker` and asserts that it succeeded.
fn run_script(test: &str, broker: &Broker, protocol: &str, body: &str) {
    let out = support::run(test, &mut script(broker, protocol, body), HARNESS_LIMIT);
    assert!(
        out.success(),
        "paho script for {test} ({protocol}) failed: {out}"
    );
}

fn runs(test: &str) -> bool {
    support::require(test, TOOL, support::have_paho())
}

/// QoS 0, 1 and 2 both ways (subscription QoS caps delivery), binary, empty and large
/// payloads, a UTF-8 topic, wildcards (and `$` topics out of their reach), and unsubscribe.
const QOS_SCRIPT: &str = r##"
sub = Client("paho-sub")
check(sub.subscribe("paho/#", 2) == [2], "granted QoS for paho/#")
check(sub.subscribe("sentinel/#", 1) == [1], "granted QoS for sentinel/#")
capped = Client("paho-capped")
check(capped.subscribe("paho/#", 1) == [1], "granted QoS 1")
pub = Client("paho-pub")

sent = []
for qos in (0, 1, 2):
    sent.append(("paho/qos%d" % qos, ("payload at qos %d" % qos).encode(), qos))
sent.append(("paho/binary", bytes(range(256)), 1))
sent.append(("paho/empty", b"", 1))
sent.append(("paho/large", os.urandom(200 * 1024), 2))
sent.append(("paho/ünïcödé/✓", "ünïcödé ✓".encode(), 1))
for topic, payload, qos in sent:
    pub.publish(topic, payload, qos)

# Sorted by topic: paho hands a QoS 2 message over only at PUBREL.
def received(client):
    return sorted((m.topic, m.payload, m.qos, m.retain) for m in client.expect(len(sent)))
want = sorted((t, p, q, False) for t, p, q in sent)
got = received(sub)
check(got == want, "QoS 2 subscriber got %r" % [(t, len(p), q, r) for t, p, q, r in got])
want = sorted((t, p, min(q, 1), False) for t, p, q in sent)
got = received(capped)
check(got == want, "QoS 1 subscriber got %r" % [(t, len(p), q, r) for t, p, q, r in got])

# Wildcards: + is one level, # any; neither matches topics starting with $ [MQTT-4.7.2-1].
everything = Client("paho-everything")
check(everything.subscribe("#", 1) == [1], "subscribe #")
plus = Client("paho-plus")
check(plus.subscribe("+/x", 1) == [1], "subscribe +/x")
check(plus.subscribe("zz", 1) == [1], "subscribe zz")
for topic in ("$app/x", "a/x", "a/b/x", "zz"):
    pub.publish(topic, topic.encode(), 1)
got = [m.topic for m in everything.expect_until("zz")]
check(got == ["a/x", "a/b/x", "zz"], "# got %r" % got)
got = [m.topic for m in plus.expect_until("zz")]
check(got == ["a/x", "zz"], "+/x got %r" % got)
everything.close()
plus.close()

sub.unsubscribe("paho/#")
pub.publish("paho/after", b"must not arrive", 1)
pub.publish("sentinel/x", b"sentinel", 1)
got = [m.topic for m in sub.expect_until("sentinel/x")]
check(got == ["sentinel/x"], "after unsubscribing got %r" % got)
for c in (sub, capped, pub):
    c.close()
"##;

#[test]
fn paho_v311_qos_payloads_unsubscribe() {
    let test = "paho_v311_qos_payloads_unsubscribe";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "311", QOS_SCRIPT);
}

#[test]
fn paho_v5_qos_payloads_unsubscribe() {
    let test = "paho_v5_qos_payloads_unsubscribe";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", QOS_SCRIPT);
}

/// MQTT 5 request/response: user properties (order and duplicates kept), response topic,
/// correlation data, content type, payload format and message expiry reach the responder,
/// with its subscription identifier; the response finds its way back by them.
const V5_REQUEST_RESPONSE_SCRIPT: &str = r#"
requester = Client("paho-requester")
responder = Client("paho-responder")
check(requester.subscribe("resp/paho-requester", 1) == [1], "requester subscribe")
sp = Properties(PacketTypes.SUBSCRIBE)
sp.SubscriptionIdentifier = 7
check(responder.subscribe("req/#", 2, properties=sp) == [2], "responder subscribe")

user = [("a", "1"), ("a", "2"), ("b", "ü")]
correlation = b"\x00\x01corr\xff"
requester.publish("req/time", b'{"q": 1}', 1, properties=publish_props(
    ResponseTopic="resp/paho-requester", CorrelationData=correlation, UserProperty=user,
    ContentType="application/json", PayloadFormatIndicator=1, MessageExpiryInterval=300))

(request,) = responder.expect(1, "request")
p = request.properties
check(request.topic == "req/time" and request.payload == b'{"q": 1}', "request %r" % request.payload)
check(request.qos == 1, "request QoS %d" % request.qos)
check(getattr(p, "ResponseTopic", None) == "resp/paho-requester", "response topic %r" % p)
check(getattr(p, "CorrelationData", None) == correlation, "correlation data %r" % p)
check(getattr(p, "UserProperty", None) == user, "user properties %r" % p)
check(getattr(p, "ContentType", None) == "application/json", "content type %r" % p)
check(getattr(p, "PayloadFormatIndicator", None) == 1, "payload format %r" % p)
expiry = getattr(p, "MessageExpiryInterval", None)
check(expiry is not None and 290 <= expiry <= 300, "message expiry %r" % expiry)
check(getattr(p, "SubscriptionIdentifier", None) == [7], "subscription identifier %r" % p)

responder.publish(p.ResponseTopic, b"noon", 2, properties=publish_props(
    CorrelationData=p.CorrelationData))
(response,) = requester.expect(1, "response")
check(response.payload == b"noon", "response %r" % response.payload)
check(getattr(response.properties, "CorrelationData", None) == correlation,
      "response correlation %r" % response.properties)
check(not hasattr(response.properties, "SubscriptionIdentifier"),
      "no subscription identifier was asked for: %r" % response.properties)
requester.close()
responder.close()
"#;

#[test]
fn paho_v5_request_response_properties() {
    let test = "paho_v5_request_response_properties";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", V5_REQUEST_RESPONSE_SCRIPT);
}

/// Message expiry: an expired retained message is not delivered, a live one is, with its
/// remaining interval; a queued message for an offline session expires too.
const V5_EXPIRY_SCRIPT: &str = r#"
pub = Client("paho-pub")
pub.publish("exp/short", b"short lived", 1, retain=True,
            properties=publish_props(MessageExpiryInterval=1))
pub.publish("exp/long", b"long lived", 1, retain=True,
            properties=publish_props(MessageExpiryInterval=300))
away = Client("paho-away", session_expiry=300)
away.subscribe("queued/#", 1)
away.close()
pub.publish("queued/short", b"short lived", 1, properties=publish_props(MessageExpiryInterval=1))
pub.publish("queued/long", b"long lived", 1, properties=publish_props(MessageExpiryInterval=300))
time.sleep(2.2)

late = Client("paho-late")
late.subscribe("exp/#", 1)
# Retained messages are queued at SUBSCRIBE, before this one.
pub.publish("exp/zz", b"sentinel", 1)
got = late.expect_until("exp/zz")
check([(m.topic, m.retain) for m in got] == [("exp/long", True), ("exp/zz", False)],
      "after expiry got %r" % [(m.topic, m.retain) for m in got])
expiry = getattr(got[0].properties, "MessageExpiryInterval", None)
check(expiry is not None and 290 <= expiry < 300, "remaining expiry %r" % expiry)
check(not hasattr(got[1].properties, "MessageExpiryInterval"), "sentinel has no expiry")

back = Client("paho-away", clean=False, session_expiry=300)
check(back.session_present, "session present after reconnecting")
pub.publish("queued/zz", b"sentinel", 1)
got = [m.topic for m in back.expect_until("queued/zz")]
check(got == ["queued/long", "queued/zz"], "queued while away got %r" % got)
for c in (pub, late, back):
    c.close()
"#;

#[test]
fn paho_v5_message_expiry() {
    let test = "paho_v5_message_expiry";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", V5_EXPIRY_SCRIPT);
}

/// Shared subscriptions: each message goes to exactly one member of the group, both
/// members get some; an ordinary subscriber gets every message; No Local keeps a client's
/// own messages from it; topic aliases from the client are resolved; an empty client
/// identifier is assigned one; a client's Maximum Packet Size is respected.
const V5_SHARED_SCRIPT: &str = r#"
workers = [Client("paho-worker-1"), Client("paho-worker-2")]
for w in workers:
    check(w.subscribe("$share/workers/jobs/#", 1) == [1], "shared subscribe")
watcher = Client("paho-watcher")
check(watcher.subscribe("jobs/#", 1) == [1], "plain subscribe")
pub = Client("paho-pub")
n = 20
for i in range(n):
    pub.publish("jobs/%d" % i, b"job %d" % i, 1)

everything = sorted(m.payload for m in watcher.expect(n))
check(everything == sorted(b"job %d" % i for i in range(n)), "watcher got %r" % everything)
got = {0: [], 1: []}
deadline = time.time() + WAIT
while len(got[0]) + len(got[1]) < n and time.time() < deadline:
    for i, w in enumerate(workers):
        try:
            got[i].append(w.messages.get(timeout=0.05).payload)
        except queue.Empty:
            pass
time.sleep(0.3)
for i, w in enumerate(workers):
    while not w.messages.empty():
        got[i].append(w.messages.get().payload)
both = sorted(got[0] + got[1])
check(both == sorted(b"job %d" % i for i in range(n)),
      "the group got %d messages, %d distinct" % (len(both), len(set(both))))
check(got[0] and got[1], "both members get messages: %d and %d" % (len(got[0]), len(got[1])))

# No Local: the publisher's own subscription does not get its message back.
check(pub.subscribe("mine/#", options=SubscribeOptions(qos=1, noLocal=True)) == [1], "no local")
check(pub.subscribe("theirs/#", 1) == [1], "theirs")
pub.publish("mine/x", b"own message", 1)
watcher.publish("theirs/x", b"sentinel", 1)
got = [m.topic for m in pub.expect_until("theirs/x")]
check(got == ["theirs/x"], "No Local subscriber got %r" % got)

# Topic aliases towards the broker: topic and alias once, then the alias alone.
aliased = Client("paho-aliased")
maximum = getattr(aliased.connack_properties, "TopicAliasMaximum", 0)
check(maximum >= 1, "broker allows topic aliases: %r" % aliased.connack_properties)
check(watcher.subscribe("alias/#", 1) == [1], "alias subscribe")
aliased.publish("alias/long/topic/name", b"first", 1, properties=publish_props(TopicAlias=1))
aliased.publish("", b"second", 1, properties=publish_props(TopicAlias=1))
got = [(m.topic, m.payload) for m in watcher.expect(2)]
check(got == [("alias/long/topic/name", b"first"), ("alias/long/topic/name", b"second")],
      "aliased messages arrived as %r" % got)

# Maximum Packet Size from the client: a larger message is not sent to it [MQTT-3.1.2-24].
small = Client("paho-small", connect_properties={"MaximumPacketSize": 256})
check(small.subscribe("size/#", 1) == [1], "subscribe size/#")
watcher.publish("size/big", b"x" * 1000, 1)
watcher.publish("size/small", b"fits", 1)
got = [(m.topic, m.payload) for m in small.expect_until("size/small")]
check(got == [("size/small", b"fits")], "a 256-byte client got %r" % [t for t, _ in got])
small.close()

anonymous = Client("")
assigned = getattr(anonymous.connack_properties, "AssignedClientIdentifier", "")
check(assigned != "", "assigned client identifier in %r" % anonymous.connack_properties)
for c in workers + [watcher, pub, aliased, anonymous]:
    c.close()
"#;

#[test]
fn paho_v5_shared_subscription_no_local_aliases() {
    let test = "paho_v5_shared_subscription_no_local_aliases";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", V5_SHARED_SCRIPT);
}

/// Persistent sessions: 3.1.1 Clean Session 0 and v5 Clean Start 0 with a session expiry
/// resume with Session Present and get what was published while away; v5 with expiry 0
/// and 3.1.1 Clean Session 1 do not keep a session.
const SESSION_SCRIPT: &str = r#"
v5 = PROTOCOL == V5
expiry = 300 if v5 else None
first = Client("paho-persistent", clean=True, session_expiry=expiry)
check(not first.session_present, "a clean start has no session")
first.close()
first = Client("paho-persistent", clean=False, session_expiry=expiry)
check(first.subscribe("ps/#", 2) == [2], "subscribe")
first.close()
pub = Client("paho-pub")
pub.publish("ps/1", b"one", 1)
pub.publish("ps/2", b"two", 2)
back = Client("paho-persistent", clean=False, session_expiry=expiry)
check(back.session_present, "session present after reconnecting")
got = sorted((m.topic, m.payload, m.qos) for m in back.expect(2, "queued messages"))
check(got == [("ps/1", b"one", 1), ("ps/2", b"two", 2)], "queued got %r" % got)
back.close()

# A clean start discards the session; with expiry 0 (v5) or Clean Session 1 (3.1.1)
# nothing is kept after the connection either.
clean = Client("paho-persistent", clean=True, session_expiry=0 if v5 else None)
check(not clean.session_present, "clean start: no session present")
clean.subscribe("ps/#", 1)
clean.close()
again = Client("paho-persistent", clean=False, session_expiry=expiry)
check(not again.session_present, "no session was kept")
pub.publish("ps/3", b"three", 1)
again.subscribe("other", 1)
pub.publish("other", b"sentinel", 1)
got = [m.topic for m in again.expect_until("other")]
check(got == ["other"], "a discarded session got %r" % got)
pub.close()
again.close()
"#;

#[test]
fn paho_v311_persistent_session() {
    let test = "paho_v311_persistent_session";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "311", SESSION_SCRIPT);
}

#[test]
fn paho_v5_persistent_session() {
    let test = "paho_v5_persistent_session";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", SESSION_SCRIPT);
}

/// Keep alive: a client with a 1 s keep alive stays connected while idle (the broker answers
/// PINGREQ). Takeover: a second connection with the same client identifier takes the session
/// over (subscriptions included) and the first is closed, told why in v5 (0x8E).
const KEEPALIVE_TAKEOVER_SCRIPT: &str = r#"
idle = Client("paho-idle", keepalive=1)
time.sleep(3.5)
check(idle.subscribe("idle/t", 1) == [1], "subscribe after idling")
idle.publish("idle/t", b"still here", 1)
(m,) = idle.expect(1, "own message after idling")
check(m.payload == b"still here", "after idling got %r" % m.payload)

first = Client("paho-twin", clean=False, session_expiry=300)
check(first.subscribe("twin/#", 1) == [1], "subscribe")
first.may_drop = True
second = Client("paho-twin", clean=False, session_expiry=300)
check(second.session_present, "the second connection resumes the session")
rc, props = get(first.disconnects, "the first connection to be closed")
if PROTOCOL == V5:
    check(rc.value == 0x8E, "v5 reason for the takeover: %s" % rc)
idle.publish("twin/x", b"for the twin", 1)
(m,) = second.expect(1, "a message on the taken-over subscription")
check(m.payload == b"for the twin", "taken-over session got %r" % m.payload)
check(first.messages.empty(), "the closed connection got nothing")
for c in (idle, second):
    c.close()
"#;

#[test]
fn paho_v311_keep_alive_and_takeover() {
    let test = "paho_v311_keep_alive_and_takeover";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "311", KEEPALIVE_TAKEOVER_SCRIPT);
}

#[test]
fn paho_v5_keep_alive_and_takeover() {
    let test = "paho_v5_keep_alive_and_takeover";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", KEEPALIVE_TAKEOVER_SCRIPT);
}

/// Graceful shutdown on SIGTERM: `corvus` exits 0 in time, a v5 client is told
/// "server shutting down" (DISCONNECT 0x8B), a 3.1.1 client's connection is closed.
const SHUTDOWN_SCRIPT: &str = r#"
v5 = Client("paho-v5", protocol=V5)
v3 = Client("paho-v311", protocol=V311)
v5.may_drop = v3.may_drop = True
print("READY", flush=True)
rc, props = get(v5.disconnects, "the v5 client to be disconnected")
check(rc.value == 0x8B, "v5 disconnect reason %s" % rc)
get(v3.disconnects, "the 3.1.1 client to be disconnected")
"#;

#[cfg(unix)]
#[test]
fn paho_clients_on_graceful_shutdown() {
    let test = "paho_clients_on_graceful_shutdown";
    if !runs(test) {
        return;
    }
    let mut broker = Broker::start(test);
    let mut clients = Proc::spawn(test, &mut script(&broker, "5", SHUTDOWN_SCRIPT));
    clients.expect_line(|l| l == "READY", "clients connected");
    let status = broker.terminate(Duration::from_secs(15));
    let out = clients.finish(HARNESS_LIMIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "corvus after SIGTERM: {status:?}\n{}",
        broker.log()
    );
    assert!(out.success(), "paho clients on shutdown: {out}");
}
