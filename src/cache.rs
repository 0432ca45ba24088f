//! The reconnect cache: a SQLite file recording Duo approvals so that reconnects and TLS
//! renegotiations inside `ttl` skip Duo. Shared by many OpenVPN instances and concurrent script
//! runs: WAL mode, a busy timeout, one short write per hit. Any trouble with the file is
//! reported to the caller, who logs it and asks Duo as if there were no cache: the cache can only
//! ever turn a would-be Duo call into an allow for a key Duo approved before.

use crate::config::CacheConfig;
use crate::openvpn::Env;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sha2::Digest;
use std::fs::{DirBuilder, OpenOptions};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Schema version this release writes and understands (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A hit moves the end of the window only when it gains at least this many seconds.
const SLIDE_GRANULARITY: i64 = 60;
/// Expired rows are kept this long for `cache list`, then pruned on a later store.
const PRUNE_GRACE: i64 = 86_400;

pub struct Cache {
    conn: Connection,
    ttl: i64,
    max_age: i64,
    /// Set when an operation failed: one busy timeout per login is enough delay, so a cache
    /// that failed once is not written again in this run.
    failed: std::cell::Cell<bool>,
}

/// The identity an approval is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub user: String,
    pub common_name: String,
    pub ip: String,
    pub instance: String,
    /// Hash over every part, including the optional ones the admin enabled.
    pub digest: String,
}

impl Key {
    pub fn new(cfg: &CacheConfig, user: &str, env: &Env) -> Key {
        let ip = env
            .ip
            .map(|ip| mask(ip, cfg.ipv6_prefix))
            .unwrap_or_default();
        let instance = cfg.instance.clone().unwrap_or_else(|| {
            format!(
                "{}|{}",
                env.config.as_deref().unwrap_or(""),
                env.dev.as_deref().unwrap_or("")
            )
        });
        let common_name = env.common_name.clone().unwrap_or_default();
        let mut parts: Vec<(&str, &str)> = vec![
            ("user", user),
            ("cn", &common_name),
            ("ip", &ip),
            ("instance", &instance),
        ];
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let (hw, plat, uv) = (opt(&env.iv_hwaddr), opt(&env.iv_plat), opt(&env.uv_id));
        if cfg.match_hwaddr {
            parts.push(("hwaddr", &hw));
        }
        if cfg.match_platform {
            parts.push(("platform", &plat));
        }
        if cfg.match_uv_id {
            parts.push(("uv_id", &uv));
        }
        let mut h = sha2::Sha256::new();
        for (name, value) in &parts {
            // Length-prefixed so no two different part lists hash the same input.
            for s in [name, value] {
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
        Key {
            user: user.to_owned(),
            common_name,
            ip,
            instance,
            digest: crate::codec::hex(&h.finalize()),
        }
    }
}

/// The address as keyed: IPv6 cut to the configured prefix, IPv4 whole.
fn mask(ip: IpAddr, v6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6_prefix >= 128 => v6.to_string(),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX << (128 - u32::from(v6_prefix.max(1)));
            format!("{}/{v6_prefix}", std::net::Ipv6Addr::from(bits & keep))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    pub common_name: String,
    pub ip: String,
    pub approved_at: i64,
    pub last_used: i64,
    pub expires: i64,
}

impl Cache {
    /// Opens (creating if needed) the cache file. A corrupt file is moved aside and replaced.
    /// Returns the cache if usable, and a one-line note for the log when something was wrong.
    pub fn open(cfg: &CacheConfig) -> (Option<Cache>, Option<String>) {
        match Cache::open_once(cfg) {
            Ok(c) => (Some(c), None),
            Err(OpenError::Corrupt(why)) => match move_aside(&cfg.path) {
                Ok(aside) => {
                    let note = format!(
                        "cache {} was corrupt ({why}); moved it to {} and started a new one",
                        cfg.path.display(),
                        aside.display()
                    );
                    match Cache::open_once(cfg) {
                        Ok(c) => (Some(c), Some(note)),
                        Err(e) => (None, Some(format!("{note}; reopening failed: {e}"))),
                    }
                }
                Err(e) => (None, Some(e)),
            },
            Err(e) => (None, Some(e.to_string())),
        }
    }

    fn open_once(cfg: &CacheConfig) -> Result<Cache, OpenError> {
        let path = &cfg.path;
        let created = prepare_file(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| classify(path, e))?;
        // In WAL mode NORMAL skips the fsync on every commit (it syncs at checkpoints): a power
        // cut can lose the latest approvals, which only means asking Duo again. A full fsync per
        // hit was most of the cache-hit time.
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(|e| classify(path, e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| classify(path, e))?;
        if version > SCHEMA_VERSION {
            return Err(OpenError::Other(format!(
                "cache {} has schema version {version}, newer than this release understands ({SCHEMA_VERSION}); not using it",
                path.display()
            )));
        }
        if version < SCHEMA_VERSION {
            create_schema(&conn).map_err(|e| classify(path, e))?;
        }
        if created {
            hand_to_directory_owner(path);
        }
        Ok(Cache {
            conn,
            ttl: cfg.ttl as i64,
            max_age: cfg.max_age as i64,
            failed: std::cell::Cell::new(false),
        })
    }

    /// A valid approval for `key` at `now`? On a hit the sliding window moves forward.
    pub fn hit(&self, key: &Key, now: i64) -> Result<bool, String> {
        let row: Option<(i64, i64, i64)> = self
            .conn
            .query_row(
                "SELECT approved_at, last_used, expires FROM approvals WHERE key = ?1",
                [&key.digest],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.fail(format!("cache lookup failed: {e}")))?;
        let Some((approved_at, last_used, expires)) = row else {
            return Ok(false);
        };
        // `expires` was computed with the ttl of its day: an admin who lowers ttl (or sets
        // max_age) expects the shorter window for approvals already stored, too.
        let end = expires.min(last_used + self.ttl);
        if now >= end || (self.max_age > 0 && now >= approved_at + self.max_age) {
            return Ok(false);
        }
        // Slide the window, but skip the write when it would move less than a minute: a storm
        // of reconnects then reads without queueing for the write lock.
        let new_expiry = self.expiry(approved_at, now);
        if new_expiry - expires < SLIDE_GRANULARITY {
            return Ok(true);
        }
        self.conn
            .execute(
                "UPDATE approvals SET last_used = ?2, expires = ?3 WHERE key = ?1",
                params![key.digest, now, new_expiry],
            )
            .map_err(|e| self.fail(format!("cache update failed: {e}")))?;
        Ok(true)
    }

    /// Waits for another process's lock at most `limit` (and never longer than the usual busy
    /// timeout) from now on.
    pub fn wait_at_most(&self, limit: Duration) {
        let _ = self.conn.busy_timeout(limit.min(BUSY_TIMEOUT));
    }

    /// Records a fresh Duo approval and prunes long-expired rows (off the hit path).
    pub fn store(&self, key: &Key, now: i64) -> Result<(), String> {
        if self.failed.get() {
            return Ok(());
        }
        self.conn
            .execute(
                "INSERT OR REPLACE INTO approvals
                   (key, username, common_name, ip, instance, approved_at, last_used, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
                params![
                    key.digest,
                    key.user,
                    key.common_name,
                    key.ip,
                    key.instance,
                    now,
                    self.expiry(now, now)
                ],
            )
            .map_err(|e| format!("cache store failed: {e}"))?;
        self.conn
            .execute(
                "DELETE FROM approvals WHERE expires < ?1",
                [now - PRUNE_GRACE],
            )
            .map_err(|e| format!("cache prune failed: {e}"))?;
        Ok(())
    }

    fn fail(&self, msg: String) -> String {
        self.failed.set(true);
        msg
    }

    fn expiry(&self, approved_at: i64, now: i64) -> i64 {
        let sliding = now + self.ttl;
        if self.max_age > 0 {
            sliding.min(approved_at + self.max_age)
        } else {
            sliding
        }
    }

    pub fn list(&self) -> Result<Vec<Entry>, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT username, common_name, ip, approved_at, last_used, expires
                 FROM approvals ORDER BY username, last_used",
            )
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Entry {
                    user: r.get(0)?,
                    common_name: r.get(1)?,
                    ip: r.get(2)?,
                    approved_at: r.get(3)?,
                    last_used: r.get(4)?,
                    expires: r.get(5)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    /// Ignores ASCII case: the client chose the spelling (`Alice`, `alice`), Duo may treat them
    /// as one user, and forgetting one row too many only means one more Duo prompt.
    pub fn forget(&self, user: &str) -> Result<usize, String> {
        self.conn
            .execute(
                "DELETE FROM approvals WHERE username = ?1 COLLATE NOCASE",
                [user],
            )
            .map_err(|e| e.to_string())
    }

    pub fn purge(&self, expired_only: bool, now: i64) -> Result<usize, String> {
        let n = if expired_only {
            self.conn
                .execute("DELETE FROM approvals WHERE expires <= ?1", [now])
        } else {
            self.conn.execute("DELETE FROM approvals", [])
        };
        n.map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
enum OpenError {
    Corrupt(String),
    Other(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Corrupt(m) | OpenError::Other(m) => f.write_str(m),
        }
    }
}

fn classify(path: &Path, e: rusqlite::Error) -> OpenError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            OpenError::Corrupt(e.to_string())
        }
        _ => OpenError::Other(format!("cache {}: {e}", path.display())),
    }
}

fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets concurrent script runs read while one writes; the setting lives in the file.
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS approvals (
             key         TEXT PRIMARY KEY,
             username    TEXT NOT NULL,
             common_name TEXT NOT NULL,
             ip          TEXT NOT NULL,
             instance    TEXT NOT NULL,
             approved_at INTEGER NOT NULL,
             last_used   INTEGER NOT NULL,
             expires     INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS approvals_username ON approvals(username);
         CREATE INDEX IF NOT EXISTS approvals_expires ON approvals(expires);
         PRAGMA user_version = 1;
         COMMIT;",
    )
}

/// Creates the directory (0700) and an empty file (0600) if missing, so SQLite never creates
/// the file with its default world-readable mode. Returns whether the file was created.
fn prepare_file(path: &Path) -> Result<bool, OpenError> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    OpenError::Other(format!(
                        "cannot create cache directory {}: {}",
                        dir.display(),
                        crate::io_reason(&e)
                    ))
                })?;
        }
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(OpenError::Other(format!(
            "cannot create cache {}: {}",
            path.display(),
            crate::io_reason(&e)
        ))),
    }
}

/// When root (e.g. `openvpn-auth-duo test`) creates the cache inside a directory owned by the
/// unprivileged OpenVPN user, the files go to that user so OpenVPN can still write them.
fn hand_to_directory_owner(path: &Path) {
    let (Some(dir), Ok(file_meta)) = (path.parent(), std::fs::metadata(path)) else {
        return;
    };
    let Ok(dir_meta) = std::fs::metadata(dir) else {
        return;
    };
    if file_meta.uid() != 0 || dir_meta.uid() == 0 {
        return;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::os::unix::fs::chown(&p, Some(dir_meta.uid()), Some(dir_meta.gid()));
    }
}

/// Moves a corrupt cache (and its WAL files) aside instead of deleting it.
fn move_aside(path: &Path) -> Result<PathBuf, String> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{}", crate::unix_now()));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|e| {
        format!(
            "cache {} is corrupt and could not be moved aside: {}",
            path.display(),
            crate::io_reason(&e)
        )
    })?;
    for suffix in ["-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = aside.as_os_str().to_owned();
        to.push(suffix);
        let _ = std::fs::rename(&from, &to);
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn ipv6_prefix_masks_the_interface_part() {
        let a = mask("2001:db8:1:2:aaaa::1".parse().unwrap(), 64);
        let b = mask("2001:db8:1:2:bbbb::9".parse().unwrap(), 64);
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_ne!(
            mask("2001:db8:1:3::1".parse().unwrap(), 64),
            a,
            "another /64 differs"
        );
        assert_eq!(mask("203.0.113.7".parse().unwrap(), 64), "203.0.113.7");
    }
}
