//! `aliot verify`: the credential doctor. Says whether hand-built CONNECT fields would be
//! accepted and, when not, names the most likely mistake. The logic lives in
//! [`aliot_protocol::diagnose`]; this is the command line around it.

use std::path::PathBuf;
use std::process::ExitCode;

use aliot_protocol::diagnose::{ConnectAttempt, Diagnosis, Mistake, diagnose_device};
use anyhow::Context;
use serde::Serialize;

use super::usage;
use crate::args::load_profile;
use crate::output;

/// Arguments of `aliot verify`.
#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 when the fields would be accepted, 1 when not, 2 on bad usage.\n\n\
                  Example:\n  aliot verify --client-id 'SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|' \\\n    \
                  --username 'light1983432&a14Xib5kdYd' --password b2488041f64f425016b467ee1c94959ebd592ad1 \\\n    \
                  --device-secret oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq"
)]
pub(crate) struct Args {
    /// The MQTT clientId, e.g. `SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|`.
    #[arg(long, value_name = "CID")]
    client_id: String,
    /// The MQTT username, `deviceName&productKey`.
    #[arg(long, value_name = "U")]
    username: String,
    /// The MQTT password (hex).
    #[arg(long, value_name = "P")]
    password: String,
    /// The device secret (for `authType=register|regnwl`: the productSecret). Wins over the profile's.
    #[arg(long, value_name = "DS")]
    device_secret: Option<String>,
    /// TOML device profile: its device_secret, and its product_key and device_name to check the
    /// username against.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "device_secret",
                &self.device_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("profile", &self.profile)
            .field("format", &self.format)
            .finish()
    }
}

/// How `aliot verify` prints its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// `valid: …` / `invalid: …`, then the hint and the expected password.
    Text,
    /// `{"valid": bool, "reason": "...", "hint": "...", "expected_password": "..."}`.
    Json,
}

/// The JSON verdict.
#[derive(Debug, Serialize)]
struct Output<'a> {
    valid: bool,
    reason: &'a str,
    hint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_password: Option<&'a str>,
}

/// Runs `aliot verify`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profile = args.profile.as_deref().map(load_profile).transpose()?;
    let secret = args
        .device_secret
        .as_deref()
        .or_else(|| profile.as_ref().and_then(|p| p.device_secret.as_deref()));
    if secret.is_some_and(|s| s.trim().is_empty()) {
        return Err(usage("the device secret is empty"));
    }
    let device = profile
        .as_ref()
        .and_then(|p| p.product_key.as_deref().zip(p.device_name.as_deref()));
    let attempt = ConnectAttempt {
        client_id: &args.client_id,
        username: &args.username,
        password: &args.password,
    };
    let d = diagnose_device(&attempt, secret, device);
    if d.mistake == Some(Mistake::SecretMissing) {
        return Err(usage(format!(
            "no device secret: pass --device-secret or a --profile with device_secret ({})",
            d.reason
        )));
    }
    let text = match args.format {
        Format::Text => render_text(&d),
        Format::Json => {
            let out = Output {
                valid: d.valid,
                reason: &d.reason,
                hint: &d.hint,
                expected_password: d.expected_password.as_deref(),
            };
            let mut s = serde_json::to_string_pretty(&out).context("cannot encode JSON")?;
            s.push('\n');
            s
        }
    };
    output::write(&text)?;
    Ok(if d.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn render_text(d: &Diagnosis) -> String {
    let mut s = String::new();
    if d.valid {
        s.push_str(&format!("{}\n", d.reason));
    } else {
        s.push_str(&format!("invalid: {}\n", d.reason));
    }
    if !d.hint.is_empty() {
        s.push_str(&format!("hint: {}\n", d.hint));
    }
    if !d.valid {
        if let Some(c) = &d.expected_sign_content {
            s.push_str(&format!("expected sign content: {c}\n"));
        }
        if let Some(p) = &d.expected_password {
            s.push_str(&format!("expected password: {p}\n"));
        }
    }
    s
}
