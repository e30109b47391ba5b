//! A connection's byte stream: packets read through an adaptive buffer, output written out
//! in batches, and both buffers given back while the connection is idle.
//!
//! Everything here is pollable without a stored future, so the connection's wait carries
//! nothing for its socket (see `wait.rs`).

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use mqtt_codec::{DecodeError, Decoder, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::listener_metrics::ListenerFigures;
use crate::metrics::Metrics;

/// The most room made in the read buffer for one read: a busy connection's reads grow to
/// this; a quiet one's stay at [`MIN_READ`].
const READ_CHUNK: usize = 8 * 1024;
/// The room made for a read on a quiet connection (a CONNECT, a PINGREQ).
const MIN_READ: usize = 256;

/// A stream a connection is served over.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Whether [`poll_read_ready`](Self::poll_read_ready) tells without reading, so an idle
    /// connection can wait with no read buffer at all (plain TCP). The others answer "read
    /// and see", and keep their buffer while they wait.
    const READY_WITHOUT_READING: bool = false;

    /// Ready once a read may find something.
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Transport for tokio::net::TcpStream {
    const READY_WITHOUT_READING: bool = true;

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for tokio_rustls::server::TlsStream<S> {}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for crate::ws::WsIo<S> {}

#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

pub(super) struct Io<S> {
    pub(super) stream: S,
    pub(super) read_buf: BytesMut,
    /// Room to make for the next read: doubled while reads fill what there is, back to
    /// what was read when they do not.
    read_room: usize,
    pub(super) write_buf: BytesMut,
    pub(super) decoder: Decoder,
}

impl<S: Transport> Io<S> {
    pub(super) fn new(stream: S, decoder: Decoder) -> Io<S> {
        Io {
            stream,
            read_buf: BytesMut::new(),
            read_room: MIN_READ,
            write_buf: BytesMut::new(),
            decoder,
        }
    }

    /// Reads until one packet is complete.
    pub(super) async fn read_packet(
        &mut self,
        figures: &ListenerFigures,
    ) -> Result<Option<Packet>, ReadError> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.read_buf)? {
                return Ok(Some(packet));
            }
            if std::future::poll_fn(|cx| self.poll_read_more(cx, figures)).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads what the stream has (0: closed), into a buffer made when there is something
    /// to read.
    pub(super) fn poll_read_more(
        &mut self,
        cx: &mut Context<'_>,
        figures: &ListenerFigures,
    ) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() == 0 {
            ready!(self.stream.poll_read_ready(cx))?;
        }
        let spare = self.read_buf.capacity() - self.read_buf.len();
        if spare < self.read_room / 4 {
            self.read_buf.reserve(self.read_room);
        }
        let spare = self.read_buf.capacity() - self.read_buf.len();
        // A read future holds nothing but its two borrows: made for one poll, nothing is
        // lost when it is dropped pending.
        let n = ready!(pin!(self.stream.read_buf(&mut self.read_buf)).poll(cx))?;
        self.read_room = next_read_room(n, spare);
        Metrics::add(&figures.bytes_received, n as u64);
        Poll::Ready(Ok(n))
    }

    /// Writes the buffer out. What was written leaves the buffer as it goes, so a flush
    /// given up (takeover, shutdown) and started again never repeats bytes.
    pub(super) fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        figures: &ListenerFigures,
    ) -> Poll<io::Result<()>> {
        while !self.write_buf.is_empty() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.write_buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.write_buf.advance(n);
            Metrics::add(&figures.bytes_sent, n as u64);
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    pub(super) async fn flush(&mut self, figures: &ListenerFigures) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx, figures)).await
    }

    /// Whether it holds a buffer [`release_empty_buffers`](Self::release_empty_buffers)
    /// could give back.
    pub(super) fn holds_buffers(&self) -> bool {
        (S::READY_WITHOUT_READING && self.read_buf.capacity() > 0) || self.write_buf.capacity() > 0
    }

    /// Gives the buffers back while there is nothing in them: an idle connection (most of
    /// them, at any time) then holds none. A busy one makes them again at its next read
    /// or write, one allocation per batch of packets. The read buffer is kept by transports
    /// that need one to wait.
    pub(super) fn release_empty_buffers(&mut self) {
        if S::READY_WITHOUT_READING && self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        if self.write_buf.is_empty() {
            self.write_buf = BytesMut::new();
        }
    }
}

/// The room for the next read after one that read `n` bytes into `spare`: twice as much
/// when it filled the buffer (more is waiting), else about what it read.
fn next_read_room(n: usize, spare: usize) -> usize {
    match n >= spare {
        true => spare.saturating_mul(2),
        false => n.saturating_mul(2),
    }
    .clamp(MIN_READ, READ_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_that_fill_the_buffer_grow_it_and_small_ones_shrink_it() {
        // An idle connection (a PINGREQ now and then) keeps the smallest room.
        assert_eq!(next_read_room(2, MIN_READ), MIN_READ);
        // A full read doubles the room, up to READ_CHUNK.
        assert_eq!(next_read_room(MIN_READ, MIN_READ), 2 * MIN_READ);
        assert_eq!(next_read_room(READ_CHUNK, READ_CHUNK), READ_CHUNK);
        // After a burst, the room follows what was read.
        assert_eq!(next_read_room(1000, READ_CHUNK), 2000);
        assert_eq!(next_read_room(0, READ_CHUNK), MIN_READ);
    }
}
