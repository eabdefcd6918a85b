//! The web console over HTTP (no browser): sign-in, the session cookie's flags, the CSP, CSRF
//! and origin checks, escaping of hostile names, topics and payloads, bad form input, expired
//! sessions and paging through ten thousand devices. A full hub on 127.0.0.1:0.

use std::time::{Duration, Instant};

use aliot_hub::console::{ConsoleState, router};
use aliot_hub::events::Event;
use aliot_hub::registry::NewDevice;
use aliot_testkit::events::next_event;
use aliot_testkit::{BrokerHub, TOKEN, TestDevice, TestHub, guard};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{HeaderMap, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A browser-like client: one base URL and the session cookie it got.
struct Browser {
    base: String,
    cookie: Option<String>,
    csrf: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            cookie: None,
            csrf: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c.as_str());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("a request");
        let resp = guard("the console's answer", self.client.request(req))
            .await
            .expect("the request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = guard("the body", resp.into_body().collect())
            .await
            .expect("the body")
            .to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], Vec::new()).await
    }

    /// A form post as the console's own page sends it (same origin, the CSRF token added).
    async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut pairs: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(t) = &self.csrf {
            pairs.push(("csrf".into(), t.clone()));
        }
        self.post_raw(path, &encode(&pairs), &[("sec-fetch-site", "same-origin")])
            .await
    }

    async fn post_raw(&self, path: &str, body: &str, extra: &[(&str, &str)]) -> Answer {
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        headers.extend_from_slice(extra);
        self.send("POST", path, &headers, body.as_bytes().to_vec()).await
    }

    /// Signs in with `token`; keeps the cookie and the CSRF token of the first page.
    async fn sign_in(&mut self, token: &str) -> Answer {
        let a = self
            .post_raw("/console/signin", &encode(&[("token".into(), token.into())]), &[])
            .await;
        if let Some(set) = a.headers.get("set-cookie") {
            let set = set.to_str().expect("a cookie");
            self.cookie = Some(set.split(';').next().expect("name=value").to_owned());
            let page = self.get("/console/").await;
            self.csrf = csrf_of(&page.body);
        }
        a
    }
}

fn encode(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf-token\" content=\"")? + "name=\"csrf-token\" content=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

async fn signed_in(hub: &TestHub) -> Browser {
    let mut b = Browser::new(&hub.base);
    let a = b.sign_in(TOKEN).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(b.csrf.is_some(), "the overview carries the CSRF token");
    b
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_a_wrong_token_is_refused() {
    let hub = TestHub::start().await;
    let mut b = Browser::new(&hub.base);
    let root = b.get("/").await;
    assert!(root.status.is_redirection());
    assert_eq!(root.headers["location"], "/console/");
    let page = b.get("/console/").await;
    assert!(page.status.is_redirection(), "not signed in: to sign-in");
    assert_eq!(page.headers["location"], "/console/signin");

    let wrong = b.sign_in("not-the-token").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong token"), "{}", wrong.body);
    assert!(wrong.headers.get("set-cookie").is_none());

    let ok = b.sign_in(TOKEN).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let cookie = ok.headers["set-cookie"].to_str().expect("text");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let overview = b.get("/console/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("devices online"));
}

#[tokio::test]
async fn an_access_key_pair_signs_in_and_a_wrong_secret_is_refused() {
    let hub = TestHub::start().await;
    let key = hub
        .service()
        .create_access_key(Some("console".into()))
        .await
        .expect("an access key");
    let form = |secret: &str| {
        encode(&[
            ("access_key_id".into(), key.access_key_id.clone()),
            ("access_key_secret".into(), secret.to_owned()),
        ])
    };
    let b = Browser::new(&hub.base);
    let wrong = b.post_raw("/console/signin", &form("not-the-secret"), &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get("set-cookie").is_none());
    let ok = b
        .post_raw("/console/signin", &form(&key.access_key_secret), &[])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let mut b = b;
    b.cookie = Some(
        ok.headers["set-cookie"]
            .to_str()
            .expect("text")
            .split(';')
            .next()
            .expect("name=value")
            .to_owned(),
    );
    let page = b.get("/console/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&key.access_key_id),
        "the page names who signed in"
    );
}

#[tokio::test]
async fn every_answer_has_the_csp_and_assets_are_cached() {
    let hub = TestHub::start().await;
    let b = signed_in(&hub).await;
    for path in [
        "/console/signin",
        "/console/",
        "/console/products",
        "/console/devices",
        "/console/live",
        "/console/ota",
    ] {
        let a = b.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        let csp = a.headers["content-security-policy"].to_str().expect("text");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!a.body.contains("<script>"), "{path}: no inline script");
        assert!(!a.body.contains(" style=\""), "{path}: no inline style");
        let handler = a.body.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "{path}: no inline event handler");
    }
    let js = b.get("/console/static/uPlot.iife.min.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(
        js.headers["cache-control"]
            .to_str()
            .expect("text")
            .contains("immutable")
    );
    assert!(
        js.headers["content-type"]
            .to_str()
            .expect("text")
            .starts_with("text/javascript")
    );
    let license = b.get("/console/static/uPlot.LICENSE.txt").await;
    assert!(license.body.contains("MIT"));
}

#[tokio::test]
async fn a_form_without_the_token_or_from_another_origin_is_refused_and_changes_nothing() {
    let hub = TestHub::start().await;
    let mut b = signed_in(&hub).await;
    let csrf = b.csrf.clone().expect("a token");
    // A foreign origin, with the right token.
    let body = encode(&[("name".into(), "evil".into()), ("csrf".into(), csrf.clone())]);
    let a = b
        .post_raw("/console/products", &body, &[("origin", "http://evil.example")])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("another origin"), "{}", a.body);
    let a = b
        .post_raw("/console/products", &body, &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Same site, no token.
    b.csrf = None;
    let a = b.post_form("/console/products", &[("name", "evil")]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("CSRF"), "{}", a.body);
    // A wrong token in the header of a fetch call.
    let a = b
        .post_raw(
            "/console/products",
            &encode(&[("name".into(), "evil".into())]),
            &[("x-csrf-token", "nope")],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        hub.service().products().await.expect("products").is_empty(),
        "nothing created"
    );
    // With the token it works.
    b.csrf = Some(csrf);
    let a = b.post_form("/console/products", &[("name", "good")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(hub.service().products().await.expect("products").len(), 1);
    // A cross-site sign-in is refused too.
    let a = Browser::new(&hub.base)
        .post_raw(
            "/console/signin",
            &encode(&[("token".into(), TOKEN.into())]),
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn script_in_names_property_values_topics_and_payloads_is_shown_as_text() {
    let hub = TestHub::start().await;
    let b = signed_in(&hub).await;
    let (pk, dn, secret) = hub.device("d1").await;
    // A device name.
    let a = b
        .post_form(
            &format!("/console/products/{pk}/devices"),
            &[("device_name", "<script>alert(1)</script>")],
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(!a.body.contains("<script>alert"), "{}", a.body);
    assert!(a.body.contains("&lt;"), "{}", a.body);
    // A product name (accepted: any text).
    let a = b
        .post_form("/console/products", &[("name", "<script>alert(2)</script>")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let list = b.get("/console/products").await;
    assert!(!list.body.contains("<script>alert"));
    assert!(list.body.contains("&lt;script&gt;alert(2)"));
    // A property value posted by the device.
    let mut rx = hub.service().events();
    let dev = TestDevice::connect(hub.mqtt, &pk, &dn, &secret).await;
    let topic = format!("/sys/{pk}/{dn}/thing/event/property/post");
    dev.publish(
        &topic,
        r#"{"id":"1","version":"1.0","params":{"note":"<script>alert(3)</script>"}}"#,
    )
    .await;
    next_event(&mut rx, |e| matches!(e, Event::Reply(r) if r.device_name == dn)).await;
    let page = b.get(&format!("/console/devices/{pk}/{dn}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(3)"), "{}", page.body);
    // A topic and a payload of the raw publish form.
    let a = b
        .post_form(
            &format!("/console/devices/{pk}/{dn}/publish"),
            &[
                ("topic", "/<script>alert(4)</script>"),
                ("payload", "x"),
                ("qos", "0"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(!a.body.contains("<script>alert"));
    let a = b
        .post_form(
            &format!("/console/devices/{pk}/{dn}/publish"),
            &[
                ("topic", &format!("/{pk}/{dn}/user/get")),
                ("payload", "<script>alert(5)</script>"),
                ("qos", "0"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!a.body.contains("<script>alert"), "{}", a.body);
    assert!(
        a.body.contains("&lt;script&gt;alert(5)"),
        "the call log shows the payload as text"
    );
}

#[tokio::test]
async fn oversized_and_malformed_forms_get_clear_errors_and_change_nothing() {
    let hub = TestHub::start().await;
    let b = signed_in(&hub).await;
    let csrf = b.csrf.clone().expect("a token");
    let big = format!(
        "csrf={csrf}&name={}",
        "a".repeat(aliot_hub::console::FORM_LIMIT + 1)
    );
    let a = b.post_raw("/console/products", &big, &[]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.body.contains("larger than"), "{}", a.body);
    // Missing field.
    let a = b.post_form("/console/products", &[("nom", "x")]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("could not be read"), "{}", a.body);
    // Not a number.
    let (pk, dn, _) = hub.device("d1").await;
    let a = b
        .post_form(
            &format!("/console/products/{pk}/batch"),
            &[("prefix", "x"), ("count", "many")],
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("is not a number"), "{}", a.body);
    let a = b
        .post_form(
            &format!("/console/products/{pk}/batch"),
            &[("prefix", "x"), ("count", "100001")],
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // A TSL that is not one.
    let a = b
        .post_form(&format!("/console/products/{pk}/tsl"), &[("tsl", "{not json")])
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(hub.service().tsl(&pk).is_none());
    // A bad search status and an unknown action.
    let a = b.get(&format!("/console/devices?pk={pk}&status=maybe")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = b
        .post_form(&format!("/console/devices/{pk}/{dn}/explode"), &[])
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        hub.service().devices(&pk).await.expect("devices").len(),
        1,
        "nothing half-created"
    );
}

#[tokio::test]
async fn an_expired_session_goes_back_to_sign_in_with_a_message() {
    let broker = BrokerHub::start().await;
    // Sessions that expire at once.
    let token = aliot_hub::admin::AdminToken::new(TOKEN).expect("a token");
    let state = ConsoleState::with_sessions(broker.service().clone(), token, None, 4, Duration::ZERO);
    let app = router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut b = Browser::new(&format!("http://{addr}"));
    let a = b.sign_in(TOKEN).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let page = b.get("/console/devices").await;
    assert!(page.status.is_redirection());
    assert_eq!(page.headers["location"], "/console/signin?expired=1");
    let signin = b.get("/console/signin?expired=1").await;
    assert!(signin.body.contains("session expired"), "{}", signin.body);
    // Data endpoints answer 401 rather than a redirect.
    let data = b.get("/console/overview.json").await;
    assert_eq!(data.status, StatusCode::UNAUTHORIZED);
    state.close();
    server.abort();
}

/// Paging with 10,000 devices: the first page shows 50 of them and the total; prints the
/// server time of the first page (docs/PERFORMANCE.md), without asserting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_devices_are_paged_on_the_server() {
    let hub = TestHub::start().await;
    let b = signed_in(&hub).await;
    let product = hub
        .service()
        .create_product("many", None)
        .await
        .expect("a product");
    let pk = product.product_key;
    let names: Vec<NewDevice> = (0..10_000)
        .map(|i| NewDevice::named(format!("dev{i:05}")))
        .collect();
    hub.service()
        .create_devices(&pk, names, false)
        .await
        .expect("10 000 devices");
    let started = Instant::now();
    let a = b.get(&format!("/console/devices?pk={pk}")).await;
    let first = started.elapsed();
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body.contains("10000 device(s), page 1 of 200"),
        "{}",
        &a.body[..a.body.len().min(3000)]
    );
    assert_eq!(a.body.matches("<tr data-dn=").count(), 50);
    assert!(a.body.contains("dev00000") && a.body.contains("dev00049") && !a.body.contains("dev00050"));
    assert!(
        a.body.contains("page=2\" rel=\"next\""),
        "a link to the next page"
    );
    let last = b.get(&format!("/console/devices?pk={pk}&page=200")).await;
    assert!(last.body.contains("dev09999"));
    let search = b.get(&format!("/console/devices?pk={pk}&q=DEV0999")).await;
    assert!(
        search.body.contains("10 device(s)") || search.body.contains("10 device(s), page 1 of 1"),
        "search is case-insensitive"
    );
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let a = b.get(&format!("/console/devices?pk={pk}")).await;
        times.push(t.elapsed());
        assert_eq!(a.status, StatusCode::OK);
    }
    times.sort();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "console device list, 10000 devices, first page: first {:.1} ms, median {:.1} ms, max {:.1} ms (20 loads, debug build unless --release)",
            first.as_secs_f64() * 1000.0,
            times[10].as_secs_f64() * 1000.0,
            times[19].as_secs_f64() * 1000.0
        );
    }
}
