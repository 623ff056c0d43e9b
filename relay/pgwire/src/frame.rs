//! Backend message framing: `tag: u8, length: i32 (including itself), body`.
//!
//! Whole messages are cut out of one large read buffer with
//! `split_to(..).freeze()`, so a message body (and the WAL data inside it)
//! is handed out without copying.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::error::{PgWireError, ServerError};
use crate::silence::Heard;

/// Tag byte plus the length word.
pub(crate) const HEADER_LEN: usize = 5;

/// Largest body we accept. The server cannot send a single message larger than
/// its 1 GB allocation limit; anything bigger is a corrupt stream, and
/// believing it would have us try to allocate it.
pub const MAX_MESSAGE_LEN: usize = (1 << 30) + (1 << 20);

/// How much to ask the socket for at a time: large reads keep syscalls per
/// message low when WAL streams in fast.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// Below this much free space a fresh chunk is allocated rather than reading
/// into the tail of the current one. Frames handed out keep their chunk
/// alive, so allocating a new chunk for every small read would let a trickle
/// of retained messages pin a whole chunk each.
const MIN_SPARE: usize = 8 * 1024;

/// Backend message tags this crate looks at.
pub(crate) mod tag {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
}

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub tag: u8,
    pub body: Bytes,
}

/// Cuts one whole message off the front of `buf`, or returns `None` if it has
/// not fully arrived yet. A body longer than `max_len` is an error as soon as
/// its header is there.
pub(crate) fn split_frame(
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<Frame>, PgWireError> {
    let Some(total) = frame_len(buf, max_len)? else {
        return Ok(None);
    };
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    let tag = frame[0];
    frame.advance(HEADER_LEN);
    Ok(Some(Frame { tag, body: frame }))
}

/// Total length (header included) of the message starting `buf`, once its
/// header is there.
fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, PgWireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len as usize - 4 > MAX_MESSAGE_LEN {
        return Err(PgWireError::protocol(format!(
            "backend message {:?} has impossible length {len}",
            char::from(buf[0])
        )));
    }
    let body = len as usize - 4;
    if body > max_len {
        return Err(PgWireError::MessageTooLarge {
            tag: char::from(buf[0]),
            len: body,
            limit: max_len,
        });
    }
    Ok(Some(1 + len as usize))
}

/// Reads whole messages from a byte stream.
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    /// Bodies longer than this are refused (`MessageTooLarge`).
    max_len: usize,
    /// Longest wait for bytes in one read; `None` waits forever.
    idle_limit: Option<Duration>,
    /// Told whenever bytes arrive, for whoever watches the connection's silence.
    heard: Option<Arc<Heard>>,
    /// With [`FrameReader::coalesce_reads`]: the shortest time between two reads that
    /// find the socket drained.
    read_gap: Option<Duration>,
    /// When the last read returned.
    last_read: Option<Instant>,
    /// The TCP socket read, whose low-water mark is raised while waiting out a read gap.
    socket: Option<std::os::fd::RawFd>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max_len: MAX_MESSAGE_LEN,
            idle_limit: None,
            heard: None,
            read_gap: None,
            last_read: None,
            socket: None,
        }
    }

    /// `fd` is the TCP socket under `inner` (see [`crate::low_water`]); it must stay open
    /// as long as this reader.
    pub fn set_socket(&mut self, fd: std::os::fd::RawFd) {
        self.socket = Some(fd);
    }

    /// With `Some(gap)`: when the socket is drained and the last read returned less
    /// than `gap` ago, wait out the rest of `gap` before waiting for bytes, so that one
    /// wake-up reads what arrived meanwhile. `None` reads as soon as bytes arrive.
    ///
    /// Why: a reader faster than its sender otherwise parks and is woken for every few
    /// messages. It costs up to `gap` (rounded up to the timer's millisecond) of latency
    /// while messages keep coming; the first read after a quiet spell is not delayed,
    /// nor a read that finds bytes waiting, nor one in the middle of a message.
    pub fn coalesce_reads(&mut self, gap: Option<Duration>) {
        self.read_gap = gap;
        if gap.is_none() {
            self.last_read = None;
        }
    }

    /// Refuses bodies longer than `max_len` (at most [`MAX_MESSAGE_LEN`]).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len.min(MAX_MESSAGE_LEN);
    }

    /// From now on, a read that gets no byte for `limit` fails with
    /// `ReceiveTimeout`, and `heard` learns of every read that gets some.
    pub fn watch_silence(&mut self, limit: Option<Duration>, heard: Arc<Heard>) {
        self.idle_limit = limit;
        self.heard = Some(heard);
    }

    /// The next message. End of stream, even between messages, is
    /// `ConnectionClosed`: the protocol always ends with our Terminate, so the
    /// server hanging up first is never the normal case.
    ///
    /// Cancel-safe: bytes read so far stay buffered.
    pub async fn next_frame(&mut self) -> Result<Frame, PgWireError> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf, self.max_len)? {
                return Ok(frame);
            }
            // A big message gets the whole rest reserved at once so that it
            // lands in one allocation instead of doubling its way up.
            let missing = match frame_len(&self.buf, self.max_len)? {
                Some(total) => total - self.buf.len(),
                None => HEADER_LEN - self.buf.len(),
            };
            let spare = self.buf.capacity() - self.buf.len();
            if spare < missing.max(MIN_SPARE) {
                self.buf.reserve(missing.max(READ_CHUNK));
            }
            if let (Some(gap), Some(at), true) =
                (self.read_gap, self.last_read, self.buf.is_empty())
            {
                // Bytes already waiting are read at once; only a drained socket waits.
                if let Some(read) = self.inner.read_buf(&mut self.buf).now_or_never() {
                    self.after_read(read?)?;
                    continue;
                }
                let since = at.elapsed();
                if since < gap {
                    // Packets below the raised mark do not wake the thread while it
                    // sleeps; the mark is lowered (and what is queued signalled) when
                    // `_raised` drops, after the sleep or on cancellation.
                    let _raised = self.socket.and_then(crate::low_water::Raised::raise);
                    tokio::time::sleep(gap - since).await;
                }
            }
            let read = self.inner.read_buf(&mut self.buf);
            let n = match self.idle_limit {
                Some(limit) => tokio::time::timeout(limit, read)
                    .await
                    .map_err(|_| PgWireError::ReceiveTimeout { timeout: limit })??,
                None => read.await?,
            };
            self.after_read(n)?;
        }
    }

    fn after_read(&mut self, n: usize) -> Result<(), PgWireError> {
        if n == 0 {
            return Err(PgWireError::ConnectionClosed);
        }
        if self.read_gap.is_some() {
            self.last_read = Some(Instant::now());
        }
        if let Some(heard) = &self.heard {
            heard.touch();
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Bounds-checked reader over a message body: a truncated message is a
/// protocol error, never a panic.
pub(crate) struct Body<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Body<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Body { buf, what }
    }

    fn truncated(&self) -> PgWireError {
        PgWireError::protocol(format!("truncated {} message", self.what))
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], PgWireError> {
        if self.buf.len() < n {
            return Err(self.truncated());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, PgWireError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn i16(&mut self) -> Result<i16, PgWireError> {
        Ok(i16::from_be_bytes(self.bytes(2)?.try_into().unwrap()))
    }

    pub fn i32(&mut self) -> Result<i32, PgWireError> {
        Ok(i32::from_be_bytes(self.bytes(4)?.try_into().unwrap()))
    }

    pub fn u64(&mut self) -> Result<u64, PgWireError> {
        Ok(u64::from_be_bytes(self.bytes(8)?.try_into().unwrap()))
    }

    pub fn i64(&mut self) -> Result<i64, PgWireError> {
        Ok(i64::from_be_bytes(self.bytes(8)?.try_into().unwrap()))
    }

    /// A NUL-terminated string, without the NUL.
    pub fn cstr(&mut self) -> Result<&'a [u8], PgWireError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.truncated())?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub fn cstr_lossy(&mut self) -> Result<String, PgWireError> {
        Ok(String::from_utf8_lossy(self.cstr()?).into_owned())
    }
}

/// Parses the body of an ErrorResponse or NoticeResponse.
pub(crate) fn parse_error_fields(body: &[u8]) -> Result<ServerError, PgWireError> {
    let mut b = Body::new(body, "ErrorResponse");
    let mut localized_severity = None;
    let mut e = ServerError {
        severity: String::new(),
        code: String::new(),
        message: String::new(),
        detail: None,
        hint: None,
    };
    loop {
        let field = b.u8()?;
        if field == 0 {
            break;
        }
        let value = b.cstr_lossy()?;
        match field {
            // 'V' is the untranslated severity (9.6+); 'S' may be localized.
            b'V' => e.severity = value,
            b'S' => localized_severity = Some(value),
            b'C' => e.code = value,
            b'M' => e.message = value,
            b'D' => e.detail = Some(value),
            b'H' => e.hint = Some(value),
            _ => {}
        }
    }
    if e.severity.is_empty() {
        e.severity = localized_severity.unwrap_or_else(|| String::from("ERROR"));
    }
    Ok(e)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;

    pub fn encode(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// Hands out its data in the given chunk sizes, one chunk per read, to
    /// exercise messages that straddle reads.
    pub struct Chunked {
        data: Vec<u8>,
        pos: usize,
        chunks: Vec<usize>,
        next_chunk: usize,
    }

    impl Chunked {
        pub fn new(data: Vec<u8>, chunks: Vec<usize>) -> Self {
            Chunked {
                data,
                pos: 0,
                chunks,
                next_chunk: 0,
            }
        }
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let this = &mut *self;
            let size = if this.chunks.is_empty() {
                usize::MAX
            } else {
                this.chunks[this.next_chunk % this.chunks.len()]
            };
            this.next_chunk += 1;
            let n = size.min(out.remaining()).min(this.data.len() - this.pos);
            out.put_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn splits_whole_frames_only() {
        let mut wire = encode(b'Z', b"I");
        wire.extend(encode(b'd', b"hello"));
        let mut buf = BytesMut::from(&wire[..7]);
        assert_eq!(
            split_frame(&mut buf, MAX_MESSAGE_LEN).unwrap(),
            Some(Frame {
                tag: b'Z',
                body: Bytes::from_static(b"I")
            })
        );
        assert_eq!(
            split_frame(&mut buf, MAX_MESSAGE_LEN).unwrap(),
            None,
            "header only partly there"
        );
        buf.extend_from_slice(&wire[7..12]);
        assert_eq!(
            split_frame(&mut buf, MAX_MESSAGE_LEN).unwrap(),
            None,
            "body only partly there"
        );
        buf.extend_from_slice(&wire[12..]);
        assert_eq!(
            split_frame(&mut buf, MAX_MESSAGE_LEN).unwrap(),
            Some(Frame {
                tag: b'd',
                body: Bytes::from_static(b"hello")
            })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_impossible_lengths() {
        for len in [-1i32, 0, 3, i32::MAX] {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(b"d");
            buf.extend_from_slice(&len.to_be_bytes());
            assert!(
                matches!(
                    split_frame(&mut buf, MAX_MESSAGE_LEN),
                    Err(PgWireError::Protocol(_))
                ),
                "{len}"
            );
        }
        // An empty body is fine.
        let mut buf = BytesMut::from(&encode(b'c', b"")[..]);
        assert_eq!(
            split_frame(&mut buf, MAX_MESSAGE_LEN)
                .unwrap()
                .unwrap()
                .body
                .len(),
            0
        );
    }

    #[tokio::test]
    async fn reads_across_partial_reads() {
        let big: Vec<u8> = (0..700_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        wire.extend(encode(b'S', b"a\0b\0"));
        wire.extend(encode(b'd', &big));
        wire.extend(encode(b'c', b""));
        for chunks in [vec![1], vec![3, 7], vec![4096], vec![]] {
            let mut r = FrameReader::new(Chunked::new(wire.clone(), chunks.clone()));
            let f = r.next_frame().await.unwrap();
            assert_eq!((f.tag, &f.body[..]), (b'S', &b"a\0b\0"[..]), "{chunks:?}");
            let f = r.next_frame().await.unwrap();
            assert_eq!(f.tag, b'd');
            assert_eq!(f.body, big, "{chunks:?}");
            let f = r.next_frame().await.unwrap();
            assert_eq!((f.tag, f.body.len()), (b'c', 0));
            assert!(matches!(
                r.next_frame().await,
                Err(PgWireError::ConnectionClosed)
            ));
            assert_eq!(r.buffered(), 0);
        }
    }

    #[tokio::test]
    async fn small_reads_share_a_chunk_while_frames_are_retained() {
        let one = encode(b'd', &[7u8; 100]);
        let wire: Vec<u8> = one.iter().copied().cycle().take(one.len() * 200).collect();
        let mut r = FrameReader::new(Chunked::new(wire, vec![one.len()]));
        let mut kept = Vec::new();
        for _ in 0..200 {
            kept.push(r.next_frame().await.unwrap());
        }
        // Each frame's bytes follow the previous one's in the same allocation.
        let contiguous = kept
            .windows(2)
            .filter(|w| w[1].body.as_ptr() as usize == w[0].body.as_ptr() as usize + one.len())
            .count();
        assert_eq!(contiguous, 199);
    }

    #[tokio::test]
    async fn a_body_above_the_limit_is_refused_before_allocating_it() {
        let mut wire = encode(b'd', &[1u8; 100]);
        wire.extend_from_slice(b"d");
        wire.extend_from_slice(&(512i32 * 1024 * 1024 + 4).to_be_bytes());
        let mut r = FrameReader::new(Chunked::new(wire, vec![]));
        r.set_max_len(64 * 1024);
        assert_eq!(r.next_frame().await.unwrap().body.len(), 100);
        match r.next_frame().await {
            Err(PgWireError::MessageTooLarge { tag, len, limit }) => {
                assert_eq!((tag, len, limit), ('d', 512 * 1024 * 1024, 64 * 1024))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            r.capacity() <= READ_CHUNK,
            "{} bytes reserved",
            r.capacity()
        );
        // At the limit exactly is fine.
        let mut r = FrameReader::new(Chunked::new(encode(b'd', &[0u8; 1000]), vec![]));
        r.set_max_len(1000);
        assert_eq!(r.next_frame().await.unwrap().body.len(), 1000);
    }

    #[tokio::test]
    async fn eof_mid_message_is_connection_closed() {
        let wire = encode(b'd', b"0123456789");
        let mut r = FrameReader::new(Chunked::new(wire[..8].to_vec(), vec![]));
        assert!(matches!(
            r.next_frame().await,
            Err(PgWireError::ConnectionClosed)
        ));
    }

    #[test]
    fn parses_error_fields() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"x\"\0Rauth_failed\0\0";
        let e = parse_error_fields(body).unwrap();
        assert_eq!(e.severity, "FATAL");
        assert_eq!(e.code, "28P01");
        assert_eq!(e.message, "password authentication failed for user \"x\"");
        assert_eq!(e.detail, None);
        // Localized 'S' only (pre-9.6 servers).
        let e = parse_error_fields(b"SFEHLER\0C42704\0Mnope\0\0").unwrap();
        assert_eq!(e.severity, "FEHLER");
        assert!(parse_error_fields(b"C42704\0Mno terminator").is_err());
    }

    /// Paced reads: bytes already waiting are read at once; a drained socket is read
    /// again only `gap` after the last read; without a gap, as soon as bytes arrive.
    #[tokio::test(start_paused = true)]
    async fn coalesced_reads_wait_out_the_gap_only_when_the_socket_is_drained() {
        use tokio::io::AsyncWriteExt;
        let gap = Duration::from_millis(10);
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(client);
        reader.coalesce_reads(Some(gap));
        let t0 = Instant::now();
        server.write_all(&encode(b'd', b"one")).await.unwrap();
        assert_eq!(&reader.next_frame().await.unwrap().body[..], b"one");
        server.write_all(&encode(b'd', b"two")).await.unwrap();
        assert_eq!(&reader.next_frame().await.unwrap().body[..], b"two");
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "bytes waiting are read at once"
        );

        let late = |mut server: tokio::io::DuplexStream, body: &'static [u8]| {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                server.write_all(&encode(b'd', body)).await.unwrap();
                server
            })
        };
        let writer = late(server, b"three");
        assert_eq!(&reader.next_frame().await.unwrap().body[..], b"three");
        assert_eq!(t0.elapsed(), gap, "a drained socket waits out the gap");
        let server = writer.await.unwrap();

        reader.coalesce_reads(None);
        let t1 = Instant::now();
        let writer = late(server, b"four");
        assert_eq!(&reader.next_frame().await.unwrap().body[..], b"four");
        assert_eq!(
            t1.elapsed(),
            Duration::from_millis(1),
            "no gap: read on arrival"
        );
        drop(writer);
    }

    /// On a real socket the receive low-water mark is raised only while a paced read
    /// sleeps, and lowered again after it, also when the read is cancelled mid-sleep; a
    /// message smaller than the raised mark still arrives at the end of the gap.
    #[tokio::test]
    async fn the_low_water_mark_is_raised_only_while_a_paced_read_sleeps() {
        use crate::low_water::{get, RAISED_BYTES};
        use std::os::fd::AsRawFd;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let fd = client.as_raw_fd();
        let gap = Duration::from_millis(300);
        let mut reader = FrameReader::new(client);
        reader.set_socket(fd);
        reader.coalesce_reads(Some(gap));
        server.write_all(&encode(b'd', b"one")).await.unwrap();
        assert_eq!(&reader.next_frame().await.unwrap().body[..], b"one");
        assert_eq!(get(fd), 1, "not raised while reading");

        let started = Instant::now();
        let read = tokio::spawn(async move {
            let frame = reader.next_frame().await.unwrap();
            (frame, reader)
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(get(fd), RAISED_BYTES, "raised while the read sleeps");
        server.write_all(&encode(b'd', b"two")).await.unwrap();
        // A mark left high would hold the small message back: fail, do not hang.
        let limit = Duration::from_secs(5);
        let (frame, mut reader) = tokio::time::timeout(limit, read)
            .await
            .expect("the message arrives after the gap")
            .unwrap();
        assert_eq!(&frame.body[..], b"two", "a small message still arrives");
        assert!(started.elapsed() >= gap - Duration::from_millis(5));
        assert_eq!(get(fd), 1, "lowered after the sleep");

        // Cancelled in the middle of the sleep (as a select! on shutdown does).
        let cancelled = tokio::time::timeout(Duration::from_millis(50), reader.next_frame()).await;
        assert!(cancelled.is_err());
        assert_eq!(get(fd), 1, "lowered when the read is dropped");
        server.write_all(&encode(b'd', b"three")).await.unwrap();
        let frame = tokio::time::timeout(limit, reader.next_frame())
            .await
            .expect("the message arrives after a cancelled read")
            .unwrap();
        assert_eq!(&frame.body[..], b"three");
    }
}
