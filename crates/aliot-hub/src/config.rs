//! Hub settings: where the data lives, what to listen on, and the broker's limits.
//!
//! [`Config`] is plain data (serde, `Default`) checked by [`Config::validate`]; the CLI reads a
//! TOML file into it and then applies its flags. [`DEFAULT_CONFIG`] is the commented default
//! file that `aliot hub --print-config` prints; it parses back to `Config::default()`.
//!
//! # The data directory
//!
//! | file | what |
//! |---|---|
//! | `registry.redb` | products and devices ([`crate::store`]) |
//! | `admin-token` | the admin API's bearer token, when the hub generated it (mode 0600) |
//! | `admin.url` | the admin API's URL, written on every start for `aliot admin --data-dir` |
//! | `tls/ca.pem`, `tls/server.pem`, `tls/server-key.pem` | the local CA and server certificate ([`crate::tls`]) |

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::broker::BrokerConfig;
use crate::error::{Error, Result};

/// The commented default configuration file.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// File of the generated admin token inside the data directory.
pub const TOKEN_FILE: &str = "admin-token";

/// File holding the admin API's URL inside the data directory.
pub const URL_FILE: &str = "admin.url";

/// Default plain MQTT address.
pub const DEFAULT_MQTT: &str = "127.0.0.1:1883";
/// Default MQTT over TLS address (when enabled).
pub const DEFAULT_MQTTS: &str = "127.0.0.1:8883";
/// Default admin API address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8080";

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .expect("the default addresses are valid socket addresses")
}

/// All hub settings.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory; `None` → [`default_data_dir`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Plain MQTT listener.
    pub mqtt: MqttConfig,
    /// MQTT over TLS listener; off when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtts: Option<MqttsConfig>,
    /// Admin API listener and token.
    pub admin: AdminConfig,
    /// Broker limits and behaviours.
    pub broker: BrokerConfig,
}

/// Plain MQTT listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_MQTT),
        }
    }
}

/// MQTT over TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttsConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM); with `key`. Neither → a local CA in the data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Server private key (PEM); with `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl Default for MqttsConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_MQTTS),
            cert: None,
            key: None,
        }
    }
}

/// Admin API.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token; `None` → generated once into `{data_dir}/admin-token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: addr(DEFAULT_ADMIN),
            token: None,
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("mqtt", &self.mqtt)
            .field("mqtts", &self.mqtts)
            .field("admin", &self.admin)
            .field("broker", &self.broker)
            .finish()
    }
}

fn config_err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

impl Config {
    /// Parses a TOML configuration (missing keys take their defaults, unknown keys are errors)
    /// and validates it.
    ///
    /// # Errors
    /// [`Error::Config`] with TOML's own message (it names the key and the line).
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| config_err(one_line(text, &e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML configuration file.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_err(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| match e {
            Error::Config(msg) => config_err(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// The data directory: the configured one, else [`default_data_dir`].
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    /// Checks what serde cannot: paths, pairs of settings, address clashes, the token's shape.
    ///
    /// # Errors
    /// [`Error::Config`] saying which setting is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.data_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(config_err("data_dir is empty"));
        }
        if let Some(token) = &self.admin.token {
            validate_token(token)?;
        }
        let mut addrs = vec![
            ("mqtt.listen", self.mqtt.listen),
            ("admin.listen", self.admin.listen),
        ];
        if let Some(tls) = &self.mqtts {
            match (&tls.cert, &tls.key) {
                (Some(_), None) => return Err(config_err("mqtts.cert is set but mqtts.key is not")),
                (None, Some(_)) => return Err(config_err("mqtts.key is set but mqtts.cert is not")),
                _ => {}
            }
            addrs.push(("mqtts.listen", tls.listen));
        }
        for (i, (name_a, a)) in addrs.iter().enumerate() {
            for (name_b, b) in &addrs[i + 1..] {
                if a.port() != 0 && a == b {
                    return Err(config_err(format!("{name_a} and {name_b} are both {a}")));
                }
            }
        }
        self.broker.validate().map_err(|e| match e {
            Error::InvalidArgument(msg) | Error::Config(msg) => config_err(format!("[broker] {msg}")),
            other => other,
        })
    }

    /// The configuration as TOML (the token, if any, included: this is for writing files).
    ///
    /// # Errors
    /// [`Error::Config`] if a value cannot be written as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| config_err(e.to_string()))
    }
}

/// A TOML error on one line: `line 3, column 1: unknown field ...`.
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Checks an admin token: 1 to 256 printable characters without white space.
///
/// # Errors
/// [`Error::Config`] saying what is wrong (never echoing the token).
pub fn validate_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(config_err("the admin token is empty"));
    }
    if token.len() > 256 {
        return Err(config_err("the admin token is longer than 256 bytes"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(config_err(
            "the admin token contains white space or control characters",
        ));
    }
    Ok(())
}

/// The default data directory: `$XDG_DATA_HOME/aliot/hub`, else `$HOME/.local/share/aliot/hub`,
/// else `./aliot-data`.
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

/// Writes a file only its owner can read (mode 0600 on unix), atomically: a temporary file in
/// the same directory, synced, then renamed over `path`.
///
/// # Errors
/// The IO error.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_back_to_the_defaults() {
        let parsed = Config::parse(DEFAULT_CONFIG).expect("the embedded default config parses");
        let a = toml::Value::try_from(&parsed).expect("serializable");
        let b = toml::Value::try_from(Config::default()).expect("serializable");
        assert_eq!(a, b);
        Config::default().validate().expect("the defaults are valid");
    }

    #[test]
    fn every_default_setting_is_in_the_default_file() {
        // Each key of the serialized defaults appears (commented or not) in the file, so the
        // printed config documents every setting.
        let defaults = toml::Value::try_from(Config::default()).expect("serializable");
        let toml::Value::Table(sections) = defaults else {
            panic!("a table")
        };
        for (section, value) in sections {
            assert!(
                DEFAULT_CONFIG.contains(&format!("[{section}]")),
                "section [{section}] missing"
            );
            if let toml::Value::Table(keys) = value {
                for key in keys.keys() {
                    assert!(
                        DEFAULT_CONFIG.contains(&format!("{key} =")),
                        "{section}.{key} missing"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::parse("[mqtt]\nlisten = \"127.0.0.1:1\"\nlsten = 1\n").unwrap_err();
        assert!(err.to_string().contains("lsten"), "{err}");
        let err = Config::parse("colour = \"blue\"\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        // One line, with the position.
        let err = Config::parse("[mqtt]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(!err.to_string().contains('\n'), "{err}");
        assert!(err.to_string().contains("line 2, column 10"), "{err}");
    }

    #[test]
    fn settings_that_need_each_other_are_checked() {
        let err = Config::parse("[mqtts]\ncert = \"c.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("mqtts.key"), "{err}");
        let err =
            Config::parse("[mqtt]\nlisten = \"127.0.0.1:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        assert!(
            Config::parse("[mqtt]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n").is_ok()
        );
        let err = Config::parse("[admin]\ntoken = \"a b\"\n").unwrap_err();
        assert!(err.to_string().contains("white space"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let mut c = Config::default();
        c.admin.token = Some("hunter2-token".into());
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn private_files_are_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("secret");
        write_private_file(&p, b"x").expect("written");
        write_private_file(&p, b"y").expect("overwritten");
        assert_eq!(std::fs::read(&p).expect("readable"), b"y");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
