#!/usr/bin/env bash
# A throwaway Qdrant server (../shared/bin/qdrant, 1.18.3) for the integration tests.
#
#   .ci/qdrant.sh start   # start in the background with a temporary storage folder, wait until ready
#   .ci/qdrant.sh resume  # start again on the storage a killed server left (fault tests)
#   .ci/qdrant.sh stop    # kill it and remove its storage
#
# Environment: QDRANT_PORT (HTTP, default 6333; gRPC is QDRANT_PORT+1), QDRANT_BIN (default $FATHOM_SHARED_DIR/bin/qdrant, FATHOM_SHARED_DIR defaulting to ../shared).
# Then point the tests at it: FATHOM_TEST_QDRANT_URL=http://127.0.0.1:$QDRANT_PORT
#
# One peer of a cluster instead: QDRANT_P2P_PORT (its peer-to-peer port) enables distributed mode; the
# first peer starts alone, the others with QDRANT_BOOTSTRAP=http://127.0.0.1:<first peer's p2p port>.
set -euo pipefail

QDRANT_PORT="${QDRANT_PORT:-6333}"
GRPC_PORT=$((QDRANT_PORT + 1))
HERE="$(cd "$(dirname "$0")/.." && pwd)"
QDRANT_BIN="${QDRANT_BIN:-${FATHOM_SHARED_DIR:-${HERE}/../shared}/bin/qdrant}"
RUN_DIR="${TMPDIR:-/tmp}/fathom-qdrant-${QDRANT_PORT}"
PID_FILE="${RUN_DIR}/qdrant.pid"
# Another folder (a small disk, for the out-of-space test) may hold the storage; `stop` leaves it alone.
STORAGE="${QDRANT_STORAGE:-${RUN_DIR}/storage}"
START_TIMEOUT=60

LOG_NAME="qdrant.sh"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start() {
    if is_running; then
        log "already running on port ${QDRANT_PORT} (pid $(cat "${PID_FILE}"))"
        exit 1
    fi
    [[ -x "${QDRANT_BIN}" ]] || { log "no qdrant binary at ${QDRANT_BIN}"; exit 1; }
    rm -rf "${RUN_DIR}"
    mkdir -p "${RUN_DIR}/snapshots" "${STORAGE}"
    launch
}

# Start the binary on what RUN_DIR holds, and wait until it is ready.
launch() {
    local cluster=()
    if [[ -n "${QDRANT_P2P_PORT:-}" ]]; then
        cluster=(--uri "http://127.0.0.1:${QDRANT_P2P_PORT}")
        [[ -z "${QDRANT_BOOTSTRAP:-}" ]] || cluster+=(--bootstrap "${QDRANT_BOOTSTRAP}")
    fi
    log "starting Qdrant on 127.0.0.1:${QDRANT_PORT} (gRPC ${GRPC_PORT}${QDRANT_P2P_PORT:+, p2p ${QDRANT_P2P_PORT}})"
    # Its working directory is RUN_DIR: Qdrant writes ./.qdrant-initialized and config lookups there.
    (
        cd "${RUN_DIR}"
        QDRANT__SERVICE__HOST=127.0.0.1 \
            QDRANT__SERVICE__HTTP_PORT="${QDRANT_PORT}" \
            QDRANT__SERVICE__GRPC_PORT="${GRPC_PORT}" \
            QDRANT__STORAGE__STORAGE_PATH="${STORAGE}" \
            QDRANT__STORAGE__SNAPSHOTS_PATH="${RUN_DIR}/snapshots" \
            QDRANT__TELEMETRY_DISABLED=true \
            QDRANT__LOG_LEVEL=WARN \
            QDRANT__CLUSTER__ENABLED="$([[ -n "${QDRANT_P2P_PORT:-}" ]] && echo true || echo false)" \
            QDRANT__CLUSTER__P2P__PORT="${QDRANT_P2P_PORT:-6335}" \
            nohup "${QDRANT_BIN}" "${cluster[@]}" >"${RUN_DIR}/stdout.log" 2>&1 &
        echo $! >"${PID_FILE}"
    )
    if ! wait_for_url "http://127.0.0.1:${QDRANT_PORT}/readyz" "${START_TIMEOUT}" 0.2; then
        log "Qdrant did not answer on port ${QDRANT_PORT} within ${START_TIMEOUT}s; log tail:"
        tail -n 40 "${RUN_DIR}/stdout.log" >&2 || true
        stop
        exit 1
    fi
    log "up at http://127.0.0.1:${QDRANT_PORT} (pid $(cat "${PID_FILE}"))"
}

resume() {
    if is_running; then
        log "already running on port ${QDRANT_PORT} (pid $(cat "${PID_FILE}"))"
        exit 1
    fi
    [[ -d "${STORAGE}" ]] || { log "nothing to resume: no storage at ${STORAGE}"; exit 1; }
    launch
}

stop() {
    stop_process 50 0.2
    rm -rf "${RUN_DIR}"
}

case "${1:-}" in
    start) start ;;
    resume) resume ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|resume|stop   (port from QDRANT_PORT, default 6333)" >&2
        exit 2
        ;;
esac
