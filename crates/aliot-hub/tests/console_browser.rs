//! The web console in a real browser: headless Chromium driven over WebDriver
//! (`aliot_testkit::browser`).
//!
//! Signs in (a wrong token first), creates a product and a device from the forms, imports a
//! thing model, sees the device come online and a posted property appear without a reload,
//! sets a property from the generated form and sees the device's answer, and checks that a
//! form posted from another site is refused. Every wait is on a DOM condition, bounded.
//!
//! With `ALIOT_CONSOLE_SCREENSHOTS=<dir>` it also saves PNGs of the main pages there
//! (`docs/console/screenshots.sh`).

use aliot_hub::events::Event;
use aliot_testkit::browser::{Client, Locator, click, fill, shot, text, wait_for, with_browser};
use aliot_testkit::events::next_event;
use aliot_testkit::{GUARD, TOKEN, TestDevice, TestHub, guard};
use serde_json::json;

const LAMP_TSL: &str = include_str!("../../aliot-protocol/tests/data/tsl-lamp.json");

/// A page on another origin with a form that posts to the console.
async fn evil_site(console: &str) -> (String, tokio::task::JoinHandle<()>) {
    let html = format!(
        "<!doctype html><title>evil</title><form method=post action=\"{console}/console/products\">\
         <input name=name value=evil><button id=go type=submit>go</button></form>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(html) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let hub = TestHub::start().await;
    with_browser(|c| async move { walk_through(&c, &hub).await }).await;
}

/// The test's steps, in the browser `c`.
async fn walk_through(c: &Client, hub: &TestHub) {
    let c = c.clone();
    let base = hub.base.trim_end_matches('/').to_owned();

    // Sign-in: a wrong token is refused, the right one opens the overview.
    c.goto(&format!("{base}/")).await.expect("the console");
    wait_for(&c, "#token").await;
    shot(&c, "signin").await;
    fill(&c, "#token", "wrong-token").await;
    click(&c, "#signin").await;
    let refused = wait_for(&c, "#signin-error").await;
    assert!(refused.text().await.expect("text").contains("Wrong token"));
    fill(&c, "#token", TOKEN).await;
    click(&c, "#signin").await;
    wait_for(&c, "#online-count").await;

    // A product from the form, its thing model imported from the page.
    c.goto(&format!("{base}/console/products"))
        .await
        .expect("products");
    fill(&c, "#product-name", "Smart lamp").await;
    fill(&c, "#product-key", "a1LampXyz01").await;
    click(&c, "#create-product").await;
    // (An id the products page does not have: the wait cannot see the old page.)
    let pk = wait_for(&c, "#shown-product-key")
        .await
        .text()
        .await
        .expect("the key");
    assert_eq!(pk, "a1LampXyz01");
    c.execute(
        "document.getElementById('tsl-text').value = arguments[0];",
        vec![json!(LAMP_TSL)],
    )
    .await
    .expect("the TSL in the form");
    click(&c, "#import-tsl").await;
    wait_for(&c, "p.notice").await;
    assert!(hub.service().tsl(&pk).is_some(), "the thing model was imported");

    // A device from the form.
    fill(&c, "#device-name", "lamp1").await;
    click(&c, "#create-device").await;
    wait_for(&c, "#device-status.off").await;
    let device = hub.service().device(&pk, "lamp1").await.expect("the device");
    // More devices for the list (as the batch form would).
    for i in 2..=12 {
        hub.service()
            .create_device(&pk, &format!("lamp{i}"), None)
            .await
            .expect("a device");
    }

    // Some history for the chart, posted before the page loads.
    let mut rx = hub.service().events();
    let mut dev = TestDevice::connect(hub.mqtt, &pk, "lamp1", &device.device_secret).await;
    next_event(&mut rx, |e| matches!(e, Event::Status(s) if s.status == "online")).await;
    let post = format!("/sys/{pk}/lamp1/thing/event/property/post");
    let now = aliot_hub::clock::now_ms();
    for i in 0..24u64 {
        let v = 215.0 + (i as f64 * 0.7).sin() * 6.0;
        let body = json!({"id": format!("{i}"), "version": "1.0",
            "params": {"Voltage": {"value": (v * 10.0).round() / 10.0, "time": now - (24 - i) * 60_000}}});
        dev.publish(&post, body.to_string()).await;
        next_event(
            &mut rx,
            |e| matches!(e, Event::Reply(r) if r.device_name == "lamp1"),
        )
        .await;
    }
    dev.subscribe(&format!("/sys/{pk}/lamp1/thing/service/property/set"))
        .await;
    drop(dev);
    next_event(
        &mut rx,
        |e| matches!(e, Event::Status(s) if s.status == "offline"),
    )
    .await;

    // The device page, offline; the device connects and shows online without a reload.
    c.goto(&format!("{base}/console/devices/{pk}/lamp1"))
        .await
        .expect("the device page");
    wait_for(&c, "#device-status.off").await;
    wait_for(&c, "#property-chart .u-wrap").await;
    let mut dev = TestDevice::connect(hub.mqtt, &pk, "lamp1", &device.device_secret).await;
    dev.subscribe(&format!("/sys/{pk}/lamp1/thing/service/property/set"))
        .await;
    wait_for(&c, "#device-status.on").await;

    // A posted property appears live.
    dev.publish(
        &post,
        r#"{"id":"100","version":"1.0","params":{"Brightness":42}}"#,
    )
    .await;
    let row = wait_for(&c, "#latest tr[data-prop=\"Brightness\"]").await;
    assert!(row.text().await.expect("text").contains("42"));

    // Set a property from the generated form; the device answers, the page shows it.
    let set_topic = format!("/sys/{pk}/lamp1/thing/service/property/set");
    let answering = tokio::spawn(async move {
        let payload = loop {
            // Replies to its earlier posts come first.
            let (topic, payload) = dev.next_publish().await;
            if topic == set_topic {
                break payload;
            }
        };
        let req: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
        assert_eq!(req["params"]["Brightness"], 80);
        let reply = json!({"id": req["id"], "code": 200, "data": {"Brightness": 80}});
        dev.publish(&format!("{set_topic}_reply"), reply.to_string())
            .await;
        dev
    });
    fill(&c, "#set-Brightness", "80").await;
    click(&c, "#set-submit").await;
    let answer = wait_for(&c, "#call-answer")
        .await
        .text()
        .await
        .expect("the answer");
    assert!(answer.contains("200"), "{answer}");
    let dev = guard("the device's answer", answering)
        .await
        .expect("the device answered");
    shot(&c, "device").await;

    // The live messages page shows the device's messages.
    c.goto(&format!("{base}/console/live")).await.expect("live");
    wait_for(&c, "#live-log").await;
    c.wait()
        .at_most(GUARD)
        .for_element(Locator::XPath("//p[@id='live-state'][text()='Live.']"))
        .await
        .expect("the stream is live");
    dev.publish(
        &post,
        r#"{"id":"101","version":"1.0","params":{"Voltage":221.4,"Brightness":80}}"#,
    )
    .await;
    dev.publish(
        &format!("/{pk}/lamp1/user/update"),
        r#"{"note":"<b>not bold</b>"}"#,
    )
    .await;
    wait_for(&c, "#live-log li:nth-child(3)").await;
    let log = text(&c, "#live-log").await;
    assert!(
        log.contains("<b>not bold</b>"),
        "payloads are shown as text: {log}"
    );
    shot(&c, "live").await;

    // The other pages, for the screenshots.
    c.goto(&format!("{base}/console/")).await.expect("overview");
    wait_for(&c, "#overview-chart .u-wrap").await;
    shot(&c, "overview").await;
    c.goto(&format!("{base}/console/products/{pk}"))
        .await
        .expect("product");
    wait_for(&c, "#shown-product-key").await;
    shot(&c, "product").await;
    c.goto(&format!("{base}/console/devices?pk={pk}"))
        .await
        .expect("devices");
    wait_for(&c, "[data-status-of=\"lamp1\"].on").await;
    shot(&c, "devices").await;
    c.goto(&format!("{base}/console/ota")).await.expect("ota");
    wait_for(&c, "#ota-upload").await;
    shot(&c, "ota").await;
    c.set_window_size(390, 844).await.expect("phone width");
    c.goto(&format!("{base}/console/devices/{pk}/lamp1"))
        .await
        .expect("device");
    wait_for(&c, "#device-status.on").await;
    shot(&c, "device-phone").await;
    c.set_window_size(1280, 800).await.expect("desktop width");

    // A form posted from another site is refused, and changes nothing.
    let (evil, evil_task) = evil_site(&base).await;
    let before = hub.service().products().await.expect("products").len();
    c.goto(&evil).await.expect("the other site");
    click(&c, "#go").await;
    let refusal = wait_for(&c, "#error-message").await.text().await.expect("text");
    assert!(refusal.contains("refused"), "{refusal}");
    assert_eq!(hub.service().products().await.expect("products").len(), before);

    evil_task.abort();
    drop(dev);
}
