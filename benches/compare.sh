#!/usr/bin/env bash
# benches/compare.sh <label> <examples dir> <scenario args...>: fresh server, one loadgen run, JSON line out.
# SERVER_ARGS adds bench_server flags (e.g. SERVER_ARGS="--redis redis://127.0.0.1:6391 --history-broadcast").
set -u
# No pathname expansion: SERVER_ARGS may carry globs (--room-keys 'bench*').
set -f
label=$1; R=$2; shift 2
ulimit -n $(ulimit -Hn)
$R/bench_server --listen 127.0.0.1:18090 --control 127.0.0.1:18091 ${SERVER_ARGS:-} > /dev/null 2>&1 &
SW=$!
sleep 1.5
load=$(cut -d' ' -f1 /proc/loadavg)
$R/loadgen --url ws://127.0.0.1:18090/ws --control http://127.0.0.1:18091 --server-pid $SW --label "$label load=$load" "$@" 2>/dev/null
kill $SW; wait $SW 2>/dev/null
sleep 0.5
