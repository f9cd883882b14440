//! Headless Chromium for the browser tests. Fails, never skips, when it is missing: CI
//! installs it (`SEALWIRE_CHROMIUM` names another binary).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::Path;
use std::process::Stdio;

/// Starts headless Chromium on `url` with its profile in `profile`, plus `extra` flags. The
/// browser is killed when the returned child is dropped. Its temporary files (the singleton
/// socket directory it would leave in `/tmp` when killed) go into `profile` too, so removing
/// the profile removes them.
pub fn chromium(url: &str, profile: &Path, extra: &[&str]) -> tokio::process::Child {
    let chromium = std::env::var("SEALWIRE_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .env("TMPDIR", profile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("`{chromium}` must be installed for the browser tests: {e}"))
}
