//! `openvpn::Env::from_vars` with a fuzzed name→value map. Input format, one variable a line:
//! `name=value`, where `\xHH` in a value stands for any byte (so values can hold newlines, NULs
//! and invalid UTF-8); a later line for the same name wins. Compared with an oracle; `get` may be
//! asked only for names in `ENV_VARS`; errors never echo a value.

use crate::{assert_not_leaked, valid_text};
use openvpn_auth_duo::error::Error;
use openvpn_auth_duo::openvpn::{Env, ENV_VARS, MAX_ENV_VALUE};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;

fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && raw.len() >= i + 4 && raw[i + 1] == b'x' {
            if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&raw[i + 2..i + 4]), 16) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

pub fn parse_input(data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut vars = BTreeMap::new();
    for line in data.split(|&b| b == b'\n') {
        let (name, value) = match line.iter().position(|&b| b == b'=') {
            Some(eq) => (&line[..eq], &line[eq + 1..]),
            None => (line, &b""[..]),
        };
        vars.insert(String::from_utf8_lossy(name).into_owned(), unescape(value));
    }
    vars
}

/// A variable's validated text: `Ok(None)` when unset or empty, `Err` when unacceptable.
fn var<'a>(vars: &'a BTreeMap<String, Vec<u8>>, name: &str) -> Result<Option<&'a str>, ()> {
    match vars.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => valid_text(v, MAX_ENV_VALUE).map(Some).ok_or(()),
    }
}

/// What `from_vars` should make of the map: every variable it reads must be valid text, the
/// address (`untrusted_ip`, else `untrusted_ip6`) an IP address and the port a u16.
struct Expected<'a> {
    texts: BTreeMap<&'static str, Option<&'a str>>,
    ip: Option<IpAddr>,
    port: Option<u16>,
}

fn oracle(vars: &BTreeMap<String, Vec<u8>>) -> Option<Expected<'_>> {
    let mut texts = BTreeMap::new();
    for &name in ENV_VARS {
        texts.insert(name, var(vars, name).ok()?);
    }
    let ip = match texts["untrusted_ip"].or(texts["untrusted_ip6"]) {
        None => None,
        Some(s) => Some(s.parse().ok()?),
    };
    let port = match texts["untrusted_port"] {
        None => None,
        Some(s) => Some(s.parse().ok()?),
    };
    Some(Expected { texts, ip, port })
}

fn os_str(o: &Option<std::path::PathBuf>) -> Option<&str> {
    o.as_deref()
        .map(|p| p.to_str().expect("validated paths are UTF-8"))
}

pub fn check(data: &[u8]) {
    let vars = parse_input(data);
    let asked = RefCell::new(Vec::new());
    let result = Env::from_vars(|name| {
        asked.borrow_mut().push(name.to_owned());
        vars.get(name).map(|v| OsString::from_vec(v.clone()))
    });
    for name in asked.borrow().iter() {
        assert!(
            ENV_VARS.contains(&name.as_str()),
            "reads {name:?}, not in ENV_VARS"
        );
    }
    let want = oracle(&vars);
    match result {
        Ok(env) => {
            let w = want.unwrap_or_else(|| panic!("accepted {vars:?}"));
            let t = &w.texts;
            assert_eq!(env.common_name.as_deref(), t["common_name"]);
            assert_eq!(env.iv_plat.as_deref(), t["IV_PLAT"]);
            assert_eq!(env.iv_gui_ver.as_deref(), t["IV_GUI_VER"]);
            assert_eq!(env.iv_hwaddr.as_deref(), t["IV_HWADDR"]);
            assert_eq!(env.uv_id.as_deref(), t["UV_ID"]);
            assert_eq!(env.session_state.as_deref(), t["session_state"]);
            assert_eq!(env.config.as_deref(), t["config"]);
            assert_eq!(env.dev.as_deref(), t["dev"]);
            assert_eq!(os_str(&env.auth_control_file), t["auth_control_file"]);
            assert_eq!(
                os_str(&env.auth_failed_reason_file),
                t["auth_failed_reason_file"]
            );
            assert_eq!(os_str(&env.auth_pending_file), t["auth_pending_file"]);
            assert_eq!(env.ip, w.ip);
            assert_eq!(env.port, w.port);
            for s in t.values().flatten() {
                assert!(s.len() <= MAX_ENV_VALUE && !s.chars().any(char::is_control));
            }
            if let Some(ip) = env.ip_string() {
                assert_eq!(
                    ip.parse::<IpAddr>().ok(),
                    env.ip,
                    "ip_string does not round-trip"
                );
            }
        }
        Err(e) => {
            assert!(want.is_none(), "rejected {vars:?}: {e}");
            assert!(matches!(e, Error::Input(_)), "wrong error kind {e:?}");
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
            for value in vars.values() {
                assert_not_leaked("environment error", &msg, value);
            }
        }
    }
}
