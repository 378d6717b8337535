#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it (not editable) in a fresh venv outside
# the checkout, then from an empty folder serve, wait for /readyz and rerank once with the offline tiny
# model. Catches files the service reads at run time that the wheel leaves out.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
SHARED="${FATHOM_SHARED_DIR:-$(cd .. && pwd)/shared}"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d /tmp/fathom-wheel.XXXXXX)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Exactly the run-time lock (no test tools), then the wheel built and installed without fetching anything
# else: a dependency missing from pyproject.toml fails here, not on a user's machine.
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --require-hashes --no-deps -r "$REPO/requirements.lock"
"$WORK/venv/bin/pip" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WORK/dist" "$REPO"
"$WORK/venv/bin/pip" install --quiet --no-deps "$WORK"/dist/fathom-*.whl
"$WORK/venv/bin/pip" check
cd "$WORK"  # nothing of the checkout is reachable from here
PORT="${SMOKE_PORT:-$("$WORK/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
cat > smoke.toml <<TOML
data_dir = "$WORK/data"
[server]
port = $PORT
[embedding]
path = "$SHARED/models/all-MiniLM-L6-v2"
[rerank]
default_model = "cross-encoder-tiny-random"
[rerank.models."cross-encoder-tiny-random"]
path = "$SHARED/models/cross-encoder-tiny-random"
[rerank.models."BAAI/bge-reranker-v2-m3"]
enabled = false
TOML
export FATHOM_CONFIG="$WORK/smoke.toml"
KEY="$("$WORK/venv/bin/fathom" keys create --name smoke | tail -n 1)"
"$WORK/venv/bin/fathom" serve >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!

ready=""
for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ready=yes; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 1
done
if [ -z "$ready" ]; then
    echo "wheel smoke: the installed server never became ready; its log:" >&2
    cat "$WORK/serve.log" >&2
    exit 1
fi
answer="$(curl -fsS "http://127.0.0.1:$PORT/v1/rerank" -H "Authorization: Bearer $KEY" \
    -H "Content-Type: application/json" \
    -d '{"query": "what is machine learning?", "documents": ["Machine learning is a field of AI.", "Pizza."]}')"
echo "$answer" | "$WORK/venv/bin/python" -c '
import json, sys
body = json.load(sys.stdin)
assert sorted(r["index"] for r in body["results"]) == [0, 1], body
assert body["model"] == "cross-encoder-tiny-random", body
'
curl -fsS "http://127.0.0.1:$PORT/schema/openapi.json" >/dev/null
# The docs page's Swagger UI files come from the installed package, not from a CDN.
page="$(curl -fsS "http://127.0.0.1:$PORT/schema/swagger")"
case "$page" in
    *'src="/schema/assets/swagger-ui-bundle.js"'*) ;;
    *) echo "wheel smoke: /schema/swagger does not load Swagger UI from /schema/assets" >&2; exit 1 ;;
esac
curl -fsS "http://127.0.0.1:$PORT/schema/assets/swagger-ui-bundle.js" >/dev/null
echo "wheel smoke: the installed wheel served /readyz and a rerank"
