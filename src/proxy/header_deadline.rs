//! The client header timeout for what hyper leaves unbounded: the protocol detection
//! of a new connection and HTTP/2 header blocks (hyper's `header_read_timeout` is
//! HTTP/1's only; nginx bounds HTTP/2 headers with `client_header_timeout` since 1.19.7).
//!
//! [`HeaderDeadline`] wraps a client connection's IO and watches the bytes read. Until
//! the first bytes tell HTTP/2's preface from anything else, and then while an HTTP/2
//! header block is open (from a HEADERS frame's header to the end of the frame that
//! carries END_HEADERS), a timer runs; when it fires, the read fails with `TimedOut`
//! and hyper drops the connection. An HTTP/1 connection passes through after its first
//! bytes, with one branch per read: hyper's own timer bounds its heads.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame types that carry a header block (RFC 9113 §6.2, §6.10).
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
/// The flag of a header block's last frame.
const END_HEADERS: u8 = 0x4;
/// The frame header: 24-bit length, type, flags, 31-bit stream id.
const FRAME_HEADER: usize = 9;
/// Longer timeouts are a year: the clock cannot add [`Duration::MAX`].
const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// A client connection's IO whose preface and HTTP/2 header blocks must arrive within
/// a timeout. It is what hyper owns, upgraded tunnels included, so it also carries the
/// connection's permit of the connection limit, given back when the IO goes.
pub(crate) struct HeaderDeadline<S> {
    io: S,
    _permit: Option<OwnedSemaphorePermit>,
    phase: Phase,
    timeout: Duration,
    /// Armed at creation (for the protocol detection), reset when a header block opens.
    timer: Pin<Box<Sleep>>,
}

enum Phase {
    /// This many bytes matched the HTTP/2 preface so far.
    Preface(usize),
    /// HTTP/2: frames follow.
    Frames(Frames),
    /// Not HTTP/2: every read passes through.
    Other,
}

impl<S> HeaderDeadline<S> {
    /// `io`, whose first bytes (and HTTP/2 header blocks) must arrive within `timeout`,
    /// holding `permit` for as long as it lives.
    pub(crate) fn new(
        io: S,
        timeout: Duration,
        permit: Option<OwnedSemaphorePermit>,
    ) -> HeaderDeadline<S> {
        let timeout = timeout.min(LONGEST);
        HeaderDeadline {
            io,
            _permit: permit,
            phase: Phase::Preface(0),
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Follows the protocol through `bytes`, just read; restarts the timer when a
    /// header block opened in them.
    fn observe(&mut self, bytes: &[u8]) {
        let rest = match &mut self.phase {
            Phase::Preface(matched) => {
                let n = bytes.len().min(PREFACE.len() - *matched);
                if bytes[..n] != PREFACE[*matched..*matched + n] {
                    self.phase = Phase::Other;
                    return;
                }
                *matched += n;
                if *matched < PREFACE.len() {
                    return;
                }
                self.phase = Phase::Frames(Frames::default());
                &bytes[n..]
            }
            Phase::Frames(_) => bytes,
            Phase::Other => return,
        };
        if let Phase::Frames(frames) = &mut self.phase
            && frames.read(rest)
        {
            let deadline = Instant::now() + self.timeout;
            self.timer.as_mut().reset(deadline.into());
        }
    }

    /// Whether the timer counts now.
    fn armed(&self) -> bool {
        match &self.phase {
            Phase::Preface(_) => true,
            Phase::Frames(frames) => frames.in_block,
            Phase::Other => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeaderDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Phase::Other = this.phase {
            return read;
        }
        if let Poll::Ready(Ok(())) = read {
            this.observe(&buf.filled()[start..]);
        }
        if this.armed() && this.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client header timeout",
            )));
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Where an HTTP/2 connection's frames begin and end, from the bytes after the
/// preface, read in pieces of any size; knows whether a header block is open.
#[derive(Debug, Default)]
struct Frames {
    /// The frame header being read, and how much of it has arrived.
    header: [u8; FRAME_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload: u32,
    /// The current frame ends its header block.
    ends_block: bool,
    /// A header block is open.
    in_block: bool,
}

impl Frames {
    /// Reads `bytes`; whether a header block opened in them and is still open.
    fn read(&mut self, mut bytes: &[u8]) -> bool {
        let mut opened = false;
        while !bytes.is_empty() {
            if self.payload > 0 {
                let n = bytes.len().min(self.payload as usize);
                self.payload -= n as u32;
                bytes = &bytes[n..];
                if self.payload == 0 && self.ends_block {
                    self.in_block = false;
                }
                continue;
            }
            let n = bytes.len().min(FRAME_HEADER - self.have);
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < FRAME_HEADER {
                break;
            }
            self.have = 0;
            let [a, b, c, kind, flags, ..] = self.header;
            self.payload = u32::from_be_bytes([0, a, b, c]);
            self.ends_block = false;
            if kind == HEADERS || kind == CONTINUATION {
                opened |= !self.in_block;
                self.in_block = true;
                self.ends_block = flags & END_HEADERS != 0;
                if self.payload == 0 && self.ends_block {
                    self.in_block = false;
                }
            }
        }
        opened && self.in_block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// Whether a block is open after each byte of `stream`, read in pieces of `size`.
    fn open_after(stream: &[u8], size: usize) -> Vec<bool> {
        let mut frames = Frames::default();
        let mut open = Vec::new();
        for piece in stream.chunks(size) {
            frames.read(piece);
            open.push(frames.in_block);
        }
        open
    }

    #[test]
    fn header_blocks_open_and_close_across_any_read_boundaries() {
        const SETTINGS: u8 = 0x4;
        const DATA: u8 = 0x0;
        // SETTINGS, a block of HEADERS + 2 CONTINUATIONs, DATA, a one-frame block.
        let settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let headers = frame(HEADERS, 0, 1, &[0x82, 0x86]);
        let more = frame(CONTINUATION, 0, 1, &[0x84]);
        let last = frame(CONTINUATION, END_HEADERS, 1, &[0x41, 1, b'a']);
        let data = frame(DATA, 0x1, 1, b"body");
        let whole = frame(HEADERS, END_HEADERS | 0x1, 3, &[0x82, 0x86, 0x84]);
        let stream = [&settings[..], &headers, &more, &last, &data, &whole].concat();
        // The block opens with the last byte of HEADERS' frame header, closes with the
        // last byte of the frame that carries END_HEADERS; a one-frame block is open
        // from its frame header's end until its payload's.
        let block_open = settings.len() + FRAME_HEADER - 1;
        let block_close = settings.len() + headers.len() + more.len() + last.len() - 1;
        let whole_start = block_close + 1 + data.len();
        let expected: Vec<bool> = (0..stream.len())
            .map(|i| {
                (block_open..block_close).contains(&i)
                    || (whole_start + FRAME_HEADER - 1..stream.len() - 1).contains(&i)
            })
            .collect();
        assert_eq!(open_after(&stream, 1), expected, "byte by byte");
        for size in 2..=stream.len() {
            let at_ends: Vec<bool> = expected
                .chunks(size)
                .map(|piece| *piece.last().unwrap())
                .collect();
            assert_eq!(open_after(&stream, size), at_ends, "in pieces of {size}");
        }
    }

    #[test]
    fn a_read_reports_a_block_that_opened_in_it_and_stays_open() {
        let mut frames = Frames::default();
        let headers = frame(HEADERS, 0, 1, &[0x82]);
        let end = frame(CONTINUATION, END_HEADERS, 1, &[0x84]);
        assert!(frames.read(&headers[..FRAME_HEADER]), "opened");
        assert!(
            !frames.read(&headers[FRAME_HEADER..]),
            "still the same block"
        );
        // One read that closes a block and opens the next.
        assert!(frames.read(&[end.as_slice(), &headers].concat()));
        // One read that holds a whole block.
        assert!(!frames.read(&[end.as_slice(), &headers, &end].concat()));
        assert!(!frames.in_block);
    }

    async fn read_all(io: &mut HeaderDeadline<tokio::io::DuplexStream>) -> io::Result<()> {
        let mut buf = [0u8; 64];
        while io.read(&mut buf).await? > 0 {}
        Ok(())
    }

    // Real time: the deadline is read from the std clock, which a paused Tokio clock
    // would leave behind.
    const TIMEOUT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn an_open_block_times_out_and_a_closed_one_does_not() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = HeaderDeadline::new(server, TIMEOUT, None);
        let reader = tokio::spawn(async move { read_all(&mut server).await });
        client.write_all(PREFACE).await.unwrap();
        let whole = frame(HEADERS, END_HEADERS, 1, &[0x82]);
        client.write_all(&whole).await.unwrap();
        tokio::time::sleep(TIMEOUT * 3).await;
        assert!(!reader.is_finished(), "no block open: no timeout");
        let start = Instant::now();
        let open = frame(HEADERS, 0, 3, &[0x82]);
        client.write_all(&open).await.unwrap();
        let error = reader.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= TIMEOUT, "timed out early");
    }

    #[tokio::test]
    async fn the_preface_is_bounded_and_http1_passes_through() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = HeaderDeadline::new(server, TIMEOUT, None);
        let reader = tokio::spawn(async move { read_all(&mut server).await });
        client.write_all(&PREFACE[..10]).await.unwrap();
        let error = reader.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = HeaderDeadline::new(server, TIMEOUT, None);
        let reader = tokio::spawn(async move { read_all(&mut server).await });
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(TIMEOUT * 3).await;
        assert!(!reader.is_finished(), "HTTP/1 is hyper's to time out");
        drop(client);
        reader.await.unwrap().unwrap();
    }
}
