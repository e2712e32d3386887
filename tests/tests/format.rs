//! Formatting is an explicit act. `tessera server` refuses explicit devices that hold no
//! tessera device (an unmounted disk, a mistyped path) and writes nothing to them; it refuses
//! an existing data directory with files but no devices; it refuses an `--ec` other than the
//! set's. `tessera format` makes the set, refuses to format it twice, and the server then
//! starts on it and serves.

mod common;
use aws_sdk_s3::primitives::ByteStream;
use common::*;
use std::path::Path;

/// Every file under `p` (relative), sorted.
fn files(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(p).expect("under p").display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn server_args<'a>(data: &'a str, devices: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["server", "--listen", "127.0.0.1:0", "--cores", "2", "--segment-mib", "8", "--data", data];
    for d in devices {
        a.extend(["--device", d.as_str()]);
    }
    a.extend(extra);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_devices_are_formatted_only_by_tessera_format_and_the_ec_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_string_lossy().into_owned();
    // Empty mount points, as an unmounted disk leaves them.
    let devices: Vec<String> = (0..6)
        .map(|i| {
            let p = dir.path().join(format!("mnt{i}"));
            std::fs::create_dir(&p).expect("mkdir");
            format!("z{}={}", i / 2 + 1, p.display())
        })
        .collect();

    let err = refused_run(&server_args(&data_s, &devices, &[]));
    assert!(err.contains("never formats a --device") && err.contains("tessera format --data"), "{err}");
    assert!(err.contains("--ec 4+2"), "the message does not give the whole command: {err}");
    for i in 0..6 {
        let mnt = dir.path().join(format!("mnt{i}"));
        assert!(files(&mnt).is_empty(), "the refused start wrote into {}: {:?}", mnt.display(), files(&mnt));
    }

    let mut fmt_args: Vec<&str> = Vec::new();
    for d in &devices {
        fmt_args.extend(["--device", d.as_str()]);
    }
    let out = format(&data, &fmt_args);
    assert!(out.contains("formatted 6 devices in 3 zones, EC 4+2"), "{out}");
    let formatted = files(dir.path());

    // Twice is refused and changes nothing.
    let mut again = vec!["format", "--data", &data_s];
    again.extend(&fmt_args);
    let err = refused_run(&again);
    assert!(err.contains("already formatted") && err.contains("nothing formatted"), "{err}");
    assert_eq!(files(dir.path()), formatted);

    // Another EC than the set's is refused before anything is written.
    let err = refused_run(&server_args(&data_s, &devices, &["--ec", "3+1"]));
    assert!(err.contains("formatted with EC 4+2") && err.contains("--ec 3+1"), "{err}");
    assert_eq!(files(dir.path()), formatted);

    // The set's own EC, or none, starts and serves.
    let srv = Server::start_with(&data, "127.0.0.1:0", &{
        let mut a = fmt_args.clone();
        a.extend(["--ec", "4+2"]);
        a
    });
    let c = srv.client();
    c.create_bucket().bucket("fmt").send().await.expect("create bucket");
    c.put_object().bucket("fmt").key("k").body(ByteStream::from(data_of(100_000))).send().await.expect("PUT");
    let o = c.get_object().bucket("fmt").key("k").send().await.expect("GET");
    assert!(o.body.collect().await.expect("body").into_bytes().as_ref() == data_of(100_000).as_slice());
}

fn data_of(len: usize) -> Vec<u8> {
    data(42, len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_formats_itself_only_on_a_first_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A data directory with something in it but no devices (a disk with other data, or the
    // wrong directory): refused, untouched.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("notes.txt"), b"not tessera's").expect("write");
    let data_s = data.to_string_lossy().into_owned();
    let err = refused_run(&server_args(&data_s, &[], &[]));
    assert!(err.contains("holds files but no formatted device") && err.contains("tessera format --data"), "{err}");
    assert_eq!(files(&data), vec!["notes.txt".to_string()]);

    // `tessera format` there makes the embedded default, and the server starts on it.
    let out = format(&data, &[]);
    assert!(out.contains("formatted 6 devices in 3 zones"), "{out}");
    let srv = Server::start_in(&data, "127.0.0.1:0");
    srv.client().create_bucket().bucket("emb").send().await.expect("create bucket");

    // A data directory that does not exist yet is a first start: formatted implicitly.
    let fresh = dir.path().join("fresh");
    let srv2 = Server::start_in(&fresh, "127.0.0.1:0");
    srv2.client().create_bucket().bucket("emb").send().await.expect("create bucket");
    assert!(fresh.join("dev0").join(engine::superblock::SUPERBLOCK_FILE).exists());
}
