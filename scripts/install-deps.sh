#!/usr/bin/env bash
# Installs what building and testing sealwire needs on a fresh Debian machine, when missing:
# a C toolchain and openssl (aws-lc), redis-server (the Redis tests spawn their own), Node.js
# and Chromium (the browser SDK's tests), npm (the Socket.IO tests' pinned packages), promtool
# from the `prometheus` package (the metrics test). Used by scripts/test.sh and .ci/run.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
# The Socket.IO tests install their pinned npm packages (tests/sio) with `npm ci`.
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The browser SDK's test runs in headless Chromium (tests/browser_sdk.rs).
command -v "${SEALWIRE_CHROMIUM:-chromium}" >/dev/null 2>&1 || missing+=(chromium)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# promtool checks the metrics page (tests/metrics.rs).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: this project needs a Rust toolchain (1.94+)" >&2
  exit 1
fi
