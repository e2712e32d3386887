//! `tessera-bench null-server`: the HTTP ceiling of this machine for the S3 workloads.
//!
//! An HTTP/1.1 keep-alive server that does no storage, no authentication and no hashing: it
//! reads each request head (httparse, the parser hyper uses), drains the body, and answers
//! GET with `--size` zero bytes, HEAD with that Content-Length, PUT/POST with 200 and DELETE
//! with 204. One listener per thread on the same port (SO_REUSEPORT) and a single-threaded
//! runtime each, as `tessera server` has per core. Run the same `tessera-bench put|get|mixed`
//! command against it and against Tessera in one session: the ratio says how much of the
//! machine's request rate (with the generator on the same CPUs) the server's own work costs.
//! Listens on loopback unless told otherwise; never use it as a real endpoint.

use crate::stats::parse_size;
use clap::Args;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Args, Debug)]
pub struct NullArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9099")]
    pub listen: SocketAddr,
    /// Listener threads (default: one per CPU, like `tessera server`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Body size of every GET response.
    #[arg(long, default_value = "4KiB", value_parser = parse_size)]
    pub size: u64,
}

/// Largest request head accepted (S3 heads are a few KiB).
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

pub fn run(a: NullArgs) -> Result<(), String> {
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let body: &'static [u8] = Box::leak(vec![0u8; a.size as usize].into_boxed_slice());
    let mut handles = Vec::new();
    for t in 0..threads.max(1) {
        let addr = a.listen;
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let sock = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
                    .map_err(|e| e.to_string())?;
                sock.set_reuseport(true).map_err(|e| e.to_string())?;
                sock.set_reuseaddr(true).map_err(|e| e.to_string())?;
                sock.bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
                let listener = sock.listen(1024).map_err(|e| e.to_string())?;
                if t == 0 {
                    eprintln!("null-server ready: http://{addr} threads={threads} get-size={}", body.len());
                }
                loop {
                    let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, body));
                }
            })
        }));
    }
    for h in handles {
        h.join().map_err(|_| "a listener thread panicked".to_string())??;
    }
    Ok(())
}

/// What one parsed request head asks for.
struct Head {
    len: usize,
    method: Method,
    body_bytes: u64,
    expect_continue: bool,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Method {
    Get,
    Head,
    Put,
    Delete,
    Other,
}

/// Parses one head from `buf`: `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf).map_err(|e| e.to_string())? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("PUT") | Some("POST") => Method::Put,
        Some("DELETE") => Method::Delete,
        _ => Method::Other,
    };
    let mut body_bytes = 0;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_bytes = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| "bad Content-Length".to_string())?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("Transfer-Encoding is not supported by the null server".into());
        } else if h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue") {
            expect_continue = true;
        }
    }
    Ok(Some(Head { len, method, body_bytes, expect_continue }))
}

fn response_head(m: Method, get_size: usize) -> Vec<u8> {
    match m {
        Method::Get | Method::Head => format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {get_size}\r\netag: \"00000000000000000000000000000000\"\r\n\r\n"
        )
        .into_bytes(),
        Method::Put => {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\netag: \"00000000000000000000000000000000\"\r\n\r\n".to_vec()
        }
        Method::Delete => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        Method::Other => b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
    }
}

async fn serve(mut s: TcpStream, body: &'static [u8]) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(body.len() + 256);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Read until a whole head is buffered.
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(h)) => break h,
                Ok(None) if buf.len() < MAX_HEAD_BYTES => {}
                _ => return,
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..head.len);
        if head.expect_continue && head.body_bytes > 0 && s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            return;
        }
        // Drain the body: what is buffered first, then the socket.
        let mut left = head.body_bytes;
        let take = (left as usize).min(buf.len());
        buf.drain(..take);
        left -= take as u64;
        while left > 0 {
            let want = (left as usize).min(chunk.len());
            match s.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n as u64,
            }
        }
        out.clear();
        out.extend_from_slice(&response_head(head.method, body.len()));
        if head.method == Method::Get {
            out.extend_from_slice(body);
        }
        if s.write_all(&out).await.is_err() || head.method == Method::Other {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_lengths_and_expectations() {
        let h = parse_head(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!((h.method, h.body_bytes, h.expect_continue), (Method::Put, 5, true));
        assert_eq!(h.len, 71, "the head ends before the body");
        assert!(parse_head(b"GET /b/k HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(parse_head(b"PUT /b HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"PUT /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }
}
