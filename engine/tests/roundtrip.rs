mod common;
use common::*;
use engine::{Error, ListItem, ListQuery, PutOptions, RangeSpec, RequestError};

const SIZES: &[usize] = &[0, 1, 4095, 4096, 4097, 16 << 10, (16 << 10) + 1, (1 << 20) + 1, 3 << 20];

#[test]
fn objects_of_every_size_round_trip_and_ranges_match_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("bkt")).unwrap();
    let mut sizes = SIZES.to_vec();
    sizes.push(64 << 20);
    for (i, &n) in sizes.iter().enumerate() {
        let d = data(i as u64, n);
        let info = put(&e, "bkt", &format!("obj-{n}"), d.clone());
        assert_eq!(info.size, n as u64);
        assert_eq!(info.etag, format!("\"{}\"", hex::encode(md5_of(&d))));
        assert_eq!(get(&e, "bkt", &format!("obj-{n}")), d.as_ref(), "size {n}");
    }
    // Random ranges against the source bytes (seeded; printed for replay).
    let seed = std::env::var("TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    println!("range seed {seed}");
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (i, &n) in sizes.iter().enumerate().filter(|(_, n)| **n > 0) {
        let d = data(i as u64, n);
        for _ in 0..20 {
            let a = rnd() % n as u64;
            let b = a + rnd() % (n as u64 - a);
            let (_, got) =
                block_on(e.get_bytes("bkt", &format!("obj-{n}"), Some(RangeSpec::FromTo(a, Some(b))))).unwrap();
            assert_eq!(got, &d[a as usize..=b as usize], "size {n} range {a}-{b}");
        }
        let (_, tail) = block_on(e.get_bytes("bkt", &format!("obj-{n}"), Some(RangeSpec::Suffix(10)))).unwrap();
        assert_eq!(tail, &d[n.saturating_sub(10)..]);
        let e2 = block_on(e.get_object("bkt", &format!("obj-{n}"), Some(RangeSpec::FromTo(n as u64, None)))).err();
        assert!(matches!(e2, Some(Error::Request(RequestError::InvalidRange { .. }))));
    }
    e.shutdown();
}

fn md5_of(d: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(d).into()
}

#[test]
fn restart_reads_back_everything_and_lists_identically() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("a-bucket")).unwrap();
    block_on(e.create_bucket("b-bucket")).unwrap();
    for (i, &n) in SIZES.iter().enumerate() {
        put(&e, "a-bucket", &format!("dir/{i}"), data(i as u64 + 100, n));
    }
    put(&e, "b-bucket", "x", data(1, 10));
    block_on(e.delete_object("a-bucket", "dir/0", None)).unwrap();
    let q = ListQuery { max_keys: 1000, ..Default::default() };
    let before = block_on(e.list_objects("a-bucket", q.clone())).unwrap();
    e.shutdown();
    drop(e);
    for round in 0..2 {
        let e = open(dir.path());
        let names: Vec<String> = block_on(e.list_buckets()).unwrap().into_iter().map(|b| b.name).collect();
        assert_eq!(names, vec!["a-bucket", "b-bucket"], "round {round}");
        assert_eq!(block_on(e.list_objects("a-bucket", q.clone())).unwrap(), before);
        for (i, &n) in SIZES.iter().enumerate().skip(1) {
            assert_eq!(get(&e, "a-bucket", &format!("dir/{i}")), data(i as u64 + 100, n).as_ref());
        }
        assert!(matches!(
            block_on(e.head_object("a-bucket", "dir/0")),
            Err(Error::Request(RequestError::NoSuchKey { .. }))
        ));
        e.shutdown();
    }
}

#[test]
fn listing_merges_cores_in_order_with_prefix_delimiter_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("list")).unwrap();
    let mut keys = Vec::new();
    for i in 0..50 {
        keys.push(format!("k{i:03}"));
    }
    for d in ["a/", "b/c/", "b/d/"] {
        for i in 0..5 {
            keys.push(format!("{d}{i}"));
        }
    }
    for k in &keys {
        put(&e, "list", k, data(3, 5));
    }
    keys.sort();
    // Pages of 7 with start-after walk every key exactly once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let p = block_on(
            e.list_objects("list", ListQuery { max_keys: 7, start_after: after.clone(), ..Default::default() }),
        )
        .unwrap();
        for it in &p.items {
            if let ListItem::Object(o) = it {
                seen.push(o.key.clone());
            }
        }
        if !p.truncated {
            break;
        }
        after = p.next_marker;
    }
    assert_eq!(seen, keys);
    let p = block_on(
        e.list_objects("list", ListQuery { delimiter: Some("/".into()), max_keys: 1000, ..Default::default() }),
    )
    .unwrap();
    let prefixes: Vec<&ListItem> = p.items.iter().filter(|i| matches!(i, ListItem::CommonPrefix(_))).collect();
    assert_eq!(prefixes, vec![&ListItem::CommonPrefix("a/".into()), &ListItem::CommonPrefix("b/".into())]);
    assert_eq!(p.items.len(), 52);
    let p = block_on(e.list_objects(
        "list",
        ListQuery { prefix: "b/".into(), delimiter: Some("/".into()), max_keys: 1, ..Default::default() },
    ))
    .unwrap();
    assert_eq!(p.items, vec![ListItem::CommonPrefix("b/c/".into())]);
    assert!(p.truncated);
    let p = block_on(e.list_objects(
        "list",
        ListQuery { prefix: "b/".into(), delimiter: Some("/".into()), max_keys: 1, start_after: p.next_marker },
    ))
    .unwrap();
    assert_eq!(p.items, vec![ListItem::CommonPrefix("b/d/".into())]);
    assert!(!p.truncated);
    e.shutdown();
}

#[test]
fn buckets_create_delete_only_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    assert!(matches!(block_on(e.create_bucket("Bad_Name")), Err(Error::Request(RequestError::InvalidBucketName(_)))));
    block_on(e.create_bucket("one")).unwrap();
    assert!(matches!(block_on(e.create_bucket("one")), Err(Error::Request(RequestError::BucketAlreadyExists(_)))));
    put(&e, "one", "k", data(1, 100));
    assert!(matches!(block_on(e.delete_bucket("one")), Err(Error::Request(RequestError::BucketNotEmpty(_)))));
    // A failed delete leaves the bucket fully usable.
    put(&e, "one", "k2", data(1, 100));
    block_on(e.delete_object("one", "k", None)).unwrap();
    block_on(e.delete_object("one", "k2", None)).unwrap();
    block_on(e.delete_bucket("one")).unwrap();
    assert!(matches!(block_on(e.head_bucket("one")), Err(Error::Request(RequestError::NoSuchBucket(_)))));
    assert!(matches!(
        block_on(e.put_bytes("one", "k", PutOptions::default(), data(1, 1))),
        Err(Error::Request(RequestError::NoSuchBucket(_)))
    ));
    assert!(block_on(e.list_buckets()).unwrap().is_empty());
    e.shutdown();
}

#[test]
fn conditional_writes_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("cond")).unwrap();
    let only_new = PutOptions { if_none_match_any: true, ..Default::default() };
    let v1 = block_on(e.put_bytes("cond", "k", only_new.clone(), data(1, 10))).unwrap();
    assert!(matches!(
        block_on(e.put_bytes("cond", "k", only_new, data(2, 10))),
        Err(Error::Request(RequestError::PreconditionFailed))
    ));
    let wrong = PutOptions { if_match: Some("\"0000\"".into()), ..Default::default() };
    assert!(matches!(
        block_on(e.put_bytes("cond", "k", wrong, data(2, 10))),
        Err(Error::Request(RequestError::PreconditionFailed))
    ));
    let right = PutOptions { if_match: Some(v1.etag.clone()), ..Default::default() };
    let v2 = block_on(e.put_bytes("cond", "k", right, data(2, 10))).unwrap();
    assert_eq!(get(&e, "cond", "k"), data(2, 10).as_ref());
    assert!(matches!(
        block_on(e.delete_object("cond", "k", Some(v1.etag))),
        Err(Error::Request(RequestError::PreconditionFailed))
    ));
    block_on(e.delete_object("cond", "k", Some(v2.etag))).unwrap();
    let bad_md5 = PutOptions { content_md5: Some([0; 16]), ..Default::default() };
    assert!(matches!(
        block_on(e.put_bytes("cond", "k", bad_md5, data(2, 10))),
        Err(Error::Request(RequestError::BadDigest))
    ));
    assert!(matches!(block_on(e.head_object("cond", "k")), Err(Error::Request(RequestError::NoSuchKey { .. }))));
    e.shutdown();
}

/// Many PUTs at once (their ETag MD5s are hashed together by each core's MD5 batcher), each
/// body cut into chunks of random sizes (block boundaries or not): every ETag is the MD5 of
/// the object's bytes and every object reads back whole.
#[test]
fn concurrent_puts_in_odd_chunks_get_the_md5_of_their_bytes_as_etag() {
    use engine::{body_channel, BodyItem};
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("bkt")).unwrap();
    let seed = std::env::var("TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x3d5_u64);
    println!("chunk seed {seed}");
    let objects: Vec<(String, bytes::Bytes, u64)> = (0..24u64)
        .map(|i| {
            let n = [0, 100, 4096, 20_000, 300_001, 1 << 20, (2 << 20) + 77][i as usize % 7] + i as usize * 13;
            (format!("c-{i}"), data(seed ^ i, n), seed.wrapping_mul(31).wrapping_add(i) | 1)
        })
        .collect();
    let puts = objects.iter().map(|(k, d, s)| {
        let (tx, rx) = body_channel();
        let (d, mut x) = (d.clone(), *s);
        let feed = async move {
            let mut off = 0;
            while off < d.len() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = match x % 3 {
                    0 => (x >> 8) as usize % 64 + 1,
                    1 => 64 * ((x >> 8) as usize % 512 + 1),
                    _ => (x >> 8) as usize % 200_000 + 1,
                }
                .min(d.len() - off);
                tx.send_async(BodyItem::Data(d.slice(off..off + n))).await.expect("engine took the body");
                off += n;
            }
            tx.send_async(BodyItem::End { checksum: None }).await.expect("engine took the end");
        };
        let e = &e;
        async move { futures::join!(feed, e.put_object("bkt", k, Default::default(), rx)).1 }
    });
    let infos = block_on(futures::future::join_all(puts));
    for ((k, d, _), info) in objects.iter().zip(infos) {
        let info = info.expect("put");
        assert_eq!(info.etag, format!("\"{}\"", hex::encode(md5_of(d))), "ETag of {k} ({} bytes)", d.len());
        assert_eq!(get(&e, "bkt", k), d.as_ref(), "bytes of {k}");
    }
    let stats = block_on(e.stats()).unwrap();
    println!(
        "MD5 chunks {} of which batched {}",
        stats.iter().map(|s| s.md5_chunks).sum::<u64>(),
        stats.iter().map(|s| s.md5_batched_chunks).sum::<u64>()
    );
    e.shutdown();
}

/// Pages of every size walk every key once, in order: the merge asks each tablet for about its
/// share of a page and for more only when that tablet's run ends before the page does, which
/// pages of tens of keys over four tablets do often.
#[test]
fn pages_of_any_size_list_every_key_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("pages")).unwrap();
    let mut keys: Vec<String> = (0..600).map(|i| format!("k/{:04}", (i * 7919) % 10_000)).collect();
    for k in &keys {
        put(&e, "pages", k, bytes::Bytes::from_static(b"x"));
    }
    keys.sort();
    for max_keys in [1, 2, 5, 37, 100, 599, 600, 1000] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let q = ListQuery { prefix: "k/".into(), start_after: after.clone(), max_keys, ..Default::default() };
            let p = block_on(e.list_objects("pages", q)).unwrap();
            assert!(p.items.len() <= max_keys, "a page of {} items for max_keys {max_keys}", p.items.len());
            assert!(p.truncated || seen.len() + p.items.len() == keys.len(), "early end at max_keys {max_keys}");
            seen.extend(p.items.iter().map(|i| i.sort_key().to_string()));
            if !p.truncated {
                break;
            }
            assert_eq!(p.items.len(), max_keys, "a truncated page must be full (max_keys {max_keys})");
            after = p.next_marker;
        }
        assert_eq!(seen, keys, "pages of {max_keys}");
    }
}

#[test]
fn a_declined_conditional_read_reads_nothing() {
    use engine::ReadOutcome;
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("bkt")).unwrap();
    let d = data(7, 3 << 20);
    let put_info = put(&e, "bkt", "obj", d.clone());
    let foreground =
        |e: &engine::Engine| -> u64 { block_on(e.stats()).unwrap().iter().map(|s| s.sched_bytes[0]).sum() };
    let before = foreground(&e);
    // Declined on the owner core: the object's metadata comes back and no byte is read or
    // counted, even with a range that could not be satisfied (conditions come first).
    let etag = put_info.etag.clone();
    match block_on(e.get_object_if("bkt", "obj", Some(RangeSpec::FromTo(10 << 20, None)), move |i| i.etag != etag))
        .unwrap()
    {
        ReadOutcome::Declined(info) => assert_eq!(info.etag, put_info.etag),
        ReadOutcome::Stream(..) => panic!("the read was not declined"),
    }
    assert_eq!(foreground(&e), before, "a declined read moved bytes");
    // Accepted: the bytes stream as for a plain GET, and the read is counted.
    let ReadOutcome::Stream(info, r, rx) = block_on(e.get_object_if("bkt", "obj", None, |_| true)).unwrap() else {
        panic!("an accepted read was declined")
    };
    assert_eq!((info.size, r.start, r.end), (d.len() as u64, 0, d.len() as u64));
    let mut got = Vec::new();
    while let Ok(chunk) = rx.recv() {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, d.as_ref());
    assert!(foreground(&e) >= before + d.len() as u64);
    e.shutdown();
}
