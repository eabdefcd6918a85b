//! `aliot device register`: dynamic registration with the productSecret, over MQTT
//! ([`aliot_device::register::register_mqtt`]) or HTTPS
//! ([`aliot_device::register::register_https`]); the answer as JSON on stdout, and with `--save`
//! a device profile (mode 0600) that `aliot device run --profile` logs in with.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aliot_device::register::{Mode, RegisterOptions, register_https, register_mqtt};
use aliot_device::{Error as DeviceError, Registration};
use aliot_protocol::{DeviceProfile, Endpoint};
use anyhow::{Context as _, anyhow};

use crate::args::{EndpointArgs, Redacted, load_profile, parse_duration, parse_redacted};
use crate::cmd::usage;
use crate::output;

pub(super) const HELP: &str = "\
The platform answers once: keep what is printed (or --save it). A device registered beforehand
gets a new deviceSecret (only the last one is valid, until the device first logs in); with
--no-preregister the platform creates the device and answers a clientId and a deviceToken, which
`aliot device run` sends as they are (--auth token, automatic with a saved profile).
The product must allow dynamic registration (`aliot admin product update --product-key PK
--dynamic-registration on` on the hub). The real platform requires TLS (--tls).
--via https posts /auth/register/device to --register-url (default: the platform's
https://iot-auth.{region}.aliyuncs.com, cn-shanghai unless --region says otherwise; the hub's
`--device-http ADDR` listener, e.g. http://127.0.0.1:8081, or https://localhost:8443 with
--ca-file); it serves devices created beforehand only. The saved profile keeps the MQTT endpoint
(--host/--port or --region).

Example:
  aliot device register --product-key a1B2c3D4e5F --product-secret \"$PS\" --device-name lamp-7 \\
    --no-preregister --save lamp-7.toml
  aliot device run --profile lamp-7.toml
  aliot device register --via https --register-url http://127.0.0.1:8081 --product-key a1B2c3D4e5F \
    --product-secret \"$PS\" --device-name lamp-8 --save lamp-8.toml";

/// How the registration travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Via {
    /// MQTT: authType=register|regnwl, the answer on /ext/register or /ext/regnwl.
    Mqtt,
    /// HTTPS: POST /auth/register/device (devices created beforehand only).
    Https,
}

/// Arguments of `aliot device register`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("host", |a| a.help("MQTT host (e.g. the local hub) [default: the profile's, else 127.0.0.1].")))]
pub(super) struct RegisterArgs {
    /// productKey of the product.
    #[arg(long, value_name = "PK", env = "ALIOT_PRODUCT_KEY")]
    product_key: Option<String>,
    /// productSecret of the product (the key of the registration's signature).
    #[arg(long, value_name = "PS", env = "ALIOT_PRODUCT_SECRET", hide_env_values = true, value_parser = parse_redacted)]
    product_secret: Option<Redacted>,
    /// deviceName to register.
    #[arg(long, value_name = "DN", env = "ALIOT_DEVICE_NAME")]
    device_name: Option<String>,
    /// TOML profile to take product_key, product_secret, device_name and the endpoint from;
    /// flags and environment variables win over it.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// The device was not registered beforehand (authType=regnwl): the platform creates it and
    /// answers a clientId and a deviceToken instead of a deviceSecret.
    #[arg(long)]
    no_preregister: bool,
    /// Transport of the registration.
    #[arg(long, value_enum, default_value_t = Via::Mqtt)]
    via: Via,
    /// Base URL of the auth service for --via https (e.g. http://127.0.0.1:8081 for `aliot hub
    /// --device-http 127.0.0.1:8081`) [default: https://iot-auth.{region}.aliyuncs.com].
    #[arg(long, value_name = "URL")]
    register_url: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Connect over TLS (securemode=2), trusting the built-in Alibaba Cloud IoT root CAs unless
    /// --ca-file is given.
    #[arg(long)]
    tls: bool,
    /// CA certificate(s) to trust (PEM), e.g. the hub's `tls/ca.pem`; implies --tls.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// TLS server name (SNI) when it differs from the host.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// How long to wait for the platform's answer, connection included (e.g. 10s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Write a device profile (mode 0600) with the endpoint and the credentials obtained, for
    /// `aliot device run --profile FILE` (the productSecret is not written).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Overwrite the --save file if it exists.
    #[arg(long, requires = "save")]
    force: bool,
}

/// A field from its flag (or environment variable), else the profile's.
fn pick(
    flag: Option<String>,
    profile: Option<String>,
    what: &str,
    flag_name: &str,
    env: &str,
) -> anyhow::Result<String> {
    flag.or(profile).ok_or_else(|| {
        usage(format!(
            "missing the {what}: pass --{flag_name}, set {env} or put {} in --profile",
            flag_name.replace('-', "_")
        ))
    })
}

/// A refused or failed registration as the user should read it.
fn register_error(e: DeviceError) -> anyhow::Error {
    match e {
        DeviceError::RegistrationRefused { code } => anyhow!(
            "registration refused: CONNACK {code}\n  cause: {}\n  fix: {}",
            code.registration_cause(),
            code.registration_hint()
        ),
        DeviceError::RegistrationRejected { code, message } => anyhow!(
            "registration refused: code {code}: {message}\n  fix: {}",
            code.hint()
        ),
        DeviceError::Options(_) | DeviceError::Protocol(_) => usage(e.to_string()),
        other => anyhow!(other),
    }
}

/// Runs `aliot device register`.
pub(super) async fn run(a: RegisterArgs) -> anyhow::Result<ExitCode> {
    if a.via == Via::Mqtt && a.register_url.is_some() {
        return Err(usage("--register-url is for --via https"));
    }
    let p = a
        .profile
        .as_deref()
        .map(load_profile)
        .transpose()?
        .unwrap_or_default();
    let product_key = pick(
        a.product_key,
        p.product_key.clone(),
        "productKey",
        "product-key",
        "ALIOT_PRODUCT_KEY",
    )?;
    let product_secret = pick(
        a.product_secret.map(|s| s.0),
        p.product_secret.clone(),
        "productSecret",
        "product-secret",
        "ALIOT_PRODUCT_SECRET",
    )?;
    let device_name = pick(
        a.device_name,
        p.device_name.clone(),
        "deviceName",
        "device-name",
        "ALIOT_DEVICE_NAME",
    )?;
    let tls = a.tls || a.ca_file.is_some() || p.tls.unwrap_or(false);
    let local = || Endpoint::custom("127.0.0.1", None, tls);
    let endpoint = a.endpoint.resolve(&product_key, Some(&p), tls, local)?;
    if let Some(path) = &a.save
        && !a.force
        && path.exists()
    {
        return Err(usage(format!(
            "{} exists: pass --force to overwrite it (a registration replaces the credentials it may hold)",
            path.display()
        )));
    }
    let ca_file = a.ca_file.or_else(|| p.ca_file.as_ref().map(PathBuf::from));

    let mode = if a.no_preregister {
        Mode::NoPreRegistration
    } else {
        Mode::PreRegistered
    };
    let mut options = RegisterOptions::new(endpoint.clone(), product_key, product_secret, device_name, mode)
        .timeout(a.timeout);
    if let Some(ca) = &ca_file {
        options = options.ca_file(ca.clone());
    }
    if let Some(name) = a.server_name {
        options = options.server_name(name);
    }
    if let Some(url) = a.register_url {
        options = options.register_url(url);
    }
    let registration = match a.via {
        Via::Mqtt => register_mqtt(&options).await,
        Via::Https => register_https(&options).await,
    }
    .map_err(register_error)?;

    // Printed first: if the profile cannot be written, what the platform answered once is not lost.
    let json = String::from_utf8(registration.to_json()).context("the answer is not UTF-8")?;
    output::line(&json)?;
    if let Some(path) = &a.save {
        let profile = saved_profile(&registration, &endpoint, ca_file.as_deref())?;
        write_private(path, &profile.to_toml()?)
            .with_context(|| format!("registered, but cannot write the profile {}", path.display()))?;
        output::note(&format!("saved the device profile {}", path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The profile `--save` writes: the device, its credentials, and where it registered.
fn saved_profile(
    registration: &Registration,
    endpoint: &Endpoint,
    ca_file: Option<&Path>,
) -> anyhow::Result<DeviceProfile> {
    let mut profile = DeviceProfile {
        product_key: Some(registration.product_key().to_owned()),
        device_name: Some(registration.device_name().to_owned()),
        host: Some(endpoint.host.clone()),
        port: Some(endpoint.port),
        tls: Some(endpoint.tls),
        ..DeviceProfile::default()
    };
    if let Some(ca) = ca_file {
        let ca = std::path::absolute(ca).with_context(|| format!("the CA file {}", ca.display()))?;
        profile.ca_file = Some(ca.display().to_string());
    }
    match registration {
        Registration::Secret(r) => profile.device_secret = Some(r.device_secret.clone()),
        Registration::Token(r) => {
            profile.client_id = Some(r.client_id.clone());
            profile.device_token = Some(r.device_token.clone());
        }
        other => return Err(anyhow!("cannot save this registration: {other:?}")),
    }
    Ok(profile)
}

/// Writes `text` to `path`, readable and writable by the owner only (0600 on Unix, an existing
/// file's mode included).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aliot_device::register::{Registered, RegisteredWithToken};
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: RegisterArgs,
    }

    #[test]
    fn debug_never_shows_the_product_secret() {
        let cli =
            Cli::try_parse_from(["x", "--product-secret", "ps-s3cret", "--via", "https"]).expect("parses");
        assert_eq!(cli.args.via, Via::Https);
        assert!(!format!("{cli:?}").contains("ps-s3cret"));
    }

    #[test]
    fn saved_profiles_hold_what_the_device_logs_in_with() {
        let endpoint = Endpoint::custom("h", Some(1999), true).expect("endpoint");
        let secret = Registration::Secret(Registered {
            product_key: "pk".into(),
            device_name: "dn".into(),
            device_secret: "s".into(),
        });
        let p = saved_profile(&secret, &endpoint, None).expect("profile");
        assert_eq!(p.identity().expect("identity").device_secret(), "s");
        assert_eq!(
            (p.host.as_deref(), p.port, p.tls),
            (Some("h"), Some(1999), Some(true))
        );
        let token = Registration::Token(RegisteredWithToken {
            client_id: "cid".into(),
            product_key: "pk".into(),
            device_name: "dn".into(),
            device_token: "t".into(),
        });
        let p = saved_profile(&token, &endpoint, Some(Path::new("ca.pem"))).expect("profile");
        let login = p.token_login().expect("valid").expect("a token");
        assert_eq!(
            (login.client_id.as_str(), login.device_token.as_str()),
            ("cid", "t")
        );
        assert!(p.device_secret.is_none() && p.product_secret.is_none());
        assert!(p.ca_file.is_some_and(|c| Path::new(&c).is_absolute()));
    }
}
