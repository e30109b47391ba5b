//! MQTT over WebSocket (`ws` and `wss` listeners, MQTT 5.0 section 6): the HTTP upgrade on
//! the listener's path with the `mqtt` subprotocol, and [`WsIo`], which turns the stream of
//! binary WebSocket messages into the byte stream the connection task reads and writes
//! (MQTT packets may span messages, and a message may hold several packets).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The default path of a WebSocket listener.
pub const DEFAULT_PATH: &str = "/mqtt";
/// The subprotocols a client may offer: `mqtt` [MQTT-6.0.0-3], and `mqttv3.1`, which some
/// 3.1 clients still send. The one chosen is echoed [MQTT-6.0.0-4].
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Completes the WebSocket upgrade of `stream` on `path`. A request for another path is
/// answered 404; one that offers no MQTT subprotocol, 400. `max_message` bounds what one
/// WebSocket message (and frame) may carry, so a client cannot make the broker buffer more
/// than a packet's worth before the MQTT limits apply.
pub async fn accept<S>(
    stream: S,
    path: &str,
    max_message: usize,
) -> Result<WsIo<S>, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let path = path.to_owned();
    // The error type is tungstenite's (`Callback`): an HTTP response, large, not ours to box.
    #[allow(clippy::result_large_err)]
    let upgrade = move |request: &Request, mut response: Response| {
        if request.uri().path() != path {
            return Err(refusal(
                StatusCode::NOT_FOUND,
                "no MQTT endpoint at this path",
            ));
        }
        let offered = request
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| SUBPROTOCOLS.contains(p))
            .map(str::to_owned);
        match offered {
            Some(protocol) => {
                if let Ok(value) = HeaderValue::from_str(&protocol) {
                    response
                        .headers_mut()
                        .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
                }
                Ok(response)
            }
            None => Err(refusal(
                StatusCode::BAD_REQUEST,
                "the WebSocket subprotocol \"mqtt\" is required",
            )),
        }
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(max_message);
    config.max_frame_size = Some(max_message);
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, upgrade, Some(config)).await?;
    Ok(WsIo::new(ws))
}

fn refusal(status: StatusCode, text: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(text.to_owned()));
    *response.status_mut() = status;
    response
}

/// A WebSocket connection as a byte stream: reads return the payloads of binary messages in
/// order, each write is sent as one binary message. A text message is a protocol error
/// [MQTT-6.0.0-1]; a close ends the stream. Works for either side of a connection.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// What is left of the message being read.
    pending: Bytes,
}

impl<S> WsIo<S> {
    pub fn new(ws: WebSocketStream<S>) -> WsIo<S> {
        WsIo {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn io_error(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text WebSocket message: MQTT travels in binary messages",
                    )))
                }
                // The end of the stream, as a read of 0 bytes.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                // Pings are answered by the WebSocket layer (with the next flush).
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    let _ = Pin::new(&mut self.ws).poll_flush(cx);
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_error)?;
        // The message goes out now if the socket takes it, as a byte stream's write does;
        // what it does not take goes with the next write or flush.
        if let Poll::Ready(Err(e)) = Pin::new(&mut self.ws).poll_flush(cx) {
            return Poll::Ready(Err(io_error(e)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_error)
    }
}
