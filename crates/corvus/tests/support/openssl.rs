//! TLS clients for tests of the real binary, through `openssl s_client`: the certificate a
//! TLS listener presents to a new connection, and a long-lived MQTT connection over TLS that
//! a test drives packet by packet (the `corvus` crate has no TLS client of its own).
//!
//! Every client trusts only the CA file it is given and fails its handshake unless the
//! broker's certificate verifies against it for 127.0.0.1 (`-verify_return_error`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{ConnAck, ProtocolVersion};

use super::mqtt::{Client, TimedOut, Wire};
use super::{run, which, Output, CLIENT_TIMEOUT};

/// Whether `openssl` is on PATH.
pub fn available() -> bool {
    which("openssl").is_some()
}

/// `openssl s_client` to 127.0.0.1:`port`, trusting only `ca` and refusing a certificate
/// that does not verify against it for 127.0.0.1.
fn s_client(port: u16, ca: &Path) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1"]);
    cmd
}

/// The certificate the TLS listener on `port` presents to a new connection (the leaf, as
/// [`certificate_body`] gives it), if it verifies against `ca`; else what openssl said.
pub fn presented_certificate(port: u16, ca: &Path) -> Result<String, Output> {
    // Standard input is empty: openssl shuts the connection down once the handshake is done.
    let out = run(
        "openssl s_client",
        s_client(port, ca).arg("-showcerts"),
        CLIENT_TIMEOUT,
    );
    if !out.success() {
        return Err(out);
    }
    match certificate_body(&out.stdout) {
        Some(body) => Ok(body),
        None => Err(out),
    }
}

/// The base64 body of the first certificate in PEM text, without its line breaks: the same
/// for the same certificate, whoever wrote the PEM.
pub fn certificate_body(pem: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    Some(pem[start..end].split_whitespace().collect())
}

/// An MQTT connection over TLS through an `openssl s_client` process.
pub type TlsClient = Client<OpenSsl>;

/// The wire of a [`TlsClient`]: bytes are written to an `openssl s_client`'s standard input
/// and read from its standard output. The process is killed on drop.
pub struct OpenSsl {
    child: Child,
    stdin: ChildStdin,
    chunks: Receiver<Vec<u8>>,
    stderr: Arc<Mutex<String>>,
}

/// Connects to the TLS listener on 127.0.0.1:`port`, trusting only `ca`, and sends a
/// CONNECT for `client_id`; returns the client and the CONNACK, whatever its code. Panics
/// with openssl's messages if the handshake fails.
pub fn connect(
    port: u16,
    ca: &Path,
    version: ProtocolVersion,
    client_id: &str,
) -> (TlsClient, ConnAck) {
    let mut child = s_client(port, ca)
        // Nothing but the connection's bytes on stdout; stdin's end does not close it.
        .arg("-quiet")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start openssl s_client: {e}"));
    let stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    // Pipes have no read timeout: a thread reads, and the wire waits on its channel.
    let (tx, chunks) = mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 || tx.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let err_buf = stderr.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = err_pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let mut text = err_buf.lock().unwrap_or_else(|p| p.into_inner());
            text.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let wire = OpenSsl {
        child,
        stdin,
        chunks,
        stderr,
    };
    Client::over(wire, version, client_id, |_| {})
}

impl OpenSsl {
    /// What openssl printed on stderr so far (handshake and verification errors).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Wire for OpenSsl {
    fn write(&mut self, bytes: &[u8]) {
        if let Err(e) = self
            .stdin
            .write_all(bytes)
            .and_then(|()| self.stdin.flush())
        {
            panic!("write to openssl s_client: {e}\n{}", self.stderr());
        }
    }

    fn read_within(&mut self, buf: &mut BytesMut, within: Duration) -> Result<bool, TimedOut> {
        match self.chunks.recv_timeout(within) {
            Ok(chunk) => {
                buf.extend_from_slice(&chunk);
                Ok(true)
            }
            Err(RecvTimeoutError::Timeout) => Err(TimedOut),
            Err(RecvTimeoutError::Disconnected) => Ok(false),
        }
    }

    fn context(&self) -> String {
        format!("--- openssl ---\n{}", self.stderr())
    }
}

impl Drop for OpenSsl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
