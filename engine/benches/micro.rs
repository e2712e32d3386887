//! Micro-benchmarks of the engine's per-byte and per-key costs: the erasure code, the checksums,
//! the key hash, the tablet index and the metadata record codec. Each runs exactly the function
//! the engine's hot path runs (`engine::stripe::Codec`, `engine::index::TabletState`,
//! `engine::record::Record`), so a regression here is a regression there.
//!
//! Run: `cargo bench -p tessera-engine --bench micro -- --warm-up-time 1 --measurement-time 2`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::buf::{AlignedBuf, BufPool};
use engine::index::TabletState;
use engine::record::{DataLoc, ObjectHeaders, ObjectMeta, PartLayout, Record, ShardLoc};
use engine::segment::Segments;
use engine::stripe::Codec;
use md5::{Digest, Md5};
use rand::{Rng, RngCore, SeedableRng};

const K: usize = 4;
const M: usize = 2;
const SHARD_BYTES: usize = 256 << 10;
const STRIPE_BYTES: usize = K * SHARD_BYTES;
const INDEX_KEYS: usize = 100_000;
const SEED: u64 = 0x7e55e7a;

fn random_buf(rng: &mut impl RngCore, len: usize) -> AlignedBuf {
    let mut b = AlignedBuf::alloc(len);
    b.resize_zeroed(len);
    rng.fill_bytes(b.as_mut_slice());
    b
}

fn erasure(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let data: Vec<AlignedBuf> = (0..K).map(|_| random_buf(&mut rng, SHARD_BYTES)).collect();
    let mut parity: Vec<AlignedBuf> = (0..M).map(|_| AlignedBuf::alloc(SHARD_BYTES)).collect();
    let mut codec = Codec::new();

    let mut g = c.benchmark_group("erasure");
    g.throughput(Throughput::Bytes(STRIPE_BYTES as u64));
    g.bench_function("rs_4+2_encode_1MiB_stripe", |b| {
        b.iter(|| codec.encode(black_box(&data), black_box(&mut parity)).expect("encode"))
    });

    // Degraded read: data shards 0 and 1 lost, rebuilt from data 2, 3 and both parities.
    // Rebuilt shards come from a pool as on a core, and go back to it each iteration.
    let pool = BufPool::new(SHARD_BYTES, 8);
    let mut shards: Vec<Option<AlignedBuf>> = data.iter().chain(parity.iter()).map(|s| Some(copy_buf(s))).collect();
    g.bench_function("rs_4+2_reconstruct_2_lost_data_1MiB_stripe", |b| {
        b.iter(|| {
            shards[0] = None;
            shards[1] = None;
            codec.reconstruct(K, M, SHARD_BYTES, black_box(&mut shards), || pool.get()).expect("reconstruct");
        })
    });
    let rebuilt = shards[0].as_ref().map(|s| s.as_slice() == data[0].as_slice());
    assert_eq!(rebuilt, Some(true), "reconstruct must restore the lost shard's bytes");
    g.finish();
}

fn copy_buf(s: &AlignedBuf) -> AlignedBuf {
    let mut b = AlignedBuf::alloc(s.len());
    b.extend_from(s.as_slice());
    b
}

fn checksums(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let shard = random_buf(&mut rng, SHARD_BYTES);
    let stripe = random_buf(&mut rng, STRIPE_BYTES);

    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(SHARD_BYTES as u64));
    g.bench_function("crc32c_256KiB", |b| b.iter(|| engine::stripe::crc(black_box(shard.as_slice()))));
    g.throughput(Throughput::Bytes(STRIPE_BYTES as u64));
    g.bench_function("md5_1MiB", |b| {
        b.iter(|| {
            let mut h = Md5::new();
            h.update(black_box(stripe.as_slice()));
            h.finalize()
        })
    });
    g.bench_function("md5_many_single_stream_1MiB", |b| {
        b.iter(|| {
            let mut h = md5_many::Md5State::new();
            h.update(black_box(stripe.as_slice()));
            h.finalize()
        })
    });
    g.finish();

    // The partition hash: xxh3_64(bucket ++ 0x00 ++ key), streamed as `Engine::owner` does.
    let mut g = c.benchmark_group("key_hash");
    g.throughput(Throughput::Elements(1));
    let (bucket, key) = ("photos", "2024/06/17/camera-3/IMG_000123.jpg");
    g.bench_function("xxh3_64_bucket_key", |b| {
        b.iter(|| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(black_box(bucket).as_bytes());
            h.update(&[0]);
            h.update(black_box(key).as_bytes());
            h.digest()
        })
    });
    g.finish();
}

/// The ETag MD5 of n concurrent PUT streams on one core, 1 MiB each in 64 KiB body chunks:
/// `single` hashes each stream's chunks with its own `Md5State` (the engine before batching),
/// `batched` runs n tasks on a monoio loop feeding one `md5batch::Md5Batcher`, as the PUTs of
/// a core do (task switches and the flusher included).
fn md5_streams(c: &mut Criterion) {
    use bytes::Bytes;
    use engine::md5batch::Md5Batcher;
    const STREAM_BYTES: usize = 1 << 20;
    const CHUNK_BYTES: usize = 64 << 10;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().expect("monoio runtime");
    let batcher = Md5Batcher::new();
    let mut g = c.benchmark_group("md5_streams");
    for n in [1usize, 2, 4, 8, 16, 32] {
        let data: Vec<Bytes> = (0..n)
            .map(|_| {
                let mut v = vec![0u8; STREAM_BYTES];
                rng.fill_bytes(&mut v);
                Bytes::from(v)
            })
            .collect();
        let want: Vec<[u8; 16]> = data.iter().map(|d| Md5::digest(d).into()).collect();
        g.throughput(Throughput::Bytes((n * STREAM_BYTES) as u64));
        g.bench_function(format!("single_{n}x1MiB"), |b| {
            b.iter(|| {
                let mut st = vec![md5_many::Md5State::new(); n];
                for off in (0..STREAM_BYTES).step_by(CHUNK_BYTES) {
                    for (s, d) in st.iter_mut().zip(&data) {
                        s.update(black_box(&d[off..off + CHUNK_BYTES]));
                    }
                }
                st.iter().map(|s| s.finalize()).collect::<Vec<_>>()
            })
        });
        g.bench_function(format!("batched_{n}x1MiB"), |b| {
            b.iter(|| {
                let got = rt.block_on(async {
                    let tasks: Vec<_> = data
                        .iter()
                        .map(|d| {
                            let (bt, d) = (batcher.clone(), d.clone());
                            monoio::spawn(async move {
                                let mut h = bt.stream();
                                for off in (0..STREAM_BYTES).step_by(CHUNK_BYTES) {
                                    h.update(d.slice(off..off + CHUNK_BYTES)).await;
                                }
                                h.finish().await
                            })
                        })
                        .collect();
                    let mut out = Vec::with_capacity(n);
                    for t in tasks {
                        out.push(t.await);
                    }
                    out
                });
                assert!(got == want, "batched MD5 must match md-5");
                got
            })
        });
    }
    g.finish();
}

fn index_key(i: usize) -> String {
    format!("logs/2024/{:02}/{:02}/host-{:03}/part-{i:08}.json.gz", i % 12 + 1, i % 28 + 1, i % 97)
}

/// A 16 MiB object's layout: 16 stripes of 4+2 shard locations.
fn layout_16mib(i: u32) -> PartLayout {
    let size = 16u64 << 20;
    let stripes = size.div_ceil(STRIPE_BYTES as u64) as u32;
    PartLayout {
        size,
        chunk_bytes: SHARD_BYTES as u32,
        k: K as u8,
        m: M as u8,
        devices: (0..(K + M) as u16).collect(),
        shards: (0..stripes * (K + M) as u32)
            .map(|s| ShardLoc { seg: 1 + i / 64, block: s * 64, crc: s.wrapping_mul(0x9e37_79b9) })
            .collect(),
        md5: [7; 16],
    }
}

fn headers() -> ObjectHeaders {
    ObjectHeaders {
        content_type: Some("application/gzip".into()),
        user: vec![("origin".into(), "bench".into())],
        ..Default::default()
    }
}

fn put_record(bucket: &str, key: String, i: u32) -> Record {
    let meta = ObjectMeta {
        size: 16 << 20,
        md5: [i as u8; 16],
        parts_count: 0,
        mtime_ms: 1_700_000_000_000 + i as u64,
        headers: ObjectMeta::pack_headers(headers()),
        data: DataLoc::Parts(Box::new([layout_16mib(i)])),
    };
    Record::ObjectPut { bucket: bucket.into(), key, meta, inline: Vec::new(), completes: None }
}

fn index(c: &mut Criterion) {
    let bucket = "bench";
    let keys: Vec<String> = (0..INDEX_KEYS).map(index_key).collect();
    // Segment accounting without files: devices with no directory only count live bytes.
    let no_files: Vec<(Option<std::path::PathBuf>, bool)> = (0..K + M).map(|_| (None, false)).collect();
    let mut segs = Segments::open(0, 256 << 20, &no_files).expect("segments without files");
    let mut state = TabletState::default();
    for (i, k) in keys.iter().enumerate() {
        state.apply(put_record(bucket, k.clone(), i as u32), &mut segs);
    }
    assert_eq!(state.object_count(), INDEX_KEYS);

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let order: Vec<usize> = (0..4096).map(|_| rng.gen_range(0..INDEX_KEYS)).collect();
    let mut g = c.benchmark_group("index_100k_keys");
    g.throughput(Throughput::Elements(1));
    let mut n = 0usize;
    g.bench_function("lookup", |b| {
        b.iter(|| {
            n = (n + 1) % order.len();
            state.get(bucket, black_box(&keys[order[n]])).map(|m| m.size)
        })
    });
    // Steady state of a PUT: replace an existing key's record (old extents released, new
    // ones counted live). The record is built outside the timed part.
    let mut n = 0usize;
    g.bench_function("apply_overwrite", |b| {
        b.iter_batched(
            || {
                n = (n + 1) % order.len();
                put_record(bucket, keys[order[n]].clone(), order[n] as u32)
            },
            |rec| state.apply(rec, &mut segs),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn records(c: &mut Criterion) {
    let big = put_record("bench", index_key(42), 42);
    let small = Record::ObjectPut {
        bucket: "bench".into(),
        key: index_key(43),
        meta: ObjectMeta {
            size: 4096,
            md5: [1; 16],
            parts_count: 0,
            mtime_ms: 1_700_000_000_000,
            headers: ObjectMeta::pack_headers(headers()),
            data: DataLoc::Inline { gen: 1, offset: 4096, len: 4096 },
        },
        inline: vec![0x5a; 4096],
        completes: None,
    };
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    for (name, rec) in [("16MiB_object", &big), ("4KiB_inline", &small)] {
        let bytes = rec.encode();
        assert_eq!(Record::decode(&bytes, 1, 4096).as_ref().ok(), Some(rec), "record must round-trip");
        g.bench_function(format!("encode_{name}_{}B", bytes.len()), |b| b.iter(|| black_box(rec).encode()));
        g.bench_function(format!("decode_{name}_{}B", bytes.len()), |b| {
            b.iter(|| Record::decode(black_box(&bytes), 1, 4096).expect("decode"))
        });
    }
    g.finish();
}

criterion_group!(benches, erasure, checksums, md5_streams, index, records);
criterion_main!(benches);
