#!/usr/bin/env bash
# Holds many idle encrypted connections on this host with several sealwire processes sharing
# one port (SO_REUSEPORT), for hosts whose per-process open-file limit is below the target.
#
#   benches/scale.sh [CLIENTS=100000] [PROCESSES=6] [HOLD_SECS=20]
#
# Starts PROCESSES `bench_server --reuse-port --require-encryption` on one port and as many
# `loadgen --scenario idle` processes (each opens CLIENTS/PROCESSES encrypted clients from 8
# loopback source addresses). Once every client is authenticated it samples the servers' RSS,
# then waits for the load tools and prints one JSON line: clients authenticated at once, still
# connected at the end of the hold (as the load tools saw it), server RSS growth per
# connection, and the per-process split.
# Each process needs an open-file limit above CLIENTS/PROCESSES (`ulimit -Hn`).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${1:-100000}
PROCS=${2:-6}
HOLD=${3:-20}
PORT=${SCALE_PORT:-18400}
R=target/release/examples
OUT=$(mktemp -d)

cargo build --release --quiet --example bench_server --example loadgen
ulimit -n "$(ulimit -Hn)"
per=$(( (CLIENTS + PROCS - 1) / PROCS ))
if (( per + 64 > $(ulimit -n) )); then
    echo "scale: $per connections per process exceed the open-file limit $(ulimit -n); use more processes" >&2
    exit 1
fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

for i in $(seq 1 "$PROCS"); do
    "$R/bench_server" --listen "127.0.0.1:$PORT" --control "127.0.0.1:$((PORT + i))" \
        --require-encryption --reuse-port >"$OUT/server$i.log" 2>&1 &
    pids+=($!)
done
for i in $(seq 1 "$PROCS"); do
    until curl -sf "http://127.0.0.1:$((PORT + i))/stats" >/dev/null; do sleep 0.2; done
done

stats() { # prints "authenticated rss per-process-split", summed over the servers
    for i in $(seq 1 "$PROCS"); do
        curl -sf "http://127.0.0.1:$((PORT + i))/stats"
        echo
    done | python3 -c '
import json, sys
s = [json.loads(l) for l in sys.stdin if l.strip()]
print(sum(x["authenticated"] for x in s), sum(x["rss"] for x in s),
      ",".join(str(x["authenticated"]) for x in s))'
}
read -r _ rss0 _ < <(stats)

lg=()
start=$(date +%s.%N)
for i in $(seq 1 "$PROCS"); do
    "$R/loadgen" --url "ws://127.0.0.1:$PORT/ws" --scenario idle --clients "$per" \
        --encrypted 1 --sources 8 --concurrency 100 --hold-secs "$HOLD" \
        --label "scale-$i" >"$OUT/loadgen$i.json" 2>"$OUT/loadgen$i.err" &
    lg+=($!)
done
total=$(( per * PROCS ))
auth=0
for _ in $(seq 1 600); do
    read -r auth rss1 split < <(stats)
    (( auth >= total )) && break
    sleep 1
done
connect_secs=$(python3 -c "import time; print(round(time.time() - $start, 1))")
for p in "${lg[@]}"; do wait "$p" || true; done

python3 - "$OUT" "$PROCS" <<PY
import json, sys
out, procs = sys.argv[1], int(sys.argv[2])
runs = []
for i in range(1, procs + 1):
    try:
        runs.append(json.loads(open(f"{out}/loadgen{i}.json").read().strip().splitlines()[-1]))
    except Exception as e:
        runs.append({"error": str(e)})
still = sum(r.get("still_connected", 0) for r in runs)
print(json.dumps({
    "tool": "sealwire-scale", "clients": $total, "processes": procs,
    "authenticated": $auth,
    "still_connected": still, "connect_failures": sum(r.get("connect_failures", 0) for r in runs),
    "connect_secs": $connect_secs, "hold_secs": $HOLD,
    "server_rss_bytes_per_conn": round(($rss1 - $rss0) / max($auth, 1)),
    "server_rss_total_bytes": $rss1, "per_process": [$split],
}))
PY
