//! The S3 API driven by the real AWS SDK for Rust against a real `tessera` on loopback.
//! The SDK uploads with aws-chunked bodies and trailing CRC checksums by default, so every PUT
//! here also exercises the streaming decoder and trailer verification.

mod common;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective,
    ObjectIdentifier,
};
use common::*;

async fn get_bytes(c: &aws_sdk_s3::Client, b: &str, k: &str) -> Vec<u8> {
    c.get_object().bucket(b).key(k).send().await.expect("get").body.collect().await.expect("body").into_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_create_list_head_and_delete_only_when_empty() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("alpha").send().await.unwrap();
    c.create_bucket().bucket("beta").send().await.unwrap();
    let e = c.create_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code(&e), "BucketAlreadyOwnedByYou");
    let e = c.create_bucket().bucket("Not_Valid").send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidBucketName");
    let names: Vec<String> =
        c.list_buckets().send().await.unwrap().buckets().iter().filter_map(|b| b.name().map(str::to_string)).collect();
    assert_eq!(names, vec!["alpha", "beta"]);
    c.head_bucket().bucket("alpha").send().await.unwrap();
    assert!(c.head_bucket().bucket("gamma").send().await.is_err());
    let loc = c.get_bucket_location().bucket("alpha").send().await.unwrap();
    assert!(loc.location_constraint().is_none() || loc.location_constraint().map(|l| l.as_str()) == Some(""));
    let v = c.get_bucket_versioning().bucket("alpha").send().await.unwrap();
    assert!(v.status().is_none(), "versioning was never enabled");
    c.put_object().bucket("alpha").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let e = c.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code(&e), "BucketNotEmpty");
    c.delete_object().bucket("alpha").key("k").send().await.unwrap();
    c.delete_bucket().bucket("alpha").send().await.unwrap();
    let e = c.put_object().bucket("alpha").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchBucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_with_metadata_ranges_and_etags() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("objs").send().await.unwrap();
    for (i, n) in [0usize, 1, 4096, 16 * 1024 + 1, (1 << 20) + 3, 9 << 20].into_iter().enumerate() {
        let d = data(i as u64, n);
        let key = format!("dir/obj-{n}");
        let put = c
            .put_object()
            .bucket("objs")
            .key(&key)
            .content_type("application/x-test")
            .cache_control("max-age=60")
            .content_disposition("attachment")
            .metadata("color", "blue")
            .body(ByteStream::from(d.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(put.e_tag(), Some(format!("\"{}\"", md5_hex(&d)).as_str()));
        let got = c.get_object().bucket("objs").key(&key).send().await.unwrap();
        assert_eq!(got.content_type(), Some("application/x-test"));
        assert_eq!(got.cache_control(), Some("max-age=60"));
        assert_eq!(got.content_disposition(), Some("attachment"));
        assert_eq!(got.metadata().and_then(|m| m.get("color")).map(String::as_str), Some("blue"));
        assert_eq!(got.content_length(), Some(n as i64));
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), &d[..], "size {n}");
        let head = c.head_object().bucket("objs").key(&key).send().await.unwrap();
        assert_eq!(head.content_length(), Some(n as i64));
        assert_eq!(head.e_tag(), put.e_tag());
        if n > 10 {
            for (range, a, b) in [
                (format!("bytes=3-{}", n / 2), 3, n / 2 + 1),
                ("bytes=-7".to_string(), n - 7, n),
                (format!("bytes={}-", n - 5), n - 5, n),
            ] {
                let r = c.get_object().bucket("objs").key(&key).range(&range).send().await.unwrap();
                assert_eq!(r.content_range(), Some(format!("bytes {}-{}/{}", a, b - 1, n).as_str()));
                assert_eq!(r.body.collect().await.unwrap().into_bytes().as_ref(), &d[a..b], "{range}");
            }
        }
    }
    let e = c.get_object().bucket("objs").key("dir/obj-4096").range("bytes=5000-6000").send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidRange");
    assert_eq!(status_of(&e), 416);
    let e = c.get_object().bucket("objs").key("missing").send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchKey");
    let e = c.get_object().bucket("nobucket").key("missing").send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchBucket");
    let long = "k".repeat(1025);
    let e = c.put_object().bucket("objs").key(&long).body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(code(&e), "KeyTooLongError");
    let ok = "k".repeat(1024);
    c.put_object().bucket("objs").key(&ok).body(ByteStream::from_static(b"x")).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_reads_writes_and_deletes() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("cond").send().await.unwrap();
    let v1 = c
        .put_object()
        .bucket("cond")
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"one"))
        .send()
        .await
        .unwrap();
    let e = c
        .put_object()
        .bucket("cond")
        .key("k")
        .if_none_match("*")
        .body(ByteStream::from_static(b"two"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "PreconditionFailed");
    assert_eq!(get_bytes(&c, "cond", "k").await, b"one");
    let etag = v1.e_tag().unwrap().to_string();
    let e = c
        .put_object()
        .bucket("cond")
        .key("k")
        .if_match("\"deadbeef\"")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "PreconditionFailed");
    let v2 = c
        .put_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .body(ByteStream::from_static(b"two"))
        .send()
        .await
        .unwrap();
    // GET conditions: a matching If-None-Match is 304, a failing If-Match is 412.
    let e = c.get_object().bucket("cond").key("k").if_none_match(v2.e_tag().unwrap()).send().await.unwrap_err();
    assert_eq!(status_of(&e), 304);
    let e = c.get_object().bucket("cond").key("k").if_match(&etag).send().await.unwrap_err();
    assert_eq!(status_of(&e), 412);
    let future = aws_sdk_s3::primitives::DateTime::from_secs(4_000_000_000);
    let e = c.get_object().bucket("cond").key("k").if_modified_since(future).send().await.unwrap_err();
    assert_eq!(status_of(&e), 304);
    let past = aws_sdk_s3::primitives::DateTime::from_secs(1_000_000_000);
    let e = c.get_object().bucket("cond").key("k").if_unmodified_since(past).send().await.unwrap_err();
    assert_eq!(status_of(&e), 412);
    // Conditional delete.
    let e = c.delete_object().bucket("cond").key("k").if_match(&etag).send().await.unwrap_err();
    assert_eq!(status_of(&e), 412);
    c.delete_object().bucket("cond").key("k").if_match(v2.e_tag().unwrap()).send().await.unwrap();
    assert_eq!(code(&c.head_object().bucket("cond").key("k").send().await.unwrap_err()), "NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_with_prefixes_delimiters_and_tokens() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("list").send().await.unwrap();
    let mut keys: Vec<String> = (0..23).map(|i| format!("flat/{i:02}")).collect();
    keys.extend(["a/1", "a/2", "b/c/1", "b/d/2", "top", "sp ace+plus%"].map(String::from));
    for k in &keys {
        c.put_object().bucket("list").key(k).body(ByteStream::from_static(b"v")).send().await.unwrap();
    }
    keys.sort();
    // V2 pagination with continuation tokens covers every key once, in order.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let r = c.list_objects_v2().bucket("list").max_keys(5).set_continuation_token(token).send().await.unwrap();
        seen.extend(r.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        if !r.is_truncated().unwrap_or(false) {
            break;
        }
        token = r.next_continuation_token().map(str::to_string);
    }
    assert_eq!(seen, keys);
    let r = c.list_objects_v2().bucket("list").delimiter("/").send().await.unwrap();
    let prefixes: Vec<&str> = r.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, vec!["a/", "b/", "flat/"]);
    let objs: Vec<&str> = r.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(objs, vec!["sp ace+plus%", "top"]);
    let r = c.list_objects_v2().bucket("list").prefix("b/").delimiter("/").send().await.unwrap();
    let prefixes: Vec<&str> = r.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
    assert_eq!(prefixes, vec!["b/c/", "b/d/"]);
    let r = c.list_objects_v2().bucket("list").start_after("flat/20").prefix("flat/").send().await.unwrap();
    let objs: Vec<&str> = r.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(objs, vec!["flat/21", "flat/22"]);
    let r = c
        .list_objects_v2()
        .bucket("list")
        .prefix("sp")
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.contents().len(), 1);
    // V1 with marker.
    let r = c.list_objects().bucket("list").marker("flat/21").max_keys(2).send().await.unwrap();
    let objs: Vec<&str> = r.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(objs, vec!["flat/22", "sp ace+plus%"]);
    assert_eq!(r.is_truncated(), Some(true));
    // Versions: every object once, version "null", latest.
    let r = c.list_object_versions().bucket("list").prefix("a/").send().await.unwrap();
    let v: Vec<(&str, &str, bool)> = r
        .versions()
        .iter()
        .map(|v| (v.key().unwrap_or(""), v.version_id().unwrap_or(""), v.is_latest().unwrap_or(false)))
        .collect();
    assert_eq!(v, vec![("a/1", "null", true), ("a/2", "null", true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_keep_or_replace_metadata_and_honour_source_conditions() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("src").send().await.unwrap();
    c.create_bucket().bucket("dst").send().await.unwrap();
    let d = data(9, 3 << 20);
    let put = c
        .put_object()
        .bucket("src")
        .key("orig")
        .content_type("text/orig")
        .metadata("m", "1")
        .body(ByteStream::from(d.clone()))
        .send()
        .await
        .unwrap();
    c.copy_object().bucket("dst").key("copy").copy_source("src/orig").send().await.unwrap();
    let g = c.get_object().bucket("dst").key("copy").send().await.unwrap();
    assert_eq!(g.content_type(), Some("text/orig"));
    assert_eq!(g.metadata().and_then(|m| m.get("m")).map(String::as_str), Some("1"));
    assert_eq!(g.e_tag(), put.e_tag());
    assert_eq!(g.body.collect().await.unwrap().into_bytes().as_ref(), &d[..]);
    c.copy_object()
        .bucket("dst")
        .key("replaced")
        .copy_source("src/orig")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/new")
        .metadata("m", "2")
        .send()
        .await
        .unwrap();
    let h = c.head_object().bucket("dst").key("replaced").send().await.unwrap();
    assert_eq!(h.content_type(), Some("text/new"));
    assert_eq!(h.metadata().and_then(|m| m.get("m")).map(String::as_str), Some("2"));
    let e = c
        .copy_object()
        .bucket("dst")
        .key("x")
        .copy_source("src/orig")
        .copy_source_if_match("\"nope\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "PreconditionFailed");
    let e = c.copy_object().bucket("src").key("orig").copy_source("src/orig").send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidRequest");
    let e = c.copy_object().bucket("dst").key("x").copy_source("src/missing").send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchKey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_complete_abort_list_and_copy_parts() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let src = data(42, 7 << 20);
    c.put_object().bucket("mpu").key("source").body(ByteStream::from(src.clone())).send().await.unwrap();
    let up = c.create_multipart_upload().bucket("mpu").key("big").content_type("video/x").send().await.unwrap();
    let id = up.upload_id().unwrap().to_string();
    let p1 = data(1, 5 << 20);
    let p3 = data(3, 1234);
    let e1 = c
        .upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(p1.clone()))
        .send()
        .await
        .unwrap();
    let e2 = c
        .upload_part_copy()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number(2)
        .copy_source("mpu/source")
        .copy_source_range(format!("bytes=1000-{}", 1000 + (5 << 20) - 1))
        .send()
        .await
        .unwrap();
    let e3 = c
        .upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .part_number(3)
        .body(ByteStream::from(p3.clone()))
        .send()
        .await
        .unwrap();
    let parts = c.list_parts().bucket("mpu").key("big").upload_id(&id).send().await.unwrap();
    let nums: Vec<i32> = parts.parts().iter().filter_map(|p| p.part_number()).collect();
    assert_eq!(nums, vec![1, 2, 3]);
    let ups = c.list_multipart_uploads().bucket("mpu").send().await.unwrap();
    assert_eq!(ups.uploads().iter().filter_map(|u| u.upload_id()).collect::<Vec<_>>(), vec![id.as_str()]);
    let part = |n: i32, e: &str| CompletedPart::builder().part_number(n).e_tag(e).build();
    let etag2 = e2.copy_part_result().and_then(|r| r.e_tag()).unwrap().to_string();
    // A wrong ETag is InvalidPart; a small non-last part is EntityTooSmall.
    let bad = CompletedMultipartUpload::builder().parts(part(1, "\"00\"")).build();
    let e = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(bad)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidPart");
    let small = CompletedMultipartUpload::builder().parts(part(3, e3.e_tag().unwrap())).parts(part(4, "\"x\"")).build();
    let e = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(small)
        .send()
        .await
        .unwrap_err();
    assert!(["InvalidPart", "EntityTooSmall"].contains(&code(&e).as_str()), "{}", code(&e));
    let done = CompletedMultipartUpload::builder()
        .parts(part(1, e1.e_tag().unwrap()))
        .parts(part(2, &etag2))
        .parts(part(3, e3.e_tag().unwrap()))
        .build();
    let r = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(done)
        .send()
        .await
        .unwrap();
    assert!(r.e_tag().unwrap().ends_with("-3\""), "{:?}", r.e_tag());
    let mut want = p1.clone();
    want.extend_from_slice(&src[1000..1000 + (5 << 20)]);
    want.extend_from_slice(&p3);
    let got = get_bytes(&c, "mpu", "big").await;
    assert_eq!(got.len(), want.len());
    assert!(got == want, "multipart object bytes differ");
    let h = c.head_object().bucket("mpu").key("big").send().await.unwrap();
    assert_eq!(h.content_type(), Some("video/x"));
    let e = c.list_parts().bucket("mpu").key("big").upload_id(&id).send().await.unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    // Abort.
    let up = c.create_multipart_upload().bucket("mpu").key("gone").send().await.unwrap();
    let id = up.upload_id().unwrap();
    c.upload_part()
        .bucket("mpu")
        .key("gone")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(data(5, 1000)))
        .send()
        .await
        .unwrap();
    c.abort_multipart_upload().bucket("mpu").key("gone").upload_id(id).send().await.unwrap();
    let e = c
        .upload_part()
        .bucket("mpu")
        .key("gone")
        .upload_id(id)
        .part_number(2)
        .body(ByteStream::from(data(5, 10)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NoSuchUpload");
    assert!(c.list_multipart_uploads().bucket("mpu").send().await.unwrap().uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_delete_reports_each_key_and_quiet_mode_only_errors() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("del").send().await.unwrap();
    for i in 0..10 {
        c.put_object().bucket("del").key(format!("k{i}")).body(ByteStream::from_static(b"v")).send().await.unwrap();
    }
    let ids = |r: std::ops::Range<i32>| {
        r.map(|i| ObjectIdentifier::builder().key(format!("k{i}")).build().unwrap()).collect::<Vec<_>>()
    };
    let r = c
        .delete_objects()
        .bucket("del")
        .delete(Delete::builder().set_objects(Some(ids(0..5))).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.deleted().len(), 5);
    let r = c
        .delete_objects()
        .bucket("del")
        .delete(Delete::builder().set_objects(Some(ids(5..10))).quiet(true).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(r.deleted().is_empty() && r.errors().is_empty());
    assert_eq!(c.list_objects_v2().bucket("del").send().await.unwrap().key_count(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_are_verified_stored_and_returned() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("sums").send().await.unwrap();
    let d = data(77, 300_000);
    for alg in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Crc64Nvme,
    ] {
        let key = format!("k-{}", alg.as_str());
        c.put_object()
            .bucket("sums")
            .key(&key)
            .checksum_algorithm(alg.clone())
            .body(ByteStream::from(d.clone()))
            .send()
            .await
            .unwrap();
        let g = c.get_object().bucket("sums").key(&key).checksum_mode(ChecksumMode::Enabled).send().await.unwrap();
        let stored = match alg {
            ChecksumAlgorithm::Crc32 => g.checksum_crc32(),
            ChecksumAlgorithm::Crc32C => g.checksum_crc32_c(),
            ChecksumAlgorithm::Sha256 => g.checksum_sha256(),
            ChecksumAlgorithm::Sha1 => g.checksum_sha1(),
            _ => g.checksum_crc64_nvme(),
        }
        .map(str::to_string);
        assert!(stored.is_some(), "{alg:?} checksum not returned");
        assert_eq!(g.body.collect().await.unwrap().into_bytes().as_ref(), &d[..]);
    }
    // A declared checksum that does not match the body stores nothing.
    let e = c
        .put_object()
        .bucket("sums")
        .key("bad")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from(d.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "BadDigest");
    let e = c
        .put_object()
        .bucket("sums")
        .key("bad")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from(d.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "BadDigest");
    assert_eq!(code(&c.head_object().bucket("sums").key("bad").send().await.unwrap_err()), "NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_signatures_and_bodies_are_refused_and_change_nothing() {
    let srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("sec").send().await.unwrap();
    c.put_object().bucket("sec").key("keep").body(ByteStream::from_static(b"original")).send().await.unwrap();
    // Wrong secret.
    let bad = client_with(&srv.endpoint, ACCESS_KEY, "wrong-secret");
    let e = bad.put_object().bucket("sec").key("keep").body(ByteStream::from_static(b"evil")).send().await.unwrap_err();
    assert_eq!(code(&e), "SignatureDoesNotMatch");
    let e = bad.create_bucket().bucket("evil").send().await.unwrap_err();
    assert_eq!(code(&e), "SignatureDoesNotMatch");
    // Unknown key.
    let e = client_with(&srv.endpoint, "NOBODY", SECRET_KEY).list_buckets().send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidAccessKeyId");
    // Presigned URL: works, tampered fails, expired fails.
    let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(300)).unwrap();
    let url = c.get_object().bucket("sec").key("keep").presigned(cfg).await.unwrap().uri().to_string();
    let r = http_get(&url).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"original"[..]));
    // Another key under the same signature, and a flipped signature digit: both refused.
    let r = http_get(&url.replace("/keep?", "/kee%70x?")).await;
    assert_eq!((r.status, r.s3_code()), (403, "SignatureDoesNotMatch".to_string()), "{}", r.text());
    let i = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut flipped = url.clone().into_bytes();
    flipped[i] = if flipped[i] == b'0' { b'1' } else { b'0' };
    let r = http_get(&String::from_utf8(flipped).unwrap()).await;
    assert_eq!((r.status, r.s3_code()), (403, "SignatureDoesNotMatch".to_string()), "{}", r.text());
    let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(1)).unwrap();
    let url = c.get_object().bucket("sec").key("keep").presigned(cfg).await.unwrap().uri().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = http_get(&url).await;
    assert_eq!((r.status, r.s3_code()), (403, "AccessDenied".to_string()), "{}", r.text());
    // Anonymous.
    let r = http_get(&format!("{}/sec/keep", srv.endpoint)).await;
    assert_eq!(r.status, 403);
    // Malformed XML (with the Content-MD5 DeleteObjects requires, so the body is parsed).
    let mut raw = Raw {
        method: "POST",
        path: "/sec".into(),
        query: "delete".into(),
        headers: vec![("content-md5".into(), "2/tgmBdmQLO+511KLYgSag==".into())],
        body: b"<Delete><Object>".to_vec(),
    };
    sign(&mut raw, &srv.addr, "UNSIGNED-PAYLOAD", SECRET_KEY);
    let r = send(&srv.addr, &raw, None).await;
    assert_eq!((r.status, r.s3_code()), (400, "MalformedXML".to_string()), "{}", r.text());
    // A body shorter than its Content-Length.
    let mut raw = Raw {
        method: "PUT",
        path: "/sec/short".into(),
        query: String::new(),
        headers: vec![("content-length".into(), "1000".into())],
        body: vec![7u8; 1000],
    };
    sign(&mut raw, &srv.addr, "UNSIGNED-PAYLOAD", SECRET_KEY);
    let r = send(&srv.addr, &raw, Some(400)).await;
    assert!(r.status == 400 || r.status == 0, "short body answered {} {}", r.status, r.text());
    // A signed payload hash that does not match the body.
    let mut raw =
        Raw { method: "PUT", path: "/sec/hash".into(), query: String::new(), headers: vec![], body: b"abc".to_vec() };
    sign(&mut raw, &srv.addr, &"0".repeat(64), SECRET_KEY);
    let r = send(&srv.addr, &raw, None).await;
    assert_eq!(r.s3_code(), "XAmzContentSHA256Mismatch", "{}", r.text());
    // A tampered aws-chunked chunk signature.
    let r = send(&srv.addr, &chunked_put(&srv.addr, "/sec/chunked", b"hello chunked world", true), None).await;
    assert_eq!((r.status, r.s3_code()), (403, "SignatureDoesNotMatch".to_string()), "{}", r.text());
    let r = send(&srv.addr, &chunked_put(&srv.addr, "/sec/chunked-ok", b"hello chunked world", false), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get_bytes(&c, "sec", "chunked-ok").await, b"hello chunked world");
    // Nothing of the refused requests is visible.
    assert_eq!(get_bytes(&c, "sec", "keep").await, b"original");
    let keys: Vec<String> = c
        .list_objects_v2()
        .bucket("sec")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(keys, vec!["chunked-ok", "keep"]);
    let buckets = c.list_buckets().send().await.unwrap();
    assert_eq!(buckets.buckets().len(), 1);
}

/// A STREAMING-AWS4-HMAC-SHA256-PAYLOAD PUT of `body` in one chunk; `tamper` flips a byte of
/// the chunk after signing it.
fn chunked_put(addr: &str, path: &str, body: &[u8], tamper: bool) -> Raw {
    use s3::auth::sigv4;
    let mut framed_len = 0;
    let mut raw = Raw {
        method: "PUT",
        path: path.into(),
        query: String::new(),
        headers: vec![
            ("content-encoding".into(), "aws-chunked".into()),
            ("x-amz-decoded-content-length".into(), body.len().to_string()),
        ],
        body: vec![],
    };
    // The content-length must be known before signing; compute the framing size first.
    let sig_line = |n: usize| format!("{n:x};chunk-signature={}\r\n", "0".repeat(64)).len();
    framed_len += sig_line(body.len()) + body.len() + 2 + sig_line(0) + 2;
    raw.headers.push(("content-length".into(), framed_len.to_string()));
    let (seed, key, date_scope) = sign(&mut raw, addr, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", SECRET_KEY);
    let (date, scope) = date_scope.split_once('\n').unwrap();
    let empty = sigv4::sha256_hex(b"");
    let chunk_sig = |prev: &str, data: &[u8]| {
        let sts = format!("AWS4-HMAC-SHA256-PAYLOAD\n{date}\n{scope}\n{prev}\n{empty}\n{}", sigv4::sha256_hex(data));
        sigv4::sign(&key, &sts)
    };
    let s1 = chunk_sig(&seed, body);
    let s2 = chunk_sig(&s1, b"");
    let mut payload = body.to_vec();
    if tamper {
        payload[0] ^= 1;
    }
    let mut out = format!("{:x};chunk-signature={s1}\r\n", body.len()).into_bytes();
    out.extend_from_slice(&payload);
    out.extend_from_slice(format!("\r\n0;chunk-signature={s2}\r\n\r\n").as_bytes());
    assert_eq!(out.len(), framed_len);
    raw.body = out;
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_writes_and_reads_loses_nothing() {
    let mut srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket("durable").send().await.unwrap();
    let sizes = [0usize, 100, 20_000, 2 << 20];
    for (i, n) in sizes.iter().enumerate() {
        c.put_object()
            .bucket("durable")
            .key(format!("k{i}"))
            .body(ByteStream::from(data(i as u64, *n)))
            .send()
            .await
            .unwrap();
    }
    c.delete_object().bucket("durable").key("k0").send().await.unwrap();
    srv.restart();
    let c = srv.client();
    for (i, n) in sizes.iter().enumerate().skip(1) {
        assert_eq!(get_bytes(&c, "durable", &format!("k{i}")).await, data(i as u64, *n));
    }
    assert_eq!(code(&c.head_object().bucket("durable").key("k0").send().await.unwrap_err()), "NotFound");
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosted_style_requests_address_the_bucket_by_host() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with(dir.path(), "127.0.0.1:0", &["--domain", "s3.tessera.test"]);
    let c = srv.client();
    c.create_bucket().bucket("vhost").send().await.unwrap();
    let port = srv.addr.rsplit(':').next().unwrap();
    let host = format!("vhost.s3.tessera.test:{port}");
    // PUT /key with the bucket in the Host header.
    let mut put = Raw {
        method: "PUT",
        path: "/dir/obj".into(),
        query: String::new(),
        headers: vec![],
        body: b"virtual".to_vec(),
    };
    sign_for_host(&mut put, &host, "UNSIGNED-PAYLOAD", SECRET_KEY);
    let r = send(&srv.addr, &put, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get_bytes(&c, "vhost", "dir/obj").await, b"virtual");
    // GET / on the bucket's host lists it.
    let mut list = Raw { method: "GET", path: "/".into(), query: "list-type=2".into(), headers: vec![], body: vec![] };
    sign_for_host(&mut list, &host, &s3::auth::sigv4::sha256_hex(b""), SECRET_KEY);
    let r = send(&srv.addr, &list, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<Key>dir/obj</Key>"), "{}", r.text());
    // Path style keeps working on the same server.
    assert_eq!(get_bytes(&c, "vhost", "dir/obj").await, b"virtual");
}
