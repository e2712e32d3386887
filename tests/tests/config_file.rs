//! `tessera server --config FILE`: the file starts the same node as the flags (its device
//! list with zones, its settings), flags on the command line override it, and a file with an
//! unknown key is refused before anything starts.

mod common;
use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_starts_the_node_its_flags_would_and_flags_override_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let devs: Vec<(String, std::path::PathBuf)> =
        (0..6).map(|i| (format!("z{}", i / 2 + 1), dir.path().join(format!("disk{i}")))).collect();
    let dev_args: Vec<String> = devs.iter().map(|(z, p)| format!("{z}={}", p.display())).collect();
    let mut fmt: Vec<&str> = Vec::new();
    for d in &dev_args {
        fmt.extend(["--device", d.as_str()]);
    }
    format(&data, &fmt);

    let mut toml = String::from(
        "# the node, as an operator writes it\nrepair-share = 10\nscrub-period-hours = 48\nec = \"4+2\"\n",
    );
    for (z, p) in &devs {
        toml.push_str(&format!("\n[[device]]\nzone = \"{z}\"\npath = \"{}\"\n", p.display()));
    }
    let file = dir.path().join("tessera.toml");
    std::fs::write(&file, &toml).expect("write the config");
    let file_s = file.to_string_lossy().into_owned();

    // The devices and repair share from the file; the scrub period from the command line.
    let srv = Server::start_with(&data, "127.0.0.1:0", &["--config", &file_s, "--scrub-period-hours", "24"]);
    let st = status(&srv);
    let got: Vec<(String, String)> =
        st.devices.iter().map(|d| (d.zone.clone(), d.path.clone().unwrap_or_default())).collect();
    let want: Vec<(String, String)> = devs.iter().map(|(z, p)| (z.clone(), p.display().to_string())).collect();
    assert_eq!(got, want, "the node's devices are not the file's");
    assert!(st.devices.iter().all(|d| d.healthy), "{st:?}");
    assert_eq!(st.io_shares.repair, 10, "repair-share from the file");
    assert_eq!(st.scrub_period_secs, 24 * 3600, "the command line overrides the file");
    srv.client().create_bucket().bucket("cfg").send().await.expect("create bucket");
    drop(srv);

    // An unknown key: refused, naming the file and the key.
    std::fs::write(&file, format!("repair_share = 10\n{toml}")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera-under-test"))
        .args(["server", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .args(["--config", &file_s])
        .output()
        .expect("run tessera");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&file_s) && err.contains("unknown key \"repair_share\""), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tessera ready"));
}
