#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs the system packages the tests
# drive when they are missing (scripts/install-deps.sh), then `cargo test` with any arguments
# given. `.ci/run` calls this same script.
# Usage: bash scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec cargo test "$@"
