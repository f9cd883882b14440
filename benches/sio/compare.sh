#!/usr/bin/env bash
# benches/sio/compare.sh <release dir> [anchor pid]: one round of the Socket.IO side-by-side set
# with the Rust Socket.IO load tool (examples/sio_loadgen.rs), one line per run:
#   io_plain      sealwire /io, plaintext
#   anchor_plain  the IGNIS Socket.IO anchor (when its pid is given), plaintext
#   io_enc        sealwire /io, every client encrypted (compatibility profile)
#   ws_enc        sealwire /ws, the same encrypted clients and burst
#   ws_plain      sealwire /ws, plaintext
# Each sealwire run is a fresh `sealwire serve --dev` on 127.0.0.1:18100. The anchor runs
# already (a copy of shared/anchors/ignis-sio: REDIS_PORT=6395 PORT=3200 LOG=off ./run.sh,
# ANCHOR_URL to change its address). CLIENTS (500) and COUNT (1000) set the burst.
# Build first: cargo build --release --all-features --bins --example sio_loadgen
set -u
R=$1
ANCHOR_PID=${2:-}
ANCHOR_URL=${ANCHOR_URL:-http://127.0.0.1:3200}
ulimit -n "$(ulimit -Hn)"
shape=(--clients "${CLIENTS:-500}" --count "${COUNT:-1000}")

line() {
  LABEL=$1 python3 -c '
import json, os, sys
d = json.loads(sys.stdin.read())
lat, first = d["latency_from_request_ms"], d["first_delivery_ms"]
print(os.environ["LABEL"], "load=%s" % open("/proc/loadavg").read().split()[0],
      "msgs_per_s=%dk" % (d["delivered_per_s"] / 1000), "cpu_us_per_msg=%.2f" % d["server_cpu_us_per_msg"],
      "p50=%d p99=%d max=%d" % (lat["p50"], lat["p99"], lat["max"]), "first_p99=%d" % first["p99"],
      "lost=%d decrypt_failures=%d plaintext_events=%d connect_failures=%d" % (d["lost"], d["decrypt_failures"], d["plaintext_events"], d["connect_failures"]),
      "tool_cpu_s=%.2f" % d["loadgen_cpu_secs"])'
}

sealwire() {
  local label=$1
  shift
  "$R"/sealwire serve --dev --listen 127.0.0.1:18100 --admin-token benchtoken > /dev/null 2>&1 &
  local pid=$!
  sleep 1
  "$R"/examples/sio_loadgen --url http://127.0.0.1:18100 --admin-token benchtoken \
    --server-pid $pid "${shape[@]}" "$@" 2> /dev/null | line "$label"
  kill $pid
  wait $pid 2> /dev/null
}

sealwire io_plain --door io
if [[ -n $ANCHOR_PID ]]; then
  "$R"/examples/sio_loadgen --url "$ANCHOR_URL" --server-pid "$ANCHOR_PID" "${shape[@]}" \
    2> /dev/null | line anchor_plain
fi
sealwire io_enc --door io --encrypted
sealwire ws_enc --door ws --encrypted
sealwire ws_plain --door ws
