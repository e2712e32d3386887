//! A seeded random workload compared against an in-memory model (a BTreeMap): puts of many
//! sizes, overwrites, deletes, paged listings with prefixes and delimiters, multipart uploads
//! and restarts. Replay a failure with TEST_SEED=<seed printed at the start>.

mod common;
use bytes::Bytes;
use common::*;
use engine::{Engine, Error, ListItem, ListQuery, RequestError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const OPS: usize = 400;
const BUCKET: &str = "model";

/// What the model holds per key: the (seed, size) of each piece of its bytes (one for a plain
/// PUT, one per part for multipart), and the ETag.
#[derive(Clone, Debug)]
struct Obj {
    pieces: Vec<(u64, usize)>,
    etag: String,
}

impl Obj {
    fn size(&self) -> usize {
        self.pieces.iter().map(|p| p.1).sum()
    }
    fn bytes(&self) -> Vec<u8> {
        self.pieces.iter().flat_map(|&(s, n)| data(s, n)).collect()
    }
}

fn random_key(rng: &mut ChaCha8Rng) -> String {
    let top = ["a", "b", "c/d", "c"][rng.gen_range(0..4)];
    match rng.gen_range(0..3) {
        0 => format!("{top}{}", rng.gen_range(0..5)),
        1 => format!("{top}/{}", rng.gen_range(0..5)),
        _ => format!("{top}/{}/{}", rng.gen_range(0..3), rng.gen_range(0..3)),
    }
}

fn random_size(rng: &mut ChaCha8Rng) -> usize {
    match rng.gen_range(0..20) {
        0..=9 => rng.gen_range(0..=16 << 10),
        10..=16 => rng.gen_range((16 << 10) + 1..300 << 10),
        _ => rng.gen_range(300 << 10..3 << 20),
    }
}

/// The whole listing S3 semantics give for (prefix, delimiter) over the model.
fn model_listing(model: &BTreeMap<String, Obj>, prefix: &str, delim: Option<&str>) -> Vec<ListItem> {
    let mut out: Vec<ListItem> = Vec::new();
    for (k, o) in model.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)) {
        if let Some(d) = delim {
            if let Some(pos) = k[prefix.len()..].find(d) {
                let cp = k[..prefix.len() + pos + d.len()].to_string();
                if !matches!(out.last(), Some(ListItem::CommonPrefix(p)) if *p == cp) {
                    out.push(ListItem::CommonPrefix(cp));
                }
                continue;
            }
        }
        out.push(ListItem::Object(engine::ListEntry {
            key: k.clone(),
            size: o.size() as u64,
            etag: o.etag.clone(),
            mtime_ms: 0,
        }));
    }
    out
}

fn strip_mtime(items: Vec<ListItem>) -> Vec<ListItem> {
    items
        .into_iter()
        .map(|i| match i {
            ListItem::Object(mut o) => {
                o.mtime_ms = 0;
                ListItem::Object(o)
            }
            cp => cp,
        })
        .collect()
}

fn check_everything(e: &Engine, model: &BTreeMap<String, Obj>, ctx: &str) {
    for (k, o) in model {
        let (info, got) = block_on(e.get_bytes(BUCKET, k, None)).unwrap_or_else(|err| panic!("{ctx}: get {k}: {err}"));
        assert_eq!(info.etag, o.etag, "{ctx}: ETag of {k}");
        assert!(got == o.bytes(), "{ctx}: bytes of {k}");
    }
    let all = block_on(e.list_objects(BUCKET, ListQuery { max_keys: 100_000, ..Default::default() })).unwrap();
    assert_eq!(strip_mtime(all.items), model_listing(model, "", None), "{ctx}: full listing");
}

#[test]
fn random_workload_matches_an_in_memory_model() {
    let seed: u64 = std::env::var("TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("model test seed {seed} (replay with TEST_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut e = open(dir.path());
    block_on(e.create_bucket(BUCKET)).unwrap();
    let mut model: BTreeMap<String, Obj> = BTreeMap::new();
    let mut next_seed = seed.wrapping_mul(31);
    for op in 0..OPS {
        let ctx = format!("seed {seed}, op {op}");
        match rng.gen_range(0..100) {
            0..=44 => {
                let (k, size) = (random_key(&mut rng), random_size(&mut rng));
                next_seed += 1;
                let info = put(&e, BUCKET, &k, data(next_seed, size));
                assert_eq!(info.etag, format!("\"{}\"", md5_hex(&data(next_seed, size))), "{ctx}");
                model.insert(k, Obj { pieces: vec![(next_seed, size)], etag: info.etag });
            }
            45..=59 => {
                let k = match model.keys().nth(rng.gen_range(0..model.len().max(1))) {
                    Some(k) if rng.gen_bool(0.8) => k.clone(),
                    _ => random_key(&mut rng),
                };
                block_on(e.delete_object(BUCKET, &k, None)).unwrap_or_else(|err| panic!("{ctx}: delete {k}: {err}"));
                model.remove(&k);
            }
            60..=74 => {
                let k = random_key(&mut rng);
                match (block_on(e.get_bytes(BUCKET, &k, None)), model.get(&k)) {
                    (Ok((info, got)), Some(o)) => {
                        assert_eq!(info.etag, o.etag, "{ctx}: {k}");
                        assert!(got == o.bytes(), "{ctx}: bytes of {k}");
                    }
                    (Err(Error::Request(RequestError::NoSuchKey { .. })), None) => {}
                    (r, m) => panic!("{ctx}: get {k}: engine {:?}, model {m:?}", r.map(|(i, _)| i)),
                }
            }
            75..=89 => {
                let prefix = ["", "a", "b/", "c", "c/", "c/d/", "x"][rng.gen_range(0..7)].to_string();
                let delim = if rng.gen_bool(0.6) { Some("/".to_string()) } else { None };
                let max_keys = rng.gen_range(1..12);
                let mut got = Vec::new();
                let mut after: Option<String> = None;
                for page_no in 0.. {
                    assert!(page_no < 1000, "{ctx}: listing does not end");
                    let q =
                        ListQuery { prefix: prefix.clone(), delimiter: delim.clone(), start_after: after, max_keys };
                    let p = block_on(e.list_objects(BUCKET, q)).unwrap();
                    assert!(p.items.len() <= max_keys, "{ctx}: page larger than max_keys");
                    got.extend(p.items);
                    if !p.truncated {
                        break;
                    }
                    after = p.next_marker;
                }
                let want = model_listing(&model, &prefix, delim.as_deref());
                assert_eq!(
                    strip_mtime(got),
                    want,
                    "{ctx}: listing prefix {prefix:?} delimiter {delim:?} pages of {max_keys}"
                );
            }
            90..=94 => {
                // Multipart: one part of any size, or a 5 MiB part and a small last one.
                let k = random_key(&mut rng);
                let mut pieces = Vec::new();
                if rng.gen_bool(0.3) {
                    pieces.push((next_seed + 1, 5 << 20));
                }
                pieces.push((next_seed + 2, random_size(&mut rng).max(1)));
                next_seed += 3;
                let parts: Vec<Bytes> = pieces.iter().map(|&(s, n)| data(s, n)).collect();
                let info = multipart_put(&e, BUCKET, &k, &parts);
                assert!(info.etag.ends_with(&format!("-{}\"", parts.len())), "{ctx}: {}", info.etag);
                model.insert(k, Obj { pieces, etag: info.etag });
            }
            _ => {
                e.shutdown();
                drop(e);
                e = open(dir.path());
                check_everything(&e, &model, &format!("{ctx} after restart"));
            }
        }
    }
    check_everything(&e, &model, &format!("seed {seed}, end"));
    e.shutdown();
}
