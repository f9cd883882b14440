//! The demo page of `sealwire serve --dev`, driven in headless Chromium over the DevTools
//! protocol: connect as a user (hardened profile), join a room, push a message through the
//! admin API from the page's form, and check that the decrypted text appears beside an
//! `encrypted` frame that does not contain it. Fails, never skips, when Chromium is missing
//! (CI installs it). `SEALWIRE_DEMO_SCREENSHOT=path` saves a screenshot of the page.

mod common;

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const STEP: Duration = Duration::from_secs(30);

/// A DevTools session on one page.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to DevTools");
        loop {
            let frame = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("DevTools answered in time")
                .expect("DevTools open")
                .expect("DevTools frame");
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("json");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `js` in the page and returns its value.
    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `js` until it returns a truthy value.
    async fn until(&mut self, js: &str) -> Value {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let v = self.eval(js).await;
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "page never satisfied `{js}`; status: {}",
                self.eval("document.getElementById('status').textContent")
                    .await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn the_demo_page_shows_ciphertext_on_the_wire_and_the_decrypted_message() {
    // The real binary, in development mode.
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealwire"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sealwire");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let demo_url = loop {
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("sealwire started in time")
            .expect("stdout")
            .expect("sealwire printed its demo page");
        if let Some(url) = line.strip_prefix("demo page: ") {
            break url.trim().to_owned();
        }
    };
    assert!(demo_url.contains("#admin="), "{demo_url}");

    let profile = tempfile::tempdir().expect("profile dir");
    let _browser = common::browser::chromium(
        &demo_url,
        profile.path(),
        &["--remote-debugging-port=0", "--window-size=1200,900"],
    );

    // Chromium writes the DevTools port into the profile directory.
    let port_file = profile.path().join("DevToolsActivePort");
    let port = {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(port) = text.lines().next().and_then(|p| p.parse::<u16>().ok())
            {
                break port;
            }
            assert!(tokio::time::Instant::now() < deadline, "no DevTools port");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let target = {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let list: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
                .await
                .expect("DevTools list")
                .json()
                .await
                .expect("json");
            let page = list.as_array().and_then(|targets| {
                targets.iter().find(|t| {
                    t["type"] == "page"
                        && t["url"]
                            .as_str()
                            .is_some_and(|u| u.starts_with("http://127.0.0.1"))
                })
            });
            if let Some(ws) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                break ws.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no page target: {list}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (ws, _) = tokio_tungstenite::connect_async(target.as_str())
        .await
        .expect("DevTools WebSocket");
    let mut page = Page { ws, next_id: 0 };
    page.until("document.readyState === 'complete' && !!document.getElementById('connect-btn')")
        .await;

    // Connect as a user with the default (hardened) profile.
    page.eval("document.getElementById('user').value = 'dora'; document.getElementById('connect-btn').click(); true")
        .await;
    let client_id = page.until("document.body.dataset.connected").await;
    assert!(client_id.is_string());
    let status = page
        .eval("document.getElementById('status').textContent")
        .await;
    assert!(
        status
            .as_str()
            .is_some_and(|s| s.contains("encrypted, sealwire-v2")),
        "{status}"
    );

    // Join a room, then push to it from the form.
    page.eval("document.getElementById('room').value = 'demo:payments'; document.getElementById('join-btn').click(); true")
        .await;
    assert_eq!(
        page.until("document.body.dataset.joined").await,
        "demo:payments"
    );
    let secret = format!("demo-{}", uuid::Uuid::new_v4());
    page.eval(&format!(
        "document.getElementById('target').value = 'room'; \
         document.getElementById('text').value = '{secret}'; \
         document.getElementById('push-btn').click(); true"
    ))
    .await;
    let decrypted = page
        .until(&format!(
            "[...document.querySelectorAll('#decrypted li')].map(l => l.textContent).find(t => t.includes('{secret}')) ?? ''"
        ))
        .await;
    assert!(
        decrypted
            .as_str()
            .is_some_and(|t| t.starts_with("payment:settled")),
        "{decrypted}"
    );
    let wire = page
        .eval("[...document.querySelectorAll('#wire li')].map(l => l.textContent)")
        .await;
    let frames = wire.as_array().expect("wire frames");
    assert!(!frames.is_empty());
    for f in frames {
        let text = f.as_str().expect("frame text");
        let frame: Value = serde_json::from_str(text).expect("a JSON frame");
        assert_eq!(frame["event"], "encrypted", "{text}");
        assert!(frame["data"]["seq"].is_u64(), "{text}");
        assert!(!text.contains(&secret), "plaintext on the wire: {text}");
    }

    if let Ok(path) = std::env::var("SEALWIRE_DEMO_SCREENSHOT") {
        use base64::Engine as _;
        let shot = page
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("png"))
            .expect("base64");
        std::fs::write(path, png).expect("write screenshot");
    }
}
