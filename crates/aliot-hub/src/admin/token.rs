//! The admin API's bearer token: given in the configuration, or generated once into
//! `{data_dir}/admin-token` (mode 0600) and reused on later starts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq as _;

use crate::config::{TOKEN_FILE, create_private_dir, validate_token, write_private_file};
use crate::error::{Error, Result};
use crate::registry::random_alnum;

/// Length of a generated token (letters and digits: about 238 bits).
const GENERATED_LEN: usize = 40;

/// A bearer token. `Debug` never shows it; comparison is constant-time.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

impl AdminToken {
    /// Wraps a token.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty token or one with white space.
    pub fn new(token: &str) -> Result<Self> {
        validate_token(token)?;
        Ok(Self(Arc::from(token)))
    }

    /// The token, for writing it where the user asked (never into logs).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the token, in time independent of where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(candidate))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Where the token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// From the configuration (flag or file): not written anywhere by the hub.
    Configured,
    /// Read from, or generated into, this file.
    File(PathBuf),
}

/// The configured token, else the one in `{data_dir}/admin-token`, else a new one written
/// there. Blocking file IO.
///
/// # Errors
/// [`Error::Config`] for a token file that holds something unusable, [`Error::Io`] when the
/// file cannot be read or written.
pub fn load_or_create(data_dir: &Path, configured: Option<&str>) -> Result<(AdminToken, TokenSource)> {
    if let Some(t) = configured {
        return Ok((AdminToken::new(t)?, TokenSource::Configured));
    }
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = AdminToken::new(text.trim()).map_err(|e| match e {
                Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
                other => other,
            })?;
            Ok((token, TokenSource::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(data_dir)
                .map_err(|e| Error::io(format!("cannot create {}", data_dir.display()), e))?;
            let token = random_alnum(GENERATED_LEN);
            write_private_file(&path, format!("{token}\n").as_bytes())
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            tracing::info!(path = %path.display(), "generated the admin token");
            Ok((AdminToken::new(&token)?, TokenSource::File(path)))
        }
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_kept_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, src) = load_or_create(dir.path(), None).expect("generated");
        assert_eq!(src, TokenSource::File(dir.path().join(TOKEN_FILE)));
        let (b, _) = load_or_create(dir.path(), None).expect("reused");
        assert!(a.matches(b.expose().as_bytes()));
        assert_eq!(a.expose().len(), GENERATED_LEN);
        let (c, src) = load_or_create(dir.path(), Some("given-token")).expect("configured");
        assert_eq!(src, TokenSource::Configured);
        assert!(c.matches(b"given-token"));
        assert!(!c.matches(b"given-tokeN"));
        assert!(!c.matches(b"given"));
        assert!(!format!("{c:?}").contains("given"));
    }
}
