//! How many MQTT connections this process can really hold: every socket is an open file, and
//! the shell's default limit (often 1024) is far below the configured `max_connections`.
//!
//! The binary raises the soft `RLIMIT_NOFILE` to the hard limit before it starts the hub
//! ([`raise_open_file_limit`]); [`crate::start`] then caps the broker's connection limit at
//! what the limit leaves once the hub's other files are counted, so a connection beyond it is
//! accepted and closed at once instead of stalling the accept loop on `EMFILE`.

use std::fmt;

use crate::config::Config;

/// Open files the hub needs besides MQTT and admin connections: listeners, the registry file,
/// the runtime's epoll and event descriptors, stdio, TLS and token files, and some slack.
pub const RESERVED_FILES: u64 = 64;

/// Raises the soft open-file limit to the hard limit and returns the soft limit now in force.
///
/// # Errors
/// The system refused (the limit in force is then unchanged).
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft open-file limit in force, `None` where the platform has none to read.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection capacity of a hub: its configured limit, the open-file limit, and what the
/// two allow together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// MQTT connections (TCP and TLS together) the hub accepts at once.
    pub connections: usize,
    /// `broker.max_connections` as configured.
    pub configured: usize,
    /// The process's soft open-file limit, when known.
    pub open_files: Option<u64>,
}

impl Capacity {
    /// The capacity of `config` under an open-file limit of `open_files` (`None`: no limit
    /// known, the configured one holds). The admin API's connections and
    /// [`RESERVED_FILES`] are set aside first; at least one connection remains.
    pub fn of(config: &Config, open_files: Option<u64>) -> Capacity {
        let configured = config.broker.max_connections;
        let connections = match open_files {
            None => configured,
            Some(limit) => {
                let others = RESERVED_FILES.saturating_add(config.admin.max_connections as u64);
                let room = usize::try_from(limit.saturating_sub(others)).unwrap_or(usize::MAX);
                configured.min(room).max(1)
            }
        };
        Capacity {
            connections,
            configured,
            open_files,
        }
    }

    /// Whether the open-file limit, not the configuration, sets the capacity.
    pub fn limited_by_open_files(&self) -> bool {
        self.connections < self.configured
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MQTT connections", self.connections)?;
        match self.open_files {
            Some(limit) if self.limited_by_open_files() => write!(
                f,
                " (held down by the open-file limit {limit}; max_connections is {})",
                self.configured
            ),
            Some(limit) => write!(f, " (max_connections; open-file limit {limit})"),
            None => write!(f, " (max_connections)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: usize, admin: usize) -> Config {
        let mut c = Config::default();
        c.broker.max_connections = max;
        c.admin.max_connections = admin;
        c
    }

    #[test]
    fn the_open_file_limit_caps_the_configured_limit() {
        let c = Capacity::of(&config(50_000, 256), Some(1024));
        assert_eq!(c.connections, 1024 - 256 - RESERVED_FILES as usize);
        assert!(c.limited_by_open_files());
        assert!(c.to_string().contains("open-file limit 1024"), "{c}");
        assert!(c.to_string().contains("max_connections is 50000"), "{c}");
    }

    #[test]
    fn a_high_limit_leaves_the_configured_one() {
        let c = Capacity::of(&config(5_000, 256), Some(1_048_576));
        assert_eq!(c.connections, 5_000);
        assert!(!c.limited_by_open_files());
        assert_eq!(Capacity::of(&config(7, 256), None).connections, 7);
    }

    #[test]
    fn a_tiny_limit_still_leaves_one_connection() {
        assert_eq!(Capacity::of(&config(100, 256), Some(10)).connections, 1);
        assert_eq!(Capacity::of(&config(100, 256), Some(u64::MAX)).connections, 100);
    }
}
