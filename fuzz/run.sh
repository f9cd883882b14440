#!/usr/bin/env bash
# Builds the libFuzzer targets on the stable toolchain and runs each for a while.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET ...]     (defaults: 25 s, every target)
#
# No cargo-fuzz and no nightly needed: the SanitizerCoverage instrumentation libFuzzer needs
# is requested through stable `-C` flags, and `--target` keeps those flags off build scripts
# and proc macros (exactly what cargo-fuzz does; it only adds AddressSanitizer, which needs
# nightly and buys little for a crate that forbids `unsafe`). A C++ compiler must be present
# (libfuzzer-sys builds libFuzzer). Crashes land in fuzz/artifacts/<target>/ and fail the run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
secs="${1:-25}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(frame_parse decrypt upgrade_head room_record); fi
triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$here/target}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --manifest-path "$here/Cargo.toml" --release --bins --target "$triple"
for t in "${targets[@]}"; do
  corpus="$here/corpus/$t"
  artifacts="$here/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  # Seed with the published vectors (valid frames and handshake payloads), and with the
  # target's own seeds (fuzz/seeds/<target>/: request heads for upgrade_head).
  cp "$here"/../tests/vectors/*.json "$corpus/" 2>/dev/null || true
  cp "$here"/seeds/"$t"/* "$corpus/" 2>/dev/null || true
  echo "== fuzzing $t for ${secs}s"
  "$CARGO_TARGET_DIR/$triple/release/$t" "$corpus" \
    -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1
done
