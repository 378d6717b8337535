"""Three-node Elasticsearch and three-peer Qdrant clusters on loopback, for the node-loss test.

Each node is started by the CI scripts (.ci/elasticsearch.sh, .ci/qdrant.sh) with cluster options, so
tests and CI run servers one way. The node lists come from the environment:

    FATHOM_TEST_ES_CLUSTER="9201:9301,9202:9302,9203:9303"       # http:transport per node
    FATHOM_TEST_QDRANT_CLUSTER="6336:6338,6339:6341,6342:6344"   # http:p2p per peer (gRPC is http+1)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import REPO, SHARED

ES_CLUSTER = os.environ.get("FATHOM_TEST_ES_CLUSTER", "")
QDRANT_CLUSTER = os.environ.get("FATHOM_TEST_QDRANT_CLUSTER", "")
TMP = Path(os.environ.get("TMPDIR", "/tmp"))
FORM_TIMEOUT = 180.0


@dataclass(frozen=True)
class Node:
    """One server process of a cluster: its HTTP port and the pid file its CI script wrote."""

    http_port: int
    pid_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def kill(self) -> None:
        """kill -9: the node vanishes without a goodbye to its peers."""
        os.kill(int(self.pid_file.read_text().strip()), signal.SIGKILL)


def pairs(spec: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (item.split(":") for item in spec.split(","))]


def script(name: str, command: str, **env: str) -> None:
    subprocess.run(
        ["bash", str(REPO / ".ci" / name), command],
        env={**os.environ, "FATHOM_SHARED_DIR": str(SHARED), **env},
        check=True,
        timeout=FORM_TIMEOUT,
    )


def wait_for(what: str, ready: Callable[[], bool], timeout: float = FORM_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout:.0f}s")
        time.sleep(0.5)


def answers(url: str, check: Callable[[httpx.Response], bool]) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return check(httpx.get(url, timeout=5.0))
        except httpx.HTTPError:
            return False

    return probe


@contextmanager
def elasticsearch_cluster() -> Iterator[list[Node]]:
    """Three master-eligible data nodes with 512m heaps; stopped and wiped on exit."""
    nodes = pairs(ES_CLUSTER)
    with ExitStack() as stack:
        for http, _ in nodes:
            stack.callback(script, "elasticsearch.sh", "stop", ES_PORT=str(http))
            script("elasticsearch.sh", "start", ES_PORT=str(http), ES_CLUSTER_NODES=ES_CLUSTER)
        first = f"http://127.0.0.1:{nodes[0][0]}"
        health = f"{first}/_cluster/health?wait_for_nodes={len(nodes)}&wait_for_status=green&timeout=5s"
        wait_for("elasticsearch cluster", answers(health, lambda r: r.status_code == 200))
        yield [Node(http, TMP / f"fathom-elasticsearch-{http}" / "elasticsearch.pid") for http, _ in nodes]


@contextmanager
def qdrant_cluster() -> Iterator[list[Node]]:
    """Three peers; the first forms the cluster, the others join it. Stopped and wiped on exit."""
    peers = pairs(QDRANT_CLUSTER)
    with ExitStack() as stack:
        bootstrap = f"http://127.0.0.1:{peers[0][1]}"
        for index, (http, p2p) in enumerate(peers):
            stack.callback(script, "qdrant.sh", "stop", QDRANT_PORT=str(http))
            joining = {"QDRANT_BOOTSTRAP": bootstrap} if index else {}
            script("qdrant.sh", "start", QDRANT_PORT=str(http), QDRANT_P2P_PORT=str(p2p), **joining)
        cluster = f"http://127.0.0.1:{peers[0][0]}/cluster"
        wait_for(
            "qdrant cluster",
            answers(
                cluster, lambda r: r.status_code == 200 and len(r.json()["result"]["peers"]) == len(peers)
            ),
        )
        yield [Node(http, TMP / f"fathom-qdrant-{http}" / "qdrant.pid") for http, _ in peers]
