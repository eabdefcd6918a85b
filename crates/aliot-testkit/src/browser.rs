//! A real browser for the console's tests: headless Chromium driven over WebDriver
//! (chromedriver, started on a free loopback port with a temporary profile, stopped at the end).
//!
//! [`with_browser`] runs a test's steps in a new session and closes it even when a step fails;
//! [`wait_for`], [`fill`], [`click`], [`text`] and [`shot`] are the steps' vocabulary. Every
//! wait is on a DOM condition, bounded by [`GUARD`].
//!
//! chromedriver and Chromium come from Debian's `chromium-driver` and `chromium` packages
//! (`.ci/run` installs them); `CHROMEDRIVER` and `CHROMIUM` name other binaries.
//! With `ALIOT_CONSOLE_SCREENSHOTS=<dir>`, [`shot`] saves PNGs there.

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub use fantoccini::elements::Element;
pub use fantoccini::{Client, Locator};
use futures_util::FutureExt as _;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::guard::{GUARD, guard};

/// chromedriver, stopped (killed) when dropped.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits for its "started" line.
    pub fn start() -> Driver {
        let Some(driver) = find("CHROMEDRIVER", "/usr/bin/chromedriver") else {
            panic!(
                "chromedriver is missing (Debian packages chromium and chromium-driver; `.ci/run` installs \
                 them; or set CHROMEDRIVER=/path/to/chromedriver)"
            );
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = child.stdout.take().expect("its stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Its first lines say it started (or why not); a driver that exits ends the loop.
        for line in lines.by_ref() {
            let line = line.expect("chromedriver's output");
            if line.contains("started successfully") {
                break;
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Driver {
            child,
            port,
            profile: tempfile::tempdir().expect("a profile directory"),
        }
    }

    /// A new browser session: headless Chromium at 1280×800.
    pub async fn browser(&self) -> Client {
        let chromium = find("CHROMIUM", "/usr/bin/chromium").unwrap_or_else(|| {
            panic!(
                "chromium is missing (Debian package chromium; `.ci/run` installs it; or set CHROMIUM=/path)"
            )
        });
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,800", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        guard(
            "a WebDriver session",
            fantoccini::ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{}", self.port)),
        )
        .await
        .expect("a browser session")
    }
}

/// Runs `steps` in a new browser session, then closes the browser and stops chromedriver, also
/// when a step panics (else Chromium outlives chromedriver); the panic is then resumed.
pub async fn with_browser<F, Fut>(steps: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let driver = Driver::start();
    let c = driver.browser().await;
    let outcome = std::panic::AssertUnwindSafe(steps(c.clone()))
        .catch_unwind()
        .await;
    let _ = c.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Waits (bounded) until an element matching `css` is in the page; panics with the page's
/// source when it does not come.
pub async fn wait_for(c: &Client, css: &str) -> Element {
    wait_for_at(c, Locator::Css(css)).await
}

/// Waits (bounded) until an element at `locator` (CSS or XPath) is in the page.
pub async fn wait_for_at(c: &Client, locator: Locator<'_>) -> Element {
    match c.wait().at_most(GUARD).for_element(locator).await {
        Ok(e) => e,
        Err(e) => {
            let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let page = c.source().await.unwrap_or_default();
            panic!("{locator:?} did not appear ({e}) on {url}:\n{page}")
        }
    }
}

/// Saves a screenshot of the page as `{dir}/{name}.png` when `ALIOT_CONSOLE_SCREENSHOTS=dir`.
pub async fn shot(c: &Client, name: &str) {
    let Some(dir) = std::env::var_os("ALIOT_CONSOLE_SCREENSHOTS") else {
        return;
    };
    // The whole page (up to 2400 px), then the window as it was.
    let (w, h) = c.get_window_size().await.expect("the window's size");
    let full = c
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .expect("the page's height")
        .as_u64()
        .unwrap_or(h);
    let (w, h) = (u32::try_from(w).unwrap_or(1280), u32::try_from(h).unwrap_or(800));
    let tall = u32::try_from(full.clamp(u64::from(h), 2400)).unwrap_or(h);
    c.set_window_size(w, tall).await.expect("resized");
    let png = c.screenshot().await.expect("a screenshot");
    c.set_window_size(w, h).await.expect("restored");
    std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).expect("the screenshot saved");
}

/// Clears the field at `css` and types `text` into it.
pub async fn fill(c: &Client, css: &str, text: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.expect("cleared");
    e.send_keys(text).await.expect("typed");
}

/// Clicks the element at `css`.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The text of the element at `css`.
pub async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("its text")
}
