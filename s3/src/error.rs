//! One S3 error type that knows its code, its HTTP status and its XML body.

use std::fmt;

use http::StatusCode;
use quick_xml::escape::escape;

/// The S3 error codes Tessera returns. `as_str` is the `<Code>` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S3ErrorCode {
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityAlreadyExists,
    EntityTooLarge,
    EntityTooSmall,
    IncompleteBody,
    /// Not an AWS code (S3 has none for a full store); the name and 507 follow RFC 4918 and
    /// what other S3 servers send for a full disk. 507 is not in the SDKs' retry lists, so a
    /// client does not hammer a full node; the operator frees or adds room.
    InsufficientStorage,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidChunkSizeError,
    InvalidDigest,
    InvalidLocationConstraint,
    InvalidPart,
    InvalidPartOrder,
    InvalidPolicyDocument,
    InvalidRange,
    InvalidRequest,
    KeyTooLongError,
    LimitExceeded,
    MalformedPolicy,
    MalformedPOSTRequest,
    MalformedXML,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    MissingSecurityHeader,
    NoSuchBucket,
    NoSuchBucketPolicy,
    NoSuchEntity,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    NotImplemented,
    NotModified,
    PreconditionFailed,
    RequestTimeTooSkewed,
    RequestTimeout,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    XAmzContentSHA256Mismatch,
}

impl S3ErrorCode {
    /// The `<Code>` string S3 clients match on.
    pub fn as_str(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "AccessDenied",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            BadDigest => "BadDigest",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketNotEmpty => "BucketNotEmpty",
            EntityAlreadyExists => "EntityAlreadyExists",
            EntityTooLarge => "EntityTooLarge",
            EntityTooSmall => "EntityTooSmall",
            IncompleteBody => "IncompleteBody",
            InsufficientStorage => "InsufficientStorage",
            InternalError => "InternalError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidArgument => "InvalidArgument",
            InvalidBucketName => "InvalidBucketName",
            InvalidChunkSizeError => "InvalidChunkSizeError",
            InvalidDigest => "InvalidDigest",
            InvalidLocationConstraint => "InvalidLocationConstraint",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidPolicyDocument => "InvalidPolicyDocument",
            InvalidRange => "InvalidRange",
            InvalidRequest => "InvalidRequest",
            KeyTooLongError => "KeyTooLongError",
            LimitExceeded => "LimitExceeded",
            MalformedPolicy => "MalformedPolicy",
            MalformedPOSTRequest => "MalformedPOSTRequest",
            MalformedXML => "MalformedXML",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            MissingSecurityHeader => "MissingSecurityHeader",
            NoSuchBucket => "NoSuchBucket",
            NoSuchBucketPolicy => "NoSuchBucketPolicy",
            NoSuchEntity => "NoSuchEntity",
            NoSuchKey => "NoSuchKey",
            NoSuchUpload => "NoSuchUpload",
            NoSuchVersion => "NoSuchVersion",
            NotImplemented => "NotImplemented",
            NotModified => "NotModified",
            PreconditionFailed => "PreconditionFailed",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            RequestTimeout => "RequestTimeout",
            ServiceUnavailable => "ServiceUnavailable",
            SlowDown => "SlowDown",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// The HTTP status S3 sends with this code.
    pub fn status(self) -> StatusCode {
        use S3ErrorCode::*;
        match self {
            NotModified => StatusCode::NOT_MODIFIED,
            AccessDenied | InvalidAccessKeyId | RequestTimeTooSkewed | SignatureDoesNotMatch => StatusCode::FORBIDDEN,
            NoSuchBucket | NoSuchBucketPolicy | NoSuchEntity | NoSuchKey | NoSuchUpload | NoSuchVersion => {
                StatusCode::NOT_FOUND
            }
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BucketAlreadyExists | BucketAlreadyOwnedByYou | BucketNotEmpty | EntityAlreadyExists | LimitExceeded => {
                StatusCode::CONFLICT
            }
            MissingContentLength => StatusCode::LENGTH_REQUIRED,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ServiceUnavailable | SlowDown => StatusCode::SERVICE_UNAVAILABLE,
            AuthorizationHeaderMalformed
            | AuthorizationQueryParametersError
            | BadDigest
            | EntityTooLarge
            | EntityTooSmall
            | IncompleteBody
            | InvalidArgument
            | InvalidBucketName
            | InvalidChunkSizeError
            | InvalidDigest
            | InvalidLocationConstraint
            | InvalidPart
            | InvalidPartOrder
            | InvalidPolicyDocument
            | InvalidRequest
            | KeyTooLongError
            | MalformedPolicy
            | MalformedPOSTRequest
            | MalformedXML
            | MetadataTooLarge
            | MissingSecurityHeader
            | RequestTimeout
            | XAmzContentSHA256Mismatch => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether the response carries an XML body (304 never does).
    pub fn has_body(self) -> bool {
        self != S3ErrorCode::NotModified
    }

    /// The message S3 uses when nothing more specific is known.
    pub fn default_message(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "Access Denied",
            AuthorizationHeaderMalformed => "The authorization header is malformed.",
            AuthorizationQueryParametersError => "Error parsing the X-Amz-Credential parameter.",
            BadDigest => "The Content-MD5 you specified did not match what we received.",
            BucketAlreadyExists => "The requested bucket name is not available.",
            BucketAlreadyOwnedByYou => "Your previous request to create the named bucket succeeded and you already own it.",
            BucketNotEmpty => "The bucket you tried to delete is not empty",
            EntityAlreadyExists => "The user or key already exists.",
            EntityTooLarge => "Your proposed upload exceeds the maximum allowed size",
            EntityTooSmall => "Your proposed upload is smaller than the minimum allowed object size.",
            IncompleteBody => "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            InsufficientStorage => "The server has no room left to store this request's data. Retry after space is freed.",
            InternalError => "We encountered an internal error. Please try again.",
            InvalidAccessKeyId => "The AWS Access Key Id you provided does not exist in our records.",
            InvalidArgument => "Invalid Argument",
            InvalidBucketName => "The specified bucket is not valid.",
            InvalidChunkSizeError => "Only the last chunk is allowed to have a size less than 8192 bytes",
            InvalidDigest => "The Content-MD5 you specified is not valid.",
            InvalidLocationConstraint => "The specified location-constraint is not valid.",
            InvalidPart => "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.",
            InvalidPartOrder => "The list of parts was not in ascending order. Parts must be ordered by part number.",
            InvalidPolicyDocument => "The content of the form does not meet the conditions specified in the policy document.",
            InvalidRange => "The requested range is not satisfiable",
            InvalidRequest => "Invalid Request",
            KeyTooLongError => "Your key is too long",
            LimitExceeded => "A limit on users or keys would be exceeded.",
            MalformedPolicy => "Policies must be valid JSON and the first byte must be '{'",
            MalformedPOSTRequest => "The body of your POST request is not well-formed multipart/form-data.",
            MalformedXML => "The XML you provided was not well-formed or did not validate against our published schema.",
            MetadataTooLarge => "Your metadata headers exceed the maximum allowed metadata size.",
            MethodNotAllowed => "The specified method is not allowed against this resource.",
            MissingContentLength => "You must provide the Content-Length HTTP header.",
            MissingSecurityHeader => "Your request is missing a required header.",
            NoSuchBucket => "The specified bucket does not exist",
            NoSuchBucketPolicy => "The bucket policy does not exist",
            NoSuchEntity => "The user, access key or policy does not exist.",
            NoSuchKey => "The specified key does not exist.",
            NoSuchUpload => "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed.",
            NoSuchVersion => "The specified version does not exist.",
            NotImplemented => "A header or query you provided implies functionality that is not implemented.",
            NotModified => "Not Modified",
            PreconditionFailed => "At least one of the pre-conditions you specified did not hold",
            RequestTimeTooSkewed => "The difference between the request time and the server's time is too large.",
            RequestTimeout => "Your socket connection to the server was not read from or written to within the timeout period.",
            ServiceUnavailable => "Please reduce your request rate.",
            SlowDown => "Please reduce your request rate.",
            SignatureDoesNotMatch => "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            XAmzContentSHA256Mismatch => "The provided 'x-amz-content-sha256' header does not match what was computed.",
        }
    }
}

impl fmt::Display for S3ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An S3 error: what went wrong (`code`), for the reader (`message`), and about what
/// (`resource`, the bucket or key path). Extra elements (e.g. `<Key>`, `<UploadId>`,
/// `<ExpectedDigest>`) go in `details`, rendered after `<Resource>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub code: S3ErrorCode,
    pub message: String,
    pub resource: Option<String>,
    pub details: Vec<(&'static str, String)>,
}

impl S3Error {
    /// An error with the code's default message.
    pub fn new(code: S3ErrorCode) -> Self {
        Self::with_message(code, code.default_message())
    }

    pub fn with_message(code: S3ErrorCode, message: impl Into<String>) -> Self {
        S3Error { code, message: message.into(), resource: None, details: Vec::new() }
    }

    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn detail(mut self, element: &'static str, value: impl Into<String>) -> Self {
        self.details.push((element, value.into()));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Shorthands for the errors raised everywhere.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::with_message(S3ErrorCode::AccessDenied, message)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::with_message(S3ErrorCode::InvalidArgument, message)
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::with_message(S3ErrorCode::InvalidRequest, message)
    }
    pub fn malformed_xml() -> Self {
        Self::new(S3ErrorCode::MalformedXML)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::with_message(S3ErrorCode::InternalError, message)
    }
    /// S3's answer to an expired presigned URL.
    pub fn request_expired() -> Self {
        Self::access_denied("Request has expired")
    }

    /// The standard `<Error>` document. Empty for codes without a body (304).
    pub fn to_xml(&self, request_id: &str) -> String {
        if !self.code.has_body() {
            return String::new();
        }
        let mut out = String::with_capacity(256);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        out.push_str(self.code.as_str());
        out.push_str("</Code><Message>");
        out.push_str(&escape(self.message.as_str()));
        out.push_str("</Message>");
        if let Some(resource) = &self.resource {
            out.push_str("<Resource>");
            out.push_str(&escape(resource.as_str()));
            out.push_str("</Resource>");
        }
        for (element, value) in &self.details {
            out.push('<');
            out.push_str(element);
            out.push('>');
            out.push_str(&escape(value.as_str()));
            out.push_str("</");
            out.push_str(element);
            out.push('>');
        }
        out.push_str("<RequestId>");
        out.push_str(&escape(request_id));
        out.push_str("</RequestId></Error>");
        out
    }
}

impl From<S3ErrorCode> for S3Error {
    fn from(code: S3ErrorCode) -> Self {
        S3Error::new(code)
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for S3Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_the_status_s3_sends() {
        use S3ErrorCode::*;
        let table = [
            (NoSuchBucket, 404),
            (NoSuchKey, 404),
            (NoSuchUpload, 404),
            (InvalidPart, 400),
            (InvalidPartOrder, 400),
            (InvalidRange, 416),
            (SignatureDoesNotMatch, 403),
            (AccessDenied, 403),
            (InvalidAccessKeyId, 403),
            (RequestTimeTooSkewed, 403),
            (BadDigest, 400),
            (InvalidDigest, 400),
            (InvalidLocationConstraint, 400),
            (MetadataTooLarge, 400),
            (XAmzContentSHA256Mismatch, 400),
            (PreconditionFailed, 412),
            (NotModified, 304),
            (EntityTooSmall, 400),
            (EntityTooLarge, 400),
            (KeyTooLongError, 400),
            (MalformedXML, 400),
            (MalformedPOSTRequest, 400),
            (MalformedPolicy, 400),
            (NoSuchBucketPolicy, 404),
            (NoSuchEntity, 404),
            (EntityAlreadyExists, 409),
            (LimitExceeded, 409),
            (InvalidPolicyDocument, 400),
            (BucketAlreadyExists, 409),
            (BucketAlreadyOwnedByYou, 409),
            (BucketNotEmpty, 409),
            (MethodNotAllowed, 405),
            (NotImplemented, 501),
            (MissingContentLength, 411),
            (InternalError, 500),
            (InsufficientStorage, 507),
            (ServiceUnavailable, 503),
        ];
        for (code, status) in table {
            assert_eq!(code.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn error_xml_has_code_message_resource_and_escapes() {
        let e = S3Error::new(S3ErrorCode::NoSuchKey).resource("/b/a<&>b").detail("Key", "a<&>b");
        let xml = e.to_xml("req-1");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message>\
             <Resource>/b/a&lt;&amp;&gt;b</Resource><Key>a&lt;&amp;&gt;b</Key>\
             <RequestId>req-1</RequestId></Error>"
        );
    }

    #[test]
    fn not_modified_has_no_body() {
        assert_eq!(S3Error::new(S3ErrorCode::NotModified).to_xml("x"), "");
    }

    #[test]
    fn expired_presigned_url_is_access_denied() {
        let e = S3Error::request_expired();
        assert_eq!(e.code, S3ErrorCode::AccessDenied);
        assert_eq!(e.message, "Request has expired");
    }
}
