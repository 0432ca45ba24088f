//! The decision line reaches syslog (ident openvpn-auth-duo, the configured facility).

use crate::fake_duo::User;
use crate::util::Setup;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

struct RemoveOnDrop(&'static str);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

#[test]
fn decision_lines_reach_syslog_with_facility_and_severity() {
    if Path::new("/dev/log").exists() {
        // A real syslog daemon owns the socket; its log is not ours to read.
        eprintln!("SKIPPING: /dev/log belongs to a running syslog daemon");
        return;
    }
    let sock = UnixDatagram::bind("/dev/log").expect("bind /dev/log (the suite runs as root)");
    let _cleanup = RemoveOnDrop("/dev/log");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let s = Setup::new();
    s.edit_config("syslog = false", "syslog = true\nfacility = \"authpriv\"");
    let mut buf = vec![0u8; 8192];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a syslog datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };

    let run = s.verify("alice", "80417256,push", &[]);
    assert_eq!(run.code, 0);
    let msg = recv();
    // authpriv (10) * 8 + info (6) = 86
    assert!(msg.starts_with("<86>"), "{msg}");
    assert!(msg.contains("openvpn-auth-duo["), "{msg}");
    assert!(
        msg.contains("user=alice") && msg.contains("result=allow"),
        "{msg}"
    );
    assert!(
        !msg.contains("80417256"),
        "passcode leaked to syslog: {msg}"
    );

    s.edit_config("facility = \"authpriv\"", "facility = \"auth\"");
    s.duo.set_user("bob", User::denying());
    assert_eq!(s.verify("bob", "push", &[]).code, 1);
    let msg = recv();
    // auth (4) * 8 + warning (4) = 36
    assert!(msg.starts_with("<36>"), "{msg}");
    assert!(msg.contains("result=deny"), "{msg}");
}
