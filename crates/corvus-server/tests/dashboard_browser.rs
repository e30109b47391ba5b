//! The dashboard (`/dashboard/`) in a real browser: headless Chromium loads the page from a
//! broker with live MQTT traffic, and the test reads the DOM through the DevTools protocol
//! until the page shows that traffic: the message-rate chart has points and a non-zero
//! maximum, the client list names the test's clients (and its search narrows it), the
//! busiest topic leads the top-topics table, every drop reason is listed with the one the
//! test caused highlighted. Both ways of giving the page the bearer token are used: the
//! `#token=` fragment, then the form a 401 brings up.
//!
//! Skipped, with a note, when Chromium is not installed, unless `CORVUS_INTEROP=1` (CI),
//! which makes a missing browser a failure. `CORVUS_SCREENSHOT=path.png` (relative to the
//! workspace root) also saves a screenshot of the page, after letting the charts fill for
//! three minutes: `docs/dashboard.png` is made so.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use corvus_core::DropReason;
use futures_util::{SinkExt, StreamExt};
use mqtt_codec::{Connect, ProtocolVersion, Publish, QoS};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const TOKEN: &str = "dashboard-test-token";
/// The busiest topic (20 to 60 messages a second), a calmer one (6) and a quiet one (1).
const BUSY: &str = "plant/line-1/temperature";
const CALM: &str = "plant/line-2/pressure";
const RARE: &str = "fleet/truck-17/gps";
/// Clients that stay connected for the whole test: the list must show each.
const WATCHER: &str = "dash-watcher";
const ARCHIVER: &str = "dash-archiver";
const SMALL: &str = "dash-small-device";
const PUB_BUSY: &str = "dash-publisher-busy";
const PUB_CALM: &str = "dash-publisher-calm";
/// How long the page may take to show something the broker already knows: a few polls,
/// and a whole window of the top-topics tally (5 s), with room for a loaded CI machine.
const PAGE_WAIT: Duration = Duration::from_secs(30);
/// The whole browser part, however it goes (the screenshot run waits three minutes).
const SCENARIO_LIMIT: Duration = Duration::from_secs(300);
/// Samples the rate chart must hold before the screenshot: its whole window, three minutes.
const SCREENSHOT_POINTS: u64 = 175;

/// Debian's `/usr/bin/chromium`, or `chromium` on PATH.
fn find_chromium() -> Option<PathBuf> {
    let debian = Path::new("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("chromium"))
        .find(|path| path.is_file())
}

/// A headless Chromium with its own profile; killed (its whole process group: renderers
/// and helpers too) and reaped when dropped, the test passing or not.
struct Browser {
    child: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    fn launch(binary: &Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("a temporary profile directory");
        let log = std::fs::File::create(profile.path().join("chromium.log"))
            .expect("chromium's log file");
        let mut command = Command::new(binary);
        command
            .args([
                "--headless",
                // Root in CI containers; the sandbox needs user namespaces they may lack.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                // No calls home: the CI machine has no network, and refused connections
                // only slow the start.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Its own process group, so that Drop ends the helpers with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Browser { child, profile }
    }

    /// The DevTools port Chromium chose, once it has written it.
    async fn devtools_port(&self) -> u16 {
        let file = self.profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                    return port;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium wrote no DevToolsActivePort within {PAGE_WAIT:?}; its log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits up to `limit` for the browser to exit by itself (after `Browser.close`), so
    /// that it reaps its own helpers.
    async fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            // Exited and reaped: its helpers went with it.
            return;
        }
        // The group first, while the leader is unreaped and its id cannot be reused.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools protocol session with one page.
struct Page {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    /// Uncaught exceptions and Content Security Policy refusals the page reported.
    errors: Vec<String>,
}

impl Page {
    /// Connects to the first page target of the browser at `port`.
    async fn attach(port: u16) -> Page {
        let deadline = Instant::now() + PAGE_WAIT;
        let url = loop {
            let targets = http_get_json(SocketAddr::from(([127, 0, 0, 1], port)), "/json/list")
                .await
                .unwrap_or(Value::Null);
            let page = targets.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    .map(str::to_owned)
            });
            if let Some(url) = page {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "no page target in DevTools: {targets}"
            );
            sleep(Duration::from_millis(100)).await;
        };
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to DevTools");
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .unwrap_or_else(|e| panic!("DevTools websocket {url}: {e}"));
        let mut page = Page {
            ws,
            next_id: 1,
            errors: Vec::new(),
        };
        page.call("Runtime.enable", json!({})).await;
        page.call("Log.enable", json!({})).await;
        page
    }

    /// Keeps what an event says went wrong in the page.
    fn note(&mut self, event: &Value) {
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self
                .errors
                .push(event["params"]["exceptionDetails"].to_string()),
            // The 401s of the token form's phase are expected; refused loads of the page's
            // own kind (a script, a style) are not.
            Some("Log.entryAdded")
                if event["params"]["entry"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Content Security Policy")) =>
            {
                self.errors.push(event["params"]["entry"].to_string())
            }
            _ => {}
        }
    }

    /// Calls a DevTools method; its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(Message::Text(request.into()))
            .await
            .unwrap_or_else(|e| panic!("sending {method}: {e}"));
        loop {
            let message = timeout(PAGE_WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within {PAGE_WAIT:?}"))
                .unwrap_or_else(|| panic!("DevTools closed during {method}"))
                .unwrap_or_else(|e| panic!("DevTools during {method}: {e}"));
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("DevTools sent bad JSON ({e}): {text}"));
            if reply["id"] != id {
                self.note(&reply);
                continue;
            }
            if !reply["error"].is_null() {
                panic!("{method} failed: {}", reply["error"]);
            }
            return reply["result"].clone();
        }
    }

    /// Asks the browser to quit; it may close the connection before it answers.
    async fn close_browser(&mut self) {
        let request = json!({ "id": self.next_id, "method": "Browser.close" }).to_string();
        let _ = timeout(WAIT, self.ws.send(Message::Text(request.into()))).await;
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("the page threw on `{expression}`: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls [`SNAPSHOT`] until `check` accepts it; fails with the last snapshot and why
    /// after [`PAGE_WAIT`].
    async fn wait_until(&mut self, what: &str, check: impl Fn(&Value) -> Result<(), String>) {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let snapshot = self.eval(SNAPSHOT).await;
            let verdict = check(&snapshot);
            match verdict {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => panic!(
                    "the page did not show {what} within {PAGE_WAIT:?}: {why}\npage: {snapshot:#}"
                ),
                Err(_) => sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// What the page shows, read through its test hooks (see the head of app.js).
const SNAPSHOT: &str = r#"(() => {
  // Still loading, or between two pages.
  if (!document.getElementById('chart-rate') || !document.body.dataset.state) {
    return { state: 'not loaded: ' + location.href + ' ' + document.readyState };
  }
  const chart = (id) => {
    const c = document.getElementById(id);
    return { points: Number(c.dataset.points), max: Number(c.dataset.max) };
  };
  const rows = (selector, f) => [...document.querySelectorAll(selector)].map(f);
  return {
    state: document.body.dataset.state,
    hash: location.hash,
    auth_form: !document.getElementById('auth').hidden,
    banner: document.getElementById('banner').hidden ? null : document.getElementById('banner').textContent,
    version: document.getElementById('version').textContent,
    clients_card: document.getElementById('stat-clients').dataset.value,
    rate: chart('chart-rate'),
    connections: chart('chart-connections'),
    clients: rows('#clients-body tr', (r) => r.dataset.clientId),
    topics: rows('#topics-body tr', (r) => ({ topic: r.dataset.topic, rate: Number(r.dataset.rate) })),
    drops: rows('#drops li', (li) => ({
      reason: li.dataset.reason,
      count: Number(li.dataset.count),
      highlighted: li.classList.contains('nonzero'),
    })),
  };
})()"#;

/// A JSON `GET` over plain HTTP/1.1 (DevTools' target list), `None` until it answers.
/// DevTools keeps the connection open whatever the request says: the body is read by its
/// Content-Length.
async fn http_get_json(addr: SocketAddr, path: &str) -> Option<Value> {
    let mut stream = timeout(WAIT, TcpStream::connect(addr)).await.ok()?.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            response.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&response);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                });
                if n == 0 || length.is_some_and(|length| body.len() >= length) {
                    return serde_json::from_str(body).ok();
                }
            } else if n == 0 {
                return None;
            }
        }
    };
    timeout(WAIT, read).await.ok()?
}

// ---- traffic ----

/// Test clients never time out while idle (the screenshot run lasts over a minute).
fn no_keep_alive(c: &mut Connect) {
    c.keep_alive = 0;
}

/// Publishes QoS 0 messages on `topic` at `rate(seconds since start)` a second, forever.
fn publisher(mut client: Raw, topic: &'static str, rate: fn(f64) -> f64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut owed = 0.0;
        let mut sent = 0u64;
        loop {
            tick.tick().await;
            owed += rate(start.elapsed().as_secs_f64()) * 0.05;
            while owed >= 1.0 {
                owed -= 1.0;
                sent += 1;
                let payload = format!("{{\"seq\":{sent},\"value\":{}}}", sent % 97);
                client
                    .publish(topic, payload.as_bytes(), QoS::AtMostOnce, false, 0)
                    .await;
            }
        }
    })
}

/// Reads and discards whatever the broker sends, so its queue never fills.
fn drain(mut client: Raw) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match client.try_recv(Duration::from_secs(3600)).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    })
}

/// Clients that come and go (up to 7 of them, one step a second, in an irregular wave), so
/// the connections chart moves.
fn visitors(addr: SocketAddr) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut here: Vec<Raw> = Vec::new();
        for step in 0u64.. {
            let t = step as f64;
            let wanted = (3.0 + 2.5 * (t / 11.0).sin() + 1.5 * (t / 3.7).sin()).round();
            let wanted = wanted.clamp(0.0, 7.0) as usize;
            if here.len() < wanted {
                let id = format!("dash-visitor-{step}");
                let (client, _) =
                    Raw::connect_with(addr, ProtocolVersion::V3_1_1, &id, no_keep_alive).await;
                here.push(client);
            } else if here.len() > wanted {
                if let Some(client) = here.pop() {
                    client.disconnect().await;
                }
            }
            sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Starts the traffic: steady publishers on three topics, a subscriber to all of it, and a
/// small device whose Maximum Packet Size makes the broker drop one message for it.
async fn traffic(addr: SocketAddr) -> (Vec<JoinHandle<()>>, Raw) {
    let (mut watcher, _) = Raw::connect_with(addr, ProtocolVersion::V5, WATCHER, |c| {
        no_keep_alive(c);
        c.username = Some(s("operations"));
    })
    .await;
    watcher.subscribe(1, "plant/#", QoS::AtMostOnce).await;
    watcher.subscribe(2, "fleet/#", QoS::AtMostOnce).await;
    let (mut small, _) = Raw::connect_with(addr, ProtocolVersion::V5, SMALL, |c| {
        no_keep_alive(c);
        c.properties.maximum_packet_size = Some(64);
    })
    .await;
    small
        .subscribe(1, "plant/line-9/firmware", QoS::AtMostOnce)
        .await;
    let (mut busy, _) = Raw::connect_with(addr, ProtocolVersion::V5, PUB_BUSY, no_keep_alive).await;
    // Too large for the small device: dropped for it, counted as too_large_for_client.
    let mut firmware = Publish::new(s("plant/line-9/firmware"), Bytes::from(vec![0u8; 200]));
    firmware.qos = QoS::AtMostOnce;
    busy.publish_packet(firmware).await;
    let (calm, _) = Raw::connect_with(addr, ProtocolVersion::V3_1_1, PUB_CALM, no_keep_alive).await;

    // A second subscriber to the busiest line: more goes out than comes in, as with any
    // fan-out.
    let (mut archiver, _) =
        Raw::connect_with(addr, ProtocolVersion::V5, ARCHIVER, no_keep_alive).await;
    archiver
        .subscribe(1, "plant/line-1/#", QoS::AtMostOnce)
        .await;

    let tasks = vec![
        drain(watcher),
        drain(archiver),
        // A wave between 20 and 60 messages a second, so the chart has a shape.
        publisher(busy, BUSY, |t| 40.0 + 20.0 * (t / 9.0).sin()),
        publisher(calm, CALM, |_| 6.0),
        {
            let (rare, _) =
                Raw::connect_with(addr, ProtocolVersion::V5, "dash-tracker", no_keep_alive).await;
            publisher(rare, RARE, |_| 1.0)
        },
        visitors(addr),
    ];
    (tasks, small)
}

// ---- checks ----

/// Everything the first look at the page must show, or why not.
fn shows_the_traffic(page: &Value) -> Result<(), String> {
    if page["state"] != "live" {
        return Err(format!(
            "state {} (banner: {})",
            page["state"], page["banner"]
        ));
    }
    if page["version"] != env!("CARGO_PKG_VERSION") {
        return Err(format!("version {}", page["version"]));
    }
    let points = page["rate"]["points"].as_u64().unwrap_or(0);
    if points < 5 {
        return Err(format!("the rate chart has {points} points"));
    }
    if page["rate"]["max"].as_f64().unwrap_or(0.0) <= 0.0 {
        return Err("the rate chart's maximum is 0".into());
    }
    // The clients connected for the whole test, at least.
    if page["connections"]["max"].as_f64().unwrap_or(0.0) < 5.0 {
        return Err("the connections chart shows fewer than 5 clients".into());
    }
    let clients: Vec<&str> = page["clients"]
        .as_array()
        .map(|rows| rows.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for id in [WATCHER, ARCHIVER, SMALL, PUB_BUSY, PUB_CALM] {
        if !clients.contains(&id) {
            return Err(format!("{id} is not in the client list"));
        }
    }
    let topics = page["topics"].as_array().cloned().unwrap_or_default();
    match topics.first() {
        Some(first) if first["topic"] == BUSY && first["rate"].as_f64() > Some(0.0) => {}
        _ => return Err(format!("{BUSY} does not lead the top topics")),
    }
    if !topics.iter().any(|t| t["topic"] == CALM) {
        return Err(format!("{CALM} is not among the top topics"));
    }
    let drops = page["drops"].as_array().cloned().unwrap_or_default();
    for reason in DropReason::ALL {
        let label = reason.label();
        let Some(item) = drops.iter().find(|d| d["reason"] == label) else {
            return Err(format!("drop reason {label} is not shown"));
        };
        let caused = reason == DropReason::TooLargeForClient;
        let count = item["count"].as_u64().unwrap_or(0);
        if caused && (count < 1 || item["highlighted"] != true) {
            return Err(format!("{label} is not shown as non-zero and highlighted"));
        }
        // Only non-zero counters stand out.
        if item["highlighted"] != (count > 0) {
            return Err(format!("{label} ({count}) is highlighted wrongly"));
        }
    }
    Ok(())
}

/// Everything the browser does, against the broker at `http` with traffic running.
async fn scenario(chromium: &Path, http: SocketAddr) {
    let base = format!("http://{http}/dashboard/");
    let mut browser = Browser::launch(chromium, &format!("{base}#token={TOKEN}"));
    let port = browser.devtools_port().await;
    let mut page = Page::attach(port).await;

    // The token from the fragment: the page is live, and the token left the address bar.
    page.wait_until("the traffic", shows_the_traffic).await;
    let hash = page.eval("location.hash").await;
    assert_eq!(hash, "", "the token stays in the address bar");

    // The search box asks the broker for matching clients only.
    page.eval(
        "(() => { const s = document.getElementById('client-search'); \
         s.value = 'WATCH'; s.dispatchEvent(new Event('input')); })()",
    )
    .await;
    page.wait_until("only the watcher after a search", |p| {
        match p["clients"].as_array().map(Vec::as_slice) {
            Some([only]) if *only == WATCHER => Ok(()),
            _ => Err(format!("clients {}", p["clients"])),
        }
    })
    .await;
    page.eval(
        "(() => { const s = document.getElementById('client-search'); \
         s.value = ''; s.dispatchEvent(new Event('input')); })()",
    )
    .await;

    if let Some(path) = std::env::var_os("CORVUS_SCREENSHOT") {
        // Tests run in the crate's directory; a relative path means one from the workspace
        // root, where people run cargo (an absolute one stays as it is).
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path);
        screenshot(&mut page, &path).await;
    }

    // Without a stored token the page asks for one, and works once it is given.
    page.eval("sessionStorage.clear()").await;
    page.call(
        "Page.navigate",
        json!({ "url": format!("{base}index.html") }),
    )
    .await;
    page.wait_until("the token form", |p| {
        if p["state"] == "auth" && p["auth_form"] == true {
            Ok(())
        } else {
            Err(format!("state {}", p["state"]))
        }
    })
    .await;
    page.eval(&format!(
        "(() => {{ document.getElementById('auth-token').value = '{TOKEN}'; \
         document.getElementById('auth-form').requestSubmit(); }})()"
    ))
    .await;
    page.wait_until("the traffic after the token form", |p| {
        if p["auth_form"] == true {
            return Err("the token form is still up".into());
        }
        shows_the_traffic(p)
    })
    .await;
    let stored = page
        .eval("sessionStorage.getItem('corvus.dashboard.token')")
        .await;
    assert_eq!(stored, TOKEN, "the form's token is kept for the tab");
    assert!(
        page.errors.is_empty(),
        "the page reported errors: {:#?}",
        page.errors
    );

    // Politely first; the guard kills whatever is left.
    page.close_browser().await;
    browser.exited_within(WAIT).await;
    drop(browser);
}

/// Lets the charts fill, then saves the whole page as a PNG at `path`.
async fn screenshot(page: &mut Page, path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(SCREENSHOT_POINTS + 60);
    loop {
        let points = page.eval(SNAPSHOT).await["rate"]["points"]
            .as_u64()
            .unwrap_or(0);
        if points >= SCREENSHOT_POINTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rate chart never reached {SCREENSHOT_POINTS} points (at {points})"
        );
        sleep(Duration::from_secs(1)).await;
    }
    let height = page
        .eval("document.documentElement.scrollHeight")
        .await
        .as_u64()
        .unwrap_or(800)
        .clamp(800, 2000);
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;
    // The charts redraw for the new size after their resize debounce, and the next poll.
    sleep(Duration::from_millis(1500)).await;
    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    // DevTools sends the PNG in base64, standard alphabet.
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().expect("screenshot data"),
    )
    .expect("screenshot data is base64");
    std::fs::write(path, png)
        .unwrap_or_else(|e| panic!("writing the screenshot to {}: {e}", path.display()));
    println!("screenshot written to {}", path.display());
    page.call("Emulation.clearDeviceMetricsOverride", json!({}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_traffic_in_a_real_browser() {
    let Some(chromium) = find_chromium() else {
        assert!(
            std::env::var("CORVUS_INTEROP").as_deref() != Ok("1"),
            "CORVUS_INTEROP=1 but chromium is not installed (apt-get install chromium)"
        );
        println!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let (server, addr) = start_with(|c| {
        c.http.listen = Some("127.0.0.1:0".parse().unwrap());
        c.http.token = Some(TOKEN.to_owned());
    })
    .await;
    let http = server.http_addr().expect("http listening");
    let (tasks, small) = traffic(addr).await;

    let outcome = timeout(SCENARIO_LIMIT, scenario(&chromium, http)).await;

    // Stopped for good before the broker goes, so that none writes to a closed socket.
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    drop(small);
    server.shutdown().await;
    outcome.unwrap_or_else(|_| panic!("the browser test took over {SCENARIO_LIMIT:?}"));
}
