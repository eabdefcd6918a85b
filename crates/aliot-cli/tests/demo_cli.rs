//! `aliot demo`: the newcomer's first command runs the whole story and exits 0.

#[test]
fn demo_runs_end_to_end_and_exits_0() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_DEVICE_SECRET")
        .output()
        .expect("aliot demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "[1/8]",
        "[3/8]",
        "[8/8]",
        "/ext/regnwl",
        "CONNACK 0",
        "post_reply  code 200",
        "Brightness is now 30",
        "blinked",
        "Summary",
        "[+] The thing model",
        r#"data {"Temperature":"tsl parse: data type is not float"}"#,
        "[+] OTA",
        "/ota/device/upgrade: version 1.1.0",
        "task SUCCEEDED",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("  ok  ").count(), 8, "{stdout}");
}
