#!/usr/bin/env bash
# The HTTP API with curl: start `convrec serve http`, wait for /health, call it, stop it.
#
#   examples/http_api.sh [WORKSPACE]        (PYTHON=..., PORT=... to override)
#
# X-User-Id / X-Tenant / X-Conversation-Id are set by the host (your backend), never by the
# model or the end user; a body that contains user_id is refused.
set -euo pipefail
PY=${PYTHON:-python}
PORT=${PORT:-8765}
WS=${1:-$(mktemp -d)}
BASE="http://127.0.0.1:$PORT"
export HF_HUB_OFFLINE=1

WORLD=$("$PY" -c 'from convrec.world import world_dir; print(world_dir())')
"$PY" -m convrec --workspace "$WS" ingest "$WORLD/articles" "$WORLD/products.jsonl"

"$PY" -m convrec --workspace "$WS" serve http --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.5; done
curl -sf "$BASE/health"; echo

echo "# suggest"
curl -s "$BASE/v1/suggest" -H 'Content-Type: application/json' \
  -H 'X-User-Id: demo-user' -H 'X-Conversation-Id: demo-chat' \
  -d '{"conversation": [{"role": "user", "content": "My order is a week late and tracking has not moved"}], "k": 2}'
echo
echo "# feedback"
curl -s "$BASE/v1/feedback" -H 'Content-Type: application/json' \
  -H 'X-User-Id: demo-user' -H 'X-Conversation-Id: demo-chat' \
  -d '{"item_id": "shipping-delays", "action": "clicked"}'
echo
echo "# a bad call: a structured error, HTTP 422"
curl -s "$BASE/v1/suggest" -H 'Content-Type: application/json' \
  -d '{"conversation": "User: hi", "k": 50}'
echo
