//! What OpenVPN hands a user-pass-verify script besides the credentials: the environment
//! (validated like any other untrusted input).

use crate::credentials::text_field;
use crate::error::Error;
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Largest environment value accepted from OpenVPN.
pub const MAX_ENV_VALUE: usize = 1024;

/// The OpenVPN variables this tool reads. Listed once so docs and the deferral hand-over agree.
pub const ENV_VARS: &[&str] = &[
    "common_name",
    "untrusted_ip",
    "untrusted_ip6",
    "untrusted_port",
    "IV_PLAT",
    "IV_GUI_VER",
    "IV_HWADDR",
    "UV_ID",
    "session_state",
    "config",
    "dev",
    "auth_control_file",
    "auth_failed_reason_file",
    "auth_pending_file",
];

#[derive(Debug, Clone, Default)]
pub struct Env {
    pub common_name: Option<String>,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub iv_plat: Option<String>,
    pub iv_gui_ver: Option<String>,
    pub iv_hwaddr: Option<String>,
    pub uv_id: Option<String>,
    pub session_state: Option<String>,
    pub config: Option<String>,
    pub dev: Option<String>,
    pub auth_control_file: Option<PathBuf>,
    pub auth_failed_reason_file: Option<PathBuf>,
    pub auth_pending_file: Option<PathBuf>,
}

impl Env {
    /// Reads and validates the variables in [`ENV_VARS`] through `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> Result<Env, Error> {
        let text = |name: &str| -> Result<Option<String>, Error> {
            match get(name) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => text_field(
                    &format!("environment variable {name}"),
                    v.as_bytes(),
                    MAX_ENV_VALUE,
                )
                .map(Some),
            }
        };
        let ip = match text("untrusted_ip")?.or(text("untrusted_ip6")?) {
            None => None,
            Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
                Error::Input("untrusted_ip/untrusted_ip6 is not an IP address".into())
            })?),
        };
        let port = match text("untrusted_port")? {
            None => None,
            Some(s) => Some(
                s.parse::<u16>()
                    .map_err(|_| Error::Input("untrusted_port is not a port number".into()))?,
            ),
        };
        Ok(Env {
            common_name: text("common_name")?,
            ip,
            port,
            iv_plat: text("IV_PLAT")?,
            iv_gui_ver: text("IV_GUI_VER")?,
            iv_hwaddr: text("IV_HWADDR")?,
            uv_id: text("UV_ID")?,
            session_state: text("session_state")?,
            config: text("config")?,
            dev: text("dev")?,
            auth_control_file: text("auth_control_file")?.map(PathBuf::from),
            auth_failed_reason_file: text("auth_failed_reason_file")?.map(PathBuf::from),
            auth_pending_file: text("auth_pending_file")?.map(PathBuf::from),
        })
    }

    pub fn from_process() -> Result<Env, Error> {
        Env::from_vars(|name| std::env::var_os(name))
    }

    /// The client address as Duo's `ipaddr` wants it.
    pub fn ip_string(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }
}

/// What the foreground script hands the background process. The credential file is gone once
/// the script exits, so everything is passed along over a pipe (never argv or the environment,
/// which other users could read through /proc).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Handover {
    pub id: String,
    pub username: String,
    pub password: String,
    pub env: std::collections::BTreeMap<String, String>,
}

/// Largest handover accepted on the background process's stdin.
const MAX_HANDOVER: u64 = 64 * 1024;

impl Handover {
    /// The variables in [`ENV_VARS`] as the foreground process saw them.
    pub fn capture_env() -> std::collections::BTreeMap<String, String> {
        ENV_VARS
            .iter()
            .filter_map(|name| {
                std::env::var_os(name)
                    .and_then(|v| v.into_string().ok())
                    .map(|v| (name.to_string(), v))
            })
            .collect()
    }

    pub fn read_from_stdin() -> Result<Handover, Error> {
        use std::io::Read;
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_HANDOVER + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Io(format!("reading the handover failed: {e}")))?;
        if buf.len() as u64 > MAX_HANDOVER {
            return Err(Error::Input("handover is too large".into()));
        }
        serde_json::from_slice(&buf).map_err(|_| Error::Input("handover is malformed".into()))
    }

    pub fn env(&self) -> Result<Env, Error> {
        Env::from_vars(|name| self.env.get(name).map(OsString::from))
    }
}

/// Starts `openvpn-auth-duo --config CONFIG background` fully detached (own session, stdio
/// closed, no inherited descriptors) and hands it the login over a pipe. Returns its pid.
pub fn spawn_background(config: &std::path::Path, handover: &Handover) -> Result<u32, Error> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let json = serde_json::to_vec(handover)
        .map_err(|e| Error::Io(format!("cannot encode the handover: {e}")))?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("--config")
        .arg(config)
        .arg("background")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Io(format!("cannot start the background process: {e}")))?;
    let pid = child.id();
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::Io("background process has no stdin".into()))?;
    stdin
        .write_all(&json)
        .map_err(|e| Error::Io(format!("cannot hand over to the background process: {e}")))?;
    // Dropping `child` neither waits nor kills: the background process outlives us and is
    // re-parented to init when we exit.
    Ok(pid)
}

#[allow(unsafe_code)]
fn detach(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child between fork and exec, where only
    // async-signal-safe calls are allowed; it calls setsid, close_range and fcntl, allocates
    // nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Mark everything OpenVPN let us inherit (sockets, tun device, log files) to close
            // on exec; std's own pipe to report exec failure is already close-on-exec.
            let rc = libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if rc != 0 {
                // Kernels before 5.11 lack close_range: do it one descriptor at a time.
                for fd in 3..4096 {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
            }
            Ok(())
        });
    }
}

/// OpenVPN sends this file's bytes to the client as `AUTH_FAILED,<text>` when it reads a deny,
/// so it holds no trailing newline. Best effort: the deny stands without it.
pub fn write_failed_reason(env: &Env, client_reason: &str) {
    if let (Some(path), false) = (&env.auth_failed_reason_file, client_reason.is_empty()) {
        let _ = std::fs::write(path, client_reason.as_bytes());
    }
}

/// Writes the final answer for a deferred login: the reason first (OpenVPN reads it when it
/// sees the deny), then `1` or `0` in the control file.
pub fn write_answer(env: &Env, allow: bool, client_reason: &str) -> Result<(), Error> {
    if !allow {
        write_failed_reason(env, client_reason);
    }
    let path = env
        .auth_control_file
        .as_ref()
        .ok_or_else(|| Error::Io("no auth_control_file to answer in".into()))?;
    std::fs::write(path, if allow { b"1" } else { b"0" }).map_err(|e| {
        Error::Io(format!(
            "cannot write {}: {}",
            path.display(),
            crate::io_reason(&e)
        ))
    })
}
