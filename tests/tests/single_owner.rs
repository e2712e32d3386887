//! One process per device set: a second `tessera server` on a data directory or device that a
//! running server holds is refused at once, names the holder, and changes nothing; the first
//! server keeps serving, and everything it acknowledges (before and after the refused start)
//! survives its restart.

mod common;
use aws_sdk_s3::primitives::ByteStream;
use common::*;
use std::path::Path;

const BUCKET: &str = "owner";

/// Run a second `tessera server` on `data` with `args`; it must be refused. Returns stderr.
fn refused_start(args: &[&str], data: &Path) -> String {
    refused_start_on("127.0.0.1:0", args, data)
}

fn refused_start_on(listen: &str, args: &[&str], data: &Path) -> String {
    let data = data.to_str().expect("a UTF-8 temp path");
    let mut all = vec!["server", "--listen", listen, "--cores", "2", "--segment-mib", "8", "--data", data];
    all.extend_from_slice(args);
    refused_run(&all)
}

async fn put(c: &aws_sdk_s3::Client, key: &str, seed: u64, len: usize) {
    c.put_object().bucket(BUCKET).key(key).body(ByteStream::from(data(seed, len))).send().await.expect("PUT");
}

async fn assert_reads(c: &aws_sdk_s3::Client, key: &str, seed: u64, len: usize) {
    let o = c.get_object().bucket(BUCKET).key(key).send().await.unwrap_or_else(|e| panic!("GET {key}: {}", code(&e)));
    let got = o.body.collect().await.expect("body").into_bytes();
    assert!(got.as_ref() == data(seed, len).as_slice(), "{key}: wrong bytes");
}

fn files_under(p: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").map_while(Result::ok) {
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                out.push((e.path().display().to_string(), mtime.map(|d| d.as_nanos() as u64).unwrap_or(0)));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_on_the_same_data_directory_is_refused_and_the_first_keeps_every_acked_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start_in(dir.path(), "127.0.0.1:0");
    let c = srv.client();
    c.create_bucket().bucket(BUCKET).send().await.expect("create bucket");
    put(&c, "before/inline", 1, 3000).await;
    put(&c, "before/striped", 2, 300_000).await;

    let log_files_before: Vec<_> = files_under(dir.path()).into_iter().filter(|(p, _)| p.contains("wal")).collect();
    let stderr = refused_start(&[], dir.path());
    assert!(stderr.contains("is in use by process"), "the refusal must name the holder:\n{stderr}");
    assert!(stderr.contains(&dir.path().display().to_string()), "the refusal must name the directory:\n{stderr}");
    let log_files_after: Vec<_> = files_under(dir.path()).into_iter().filter(|(p, _)| p.contains("wal")).collect();
    assert_eq!(log_files_before, log_files_after, "the refused start touched the metadata log");

    // The first server still serves, and what it acknowledges now survives its restart.
    put(&c, "after/inline", 3, 2000).await;
    put(&c, "after/striped", 4, 1_200_000).await;
    srv.restart();
    let c = srv.client();
    assert_reads(&c, "before/inline", 1, 3000).await;
    assert_reads(&c, "before/striped", 2, 300_000).await;
    assert_reads(&c, "after/inline", 3, 2000).await;
    assert_reads(&c, "after/striped", 4, 1_200_000).await;
    srv.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_on_a_device_another_server_holds_is_refused_even_from_another_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let devs: Vec<String> =
        (0..6).map(|i| format!("z{}={}", i % 3, dir.path().join(format!("d{i}")).display())).collect();
    let mut args: Vec<&str> = Vec::new();
    for d in &devs {
        args.extend(["--device", d.as_str()]);
    }
    let data_a = dir.path().join("a");
    format(&data_a, &args);
    let mut srv = Server::start_with(&data_a, "127.0.0.1:0", &args);
    let c = srv.client();
    c.create_bucket().bucket(BUCKET).send().await.expect("create bucket");
    put(&c, "k", 5, 100_000).await;

    // Only one device shared is enough to refuse.
    let data_b = dir.path().join("b");
    let one = format!("z0={}", dir.path().join("d3").display());
    let stderr = refused_start(&["--device", &one], &data_b);
    assert!(stderr.contains("device z0") && stderr.contains("is in use by process"), "{stderr}");

    put(&c, "k2", 6, 5000).await;
    srv.stop();
    // Once the first has stopped, the devices are free: the same set starts again.
    let srv = Server::start_with(&data_a, "127.0.0.1:0", &args);
    let c = srv.client();
    assert_reads(&c, "k", 5, 100_000).await;
    assert_reads(&c, "k2", 6, 5000).await;
}

/// The listening port is this server's alone: another process cannot bind it, not even with
/// SO_REUSEPORT (which would make the kernel hand it a share of this server's connections),
/// and a second tessera on it, from its own data directory, is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listening_port_cannot_be_shared_with_another_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start_in(dir.path(), "127.0.0.1:0");
    let c = srv.client();
    c.create_bucket().bucket(BUCKET).send().await.expect("create bucket");
    let addr: std::net::SocketAddr = srv.addr.parse().expect("server address");

    let joiner = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    joiner.set_reuse_address(true).expect("SO_REUSEADDR");
    joiner.set_reuse_port(true).expect("SO_REUSEPORT");
    let bound = joiner.bind(&addr.into()).and_then(|()| joiner.listen(16));
    let e = bound.expect_err("another process bound the server's port with SO_REUSEPORT");
    assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE), "{e}");
    drop(joiner);

    let other = tempfile::tempdir().expect("tempdir");
    let stderr = refused_start_on(&srv.addr, &[], other.path());
    assert!(stderr.contains("cannot listen on") && stderr.contains(&srv.addr), "{stderr}");

    // The first one still serves, on every core.
    put(&c, "still-mine", 5, 100_000).await;
    assert_reads(&c, "still-mine", 5, 100_000).await;
    srv.stop();
}
