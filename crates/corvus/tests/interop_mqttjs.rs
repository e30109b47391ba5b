//! Interoperability with MQTT.js 5 (Node.js), talking to the real `corvus` binary over TCP,
//! as an MQTT 3.1.1 (protocolVersion 4) and an MQTT 5 client.
//!
//! Each test runs a small script with `node -e`: the prelude below plus the test's body,
//! exiting 0 on success, or printing "FAIL: why" and exiting nonzero; it stops itself after
//! `CORVUS_SCRIPT_TIMEOUT` seconds, and the harness kills it after its own limit.
//!
//! MQTT.js is found through NODE_PATH or in `<repo>/.ci/node_modules`, where CI installs it
//! from `.ci/package.json` (`npm install --prefix .ci`). Skipped when node or MQTT.js is
//! missing, unless CORVUS_INTEROP=1 (CI) requires them.

mod support;

use std::time::Duration;

use support::Broker;

const TOOL: &str = "node with MQTT.js 5 (npm install --prefix .ci)";
/// The script's own limit, in seconds; the harness allows a little more.
const SCRIPT_SECONDS: u64 = 30;

/// Helpers every script starts with: a watchdog, `fail`/`check`, `client()` (connect, with
/// received messages collected) and `expect()` (wait for them).
const PRELUDE: &str = r#"
'use strict';
const mqtt = require('mqtt');
const URL = process.env.CORVUS_URL || `mqtt://${process.env.CORVUS_HOST}:${process.env.CORVUS_PORT}`;
// For wss: the CA that signed the broker's certificate.
const TLS = process.env.CORVUS_CA ? { ca: require('fs').readFileSync(process.env.CORVUS_CA) } : {};
const VERSION = Number(process.env.CORVUS_PROTOCOL);
const LIMIT = Number(process.env.CORVUS_SCRIPT_TIMEOUT);
const WAIT = 10000;

function fail(message) {
  console.error('FAIL: ' + message);
  process.exit(1);
}
function check(condition, message) {
  if (!condition) fail(message);
}
const watchdog = setTimeout(() => {
  console.error(`FAIL: script timed out after ${LIMIT}s`);
  process.exit(2);
}, LIMIT * 1000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Connects; messages are collected from the start, so none sent right after CONNACK (a
// resumed session's) is missed. `c.connack` is the CONNACK packet.
function client(clientId, options = {}) {
  const c = mqtt.connect(URL, {
    protocolVersion: VERSION, clientId, reconnectPeriod: 0, connectTimeout: WAIT, ...TLS, ...options,
  });
  c.name = clientId;
  c.received = [];
  c.on('message', (topic, payload, packet) => c.received.push({ topic, payload, packet }));
  c.on('error', (e) => fail(`${clientId}: ${e.message}`));
  c.on('close', () => { if (!c.closing) fail(`${clientId}: connection closed unexpectedly`); });
  return new Promise((resolve) => c.once('connect', (connack) => {
    c.connack = connack;
    resolve(c);
  }));
}

async function close(...clients) {
  for (const c of clients) {
    c.closing = true;
    await c.endAsync();
  }
}

// Waits for n messages and takes them.
async function expect(c, n, what = 'messages') {
  const end = Date.now() + WAIT;
  while (c.received.length < n) {
    if (Date.now() > end) fail(`${c.name}: timed out waiting for ${what}: ${c.received.length} of ${n}`);
    await sleep(5);
  }
  return c.received.splice(0, n);
}

// Takes messages up to and including the first on `topic`.
async function expectUntil(c, topic) {
  const got = [];
  while (!got.length || got[got.length - 1].topic !== topic) {
    got.push(...(await expect(c, 1, 'messages until ' + topic)));
  }
  return got;
}

async function subscribe(c, filter, options) {
  const granted = await c.subscribeAsync(filter, options);
  check(granted.length === 1 && granted[0].qos === options.qos,
    `${c.name}: subscribe ${filter}: ${JSON.stringify(granted)}`);
}

const byTopic = (a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0);
const summary = (ms) => JSON.stringify(ms.map((m) => [m.topic, m.packet.qos, m.packet.retain, m.payload.length]));
"#;

const EPILOGUE: &str = r#"
main().then(() => { clearTimeout(watchdog); console.log('ok'); process.exit(0); },
            (e) => fail(e && e.stack ? e.stack : String(e)));
"#;

fn run_script(test: &str, broker: &Broker, protocol: &str, body: &str) {
    run_script_with(test, broker, protocol, body, &[]);
}

/// [`run_script`] with more environment: `CORVUS_URL` (another transport), `CORVUS_CA`.
fn run_script_with(
    test: &str,
    broker: &Broker,
    protocol: &str,
    body: &str,
    env: &[(&str, String)],
) {
    let script = format!("{PRELUDE}\n{body}\n{EPILOGUE}");
    let out = support::run(
        test,
        support::node()
            .arg("-e")
            .arg(script)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CORVUS_HOST", broker.host())
            .env("CORVUS_PORT", broker.port())
            .env("CORVUS_PROTOCOL", protocol)
            .env("CORVUS_SCRIPT_TIMEOUT", SCRIPT_SECONDS.to_string()),
        Duration::from_secs(SCRIPT_SECONDS + 10),
    );
    assert!(
        out.success(),
        "MQTT.js script for {test} (protocol {protocol}) failed: {out}"
    );
}

fn runs(test: &str) -> bool {
    support::require(test, TOOL, support::have_mqttjs())
}

/// QoS 0, 1 and 2 (publishAsync resolves on PUBACK and PUBCOMP), a large binary payload, the
/// subscription's QoS capping delivery, and a retained message for a later subscriber.
const QOS_SCRIPT: &str = r#"
async function main() {
  const sub = await client('js-sub');
  await subscribe(sub, 'js/#', { qos: 2 });
  const capped = await client('js-capped');
  await subscribe(capped, 'js/#', { qos: 1 });
  const pub = await client('js-pub');

  const big = Buffer.alloc(100 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const sent = [
    ['js/q0', Buffer.from('zero'), 0],
    ['js/q1', Buffer.from('one'), 1],
    ['js/q2', Buffer.from('two'), 2],
    ['js/big', big, 1],
  ];
  for (const [topic, payload, qos] of sent) await pub.publishAsync(topic, payload, { qos });

  for (const [c, cap] of [[sub, 2], [capped, 1]]) {
    const got = (await expect(c, sent.length)).sort(byTopic);
    const want = sent.map(([topic, payload, qos]) => ({ topic, payload, qos: Math.min(qos, cap) })).sort(byTopic);
    for (let i = 0; i < want.length; i++) {
      const g = got[i];
      const w = want[i];
      check(g.topic === w.topic && g.payload.equals(w.payload) && g.packet.qos === w.qos && !g.packet.retain,
        `${c.name} got ${summary(got)}`);
    }
  }

  await pub.publishAsync('js/retained', 'kept', { qos: 1, retain: true });
  const late = await client('js-late');
  await subscribe(late, 'js/retained', { qos: 2 });
  const [r] = await expect(late, 1, 'the retained message');
  check(r.topic === 'js/retained' && r.payload.toString() === 'kept' && r.packet.retain && r.packet.qos === 1,
    `retained: ${summary([r])}`);
  await close(sub, capped, pub, late);
}
"#;

#[test]
fn mqttjs_v311_qos_retained() {
    let test = "mqttjs_v311_qos_retained";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "4", QOS_SCRIPT);
}

#[test]
fn mqttjs_v5_qos_retained() {
    let test = "mqttjs_v5_qos_retained";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", QOS_SCRIPT);
}

/// MQTT 5 specifics with MQTT.js: publish properties and subscription identifiers pass
/// through; topic aliases work both ways (MQTT.js auto-aliases towards the broker, and
/// resolves the broker's aliases on a connection that allows them); a 3.1.1 subscriber gets
/// the same message without properties; No Local; a refused publish ($SYS) comes back as a
/// PUBACK with reason code 0x87 that MQTT.js reports as an error.
const V5_SCRIPT: &str = r#"
async function main() {
  // QoS 1, not 2: MQTT.js 5.x emits a QoS 2 message at PUBREL with the stored packet's
  // topic, which is empty when the broker sent the alias alone (a client bug).
  const sub = await client('js5-sub', { properties: { topicAliasMaximum: 8 } });
  const granted = await sub.subscribeAsync('v5/#', { qos: 1, properties: { subscriptionIdentifier: 9 } });
  check(granted[0].qos === 1, 'granted ' + JSON.stringify(granted));
  const old = await client('js4-sub', { protocolVersion: 4 });
  await subscribe(old, 'v5/#', { qos: 1 });
  const pub = await client('js5-pub', { autoUseTopicAlias: true });
  check(pub.topicAliasSend && pub.topicAliasSend.max > 0, 'the broker allows topic aliases');

  const properties = {
    userProperties: { colour: ['blue', 'green'], size: 'xl' },
    responseTopic: 'v5/replies',
    correlationData: Buffer.from([0, 1, 2, 255]),
    contentType: 'text/plain',
    payloadFormatIndicator: true,
    messageExpiryInterval: 600,
  };
  for (let i = 1; i <= 3; i++) {
    await pub.publishAsync('v5/aliased/topic', `message ${i}`, { qos: i === 3 ? 2 : 1, properties });
  }

  const got = await expect(sub, 3);
  got.forEach((m, i) => {
    const p = m.packet.properties || {};
    const what = `message ${i + 1} (${m.topic}: ${m.payload}): ${JSON.stringify(p)}`;
    check(m.topic === 'v5/aliased/topic' && m.payload.toString() === `message ${i + 1}`, what);
    check(JSON.stringify(p.userProperties) === JSON.stringify(properties.userProperties), 'user properties of ' + what);
    check(p.responseTopic === 'v5/replies', 'response topic of ' + what);
    check(Buffer.isBuffer(p.correlationData) && p.correlationData.equals(properties.correlationData), 'correlation data of ' + what);
    check(p.contentType === 'text/plain' && p.payloadFormatIndicator === true, 'content type of ' + what);
    check(p.messageExpiryInterval > 590 && p.messageExpiryInterval <= 600, 'expiry of ' + what);
    check([].concat(p.subscriptionIdentifier).join() === '9', 'subscription identifier of ' + what);
    check(typeof p.topicAlias === 'number', 'the broker used a topic alias: ' + what);
  });
  const plain = await expect(old, 3);
  plain.forEach((m, i) => {
    check(m.topic === 'v5/aliased/topic' && m.payload.toString() === `message ${i + 1}`, `3.1.1 message ${i + 1}`);
    check(m.packet.properties === undefined, '3.1.1 message without properties: ' + JSON.stringify(m.packet.properties));
  });

  // No Local.
  await subscribe(pub, 'mine/#', { qos: 1, nl: true });
  await subscribe(pub, 'theirs/#', { qos: 1 });
  await pub.publishAsync('mine/x', 'own message', { qos: 1 });
  await sub.publishAsync('theirs/x', 'sentinel', { qos: 1 });
  const own = await expectUntil(pub, 'theirs/x');
  check(own.length === 1, 'No Local subscriber got ' + summary(own));

  // A refused publish is a negative acknowledgement, not a dropped connection.
  let refused = null;
  try {
    await pub.publishAsync('$SYS/forbidden', 'x', { qos: 1 });
  } catch (e) {
    refused = e;
  }
  check(refused && refused.code === 0x87, 'PUBACK 0x87 for $SYS: ' + refused);
  await pub.publishAsync('v5/still/connected', 'yes', { qos: 1 });
  const [after] = await expect(sub, 1, 'a message after the refusal');
  check(after.topic === 'v5/still/connected', 'after the refusal got ' + after.topic);
  await close(sub, old, pub);
}
"#;

#[test]
fn mqttjs_v5_properties_aliases_no_local() {
    let test = "mqttjs_v5_properties_aliases_no_local";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", V5_SCRIPT);
}

/// A persistent MQTT 5 session (Clean Start 0, session expiry) with MQTT.js: Session Present
/// on return and the QoS 1 and 2 messages published meanwhile delivered; the same for a
/// 3.1.1 client with `clean: false`.
const SESSION_SCRIPT: &str = r#"
async function main() {
  const v5 = VERSION === 5;
  const options = v5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };
  const first = await client('js-persistent', options);
  check(first.connack.sessionPresent === false, 'no session at first');
  await subscribe(first, 'away/#', { qos: 2 });
  await close(first);
  const pub = await client('js-pub');
  await pub.publishAsync('away/1', 'one', { qos: 1 });
  await pub.publishAsync('away/2', 'two', { qos: 2 });
  const back = await client('js-persistent', options);
  check(back.connack.sessionPresent === true, 'session present after reconnecting');
  const got = (await expect(back, 2, 'queued messages')).sort(byTopic);
  check(got.map((m) => `${m.topic}=${m.payload}@${m.packet.qos}`).join() === 'away/1=one@1,away/2=two@2',
    'queued got ' + summary(got));
  await close(pub, back);
}
"#;

#[test]
fn mqttjs_v311_persistent_session() {
    let test = "mqttjs_v311_persistent_session";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "4", SESSION_SCRIPT);
}

#[test]
fn mqttjs_v5_persistent_session() {
    let test = "mqttjs_v5_persistent_session";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    run_script(test, &broker, "5", SESSION_SCRIPT);
}

/// MQTT.js over WebSocket (`ws://`) and WebSocket over TLS (`wss://`, trusting the CA that
/// signed the broker's certificate), MQTT 5 and 3.1.1: the QoS and retained script above,
/// each run on a fresh broker (the script leaves a retained message behind).
#[test]
fn mqttjs_over_ws_and_wss() {
    let test = "mqttjs_over_ws_and_wss";
    if !runs(test) {
        return;
    }
    let (dir, ca, chain, key) = support::tls_files();
    let ca = ca.display().to_string();
    for (kind, host) in [("ws", "127.0.0.1"), ("wss", "localhost")] {
        for protocol in ["5", "4"] {
            let port = support::free_port();
            let config = support::listeners_config(dir.path(), &[(kind, port)], &chain, &key);
            let broker = Broker::start_with(test, &["--config".as_ref(), config.as_os_str()]);
            let env = [
                ("CORVUS_URL", format!("{kind}://{host}:{port}/mqtt")),
                ("CORVUS_CA", ca.clone()),
            ];
            run_script_with(test, &broker, protocol, QOS_SCRIPT, &env);
        }
    }
}
