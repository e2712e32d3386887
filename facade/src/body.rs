//! Request bodies in, response bodies out: the hyper side of [`s3::body::BodyDecoder`].
//!
//! `BodyPump` reads a request body off the connection, has the decoder undo its framing and
//! check it (aws-chunked chunk signatures, the signed payload SHA-256, Content-MD5,
//! `x-amz-checksum-*`), and streams the payload to the owner core. Only when every check
//! passed does the engine get `End`, so a bad body is never committed.

use bytes::{Bytes, BytesMut};
use engine::{BodyItem, BodySender, GetBody, StoredChecksum};
use http::request::Parts;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use s3::auth::sigv4::AuthContext;
use s3::body::BodyDecoder;
use s3::error::{S3Error, S3ErrorCode};

pub type RespBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request body that sends nothing for this long is abandoned (400 RequestTimeout): a client
/// that stops mid-body must not hold its connection, its core's request slot and its buffers
/// forever.
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

pub fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> RespBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A streamed object body from the owner core. An error mid-stream aborts the connection, so
/// the client sees a short body, never wrong bytes.
pub fn stream(rx: GetBody) -> RespBody {
    use futures::StreamExt;
    let s = rx.into_stream().map(|r| r.map(Frame::data).map_err(|e| std::io::Error::other(e.to_string())));
    StreamBody::new(s).boxed_unsync()
}

enum Sink<'a> {
    Engine(&'a BodySender),
    Buffer(&'a mut BytesMut, usize),
}

pub struct BodyPump {
    body: Incoming,
    decoder: BodyDecoder,
}

impl BodyPump {
    pub fn new(parts: &Parts, auth: &AuthContext, body: Incoming) -> Result<BodyPump, S3Error> {
        Ok(BodyPump { body, decoder: BodyDecoder::new(&parts.headers, auth)? })
    }

    pub fn content_md5(&self) -> Option<[u8; 16]> {
        self.decoder.content_md5()
    }

    /// Refuse, before any of it is read, a body declared larger than `max` payload bytes (a
    /// body that declares nothing is held to `max` by the engine as it streams).
    pub fn refuse_declared_over(&self, max: u64) -> Result<(), S3Error> {
        match self.decoder.declared_payload_len() {
            Some(n) if n > max => Err(S3Error::with_message(
                S3ErrorCode::EntityTooLarge,
                format!("The body is {n} bytes; a single PUT or part is at most {max} bytes (use a multipart upload)"),
            )),
            _ => Ok(()),
        }
    }

    async fn next_frame(&mut self) -> Result<Option<Bytes>, S3Error> {
        // A declared-empty body is never polled (see `BodyDecoder::declared_empty`).
        if self.decoder.declared_empty() {
            return Ok(None);
        }
        loop {
            let frame = monoio::time::timeout(BODY_IDLE_TIMEOUT, self.body.frame()).await.map_err(|_| {
                S3Error::with_message(
                    S3ErrorCode::RequestTimeout,
                    format!(
                        "No body bytes arrived for {} s: the request is abandoned and nothing is stored.",
                        BODY_IDLE_TIMEOUT.as_secs()
                    ),
                )
            })?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(S3Error::with_message(
                        S3ErrorCode::IncompleteBody,
                        format!("The request body ended before Content-Length bytes were received: {e}"),
                    ))
                }
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }

    /// Stream the verified payload into `tx`. On any failure the engine is told to abort.
    pub async fn pump(self, tx: BodySender) -> Result<(), S3Error> {
        match self.pump_inner(Sink::Engine(&tx)).await {
            Ok(checksum) => {
                let _ = tx.send_async(BodyItem::End { checksum }).await;
                Ok(())
            }
            Err(e) => {
                let _ = tx.send_async(BodyItem::Abort(e.message.clone())).await;
                Err(e)
            }
        }
    }

    async fn pump_inner(mut self, mut sink: Sink<'_>) -> Result<Option<StoredChecksum>, S3Error> {
        while let Some(frame) = self.next_frame().await? {
            for p in self.decoder.feed(&frame)? {
                match &mut sink {
                    Sink::Engine(tx) => {
                        if tx.send_async(BodyItem::Data(p)).await.is_err() {
                            // The engine refused the request already; its error is the answer.
                            return Err(S3Error::internal("the engine stopped reading the body"));
                        }
                    }
                    Sink::Buffer(buf, limit) => {
                        if buf.len() + p.len() > *limit {
                            return Err(S3Error::with_message(
                                S3ErrorCode::EntityTooLarge,
                                "The request body is too large",
                            ));
                        }
                        buf.extend_from_slice(&p);
                    }
                }
            }
        }
        let checksum = self.decoder.finish()?;
        Ok(checksum.map(|(a, v)| StoredChecksum { algorithm: a.as_str().to_string(), value: v }))
    }

    /// Read a small body (XML) whole, verified, refusing more than `limit` bytes.
    pub async fn read_all(self, limit: usize) -> Result<Bytes, S3Error> {
        let mut out = BytesMut::new();
        self.pump_inner(Sink::Buffer(&mut out, limit)).await?;
        Ok(out.freeze())
    }
}
