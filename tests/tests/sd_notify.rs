//! `Type=notify`: a server started with `NOTIFY_SOCKET` (here a socket of the test's, as
//! systemd would pass it) sends `READY=1` once it serves and `STOPPING=1` when SIGTERM makes it
//! drain (SIGHUP does neither); both as a path and as an abstract socket name (`@...`). A unit file check is apart:
//! `systemd-analyze verify packaging/tessera.service` where systemd is installed.

mod common;
use common::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Start a server told to notify `socket_name`; check READY=1 after its ready line and
/// STOPPING=1 after SIGTERM.
fn ready_then_stopping(sock: &UnixDatagram, socket_name: &str) {
    sock.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera-under-test"))
        .args(["server", "--listen", "127.0.0.1:0", "--cores", "2", "--segment-mib", "8", "--data"])
        .arg(dir.path().join("data"))
        .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
        .env("TESSERA_SECRET_KEY", SECRET_KEY)
        .env("TESSERA_LOG", "warn")
        .env("NOTIFY_SOCKET", socket_name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tessera");
    let msg = recv(sock);
    let lines: Vec<&str> = msg.lines().collect();
    assert!(lines.contains(&"READY=1"), "{msg:?}");
    assert!(lines.contains(&format!("MAINPID={}", child.id()).as_str()), "{msg:?}");
    // READY comes after the ready line: the listeners serve.
    // (The ready line is printed before READY=1 is sent.)
    let addr = ready_address(&mut child, Duration::from_secs(10));
    std::net::TcpStream::connect(&addr).expect("the server accepts connections once READY=1 was sent");

    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SIGHUP (a "reload") neither stops nor kills it.
    // SAFETY: kill(2) on our own child, which `child` keeps from being reaped.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().expect("try_wait").is_none(), "SIGHUP ended the server");
    std::net::TcpStream::connect(&addr).expect("still serving after SIGHUP");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let msg = recv(sock);
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg:?}");
    assert!(child.wait().expect("wait").success());
}

#[test]
fn ready_and_stopping_reach_a_notify_socket_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    ready_then_stopping(&sock, &path.to_string_lossy());
}

#[test]
fn ready_and_stopping_reach_an_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("tessera-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
    ready_then_stopping(&sock, &format!("@{name}"));
}
