# Shared by .ci/elasticsearch.sh, .ci/qdrant.sh and .ci/postgres.sh; sourced, never run:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The sourcing script sets LOG_NAME, RUN_DIR and, for a server it starts itself, PID_FILE.

log() { echo "${LOG_NAME}: $*" >&2; }

# Whether the process in PID_FILE is alive.
is_running() {
    [[ -f "${PID_FILE}" ]] && kill -0 "$(cat "${PID_FILE}")" 2>/dev/null
}

# Servers that refuse to run as root (CI containers often are root) run as `nobody`, owning only RUN_DIR.
as_service_user() {
    if ((EUID != 0)); then
        "$@"
        return
    fi
    chown -R nobody:nogroup "${RUN_DIR}"
    setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="${RUN_DIR}" "$@"
}

# wait_for_url URL TIMEOUT_S PAUSE_S: until URL answers 2xx; fails once TIMEOUT_S have passed or the
# process in PID_FILE has died.
wait_for_url() {
    local url="$1" deadline=$((SECONDS + $2)) pause="$3"
    until curl -fsS "${url}" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)) || ! is_running; then
            return 1
        fi
        sleep "${pause}"
    done
}

# stop_process TRIES PAUSE_S: SIGTERM the process in PID_FILE, give it TRIES × PAUSE_S to flush and
# exit, then SIGKILL. Nothing to do when it is not running.
stop_process() {
    is_running || return 0
    local pid
    pid="$(cat "${PID_FILE}")"
    kill "${pid}"
    for _ in $(seq 1 "$1"); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep "$2"
    done
    kill -9 "${pid}" 2>/dev/null || true
    log "stopped pid ${pid}"
}
