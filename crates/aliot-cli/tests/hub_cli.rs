//! `aliot hub` as a process: endpoints on stdout, bad settings, graceful SIGTERM, and a
//! registration that survives `kill -9`.

use aliot_testkit::{BlockingRaw as RawDevice, HubProcess, admin, aliot, ok_json, run_guarded, stderr};

#[test]
fn print_config_prints_the_embedded_default_file() {
    let out = run_guarded({
        let mut c = aliot();
        c.args(["hub", "--print-config"]);
        c
    });
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text, aliot_hub::config::DEFAULT_CONFIG);
    aliot_hub::Config::parse(&text).expect("parses back");
}

#[test]
fn bad_settings_exit_2_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[mqtt]\nlisten = \"127.0.0.1:1883\"\nwhat = 1\n").expect("write");
    let cases: Vec<Vec<String>> = vec![
        vec!["--mqtt".into(), "not-an-address".into()],
        vec!["--config".into(), bad.display().to_string()],
        vec![
            "--config".into(),
            dir.path().join("missing.toml").display().to_string(),
        ],
        vec![
            "--tls-cert".into(),
            "c.pem".into(),
            "--tls-key".into(),
            "k.pem".into(),
        ],
        vec!["--admin-token".into(), "has space".into()],
        vec![
            "--mqtt".into(),
            "127.0.0.1:5555".into(),
            "--admin".into(),
            "127.0.0.1:5555".into(),
        ],
    ];
    for case in cases {
        let mut c = aliot();
        c.arg("hub").arg("--data-dir").arg(dir.path()).args(&case);
        let out = run_guarded(c);
        assert_eq!(out.status.code(), Some(2), "{case:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{case:?}: {err}");
        assert!(err.starts_with("aliot: "), "{err}");
    }
    // The file's error names the key and its line.
    let mut c = aliot();
    c.arg("hub").arg("--config").arg(&bad);
    let err = stderr(&run_guarded(c));
    assert!(err.contains("what") && err.contains("line 3"), "{err}");
}

#[test]
fn endpoints_are_printed_and_sigterm_stops_the_hub_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = HubProcess::start(dir.path(), &[]);
    assert!(
        hub.admin_url.starts_with("http://127.0.0.1:"),
        "{}",
        hub.admin_url
    );
    assert_ne!(hub.mqtt.port(), 0);
    let token_line = hub
        .banner
        .iter()
        .find(|l| l.contains("admin token:"))
        .expect("token line");
    let token_file = dir.path().join("admin-token");
    assert!(
        token_line.contains(&token_file.display().to_string()),
        "{token_line}"
    );
    // The token itself is never printed.
    let token = std::fs::read_to_string(&token_file).expect("token file");
    assert!(hub.banner.iter().all(|l| !l.contains(token.trim())));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&token_file).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    let status = hub.terminate();
    assert!(status.success(), "{status:?}");
    let mut rest = vec![];
    while let Some(l) = hub.next_line() {
        rest.push(l);
    }
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn a_busy_port_or_a_busy_data_dir_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let mut c = aliot();
    c.arg("hub").arg("--data-dir").arg(dir.path()).args([
        "--mqtt",
        &addr,
        "--admin",
        "127.0.0.1:0",
        "--openapi",
        "127.0.0.1:0",
    ]);
    let out = run_guarded(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&addr), "{}", stderr(&out));

    let _first = HubProcess::start(dir.path(), &[]);
    let mut c = aliot();
    c.arg("hub").arg("--data-dir").arg(dir.path()).args([
        "--mqtt",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--openapi",
        "127.0.0.1:0",
    ]);
    let out = run_guarded(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("another aliot hub"), "{}", stderr(&out));
}

#[test]
fn a_registered_device_survives_kill_9_and_still_authenticates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = HubProcess::start(dir.path(), &[]);
    ok_json(&admin(
        dir.path(),
        &[
            "product",
            "create",
            "--name",
            "kill test",
            "--product-key",
            "a1Kill9",
        ],
    ));
    let created = ok_json(&admin(
        dir.path(),
        &[
            "device",
            "create",
            "--product-key",
            "a1Kill9",
            "--device-name",
            "survivor",
        ],
    ));
    let secret = created["deviceSecret"].as_str().expect("secret").to_owned();
    // The 201 has been answered: SIGKILL now, no chance to flush anything.
    hub.kill_9();

    let hub = HubProcess::start(dir.path(), &[]);
    let shown = ok_json(&admin(
        dir.path(),
        &[
            "device",
            "show",
            "--product-key",
            "a1Kill9",
            "--device-name",
            "survivor",
        ],
    ));
    assert_eq!(shown["deviceSecret"], secret.as_str());
    assert_eq!(shown["enabled"], true);
    let (_dev, code) = RawDevice::connect(hub.mqtt, "a1Kill9", "survivor", &secret);
    assert_eq!(code, 0, "CONNACK");
    let (_dev, code) = RawDevice::connect(hub.mqtt, "a1Kill9", "survivor", "wrong-secret");
    assert_eq!(code, 4, "CONNACK");
}

#[test]
fn mqtts_with_no_certificate_makes_a_local_ca_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = HubProcess::start(dir.path(), &["--mqtts", "127.0.0.1:0"]);
    let ca = dir.path().join("tls").join("ca.pem");
    let line = hub
        .banner
        .iter()
        .find(|l| l.trim_start().starts_with("mqtts:"))
        .expect("mqtts line");
    assert!(line.contains(&ca.display().to_string()), "{line}");
    let first = std::fs::read(&ca).expect("CA written");
    assert!(hub.terminate().success());
    let hub = HubProcess::start(dir.path(), &["--mqtts", "127.0.0.1:0"]);
    assert_eq!(std::fs::read(&ca).expect("CA kept"), first, "the CA is reused");
    drop(hub);
}

/// Issue 8: `aliot hub` registers its Ctrl-C and SIGTERM handlers before it prints anything, so
/// a SIGTERM that follows the banner's first line at once is a graceful stop, never the
/// default action (which killed the process when it came before the hub first polled its
/// shutdown future).
#[cfg(unix)]
#[test]
fn a_sigterm_right_after_the_first_banner_line_is_a_graceful_stop() {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::process::{Command, Stdio};

    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = aliot();
        c.arg("hub")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--mqtt",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--openapi",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("aliot hub");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("banner");
        assert!(first.starts_with("aliot hub"), "{first}");
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
        let status = aliot_testkit::wait_guarded(&mut child);
        let mut rest = String::new();
        out.read_to_string(&mut rest).expect("the rest of stdout");
        assert!(status.success(), "{status:?}: {rest}");
        assert!(rest.contains("aliot hub stopped"), "{rest}");
    }
}

/// The hub raises its soft open-file limit to the hard one, prints the connection capacity it
/// leaves, and accepts no more connections than that: beyond it a socket is closed at once
/// (not left in the backlog while `accept` fails with EMFILE).
#[cfg(target_os = "linux")]
#[test]
fn the_open_file_limit_is_raised_and_sets_the_connection_capacity() {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::process::Command;

    use aliot_testkit::GUARD;

    // A soft limit of 200 under a hard one of 4096: raised to 4096, which leaves
    // 4096 - 64 - 256 (admin) = 3776 MQTT connections.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -Sn 200 && ulimit -Hn 4096 && exec \"$0\" \"$@\""])
        .arg(aliot_testkit::aliot_binary())
        .args(HubProcess::args(dir.path(), &[]))
        .env_remove("RUST_LOG");
    let hub = HubProcess::spawn(cmd);
    let line = hub
        .banner
        .iter()
        .find(|l| l.contains("capacity:"))
        .expect("a capacity line");
    assert!(
        line.contains("3776 MQTT connections") && line.contains("open-file limit 4096"),
        "{line}"
    );
    drop(hub);

    // A hard limit of 160, 16 admin connections: 160 - 64 - 16 = 80 MQTT connections.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hub.toml");
    std::fs::write(&config, "[admin]\nmax_connections = 16\n").expect("config");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 160 && exec \"$0\" \"$@\""])
        .arg(aliot_testkit::aliot_binary())
        .args(HubProcess::args(
            dir.path(),
            &["--config", config.to_str().expect("utf-8")],
        ))
        .env_remove("RUST_LOG");
    let hub = HubProcess::spawn(cmd);
    let line = hub
        .banner
        .iter()
        .find(|l| l.contains("capacity:"))
        .expect("a capacity line");
    assert!(
        line.contains("80 MQTT connections") && line.contains("open-file limit 160"),
        "{line}"
    );
    let held: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(hub.mqtt).expect("connect"))
        .collect();
    // The 81st sends a CONNECT (any CONNECT within capacity gets a CONNACK): it is closed unanswered.
    let mut extra = TcpStream::connect(hub.mqtt).expect("connect");
    extra.set_read_timeout(Some(GUARD)).expect("timeout");
    extra
        .write_all(&[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'x'])
        .expect("write");
    let mut buf = [0u8; 4];
    match extra.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?} {buf:?}"),
    }
    drop(held);
}
