#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (autobahntestsuite 0.8.2, Python 2.7) against
# examples/autobahn_echo, sealwire's WebSocket stack with an echo handler, on 127.0.0.1 only.
# permessage-deflate (cases 12.*, 13.*) is excluded: sealwire never offers it.
#
#   benches/autobahn.sh [TIME_LIMIT_SECONDS]          (default 1800)
#
# Environment: AUTOBAHN_VENV (default /tmp/autobahn-venv) is a Python 2.7 virtualenv with
# autobahntestsuite; it is created when missing, from PYTHON2 (default: pyenv's 2.7.18).
# AUTOBAHN_PORT (default 9001), AUTOBAHN_OUT (default /tmp/autobahn-reports). Exits non-zero
# if any case FAILED. Results: docs/AUTOBAHN.md.
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${1:-1800}"
venv="${AUTOBAHN_VENV:-/tmp/autobahn-venv}"
port="${AUTOBAHN_PORT:-9001}"
out="${AUTOBAHN_OUT:-/tmp/autobahn-reports}"
python2="${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}"

if [ ! -x "$venv/bin/wstest" ]; then
  "$python2" -m pip install --user -q 'virtualenv<20.22'
  "$python2" -m virtualenv -q "$venv"
  # pip on Python 2.7 resolves the last releases that still support it.
  "$venv/bin/pip" install -q autobahntestsuite==0.8.2
fi

cargo build --release --example autobahn_echo
target="${CARGO_TARGET_DIR:-target}"
"$target/release/examples/autobahn_echo" "127.0.0.1:$port" &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

rm -rf "$out"
mkdir -p "$out"
cat > "$out/fuzzingclient.json" <<JSON
{
  "outdir": "$out",
  "servers": [{"agent": "sealwire", "url": "ws://127.0.0.1:$port/"}],
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
(cd "$out" && timeout "$limit" "$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json) \
  > "$out/wstest.log" 2>&1

# Counts per behaviour: the worse of a case's data behaviour and its close behaviour.
"$venv/bin/python" - "$out/index.json" <<'PY'
import json, sys, collections
index = json.load(open(sys.argv[1]))
rank = ["OK", "INFORMATIONAL", "NON-STRICT", "UNIMPLEMENTED", "WRONG CODE", "UNCLEAN", "FAILED"]
def worst(r):
    return max(r["behavior"], r["behaviorClose"], key=lambda b: rank.index(b) if b in rank else len(rank))
for agent, cases in sorted(index.items()):
    counts = collections.Counter(worst(r) for r in cases.values())
    print("%s: %d cases: %s" % (agent, len(cases), ", ".join("%s %d" % (b, counts[b]) for b in rank if counts[b])))
    for case, r in sorted(cases.items()):
        if worst(r) not in ("OK", "INFORMATIONAL"):
            print("  %s: %s / close %s" % (case, r["behavior"], r["behaviorClose"]))
    bad = [c for c, r in cases.items() if r["behavior"] == "FAILED" or r["behaviorClose"] == "FAILED"]
    sys.exit(1 if bad else 0)
PY
