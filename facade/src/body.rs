//! Request bodies in, response bodies out.
//!
//! `BodyPump` streams a request body to the owner core while it checks it: aws-chunked
//! framing and chunk signatures, the signed payload SHA-256, Content-MD5 and
//! `x-amz-checksum-*`. Only when every check passed does the engine get `End`, so a bad body
//! is never committed.

use crate::auth::chunked::ChunkedDecoder;
use crate::auth::sigv4::{AuthContext, PayloadHashVerifier, PayloadMode};
use crate::checksum::{BodyVerifier, ChecksumRequest};
use crate::error::{S3Error, S3ErrorCode};
use bytes::{Bytes, BytesMut};
use engine::{BodyItem, BodySender, GetBody, StoredChecksum};
use http::request::Parts;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};

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
    decoder: Option<ChunkedDecoder>,
    sha: Option<PayloadHashVerifier>,
    verifier: BodyVerifier,
    request: ChecksumRequest,
    content_length: Option<u64>,
}

impl BodyPump {
    pub fn new(parts: &Parts, auth: &AuthContext, body: Incoming) -> Result<BodyPump, S3Error> {
        let request = ChecksumRequest::from_headers(&parts.headers)?;
        let decoder = if auth.payload_mode.is_streaming() {
            Some(ChunkedDecoder::from_headers(auth, &parts.headers)?)
        } else {
            None
        };
        let sha = match auth.payload_mode {
            PayloadMode::Sha256(h) => Some(PayloadHashVerifier::new(h)),
            _ => None,
        };
        let content_length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()))
            .map(|v| v.ok_or_else(|| S3Error::invalid_argument("Content-Length is not a number")))
            .transpose()?;
        if content_length.is_none() && !parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
            return Err(S3Error::new(S3ErrorCode::MissingContentLength));
        }
        Ok(BodyPump { body, decoder, sha, verifier: BodyVerifier::new(request.clone()), request, content_length })
    }

    pub fn content_md5(&self) -> Option<[u8; 16]> {
        self.request.content_md5
    }

    /// The payload size the client declared, if it did.
    pub fn declared_len(&self) -> Option<u64> {
        match &self.decoder {
            Some(_) => None,
            None => self.content_length,
        }
    }

    async fn next_frame(&mut self) -> Result<Option<Bytes>, S3Error> {
        // A declared-empty body is never polled: polling it makes hyper answer a client's
        // `Expect: 100-continue` with a 100 that can arrive after the final response, and a
        // client that reuses the connection then reads that stray 100 as the next answer.
        if self.decoder.is_none() && self.content_length == Some(0) {
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
    pub async fn pump(mut self, tx: BodySender) -> Result<(), S3Error> {
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

    async fn pump_inner(&mut self, mut sink: Sink<'_>) -> Result<Option<StoredChecksum>, S3Error> {
        let mut received = 0u64;
        while let Some(data) = self.next_frame().await? {
            let payload: Vec<Bytes> = match &mut self.decoder {
                Some(dec) => {
                    let mut out = Vec::new();
                    let mut input = &data[..];
                    while let Some(p) = dec.next(&mut input)? {
                        out.push(data.slice_ref(p));
                    }
                    out
                }
                None => vec![data],
            };
            for p in payload {
                if p.is_empty() {
                    continue;
                }
                received += p.len() as u64;
                if let Some(s) = &mut self.sha {
                    s.update(&p);
                }
                self.verifier.update(&p);
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
        let declared = self.declared_len();
        let trailers = match self.decoder.take() {
            Some(d) => d.finish()?,
            None => Vec::new(),
        };
        if let Some(n) = declared {
            if received != n {
                return Err(S3Error::with_message(
                    S3ErrorCode::IncompleteBody,
                    format!("You did not provide the number of bytes specified by the Content-Length HTTP header ({received} of {n})"),
                ));
            }
        }
        if let Some(s) = self.sha.take() {
            s.finish()?;
        }
        let trailer_value = self.request.algorithm.and_then(|alg| {
            trailers.iter().find(|(k, _)| k.eq_ignore_ascii_case(alg.header_name())).map(|(_, v)| v.clone())
        });
        let verifier = std::mem::replace(&mut self.verifier, BodyVerifier::new(ChecksumRequest::default()));
        let digests = verifier.finish(trailer_value.as_deref())?;
        Ok(digests.checksum_base64().map(|(a, v)| StoredChecksum { algorithm: a.as_str().to_string(), value: v }))
    }

    /// Read a small body (XML) whole, verified, refusing more than `limit` bytes.
    pub async fn read_all(mut self, limit: usize) -> Result<Bytes, S3Error> {
        let mut out = BytesMut::new();
        self.pump_inner(Sink::Buffer(&mut out, limit)).await?;
        Ok(out.freeze())
    }
}
