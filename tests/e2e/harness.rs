//! A real OpenVPN 2.6 server and real clients on loopback, around a fake Duo `Setup`.
//!
//! Each `Vpn` owns a temp dir (through its `Setup`), a throw-away PKI, one server on a free UDP
//! port with its own /24 from 10.78.x (never configured on the tun: `--ifconfig-noexec`), and the
//! clients started through it. Every OpenVPN process is started with `--daemon --writepid` and is
//! stopped by that pid in `Drop`, also when a test panics. Waits poll log files against a deadline.

use crate::fake_duo::{Sig, User};
use crate::util::{bin, write_private, Setup};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::collections::HashSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// OpenVPN's handshake window on both ends: long enough for a deferred answer, short enough that
/// a lost client gives up quickly.
pub const HAND_WINDOW: u64 = 30;
/// How long a client may take to connect or be refused when Duo answers at once.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(25);
const CONNECTED: &str = "Initialization Sequence Completed";

/// Whether the environment can run OpenVPN here; `None` means skip (outside CI only).
fn openvpn_binary() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    let found = dirs
        .into_iter()
        .map(|d| d.join("openvpn"))
        .find(|p| p.is_file());
    let problem = match &found {
        None => Some("openvpn is not installed (apt-get install openvpn)".to_string()),
        // SAFETY: geteuid has no preconditions.
        Some(_) if unsafe { libc::geteuid() } != 0 => {
            Some("not root: an OpenVPN server needs root to create its tun device".to_string())
        }
        Some(_) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .err()
            .map(|e| format!("/dev/net/tun is not usable: {e}")),
    };
    let Some(problem) = problem else {
        return found;
    };
    let ci = std::env::var("CI").unwrap_or_default();
    if !ci.is_empty() && ci != "false" && ci != "0" {
        panic!("e2e: CI={ci} but cannot run real OpenVPN: {problem}");
    }
    eprintln!(
        "\n**************************************************************\n\
         * e2e: SKIPPING real-OpenVPN test: {problem}\n\
         * (this fails instead of skipping when CI=true)\n\
         **************************************************************\n"
    );
    None
}

/// A UDP port nobody in this process has been handed yet and the OS says is free now.
fn free_udp_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("bind a UDP port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// The test PKI: a CA, the server's certificate and one client certificate per CN.
struct Pki {
    ca_cert: Certificate,
    ca_key: KeyPair,
    ca_file: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "openvpn-auth-duo e2e CA");
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = params.self_signed(&ca_key).expect("ca cert");
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write ca");
        Pki {
            ca_cert,
            ca_key,
            ca_file,
        }
    }

    /// Writes `<name>.crt` and `<name>.key`; returns their paths.
    fn issue(&self, dir: &Path, cn: &str, server: bool) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("leaf cert");
        let (crt, keyf) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
        std::fs::write(&crt, cert.pem()).expect("write cert");
        write_private(&keyf, &key.serialize_pem());
        (crt, keyf)
    }
}

/// One daemonised OpenVPN process, known by its pid file and its (unique) log path.
struct Daemon {
    pidfile: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// The pid, if the pid file names a live process whose command line has our log path
    /// (so a recycled pid is never signalled).
    fn live_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if pid <= 1 {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let marker = self.log.as_os_str().as_encoded_bytes();
        let ours = cmdline.split(|b| *b == 0).any(|arg| arg == marker);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        (ours && !zombie).then_some(pid)
    }

    fn signal(&self, sig: i32) -> bool {
        match self.live_pid() {
            Some(pid) => {
                // SAFETY: plain kill(2) on a pid we just checked is our OpenVPN.
                unsafe { libc::kill(pid, sig) };
                true
            }
            None => false,
        }
    }
}

/// Signals every daemon with SIGTERM, then SIGKILL for any still alive after a grace period.
fn stop_all(daemons: &[&Daemon]) {
    let live: Vec<&&Daemon> = daemons.iter().filter(|d| d.signal(libc::SIGTERM)).collect();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end && live.iter().any(|d| d.live_pid().is_some()) {
        std::thread::sleep(POLL);
    }
    for d in live {
        d.signal(libc::SIGKILL);
    }
}

pub fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Polls `check` until it returns `Some` or `deadline` passes.
pub fn poll<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// A client started by `Vpn::client`.
pub struct Client {
    pub cn: String,
    pub started: Instant,
    daemon: Daemon,
}

impl Client {
    pub fn log(&self) -> String {
        read_log(&self.daemon.log)
    }
}

/// How a client's attempt ended, as its log tells it.
#[derive(Debug)]
pub enum Outcome {
    /// `Initialization Sequence Completed`, this long after the client was started.
    Connected(Duration),
    /// The client's `AUTH_FAILED…` log line.
    AuthFailed(String),
    /// The client exited without either.
    Exited,
    /// Nothing decisive before the deadline.
    TimedOut,
}

pub struct Vpn {
    pub setup: Setup,
    pub port: u16,
    openvpn: PathBuf,
    dir: PathBuf,
    pki: Pki,
    server: Daemon,
    clients: Vec<Daemon>,
}

impl Vpn {
    /// Starts a fake Duo with `extra` config (see `Setup::with`) and an OpenVPN server on
    /// 10.78.`subnet`.0/24 using the built binary; `None` when the test should be skipped.
    pub fn start(subnet: u8, extra: &str) -> Option<Vpn> {
        let openvpn = openvpn_binary()?;
        let setup = Setup::with(Sig::V5, extra);
        let dir = setup.path("vpn");
        std::fs::create_dir(&dir).expect("mkdir vpn");
        let tmp = dir.join("tmp");
        std::fs::create_dir(&tmp).expect("mkdir tmp");
        let pki = Pki::new(&dir);
        let (crt, key) = pki.issue(&dir, "server", true);
        let server = Daemon {
            pidfile: dir.join("server.pid"),
            log: dir.join("server.log"),
        };
        let mut vpn = Vpn {
            setup,
            port: 0,
            openvpn,
            dir,
            pki,
            server,
            clients: Vec::new(),
        };
        // The port is free when picked but anyone may take it before OpenVPN binds: retry then.
        for attempt in 1.. {
            vpn.port = free_udp_port();
            spawn_daemon(vpn.server_command(subnet, &crt, &key, &tmp), &vpn.server);
            let log = &vpn.server.log;
            let ready = poll(Duration::from_secs(10), || {
                let text = read_log(log);
                (text.contains(CONNECTED) || text.contains("Exiting")).then_some(text)
            })
            .unwrap_or_else(|| read_log(log));
            if ready.contains(CONNECTED) {
                break;
            }
            if attempt < 3 && ready.contains("Address already in use") {
                stop_all(&[&vpn.server]);
                continue;
            }
            panic!(
                "OpenVPN server did not start on port {}:\n{ready}",
                vpn.port
            );
        }
        Some(vpn)
    }

    fn server_command(&self, subnet: u8, crt: &Path, key: &Path, tmp: &Path) -> Command {
        let net = format!("10.78.{subnet}");
        let script = format!("{} --config {}", bin(), self.setup.config.display());
        let mut cmd = Command::new(&self.openvpn);
        cmd.args(["--mode", "server", "--tls-server", "--dev", "tun"])
            .args(["--topology", "subnet", "--ifconfig"])
            .arg(format!("{net}.1"))
            .arg("255.255.255.0")
            .arg("--ifconfig-pool")
            .arg(format!("{net}.10"))
            .arg(format!("{net}.50"))
            .args(["--ifconfig-noexec", "--route-noexec"])
            .args(["--local", "127.0.0.1", "--proto", "udp", "--lport"])
            .arg(self.port.to_string())
            .arg("--ca")
            .arg(&self.pki.ca_file)
            .arg("--cert")
            .arg(crt)
            .arg("--key")
            .arg(key)
            .args(["--dh", "none", "--verify-client-cert", "require"])
            .arg("--auth-user-pass-verify")
            .arg(&script)
            .arg("via-file")
            .args(["--script-security", "2", "--tmp-dir"])
            .arg(tmp)
            .args(["--hand-window", &HAND_WINDOW.to_string()])
            .args(["--duplicate-cn", "--verb", "3"]);
        cmd
    }

    pub fn duo_user(&self, name: &str, user: User) {
        self.setup.duo.set_user(name, user);
    }

    /// Starts a client with certificate CN `cn`, sending `username` / `password`.
    pub fn client(&mut self, cn: &str, username: &str, password: &str) -> Client {
        let n = self.clients.len();
        let tag = format!("client{n}-{cn}");
        let (crt, key) = if self.dir.join(format!("{cn}.crt")).exists() {
            (
                self.dir.join(format!("{cn}.crt")),
                self.dir.join(format!("{cn}.key")),
            )
        } else {
            self.pki.issue(&self.dir, cn, false)
        };
        let up = self.dir.join(format!("{tag}.up"));
        write_private(&up, &format!("{username}\n{password}\n"));
        let daemon = Daemon {
            pidfile: self.dir.join(format!("{tag}.pid")),
            log: self.dir.join(format!("{tag}.log")),
        };
        let mut cmd = Command::new(&self.openvpn);
        cmd.args([
            "--client",
            "--dev",
            "null",
            "--ifconfig-noexec",
            "--route-noexec",
        ])
        .args(["--nobind", "--remote", "127.0.0.1"])
        .arg(self.port.to_string())
        .arg("udp")
        .arg("--ca")
        .arg(&self.pki.ca_file)
        .arg("--cert")
        .arg(&crt)
        .arg("--key")
        .arg(&key)
        .args(["--remote-cert-tls", "server", "--auth-user-pass"])
        .arg(&up)
        // A server stalled by a blocking script answers late; the waits here bound the test.
        .args(["--connect-retry-max", "1", "--server-poll-timeout"])
        .arg(HAND_WINDOW.to_string())
        .args(["--hand-window", &HAND_WINDOW.to_string(), "--verb", "3"]);
        let started = Instant::now();
        spawn_daemon(cmd, &daemon);
        self.clients.push(Daemon {
            pidfile: daemon.pidfile.clone(),
            log: daemon.log.clone(),
        });
        Client {
            cn: cn.to_string(),
            started,
            daemon,
        }
    }

    /// Stops one client now (the rest are stopped on drop).
    pub fn stop(&self, client: &Client) {
        stop_all(&[&client.daemon]);
    }

    /// Waits until the client's log says connected, refused or exited.
    pub fn outcome(&self, client: &Client, deadline: Duration) -> Outcome {
        poll(deadline, || {
            let log = client.log();
            if log.contains(CONNECTED) {
                return Some(Outcome::Connected(client.started.elapsed()));
            }
            if let Some(line) = log.lines().find(|l| l.contains("AUTH_FAILED")) {
                return Some(Outcome::AuthFailed(line.to_string()));
            }
            if log.contains("process exiting") || log.contains("Exiting due to fatal error") {
                return Some(Outcome::Exited);
            }
            None
        })
        .unwrap_or(Outcome::TimedOut)
    }

    /// Asserts the client connects; returns how long it took.
    pub fn expect_connected(&self, client: &Client) -> Duration {
        match self.outcome(client, CLIENT_DEADLINE) {
            Outcome::Connected(t) => t,
            other => panic!(
                "client {} should have connected, got {other:?}\n{}",
                client.cn,
                self.dump(client)
            ),
        }
    }

    /// Asserts the client is refused; returns its AUTH_FAILED log line.
    pub fn expect_auth_failed(&self, client: &Client) -> String {
        match self.outcome(client, CLIENT_DEADLINE) {
            Outcome::AuthFailed(line) => line,
            other => panic!(
                "client {} should have got AUTH_FAILED, got {other:?}\n{}",
                client.cn,
                self.dump(client)
            ),
        }
    }

    pub fn server_log(&self) -> String {
        read_log(&self.server.log)
    }

    /// Both logs, for failure messages.
    pub fn dump(&self, client: &Client) -> String {
        format!(
            "--- server log ---\n{}\n--- client {} log ---\n{}\n--- Duo requests: {:?}",
            self.server_log(),
            client.cn,
            client.log(),
            self.setup
                .duo
                .requests()
                .iter()
                .map(|r| format!("{} {:?}", r.path, r.params.get("username")))
                .collect::<Vec<_>>()
        )
    }
}

impl Drop for Vpn {
    fn drop(&mut self) {
        let mut all: Vec<&Daemon> = self.clients.iter().collect();
        all.push(&self.server);
        stop_all(&all);
    }
}

/// Runs `openvpn … --daemon`: the foreground process exits once it has forked, leaving the
/// daemon's pid in the pid file.
fn spawn_daemon(mut cmd: Command, d: &Daemon) {
    cmd.arg("--writepid")
        .arg(&d.pidfile)
        .arg("--log")
        .arg(&d.log)
        .arg("--daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // A file, not a pipe: the daemon must not hold our end open.
    let err_path = d.log.with_extension("stderr");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    cmd.stderr(err);
    let status = cmd.status().expect("run openvpn");
    assert!(
        status.success(),
        "openvpn failed to start ({status}): {}\n{}",
        read_log(&err_path),
        read_log(&d.log)
    );
    let pid = poll(Duration::from_secs(5), || {
        std::fs::read_to_string(&d.pidfile)
            .ok()
            .filter(|s| s.trim().parse::<i32>().is_ok())
    });
    assert!(
        pid.is_some(),
        "openvpn wrote no pid file\n{}",
        read_log(&d.log)
    );
}
