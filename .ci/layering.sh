#!/usr/bin/env bash
# Keeps the dependency arrows of the layout honest:
#   protocol <- crypto <- server <- {transport, bus},  protocol <- crypto <- client,
#   protocol <- crypto <- bus/emitter.rs (the emitter never needs a server),
#   protocol <- publish <- {server, bus/emitter.rs, compat} (one way to publish)
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # check <dir-or-file> <forbidden regex> <why>
  # Code lines only: doc comments may mention other layers.
  if grep -rnE "$2" $1 --include=*.rs | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//'; then
    echo "layering violation in $1: $3" >&2
    fail=1
  fi
}
check src/protocol 'crate::(crypto|server|transport|bus|client|emitter|compat|publish)|super::super' "protocol is pure wire types"
check src/publish  'crate::(crypto|server|transport|bus|client|emitter|compat)' "publish builds on protocol alone"
check src/crypto   'crate::(server|transport|bus|client|emitter|compat|publish)' "crypto imports only protocol"
check src/crypto   'tokio|std::net|std::fs' "crypto does no I/O"
check src/server   'crate::(transport|bus|client|emitter|compat)|redis::' "the core never names transports, Redis or the client"
check src/server   'tungstenite|socketioxide|axum::' "the core speaks frames (server/socket.rs), not a WebSocket or HTTP library"
check src/client   'crate::(server|transport|bus|emitter|compat|publish)' "the client SDK never imports the server"
check src/bus/emitter.rs 'crate::(server|transport|client|compat)|super::super' "the emitter builds on protocol and crypto, never on the server"
# One concept per file: none in src/ grows past 500 lines (split it; tests may live beside it).
while IFS= read -r f; do
  n=$(wc -l < "$f")
  if [ "$n" -gt 500 ]; then
    echo "$f has $n lines; split it (one concept per file, at most 500 lines)" >&2
    fail=1
  fi
done < <(find src -name '*.rs')
[ "$fail" -eq 0 ] && echo "layering ok"
exit "$fail"
