#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the shared-state tests: initdb into a temporary folder, run as an
# unprivileged user, listening on 127.0.0.1 only.
#
#   .ci/postgres.sh start   # install Debian's postgresql if missing, initdb, start, wait until it answers
#   .ci/postgres.sh resume  # start again on the data a killed server left (fault tests)
#   .ci/postgres.sh stop    # stop it and remove the folder
#
# Environment: PG_PORT (default 5432). Then: FATHOM_TEST_POSTGRES_URL=postgresql://fathom@127.0.0.1:$PG_PORT/postgres
set -euo pipefail

PG_PORT="${PG_PORT:-5432}"
RUN_DIR="${TMPDIR:-/tmp}/fathom-postgres-${PG_PORT}"
DATA="${RUN_DIR}/data"

LOG_NAME="postgres.sh"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bin_dir() {
    local dir
    # `|| true`: no match is the cue to install, not an error (set -e and pipefail are on).
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "${dir}" ]]; then
        log "installing Debian's postgresql"
        # This function's stdout is its answer: apt's chatter goes to stderr.
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        dir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    fi
    echo "${dir}"
}

start() {
    local bin
    bin="$(bin_dir)"
    rm -rf "${RUN_DIR}"
    mkdir -p "${RUN_DIR}"
    chmod 755 "${RUN_DIR}"
    log "initdb into ${DATA}"
    as_service_user "${bin}/initdb" -D "${DATA}" -U fathom --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"${RUN_DIR}/initdb.log" 2>&1 || { cat "${RUN_DIR}/initdb.log" >&2; exit 1; }
    launch "${bin}"
}

# pg_ctl start on DATA, as the service user; waits until it accepts connections.
launch() {
    local bin="$1"
    # PostgreSQL refuses to run as root: lib.sh's as_service_user runs it as `nobody` then.
    # Throwaway data: no fsync; enough connections for two replicas' pools and the tests.
    as_service_user "${bin}/pg_ctl" -D "${DATA}" -l "${RUN_DIR}/server.log" -w -t 60 start \
        -o "-p ${PG_PORT} -k ${RUN_DIR} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
        >/dev/null || { tail -n 40 "${RUN_DIR}/server.log" >&2; exit 1; }
    log "up at postgresql://fathom@127.0.0.1:${PG_PORT}/postgres"
}

resume() {
    [[ -d "${DATA}" ]] || { log "nothing to resume: no data at ${DATA}"; exit 1; }
    # A killed postmaster leaves its pid file; pg_ctl would take the server for running.
    rm -f "${DATA}/postmaster.pid"
    launch "$(bin_dir)"
}

stop() {
    if [[ -f "${DATA}/postmaster.pid" ]]; then
        as_service_user "$(bin_dir)/pg_ctl" -D "${DATA}" -m immediate -w stop >/dev/null || true
        log "stopped"
    fi
    rm -rf "${RUN_DIR}"
}

case "${1:-}" in
    start) start ;;
    resume) resume ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|resume|stop   (port from PG_PORT, default 5432)" >&2
        exit 2
        ;;
esac
