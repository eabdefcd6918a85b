//! Where a local hub tells its clients how to reach it: two files in its data directory.
//!
//! `aliot hub` writes [`URL_FILE`] on every start and generates [`TOKEN_FILE`] on its first
//! start. These functions read them (blocking file reads; call them before or outside the async
//! work). Which directory is the default one is the hub's business
//! (`aliot_hub::config::default_data_dir`).

use std::path::Path;

/// File holding the admin API's base URL inside the hub's data directory.
pub const URL_FILE: &str = "admin.url";

/// File holding the admin API's bearer token inside the hub's data directory.
pub const TOKEN_FILE: &str = "admin-token";

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
