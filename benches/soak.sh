#!/usr/bin/env bash
# Soak test: two `sealwire serve` instances on one Redis, thousands of encrypted clients,
# churn, continuous publishing and Redis restarts, for a bounded time.
#
#   benches/soak.sh [--duration SECS] [--clients N] [--churn FRACTION] [--rooms N]
#                   [--publish-ms MS] [--restarts N] [--redis-down SECS] [--sample SECS]
#                   [--profile hardened|compat|mixed]
#
# Each flag has an environment variable of the same meaning: DURATION (600), CLIENTS (5000),
# CHURN (0.10 per minute), ROOMS (50), PUBLISH_MS (500), RESTARTS (2), REDIS_DOWN (3),
# SAMPLE (30), PROFILE (mixed). KEEP=1 keeps the work directory (logs, Redis files);
# SKIP_BUILD=1 uses the binaries already built. SERVE_ARGS adds `sealwire serve` flags to both
# instances (e.g. SERVE_ARGS="--history-rooms soak-*": history in Redis Streams).
#
# The script starts one redis-server (own directory, free port) and two instances (free
# ports, --require-encryption, JWT auth, the admin API), then runs examples/soak (the
# driver): it connects the clients, and for DURATION seconds churns them, publishes
# sequence-numbered messages through both instances' admin APIs and kills and restarts Redis
# RESTARTS times. It prints the instances' RSS per connection over time and a summary line,
# and exits non-zero on a loss outside the restart windows, a decryption failure, a
# duplicate or reordered message, a failed publish, a crashed instance or a bus reconnection
# while Redis was up (docs/OPERATIONS.md, "Soak test"). Everything it started is stopped on
# exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-600}
CLIENTS=${CLIENTS:-5000}
CHURN=${CHURN:-0.10}
ROOMS=${ROOMS:-50}
PUBLISH_MS=${PUBLISH_MS:-500}
RESTARTS=${RESTARTS:-2}
REDIS_DOWN=${REDIS_DOWN:-3}
SAMPLE=${SAMPLE:-30}
PROFILE=${PROFILE:-mixed}
KEEP=${KEEP:-0}

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --duration) DURATION=$2 ;;
        --clients) CLIENTS=$2 ;;
        --churn) CHURN=$2 ;;
        --rooms) ROOMS=$2 ;;
        --publish-ms) PUBLISH_MS=$2 ;;
        --restarts) RESTARTS=$2 ;;
        --redis-down) REDIS_DOWN=$2 ;;
        --sample) SAMPLE=$2 ;;
        --profile) PROFILE=$2 ;;
        -h | --help) usage 0 ;;
        *) echo "soak: unknown argument $1" >&2; usage 2 ;;
    esac
    shift 2 || { echo "soak: $1 needs a value" >&2; exit 2; }
done
for v in DURATION CLIENTS ROOMS PUBLISH_MS RESTARTS REDIS_DOWN SAMPLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "soak: $v must be a whole number, not '${!v}'" >&2; exit 2; }
done
command -v redis-server >/dev/null || { echo "soak: redis-server is not installed" >&2; exit 2; }

TARGET=${CARGO_TARGET_DIR:-target}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release --quiet --bin sealwire --example soak
fi
BIN=$TARGET/release

ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < CLIENTS + 1024)); then
    echo "soak: the open-file limit $(ulimit -n) is too low for $CLIENTS clients in one driver" >&2
    exit 2
fi

W=$(mktemp -d /tmp/sealwire-soak.XXXXXX)
pids=()
driver=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [[ -n $driver ]] && kill "$driver" 2>/dev/null
    ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null
    for _ in $(seq 1 50); do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    ((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
    [[ -f $W/redis/redis.pid ]] && kill -KILL "$(cat "$W/redis/redis.pid")" 2>/dev/null
    wait 2>/dev/null
    if [[ $KEEP == 1 || $rc -ne 0 ]]; then
        echo "soak: logs kept in $W" >&2
    else
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r RPORT P1 P2 < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')

# Redis: daemonized with a pid file, so that the driver can kill and restart it.
mkdir -p "$W/redis"
cat >"$W/redis/redis.conf" <<EOF
port $RPORT
bind 127.0.0.1
daemonize yes
pidfile $W/redis/redis.pid
logfile $W/redis/redis.log
dir $W/redis
save ""
appendonly no
EOF
redis-server "$W/redis/redis.conf"
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 100); do answers "$RPORT" && break; sleep 0.1; done
answers "$RPORT" || { echo "soak: redis-server did not start" >&2; cat "$W/redis/redis.log" >&2; exit 2; }

export SOAK_JWT_SECRET=$(head -c 48 /dev/urandom | base64 -w0)
export SOAK_ADMIN_TOKEN=$(head -c 24 /dev/urandom | base64 -w0)
MAXC=$((CLIENTS + 1000))
for port in "$P1" "$P2"; do
    SEALWIRE_JWT_SECRET=$SOAK_JWT_SECRET SEALWIRE_ADMIN_TOKEN=$SOAK_ADMIN_TOKEN \
        "$BIN/sealwire" serve --listen "127.0.0.1:$port" --redis-url "redis://127.0.0.1:$RPORT" \
        --require-encryption --allow-rooms 'soak-*' \
        --max-connections "$MAXC" --max-connections-per-ip "$MAXC" ${SERVE_ARGS:-} \
        >"$W/server-$port.log" 2>&1 &
    pids+=($!)
done
for i in 0 1; do
    port=$([[ $i == 0 ]] && echo "$P1" || echo "$P2")
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$port/socket/health" >/dev/null && break
        kill -0 "${pids[$i]}" 2>/dev/null || { echo "soak: instance on $port exited" >&2; cat "$W/server-$port.log" >&2; exit 2; }
        sleep 0.1
    done
done

echo "soak: redis 127.0.0.1:$RPORT, instances 127.0.0.1:$P1 (pid ${pids[0]}) and 127.0.0.1:$P2 (pid ${pids[1]}), work dir $W, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# The driver ends on its own after DURATION; the timeout only bounds a run that hangs.
timeout --signal=INT $((DURATION + 900)) "$BIN/examples/soak" \
    --urls "ws://127.0.0.1:$P1/ws,ws://127.0.0.1:$P2/ws" --pids "${pids[0]},${pids[1]}" \
    --clients "$CLIENTS" --duration-secs "$DURATION" --churn "$CHURN" --rooms "$ROOMS" \
    --publish-ms "$PUBLISH_MS" --profile "$PROFILE" --sample-secs "$SAMPLE" \
    --redis-restarts "$RESTARTS" --redis-down-secs "$REDIS_DOWN" \
    --redis-conf "$W/redis/redis.conf" --redis-pidfile "$W/redis/redis.pid" \
    --redis-port "$RPORT" --redis-server "$(command -v redis-server)" &
driver=$!
set +e
wait "$driver"
rc=$?
set -e
driver=
for port in "$P1" "$P2"; do
    echo "soak: instance $port log: $(grep -c ' WARN ' "$W/server-$port.log") warnings, $(grep -c ' ERROR ' "$W/server-$port.log") errors"
done
echo "soak: load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$rc"
