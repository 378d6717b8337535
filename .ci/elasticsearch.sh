#!/usr/bin/env bash
# A throwaway single-node Elasticsearch for the integration tests.
#
#   .ci/elasticsearch.sh start   # fetch (once), unzip (once), start in the background, wait until it answers
#   .ci/elasticsearch.sh resume  # start again on the data a killed node left (fault tests)
#   .ci/elasticsearch.sh stop    # kill it and remove its data, logs and config copy
#
# Environment: ES_PORT (default 9200), ES_JAVA_HOME (default: Temurin 25 when installed, else JAVA_HOME),
# MAVEN_REPO_LOCAL (default ~/.m2/repository).
# Then point the tests at it: FATHOM_TEST_ELASTICSEARCH_URL=http://127.0.0.1:$ES_PORT
#
# One node of a cluster instead (tests/integration/clusters.py starts three): ES_CLUSTER_NODES names every
# node as http_port:transport_port,... (this node's http port is ES_PORT); the node is named node-$ES_PORT
# and seeds from the others. `start` then returns once the process runs: a node cannot answer until a
# majority of the masters has joined, so the caller waits for the cluster's health.
#
# The integ-test-zip is the only distribution on Maven Central. It is a minimal server: besides the core
# it ships only the apm, transport-netty4, x-pack-core and x-pack-security modules. So there is no
# analysis-common (no `english` analyzer and no stemmer filters; the standard, simple, whitespace, stop and
# keyword analyzers are there) and no reindex module (no _delete_by_query). Fathom's Elasticsearch adapter
# works within those limits; see service/defaults/elasticsearch/passages.json.
set -euo pipefail

ES_VERSION="9.1.5"
ES_PORT="${ES_PORT:-9200}"
ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${ES_VERSION}:zip"
CACHE_DIR="${HOME}/.cache/fathom"
ES_HOME="${CACHE_DIR}/elasticsearch-${ES_VERSION}"
# Named explicitly: Maven's default follows the passwd home directory, not $HOME.
M2_REPO="${MAVEN_REPO_LOCAL:-${HOME}/.m2/repository}"
# One run directory per port, so `stop` finds what `start` made without anything being exported.
RUN_DIR="${TMPDIR:-/tmp}/fathom-elasticsearch-${ES_PORT}"
PID_FILE="${RUN_DIR}/elasticsearch.pid"
START_TIMEOUT=120

LOG_NAME="elasticsearch.sh"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

java_home() {
    if [[ -n "${ES_JAVA_HOME:-}" ]]; then
        echo "${ES_JAVA_HOME}"
    elif [[ -x /usr/lib/jvm/temurin-25-jdk-amd64/bin/java ]]; then
        # Elasticsearch 9 needs Java 21+; the system default here is 17.
        echo /usr/lib/jvm/temurin-25-jdk-amd64
    elif [[ -n "${JAVA_HOME:-}" ]]; then
        echo "${JAVA_HOME}"
    else
        log "no Java found: set ES_JAVA_HOME to a Java 21+ installation"
        exit 1
    fi
}

install_distribution() {
    if [[ -x "${ES_HOME}/bin/elasticsearch" ]]; then
        return
    fi
    local zip
    zip="${M2_REPO}/org/elasticsearch/distribution/integ-test-zip/elasticsearch/${ES_VERSION}/elasticsearch-${ES_VERSION}.zip"
    if [[ ! -f "${zip}" ]]; then
        log "fetching ${ARTIFACT} from Maven Central"
        mvn -q -B dependency:get -Dmaven.repo.local="${M2_REPO}" -Dartifact="${ARTIFACT}" -Dtransitive=false
        [[ -f "${zip}" ]] || { log "mvn did not put the zip at ${zip}"; exit 1; }
    fi
    log "unzipping into ${ES_HOME}"
    mkdir -p "${CACHE_DIR}"
    # Unzip beside the target and rename, so an interrupted unzip never leaves a half-made cache behind.
    local staging
    staging="$(mktemp -d "${CACHE_DIR}/unzip.XXXXXX")"
    unzip -q "${zip}" -d "${staging}"
    mv "${staging}/elasticsearch-${ES_VERSION}" "${ES_HOME}"
    rm -rf "${staging}"
}

wait_until_up() {
    if ! wait_for_url "http://127.0.0.1:${ES_PORT}/_cluster/health?wait_for_status=yellow&timeout=1s" \
        "${START_TIMEOUT}" 1; then
        log "Elasticsearch did not answer on port ${ES_PORT} within ${START_TIMEOUT}s; log tail:"
        tail -n 60 "${RUN_DIR}"/logs/*.log "${RUN_DIR}/stdout.log" 2>/dev/null >&2 || true
        stop
        exit 1
    fi
}

# Elasticsearch refuses to run as root (CI containers often are root): then it runs as `nobody` (lib.sh's
# as_service_user), from a hard-linked copy of the distribution under RUN_DIR, because the cache in root's
# home is not readable by other users. Hard links make the copy instant and free; `cp -r` is the fallback
# across file systems.
runnable_home() {
    if ((EUID != 0)); then
        echo "${ES_HOME}"
        return
    fi
    cp -al "${ES_HOME}" "${RUN_DIR}/home" 2>/dev/null || cp -r "${ES_HOME}" "${RUN_DIR}/home"
    echo "${RUN_DIR}/home"
}

start() {
    if is_running; then
        log "already running on port ${ES_PORT} (pid $(cat "${PID_FILE}"))"
        exit 1
    fi
    install_distribution
    rm -rf "${RUN_DIR}"
    mkdir -p "${RUN_DIR}/data" "${RUN_DIR}/logs" "${RUN_DIR}/tmp"
    # A private copy of config/: Elasticsearch writes its keystore there, and the cache stays pristine.
    cp -r "${ES_HOME}/config" "${RUN_DIR}/config"
    launch "$(runnable_home)"
}

# Start the node on what RUN_DIR holds, from the distribution at $1.
launch() {
    local home="$1"
    local discovery=(-E discovery.type=single-node -E transport.port=0)
    if [[ -n "${ES_CLUSTER_NODES:-}" ]]; then
        discovery=($(cluster_options))
    fi
    log "starting Elasticsearch ${ES_VERSION} on 127.0.0.1:${ES_PORT}"
    as_service_user env \
        ES_JAVA_HOME="$(java_home)" \
        ES_PATH_CONF="${RUN_DIR}/config" \
        ES_TMPDIR="${RUN_DIR}/tmp" \
        ES_JAVA_OPTS="-Xms512m -Xmx512m" \
        "${home}/bin/elasticsearch" -d -p "${PID_FILE}" \
        "${discovery[@]}" \
        -E network.host=127.0.0.1 \
        -E http.port="${ES_PORT}" \
        -E path.data="${RUN_DIR}/data" \
        -E path.logs="${RUN_DIR}/logs" \
        -E xpack.security.enabled=false \
        -E cluster.routing.allocation.disk.threshold_enabled=false \
        >"${RUN_DIR}/stdout.log" 2>&1 || {
        log "Elasticsearch failed to start; output:"
        tail -n 60 "${RUN_DIR}/stdout.log" >&2
        rm -rf "${RUN_DIR}"
        exit 1
    }
    if [[ -n "${ES_CLUSTER_NODES:-}" ]]; then
        log "cluster node started (pid $(cat "${PID_FILE}")); it answers once the masters have met"
        return
    fi
    wait_until_up
    log "up at http://127.0.0.1:${ES_PORT} (pid $(cat "${PID_FILE}"))"
}

# -E options for one node of ES_CLUSTER_NODES: its transport port, seeds and the initial masters.
cluster_options() {
    local seeds=() masters=() transport="" node http tport
    IFS=, read -ra nodes <<<"${ES_CLUSTER_NODES}"
    for node in "${nodes[@]}"; do
        http="${node%%:*}"
        tport="${node##*:}"
        seeds+=("127.0.0.1:${tport}")
        masters+=("node-${http}")
        [[ "${http}" == "${ES_PORT}" ]] && transport="${tport}"
    done
    [[ -n "${transport}" ]] || { log "ES_PORT ${ES_PORT} is not among ES_CLUSTER_NODES"; exit 1; }
    local IFS=,
    echo "-E cluster.name=fathom-test-${nodes[0]%%:*} -E node.name=node-${ES_PORT}" \
        "-E transport.port=${transport} -E discovery.seed_hosts=${seeds[*]}" \
        "-E cluster.initial_master_nodes=${masters[*]}"
}

resume() {
    if is_running; then
        log "already running on port ${ES_PORT} (pid $(cat "${PID_FILE}"))"
        exit 1
    fi
    [[ -d "${RUN_DIR}/data" ]] || { log "nothing to resume: no data in ${RUN_DIR}"; exit 1; }
    launch "$([[ -d "${RUN_DIR}/home" ]] && echo "${RUN_DIR}/home" || echo "${ES_HOME}")"
}

stop() {
    # Up to 30 s to flush and exit cleanly, then insist.
    stop_process 30 1
    rm -rf "${RUN_DIR}"
}

case "${1:-}" in
    start) start ;;
    resume) resume ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|resume|stop   (port from ES_PORT, default 9200)" >&2
        exit 2
        ;;
esac
