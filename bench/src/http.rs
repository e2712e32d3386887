//! A minimal HTTP/1.1 keep-alive client connection: one request in flight, the head written in
//! one buffer, bodies streamed from and to the caller's slices, responses with
//! Content-Length, chunked transfer coding or no body. Small on purpose: the load generator
//! must cost far less CPU than the server it measures, on the same two cores.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted (status line + headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Read buffer per connection.
const READ_BUF_BYTES: usize = 256 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;
/// Largest response body kept in memory (error and listing XML); larger bodies are streamed.
pub const MAX_KEPT_BODY_BYTES: usize = 16 * 1024 * 1024;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body bytes kept (only when the caller asked to keep them).
    pub body: Vec<u8>,
    /// Body bytes received in all.
    pub body_len: u64,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What to do with a response body.
pub enum Sink<'a> {
    /// Keep it in `Response::body` (XML).
    Keep,
    /// Hand each piece to the closure with its offset (GET data: counted and maybe verified).
    Stream(&'a mut (dyn FnMut(u64, &[u8]) + Send)),
}

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// False once the server said `Connection: close` or a response could not be parsed.
    pub reusable: bool,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Conn {
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are one head write then the body: no reason to let Nagle hold the tail.
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: vec![0; READ_BUF_BYTES], start: 0, end: 0, reusable: true })
    }

    /// Write the head and the body pieces. Small bodies go in the head's write.
    pub async fn send(&mut self, mut head: Vec<u8>, body: &[&[u8]]) -> io::Result<()> {
        let total: usize = body.iter().map(|b| b.len()).sum();
        if total <= 64 * 1024 {
            for b in body {
                head.extend_from_slice(b);
            }
            return self.stream.write_all(&head).await;
        }
        self.stream.write_all(&head).await?;
        for b in body {
            self.stream.write_all(b).await?;
        }
        Ok(())
    }

    /// Write more body bytes (streamed request bodies: aws-chunked framing between data slices).
    pub async fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b).await
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            self.reusable = false;
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        self.end += n;
        Ok(())
    }

    /// Read one line ending in CRLF (chunk sizes, trailers), without the CRLF.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(p) = self.buf[self.start..self.end].windows(2).position(|w| w == b"\r\n") {
                let s = String::from_utf8_lossy(&self.buf[self.start..self.start + p]).into_owned();
                self.start += p + 2;
                return Ok(s);
            }
            if self.end - self.start > MAX_HEAD_BYTES {
                return Err(bad("line longer than 64 KiB in a chunked body"));
            }
            self.fill().await?;
        }
    }

    /// Deliver exactly `n` body bytes to the sink.
    async fn body_bytes(&mut self, mut n: u64, sink: &mut Sink<'_>, resp: &mut Response) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end {
                self.fill().await?;
            }
            let take = (self.end - self.start).min(n as usize);
            let piece = &self.buf[self.start..self.start + take];
            match sink {
                Sink::Keep => {
                    if resp.body.len() + take > MAX_KEPT_BODY_BYTES {
                        return Err(bad("response body over 16 MiB where XML was expected"));
                    }
                    resp.body.extend_from_slice(piece)
                }
                Sink::Stream(f) => f(resp.body_len, piece),
            }
            resp.body_len += take as u64;
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Read one response. `head_request`: the request was HEAD (no body whatever the headers say).
    pub async fn response(&mut self, head_request: bool, mut sink: Sink<'_>) -> io::Result<Response> {
        let (status, headers) = loop {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Response::new(&mut hs);
            match r.parse(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete(used)) => {
                    let status = r.code.unwrap_or(0);
                    let headers: Vec<(String, String)> = r
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    self.start += used;
                    if status == 100 {
                        continue;
                    }
                    break (status, headers);
                }
                Ok(httparse::Status::Partial) => {
                    if self.end - self.start > MAX_HEAD_BYTES {
                        self.reusable = false;
                        return Err(bad("response head longer than 64 KiB"));
                    }
                    self.fill().await?;
                }
                Err(e) => {
                    self.reusable = false;
                    return Err(bad(format!("unparsable response head: {e}")));
                }
            }
        };
        let mut resp = Response { status, headers, body: Vec::new(), body_len: 0 };
        if resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.reusable = false;
        }
        if head_request || status == 204 || status == 304 {
            return Ok(resp);
        }
        // An error's body is S3 error XML the caller reads, whatever sink it gave for data.
        if status >= 300 {
            sink = Sink::Keep;
        }
        let chunked = resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let line = self.line().await?;
                let size_hex = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size_hex, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.body_bytes(size, &mut sink, &mut resp).await?;
                if !self.line().await?.is_empty() {
                    self.reusable = false;
                    return Err(bad("chunk not followed by CRLF"));
                }
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: u64 = len.trim().parse().map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            self.body_bytes(len, &mut sink, &mut resp).await?;
        } else {
            // Body delimited by the end of the connection (HTTP/1.0 style): read to EOF.
            self.reusable = false;
            loop {
                if self.start == self.end {
                    match self.fill().await {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => return Err(e),
                    }
                }
                let n = (self.end - self.start) as u64;
                self.body_bytes(n, &mut sink, &mut resp).await?;
            }
        }
        Ok(resp)
    }
}
