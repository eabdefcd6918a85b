//! The hub's web console in a real browser (`aliot_testkit::browser`) with real `aliot device
//! run` children (issue 15): a device simulated from its thing model (`--tsl`) comes online and
//! posts without a reload, and answers a property set from the console's form; an upgrade
//! package uploaded on the OTA page and a job created there take an `aliot device run
//! --firmware-version … --ota-dir …` child to success. Every wait is on a DOM condition or a
//! hub event, bounded.

use std::process::Stdio;

use aliot_hub::events::Event;
use aliot_testkit::browser::{Client, Locator, click, fill, wait_for, wait_for_at, with_browser};
use aliot_testkit::events::{next_event, online};
use aliot_testkit::{TOKEN, TestHub, guard};

const LAMP_TSL: &str = include_str!("../../aliot-protocol/tests/data/tsl-lamp.json");

/// `aliot device run` for `dn` of `pk` on `hub`, with `extra` arguments.
fn device_run(
    hub: &TestHub,
    pk: &str,
    dn: &str,
    secret: &str,
    extra: &[&std::ffi::OsStr],
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_aliot"))
        .args(["device", "run", "--host", "127.0.0.1", "--port"])
        .arg(hub.mqtt.port().to_string())
        .args([
            "--product-key",
            pk,
            "--device-name",
            dn,
            "--device-secret",
            secret,
        ])
        .args(extra)
        .args(["--format", "json"])
        .env_remove("RUST_LOG")
        .env_remove("ALIOT_PRODUCT_KEY")
        .env_remove("ALIOT_DEVICE_NAME")
        .env_remove("ALIOT_DEVICE_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("aliot device run")
}

/// Waits for the hub's event of the task of `fw-cli` entering `state`.
async fn task_state(events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<Event>>, state: &str) {
    next_event(events, |e| {
        matches!(e, Event::Ota(o) if o.kind == "task" && o.device_name == "fw-cli" && o.task_status == Some(state))
    })
    .await;
}

/// Signs in to the console of `base` with the admin token.
async fn sign_in(c: &Client, base: &str) {
    c.goto(&format!("{base}/")).await.expect("the console");
    fill(c, "#token", TOKEN).await;
    click(c, "#signin").await;
    wait_for(c, "#online-count").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_run_child_shows_online_posts_live_and_answers_the_set_form() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = hub.service();
    let pk = service
        .create_product("lamp", None)
        .await
        .expect("a product")
        .product_key;
    service
        .import_tsl(&pk, LAMP_TSL.to_owned())
        .await
        .expect("the thing model");
    let secret = service
        .create_device(&pk, "lamp-cli", None)
        .await
        .expect("a device")
        .device_secret;
    let tsl = dir.path().join("lamp.json");
    std::fs::write(&tsl, LAMP_TSL).expect("the TSL file");
    let base = hub.base.trim_end_matches('/').to_owned();

    with_browser(|c| async move {
        sign_in(&c, &base).await;
        // The device page, the device offline.
        c.goto(&format!("{base}/console/devices/{pk}/lamp-cli"))
            .await
            .expect("the device page");
        wait_for(&c, "#device-status.off").await;

        // The child connects and posts its properties once (at start; the next round is an hour
        // away, so the values below are the ones it posted or was set to).
        let _child = device_run(
            &hub,
            &pk,
            "lamp-cli",
            &secret,
            &[
                "--tsl".as_ref(),
                tsl.as_os_str(),
                "--post-interval".as_ref(),
                "1h".as_ref(),
                "--seed".as_ref(),
                "7".as_ref(),
            ],
        );
        wait_for(&c, "#device-status.on").await;
        let posted = wait_for(&c, "#latest tr[data-prop=\"Brightness\"] td.value")
            .await
            .text()
            .await
            .expect("its text");
        // (The value the form sets below is not the one posted: seed 7 posts 80.)
        assert!(!posted.is_empty() && !posted.starts_with("33"), "{posted}");

        // A property set from the form: the child checks it against its model, applies it,
        // answers 200 and posts the new value back.
        let mut events = hub.service().events();
        fill(&c, "#set-Brightness", "33").await;
        click(&c, "#set-submit").await;
        let answer = wait_for(&c, "#call-answer")
            .await
            .text()
            .await
            .expect("the answer");
        assert!(answer.contains("200"), "{answer}");
        // The value posted back (it may land while the answer's page loads: once the hub has
        // acknowledged it, the device page shows it).
        let post = format!("/sys/{pk}/lamp-cli/thing/event/property/post");
        next_event(&mut events, |e| {
            matches!(e, Event::Uplink(u) if u.topic == post
                && u.payload.as_deref().is_some_and(|p| p.contains("\"Brightness\":33")))
        })
        .await;
        next_event(&mut events, |e| {
            matches!(e, Event::Reply(r) if r.topic == format!("{post}_reply"))
        })
        .await;
        c.goto(&format!("{base}/console/devices/{pk}/lamp-cli"))
            .await
            .expect("the device page");
        wait_for_at(
            &c,
            Locator::XPath(
                "//table[@id='latest']//tr[@data-prop='Brightness']/td[@class='value'][starts-with(normalize-space(.), '33')]",
            ),
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_from_the_console_takes_a_device_run_child_to_success() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = hub.service();
    let pk = service
        .create_product("ota", None)
        .await
        .expect("a product")
        .product_key;
    let secret = service
        .create_device(&pk, "fw-cli", None)
        .await
        .expect("a device")
        .device_secret;
    let firmware = dir.path().join("fw-2.0.0.bin");
    let image: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&firmware, &image).expect("the firmware file");
    let installed = dir.path().join("installed.bin");
    let base = hub.base.trim_end_matches('/').to_owned();

    // The child reports 1.0.0 and installs through its hook.
    let mut events = service.events();
    // The hook waits on a named pipe until the test has seen the task in progress.
    let gate = dir.path().join("gate");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let hook = format!(
        "cat '{}' >/dev/null && cp \"$1\" '{}' && test \"$2\" = 2.0.0",
        gate.display(),
        installed.display()
    );
    let _child = device_run(
        &hub,
        &pk,
        "fw-cli",
        &secret,
        &[
            "--firmware-version".as_ref(),
            "1.0.0".as_ref(),
            "--ota-dir".as_ref(),
            dir.path().join("ota").as_os_str(),
            "--ota-exec".as_ref(),
            hook.as_ref(),
        ],
    );
    online(&mut events, "fw-cli").await;

    let steps_dir = dir.path().to_owned();
    with_browser(|c| async move {
        sign_in(&c, &base).await;
        c.goto(&format!("{base}/console/ota"))
            .await
            .expect("the OTA page");

        // Upload: the page's script posts the file; the page reloads with the package listed.
        wait_for(&c, "#ota-upload").await;
        fill(&c, "#up-version", "2.0.0").await;
        c.find(Locator::Css("#up-file"))
            .await
            .expect("the file input")
            .send_keys(&firmware.display().to_string())
            .await
            .expect("the file chosen");
        click(&c, "#ota-upload button[type=submit]").await;
        wait_for_at(&c, Locator::XPath("//section[h2='Packages']//td[text()='2.0.0']")).await;

        // A job for the device, from the form.
        fill(&c, "#job-devices", "fw-cli").await;
        click(&c, "form[action=\"/console/ota/jobs\"] button[type=submit]").await;
        wait_for_at(&c, Locator::XPath("//section[h2='Jobs']//tbody//td/code")).await;

        // Its progress: the child downloads and runs its hook, which waits for the test.
        let jobs = "//section[h2='Jobs']//tbody";
        task_state(&mut events, "IN_PROGRESS").await;
        c.refresh().await.expect("reloaded");
        wait_for_at(
            &c,
            Locator::XPath(&format!("{jobs}[contains(., 'IN_PROGRESS: 1')]")),
        )
        .await;
        let release = tokio::task::spawn_blocking(move || std::fs::write(gate, b"go\n"));
        guard("the hook released", release)
            .await
            .expect("joined")
            .expect("written to the hook's pipe");
        task_state(&mut events, "SUCCEEDED").await;
        c.refresh().await.expect("reloaded");
        wait_for_at(
            &c,
            Locator::XPath(&format!("{jobs}[contains(., 'SUCCEEDED: 1')]")),
        )
        .await;
        assert_eq!(std::fs::read(&installed).expect("installed by the hook"), image);
        assert_eq!(
            std::fs::read_to_string(steps_dir.join("ota").join("version"))
                .expect("persisted")
                .trim(),
            "2.0.0"
        );
    })
    .await;
}
