//! Interoperability with the Eclipse Mosquitto command line clients (`mosquitto_pub`,
//! `mosquitto_sub`, libmosquitto 2.x), talking to the real `corvus` binary over TCP.
//!
//! Skipped when the clients are not installed, unless CORVUS_INTEROP=1 (CI) requires them.
//! Debian: `apt-get install mosquitto-clients`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Broker, Proc, CLIENT_TIMEOUT};

const TOOL: &str = "mosquitto-clients (mosquitto_pub, mosquitto_sub)";
/// One line per message: `MSG|topic|qos|retain|payload` (payload last: it may hold `|`).
const FORMAT: &str = "MSG|%t|%q|%r|%p";
/// With the MQTT 5 properties: user properties, response topic, correlation data, content
/// type, message expiry interval, payload format indicator, subscription identifiers.
const FORMAT_V5: &str = "MSG|%t|%q|%r|%P|%R|%D|%C|%E|%F|%S|%p";
/// The subscribers' own bound, in seconds, below the harness's [`CLIENT_TIMEOUT`].
const SUB_SECONDS: &str = "20";

fn runs(test: &str) -> bool {
    support::require(test, TOOL, support::have_mosquitto())
}

fn connection(broker: &Broker, version: &str) -> Vec<String> {
    ["-h", &broker.host(), "-p", &broker.port(), "-V", version]
        .map(String::from)
        .to_vec()
}

/// Starts `mosquitto_sub` and returns once the broker acknowledged its subscriptions. `-d`
/// makes it print "Subscribed (mid: N)" on SUBACK; messages are the lines starting "MSG|".
fn subscriber(broker: &Broker, name: &str, version: &str, args: &[&str]) -> Proc {
    // Into a pipe, mosquitto_sub flushes message lines but not its debug lines: stdbuf makes
    // stdout line buffered so "Subscribed" is seen at once.
    let stdbuf = support::which("stdbuf");
    let mut cmd = match &stdbuf {
        Some(stdbuf) => {
            let mut cmd = Command::new(stdbuf);
            cmd.args(["-oL", "mosquitto_sub"]);
            cmd
        }
        None => Command::new("mosquitto_sub"),
    };
    cmd.args(connection(broker, version))
        .args(["-d", "-W", SUB_SECONDS])
        .args(args);
    let mut sub = Proc::spawn(name, &mut cmd);
    if stdbuf.is_some() {
        sub.expect_line(|l| l.starts_with("Subscribed (mid:"), "SUBACK");
    } else {
        // Without stdbuf (not GNU coreutils) the line comes only at exit: give it time.
        std::thread::sleep(Duration::from_secs(1));
    }
    sub
}

fn publish(broker: &Broker, version: &str, args: &[&str]) {
    support::run(
        "mosquitto_pub",
        Command::new("mosquitto_pub")
            .args(connection(broker, version))
            .args(args),
        CLIENT_TIMEOUT,
    )
    .assert_success();
}

/// A message as `mosquitto_sub -F` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    topic: String,
    qos: u8,
    retain: bool,
    /// The fields between retain and payload (the v5 properties with [`FORMAT_V5`]).
    props: Vec<String>,
    payload: String,
}

fn msg(topic: &str, qos: u8, retain: bool, payload: &str) -> Msg {
    Msg {
        topic: topic.into(),
        qos,
        retain,
        props: Vec::new(),
        payload: payload.into(),
    }
}

/// Waits for the subscriber to exit 0 (after `-C N` messages) and parses what it received.
/// `props` is the number of property fields in its format.
fn received(sub: Proc, props: usize) -> Vec<Msg> {
    let out = sub.finish(CLIENT_TIMEOUT);
    out.assert_success();
    out.lines_with("MSG|")
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(4 + props, '|').collect();
            assert_eq!(fields.len(), 4 + props, "unexpected line {line:?}");
            Msg {
                topic: fields[0].into(),
                qos: fields[1].parse().expect("qos"),
                retain: fields[2] == "1",
                props: fields[3..3 + props].iter().map(|s| s.to_string()).collect(),
                payload: fields[3 + props].into(),
            }
        })
        .collect()
}

fn sorted(mut messages: Vec<Msg>) -> Vec<Msg> {
    messages.sort_by(|a, b| a.payload.cmp(&b.payload));
    messages
}

/// Publishers of every protocol version (3.1, 3.1.1, 5.0) at QoS 0, 1 and 2; subscribers of
/// `version` at QoS 2 (gets every message at its QoS) and at QoS 1 (QoS 2 downgraded to 1).
fn qos_levels(test: &str, version: &str) {
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    let full = subscriber(
        &broker,
        "sub qos 2",
        version,
        &["-q", "2", "-t", "q/#", "-C", "9", "-F", FORMAT],
    );
    let capped = subscriber(
        &broker,
        "sub qos 1",
        version,
        &["-q", "1", "-t", "q/#", "-C", "9", "-F", FORMAT],
    );
    let mut expected = Vec::new();
    for publisher in ["mqttv31", "mqttv311", "mqttv5"] {
        for qos in 0..=2u8 {
            let topic = format!("q/{publisher}/{qos}");
            let payload = format!("from {publisher} at qos {qos}");
            publish(
                &broker,
                publisher,
                &["-q", &qos.to_string(), "-t", &topic, "-m", &payload],
            );
            expected.push((topic, qos, payload));
        }
    }
    let want = |cap: u8| {
        sorted(
            expected
                .iter()
                .map(|(t, q, p)| msg(t, (*q).min(cap), false, p))
                .collect(),
        )
    };
    assert_eq!(sorted(received(full, 0)), want(2), "QoS 2 subscriber");
    assert_eq!(sorted(received(capped, 0)), want(1), "QoS 1 subscriber");
}

#[test]
fn mosquitto_v31_subscriber_receives_qos_0_1_2() {
    qos_levels("mosquitto_v31_subscriber_receives_qos_0_1_2", "mqttv31");
}

#[test]
fn mosquitto_v311_subscriber_receives_qos_0_1_2() {
    qos_levels("mosquitto_v311_subscriber_receives_qos_0_1_2", "mqttv311");
}

#[test]
fn mosquitto_v5_subscriber_receives_qos_0_1_2() {
    qos_levels("mosquitto_v5_subscriber_receives_qos_0_1_2", "mqttv5");
}

/// Retained messages reach later subscribers of both versions with RETAIN set; a newer one
/// replaces the older; an empty retained message clears it; live messages go to existing
/// subscriptions with RETAIN cleared, unless the v5 subscription asked Retain As Published.
#[test]
fn mosquitto_retained_messages() {
    let test = "mosquitto_retained_messages";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    publish(
        &broker,
        "mqttv311",
        &["-r", "-q", "1", "-t", "r/a", "-m", "first"],
    );
    publish(
        &broker,
        "mqttv5",
        &["-r", "-q", "1", "-t", "r/a", "-m", "second"],
    );
    publish(
        &broker,
        "mqttv5",
        &["-r", "-q", "2", "-t", "r/b", "-m", "bee"],
    );

    for version in ["mqttv311", "mqttv5"] {
        let late = subscriber(
            &broker,
            version,
            version,
            &["-q", "2", "-t", "r/#", "-C", "2", "-F", FORMAT],
        );
        assert_eq!(
            sorted(received(late, 0)),
            vec![msg("r/b", 2, true, "bee"), msg("r/a", 1, true, "second")],
            "{version} subscriber after the retained messages"
        );
    }

    // Live retained publish: RETAIN 0 on an ordinary subscription, 1 with Retain As
    // Published. Then clear r/a; a later subscriber sees r/b and the sentinel only.
    let plain = subscriber(
        &broker,
        "plain",
        "mqttv5",
        &["-q", "1", "-t", "live", "-C", "1", "-F", FORMAT],
    );
    let rap = subscriber(
        &broker,
        "retain as published",
        "mqttv5",
        &[
            "-q",
            "1",
            "-t",
            "live",
            "--retain-as-published",
            "-C",
            "1",
            "-F",
            FORMAT,
        ],
    );
    publish(
        &broker,
        "mqttv5",
        &["-r", "-q", "1", "-t", "live", "-m", "now"],
    );
    assert_eq!(received(plain, 0), vec![msg("live", 1, false, "now")]);
    assert_eq!(received(rap, 0), vec![msg("live", 1, true, "now")]);

    publish(&broker, "mqttv311", &["-r", "-q", "1", "-t", "r/a", "-n"]);
    let after_clear = subscriber(
        &broker,
        "after clear",
        "mqttv311",
        &["-q", "1", "-t", "r/#", "-C", "2", "-F", FORMAT],
    );
    // Retained messages are queued at SUBSCRIBE, so they come before this one.
    publish(
        &broker,
        "mqttv311",
        &["-q", "1", "-t", "r/zz", "-m", "sentinel"],
    );
    assert_eq!(
        received(after_clear, 0),
        vec![
            msg("r/b", 1, true, "bee"),
            msg("r/zz", 1, false, "sentinel")
        ]
    );
}

/// A client killed abruptly has its will published, for 3.1.1 and 5.0 clients; a client that
/// disconnects normally does not. A retained will reaches a later subscriber.
#[test]
fn mosquitto_will_on_abrupt_disconnect() {
    let test = "mosquitto_will_on_abrupt_disconnect";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    let observer = subscriber(
        &broker,
        "observer",
        "mqttv5",
        &["-q", "2", "-t", "will/#", "-C", "2", "-F", FORMAT],
    );

    // A normal DISCONNECT discards the will [MQTT-3.1.2-10].
    publish(
        &broker,
        "mqttv311",
        &[
            "-t",
            "other",
            "-m",
            "x",
            "--will-topic",
            "will/clean",
            "--will-payload",
            "must not appear",
        ],
    );

    for (version, qos, retain) in [("mqttv311", "1", false), ("mqttv5", "2", true)] {
        let topic = format!("will/{version}");
        let payload = format!("{version} is gone");
        let mut args = vec![
            "-t",
            "nothing/here",
            "--will-topic",
            &topic,
            "--will-payload",
            &payload,
            "--will-qos",
            qos,
        ];
        if retain {
            args.push("--will-retain");
        }
        let mut dying = subscriber(&broker, "dying", version, &args);
        dying.kill(); // SIGKILL: no DISCONNECT, the TCP connection just drops.
    }
    assert_eq!(
        sorted(received(observer, 0)),
        vec![
            msg("will/mqttv311", 1, false, "mqttv311 is gone"),
            msg("will/mqttv5", 2, false, "mqttv5 is gone"),
        ]
    );

    let late = subscriber(
        &broker,
        "late",
        "mqttv311",
        &["-q", "2", "-t", "will/#", "-C", "1", "-F", FORMAT],
    );
    assert_eq!(
        received(late, 0),
        vec![msg("will/mqttv5", 2, true, "mqttv5 is gone")]
    );
}

/// A burst of QoS 2 and QoS 1 messages (`mosquitto_pub -l`, one message per line) arrives
/// complete and in order, also at a v5 subscriber allowing one message in flight (Receive
/// Maximum 1) and at a 3.1.1 subscriber at QoS 1.
#[test]
fn mosquitto_burst_in_order() {
    let test = "mosquitto_burst_in_order";
    if !runs(test) {
        return;
    }
    const N: usize = 500;
    let broker = Broker::start(test);
    #[rustfmt::skip]
    let narrow = subscriber(&broker, "receive maximum 1", "mqttv5", &[
        "-q", "2", "-t", "burst/#", "-D", "connect", "receive-maximum", "1",
        "-C", &(2 * N).to_string(), "-F", FORMAT,
    ]);
    let v311 = subscriber(
        &broker,
        "3.1.1",
        "mqttv311",
        &[
            "-q",
            "1",
            "-t",
            "burst/#",
            "-C",
            &(2 * N).to_string(),
            "-F",
            FORMAT,
        ],
    );
    let lines = std::env::temp_dir().join(format!("corvus-{test}-{}.txt", std::process::id()));
    let text: String = (1..=N).map(|i| format!("message {i}\n")).collect();
    std::fs::write(&lines, text).expect("write the burst file");
    for (version, qos) in [("mqttv5", "2"), ("mqttv311", "1")] {
        let input = std::fs::File::open(&lines).expect("open the burst file");
        let topic = format!("burst/{version}");
        support::Proc::spawn_with_stdin(
            "mosquitto_pub -l",
            Command::new("mosquitto_pub")
                .args(connection(&broker, version))
                .args(["-q", qos, "-t", &topic, "-l"]),
            input.into(),
        )
        .finish(CLIENT_TIMEOUT)
        .assert_success();
    }
    let _ = std::fs::remove_file(&lines);

    for (sub, cap) in [(narrow, 2), (v311, 1)] {
        let name = sub.name().to_string();
        let got = received(sub, 0);
        for (version, qos) in [("mqttv5", 2u8), ("mqttv311", 1)] {
            let topic = format!("burst/{version}");
            let on_topic: Vec<_> = got.iter().filter(|m| m.topic == topic).collect();
            let payloads: Vec<_> = on_topic.iter().map(|m| m.payload.clone()).collect();
            let want: Vec<_> = (1..=N).map(|i| format!("message {i}")).collect();
            assert!(
                payloads == want,
                "{name}: {topic} not complete and in order: {payloads:?}"
            );
            assert!(
                on_topic.iter().all(|m| m.qos == qos.min(cap)),
                "{name}: QoS on {topic}"
            );
        }
    }
}

/// MQTT 5 will delay: a will with a delay is published that much after the client died,
/// with its properties; a client that comes back within the delay (same session) cancels it.
#[test]
fn mosquitto_v5_will_delay() {
    let test = "mosquitto_v5_will_delay";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    let mut observer = subscriber(
        &broker,
        "observer",
        "mqttv5",
        &["-q", "1", "-t", "will/#", "-C", "2", "-F", FORMAT_V5],
    );
    #[rustfmt::skip]
    let mut delayed = subscriber(&broker, "delayed", "mqttv5", &[
        "-t", "nothing/here", "-c", "-x", "60", "-i", "delayed-will",
        "--will-topic", "will/delayed", "--will-payload", "late goodbye", "--will-qos", "1",
        "-D", "will", "will-delay-interval", "1",
        "-D", "will", "user-property", "why", "crashed",
        "-D", "will", "content-type", "text/plain",
    ]);
    delayed.kill();
    let killed = Instant::now();

    // Comes back (the same persistent session) well within its 3 s delay.
    let returning_args = ["-t", "nothing/here", "-c", "-x", "60", "-i", "returning"];
    #[rustfmt::skip]
    let mut returning = subscriber(&broker, "returning", "mqttv5", &[&returning_args[..], &[
        "--will-topic", "will/cancelled", "--will-payload", "must not appear",
        "-D", "will", "will-delay-interval", "3",
    ]].concat());
    returning.kill();
    let returning_killed = Instant::now();
    let back = subscriber(
        &broker,
        "back",
        "mqttv5",
        &[&returning_args[..], &["-E"]].concat(),
    );
    back.finish(CLIENT_TIMEOUT).assert_success();

    observer.expect_line(|l| l.starts_with("MSG|will/delayed|"), "the delayed will");
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "the will came {after:?} after the client died, before its 1 s delay"
    );
    // Past the cancelled will's delay (and a sweep), then the sentinel.
    let quiet_until = returning_killed + Duration::from_millis(3600);
    std::thread::sleep(quiet_until.saturating_duration_since(Instant::now()));
    publish(
        &broker,
        "mqttv5",
        &["-q", "1", "-t", "will/zz", "-m", "sentinel"],
    );

    let got = received(observer, 7);
    let summary: Vec<_> = got
        .iter()
        .map(|m| {
            (
                m.topic.as_str(),
                m.payload.as_str(),
                m.props[0].as_str(),
                m.props[3].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("will/delayed", "late goodbye", "why:crashed", "text/plain"),
            ("will/zz", "sentinel", "", ""),
        ]
    );
}

/// MQTT 5 publish properties pass through the broker unchanged (user properties in order,
/// response topic, correlation data, content type, payload format), the message expiry
/// interval arrives (counted down, never up), the subscription identifier is added, and a
/// 3.1.1 subscriber gets the same message without properties.
#[test]
fn mosquitto_v5_properties() {
    let test = "mosquitto_v5_properties";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    let v5 = subscriber(
        &broker,
        "v5",
        "mqttv5",
        &[
            "-q",
            "1",
            "-t",
            "props/#",
            "-D",
            "subscribe",
            "subscription-identifier",
            "42",
            "-C",
            "1",
            "-F",
            FORMAT_V5,
        ],
    );
    let v311 = subscriber(
        &broker,
        "v311",
        "mqttv311",
        &["-q", "1", "-t", "props/#", "-C", "1", "-F", FORMAT],
    );
    #[rustfmt::skip]
    publish(&broker, "mqttv5", &[
        "-q", "1", "-t", "props/x", "-m", "payload|with|bars",
        "-D", "publish", "user-property", "colour", "blue",
        "-D", "publish", "user-property", "colour", "green",
        "-D", "publish", "user-property", "size", "xl",
        "-D", "publish", "response-topic", "replies/here",
        "-D", "publish", "correlation-data", "req-17",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "message-expiry-interval", "600",
        "-D", "publish", "payload-format-indicator", "1",
    ]);

    let got = received(v5, 7);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(
        (m.topic.as_str(), m.qos, m.retain, m.payload.as_str()),
        ("props/x", 1, false, "payload|with|bars")
    );
    let [user, response, correlation, content_type, expiry, format, sub_id] =
        <[String; 7]>::try_from(m.props.clone()).unwrap();
    assert_eq!(user, "colour:blue colour:green size:xl");
    assert_eq!(response, "replies/here");
    assert_eq!(correlation, "req-17");
    assert_eq!(content_type, "text/plain");
    let expiry: u32 = expiry.parse().expect("message expiry interval");
    assert!(
        (590..=600).contains(&expiry),
        "expiry interval {expiry} should be at most 600, a little less"
    );
    assert_eq!(format, "1");
    assert_eq!(sub_id, "42");

    assert_eq!(
        received(v311, 0),
        vec![msg("props/x", 1, false, "payload|with|bars")]
    );
}

/// A persistent session keeps its subscription and queues QoS 1 and 2 messages while the
/// client is away (not QoS 0, by default), for a 3.1.1 clean-session-0 client and a v5 client
/// with a session expiry interval. The message published after the return is the sentinel:
/// the QoS 0 one would have come before it.
#[test]
fn mosquitto_persistent_session_queues_while_offline() {
    let test = "mosquitto_persistent_session_queues_while_offline";
    if !runs(test) {
        return;
    }
    let broker = Broker::start(test);
    for version in ["mqttv311", "mqttv5"] {
        let id = format!("persistent-{version}");
        let topic = format!("away/{version}");
        let filter = format!("{topic}/#");
        let mut session = vec!["-c", "-i", &id, "-q", "2", "-t", &filter];
        if version == "mqttv5" {
            session.extend(["-x", "300"]);
        }
        // -E: exit (with a normal DISCONNECT) once subscribed.
        let first = subscriber(
            &broker,
            "first connection",
            version,
            &[&session[..], &["-E"]].concat(),
        );
        first.finish(CLIENT_TIMEOUT).assert_success();

        for qos in ["0", "1", "2"] {
            publish(
                &broker,
                "mqttv311",
                &[
                    "-q",
                    qos,
                    "-t",
                    &format!("{topic}/{qos}"),
                    "-m",
                    &format!("away qos {qos}"),
                ],
            );
        }
        let back = subscriber(
            &broker,
            "second connection",
            version,
            &[&session[..], &["-C", "3", "-F", FORMAT]].concat(),
        );
        publish(
            &broker,
            version,
            &[
                "-q",
                "1",
                "-t",
                &format!("{topic}/now"),
                "-m",
                "after return",
            ],
        );
        // Sorted: libmosquitto hands a QoS 2 message to the application only at PUBREL, so
        // the QoS 1 message sent after it may be printed first.
        assert_eq!(
            sorted(received(back, 0)),
            vec![
                msg(&format!("{topic}/now"), 1, false, "after return"),
                msg(&format!("{topic}/1"), 1, false, "away qos 1"),
                msg(&format!("{topic}/2"), 2, false, "away qos 2"),
            ],
            "{version}"
        );
    }
}

// ---- TLS ----

/// The example of docs/security.md: an `mqtts` listener, and mosquitto_sub/mosquitto_pub
/// verifying the broker with `--cafile`, in MQTT 5.0 and 3.1.1. Without the CA the client
/// refuses the broker.
#[test]
fn mosquitto_clients_over_tls_with_cafile() {
    if !runs("mosquitto_clients_over_tls_with_cafile") {
        return;
    }
    let (dir, ca, chain, key) = support::tls_files();
    let tls_port = support::free_port();
    let config = support::listeners_config(dir.path(), &[("mqtts", tls_port)], &chain, &key);
    let broker = Broker::start_with("tls", &["--config".as_ref(), config.as_os_str()]);
    let port = tls_port.to_string();
    let ca = ca.display().to_string();
    // Later options win: the TLS port and the CA replace the plain connection's port.
    let over_tls = ["-p", port.as_str(), "--cafile", ca.as_str()];
    for version in ["mqttv5", "mqttv311"] {
        let topic = format!("tls/{version}");
        let mut args = vec!["-t", topic.as_str(), "-q", "1", "-F", FORMAT, "-C", "1"];
        args.extend(over_tls);
        let sub = subscriber(&broker, "mosquitto_sub", version, &args);
        let mut pub_args = vec!["-t", topic.as_str(), "-q", "1", "-m", "over TLS"];
        pub_args.extend(over_tls);
        publish(&broker, version, &pub_args);
        let out = sub.finish(CLIENT_TIMEOUT);
        assert!(out.success(), "{version}: {out}");
        assert_eq!(
            out.lines_with("MSG|"),
            [format!("{topic}|1|0|over TLS")],
            "{version}: {out}"
        );
    }
    // A client without the CA does not trust the broker: no connection.
    let refused = support::run(
        "mosquitto_pub without the CA",
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                port.as_str(),
                "-t",
                "tls/x",
                "-m",
                "x",
            ])
            .args(["--capath", dir.path().to_str().unwrap_or("/nonexistent")]),
        CLIENT_TIMEOUT,
    );
    assert!(
        !refused.success(),
        "connected without trusting the CA: {refused}"
    );
}
