//! Multipart uploads and server-side copy.

mod common;
use bytes::Bytes;
use common::*;
use engine::{Error, ObjectHeaders, PutOptions, RangeSpec, RequestError, UploadListQuery};
use md5::Digest;

const MIB: usize = 1 << 20;

fn concat(parts: &[Bytes]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

fn md5_of_md5s(parts: &[Bytes]) -> String {
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(md5::Md5::digest(p));
    }
    format!("\"{}-{}\"", hex::encode(h.finalize()), parts.len())
}

#[test]
fn completed_upload_reads_back_with_an_md5_of_md5s_etag() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("mpu")).unwrap();
    let parts = [data(1, 5 * MIB), data(2, 5 * MIB + 4097), data(3, 1234)];
    let info = multipart_put(&e, "mpu", "big", &parts);
    assert_eq!(info.etag, md5_of_md5s(&parts));
    assert_eq!(info.parts_count, 3);
    let whole = concat(&parts);
    assert_eq!(info.size, whole.len() as u64);
    let head = block_on(e.head_object("mpu", "big")).unwrap();
    assert_eq!((head.etag.as_str(), head.size), (info.etag.as_str(), info.size));
    assert!(get(&e, "mpu", "big") == whole, "multipart object differs from its parts");
    // Ranges across the part boundaries.
    for (a, b) in [(5 * MIB - 10, 5 * MIB + 10), (10 * MIB + 4000, whole.len() - 1), (0, whole.len() - 1)] {
        let (_, got) = block_on(e.get_bytes("mpu", "big", Some(RangeSpec::FromTo(a as u64, Some(b as u64))))).unwrap();
        assert!(got == whole[a..=b], "range {a}-{b}");
    }
    // The upload is gone once completed.
    let ups = block_on(e.list_uploads("mpu", UploadListQuery { max_uploads: 100, ..Default::default() })).unwrap();
    assert!(ups.is_empty(), "{ups:?}");
    e.shutdown();
    drop(e);
    let e = open(dir.path());
    assert!(get(&e, "mpu", "big") == whole, "multipart object differs after a restart");
    e.shutdown();
}

#[test]
fn complete_refuses_small_parts_wrong_etags_and_bad_order() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("mpu")).unwrap();
    let id = block_on(e.create_multipart("mpu", "k", Default::default())).unwrap();
    let p1 = upload_part(&e, "mpu", "k", &id, 1, data(10, MIB)).unwrap();
    let p2 = upload_part(&e, "mpu", "k", &id, 2, data(11, 2 * MIB)).unwrap();
    assert_eq!(p1.etag, format!("\"{}\"", md5_hex(&data(10, MIB))));
    let complete =
        |parts: Vec<(u32, String)>| block_on(e.complete_multipart("mpu", "k", &id, parts, Default::default()));
    let err = complete(vec![(1, p1.etag.clone()), (2, p2.etag.clone())]).unwrap_err();
    assert_eq!(err, Error::Request(RequestError::EntityTooSmall { part_number: 1, size: MIB as u64 }));
    let err = complete(vec![(1, "\"00000000000000000000000000000000\"".into())]).unwrap_err();
    assert!(matches!(err, Error::Request(RequestError::InvalidPart(_))), "{err}");
    let err = complete(vec![(2, p2.etag.clone()), (1, p1.etag.clone())]).unwrap_err();
    assert_eq!(err, Error::Request(RequestError::InvalidPartOrder));
    let err = complete(vec![(1, p1.etag.clone()), (1, p1.etag.clone())]).unwrap_err();
    assert_eq!(err, Error::Request(RequestError::InvalidPartOrder));
    let err = complete(vec![(3, p1.etag.clone())]).unwrap_err();
    assert!(matches!(err, Error::Request(RequestError::InvalidPart(_))), "{err}");
    let err = complete(vec![]).unwrap_err();
    assert!(matches!(err, Error::Request(RequestError::InvalidPart(_))), "{err}");
    assert!(matches!(block_on(e.head_object("mpu", "k")), Err(Error::Request(RequestError::NoSuchKey { .. }))));
    // Failed completions leave the upload intact: a single (last) part may be small.
    let info = complete(vec![(2, p2.etag.clone())]).unwrap();
    assert_eq!(info.etag, md5_of_md5s(&[data(11, 2 * MIB)]));
    assert_eq!(get(&e, "mpu", "k"), data(11, 2 * MIB).as_ref());
    assert!(matches!(complete(vec![(2, p2.etag)]), Err(Error::Request(RequestError::NoSuchUpload(_)))));
    // Parts of an unknown upload, or with numbers out of range, are refused.
    assert!(matches!(
        upload_part(&e, "mpu", "k", "nope", 1, data(1, 10)),
        Err(Error::Request(RequestError::NoSuchUpload(_)))
    ));
    let id2 = block_on(e.create_multipart("mpu", "k", Default::default())).unwrap();
    assert!(matches!(
        upload_part(&e, "mpu", "k", &id2, 0, data(1, 10)),
        Err(Error::Request(RequestError::InvalidPart(_)))
    ));
    assert!(matches!(
        upload_part(&e, "mpu", "k", &id2, 10_001, data(1, 10)),
        Err(Error::Request(RequestError::InvalidPart(_)))
    ));
    e.shutdown();
}

#[test]
fn reuploaded_part_replaces_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("mpu")).unwrap();
    let id = block_on(e.create_multipart("mpu", "k", Default::default())).unwrap();
    upload_part(&e, "mpu", "k", &id, 1, data(1, 100)).unwrap();
    let p = upload_part(&e, "mpu", "k", &id, 1, data(2, 200)).unwrap();
    let (_, parts) = block_on(e.list_parts("mpu", "k", &id)).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].size, &parts[0].etag), (200, &p.etag));
    block_on(e.complete_multipart("mpu", "k", &id, vec![(1, p.etag)], Default::default())).unwrap();
    assert_eq!(get(&e, "mpu", "k"), data(2, 200).as_ref());
    e.shutdown();
}

#[test]
fn aborted_upload_releases_its_parts_space() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("mpu")).unwrap();
    let id = block_on(e.create_multipart("mpu", "k", Default::default())).unwrap();
    upload_part(&e, "mpu", "k", &id, 1, data(1, 5 * MIB)).unwrap();
    upload_part(&e, "mpu", "k", &id, 2, data(2, 3 * MIB)).unwrap();
    let with_parts = segment_files(dir.path());
    assert_eq!(with_parts.len(), 6, "the parts should sit in one segment per device: {with_parts:?}");
    block_on(e.abort_multipart("mpu", "k", &id)).unwrap();
    assert!(matches!(block_on(e.list_parts("mpu", "k", &id)), Err(Error::Request(RequestError::NoSuchUpload(_)))));
    assert!(matches!(block_on(e.abort_multipart("mpu", "k", &id)), Err(Error::Request(RequestError::NoSuchUpload(_)))));
    // Fill the active segments so they seal, then delete the filler: a sealed segment with
    // nothing live is deleted.
    put(&e, "mpu", "k", data(3, 33 * MIB));
    assert_eq!(get(&e, "mpu", "k"), data(3, 33 * MIB).as_ref());
    block_on(e.delete_object("mpu", "k", None)).unwrap();
    // Dead segments are unlinked by the engine's helper threads, just after the delete.
    let mut left: Vec<_> = with_parts.iter().filter(|p| p.exists()).collect();
    for _ in 0..500 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        left.retain(|p| p.exists());
    }
    assert!(left.is_empty(), "segments holding only aborted parts and deleted data were kept: {left:?}");
    e.shutdown();
    drop(e);
    // And after a restart nothing of the upload comes back.
    let e = open(dir.path());
    let ups = block_on(e.list_uploads("mpu", UploadListQuery { max_uploads: 10, ..Default::default() })).unwrap();
    assert!(ups.is_empty(), "{ups:?}");
    e.shutdown();
}

#[test]
fn uploads_and_parts_are_listed_in_order_with_markers() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("mpu")).unwrap();
    let mut ids = Vec::new();
    for k in ["a/1", "a/2", "a/2", "b/1"] {
        ids.push((k, block_on(e.create_multipart("mpu", k, Default::default())).unwrap()));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let all = block_on(e.list_uploads("mpu", UploadListQuery { max_uploads: 100, ..Default::default() })).unwrap();
    let got: Vec<(&str, &str)> = all.iter().map(|u| (u.key.as_str(), u.upload_id.as_str())).collect();
    let want: Vec<(&str, &str)> = ids.iter().map(|(k, i)| (*k, i.as_str())).collect();
    assert_eq!(got, want);
    let q = UploadListQuery { prefix: "a/".into(), max_uploads: 1, ..Default::default() };
    let page = block_on(e.list_uploads("mpu", q)).unwrap();
    assert_eq!(page.len(), 2, "max_uploads + 1 are returned so truncation can be seen");
    assert_eq!(page[0].key, "a/1");
    let q = UploadListQuery { key_marker: Some("a/1".into()), max_uploads: 100, ..Default::default() };
    let keys: Vec<String> = block_on(e.list_uploads("mpu", q)).unwrap().into_iter().map(|u| u.key).collect();
    assert_eq!(keys, vec!["a/2", "a/2", "b/1"]);
    let (h, id) = (&ids[1].0, &ids[1].1);
    for n in [3u32, 1, 2] {
        upload_part(&e, "mpu", h, id, n, data(n as u64, 1000 * n as usize)).unwrap();
    }
    let (_, parts) = block_on(e.list_parts("mpu", h, id)).unwrap();
    let got: Vec<(u32, u64, String)> = parts.iter().map(|p| (p.number, p.size, p.etag.clone())).collect();
    let want: Vec<(u32, u64, String)> =
        (1..=3).map(|n| (n, 1000 * n as u64, format!("\"{}\"", md5_hex(&data(n as u64, 1000 * n as usize))))).collect();
    assert_eq!(got, want);
    // An upload id is bound to its key.
    assert!(matches!(block_on(e.list_parts("mpu", "b/1", id)), Err(Error::Request(RequestError::NoSuchUpload(_)))));
    e.shutdown();
}

#[test]
fn open_upload_survives_restart_and_completes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("mpu")).unwrap();
    let headers = ObjectHeaders { content_type: Some("application/x-test".into()), ..Default::default() };
    let id = block_on(e.create_multipart("mpu", "k", headers.clone())).unwrap();
    let p1 = upload_part(&e, "mpu", "k", &id, 1, data(1, 5 * MIB)).unwrap();
    e.shutdown();
    drop(e);
    let e = open(dir.path());
    let (h, parts) = block_on(e.list_parts("mpu", "k", &id)).unwrap();
    assert_eq!(h.content_type, headers.content_type);
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].number, &parts[0].etag, parts[0].size), (1, &p1.etag, 5 * MIB as u64));
    let p2 = upload_part(&e, "mpu", "k", &id, 2, data(2, 777)).unwrap();
    e.shutdown();
    drop(e);
    let e = open(dir.path());
    let info =
        block_on(e.complete_multipart("mpu", "k", &id, vec![(1, p1.etag), (2, p2.etag)], Default::default())).unwrap();
    let parts = [data(1, 5 * MIB), data(2, 777)];
    assert_eq!(info.etag, md5_of_md5s(&parts));
    let (info, got) = block_on(e.get_bytes("mpu", "k", None)).unwrap();
    assert!(got == concat(&parts));
    assert_eq!(info.headers.content_type, headers.content_type);
    e.shutdown();
}

/// Two keys whose owners are different cores.
fn keys_on_two_cores(e: &engine::Engine, bucket: &str) -> (String, String) {
    let a = "src/0".to_string();
    let (_, ca) = e.owner(bucket, &a);
    let b = (0..1000).map(|i| format!("dst/{i}")).find(|k| e.owner(bucket, k).1 != ca).unwrap();
    (a, b)
}

#[test]
fn copy_between_cores_copies_bytes_ranges_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    assert_eq!(e.cores(), 2);
    block_on(e.create_bucket("cpy")).unwrap();
    block_on(e.create_bucket("cpy2")).unwrap();
    let (src, dst) = keys_on_two_cores(&e, "cpy");
    let headers = ObjectHeaders {
        content_type: Some("text/plain".into()),
        user: vec![("color".into(), "blue".into())],
        ..Default::default()
    };
    let body = data(5, 3 * MIB + 11);
    let opts = PutOptions { headers: headers.clone(), ..Default::default() };
    block_on(e.put_bytes("cpy", &src, opts, body.clone())).unwrap();
    let copy = |dst: (&str, &str), range, h| {
        block_on(e.copy_object(("cpy", &src), dst, range, h, Default::default(), |_| Ok(())))
    };

    let info = copy(("cpy", &dst), None, None).unwrap();
    assert_eq!(info.etag, format!("\"{}\"", md5_hex(&body)));
    let (i2, got) = block_on(e.get_bytes("cpy", &dst, None)).unwrap();
    assert!(got == body.as_ref());
    assert_eq!(i2.headers, headers, "COPY keeps the source's headers");

    let r = RangeSpec::FromTo(MIB as u64 - 5, Some(2 * MIB as u64 + 5));
    let info = copy(("cpy2", "ranged"), Some(r), None).unwrap();
    let want = &body[MIB - 5..=2 * MIB + 5];
    assert_eq!(info.size, want.len() as u64);
    assert_eq!(get(&e, "cpy2", "ranged"), want);
    let tiny = copy(("cpy2", "tiny"), Some(RangeSpec::Suffix(100)), None).unwrap();
    assert_eq!(tiny.size, 100);
    assert_eq!(get(&e, "cpy2", "tiny"), &body[body.len() - 100..]);

    let replaced = ObjectHeaders { content_type: Some("image/png".into()), ..Default::default() };
    copy(("cpy", &dst), None, Some(replaced.clone())).unwrap();
    assert_eq!(block_on(e.head_object("cpy", &dst)).unwrap().headers, replaced, "REPLACE sets new headers");

    // A refused copy-source condition stores nothing; a missing source is NoSuchKey.
    let refused = block_on(e.copy_object(("cpy", &src), ("cpy2", "no"), None, None, Default::default(), |_| {
        Err(Error::Request(RequestError::PreconditionFailed))
    }));
    assert_eq!(refused.unwrap_err(), Error::Request(RequestError::PreconditionFailed));
    assert!(matches!(block_on(e.head_object("cpy2", "no")), Err(Error::Request(RequestError::NoSuchKey { .. }))));
    let missing = block_on(e.copy_object(("cpy", "nope"), ("cpy2", "x"), None, None, Default::default(), |_| Ok(())));
    assert!(matches!(missing, Err(Error::Request(RequestError::NoSuchKey { .. }))));

    // A multipart source becomes a plain object with a plain MD5 ETag.
    let parts = [data(8, 5 * MIB), data(9, 100)];
    multipart_put(&e, "cpy", "mp-src", &parts);
    let info =
        block_on(e.copy_object(("cpy", "mp-src"), ("cpy", &dst), None, None, Default::default(), |_| Ok(()))).unwrap();
    let whole = concat(&parts);
    assert_eq!(info.etag, format!("\"{}\"", md5_hex(&whole)));
    assert!(get(&e, "cpy", &dst) == whole);
    // The source is untouched; copies survive a restart.
    assert_eq!(get(&e, "cpy", &src), body.as_ref());
    e.shutdown();
    drop(e);
    let e = open(dir.path());
    assert!(get(&e, "cpy", &dst) == whole);
    assert_eq!(get(&e, "cpy2", "ranged"), want);
    e.shutdown();
}
