//! systemd's readiness protocol (`Type=notify`, sd_notify(3)): one datagram of
//! newline-separated `KEY=VALUE` assignments to the Unix socket named by `NOTIFY_SOCKET` (a
//! path, or an abstract name written with a leading `@`). Written here with std's
//! `UnixDatagram`: the protocol is one `sendto`, not worth a crate.

use std::os::unix::net::UnixDatagram;

/// Send `state` (e.g. `READY=1`) to the service manager. Without `NOTIFY_SOCKET` (not run by
/// systemd with `Type=notify`) it does nothing and returns `Ok(false)`.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&target))?;
    }
    Ok(true)
}

/// `notify`, logging a failure instead of returning it (a service manager that cannot be told
/// is the operator's to see, not a reason to stop serving).
pub fn tell(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!("cannot notify the service manager ({state:?}): {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_notify_socket_nothing_is_sent() {
        // The test harness is not run by systemd with Type=notify.
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(!super::notify("READY=1").expect("no socket, no error"));
        }
    }
}
