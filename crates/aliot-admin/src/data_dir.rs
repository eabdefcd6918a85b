//! Where a local hub tells its clients how to reach it: two files in its data directory.
//!
//! `aliot hub` writes [`URL_FILE`] on every start and generates [`TOKEN_FILE`] on its first
//! start, in its data directory ([`default_data_dir`] unless told otherwise). These functions
//! read them (blocking file reads; call them before or outside the async work). The hub uses
//! the same constants and default, so the two sides cannot disagree.

use std::path::{Path, PathBuf};

/// File holding the admin API's base URL inside the hub's data directory.
pub const URL_FILE: &str = "admin.url";

/// File holding the admin API's bearer token inside the hub's data directory.
pub const TOKEN_FILE: &str = "admin-token";

/// The default data directory of a hub: `$XDG_DATA_HOME/aliot/hub`, else
/// `$HOME/.local/share/aliot/hub`, else `./aliot-data`.
pub fn default_data_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    // XDG says relative values are invalid and must be ignored.
    if let Some(xdg) = env("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return xdg.join("aliot").join("hub");
    }
    if let Some(home) = env("HOME") {
        return home.join(".local").join("share").join("aliot").join("hub");
    }
    PathBuf::from("aliot-data")
}

/// The admin API's base URL written in `dir`, trimmed, or `None` when the file is missing or
/// empty.
pub fn url(dir: &Path) -> Option<String> {
    read_trimmed(&dir.join(URL_FILE))
}

/// The admin token written in `dir`, trimmed, or `None` when the file is missing or empty.
pub fn token(dir: &Path) -> Option<String> {
    read_trimmed(&dir.join(TOKEN_FILE))
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_read_trimmed_and_empty_ones_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!((url(dir.path()), token(dir.path())), (None, None));
        std::fs::write(dir.path().join(URL_FILE), "http://127.0.0.1:9/\n").expect("write");
        std::fs::write(dir.path().join(TOKEN_FILE), " \n").expect("write");
        assert_eq!(url(dir.path()).as_deref(), Some("http://127.0.0.1:9/"));
        assert_eq!(token(dir.path()), None);
    }
}
