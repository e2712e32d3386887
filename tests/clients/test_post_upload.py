"""Browser-based uploads (POST Object) with forms boto3's `generate_presigned_post` signs: the
file is stored with the form's headers and metadata, and every way a form can break its policy
is refused with S3's code and stores nothing."""

from __future__ import annotations

import hashlib
import uuid
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from test_boto3 import assert_missing, blob, get_bytes, no_proxy_opener


def multipart_body(fields: dict[str, str], file_bytes: bytes, filename: str = "photo.png",
                   file_first: bool = False) -> tuple[bytes, str]:
    boundary = f"----tessera{uuid.uuid4().hex}"
    out = bytearray()
    file_part = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + file_bytes + b"\r\n"
    if file_first:
        out += file_part
    for name, value in fields.items():
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
    if not file_first:
        out += file_part
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def post(url: str, fields: dict[str, str], file_bytes: bytes, extra_headers: dict | None = None,
         **kw) -> tuple[int, dict, bytes]:
    body, ctype = multipart_body(fields, file_bytes, **kw)
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": ctype, **(extra_headers or {})})
    try:
        with no_proxy_opener().open(req, timeout=60) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def code_of(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code")


def test_a_signed_form_uploads_the_file_with_its_fields(s3, bucket):
    data = blob(300_000, seed=21)
    form = s3.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"Content-Type": "image/png", "x-amz-meta-owner": "browser", "success_action_status": "201"},
        Conditions=[["starts-with", "$key", "uploads/"], {"Content-Type": "image/png"},
                    {"x-amz-meta-owner": "browser"}, {"success_action_status": "201"},
                    ["content-length-range", 1, 1_000_000]],
        ExpiresIn=300,
    )
    code, headers, body = post(form["url"], form["fields"], data)
    assert code == 201, body
    doc = ET.fromstring(body)
    assert doc.tag.endswith("PostResponse")
    assert doc.findtext("{*}Key") == "uploads/photo.png"
    assert doc.findtext("{*}Bucket") == bucket
    assert doc.findtext("{*}ETag") == f"\"{hashlib.md5(data).hexdigest()}\""
    assert get_bytes(s3, bucket, "uploads/photo.png") == data
    head = s3.head_object(Bucket=bucket, Key="uploads/photo.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"owner": "browser"}

    # Without success_action_status: 204 with the ETag and the object's location.
    plain = s3.generate_presigned_post(bucket, "plain", ExpiresIn=300)
    code, headers, body = post(plain["url"], plain["fields"], b"small")
    assert code == 204, body
    assert headers["etag"] == f"\"{hashlib.md5(b'small').hexdigest()}\""
    assert get_bytes(s3, bucket, "plain") == b"small"


def test_forms_that_break_their_policy_are_refused_and_store_nothing(s3, bucket):
    def form(key="in/x", conditions=None, expires=300, fields=None):
        return s3.generate_presigned_post(bucket, key, Fields=fields, ExpiresIn=expires,
                                          Conditions=conditions or [["starts-with", "$key", "in/"],
                                                                    ["content-length-range", 2, 10]])

    good = form()
    # The key outside the signed prefix.
    f = dict(good["fields"], key="out/x")
    code, _, body = post(good["url"], f, b"12345")
    assert (code, code_of(body)) == (403, "AccessDenied"), body
    assert_missing(s3, bucket, "out/x")
    # A field the policy does not name (metadata added to a signed form).
    f = dict(good["fields"], **{"x-amz-meta-evil": "1"})
    code, _, body = post(good["url"], f, b"12345")
    assert (code, code_of(body)) == (403, "AccessDenied") and b"Extra input fields" in body, body
    # A policy altered after signing.
    f = dict(good["fields"], policy=good["fields"]["policy"][:-4] + "AAA=")
    code, _, body = post(good["url"], f, b"12345")
    assert code == 403 and code_of(body) in ("SignatureDoesNotMatch",), body
    # Outside content-length-range, both ways.
    code, _, body = post(good["url"], good["fields"], b"x" * 11)
    assert (code, code_of(body)) == (400, "EntityTooLarge"), body
    code, _, body = post(good["url"], good["fields"], b"x")
    assert (code, code_of(body)) == (400, "EntityTooSmall"), body
    assert_missing(s3, bucket, "in/x")
    # Expired (signed with a negative lifetime).
    code, _, body = post(good["url"], form(expires=-10)["fields"], b"12345")
    assert (code, code_of(body)) == (403, "AccessDenied") and b"expired" in body, body
    # No file field before the end, or the file first (fields after it are not read).
    code, _, body = post(good["url"], good["fields"], b"12345", file_first=True)
    assert code in (400, 403), body
    assert_missing(s3, bucket, "in/x")
    # An unsigned form is an anonymous write.
    code, _, body = post(good["url"], {"key": "in/x"}, b"12345")
    assert (code, code_of(body)) == (403, "AccessDenied"), body
    # A public ACL in a signed form is refused like the header.
    acl = form(conditions=[["starts-with", "$key", "in/"], {"acl": "public-read"}], fields={"acl": "public-read"})
    code, _, body = post(acl["url"], acl["fields"], b"12345")
    assert (code, code_of(body)) == (501, "NotImplemented"), body
    assert_missing(s3, bucket, "in/x")
    # A request header no signature covers (the form's policy signs fields, not headers).
    code, _, body = post(good["url"], good["fields"], b"12345",
                         extra_headers={"x-amz-copy-source": f"/{bucket}/plain"})
    assert (code, code_of(body)) == (403, "AccessDenied"), body
    assert_missing(s3, bucket, "in/x")
    # The good form still works.
    code, _, body = post(good["url"], good["fields"], b"12345")
    assert code == 204, body
    assert get_bytes(s3, bucket, "in/x") == b"12345"
