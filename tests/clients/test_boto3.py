"""boto3 (with botocore[crt]) against a real `tessera server`.

Each test names the S3 behaviour it proves and checks the bytes (hashes, ETags, checksums), not
only status codes. All objects are made from seeded random bytes so a failure can be replayed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import urllib.error
import urllib.parse
import urllib.request
import zlib

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import SECRET_KEY, boto3_client, empty_and_delete_bucket, unique_bucket_name

MIB = 1024 * 1024
PART_BYTES = 5 * MIB
SEED = 20240611


def blob(size: int, seed: int = SEED) -> bytes:
    return random.Random(seed * 1_000_003 + size).randbytes(size)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def multipart_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checksum_of(algorithm: str, data: bytes) -> str:
    """The S3 wire form (base64 of the big-endian value or digest) of a flexible checksum."""
    import awscrt.checksums as crt

    if algorithm == "CRC32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    if algorithm == "CRC32C":
        return b64(crt.crc32c(data).to_bytes(4, "big"))
    if algorithm == "CRC64NVME":
        return b64(crt.crc64nvme(data).to_bytes(8, "big"))
    if algorithm == "SHA256":
        return b64(hashlib.sha256(data).digest())
    if algorithm == "SHA1":
        return b64(hashlib.sha1(data).digest())
    raise ValueError(algorithm)


def error_of(excinfo) -> tuple[str, int]:
    err = excinfo.value.response
    return err.get("Error", {}).get("Code"), err["ResponseMetadata"]["HTTPStatusCode"]


def get_bytes(s3, bucket: str, key: str, **kwargs) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def assert_missing(s3, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert error_of(e)[1] == 404, f"{key!r} should not exist, HEAD answered {e.value.response}"


def no_proxy_opener():
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------------------------
# Buckets


def test_bucket_create_list_head_delete_and_bucket_not_empty(s3):
    name = unique_bucket_name("life")
    s3.create_bucket(Bucket=name)
    try:
        listed = s3.list_buckets()["Buckets"]
        mine = [b for b in listed if b["Name"] == name]
        assert len(mine) == 1, f"{name} missing from ListBuckets: {listed}"
        assert isinstance(mine[0]["CreationDate"], dt.datetime)
        assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200

        # Creating it again: us-east-1 answers 200, other regions BucketAlreadyOwnedByYou.
        try:
            s3.create_bucket(Bucket=name)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "BucketAlreadyOwnedByYou", e.response

        s3.put_object(Bucket=name, Key="keep", Body=b"x")
        with pytest.raises(ClientError) as e:
            s3.delete_bucket(Bucket=name)
        assert error_of(e) == ("BucketNotEmpty", 409)
        assert get_bytes(s3, name, "keep") == b"x", "a refused DeleteBucket must keep the data"

        s3.delete_object(Bucket=name, Key="keep")
        resp = s3.delete_bucket(Bucket=name)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ClientError) as e:
            s3.head_bucket(Bucket=name)
        assert error_of(e)[1] == 404
        assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        empty_and_delete_bucket(s3, name)


def test_invalid_bucket_name_is_refused(s3):
    for bad in ("ab", "UPPER-case-bucket", "under_score_bucket", "-leading-dash"):
        with pytest.raises(ClientError) as e:
            s3.create_bucket(Bucket=bad)
        assert error_of(e) == ("InvalidBucketName", 400), bad
    # S3's reserved prefixes and suffixes, and an address-shaped name.
    for bad in ("xn--punycode", "sthree-bucket", "amzn-s3-demo-bucket", "data-s3alias", "data--ol-s3",
                "data.mrap", "data--x-s3", "192.168.01.1"):
        with pytest.raises(ClientError) as e:
            s3.create_bucket(Bucket=bad)
        assert error_of(e) == ("InvalidBucketName", 400), bad
        assert bad not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_missing_bucket_and_key_give_no_such_errors(s3, bucket):
    missing = unique_bucket_name("missing")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=missing, Key="k")
    assert error_of(e) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=missing)
    assert error_of(e) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=missing, Key="k", Body=b"data")
    assert error_of(e) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=missing)
    assert error_of(e) == ("NoSuchBucket", 404)

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="no/such/key")
    assert error_of(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="no/such/key")
    assert error_of(e)[1] == 404
    # DeleteObject of a missing key succeeds (S3 deletes are idempotent).
    resp = s3.delete_object(Bucket=bucket, Key="no/such/key")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


# ---------------------------------------------------------------------------------------------
# Objects


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 65_537, 1 * MIB + 17, 3 * MIB])
def test_put_get_head_delete_roundtrip_is_bit_exact(s3, bucket, size):
    data = blob(size)
    key = f"obj/size-{size}"
    put = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        ContentType="application/x-tessera-test",
        Metadata={"color": "blue", "owner-id": "42"},
    )
    assert put["ETag"] == f'"{md5_hex(data)}"'

    got = s3.get_object(Bucket=bucket, Key=key)
    body = got["Body"].read()
    assert len(body) == size
    assert sha256_hex(body) == sha256_hex(data)
    assert got["ContentLength"] == size
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "application/x-tessera-test"
    assert got["Metadata"] == {"color": "blue", "owner-id": "42"}
    assert isinstance(got["LastModified"], dt.datetime)

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["ETag"] == put["ETag"]
    assert head["ContentType"] == "application/x-tessera-test"
    assert head["Metadata"] == {"color": "blue", "owner-id": "42"}
    assert head["LastModified"] == got["LastModified"]

    assert s3.delete_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key=key)
    assert error_of(e) == ("NoSuchKey", 404)


def test_overwrite_replaces_bytes_and_metadata(s3, bucket):
    old, new = blob(10_000, 1), blob(20_000, 2)
    s3.put_object(Bucket=bucket, Key="k", Body=old, Metadata={"v": "1"}, ContentType="text/old")
    put = s3.put_object(Bucket=bucket, Key="k", Body=new, Metadata={"w": "2"})
    got = s3.get_object(Bucket=bucket, Key="k")
    assert sha256_hex(got["Body"].read()) == sha256_hex(new)
    assert got["ETag"] == put["ETag"] == f'"{md5_hex(new)}"'
    assert got["Metadata"] == {"w": "2"}
    assert got["ContentType"] != "text/old"


def test_keys_with_special_characters_roundtrip_and_list(s3, bucket):
    keys = [
        "dir/spaced name+plus=eq&amp;.txt",
        "unicode/ü€😀/файл",
        "percent%20literal?query#hash",
        "trailing/slash/",
        "a//double//slash",
        "tilde~star*'quote'(paren)",
    ]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=blob(100 + i))
    for i, key in enumerate(keys):
        assert get_bytes(s3, bucket, key) == blob(100 + i), key
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode()), listed
    listed_v1 = [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]]
    assert listed_v1 == listed


def test_key_of_1024_bytes_works_and_1025_is_key_too_long(s3, bucket):
    key_1024 = "é" * 511 + "kk"  # 511 * 2 + 2 = 1024 bytes of UTF-8
    assert len(key_1024.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=key_1024, Body=b"longest key")
    assert get_bytes(s3, bucket, key_1024) == b"longest key"

    key_1025 = "k" * 1025
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key=key_1025, Body=b"too long")
    assert error_of(e) == ("KeyTooLongError", 400)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key_1024]


# ---------------------------------------------------------------------------------------------
# Ranges and conditional requests


RANGE_SIZE = 100_003


@pytest.mark.parametrize(
    "header,start,end",
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-99", 10, 99),
        ("bytes=-500", RANGE_SIZE - 500, RANGE_SIZE - 1),
        ("bytes=99000-", 99000, RANGE_SIZE - 1),
        ("bytes=100-999999999", 100, RANGE_SIZE - 1),
        (f"bytes={RANGE_SIZE - 1}-{RANGE_SIZE - 1}", RANGE_SIZE - 1, RANGE_SIZE - 1),
    ],
)
def test_range_get_returns_exact_slice(s3, bucket, header, start, end):
    data = blob(RANGE_SIZE)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    got = s3.get_object(Bucket=bucket, Key="r", Range=header)
    body = got["Body"].read()
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {start}-{end}/{RANGE_SIZE}"
    assert got["ContentLength"] == end - start + 1
    assert body == data[start : end + 1]


def test_range_past_the_end_is_invalid_range_416(s3, bucket):
    s3.put_object(Bucket=bucket, Key="r", Body=blob(1000))
    for header in ("bytes=1000-2000", "bytes=5000-"):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert error_of(e) == ("InvalidRange", 416), header
    # A syntactically invalid Range is ignored: the whole object comes back.
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=abc")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == blob(1000)


def test_conditional_get_if_match_and_if_none_match(s3, bucket):
    data = blob(4321)
    etag = s3.put_object(Bucket=bucket, Key="c", Body=data)["ETag"]
    other = '"0123456789abcdef0123456789abcdef"'

    assert get_bytes(s3, bucket, "c", IfMatch=etag) == data
    assert get_bytes(s3, bucket, "c", IfNoneMatch=other) == data

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch=other)
    assert error_of(e) == ("PreconditionFailed", 412)

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert error_of(e)[1] == 304

    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert error_of(e)[1] == 304
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", IfMatch=other)
    assert error_of(e)[1] == 412


def test_conditional_get_by_modification_time(s3, bucket):
    data = blob(999)
    s3.put_object(Bucket=bucket, Key="t", Body=data)
    modified = s3.head_object(Bucket=bucket, Key="t")["LastModified"]
    day = dt.timedelta(days=1)

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="t", IfModifiedSince=modified)
    assert error_of(e)[1] == 304
    assert get_bytes(s3, bucket, "t", IfModifiedSince=modified - day) == data

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="t", IfUnmodifiedSince=modified - day)
    assert error_of(e) == ("PreconditionFailed", 412)
    assert get_bytes(s3, bucket, "t", IfUnmodifiedSince=modified) == data


# ---------------------------------------------------------------------------------------------
# Listings


def put_keys(s3, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


def test_list_objects_v2_prefix_and_delimiter(s3, bucket):
    keys = ["a/1", "a/2", "a/b/3", "b/1", "c", "d/e/f"]
    put_keys(s3, bucket, keys)

    everything = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in everything["Contents"]] == keys
    assert everything["KeyCount"] == len(keys)
    assert everything["IsTruncated"] is False
    for o in everything["Contents"]:
        assert o["Size"] == len(o["Key"])
        assert o["ETag"] == f'"{md5_hex(o["Key"].encode())}"'

    by_prefix = s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in by_prefix["Contents"]] == ["a/1", "a/2", "a/b/3"]

    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["c"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert top["KeyCount"] == 4

    nested = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in nested["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["a/b/"]

    none = s3.list_objects_v2(Bucket=bucket, Prefix="zzz")
    assert none.get("Contents", []) == [] and none["KeyCount"] == 0

    after = s3.list_objects_v2(Bucket=bucket, StartAfter="a/b/3")
    assert [o["Key"] for o in after["Contents"]] == ["b/1", "c", "d/e/f"]


def test_list_objects_v2_paginator_visits_every_key_once(s3, bucket):
    keys = [f"p/k{i:03d}" for i in range(25)]
    put_keys(s3, bucket, keys + ["other"])
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="p/", PaginationConfig={"PageSize": 7}
        )
    )
    assert [len(p["Contents"]) for p in pages] == [7, 7, 7, 4]
    assert [p["IsTruncated"] for p in pages] == [True, True, True, False]
    assert all("NextContinuationToken" in p for p in pages[:-1])
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys


def test_list_objects_v2_paginator_with_delimiter_counts_prefixes(s3, bucket):
    dirs = [f"q/dir{i:02d}/" for i in range(6)]
    files = [f"q/file{i:02d}" for i in range(5)]
    put_keys(s3, bucket, [d + "x" for d in dirs] + [d + "y" for d in dirs] + files)
    seen_keys, seen_prefixes = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="q/", Delimiter="/", PaginationConfig={"PageSize": 3}
    ):
        entries = len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))
        assert entries <= 3, page
        assert page["KeyCount"] == entries
        seen_keys += [o["Key"] for o in page.get("Contents", [])]
        seen_prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert seen_prefixes == dirs
    assert seen_keys == files


def test_list_objects_v1_marker_and_paginator(s3, bucket):
    keys = [f"m/k{i:03d}" for i in range(20)]
    put_keys(s3, bucket, keys)

    page = s3.list_objects(Bucket=bucket, Marker="m/k010", MaxKeys=5)
    assert [o["Key"] for o in page["Contents"]] == keys[11:16]
    assert page["IsTruncated"] is True
    assert page["Marker"] == "m/k010"

    last = s3.list_objects(Bucket=bucket, Marker="m/k015")
    assert [o["Key"] for o in last["Contents"]] == keys[16:]
    assert last["IsTruncated"] is False

    pages = list(
        s3.get_paginator("list_objects").paginate(
            Bucket=bucket, Prefix="m/", PaginationConfig={"PageSize": 6}
        )
    )
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    assert len(pages) == 4

    delimited = s3.list_objects(Bucket=bucket, Delimiter="k01", MaxKeys=3)
    assert delimited["IsTruncated"] is True
    assert "NextMarker" in delimited, "v1 with a delimiter must return NextMarker when truncated"


# ---------------------------------------------------------------------------------------------
# Copy and multi-delete


def test_copy_object_copies_bytes_and_metadata(s3, bucket):
    data = blob(300_001)
    src_key = "src/ü space+plus"
    s3.put_object(
        Bucket=bucket, Key=src_key, Body=data, ContentType="image/x-src", Metadata={"a": "1"}
    )
    copied = s3.copy_object(
        Bucket=bucket, Key="dst/copy", CopySource={"Bucket": bucket, "Key": src_key}
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{md5_hex(data)}"'
    got = s3.get_object(Bucket=bucket, Key="dst/copy")
    assert sha256_hex(got["Body"].read()) == sha256_hex(data)
    assert got["Metadata"] == {"a": "1"}
    assert got["ContentType"] == "image/x-src"

    other = unique_bucket_name("copydst")
    s3.create_bucket(Bucket=other)
    try:
        s3.copy_object(Bucket=other, Key="x", CopySource={"Bucket": bucket, "Key": src_key})
        assert sha256_hex(get_bytes(s3, other, "x")) == sha256_hex(data)
    finally:
        empty_and_delete_bucket(s3, other)
    # The source is untouched.
    assert sha256_hex(get_bytes(s3, bucket, src_key)) == sha256_hex(data)


def test_copy_object_replace_metadata(s3, bucket):
    data = blob(12_345)
    s3.put_object(Bucket=bucket, Key="s", Body=data, ContentType="text/a", Metadata={"a": "1"})
    s3.copy_object(
        Bucket=bucket,
        Key="r",
        CopySource={"Bucket": bucket, "Key": "s"},
        MetadataDirective="REPLACE",
        ContentType="text/b",
        Metadata={"b": "2"},
    )
    got = s3.get_object(Bucket=bucket, Key="r")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"b": "2"}
    assert got["ContentType"] == "text/b"

    # Copy onto itself is how a client changes metadata in place; it needs REPLACE.
    s3.copy_object(
        Bucket=bucket,
        Key="s",
        CopySource={"Bucket": bucket, "Key": "s"},
        MetadataDirective="REPLACE",
        Metadata={"c": "3"},
    )
    got = s3.get_object(Bucket=bucket, Key="s")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"c": "3"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="s", CopySource={"Bucket": bucket, "Key": "s"})
    assert error_of(e) == ("InvalidRequest", 400)

    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
    assert error_of(e) == ("NoSuchKey", 404)


def test_delete_objects_verbose_and_quiet(s3, bucket):
    keys = [f"del/{i}" for i in range(6)]
    put_keys(s3, bucket, keys + ["keep"])

    verbose = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": k} for k in keys[:3] + ["del/never-existed"]]},
    )
    assert sorted(d["Key"] for d in verbose["Deleted"]) == sorted(keys[:3] + ["del/never-existed"])
    assert verbose.get("Errors", []) == []

    quiet = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[3:]], "Quiet": True}
    )
    assert quiet.get("Deleted", []) == []
    assert quiet.get("Errors", []) == []

    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert remaining == ["keep"]
    for k in keys:
        assert_missing(s3, bucket, k)


# ---------------------------------------------------------------------------------------------
# Multipart


def test_upload_file_multipart_roundtrip(s3, bucket, tmp_path):
    size = 2 * PART_BYTES + 123_457
    data = blob(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)
    s3.upload_file(str(src), bucket, "big/file.bin", Config=config)

    head = s3.head_object(Bucket=bucket, Key="big/file.bin")
    assert head["ContentLength"] == size
    parts = [data[i : i + PART_BYTES] for i in range(0, size, PART_BYTES)]
    assert head["ETag"] == multipart_etag(parts)

    dst = tmp_path / "dst.bin"
    s3.download_file(bucket, "big/file.bin", str(dst), Config=config)
    assert sha256_hex(dst.read_bytes()) == sha256_hex(data)
    assert sha256_hex(get_bytes(s3, bucket, "big/file.bin")) == sha256_hex(data)

    # A range across the first part boundary.
    lo, hi = PART_BYTES - 1000, PART_BYTES + 1000
    assert get_bytes(s3, bucket, "big/file.bin", Range=f"bytes={lo}-{hi}") == data[lo : hi + 1]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_list_parts_list_uploads_and_complete(s3, bucket):
    key = "mp/manual"
    part1, part2 = blob(PART_BYTES, 1), blob(777_777, 2)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="x/mp",
                                           Metadata={"m": "p"})["UploadId"]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [(key, upload_id)]

    e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=part1)
    e2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=part2)
    assert e1["ETag"] == f'"{md5_hex(part1)}"'
    assert e2["ETag"] == f'"{md5_hex(part2)}"'

    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
        (1, e1["ETag"], len(part1)),
        (2, e2["ETag"], len(part2)),
    ]
    paged = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=1)
    assert [p["PartNumber"] for p in paged["Parts"]] == [1]
    assert paged["IsTruncated"] is True
    rest = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id,
                         PartNumberMarker=paged["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [2]

    # Not visible before completion.
    assert_missing(s3, bucket, key)

    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": e1["ETag"]},
                {"PartNumber": 2, "ETag": e2["ETag"]},
            ]
        },
    )
    assert done["ETag"] == multipart_etag([part1, part2])
    got = s3.get_object(Bucket=bucket, Key=key)
    assert sha256_hex(got["Body"].read()) == sha256_hex(part1 + part2)
    assert got["ETag"] == done["ETag"]
    assert got["ContentType"] == "x/mp"
    assert got["Metadata"] == {"m": "p"}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert error_of(e) == ("NoSuchUpload", 404)


def test_multipart_part_reupload_replaces_it(s3, bucket):
    key = "mp/reupload"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=blob(PART_BYTES, 8))
    final1 = blob(PART_BYTES, 9)
    e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=final1)
    e2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"tail")
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]},
                                   {"PartNumber": 2, "ETag": e2["ETag"]}]},
    )
    assert sha256_hex(get_bytes(s3, bucket, key)) == sha256_hex(final1 + b"tail")


def test_multipart_abort_discards_upload(s3, bucket):
    key = "mp/aborted"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=blob(1000))
    resp = s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert error_of(e) == ("NoSuchUpload", 404)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert_missing(s3, bucket, key)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"late")
    assert error_of(e) == ("NoSuchUpload", 404)


def test_multipart_complete_rejects_small_and_unknown_parts(s3, bucket):
    key = "mp/bad"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"small")
    e2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"tail")

    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]},
                                       {"PartNumber": 2, "ETag": e2["ETag"]}]},
        )
    assert error_of(e) == ("EntityTooSmall", 400)

    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]},
        )
    assert error_of(e) == ("InvalidPart", 400)

    assert_missing(s3, bucket, key)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_multipart_complete_rejects_parts_out_of_order(s3, bucket):
    key = "mp/order"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = {
        n: s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                          Body=blob(PART_BYTES, n))["ETag"]
        for n in (1, 2)
    }
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[2]},
                                       {"PartNumber": 1, "ETag": etags[1]}]},
        )
    assert error_of(e) == ("InvalidPartOrder", 400)
    assert_missing(s3, bucket, key)
    # The upload is still there and completes in the right order.
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[1]},
                                   {"PartNumber": 2, "ETag": etags[2]}]},
    )
    assert sha256_hex(get_bytes(s3, bucket, key)) == sha256_hex(
        blob(PART_BYTES, 1) + blob(PART_BYTES, 2)
    )


# ---------------------------------------------------------------------------------------------
# Integrity: checksums and Content-MD5


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA256", "CRC64NVME"])
def test_put_and_get_with_flexible_checksum(s3, bucket, algorithm):
    data = blob(1 * MIB + 4099)
    expected = checksum_of(algorithm, data)
    key = f"sum/{algorithm}"
    put = s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm=algorithm)
    assert put.get(f"Checksum{algorithm}") == expected, put

    # With ChecksumMode ENABLED botocore also validates the body against the returned value.
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    body = got["Body"].read()
    assert sha256_hex(body) == sha256_hex(data)
    assert got.get(f"Checksum{algorithm}") == expected, {
        k: v for k, v in got.items() if k.startswith("Checksum")
    }
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head.get(f"Checksum{algorithm}") == expected


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA256", "CRC64NVME"])
def test_wrong_flexible_checksum_is_bad_digest_and_stores_nothing(s3, bucket, algorithm):
    data = blob(70_000)
    wrong = checksum_of(algorithm, data + b"!")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=data, **{f"Checksum{algorithm}": wrong})
    assert error_of(e) == ("BadDigest", 400)
    assert_missing(s3, bucket, "bad")


def test_content_md5_mismatch_is_bad_digest_and_keeps_old_version(s3, bucket):
    old = blob(5000, 1)
    s3.put_object(Bucket=bucket, Key="md5", Body=old)
    new = blob(5000, 2)
    wrong_md5 = b64(hashlib.md5(new + b"x").digest())
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="md5", Body=new, ContentMD5=wrong_md5)
    assert error_of(e) == ("BadDigest", 400)
    assert get_bytes(s3, bucket, "md5") == old

    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="md5-new", Body=new, ContentMD5=wrong_md5)
    assert error_of(e) == ("BadDigest", 400)
    assert_missing(s3, bucket, "md5-new")

    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="md5-new", Body=new, ContentMD5="not-base64-md5")
    assert error_of(e) == ("InvalidDigest", 400)
    assert_missing(s3, bucket, "md5-new")

    right_md5 = b64(hashlib.md5(new).digest())
    s3.put_object(Bucket=bucket, Key="md5", Body=new, ContentMD5=right_md5)
    assert get_bytes(s3, bucket, "md5") == new


# ---------------------------------------------------------------------------------------------
# Authentication


def test_presigned_get_url_works_and_tampering_is_refused(s3, bucket):
    data = blob(77_777)
    key = "pre/signed ü.bin"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    assert url.startswith("http://127.0.0.1:")
    with no_proxy_opener().open(url, timeout=30) as resp:
        assert resp.status == 200
        assert sha256_hex(resp.read()) == sha256_hex(data)

    parsed = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parsed.query)
    tampered = []
    for name, value in query:
        if name == "X-Amz-Signature":
            value = value[:-1] + ("0" if value[-1] != "0" else "1")
        tampered.append((name, value))
    bad_url = parsed._replace(query=urllib.parse.urlencode(tampered)).geturl()
    with pytest.raises(urllib.error.HTTPError) as e:
        no_proxy_opener().open(bad_url, timeout=30)
    assert e.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in e.value.read()

    # Another key under the same signature is refused too.
    other_url = url.replace(urllib.parse.quote(key), "pre/other")
    assert other_url != url
    with pytest.raises(urllib.error.HTTPError) as e:
        no_proxy_opener().open(other_url, timeout=30)
    assert e.value.code == 403


def test_presigned_put_url_stores_the_body(s3, bucket):
    data = blob(33_333)
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "pre/put"}, ExpiresIn=300
    )
    req = urllib.request.Request(url, data=data, method="PUT")
    with no_proxy_opener().open(req, timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["ETag"] == f'"{md5_hex(data)}"'
    assert get_bytes(s3, bucket, "pre/put") == data


def test_unsigned_amz_headers_are_refused_and_change_nothing(s3, bucket):
    """A presigned PUT URL, a presigned UploadPart URL or a header-signed PUT, each sent with an
    `x-amz-*` header its signature does not cover, is 403 AccessDenied: the holder of an upload
    URL must not turn it into a CopyObject of another key, nor add metadata."""
    secret = blob(4_096, seed=7)
    s3.put_object(Bucket=bucket, Key="secret", Body=secret)
    s3.put_object(Bucket=bucket, Key="mine", Body=b"before")

    def refused(url, data, extra):
        req = urllib.request.Request(url, data=data, method="PUT", headers=extra)
        with pytest.raises(urllib.error.HTTPError) as e:
            no_proxy_opener().open(req, timeout=30)
        body = e.value.read()
        assert e.value.code == 403, body
        assert b"<Code>AccessDenied</Code>" in body
        assert b"<HeadersNotSigned>" in body

    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "mine"}, ExpiresIn=300
    )
    refused(put_url, b"", {"x-amz-copy-source": f"/{bucket}/secret"})
    refused(put_url, b"after", {"x-amz-meta-owner": "mallory"})
    head = s3.head_object(Bucket=bucket, Key="mine")
    assert head["Metadata"] == {}
    assert get_bytes(s3, bucket, "mine") == b"before"

    upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    part_url = s3.generate_presigned_url(
        "upload_part",
        Params={"Bucket": bucket, "Key": "parts", "UploadId": upload, "PartNumber": 1},
        ExpiresIn=300,
    )
    refused(part_url, b"", {"x-amz-copy-source": f"/{bucket}/secret"})
    assert s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload)

    # A header-signed request with a header added after signing (a replay within its window).
    def add_after_signing(request, **_):
        request.headers["x-amz-meta-added"] = "later"

    s3.meta.events.register("before-send.s3.PutObject", add_after_signing)
    try:
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="mine", Body=b"replayed")
        assert error_of(e) == ("AccessDenied", 403)
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", add_after_signing)
    assert get_bytes(s3, bucket, "mine") == b"before"
    # The same client, signing everything it sends, still works.
    s3.put_object(Bucket=bucket, Key="mine", Body=b"signed", Metadata={"owner": "me"})
    assert s3.head_object(Bucket=bucket, Key="mine")["Metadata"] == {"owner": "me"}


def test_expired_presigned_url_is_refused(s3, bucket):
    import time

    s3.put_object(Bucket=bucket, Key="exp", Body=b"expiring")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "exp"}, ExpiresIn=1
    )
    time.sleep(2.5)
    with pytest.raises(urllib.error.HTTPError) as e:
        no_proxy_opener().open(url, timeout=30)
    assert e.value.code == 403
    assert b"<Code>AccessDenied</Code>" in e.value.read()


def test_wrong_secret_is_signature_does_not_match(tessera, s3, bucket):
    wrong = boto3_client(tessera.endpoint, secret_key="not-the-secret-key-at-all-000000000000")
    with pytest.raises(ClientError) as e:
        wrong.list_buckets()
    assert error_of(e) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as e:
        wrong.put_object(Bucket=bucket, Key="forged", Body=b"forged")
    assert error_of(e) == ("SignatureDoesNotMatch", 403)
    assert_missing(s3, bucket, "forged")

    unknown = boto3_client(tessera.endpoint, access_key="AKIDUNKNOWNUNKNOWN00")
    with pytest.raises(ClientError) as e:
        unknown.list_buckets()
    assert error_of(e) == ("InvalidAccessKeyId", 403)


def test_anonymous_request_is_denied(tessera, bucket, s3):
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    with pytest.raises(urllib.error.HTTPError) as e:
        no_proxy_opener().open(f"{tessera.url}/{bucket}/private", timeout=30)
    assert e.value.code == 403
    assert b"<Code>AccessDenied</Code>" in e.value.read()


# ---------------------------------------------------------------------------------------------
# Restart and crash


def write_restart_fixture(s3, bucket: str, tmp_path) -> dict[str, tuple[str, dict]]:
    """Writes objects of several shapes; returns key -> (sha256, metadata)."""
    expected = {}
    for size in (0, 1, 4096, 1 * MIB + 3):
        data = blob(size, 7)
        s3.put_object(Bucket=bucket, Key=f"r/{size}", Body=data, Metadata={"size": str(size)})
        expected[f"r/{size}"] = (sha256_hex(data), {"size": str(size)})
    big = blob(2 * PART_BYTES + 99, 8)
    src = tmp_path / "big.bin"
    src.write_bytes(big)
    config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)
    s3.upload_file(str(src), bucket, "r/multipart", Config=config)
    expected["r/multipart"] = (sha256_hex(big), {})
    s3.put_object(Bucket=bucket, Key="r/deleted", Body=b"gone soon")
    s3.delete_object(Bucket=bucket, Key="r/deleted")
    s3.put_object(Bucket=bucket, Key="r/overwritten", Body=b"first")
    s3.put_object(Bucket=bucket, Key="r/overwritten", Body=b"second")
    expected["r/overwritten"] = (sha256_hex(b"second"), {})
    return expected


def check_restart_fixture(s3, bucket: str, expected: dict) -> None:
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(expected)
    for key, (digest, meta) in expected.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        assert sha256_hex(got["Body"].read()) == digest, key
        assert got["Metadata"] == meta, key
    assert_missing(s3, bucket, "r/deleted")


def test_objects_survive_graceful_restart_bit_exact(tessera_factory, tmp_path):
    server = tessera_factory()
    s3 = boto3_client(server.endpoint)
    bucket = unique_bucket_name("restart")
    s3.create_bucket(Bucket=bucket)
    expected = write_restart_fixture(s3, bucket, tmp_path)
    etags = {k: s3.head_object(Bucket=bucket, Key=k)["ETag"] for k in expected}

    code = server.restart(graceful=True)
    assert code == 0, f"SIGTERM should exit 0, got {code}\n{server.describe()}"
    s3 = boto3_client(server.endpoint)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    check_restart_fixture(s3, bucket, expected)
    assert {k: s3.head_object(Bucket=bucket, Key=k)["ETag"] for k in expected} == etags

    # Writes keep working after the restart, and a second restart keeps both generations.
    s3.put_object(Bucket=bucket, Key="r/after", Body=b"after restart")
    expected["r/after"] = (sha256_hex(b"after restart"), {})
    assert server.restart(graceful=True) == 0
    check_restart_fixture(boto3_client(server.endpoint), bucket, expected)


def test_acknowledged_writes_survive_sigkill(tessera_factory, tmp_path):
    server = tessera_factory()
    s3 = boto3_client(server.endpoint)
    bucket = unique_bucket_name("crash")
    s3.create_bucket(Bucket=bucket)
    expected = write_restart_fixture(s3, bucket, tmp_path)

    server.restart(graceful=False)
    s3 = boto3_client(server.endpoint)
    check_restart_fixture(s3, bucket, expected)


def test_generated_credentials_are_printed_stored_and_reused(tessera_factory):
    server = tessera_factory(env_credentials=False)
    access, secret = server.printed_credentials()
    assert access != secret and len(secret) >= 32, (access, secret)
    stored = (server.data_dir / "credentials").read_text()
    assert access in stored and secret in stored, "the generated pair must be kept in the data dir"

    s3 = boto3_client(server.endpoint)
    bucket = unique_bucket_name("gen")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"generated keys work")
    wrong = boto3_client(server.endpoint, secret_key=SECRET_KEY)
    with pytest.raises(ClientError) as e:
        wrong.list_buckets()
    assert error_of(e)[1] == 403

    assert server.restart() == 0
    assert "AWS_SECRET_ACCESS_KEY" not in "".join(server.stdout_lines), "a restart printed the secret again"
    assert server.printed_credentials() == (access, secret), "a restart must reuse the stored pair"
    assert get_bytes(boto3_client(server.endpoint), bucket, "k") == b"generated keys work"


# ---------------------------------------------------------------------------------------------
# More of what real clients rely on


def test_standard_headers_are_stored_and_response_overrides_apply(s3, bucket):
    data = blob(2048)
    s3.put_object(
        Bucket=bucket,
        Key="h",
        Body=data,
        ContentType="text/plain",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="h.txt"',
        ContentEncoding="identity",
        ContentLanguage="en",
    )
    head = s3.head_object(Bucket=bucket, Key="h")
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="h.txt"'
    assert head["ContentEncoding"] == "identity"
    assert head["ContentLanguage"] == "en"

    got = s3.get_object(
        Bucket=bucket,
        Key="h",
        ResponseContentType="application/x-override",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
    )
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-override"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"


def test_single_put_of_32_mib_is_bit_exact(s3, bucket):
    data = blob(32 * MIB + 1)
    put = s3.put_object(Bucket=bucket, Key="big-single", Body=data)
    assert put["ETag"] == f'"{md5_hex(data)}"'
    assert sha256_hex(get_bytes(s3, bucket, "big-single")) == sha256_hex(data)
    lo = 17 * MIB + 5
    assert get_bytes(s3, bucket, "big-single", Range=f"bytes={lo}-{lo + 99_999}") == data[
        lo : lo + 100_000
    ]


def test_managed_copy_uses_upload_part_copy_and_is_bit_exact(s3, bucket):
    size = 2 * PART_BYTES + 4321
    data = blob(size, 31)
    s3.put_object(Bucket=bucket, Key="copy/src", Body=data, Metadata={"k": "v"})
    config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES)
    s3.copy({"Bucket": bucket, "Key": "copy/src"}, bucket, "copy/dst", Config=config)
    head = s3.head_object(Bucket=bucket, Key="copy/dst")
    assert head["ContentLength"] == size
    assert head["ETag"].endswith('-3"'), head["ETag"]
    assert sha256_hex(get_bytes(s3, bucket, "copy/dst")) == sha256_hex(data)

    # UploadPartCopy with a source range, by hand.
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copy/ranged")["UploadId"]
    lo, hi = 1000, 1000 + PART_BYTES - 1
    p1 = s3.upload_part_copy(
        Bucket=bucket, Key="copy/ranged", UploadId=upload_id, PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "copy/src"}, CopySourceRange=f"bytes={lo}-{hi}",
    )
    assert p1["CopyPartResult"]["ETag"] == f'"{md5_hex(data[lo : hi + 1])}"'
    p2 = s3.upload_part(Bucket=bucket, Key="copy/ranged", UploadId=upload_id, PartNumber=2,
                        Body=b"end")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="copy/ranged", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["ETag"]}]},
    )
    assert get_bytes(s3, bucket, "copy/ranged") == data[lo : hi + 1] + b"end"


def test_concurrent_clients_read_their_own_writes(tessera, bucket):
    """8 threads, each with its own client, overwrite and read back their keys 15 times; every
    read returns the bytes of the write acknowledged just before it; a listing then shows the
    last versions. Bounded in count; seed is SEED."""
    from concurrent.futures import ThreadPoolExecutor

    threads, rounds = 8, 15

    def worker(t: int) -> dict[str, str]:
        client = boto3_client(tessera.endpoint)
        last = {}
        for r in range(rounds):
            key = f"conc/{t}/{r % 3}"
            data = blob(1000 + 997 * r + t, seed=t * 100 + r)
            etag = client.put_object(Bucket=bucket, Key=key, Body=data)["ETag"]
            got = client.get_object(Bucket=bucket, Key=key)
            assert got["ETag"] == etag and got["Body"].read() == data, (t, r)
            last[key] = etag
        return last

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(worker, range(threads)))
    expected = {k: v for d in results for k, v in d.items()}
    listed = {}
    for page in boto3_client(tessera.endpoint).get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="conc/"
    ):
        listed.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    assert listed == expected


# ---------------------------------------------------------------------------------------------
# Requests the server cannot honour are refused, never accepted and ignored


def test_encryption_lock_tagging_and_public_acls_are_refused_and_change_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain bytes")
    sse_c = {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": "k" * 32,
    }
    refused_puts = [
        {"ServerSideEncryption": "AES256"},
        {"ServerSideEncryption": "aws:kms"},
        sse_c,
        {"Tagging": "team=a&tier=gold"},
        {"ACL": "public-read"},
        {"StorageClass": "GLACIER"},
        {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": dt.datetime(2099, 1, 1)},
        {"ObjectLockLegalHoldStatus": "ON"},
    ]
    for extra in refused_puts:
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="refused", Body=b"secret", **extra)
        assert error_of(e) == ("NotImplemented", 501), extra
        assert_missing(s3, bucket, "refused")
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="plain", Body=b"overwrite", **extra)
        assert error_of(e) == ("NotImplemented", 501), extra
        assert get_bytes(s3, bucket, "plain") == b"plain bytes"

    # A read with a customer key is not served as if the object were encrypted with it.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", **sse_c)
    assert error_of(e) == ("NotImplemented", 501)

    for extra in [{"ServerSideEncryption": "AES256"}, {"Tagging": "a=b"}, sse_c]:
        with pytest.raises(ClientError) as e:
            s3.create_multipart_upload(Bucket=bucket, Key="mp", **extra)
        assert error_of(e) == ("NotImplemented", 501), extra
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    with pytest.raises(ClientError) as e:
        s3.copy_object(
            Bucket=bucket,
            Key="copied",
            CopySource={"Bucket": bucket, "Key": "plain"},
            ServerSideEncryption="AES256",
        )
    assert error_of(e) == ("NotImplemented", 501)
    assert_missing(s3, bucket, "copied")

    locked = unique_bucket_name("locked")
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    assert error_of(e) == ("NotImplemented", 501)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert locked not in names

    # What asks for nothing beyond what every object gets is accepted.
    s3.put_object(Bucket=bucket, Key="ok", Body=b"ok", ACL="private", StorageClass="STANDARD")
    assert get_bytes(s3, bucket, "ok") == b"ok"


# ---------------------------------------------------------------------------------------------
# Input S3 refuses


def test_keys_xml_cannot_carry_are_refused_and_listings_stay_parseable(s3, bucket):
    for key in ["ctl\x01char", "nul\x00byte", "line\nbreak", "carriage\rreturn"]:
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert error_of(e) == ("InvalidArgument", 400), repr(key)
    s3.put_object(Bucket=bucket, Key="del\x7fand\u0085c1", Body=b"ok")
    # Listings and DeleteObjects parse (boto3 asks for url-encoded keys in listings; not here).
    raw = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in raw["Contents"]] == ["del\x7fand\u0085c1"]
    done = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "del\x7fand\u0085c1"}]})
    assert [d["Key"] for d in done["Deleted"]] == ["del\x7fand\u0085c1"]


def test_metadata_over_2_kb_is_metadata_too_large(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata={"big": "v" * 2100})
    assert error_of(e) == ("MetadataTooLarge", 400)
    assert_missing(s3, bucket, "meta")


def test_a_location_constraint_other_than_the_servers_region_is_refused(s3):
    name = unique_bucket_name("elsewhere")
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error_of(e) == ("InvalidLocationConstraint", 400)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_a_body_declared_over_5_gib_is_entity_too_large_before_it_is_sent(s3, bucket):
    """S3 stores at most 5 GiB in one PUT or one part. A request declaring more is refused at
    once, from its Content-Length, without the server waiting for (or storing) any of it."""
    import http.client

    s3.put_object(Bucket=bucket, Key="big", Body=b"before")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    urls = [
        s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "big"}, ExpiresIn=300),
        s3.generate_presigned_url(
            "upload_part",
            Params={"Bucket": bucket, "Key": "parts", "UploadId": upload, "PartNumber": 1},
            ExpiresIn=300,
        ),
    ]
    for url in urls:
        u = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.putrequest("PUT", f"{u.path}?{u.query}", skip_accept_encoding=True)
        conn.putheader("Content-Length", str(5 * 1024 * MIB + 1))
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 400, body
        assert b"<Code>EntityTooLarge</Code>" in body, body
    assert get_bytes(s3, bucket, "big") == b"before"
    assert s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload)


def test_delete_objects_without_an_integrity_header_is_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"kept")

    def drop_integrity(request, **_):
        for h in [h for h in request.headers.keys() if h.lower() == "content-md5" or h.lower().startswith("x-amz-checksum-") or h.lower() in ("x-amz-sdk-checksum-algorithm", "x-amz-trailer")]:
            del request.headers[h]

    s3.meta.events.register("before-sign.s3.DeleteObjects", drop_integrity)
    try:
        with pytest.raises(ClientError) as e:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep"}]})
        assert error_of(e) == ("InvalidRequest", 400)
    finally:
        s3.meta.events.unregister("before-sign.s3.DeleteObjects", drop_integrity)
    assert get_bytes(s3, bucket, "keep") == b"kept"


# ---------------------------------------------------------------------------------------------
# AWS Signature Version 2


def test_sigv2_header_auth_and_presigned_urls_work_and_tampering_is_refused(tessera, bucket):
    v2 = boto3_client(tessera.endpoint, signature_version="s3")
    data = blob(70_000, seed=11)
    v2.put_object(Bucket=bucket, Key="v2/obj ü", Body=data, Metadata={"who": "sigv2"})
    got = v2.get_object(Bucket=bucket, Key="v2/obj ü")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"who": "sigv2"}
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket, Prefix="v2/")["Contents"]] == ["v2/obj ü"]

    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2/obj ü"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url and "Signature=" in url, url
    with no_proxy_opener().open(url, timeout=30) as resp:
        assert resp.status == 200
        assert resp.read() == data
    tampered = url.replace("v2/obj", "v2/other")
    with pytest.raises(urllib.error.HTTPError) as e:
        no_proxy_opener().open(tampered, timeout=30)
    assert e.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in e.value.read()

    wrong = boto3_client(
        tessera.endpoint, secret_key="not-the-secret-key-at-all-000000000000", signature_version="s3"
    )
    with pytest.raises(ClientError) as e:
        wrong.put_object(Bucket=bucket, Key="v2/forged", Body=b"forged")
    assert error_of(e) == ("SignatureDoesNotMatch", 403)
    assert_missing(v2, bucket, "v2/forged")
    v2.delete_object(Bucket=bucket, Key="v2/obj ü")
    assert_missing(v2, bucket, "v2/obj ü")


def test_a_secret_from_the_environment_is_never_printed(tessera):
    out = "".join(tessera.stdout_lines)
    assert "AWS_ACCESS_KEY_ID=" in out, out
    assert "AWS_SECRET_ACCESS_KEY" not in out and tessera.endpoint.secret_key not in out, out
