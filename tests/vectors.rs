//! The published protocol vectors (`tests/vectors/*.json`): the committed files must equal
//! what the code produces today, and an independent WebCrypto implementation (Node) must
//! reproduce every value byte for byte.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/gen_vectors.rs"]
mod gen_vectors;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors"))
}

#[test]
fn committed_vectors_match_the_code() {
    let docs = gen_vectors::documents();
    assert_eq!(docs.len(), 3);
    for (name, text) in docs {
        let committed = std::fs::read_to_string(dir().join(name)).expect("committed vector file");
        assert!(
            committed == text,
            "tests/vectors/{name} differs from the code; if the protocol change is deliberate, \
             run `cargo run --example gen_vectors` and review the diff"
        );
        let v: Value = serde_json::from_str(&committed).expect("json");
        assert!(
            v["source"]
                .as_str()
                .is_some_and(|s| s.contains("gen_vectors")),
            "{name}: provenance"
        );
    }
}

#[test]
fn vectors_cover_every_derived_value() {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("hardened.json")).expect("file"))
            .expect("json");
    let records = v["records"].as_array().expect("records");
    assert_eq!(records.len(), 12);
    // The sealed login comes first: the confirmation, the credentials, then `connected`.
    let event = |i: usize| -> Value {
        serde_json::from_str(records[i]["plaintext"].as_str().expect("plaintext")).expect("json")
    };
    assert_eq!(
        (records[0]["direction"].as_str(), records[0]["seq"].as_u64()),
        (Some("c2s"), Some(0))
    );
    assert_eq!(event(0)["event"], "confirm");
    assert_eq!(
        (records[1]["direction"].as_str(), records[1]["seq"].as_u64()),
        (Some("c2s"), Some(1))
    );
    assert_eq!(event(1)["event"], "authenticate");
    assert!(event(1)["data"]["token"].is_string());
    assert_eq!(
        (records[2]["direction"].as_str(), records[2]["seq"].as_u64()),
        (Some("s2c"), Some(0))
    );
    assert_eq!(event(2)["event"], "connected");
    assert!(records.iter().any(|r| {
        r["plaintext"]
            .as_str()
            .is_some_and(|p| p.contains("\"refresh\""))
    }));
    // The hello exchange carries no credential.
    let flow = &v["flow"];
    assert_eq!(flow["client_hello"]["event"], "hello");
    assert!(flow["client_hello"]["data"].get("token").is_none());
    assert_eq!(flow["server_hello"]["data"]["profile"], "sealwire-v2");
    let epochs: Vec<u64> = records
        .iter()
        .filter(|r| r["direction"] == "s2c")
        .map(|r| r["epoch"].as_u64().expect("epoch"))
        .collect();
    assert_eq!(
        epochs,
        [0, 0, 1, 1, 2, 2, 3],
        "server records cross three rekeys"
    );
    for key in [
        "transcript",
        "transcript_hash",
        "prk",
        "c2s_secret0",
        "s2c_secret0",
        "confirm_key",
        "server_finished",
        "client_finished",
        "signature",
    ] {
        assert!(
            v["derived"][key].as_str().is_some_and(|s| !s.is_empty()),
            "{key}"
        );
    }
}

/// Runs the WebCrypto checker. Fails (does not skip) when `node` is missing: CI installs it.
#[test]
fn webcrypto_reproduces_every_vector() {
    let script = dir().join("check_vectors.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(dir())
        .output()
        .expect("`node` (Node.js >= 20) must be installed to check the vectors independently");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node checker failed:\n{stdout}\n{stderr}"
    );
    let count: usize = stdout
        .strip_prefix("ok: ")
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected checker output: {stdout}"));
    assert!(count >= 151, "the checker compared only {count} values");
}
