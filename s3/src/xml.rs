//! S3 XML: response documents rendered from plain structs, and request bodies parsed
//! (CompleteMultipartUpload, Delete, CreateBucketConfiguration). No engine types here.

use std::time::SystemTime;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::checksum::ChecksumAlgorithm;
use crate::error::{S3Error, S3ErrorCode};
use crate::http_util::{push_iso8601, quote_etag, unquote_etag};
use crate::router::{ListObjectsArgs, ListObjectsV2Args, ListUploadsArgs, ListVersionsArgs, MAX_PART_NUMBER};

pub const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// DeleteObjects accepts at most this many keys.
pub const MAX_DELETE_KEYS: usize = 1000;
/// Request bodies parsed here hold at most this many elements (10000 parts, each a few).
const MAX_XML_ELEMENTS: usize = 100_000;
/// And nest at most this deep.
const MAX_XML_DEPTH: usize = 16;

/// `encoding-type=url` keeps unreserved characters and `/`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

// ---------------------------------------------------------------------------------------
// Rendering

/// Builds one XML document; text is always escaped.
struct Doc {
    out: String,
    url_encode: bool,
}

/// Append `s` escaped for XML text (no allocation when nothing needs escaping, the usual case).
fn push_escaped(out: &mut String, s: &str) {
    let escaped = quick_xml::escape::escape(s);
    // A raw CR would be normalised away by the client's parser.
    if escaped.contains('\r') {
        out.push_str(&escaped.replace('\r', "&#13;"));
    } else {
        out.push_str(&escaped);
    }
}

impl Doc {
    fn new(root: &str) -> Doc {
        let mut out = String::with_capacity(1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        out.push_str(root);
        out.push_str(" xmlns=\"");
        out.push_str(S3_XMLNS);
        out.push_str("\">");
        Doc { out, url_encode: false }
    }

    fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn text(&mut self, name: &str, value: &str) {
        self.open(name);
        push_escaped(&mut self.out, value);
        self.close(name);
    }

    /// A key-like value, URL-encoded when the client asked for `encoding-type=url`.
    fn key(&mut self, name: &str, value: &str) {
        if self.url_encode {
            let encoded = utf8_percent_encode(value, URL_ENCODE).to_string();
            self.text(name, &encoded);
        } else {
            self.text(name, value);
        }
    }

    fn opt_key(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.key(name, v);
        }
    }

    fn num(&mut self, name: &str, value: impl std::fmt::Display) {
        use std::fmt::Write;
        self.open(name);
        let _ = write!(self.out, "{value}"); // digits: nothing to escape
        self.close(name);
    }

    fn flag(&mut self, name: &str, value: bool) {
        self.text(name, if value { "true" } else { "false" });
    }

    fn date(&mut self, name: &str, t: SystemTime) {
        self.open(name);
        push_iso8601(&mut self.out, t);
        self.close(name);
    }

    fn etag(&mut self, etag: &str) {
        self.open("ETag");
        push_escaped(&mut self.out, &quote_etag(etag));
        self.close("ETag");
    }

    fn owner(&mut self, name: &str, owner: &Owner) {
        self.open(name);
        self.text("ID", &owner.id);
        self.text("DisplayName", &owner.display_name);
        self.close(name);
    }

    fn checksum(&mut self, checksum: &Option<(ChecksumAlgorithm, String)>) {
        if let Some((alg, value)) = checksum {
            self.text(alg.xml_element(), value);
        }
    }

    fn common_prefixes(&mut self, prefixes: &[String]) {
        for p in prefixes {
            self.open("CommonPrefixes");
            self.key("Prefix", p);
            self.close("CommonPrefixes");
        }
    }

    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEntry {
    pub name: String,
    pub creation_date: SystemTime,
}

/// ListAllMyBucketsResult.
pub fn list_buckets(owner: &Owner, buckets: &[BucketEntry]) -> String {
    let mut d = Doc::new("ListAllMyBucketsResult");
    d.owner("Owner", owner);
    d.open("Buckets");
    for b in buckets {
        d.open("Bucket");
        d.text("Name", &b.name);
        d.date("CreationDate", b.creation_date);
        d.close("Bucket");
    }
    d.close("Buckets");
    d.finish("ListAllMyBucketsResult")
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub last_modified: SystemTime,
    /// Quoted or not; rendered quoted.
    pub etag: String,
    pub size: u64,
    /// `STANDARD` when None.
    pub storage_class: Option<String>,
    /// Rendered in v1 always, in v2 only with `fetch-owner=true`.
    pub owner: Option<Owner>,
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
}

/// One page of a listing, after the delimiter was applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// v1: NextMarker (sent when truncated and a delimiter was given, as S3 does).
    /// v2: NextContinuationToken.
    pub next: Option<String>,
}

fn object_contents(d: &mut Doc, o: &ObjectEntry, with_owner: bool) {
    d.open("Contents");
    d.key("Key", &o.key);
    d.date("LastModified", o.last_modified);
    d.etag(&o.etag);
    if let Some(alg) = o.checksum_algorithm {
        d.text("ChecksumAlgorithm", alg.as_str());
    }
    d.num("Size", o.size);
    if with_owner {
        if let Some(owner) = &o.owner {
            d.owner("Owner", owner);
        }
    }
    d.text("StorageClass", o.storage_class.as_deref().unwrap_or("STANDARD"));
    d.close("Contents");
}

/// ListBucketResult, version 1.
pub fn list_objects_v1(bucket: &str, args: &ListObjectsArgs, page: &ListPage) -> String {
    let mut d = Doc::new("ListBucketResult");
    d.url_encode = args.url_encode;
    d.text("Name", bucket);
    d.key("Prefix", &args.prefix);
    d.key("Marker", args.marker.as_deref().unwrap_or(""));
    if page.is_truncated {
        d.opt_key("NextMarker", page.next.as_deref());
    }
    d.num("MaxKeys", args.max_keys);
    d.opt_key("Delimiter", args.delimiter.as_deref());
    if args.url_encode {
        d.text("EncodingType", "url");
    }
    d.flag("IsTruncated", page.is_truncated);
    for o in &page.objects {
        object_contents(&mut d, o, true);
    }
    d.common_prefixes(&page.common_prefixes);
    d.finish("ListBucketResult")
}

/// ListBucketResult, version 2. KeyCount counts objects and common prefixes.
pub fn list_objects_v2(bucket: &str, args: &ListObjectsV2Args, page: &ListPage) -> String {
    let mut d = Doc::new("ListBucketResult");
    d.url_encode = args.url_encode;
    d.text("Name", bucket);
    d.key("Prefix", &args.prefix);
    d.opt_key("StartAfter", args.start_after.as_deref());
    if let Some(token) = &args.continuation_token {
        d.text("ContinuationToken", token);
    }
    if page.is_truncated {
        if let Some(next) = &page.next {
            d.text("NextContinuationToken", next);
        }
    }
    d.num("KeyCount", page.objects.len() + page.common_prefixes.len());
    d.num("MaxKeys", args.max_keys);
    d.opt_key("Delimiter", args.delimiter.as_deref());
    if args.url_encode {
        d.text("EncodingType", "url");
    }
    d.flag("IsTruncated", page.is_truncated);
    for o in &page.objects {
        object_contents(&mut d, o, args.fetch_owner);
    }
    d.common_prefixes(&page.common_prefixes);
    d.finish("ListBucketResult")
}

/// One version (or delete marker) in ListObjectVersions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub key: String,
    /// `null` for unversioned objects.
    pub version_id: String,
    pub is_latest: bool,
    pub is_delete_marker: bool,
    pub last_modified: SystemTime,
    pub etag: String,
    pub size: u64,
    pub storage_class: Option<String>,
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionsPage {
    pub versions: Vec<VersionEntry>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
}

/// ListVersionsResult.
pub fn list_versions(bucket: &str, args: &ListVersionsArgs, page: &VersionsPage) -> String {
    let mut d = Doc::new("ListVersionsResult");
    d.url_encode = args.url_encode;
    d.text("Name", bucket);
    d.key("Prefix", &args.prefix);
    d.key("KeyMarker", args.key_marker.as_deref().unwrap_or(""));
    d.text("VersionIdMarker", args.version_id_marker.as_deref().unwrap_or(""));
    if page.is_truncated {
        d.opt_key("NextKeyMarker", page.next_key_marker.as_deref());
        if let Some(v) = &page.next_version_id_marker {
            d.text("NextVersionIdMarker", v);
        }
    }
    d.num("MaxKeys", args.max_keys);
    d.opt_key("Delimiter", args.delimiter.as_deref());
    if args.url_encode {
        d.text("EncodingType", "url");
    }
    d.flag("IsTruncated", page.is_truncated);
    for v in &page.versions {
        let element = if v.is_delete_marker { "DeleteMarker" } else { "Version" };
        d.open(element);
        d.key("Key", &v.key);
        d.text("VersionId", &v.version_id);
        d.flag("IsLatest", v.is_latest);
        d.date("LastModified", v.last_modified);
        if !v.is_delete_marker {
            d.etag(&v.etag);
            d.num("Size", v.size);
            d.text("StorageClass", v.storage_class.as_deref().unwrap_or("STANDARD"));
        }
        if let Some(owner) = &v.owner {
            d.owner("Owner", owner);
        }
        d.close(element);
    }
    d.common_prefixes(&page.common_prefixes);
    d.finish("ListVersionsResult")
}

/// LocationConstraint. S3 answers an empty element for us-east-1 (or no region).
pub fn location_constraint(region: Option<&str>) -> String {
    let mut d = Doc::new("LocationConstraint");
    if let Some(r) = region.filter(|r| *r != "us-east-1") {
        push_escaped(&mut d.out, r);
    }
    d.finish("LocationConstraint")
}

/// VersioningConfiguration; `None` (never enabled) is the empty document.
pub fn versioning_configuration(status: Option<&str>) -> String {
    let mut d = Doc::new("VersioningConfiguration");
    if let Some(s) = status {
        d.text("Status", s);
    }
    d.finish("VersioningConfiguration")
}

/// InitiateMultipartUploadResult.
pub fn initiate_multipart_upload(bucket: &str, key: &str, upload_id: &str) -> String {
    let mut d = Doc::new("InitiateMultipartUploadResult");
    d.text("Bucket", bucket);
    d.text("Key", key);
    d.text("UploadId", upload_id);
    d.finish("InitiateMultipartUploadResult")
}

/// CompleteMultipartUploadResult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedUpload {
    pub location: String,
    pub bucket: String,
    pub key: String,
    /// The multipart ETag, `<md5 of md5s>-<parts>`.
    pub etag: String,
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

pub fn complete_multipart_upload(c: &CompletedUpload) -> String {
    let mut d = Doc::new("CompleteMultipartUploadResult");
    d.text("Location", &c.location);
    d.text("Bucket", &c.bucket);
    d.text("Key", &c.key);
    d.etag(&c.etag);
    d.checksum(&c.checksum);
    d.finish("CompleteMultipartUploadResult")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    pub part_number: u32,
    pub last_modified: SystemTime,
    pub etag: String,
    pub size: u64,
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsPage {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub owner: Owner,
    pub storage_class: Option<String>,
    pub part_number_marker: u32,
    pub next_part_number_marker: Option<u32>,
    pub max_parts: usize,
    pub is_truncated: bool,
    pub parts: Vec<PartEntry>,
}

/// ListPartsResult.
pub fn list_parts(p: &PartsPage) -> String {
    let mut d = Doc::new("ListPartsResult");
    d.text("Bucket", &p.bucket);
    d.text("Key", &p.key);
    d.text("UploadId", &p.upload_id);
    d.owner("Initiator", &p.owner);
    d.owner("Owner", &p.owner);
    d.text("StorageClass", p.storage_class.as_deref().unwrap_or("STANDARD"));
    d.num("PartNumberMarker", p.part_number_marker);
    if let Some(next) = p.next_part_number_marker {
        d.num("NextPartNumberMarker", next);
    }
    d.num("MaxParts", p.max_parts);
    d.flag("IsTruncated", p.is_truncated);
    for part in &p.parts {
        d.open("Part");
        d.num("PartNumber", part.part_number);
        d.date("LastModified", part.last_modified);
        d.etag(&part.etag);
        d.num("Size", part.size);
        d.checksum(&part.checksum);
        d.close("Part");
    }
    d.finish("ListPartsResult")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub initiated: SystemTime,
    pub owner: Owner,
    pub storage_class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadsPage {
    pub uploads: Vec<UploadEntry>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// ListMultipartUploadsResult.
pub fn list_multipart_uploads(bucket: &str, args: &ListUploadsArgs, page: &UploadsPage) -> String {
    let mut d = Doc::new("ListMultipartUploadsResult");
    d.url_encode = args.url_encode;
    d.text("Bucket", bucket);
    d.key("KeyMarker", args.key_marker.as_deref().unwrap_or(""));
    d.text("UploadIdMarker", args.upload_id_marker.as_deref().unwrap_or(""));
    d.key("NextKeyMarker", page.next_key_marker.as_deref().unwrap_or(""));
    d.text("NextUploadIdMarker", page.next_upload_id_marker.as_deref().unwrap_or(""));
    d.key("Prefix", &args.prefix);
    d.opt_key("Delimiter", args.delimiter.as_deref());
    d.num("MaxUploads", args.max_uploads);
    if args.url_encode {
        d.text("EncodingType", "url");
    }
    d.flag("IsTruncated", page.is_truncated);
    for u in &page.uploads {
        d.open("Upload");
        d.key("Key", &u.key);
        d.text("UploadId", &u.upload_id);
        d.owner("Initiator", &u.owner);
        d.owner("Owner", &u.owner);
        d.text("StorageClass", u.storage_class.as_deref().unwrap_or("STANDARD"));
        d.date("Initiated", u.initiated);
        d.close("Upload");
    }
    d.common_prefixes(&page.common_prefixes);
    d.finish("ListMultipartUploadsResult")
}

/// CopyObjectResult.
pub fn copy_object_result(
    etag: &str,
    last_modified: SystemTime,
    checksum: &Option<(ChecksumAlgorithm, String)>,
) -> String {
    let mut d = Doc::new("CopyObjectResult");
    d.date("LastModified", last_modified);
    d.etag(etag);
    d.checksum(checksum);
    d.finish("CopyObjectResult")
}

/// CopyPartResult.
pub fn copy_part_result(etag: &str, last_modified: SystemTime) -> String {
    let mut d = Doc::new("CopyPartResult");
    d.date("LastModified", last_modified);
    d.etag(etag);
    d.finish("CopyPartResult")
}

/// The answer to a POST upload asked for with `success_action_status=201`.
pub fn post_response(location: &str, bucket: &str, key: &str, etag: &str) -> String {
    let mut d = Doc::new("PostResponse");
    d.text("Location", location);
    d.text("Bucket", bucket);
    d.text("Key", key);
    d.etag(etag);
    d.finish("PostResponse")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedEntry {
    pub key: String,
    pub version_id: Option<String>,
    pub delete_marker_version_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub key: String,
    pub version_id: Option<String>,
    pub code: S3ErrorCode,
    pub message: String,
}

/// DeleteResult. In quiet mode only the errors are listed.
pub fn delete_result(quiet: bool, deleted: &[DeletedEntry], errors: &[DeleteFailure]) -> String {
    let mut d = Doc::new("DeleteResult");
    if !quiet {
        for e in deleted {
            d.open("Deleted");
            d.text("Key", &e.key);
            if let Some(v) = &e.version_id {
                d.text("VersionId", v);
            }
            if let Some(v) = &e.delete_marker_version_id {
                d.flag("DeleteMarker", true);
                d.text("DeleteMarkerVersionId", v);
            }
            d.close("Deleted");
        }
    }
    for e in errors {
        d.open("Error");
        d.text("Key", &e.key);
        if let Some(v) = &e.version_id {
            d.text("VersionId", v);
        }
        d.text("Code", e.code.as_str());
        d.text("Message", &e.message);
        d.close("Error");
    }
    d.finish("DeleteResult")
}

// ---------------------------------------------------------------------------------------
// Parsing

/// A parsed element: local name, text, children. Built without recursion.
#[derive(Debug, Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

fn parse_document(body: &[u8]) -> Result<Element, S3Error> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let name_of = |raw: &[u8]| String::from_utf8(raw.to_vec()).map_err(|_| S3Error::malformed_xml());
    loop {
        let event = reader.read_event().map_err(|_| S3Error::malformed_xml())?;
        match event {
            // A second root element.
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(S3Error::malformed_xml());
            }
            Event::Start(e) => {
                count += 1;
                if count > MAX_XML_ELEMENTS || stack.len() >= MAX_XML_DEPTH {
                    return Err(S3Error::malformed_xml());
                }
                stack.push(Element { name: name_of(e.local_name().as_ref())?, ..Element::default() });
            }
            Event::Empty(e) => {
                count += 1;
                let el = Element { name: name_of(e.local_name().as_ref())?, ..Element::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(S3Error::malformed_xml)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|_| S3Error::malformed_xml())?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(S3Error::malformed_xml()),
                }
            }
            Event::CData(c) => {
                let text = String::from_utf8(c.into_inner().into_owned()).map_err(|_| S3Error::malformed_xml())?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None => return Err(S3Error::malformed_xml()),
                }
            }
            Event::DocType(_) => return Err(S3Error::malformed_xml()),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(S3Error::malformed_xml());
    }
    root.ok_or_else(S3Error::malformed_xml)
}

/// One `<Part>` of a CompleteMultipartUpload body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletePart {
    pub part_number: u32,
    /// Unquoted.
    pub etag: String,
    pub checksums: Vec<(ChecksumAlgorithm, String)>,
}

/// Parses CompleteMultipartUpload. Parts must be in ascending order (InvalidPartOrder).
pub fn parse_complete_multipart_upload(body: &[u8]) -> Result<Vec<CompletePart>, S3Error> {
    let root = parse_document(body)?;
    if root.name != "CompleteMultipartUpload" {
        return Err(S3Error::malformed_xml());
    }
    let mut parts = Vec::new();
    for p in root.children_named("Part") {
        let part_number =
            p.child_text("PartNumber").and_then(|n| n.parse::<u32>().ok()).ok_or_else(S3Error::malformed_xml)?;
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(S3Error::invalid_argument("Part number must be an integer between 1 and 10000, inclusive"));
        }
        let etag = p.child_text("ETag").ok_or_else(S3Error::malformed_xml)?;
        let checksums = ChecksumAlgorithm::ALL
            .into_iter()
            .filter_map(|alg| p.child_text(alg.xml_element()).map(|v| (alg, v.to_string())))
            .collect();
        parts.push(CompletePart { part_number, etag: unquote_etag(etag).to_string(), checksums });
    }
    if parts.is_empty() {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema: CompleteMultipartUpload needs at least one Part.",
        ));
    }
    if parts.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(S3Error::new(S3ErrorCode::InvalidPartOrder));
    }
    Ok(parts)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIdentifier {
    pub key: String,
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub objects: Vec<ObjectIdentifier>,
}

/// Parses a DeleteObjects body: 1 to 1000 `<Object>`s, optional `<Quiet>`.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, S3Error> {
    let root = parse_document(body)?;
    if root.name != "Delete" {
        return Err(S3Error::malformed_xml());
    }
    let quiet = match root.child_text("Quiet") {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("true") => true,
        Some(q) if q.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(S3Error::malformed_xml()),
    };
    let mut objects = Vec::new();
    for o in root.children_named("Object") {
        // Keys keep their whitespace: only the element's own text, untrimmed.
        let key =
            o.child("Key").map(|k| k.text.clone()).filter(|k| !k.is_empty()).ok_or_else(S3Error::malformed_xml)?;
        let version_id = o.child_text("VersionId").filter(|v| !v.is_empty()).map(str::to_string);
        objects.push(ObjectIdentifier { key, version_id });
        if objects.len() > MAX_DELETE_KEYS {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema: at most 1000 keys per DeleteObjects request.",
            ));
        }
    }
    if objects.is_empty() {
        return Err(S3Error::malformed_xml());
    }
    Ok(DeleteRequest { quiet, objects })
}

/// Parses a CreateBucket body: the LocationConstraint, if any. An empty body is fine.
pub fn parse_create_bucket_configuration(body: &[u8]) -> Result<Option<String>, S3Error> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let root = parse_document(body)?;
    if root.name != "CreateBucketConfiguration" {
        return Err(S3Error::malformed_xml());
    }
    Ok(root.child_text("LocationConstraint").filter(|l| !l.is_empty()).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_etags_and_numbers_written_in_place_match_the_formatters() {
        use crate::http_util::format_iso8601;
        use std::time::{Duration, UNIX_EPOCH};
        let mut times = vec![
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_millis(951_782_400_123), // 2000-02-29T00:00:00.123Z
            UNIX_EPOCH + Duration::from_millis(4_102_444_799_999), // 2099-12-31T23:59:59.999Z
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            times.push(UNIX_EPOCH + Duration::from_millis(x % 4_102_444_800_000));
        }
        for t in times {
            let mut d = Doc::new("R");
            d.date("T", t);
            assert_eq!(d.out.split_once("<T>").map(|(_, r)| r), Some(format!("{}</T>", format_iso8601(t)).as_str()));
        }
        for (stored, want) in [("\"abc\"", "&quot;abc&quot;"), ("abc-2", "&quot;abc-2&quot;")] {
            let mut d = Doc::new("R");
            d.etag(stored);
            assert!(d.out.ends_with(&format!("<ETag>{want}</ETag>")), "{}", d.out);
        }
        let mut d = Doc::new("R");
        d.num("Size", 18_446_744_073_709_551_615u64);
        d.text("Key", "a<b&c\r");
        assert!(d.out.ends_with("<Size>18446744073709551615</Size><Key>a&lt;b&amp;c&#13;</Key>"), "{}", d.out);
    }
    use std::time::{Duration, UNIX_EPOCH};

    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    fn owner() -> Owner {
        Owner { id: "id1".into(), display_name: "me".into() }
    }

    fn obj(key: &str) -> ObjectEntry {
        ObjectEntry {
            key: key.into(),
            last_modified: t(),
            etag: "abc".into(),
            size: 5,
            storage_class: None,
            owner: Some(owner()),
            checksum_algorithm: None,
        }
    }

    #[test]
    fn list_buckets_renders_owner_and_dates() {
        let xml = list_buckets(&owner(), &[BucketEntry { name: "b1".into(), creation_date: t() }]);
        assert!(xml.contains("<Owner><ID>id1</ID><DisplayName>me</DisplayName></Owner>"));
        assert!(xml.contains("<Bucket><Name>b1</Name><CreationDate>2013-05-24T00:00:00.000Z</CreationDate></Bucket>"));
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"));
    }

    #[test]
    fn list_v2_escapes_keys_and_counts_prefixes() {
        let args = ListObjectsV2Args { max_keys: 1000, delimiter: Some("/".into()), ..Default::default() };
        let page = ListPage {
            objects: vec![obj("a<&>\"b\r")],
            common_prefixes: vec!["dir/".into()],
            is_truncated: true,
            next: Some("tok".into()),
        };
        let xml = list_objects_v2("b1", &args, &page);
        assert!(xml.contains("<Key>a&lt;&amp;&gt;&quot;b&#13;</Key>"), "{xml}");
        assert!(xml.contains("<KeyCount>2</KeyCount>"));
        assert!(xml.contains("<NextContinuationToken>tok</NextContinuationToken>"));
        assert!(xml.contains("<ETag>&quot;abc&quot;</ETag>"));
        assert!(xml.contains("<CommonPrefixes><Prefix>dir/</Prefix></CommonPrefixes>"));
        assert!(!xml.contains("<Owner>"), "owner only with fetch-owner");
        let with_owner = list_objects_v2("b1", &ListObjectsV2Args { fetch_owner: true, ..args }, &page);
        assert!(with_owner.contains("<Owner><ID>id1</ID>"));
    }

    #[test]
    fn url_encoding_applies_to_keys_and_prefixes() {
        let args = ListObjectsArgs { prefix: "a b/".into(), max_keys: 10, url_encode: true, ..Default::default() };
        let page = ListPage { objects: vec![obj("a b/c+d")], ..Default::default() };
        let xml = list_objects_v1("b1", &args, &page);
        assert!(xml.contains("<Key>a%20b/c%2Bd</Key>"), "{xml}");
        assert!(xml.contains("<Prefix>a%20b/</Prefix>"));
        assert!(xml.contains("<EncodingType>url</EncodingType>"));
        assert!(xml.contains("<Owner>"), "v1 lists owners");
    }

    #[test]
    fn versions_render_delete_markers_without_etag() {
        let args = ListVersionsArgs { max_keys: 1000, ..Default::default() };
        let marker = VersionEntry {
            key: "k".into(),
            version_id: "v2".into(),
            is_latest: true,
            is_delete_marker: true,
            last_modified: t(),
            etag: String::new(),
            size: 0,
            storage_class: None,
            owner: None,
        };
        let page = VersionsPage { versions: vec![marker], ..Default::default() };
        let xml = list_versions("b1", &args, &page);
        assert!(xml.contains("<DeleteMarker><Key>k</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest><LastModified>2013-05-24T00:00:00.000Z</LastModified></DeleteMarker>"), "{xml}");
    }

    #[test]
    fn small_documents() {
        assert!(location_constraint(None).ends_with("\"></LocationConstraint>"));
        assert!(location_constraint(Some("eu-west-1")).contains(">eu-west-1</LocationConstraint>"));
        assert!(versioning_configuration(None).ends_with("\"></VersioningConfiguration>"));
        assert!(initiate_multipart_upload("b", "k&", "u").contains("<Key>k&amp;</Key><UploadId>u</UploadId>"));
        let c = CompletedUpload {
            location: "/b/k".into(),
            bucket: "b".into(),
            key: "k".into(),
            etag: "e-2".into(),
            checksum: Some((ChecksumAlgorithm::Crc32c, "sOO8/Q==".into())),
        };
        assert!(complete_multipart_upload(&c)
            .contains("<ETag>&quot;e-2&quot;</ETag><ChecksumCRC32C>sOO8/Q==</ChecksumCRC32C>"));
        assert!(copy_object_result("e", t(), &None)
            .contains("<LastModified>2013-05-24T00:00:00.000Z</LastModified><ETag>&quot;e&quot;</ETag>"));
        assert!(copy_part_result("e", t()).contains("<CopyPartResult"));
    }

    #[test]
    fn parts_and_uploads_listings() {
        let page = PartsPage {
            bucket: "b".into(),
            key: "k".into(),
            upload_id: "u".into(),
            owner: owner(),
            storage_class: None,
            part_number_marker: 0,
            next_part_number_marker: Some(1),
            max_parts: 1,
            is_truncated: true,
            parts: vec![PartEntry { part_number: 1, last_modified: t(), etag: "p1".into(), size: 5, checksum: None }],
        };
        let xml = list_parts(&page);
        assert!(xml.contains("<Part><PartNumber>1</PartNumber><LastModified>2013-05-24T00:00:00.000Z</LastModified><ETag>&quot;p1&quot;</ETag><Size>5</Size></Part>"));
        assert!(xml.contains("<NextPartNumberMarker>1</NextPartNumberMarker>"));
        let args = ListUploadsArgs { max_uploads: 1000, ..Default::default() };
        let up = UploadsPage {
            uploads: vec![UploadEntry {
                key: "k".into(),
                upload_id: "u".into(),
                initiated: t(),
                owner: owner(),
                storage_class: None,
            }],
            ..Default::default()
        };
        assert!(list_multipart_uploads("b", &args, &up).contains("<Upload><Key>k</Key><UploadId>u</UploadId>"));
    }

    #[test]
    fn delete_result_quiet_lists_only_errors() {
        let deleted = [DeletedEntry { key: "a".into(), version_id: None, delete_marker_version_id: None }];
        let errors = [DeleteFailure {
            key: "b".into(),
            version_id: None,
            code: S3ErrorCode::AccessDenied,
            message: "Access Denied".into(),
        }];
        let loud = delete_result(false, &deleted, &errors);
        assert!(loud.contains("<Deleted><Key>a</Key></Deleted>"));
        assert!(loud.contains("<Error><Key>b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"));
        assert!(!delete_result(true, &deleted, &errors).contains("<Deleted>"));
    }

    #[test]
    fn complete_multipart_upload_body_parses() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Part><PartNumber>1</PartNumber><ETag>"aaa"</ETag><ChecksumCRC32>NSRBwg==</ChecksumCRC32></Part>
  <Part><ETag>&quot;bbb&quot;</ETag><PartNumber>3</PartNumber></Part>
</CompleteMultipartUpload>"#;
        let parts = parse_complete_multipart_upload(body).expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            CompletePart {
                part_number: 1,
                etag: "aaa".into(),
                checksums: vec![(ChecksumAlgorithm::Crc32, "NSRBwg==".into())]
            }
        );
        assert_eq!(parts[1].etag, "bbb");
        assert_eq!(parts[1].part_number, 3);
    }

    #[test]
    fn complete_multipart_upload_rejects_bad_bodies() {
        let out_of_order = b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part><Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>";
        assert_eq!(
            parse_complete_multipart_upload(out_of_order).expect_err("order").code,
            S3ErrorCode::InvalidPartOrder
        );
        for bad in [
            &b"<CompleteMultipartUpload></CompleteMultipartUpload>"[..],
            b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
            b"<Other/>",
            b"not xml at all <",
            b"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><CompleteMultipartUpload/>",
        ] {
            assert_eq!(
                parse_complete_multipart_upload(bad).expect_err("bad").code,
                S3ErrorCode::MalformedXML,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn delete_body_parses_quiet_and_versions() {
        let body = b"<Delete><Quiet>true</Quiet><Object><Key> spaced key </Key></Object><Object><Key>k2</Key><VersionId>v1</VersionId></Object></Delete>";
        let req = parse_delete(body).expect("parses");
        assert!(req.quiet);
        assert_eq!(req.objects[0], ObjectIdentifier { key: " spaced key ".into(), version_id: None });
        assert_eq!(req.objects[1].version_id.as_deref(), Some("v1"));
    }

    #[test]
    fn delete_body_limits_keys_to_1000() {
        let make = |n: usize| {
            let mut b = String::from("<Delete>");
            for i in 0..n {
                b.push_str(&format!("<Object><Key>k{i}</Key></Object>"));
            }
            b.push_str("</Delete>");
            b
        };
        assert_eq!(parse_delete(make(1000).as_bytes()).expect("1000").objects.len(), 1000);
        assert_eq!(parse_delete(make(1001).as_bytes()).expect_err("1001").code, S3ErrorCode::MalformedXML);
        assert_eq!(parse_delete(make(0).as_bytes()).expect_err("0").code, S3ErrorCode::MalformedXML);
    }

    #[test]
    fn create_bucket_configuration_parses() {
        assert_eq!(parse_create_bucket_configuration(b"").expect("empty"), None);
        let body = b"<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>";
        assert_eq!(parse_create_bucket_configuration(body).expect("ok").as_deref(), Some("eu-west-1"));
        assert_eq!(parse_create_bucket_configuration(b"<Nope/>").expect_err("bad").code, S3ErrorCode::MalformedXML);
    }
}
