//! A client-connection wrapper that repairs a malformed HTTP/2 `:authority` before hyper sees it.
//!
//! Why this exists: grpc-go clients of the etcd 3.4 era (etcdctl 3.4 with its "passthrough"
//! resolver, e.g. `etcdctl endpoint status --cluster`) send `:authority: http://127.0.0.1:2379`,
//! scheme included. grpc-go's server (real etcd) ignores that; the `h2` crate under hyper rejects
//! it as a malformed authority and resets the stream with PROTOCOL_ERROR, and h2 will not relax
//! the check. So we fix the bytes on the way in.
//!
//! How: the wrapper watches the client->server byte stream only. HTTP/1.1 connections (no HTTP/2
//! preface) pass through untouched. On an HTTP/2 connection it parses frames up to the first
//! complete header block and HPACK-decodes it with a decoder that tracks the client's dynamic
//! table:
//! - `:authority` valid (the normal case): the connection switches to pass-through for good and
//!   the original bytes go on unchanged, so hyper's decoder sees the identical stream and the
//!   wrapper costs nothing afterwards.
//! - `:authority` malformed: every header block of this connection, this one included, is decoded
//!   and re-encoded as literals that never touch the dynamic table (so the downstream decoder's
//!   table stays empty and consistent no matter what the client indexed), with the authority
//!   stripped of its scheme and path. All other frames pass through byte for byte.
//!
//! Writes (server->client) always pass straight through.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::encoder::encode_integer_into;
use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The SETTINGS_MAX_FRAME_SIZE our server advertises (hyper's default, HTTP/2's initial value):
/// rewritten header blocks are split into frames no larger than this.
const MAX_FRAME_SIZE: usize = 16_384;
/// Header blocks larger than this (raw, or decoded as name + value + 32 per field) are not
/// rewritten: before the decision they pass through for h2 to judge, after it they end the
/// connection. h2 itself allows far less (its header list limit is 16 KiB by default).
const MAX_BLOCK: usize = 1 << 20;
/// How much is read from the client at a time while frames are being parsed.
const READ_CHUNK: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Checking whether the connection starts with the HTTP/2 client preface.
    Preface,
    /// HTTP/2, before the first complete header block.
    Detect,
    /// The client sends malformed authorities: header blocks are re-encoded.
    Rewrite,
    /// Bytes go through untouched (HTTP/1.1, or a client with valid authorities).
    Passthrough,
}

/// Wraps an accepted client connection; see the module documentation.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    /// Client bytes read but not yet examined.
    input: BytesMut,
    /// Examined (or rewritten) bytes waiting to be read by hyper.
    output: BytesMut,
    /// Payload bytes of the current non-header frame still to forward as they are.
    skip: usize,
    /// Tracks the client's HPACK dynamic table; only needed until pass-through is chosen.
    decoder: Option<Decoder<'static>>,
    /// Scratch space for header block fragments and their re-encoding.
    scratch: Vec<u8>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            mode: Mode::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            skip: 0,
            decoder: None,
            scratch: Vec::new(),
        }
    }

    /// Whether this connection's header blocks are being rewritten.
    pub fn is_rewriting(&self) -> bool {
        self.mode == Mode::Rewrite
    }

    /// Moves `n` examined input bytes to the output unchanged.
    fn forward(&mut self, n: usize) {
        self.output.extend_from_slice(&self.input[..n]);
        self.input.advance(n);
    }

    /// Examines as much buffered input as possible.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    self.forward(self.input.len());
                    return Ok(());
                }
                Mode::Preface => {
                    let n = self.input.len().min(PREFACE.len());
                    if self.input[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                    } else if n < PREFACE.len() {
                        return Ok(());
                    } else {
                        self.forward(n);
                        self.mode = Mode::Detect;
                        self.decoder = Some(Decoder::new());
                    }
                }
                Mode::Detect | Mode::Rewrite => {
                    if self.skip > 0 {
                        let n = self.skip.min(self.input.len());
                        self.forward(n);
                        self.skip -= n;
                        if self.skip > 0 {
                            return Ok(());
                        }
                        continue;
                    }
                    if self.input.len() < FRAME_HEADER_LEN {
                        return Ok(());
                    }
                    let typ = self.input[3];
                    if typ != TYPE_HEADERS && typ != TYPE_CONTINUATION {
                        self.skip = frame_len(&self.input);
                        self.forward(FRAME_HEADER_LEN);
                        continue;
                    }
                    match scan_block(&self.input, None) {
                        Ok(Some(_)) => self.header_block()?,
                        Ok(None) if self.input.len() <= MAX_BLOCK => return Ok(()),
                        Ok(None) => self.give_up("header block too large")?,
                        Err(e) => self.give_up(e)?,
                    }
                }
            }
        }
    }

    /// Something we cannot rewrite. Before the decision, hand the bytes to h2 unchanged and let
    /// it judge them; once rewriting, the byte streams have diverged, so end the connection.
    fn give_up(&mut self, why: &str) -> io::Result<()> {
        if self.mode == Mode::Rewrite {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("HTTP/2 authority rewrite: {why}"),
            ));
        }
        self.mode = Mode::Passthrough;
        self.decoder = None;
        Ok(())
    }

    /// Handles the complete header block at the start of `input`.
    fn header_block(&mut self) -> io::Result<()> {
        let block = scan_block(&self.input, Some(&mut self.scratch))
            .ok()
            .flatten()
            .expect("caller checked that a complete block is buffered");
        let decoder = self
            .decoder
            .as_mut()
            .expect("decoder lives until pass-through");
        let mut headers = Vec::new();
        let mut size = 0usize;
        let decoded = decoder.decode_with_cb(&self.scratch, |name, value| {
            // Bounded even against indexed-field bombs: count everything, keep within the limit.
            size = size.saturating_add(name.len() + value.len() + 32);
            if size <= MAX_BLOCK {
                headers.push((name.into_owned(), value.into_owned()));
            }
        });
        if decoded.is_err() {
            return self.give_up("HPACK decoding failed");
        }
        if size > MAX_BLOCK {
            return self.give_up("header list too large");
        }
        if self.mode == Mode::Detect {
            let bad = headers
                .iter()
                .find(|(name, value)| name == b":authority" && !valid_authority(value));
            let Some((_, bad)) = bad else {
                self.mode = Mode::Passthrough;
                self.decoder = None;
                return Ok(());
            };
            tracing::debug!(
                authority = %String::from_utf8_lossy(bad),
                "client sends a malformed HTTP/2 :authority; rewriting its header blocks"
            );
            self.mode = Mode::Rewrite;
        }
        self.input.advance(block.raw_len);

        // Re-encode: every field as "literal header field without indexing, new name" (RFC 7541
        // 6.2.2), so the downstream decoder's dynamic table is never written to.
        self.scratch.clear();
        for (name, value) in &headers {
            let value = if name == b":authority" {
                match fix_authority(value) {
                    Some(v) => v,
                    // Nothing usable left: drop it, as grpc-go's server would ignore it.
                    None => continue,
                }
            } else {
                value
            };
            self.scratch.push(0x00);
            encode_integer_into(name.len(), 7, 0, &mut self.scratch)?;
            self.scratch.extend_from_slice(name);
            encode_integer_into(value.len(), 7, 0, &mut self.scratch)?;
            self.scratch.extend_from_slice(value);
        }

        // HEADERS (END_STREAM kept, padding and priority dropped), then CONTINUATIONs.
        let mut rest: &[u8] = &self.scratch;
        let mut typ = TYPE_HEADERS;
        let mut flags = block.flags & FLAG_END_STREAM;
        loop {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME_SIZE));
            if tail.is_empty() {
                flags |= FLAG_END_HEADERS;
            }
            self.output.reserve(FRAME_HEADER_LEN + chunk.len());
            self.output.put_uint(chunk.len() as u64, 3);
            self.output.put_u8(typ);
            self.output.put_u8(flags);
            self.output.put_u32(block.stream_id);
            self.output.extend_from_slice(chunk);
            if tail.is_empty() {
                return Ok(());
            }
            rest = tail;
            typ = TYPE_CONTINUATION;
            flags = 0;
        }
    }
}

fn frame_len(header: &[u8]) -> usize {
    (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2])
}

struct Block {
    /// Length of the HEADERS and CONTINUATION frames in the input.
    raw_len: usize,
    stream_id: u32,
    /// The HEADERS frame's flags.
    flags: u8,
}

/// Finds the header block at the start of `input`: `Ok(None)` while it is incomplete. With
/// `fragment`, also collects the block's HPACK bytes there (a separate pass, so waiting for a
/// large block does not copy it over and over).
fn scan_block(
    input: &[u8],
    mut fragment: Option<&mut Vec<u8>>,
) -> Result<Option<Block>, &'static str> {
    if let Some(f) = fragment.as_deref_mut() {
        f.clear();
    }
    let mut pos = 0;
    let mut first: Option<(u32, u8)> = None;
    loop {
        let Some(header) = input.get(pos..pos + FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let len = frame_len(header);
        let (typ, flags) = (header[3], header[4]);
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let start = pos + FRAME_HEADER_LEN;
        let Some(mut payload) = input.get(start..start + len) else {
            return Ok(None);
        };
        match first {
            None => {
                if typ != TYPE_HEADERS {
                    return Err("CONTINUATION without HEADERS");
                }
                first = Some((stream_id, flags));
                if flags & FLAG_PADDED != 0 {
                    let (&pad, rest) = payload.split_first().ok_or("bad padding")?;
                    let end = rest.len().checked_sub(pad.into()).ok_or("bad padding")?;
                    payload = &rest[..end];
                }
                if flags & FLAG_PRIORITY != 0 {
                    payload = payload.get(5..).ok_or("bad priority")?;
                }
            }
            Some((id, _)) if typ != TYPE_CONTINUATION || stream_id != id => {
                return Err("header block interrupted");
            }
            Some(_) => {}
        }
        if let Some(f) = fragment.as_deref_mut() {
            f.extend_from_slice(payload);
        }
        pos = start + len;
        if flags & FLAG_END_HEADERS != 0 {
            let (stream_id, flags) = first.expect("set on the first frame");
            return Ok(Some(Block {
                raw_len: pos,
                stream_id,
                flags,
            }));
        }
    }
}

/// What h2 accepts as `:authority`. (A scheme such as `http://` never parses: '/' is not allowed.)
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// `http://127.0.0.1:2379/x` -> `127.0.0.1:2379`; `None` if nothing valid remains.
fn fix_authority(value: &[u8]) -> Option<&[u8]> {
    let rest = match value.windows(3).position(|w| w == b"://") {
        Some(i) => &value[i + 3..],
        None => value,
    };
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let fixed = &rest[..end];
    valid_authority(fixed).then_some(fixed)
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                if this.output.is_empty() && this.mode == Mode::Passthrough {
                    // Done with the buffers for good: free them.
                    this.input = BytesMut::new();
                    this.output = BytesMut::new();
                    this.scratch = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Passthrough {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let start = this.input.len();
            this.input.resize(start + READ_CHUNK, 0);
            let mut chunk = ReadBuf::new(&mut this.input[start..]);
            let res = Pin::new(&mut this.inner).poll_read(cx, &mut chunk);
            let n = chunk.filled().len();
            this.input.truncate(start + n);
            ready!(res)?;
            if n == 0 {
                // EOF: hand over what is left (an incomplete frame at most); h2 reports it.
                let rest = this.input.len();
                this.forward(rest);
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Delivers the given chunks one read at a time, returning Pending before each one.
    struct Chunks {
        chunks: VecDeque<Vec<u8>>,
        pending: bool,
        written: Vec<u8>,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.pending = !self.pending;
            if self.pending {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(mut c) = self.chunks.pop_front() {
                let n = c.len().min(buf.remaining());
                buf.put_slice(&c[..n]);
                if n < c.len() {
                    self.chunks.push_front(c.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Chunks {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn run(chunks: Vec<Vec<u8>>) -> (Vec<u8>, bool) {
        let mut fix = AuthorityFix::new(Chunks {
            chunks: chunks.into(),
            pending: false,
            written: Vec::new(),
        });
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.unwrap();
        fix.write_all(b"reply").await.unwrap();
        assert_eq!(fix.inner.written, b"reply");
        (out, fix.is_rewriting())
    }

    /// Runs `input` split at every byte boundary and byte by byte; all outputs must agree.
    async fn run_all_splits(input: &[u8]) -> (Vec<u8>, bool) {
        let whole = run(vec![input.to_vec()]).await;
        for k in 1..input.len() {
            let split = run(vec![input[..k].to_vec(), input[k..].to_vec()]).await;
            assert_eq!(split, whole, "split at {k}");
        }
        let bytes = run(input.iter().map(|&b| vec![b]).collect()).await;
        assert_eq!(bytes, whole, "byte by byte");
        whole
    }

    fn frame(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.push(typ);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn request(authority: &str, path: &str, extra: &[(&str, &str)]) -> Fields {
        let mut h = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.26.0"),
            ("te", "trailers"),
        ];
        h.extend_from_slice(extra);
        h.into_iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// Encodes as grpc-go's HPACK encoder does: each new field is added to the dynamic table and
    /// sent as a one-byte index from then on (fields over 1000 bytes are sent without indexing).
    /// Tests stay below the 4096-byte table, so there is no eviction to track.
    #[derive(Default)]
    struct Encoder {
        table: Fields,
    }

    impl Encoder {
        fn new() -> Self {
            Self::default()
        }
    }

    fn encode(enc: &mut Encoder, headers: &Fields) -> Vec<u8> {
        let mut out = Vec::new();
        for field in headers {
            if let Some(pos) = enc.table.iter().rposition(|e| e == field) {
                let index = 62 + enc.table.len() - 1 - pos;
                encode_integer_into(index, 7, 0x80, &mut out).unwrap();
                continue;
            }
            let index = field.0.len() + field.1.len() <= 1000;
            out.push(if index { 0x40 } else { 0x00 });
            for s in [&field.0, &field.1] {
                encode_integer_into(s.len(), 7, 0, &mut out).unwrap();
                out.extend_from_slice(s);
            }
            if index {
                enc.table.push(field.clone());
            }
        }
        out
    }

    /// A client connection: preface, SETTINGS, WINDOW_UPDATE, then three requests whose header
    /// blocks share a dynamic table (the second and third reuse indexed fields), in a plain
    /// HEADERS, a padded + priority HEADERS split over two CONTINUATIONs, and an END_STREAM one.
    /// Returns the bytes, the requests' headers and the non-header frames.
    fn client_stream(authority: &str) -> (Vec<u8>, Vec<Fields>, Vec<Vec<u8>>) {
        let mut enc = Encoder::new();
        let mut out = PREFACE.to_vec();
        let mut others = vec![
            frame(0x4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]),
            frame(0x8, 0, 0, &[0, 0, 0x10, 0]),
        ];
        for f in &others {
            out.extend_from_slice(f);
        }
        let reqs = vec![
            request(authority, "/etcdserverpb.Maintenance/Status", &[]),
            request(
                authority,
                "/etcdserverpb.KV/Range",
                &[("x-big", &"v".repeat(300))],
            ),
            request(authority, "/etcdserverpb.Maintenance/Status", &[]),
        ];

        // 1: a dynamic table size update, then the fields; a DATA frame follows.
        let mut block = Vec::new();
        encode_integer_into(4096, 5, 0x20, &mut block).unwrap();
        block.extend(encode(&mut enc, &reqs[0]));
        out.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &block));
        let data = frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 2, 8, 1]);
        out.extend_from_slice(&data);
        others.push(data);

        // 2: padded, with priority, over HEADERS + 2 CONTINUATIONs; a PING follows.
        let block = encode(&mut enc, &reqs[1]);
        let (a, rest) = block.split_at(10);
        let (b, c) = rest.split_at(100);
        let mut payload = vec![3];
        payload.extend_from_slice(&[0, 0, 0, 1, 200]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0; 3]);
        out.extend(frame(
            TYPE_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY,
            3,
            &payload,
        ));
        out.extend(frame(TYPE_CONTINUATION, 0, 3, b));
        out.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, c));
        let ping = frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
        out.extend_from_slice(&ping);
        others.push(ping);

        // 3: fully indexed by now, END_STREAM set on HEADERS.
        let block = encode(&mut enc, &reqs[2]);
        assert_eq!(block, [70, 69, 68, 67, 66, 65, 64].map(|i| 0x80 | i));
        out.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            5,
            &block,
        ));
        (out, reqs, others)
    }

    /// Splits a server-side byte stream into (header blocks with stream id and flags, other frames).
    #[allow(clippy::type_complexity)]
    fn parse_output(mut b: &[u8]) -> (Vec<(u32, u8, Vec<u8>)>, Vec<Vec<u8>>) {
        assert_eq!(&b[..PREFACE.len()], PREFACE);
        b = &b[PREFACE.len()..];
        let (mut blocks, mut others) = (Vec::new(), Vec::new());
        while !b.is_empty() {
            let len = frame_len(b);
            let (f, rest) = b.split_at(FRAME_HEADER_LEN + len);
            b = rest;
            let stream = u32::from_be_bytes([f[5], f[6], f[7], f[8]]);
            match f[3] {
                TYPE_HEADERS => {
                    assert_eq!(f[4] & (FLAG_PADDED | FLAG_PRIORITY), 0);
                    blocks.push((stream, f[4], f[9..].to_vec()))
                }
                TYPE_CONTINUATION => {
                    let last = blocks.last_mut().unwrap();
                    assert_eq!(last.0, stream);
                    assert_eq!(last.1 & FLAG_END_HEADERS, 0);
                    last.1 |= f[4] & FLAG_END_HEADERS;
                    last.2.extend_from_slice(&f[9..]);
                }
                _ => others.push(f.to_vec()),
            }
            assert!(len <= MAX_FRAME_SIZE);
        }
        (blocks, others)
    }

    #[tokio::test]
    async fn rewrites_scheme_in_authority() {
        let (input, reqs, others) = client_stream("http://127.0.0.1:2379");
        let (out, rewriting) = run_all_splits(&input).await;
        assert!(rewriting);
        let (blocks, out_others) = parse_output(&out);
        assert_eq!(out_others, others, "non-header frames untouched");
        assert_eq!(blocks.len(), 3);
        // A decoder with no dynamic table at all proves nothing was indexed.
        let mut dec = Decoder::new();
        dec.set_max_table_size(0);
        let flags = [
            FLAG_END_HEADERS,
            FLAG_END_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
        ];
        for (i, (stream, f, block)) in blocks.iter().enumerate() {
            assert_eq!(*stream, 2 * i as u32 + 1);
            assert_eq!(*f, flags[i]);
            let mut want = reqs[i].clone();
            want[3].1 = b"127.0.0.1:2379".to_vec();
            assert_eq!(dec.decode(block).unwrap(), want);
        }
    }

    #[tokio::test]
    async fn valid_authority_passes_through_byte_for_byte() {
        for authority in ["127.0.0.1:2379", "localhost", "[::1]:2379"] {
            let (mut input, _, _) = client_stream(authority);
            // Once passing through, later blocks are not looked at, even bad ones.
            let mut enc = Encoder::new();
            let later = encode(&mut enc, &request("http://x:1", "/", &[]));
            input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 7, &later));
            let (out, rewriting) = run_all_splits(&input).await;
            assert!(!rewriting);
            assert_eq!(out, input);
        }
    }

    #[tokio::test]
    async fn non_http2_and_broken_streams_pass_through() {
        for input in [
            &b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n",
            b"POST /x HTTP/1.1\r\n\r\n",
            b"",
        ] {
            assert_eq!(run_all_splits(input).await, (input.to_vec(), false));
        }
        // A block that is not valid HPACK is h2's to reject.
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &[0xff, 0xff, 0xff],
        ));
        input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &[0x82]));
        assert_eq!(run_all_splits(&input).await, (input.clone(), false));
        // A truncated stream is handed over as it is.
        let (full, _, _) = client_stream("http://127.0.0.1:2379");
        let cut = &full[..full.len() - 3];
        let (out, _) = run(vec![cut.to_vec()]).await;
        assert!(out.ends_with(&cut[cut.len() - 5..]));
    }

    #[tokio::test]
    async fn large_rewritten_block_is_split_into_continuations() {
        let mut enc = Encoder::new();
        let big = "x".repeat(40_000);
        let req = request("https://example.com:443/some/path", "/p", &[("big", &big)]);
        let block = encode(&mut enc, &req);
        let mut input = PREFACE.to_vec();
        let mut frames = block.chunks(MAX_FRAME_SIZE);
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_END_STREAM,
            1,
            frames.next().unwrap(),
        ));
        let rest: Vec<_> = frames.collect();
        for (i, c) in rest.iter().enumerate() {
            let flags = if i + 1 == rest.len() {
                FLAG_END_HEADERS
            } else {
                0
            };
            input.extend(frame(TYPE_CONTINUATION, flags, 1, c));
        }
        let (out, rewriting) = run(vec![input]).await;
        assert!(rewriting);
        let mut frames = 0;
        let mut b = &out[PREFACE.len()..];
        while !b.is_empty() {
            frames += 1;
            b = &b[FRAME_HEADER_LEN + frame_len(b)..];
        }
        assert_eq!(frames, 3);
        let (blocks, others) = parse_output(&out);
        assert!(others.is_empty());
        assert_eq!(blocks[0].1, FLAG_END_STREAM | FLAG_END_HEADERS);
        let mut want = req.clone();
        want[3].1 = b"example.com:443".to_vec();
        assert_eq!(Decoder::new().decode(&blocks[0].2).unwrap(), want);
    }

    #[test]
    fn fixes_authorities() {
        let fix =
            |s: &str| fix_authority(s.as_bytes()).map(|v| String::from_utf8(v.to_vec()).unwrap());
        assert_eq!(
            fix("http://127.0.0.1:2379").as_deref(),
            Some("127.0.0.1:2379")
        );
        assert_eq!(fix("https://h:1/a/b?c").as_deref(), Some("h:1"));
        assert_eq!(fix("127.0.0.1:2379/").as_deref(), Some("127.0.0.1:2379"));
        assert_eq!(fix("unix://[::1]:2379").as_deref(), Some("[::1]:2379"));
        assert_eq!(fix("http://"), None);
        assert!(!valid_authority(b"http://127.0.0.1:2379"));
        assert!(!valid_authority(b"127.0.0.1:2379/"));
        assert!(valid_authority(b"127.0.0.1:2379"));
    }
}
