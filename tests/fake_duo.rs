//! A fake Duo Auth API v2 server for tests and the demo: real HTTPS (rustls) with a throw-away
//! CA, an independent check of every request's signature (v2 HMAC-SHA1 or v5 HMAC-SHA512), users
//! whose preauth and auth answers are scripted, and server-wide faults for the failure tests.
//! Every request is recorded so tests can assert exactly what reached "Duo".
#![allow(dead_code)]

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const IKEY: &str = "DITESTINTEGRATION001";
pub const SKEY: &str = "TestSecretKey0123456789abcdefghijklmnopq";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    V2,
    V5,
}

/// How a scripted second factor ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Allow,
    Deny,
    Fraud,
    Timeout,
    LockedOut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreauthResult {
    Auth,
    Allow,
    Deny,
    Enroll(String),
}

#[derive(Debug, Clone)]
pub struct User {
    pub preauth: PreauthResult,
    pub devices: Vec<Value>,
    pub passcode: String,
    pub push: Answer,
    pub phone: Answer,
    /// How long the "human" takes before push or phone is answered.
    pub delay: Duration,
}

impl Default for User {
    fn default() -> Self {
        User {
            preauth: PreauthResult::Auth,
            devices: vec![phone_device("DPFZRS9FB0D46QFTM891", "iOS", true)],
            passcode: "123456".into(),
            push: Answer::Allow,
            phone: Answer::Allow,
            delay: Duration::ZERO,
        }
    }
}

impl User {
    /// A user who approves every push and call after `delay`.
    pub fn answering_after(delay: Duration) -> User {
        User {
            delay,
            ..User::default()
        }
    }

    /// A user who denies every push and call.
    pub fn denying() -> User {
        User {
            push: Answer::Deny,
            phone: Answer::Deny,
            ..User::default()
        }
    }
}

/// A Duo device entry as preauth lists it.
pub fn phone_device(id: &str, name: &str, push: bool) -> Value {
    let mut caps = vec!["auto", "sms", "phone"];
    if push {
        caps.insert(1, "push");
        caps.push("mobile_otp");
    }
    json!({"device": id, "type": "phone", "name": name, "display_name": format!("{name} (XXX-XXX-0100)"),
           "number": "XXX-XXX-0100", "capabilities": caps})
}

/// A server-wide misbehaviour, for the failure tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer every request with this HTTP status and a FAIL body.
    Status(u16),
    /// Answer 429 this many times before behaving, with an optional Retry-After.
    RateLimit {
        times: usize,
        retry_after: Option<u64>,
    },
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with JSON cut short.
    Truncated,
    /// 200 with a body of this many bytes.
    Oversized(usize),
    /// Read the request, then never answer.
    Hang,
    /// Send part of the headers, then stall.
    HalfThenStall,
    /// Close the connection right after the TLS handshake.
    CloseAfterHandshake,
    /// `/check` reports Duo's clock this many seconds ahead of ours.
    ClockAhead(i64),
    /// Refuse every signed request as Duo does when the Date header is too far off.
    StaleDate,
}

/// Which certificate the server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    Good,
    OtherHost,
    Expired,
    /// Signed by a CA the client is not given.
    UnknownCa,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub connection: usize,
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub signature_ok: bool,
    pub headers: BTreeMap<String, String>,
}

struct State {
    sig: Sig,
    users: Mutex<HashMap<String, User>>,
    fault: Mutex<Option<Fault>>,
    requests: Mutex<Vec<Request>>,
    changed: Condvar,
    connections: AtomicUsize,
    stop: AtomicBool,
    rate_limited: AtomicUsize,
}

pub struct FakeDuo {
    pub port: u16,
    /// PEM of the CA the client should trust (`ca_file`).
    pub ca_file: PathBuf,
    state: Arc<State>,
    _dir: Option<tempfile::TempDir>,
}

impl FakeDuo {
    pub fn start(sig: Sig) -> FakeDuo {
        FakeDuo::start_with(sig, CertKind::Good)
    }

    pub fn start_with(sig: Sig, cert: CertKind) -> FakeDuo {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut duo = FakeDuo::start_in(dir.path(), sig, cert);
        duo._dir = Some(dir);
        duo
    }

    /// Starts on a free loopback port, writing the CA to `dir/fake-duo-ca.pem`.
    pub fn start_in(dir: &Path, sig: Sig, cert: CertKind) -> FakeDuo {
        let (ca_pem, chain, key) = make_certs(cert);
        let ca_file = dir.join("fake-duo-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write CA");
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("tls versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server cert"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(State {
            sig,
            users: Mutex::new(HashMap::new()),
            fault: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            rate_limited: AtomicUsize::new(0),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let st = st.clone();
                let tls = tls.clone();
                std::thread::spawn(move || serve_connection(stream, tls, st));
            }
        });
        FakeDuo {
            port,
            ca_file,
            state,
            _dir: None,
        }
    }

    /// `host:port` to put in `api_hostname`.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    pub fn set_user(&self, name: &str, user: User) {
        self.state.users.lock().unwrap().insert(name.into(), user);
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        self.state.rate_limited.store(0, Ordering::SeqCst);
        *self.state.fault.lock().unwrap() = fault;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests to one endpoint (`preauth`, `auth`, `check`).
    pub fn calls(&self, endpoint: &str) -> Vec<Request> {
        let path = format!("/auth/v2/{endpoint}");
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// TLS connections accepted so far (each is one handshake).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
        self.state.connections.store(0, Ordering::SeqCst);
    }

    /// Blocks until `n` requests have been recorded, or the timeout passes; returns the count.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        let mut reqs = self.state.requests.lock().unwrap();
        while reqs.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            reqs = self.state.changed.wait_timeout(reqs, left).unwrap().0;
        }
        reqs.len()
    }
}

impl Drop for FakeDuo {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn make_certs(kind: CertKind) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let make_ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        (cert, key)
    };
    let (ca, ca_key) = make_ca("openvpn-auth-duo test CA");
    let names = match kind {
        CertKind::OtherHost => vec!["other.example.com".to_string()],
        _ => vec!["localhost".to_string()],
    };
    let mut params = CertificateParams::new(names).expect("leaf params");
    if kind != CertKind::OtherHost {
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    }
    if kind == CertKind::Expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let leaf_key = KeyPair::generate().expect("leaf key");
    let (leaf, trusted_pem) = if kind == CertKind::UnknownCa {
        let (other, other_key) = make_ca("some other CA");
        (
            params
                .signed_by(&leaf_key, &other, &other_key)
                .expect("leaf"),
            ca.pem(),
        )
    } else {
        (
            params.signed_by(&leaf_key, &ca, &ca_key).expect("leaf"),
            ca.pem(),
        )
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (trusted_pem, vec![leaf.der().clone()], key)
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

fn serve_connection(tcp: TcpStream, tls: Arc<rustls::ServerConfig>, st: Arc<State>) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = tcp.set_nodelay(true);
    let Ok(conn) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake before counting: a refused certificate is not a connection.
    while stream.conn.is_handshaking() {
        if stream.conn.complete_io(&mut stream.sock).is_err() {
            return;
        }
    }
    let id = st.connections.fetch_add(1, Ordering::SeqCst) + 1;
    if *st.fault.lock().unwrap() == Some(Fault::CloseAfterHandshake) {
        let _ = stream.sock.shutdown(Shutdown::Both);
        return;
    }
    let mut reader = BufReader::new(stream);
    loop {
        let Some((method, target, headers, body)) = read_request(&mut reader) else {
            return;
        };
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let response = handle(&st, id, &method, path, query, &headers, &body);
        let stream = reader.get_mut();
        match response {
            Reply::Bytes(bytes) => {
                if stream.write_all(&bytes).is_err() || stream.flush().is_err() {
                    return;
                }
            }
            Reply::Stall(partial) => {
                let _ = stream.write_all(&partial);
                let _ = stream.flush();
                stall(&st);
                return;
            }
        }
    }
}

/// Holds a connection open without answering until the server is dropped (at most 2 minutes).
fn stall(st: &State) {
    let end = Instant::now() + Duration::from_secs(120);
    while !st.stop.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
}

type Headers = BTreeMap<String, String>;

fn read_request(r: &mut BufReader<Tls>) -> Option<(String, String, Headers, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Headers::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((method, target, headers, body))
}

enum Reply {
    Bytes(Vec<u8>),
    Stall(Vec<u8>),
}

fn http(status: u16, extra: &str, body: &[u8]) -> Reply {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    Reply::Bytes(out)
}

fn ok(response: Value) -> Reply {
    http(
        200,
        "",
        json!({"stat": "OK", "response": response})
            .to_string()
            .as_bytes(),
    )
}

fn fail(status: u16, code: u32, message: &str) -> Reply {
    http(
        status,
        "",
        json!({"stat": "FAIL", "code": code, "message": message})
            .to_string()
            .as_bytes(),
    )
}

fn handle(
    st: &State,
    conn: usize,
    method: &str,
    path: &str,
    query: &str,
    headers: &Headers,
    body: &[u8],
) -> Reply {
    let body_text = String::from_utf8_lossy(body).into_owned();
    let is_json = headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    let mut params = parse_form(query);
    if method == "POST" {
        if is_json {
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&body_text) {
                for (k, v) in map {
                    params.insert(k, v.as_str().unwrap_or_default().to_string());
                }
            }
        } else {
            params.extend(parse_form(&body_text));
        }
    }
    let signature_ok = verify_signature(st.sig, method, path, query, headers, body, &params);
    {
        let mut reqs = st.requests.lock().unwrap();
        reqs.push(Request {
            connection: conn,
            method: method.into(),
            path: path.into(),
            params: params.clone(),
            signature_ok,
            headers: headers.clone(),
        });
        st.changed.notify_all();
    }
    if path == "/auth/v2/ping" {
        return ok(json!({"time": now()}));
    }
    if !signature_ok {
        return fail(401, 40103, "Invalid signature in request credentials");
    }
    let fault = st.fault.lock().unwrap().clone();
    match fault {
        Some(Fault::Status(code)) => return fail(code, code as u32 * 100, "Scripted failure"),
        Some(Fault::RateLimit { times, retry_after })
            if st.rate_limited.fetch_add(1, Ordering::SeqCst) < times =>
        {
            let extra = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            return http(
                429,
                &extra,
                br#"{"stat":"FAIL","code":42901,"message":"Too Many Requests"}"#,
            );
        }
        Some(Fault::Garbage) => return http(200, "", b"<html>not json</html>"),
        Some(Fault::Truncated) => return http(200, "", br#"{"stat":"OK","response":{"res"#),
        Some(Fault::Oversized(n)) => {
            let mut big = br#"{"stat":"OK","response":{"result":"auth","pad":""#.to_vec();
            big.resize(n, b'x');
            big.extend_from_slice(b"\"}}");
            return http(200, "", &big);
        }
        Some(Fault::StaleDate) => {
            return fail(
                401,
                40105,
                "Request timestamp is too far from the server time",
            )
        }
        Some(Fault::ClockAhead(secs)) if path == "/auth/v2/check" => {
            return ok(json!({"time": now() as i64 + secs}))
        }
        Some(Fault::Hang) => return Reply::Stall(Vec::new()),
        Some(Fault::HalfThenStall) => {
            return Reply::Stall(b"HTTP/1.1 200 OK\r\nContent-Type: applic".to_vec())
        }
        _ => {}
    }
    match path {
        "/auth/v2/check" => ok(json!({"time": now()})),
        "/auth/v2/preauth" => preauth(st, &params),
        "/auth/v2/auth" => auth(st, &params),
        _ => fail(404, 40401, "Resource not found"),
    }
}

fn user(st: &State, params: &BTreeMap<String, String>) -> Option<User> {
    let name = params.get("username")?;
    st.users.lock().unwrap().get(name).cloned()
}

fn preauth(st: &State, params: &BTreeMap<String, String>) -> Reply {
    if !params.contains_key("username") {
        return fail(400, 40002, "Missing required request parameters");
    }
    let Some(u) = user(st, params) else {
        return ok(
            json!({"result": "enroll", "status_msg": "Enroll an authentication device to proceed",
                         "enroll_portal_url": "https://api-test.duosecurity.com/portal?code=unknown"}),
        );
    };
    match u.preauth {
        PreauthResult::Auth => {
            ok(json!({"result": "auth", "status_msg": "Account is active", "devices": u.devices}))
        }
        PreauthResult::Allow => {
            ok(json!({"result": "allow", "status_msg": "Allowing unknown user"}))
        }
        PreauthResult::Deny => ok(json!({"result": "deny", "status_msg": "Account disabled"})),
        PreauthResult::Enroll(url) => ok(json!({"result": "enroll",
            "status_msg": "Enroll an authentication device to proceed", "enroll_portal_url": url})),
    }
}

fn auth(st: &State, params: &BTreeMap<String, String>) -> Reply {
    let Some(u) = user(st, params) else {
        return fail(400, 40002, "Invalid request parameters (username)");
    };
    let factor = params.get("factor").map(String::as_str).unwrap_or("");
    let device_ok = |cap: &str| {
        let dev = params.get("device").map(String::as_str).unwrap_or("");
        dev == "auto"
            || u.devices.iter().any(|d| {
                d["device"] == dev
                    && d["capabilities"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|x| x == cap))
            })
    };
    let answer = match factor {
        "passcode" => {
            if params.get("passcode") == Some(&u.passcode) {
                Answer::Allow
            } else {
                return ok(json!({"result": "deny", "status": "deny",
                                 "status_msg": "Incorrect passcode. Please try again."}));
            }
        }
        "push" | "phone" | "sms" if !device_ok(factor) => {
            return fail(400, 40002, "Invalid request parameters (device)")
        }
        "push" => u.push,
        "phone" => u.phone,
        "sms" => {
            return ok(json!({"result": "deny", "status": "sent",
                             "status_msg": "New SMS passcodes sent."}))
        }
        _ => return fail(400, 40002, "Invalid request parameters (factor)"),
    };
    if factor != "passcode" && !u.delay.is_zero() {
        let end = Instant::now() + u.delay;
        while Instant::now() < end && !st.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (result, status, msg) = match answer {
        Answer::Allow => ("allow", "allow", "Success. Logging you in..."),
        Answer::Deny => ("deny", "deny", "Login request denied."),
        Answer::Fraud => ("deny", "fraud", "Login request reported as fraud."),
        Answer::Timeout => ("deny", "timeout", "Login timed out."),
        Answer::LockedOut => ("deny", "locked_out", "Your account is disabled."),
    };
    ok(json!({"result": result, "status": status, "status_msg": msg}))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

/// Duo's escaping, written independently of the binary's: RFC 3986 unreserved stay.
fn duo_quote(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn canon(params: &BTreeMap<String, String>) -> String {
    let mut enc: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (duo_quote(k), duo_quote(v)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn verify_signature(
    sig: Sig,
    method: &str,
    path: &str,
    query: &str,
    headers: &Headers,
    body: &[u8],
    params: &BTreeMap<String, String>,
) -> bool {
    let (Some(date), Some(auth), Some(host)) = (
        headers.get("date"),
        headers.get("authorization"),
        headers.get("host"),
    ) else {
        return false;
    };
    let Some(b64) = auth.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    let Some((ikey, got)) = decoded.split_once(':') else {
        return false;
    };
    if ikey != IKEY {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let expected = match sig {
        Sig::V2 => {
            let canonical = format!("{date}\n{method}\n{host}\n{path}\n{}", canon(params));
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SKEY.as_bytes()).unwrap();
            mac.update(canonical.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
        Sig::V5 => {
            let q = parse_form(query);
            let canonical = format!(
                "{date}\n{method}\n{host}\n{path}\n{}\n{}\n{}",
                canon(&q),
                hex(&sha2::Sha512::digest(body)),
                hex(&sha2::Sha512::digest(b""))
            );
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(SKEY.as_bytes()).unwrap();
            mac.update(canonical.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
    };
    expected == got
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
