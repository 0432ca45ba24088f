//! Command-line interface. OpenVPN calls the binary with an optional `--config` and the
//! credential file; people use the subcommands. A CREDFILE literally named like a subcommand must
//! be given as `./check` (OpenVPN always passes an absolute temp-file path).

use crate::config::DEFAULT_PATH;
use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

pub const AFTER_HELP: &str = "\
Password field (what the VPN user types as password):
  SCRV1:<b64>:<b64>   OpenVPN static challenge: the response part is the factor text
  anything,FACTOR     the text after the last comma is the factor text
  FACTOR              otherwise the whole field is the factor text
Factor text:
  123456              digits: a Duo passcode (hardware token, Duo Mobile, SMS or bypass code)
  push, push2         Duo Push to the first (or Nth) push-capable device
  phone, phone2       phone callback to the first (or Nth) phone-capable device
  sms, sms2           send SMS passcodes (the login is denied; log in again with one)
  anything else       the configured mode (push, phone, passcode or push_phone)

Exit codes: 0 allow, 1 deny (every error included), 2 deferred (OpenVPN 2.6+ only).";

#[derive(Debug, Parser)]
#[command(
    name = "openvpn-auth-duo",
    version,
    about = "Duo two-factor authentication for OpenVPN (auth-user-pass-verify script)",
    long_about = "Duo two-factor authentication for OpenVPN.\n\nIn server.conf: \
auth-user-pass-verify \"/usr/sbin/openvpn-auth-duo --config /etc/openvpn/auth-duo.toml\" via-file\n\
OpenVPN appends CREDFILE. Without CREDFILE the credentials come from the environment \
variables username and password (via-env).",
    after_help = AFTER_HELP,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// Configuration file
    #[arg(long, short = 'c', global = true, value_name = "PATH", default_value = DEFAULT_PATH)]
    pub config: PathBuf,

    /// Credential file written by OpenVPN (via-file): username and password lines
    #[arg(value_name = "CREDFILE")]
    pub credfile: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and ask Duo (/auth/v2/check) whether the keys work; one line, OK or what is wrong
    Check,
    /// Run the same decision OpenVPN would, showing progress while waiting
    Test {
        /// Username as the VPN client would send it
        username: String,
        /// Password field as the VPN client would send it (default: empty, i.e. the configured
        /// mode); `-` reads it from the first line of standard input, keeping a passcode out of
        /// the process list and shell history
        #[arg(value_name = "PASSWORD-FIELD", default_value = "")]
        password_field: String,
        /// Client IP address reported to Duo
        #[arg(long, value_name = "ADDR")]
        ip: Option<IpAddr>,
        /// Certificate common name of the client
        #[arg(long, value_name = "CN")]
        common_name: Option<String>,
    },
    /// Internal: the detached process that finishes a deferred login (started by this program)
    #[command(hide = true)]
    Background,
    /// Inspect or clear the reconnect cache
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// List cached approvals (tab-separated, one header line)
    List,
    /// Drop every cached approval of one Duo user (e.g. a lost laptop)
    Forget {
        /// Duo username as shown by `cache list`
        user: String,
    },
    /// Drop every cached approval
    Purge {
        /// Only drop approvals whose window has ended
        #[arg(long)]
        expired: bool,
    },
}

/// Parses arguments. Clap's own exit code for usage errors is 2, which OpenVPN 2.6 reads as
/// "deferred"; usage errors therefore exit 1 (deny) here.
pub fn parse() -> Result<Cli, i32> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => {
            let code = if e.use_stderr() { crate::EXIT_DENY } else { 0 };
            let _ = e.print();
            Err(code)
        }
    }
}
