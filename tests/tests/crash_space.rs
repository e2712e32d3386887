//! A crash never costs disk space: a server SIGKILLed while it has segments open, again and
//! again, keeps its segment files within the live data (times the erasure-coding overhead) plus
//! the preallocation of the segments it is filling now. Before segments were trimmed at start,
//! every kill stranded a whole preallocated segment per device and tablet, and a crash loop
//! filled the disk.

mod common;
use aws_sdk_s3::primitives::ByteStream;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const BUCKET: &str = "crashes";
const KILLS: u64 = 10;
const OBJECT_BYTES: usize = 1_000_000;
/// The test server's segment size (`common::Server` starts with `--segment-mib 8`).
const SEGMENT_BYTES: u64 = 8 << 20;
const DEVICES: u64 = 6;
const CORES: u64 = 2;

/// (bytes allocated on disk, file count) of every segment file under `dir`.
fn segment_space(dir: &Path) -> (u64, usize) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").map_while(Result::ok) {
            let m = e.metadata().expect("metadata");
            let name = e.file_name().to_string_lossy().into_owned();
            if m.is_dir() {
                stack.push(e.path());
            } else if name.starts_with("seg-") && name.ends_with(".dat") {
                bytes += m.blocks() * 512;
                files += 1;
            }
        }
    }
    (bytes, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkills_keep_segment_space_within_live_data_plus_the_open_segments() {
    let mut srv = Server::start();
    let c = srv.client();
    c.create_bucket().bucket(BUCKET).send().await.expect("create bucket");
    for i in 0..KILLS {
        let key = format!("k{i}");
        c.put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(ByteStream::from(data(i, OBJECT_BYTES)))
            .send()
            .await
            .expect("PUT");
        srv.kill_and_restart();
        let (bytes, files) = segment_space(&srv.data);
        eprintln!("[crash-space] after kill {}: {files} segment files, {} MiB allocated", i + 1, bytes >> 20);
    }
    let c = srv.client();
    for i in 0..KILLS {
        let o = c.get_object().bucket(BUCKET).key(format!("k{i}")).send().await.expect("GET after the kills");
        let got = o.body.collect().await.expect("body").into_bytes();
        assert!(got.as_ref() == data(i, OBJECT_BYTES).as_slice(), "k{i}: wrong bytes after the kills");
    }
    // Live data, erasure-coded 4+2 and rounded up to blocks per shard, plus at most one
    // preallocated segment per device and core (the ones a new start opens for its writes);
    // the reads above open nothing new. Without trimming the ten kills alone strand up to
    // 10 x 6 x 2 x 8 MiB.
    let live_on_disk = KILLS * (OBJECT_BYTES as u64 * 6 / 4 + DEVICES * 2 * 4096);
    let bound = live_on_disk + DEVICES * CORES * SEGMENT_BYTES;
    let (bytes, files) = segment_space(&srv.data);
    assert!(
        bytes <= bound,
        "{files} segment files hold {bytes} bytes after {KILLS} kills; live data plus the open segments is at most {bound}"
    );
}
