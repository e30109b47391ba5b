//! Shared harness for the interoperability tests: runs the real `corvus` binary on a free
//! loopback port, runs other programs (MQTT clients from other ecosystems) with time limits,
//! and decides whether a test runs or is skipped when its client is not installed.
//!
//! Every process started here is killed when its guard is dropped, so a failing or panicking
//! test leaves nothing running.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the broker has to print its ready line.
const BROKER_START: Duration = Duration::from_secs(20);
/// How long one client run (a command, a script) may take before it is killed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a test waits for one thing that should happen (a line from a client).
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a tool check (`python3 -c "import ..."`) may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

// ---- skipping ----

/// True if the test may run. When `available` is false the test is skipped with a note,
/// unless CORVUS_INTEROP=1 says the tools must be there (CI), in which case it fails.
pub fn require(test: &str, tool: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var("CORVUS_INTEROP").is_ok_and(|v| v == "1") {
        panic!("{test}: {tool} is not installed, and CORVUS_INTEROP=1 requires it");
    }
    eprintln!("skipping {test}: {tool} not installed (set CORVUS_INTEROP=1 to require it)");
    false
}

/// The path of `program` if it is an executable file on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    path.is_file()
}

/// The mosquitto command line clients, `mosquitto_pub` and `mosquitto_sub`.
pub fn have_mosquitto() -> bool {
    which("mosquitto_pub").is_some() && which("mosquitto_sub").is_some()
}

/// Python 3 with paho-mqtt 2.x (the `CallbackAPIVersion` API).
pub fn have_paho() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        which("python3").is_some()
            && run(
                "python3 paho check",
                Command::new("python3").args([
                    "-c",
                    "import paho.mqtt.client as m; m.CallbackAPIVersion.VERSION2",
                ]),
                CHECK_TIMEOUT,
            )
            .success()
    })
}

/// Where MQTT.js is looked for besides NODE_PATH: CI installs it there from
/// `.ci/package.json` with `npm install --prefix .ci`.
pub fn ci_node_modules() -> PathBuf {
    repo_root().join(".ci").join("node_modules")
}

/// The NODE_PATH to give node: the caller's NODE_PATH, then `<repo>/.ci/node_modules`.
pub fn node_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::var_os("NODE_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let ci = ci_node_modules();
    if ci.is_dir() {
        dirs.push(ci);
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// A `node` command that finds MQTT.js.
pub fn node() -> Command {
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", node_path());
    cmd
}

/// Node.js with MQTT.js 5 (found through NODE_PATH or `<repo>/.ci/node_modules`).
pub fn have_mqttjs() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        which("node").is_some()
            && run(
                "node mqtt check",
                node().args([
                    "-e",
                    "const m = require('mqtt'); if (typeof m.connectAsync !== 'function') process.exit(1)",
                ]),
                CHECK_TIMEOUT,
            )
            .success()
    })
}

pub fn repo_root() -> PathBuf {
    // crates/corvus -> the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/corvus sits two levels below the workspace root")
        .to_path_buf()
}

// ---- the broker ----

/// A running `corvus` process, killed (and its data directory removed) on drop.
pub struct Broker {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    proc: Proc,
    /// Set by [`Broker::terminate`]: the broker is meant to have exited.
    terminated: bool,
}

impl Broker {
    /// Starts `corvus` on 127.0.0.1 with a free port and a fresh data directory, and waits
    /// for it to say it is listening. `test` names the data directory.
    pub fn start(test: &str) -> Broker {
        Broker::start_with(test, &[])
    }

    /// [`start`](Self::start), with more command line arguments (`--config FILE`, say).
    pub fn start_with(test: &str, extra: &[&std::ffi::OsStr]) -> Broker {
        Broker::spawn(unique_temp_dir(test), extra, Some("info"))
    }

    /// Starts `corvus` on a data directory filled beforehand, logging at `level`. The
    /// directory is removed when the broker is dropped.
    pub fn start_on(data_dir: PathBuf, level: &str) -> Broker {
        Broker::spawn(data_dir, &[], Some(level))
    }

    /// [`start_with`](Self::start_with) without `--log-level`: the config file's level
    /// holds (and a reload may change it).
    pub fn start_with_file_level(test: &str, extra: &[&std::ffi::OsStr]) -> Broker {
        Broker::spawn(unique_temp_dir(test), extra, None)
    }

    fn spawn(data_dir: PathBuf, extra: &[&std::ffi::OsStr], level: Option<&str>) -> Broker {
        let mut failures = Vec::new();
        for _ in 0..5 {
            // Another process may take the port between the probe and the broker's bind:
            // then the broker exits, and we try another port.
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut proc = Proc::spawn(
                "corvus",
                Command::new(env!("CARGO_BIN_EXE_corvus"))
                    .arg("--listen")
                    .arg(addr.to_string())
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .args(level.iter().flat_map(|l| ["--log-level", l]))
                    .args(extra)
                    // The level is ours, not the caller's.
                    .env_remove("RUST_LOG"),
            );
            match proc.wait_line(|l| l.contains("listening for MQTT on"), BROKER_START) {
                Ok(_) => {
                    return Broker {
                        addr,
                        data_dir,
                        proc,
                        terminated: false,
                    }
                }
                Err(e) => {
                    proc.kill();
                    let out = proc.output();
                    failures.push(format!(
                        "{e}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        out.stdout, out.stderr
                    ));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&data_dir);
        panic!(
            "corvus did not start after 5 tries:\n{}",
            failures.join("\n")
        );
    }

    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// Everything the broker printed so far (its log), for failure messages.
    pub fn log(&self) -> String {
        let out = self.proc.output();
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Asks the broker to shut down gracefully (SIGTERM, through `kill`) and waits up to
    /// `timeout` for it to exit; None if it did not (it is then killed on drop).
    #[cfg(unix)]
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM", timeout)
    }

    /// Sends `signal` (a name `kill` knows, e.g. "INT") and waits up to `timeout` for the
    /// broker to exit; None if it did not (it is then killed on drop).
    #[cfg(unix)]
    pub fn signal(&mut self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        self.terminated = true;
        self.send_signal(signal);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Sends `signal` (a name `kill` knows, e.g. "HUP") without waiting for anything.
    #[cfg(unix)]
    pub fn send_signal(&self, signal: &str) {
        let pid = self.proc.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        assert!(
            sent.as_ref().is_ok_and(|s| s.success()),
            "cannot send SIG{signal} to corvus: {sent:?}"
        );
    }

    /// Waits for a line of the broker's output that `pred` accepts.
    pub fn wait_log(
        &mut self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        self.proc.wait_line(pred, timeout)
    }

    /// Sends SIGHUP and waits (up to [`WAIT`]) for the log line `expect` recognises: the
    /// reload's outcome. Panics with the log if it does not come.
    pub fn sighup(&mut self, expect: impl Fn(&str) -> bool) -> String {
        self.send_signal("HUP");
        self.wait_log(expect, WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    /// True while the broker process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let crashed = !self.terminated && !self.is_running();
        self.proc.kill();
        if std::thread::panicking() || crashed {
            // The broker's side of a failure is the first thing one wants to see.
            eprintln!(
                "--- corvus log ---\n{}--- end of corvus log ---",
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket on 127.0.0.1");
    listener.local_addr().expect("probe socket address").port()
}

pub fn unique_temp_dir(test: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "corvus-interop-{test}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

// ---- other processes ----

/// A child process whose output is collected, killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    /// Stdout lines as they come, for [`Proc::wait_line`].
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// What a finished (or killed) process left behind.
#[derive(Debug)]
pub struct Output {
    pub name: String,
    /// None if it was still running when collected.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// The exit code; None while running or if ended by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Panics with everything the process said unless it exited 0 in time.
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "{} failed: {self}", self.name);
        self
    }

    /// The stdout lines that start with `prefix`, without it.
    pub fn lines_with(&self, prefix: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match (self.timed_out, self.status) {
            (true, _) => "killed after its time limit".to_string(),
            (false, Some(s)) => s.to_string(),
            (false, None) => "still running".to_string(),
        };
        write!(
            f,
            "{status}\n--- stdout ---\n{}--- stderr ---\n{}--- end ---",
            self.stdout, self.stderr
        )
    }
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr collected.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        Proc::spawn_with_stdin(name, cmd, Stdio::null())
    }

    /// Starts `cmd` reading `stdin` (a file, say), with stdout and stderr collected.
    pub fn spawn_with_stdin(name: &str, cmd: &mut Command, stdin: Stdio) -> Proc {
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let out_pipe = child.stdout.take().expect("piped stdout");
        let err_pipe = child.stderr.take().expect("piped stderr");
        let out_buf = stdout.clone();
        let err_buf = stderr.clone();
        let readers = vec![
            std::thread::spawn(move || {
                let mut reader = BufReader::new(out_pipe);
                let mut line = Vec::new();
                while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    lock(&out_buf).push_str(&text);
                    let _ = tx.send(text.trim_end_matches(['\r', '\n']).to_string());
                    line.clear();
                }
            }),
            std::thread::spawn(move || {
                let mut pipe = err_pipe;
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    lock(&err_buf).push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }),
        ];
        Proc {
            name: name.to_string(),
            child,
            lines,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (to send it a signal).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line matching `pred` (lines before it are skipped, but kept in the
    /// collected output). Fails if the process ends or the time runs out first.
    pub fn wait_line(
        &mut self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{}: expected line not seen within {timeout:?}",
                        self.name
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    return Err(format!(
                        "{}: exited ({status:?}) before the expected line",
                        self.name
                    ));
                }
            }
        }
    }

    /// Like [`Proc::wait_line`], but panics with the process's output on failure.
    pub fn expect_line(&mut self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        match self.wait_line(pred, WAIT) {
            Ok(line) => line,
            Err(e) => {
                self.kill();
                panic!("{e} ({what}): {}", self.output())
            }
        }
    }

    /// Waits for the process to exit, killing it if it takes longer than `timeout`, and
    /// returns what it printed.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    self.kill();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        let status = self.child.wait().ok();
        // The pipes close when the process exits; the readers then finish.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let mut out = self.output();
        out.status = status;
        out.timed_out = timed_out;
        out
    }

    /// The exit status if the process has exited, None while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process abruptly (SIGKILL on Unix) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the process printed so far.
    pub fn output(&self) -> Output {
        Output {
            name: self.name.clone(),
            status: None,
            timed_out: false,
            stdout: lock(&self.stdout).clone(),
            stderr: lock(&self.stderr).clone(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lock(m: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `cmd` to completion within `timeout` (killed after it).
pub fn run(name: &str, cmd: &mut Command, timeout: Duration) -> Output {
    Proc::spawn(name, cmd).finish(timeout)
}

/// Runs `corvus ARGS` (with RUST_LOG unset) reading `stdin`, to completion; panics if it does
/// not exit within [`CLIENT_TIMEOUT`].
pub fn corvus(args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
    let input = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(input.path(), stdin).expect("write the standard input");
    let stdin = std::fs::File::open(input.path()).expect("open the standard input");
    let name = format!("corvus {}", args.join(" "));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corvus"));
    cmd.env_remove("RUST_LOG").args(args);
    let out = Proc::spawn_with_stdin(&name, &mut cmd, stdin.into()).finish(CLIENT_TIMEOUT);
    assert!(!out.timed_out, "{name} did not exit: {out}");
    out
}

/// Asserts `file` is readable and writable by its owner only (a no-op off Unix).
pub fn assert_mode_0600(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}: mode {mode:o}", file.display());
    }
    #[cfg(not(unix))]
    let _ = file;
}

/// A blocking MQTT client speaking through the codec, for tests of the real binary: it sends
/// exactly the packets a test builds and returns each packet the broker sends back.
pub mod mqtt {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use bytes::BytesMut;
    use mqtt_codec::{ConnAck, Connect, Decoder, MqttString, Packet, ProtocolVersion};

    use super::WAIT;

    pub fn s(text: &str) -> MqttString {
        MqttString::try_from(text).unwrap()
    }

    /// Logs in with `user` and `password` (for [`Client::connect`]).
    pub fn login<'a>(user: &'a str, password: &'a str) -> impl FnOnce(&mut Connect) + 'a {
        move |c: &mut Connect| {
            c.username = Some(s(user));
            c.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        }
    }

    /// Nothing came from the broker in time.
    #[derive(Debug)]
    pub struct TimedOut;

    /// What a [`Client`] talks over: bytes out, and bytes in within a time.
    pub trait Wire {
        fn write(&mut self, bytes: &[u8]);
        /// Appends what arrives within `within` to `buf`; `Ok(false)` once the connection is
        /// closed (or reset).
        fn read_within(&mut self, buf: &mut BytesMut, within: Duration) -> Result<bool, TimedOut>;
        /// What to add to a failure's message (a TLS client's own errors).
        fn context(&self) -> String {
            String::new()
        }
    }

    impl Wire for TcpStream {
        fn write(&mut self, bytes: &[u8]) {
            self.write_all(bytes).expect("write to the broker");
        }

        fn read_within(&mut self, buf: &mut BytesMut, within: Duration) -> Result<bool, TimedOut> {
            self.set_read_timeout(Some(within)).unwrap();
            let mut chunk = [0u8; 16 * 1024];
            match self.read(&mut chunk) {
                Ok(0) => Ok(false),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    Ok(true)
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Err(TimedOut)
                }
                Err(_) => Ok(false),
            }
        }
    }

    /// A blocking MQTT client over TCP (or another [`Wire`]), driven packet by packet.
    pub struct Client<W: Wire = TcpStream> {
        wire: W,
        version: ProtocolVersion,
        decoder: Decoder,
        buf: BytesMut,
    }

    impl Client {
        /// Connects to `addr` and sends a CONNECT for `client_id` with `tune` applied; returns
        /// the client and the CONNACK, whatever its code.
        pub fn connect(
            addr: SocketAddr,
            version: ProtocolVersion,
            client_id: &str,
            tune: impl FnOnce(&mut Connect),
        ) -> (Client, ConnAck) {
            let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect to the broker");
            stream.set_nodelay(true).unwrap();
            stream.set_write_timeout(Some(WAIT)).unwrap();
            Client::over(stream, version, client_id, tune)
        }

        /// The client's own address (the peer address the broker sees).
        pub fn local_addr(&self) -> SocketAddr {
            self.wire.local_addr().unwrap()
        }
    }

    impl<W: Wire> Client<W> {
        /// Sends a CONNECT for `client_id` with `tune` applied over `wire`; returns the client
        /// and the CONNACK, whatever its code.
        pub fn over(
            wire: W,
            version: ProtocolVersion,
            client_id: &str,
            tune: impl FnOnce(&mut Connect),
        ) -> (Client<W>, ConnAck) {
            let mut client = Client {
                wire,
                version,
                decoder: Decoder::new(version),
                buf: BytesMut::new(),
            };
            let mut connect = Connect::new(version, s(client_id));
            tune(&mut connect);
            client.send(connect.into());
            match client.next() {
                Some(Packet::ConnAck(ack)) => (client, *ack),
                other => panic!(
                    "{client_id}: expected CONNACK, got {other:?}\n{}",
                    client.wire.context()
                ),
            }
        }

        pub fn wire(&self) -> &W {
            &self.wire
        }

        pub fn send(&mut self, packet: Packet) {
            let mut out = BytesMut::new();
            packet.encode(self.version, &mut out).unwrap();
            self.wire.write(&out);
        }

        /// The next packet within `within`, or `Ok(None)` once the broker has closed the
        /// connection (or reset it).
        pub fn next_within(&mut self, within: Duration) -> Result<Option<Packet>, TimedOut> {
            let deadline = Instant::now() + within;
            loop {
                if let Some(packet) = self.decoder.decode(&mut self.buf).expect("decodable") {
                    return Ok(Some(packet));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(TimedOut);
                }
                if !self.wire.read_within(&mut self.buf, left)? {
                    return Ok(None);
                }
            }
        }

        /// The next packet, or None once the broker has closed the connection; panics if
        /// nothing comes within [`WAIT`].
        pub fn next(&mut self) -> Option<Packet> {
            self.next_within(WAIT).unwrap_or_else(|_| {
                panic!(
                    "nothing from the broker within {WAIT:?}\n{}",
                    self.wire.context()
                )
            })
        }
    }
}

/// A small seeded generator (xorshift64*) for tests that pick kill points, offsets and
/// bytes: deterministic per seed, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Heads or tails.
    pub fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }

    /// A number in `r` (`a..b` or `a..=b`).
    pub fn range(&mut self, r: impl std::ops::RangeBounds<u64>) -> u64 {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let lo = match r.start_bound() {
            Included(&x) => x,
            Excluded(&x) => x + 1,
            Unbounded => 0,
        };
        let hi = match r.end_bound() {
            Included(&x) => x + 1,
            Excluded(&x) => x,
            Unbounded => u64::MAX,
        };
        assert!(lo < hi, "empty range {lo}..{hi}");
        lo + self.next() % (hi - lo)
    }

    /// A byte that is not 0 (to flip at least one bit with XOR).
    pub fn nonzero_byte(&mut self) -> u8 {
        self.range(1..256) as u8
    }
}

// ---- TLS ----

pub mod openssl;

/// The PEM files of a certificate authority and a server certificate for 127.0.0.1 and
/// localhost, made for one test: (directory, CA file, certificate chain file, key file).
pub fn tls_files() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Corvus interop CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let dir = tempfile::tempdir().expect("temporary directory");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path
    };
    let ca_file = write("ca.pem", ca.pem());
    let chain = write("server.pem", cert.pem() + &ca.pem());
    let key_file = write("server.key", key.serialize_pem());
    (dir, ca_file, chain, key_file)
}

/// Writes `dir/corvus.toml` with a `[[listener]]` of each `(kind, port)` on 127.0.0.1
/// (`mqtts` and `wss` ones with `chain` and `key`), and returns its path (for `--config`).
pub fn listeners_config(
    dir: &Path,
    listeners: &[(&str, u16)],
    chain: &Path,
    key: &Path,
) -> PathBuf {
    let mut text = String::new();
    for (kind, port) in listeners {
        text.push_str(&format!(
            "[[listener]]\nkind = \"{kind}\"\nbind = \"127.0.0.1:{port}\"\n"
        ));
        if matches!(*kind, "mqtts" | "wss") {
            // TOML literal strings: a path is taken as it is (temporary paths hold no ').
            text.push_str(&format!(
                "cert = '{}'\nkey = '{}'\n",
                chain.display(),
                key.display()
            ));
        }
    }
    let config = dir.join("corvus.toml");
    std::fs::write(&config, text).expect("write the config file");
    config
}

// ---- data directories ----

/// The queue segment of data directory `data` that is appended to (the one with the highest
/// base).
pub fn last_segment(data: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("queue"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("a queue segment")
}
