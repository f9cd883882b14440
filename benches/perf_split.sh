#!/usr/bin/env bash
# benches/perf_split.sh <label> <examples dir> [loadgen args...]: one fresh bench_server, one
# fan-out run (1,000 clients x COUNT messages of 200 B, default 3,000; ENC=1 for per-client
# encryption) under `perf record -F 1000`, and one line out: the server's user and kernel
# milliseconds per million delivered messages (perf samples), the CPU per message from /proc,
# latency from the publish request, and the loss and leak counters.
# SERVER_ARGS adds bench_server flags. Needs perf; serialize runs with
# `flock /tmp/sealwire-bench.lock`.
set -u
set -f
label=$1; R=$2; shift 2
ulimit -n "$(ulimit -Hn)"
data=$(mktemp /tmp/perf_split.XXXXXX)
"$R"/bench_server --listen 127.0.0.1:18090 --control 127.0.0.1:18091 ${SERVER_ARGS:-} > /dev/null 2>&1 &
SW=$!
sleep 1.2
perf record -F 1000 -o "$data" -p $SW > /dev/null 2>&1 &
PP=$!
sleep 0.3
out=$("$R"/loadgen --url ws://127.0.0.1:18090/ws --control http://127.0.0.1:18091 --server-pid $SW \
    --scenario fanout --clients 1000 --count "${COUNT:-3000}" --size 200 --encrypted "${ENC:-0}" "$@" 2>/dev/null)
kill -INT $PP; wait $PP 2>/dev/null
kill $SW; wait $SW 2>/dev/null
perf report -i "$data" --sort dso -F sample,dso 2>/dev/null | grep -v '^#' | grep -v '^$' > "$data.txt"
kernel=$(awk '/kernel/ {s+=$1} END {print s+0}' "$data.txt")
user=$(awk '!/kernel/ {s+=$1} END {print s+0}' "$data.txt")
rm -f "$data" "$data.txt"
echo "$out" | LABEL=$label USER_SAMPLES=$user KERNEL_SAMPLES=$kernel python3 -c '
import json, os, sys
d = json.loads(sys.stdin.read())
n = max(d["delivered"], 1)
lat = d["latency_from_request_ms"]
print(os.environ["LABEL"],
      "user_ms_per_M=%d" % (int(os.environ["USER_SAMPLES"]) * 1e6 / n),
      "kernel_ms_per_M=%d" % (int(os.environ["KERNEL_SAMPLES"]) * 1e6 / n),
      "cpu_us=%.2f" % d["server_cpu_us_per_msg"], "p50=%d" % lat["p50"], "p99=%d" % lat["p99"],
      "lost=%d" % d["lost"], "decrypt_failures=%d" % d["decrypt_failures"],
      "plaintext_on_encrypted=%d" % d["plaintext_on_encrypted"])
'
sleep 0.5
