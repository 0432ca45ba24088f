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
