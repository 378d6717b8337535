"""Two `fathom serve` replicas on one PostgreSQL state, one Elasticsearch and one Qdrant server.

Requests are spread over both replicas, as a load balancer would: the key's quota is spent exactly once,
a revoked key is refused by both at once, and a rate limit is one limit, not one per replica.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth.keys import Keys
from service.settings import settings_from_dict
from service.state.stores import open_keys
from tests.conftest import MODELS
from tests.integration.live_server import fathom_serve, free_ports
from tests.integration.rerank_app import TINY
from tests.integration.search_app import (
    ELASTICSEARCH_URL,
    QDRANT_URL,
    needs_elasticsearch,
    needs_qdrant_server,
)
from tests.integration.state_db import fresh_database, needs_postgres

pytestmark = [*needs_postgres, *needs_elasticsearch, *needs_qdrant_server]

RERANK = {"query": "boundary layer", "documents": ["laminar flow over a plate", "wing flutter"]}


def replica_config(data_dir: Path, state_url: str) -> str:
    return f"""
data_dir = "{data_dir}"
[state]
url = "{state_url}"
[embedding]
path = "{MODELS / "all-MiniLM-L6-v2"}"
[rerank]
default_model = "{TINY}"
[rerank.models."BAAI/bge-reranker-v2-m3"]
enabled = false
[rerank.models."{TINY}"]
path = "{MODELS / TINY}"
[search]
lexical = "elasticsearch"
[elasticsearch]
url = "{ELASTICSEARCH_URL}"
index_prefix = "replicas-"
[qdrant]
url = "{QDRANT_URL}"
prefer_grpc = true
grpc_port = {int(QDRANT_URL.rsplit(":", 1)[1]) + 1}
collection_prefix = "replicas-"
"""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], Keys]]:
    """Both replicas' base URLs, and the shared key store as `fathom keys` on that config sees it."""
    root = tmp_path_factory.mktemp("replicas")
    with fresh_database() as url:
        configs = []
        for name in ("a", "b"):
            config = root / f"{name}.toml"
            config.write_text(replica_config(root / name, url))
            configs.append(config)
        keys = open_keys(settings_from_dict({"data_dir": str(root), "state": {"url": url}}))
        one, two = free_ports(2)
        try:
            with (
                fathom_serve(configs[0], one, root / "a.log") as first,
                fathom_serve(configs[1], two, root / "b.log") as second,
            ):
                yield [first, second], keys
        finally:
            keys.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def spread(urls: list[str], key: str, count: int) -> Counter[int]:
    """`count` concurrent reranks, alternating between the replicas; how many of each status."""
    async with httpx.AsyncClient(timeout=60) as client:

        async def call(i: int) -> int:
            response = await client.post(f"{urls[i % 2]}/v1/rerank", json=RERANK, headers=bearer(key))
            return response.status_code

        return Counter(await asyncio.gather(*(call(i) for i in range(count))))


def test_quota_is_spent_exactly_once_across_replicas(
    replicas: tuple[list[str], Keys], record_property: Any
) -> None:
    urls, keys = replicas
    key = keys.create("metered", quota=50)
    statuses = asyncio.run(spread(urls, key, 100))
    record_property("statuses", dict(statuses))
    print(f"replicas: quota 50, 100 concurrent requests over both: {dict(statuses)}")
    assert statuses == {200: 50, 402: 50}
    [metered] = [k for k in keys.list() if k.name == "metered"]
    assert metered.used == 50


def test_revocation_reaches_the_other_replica_within_a_second(
    replicas: tuple[list[str], Keys], record_property: Any
) -> None:
    urls, keys = replicas
    key = keys.create("leaver")
    for url in urls:
        assert httpx.post(f"{url}/v1/rerank", json=RERANK, headers=bearer(key), timeout=30).status_code == 200
    assert keys.revoke("leaver")  # what `fathom keys revoke leaver` does on this config
    revoked = time.monotonic()
    refused = {}
    for url in urls:
        while httpx.post(f"{url}/v1/rerank", json=RERANK, headers=bearer(key), timeout=30).status_code != 401:
            assert time.monotonic() - revoked < 1.0, f"{url} still accepts the revoked key"
            time.sleep(0.01)
        refused[url] = time.monotonic() - revoked
    record_property("refused_after_s", refused)
    print(f"replicas: revoked key refused after {', '.join(f'{s * 1000:.0f} ms' for s in refused.values())}")


def test_rate_limit_is_shared_across_replicas(replicas: tuple[list[str], Keys], record_property: Any) -> None:
    urls, keys = replicas
    key = keys.create("limited", rate_limit=30)
    started = time.monotonic()
    statuses = asyncio.run(spread(urls, key, 60))
    elapsed = time.monotonic() - started
    record_property("statuses", dict(statuses))
    print(f"replicas: 30/minute, 60 requests over both in {elapsed:.2f}s: {dict(statuses)}")
    # The burst is the per-minute limit, then one every 2 s: one limit for both, not 30 each.
    assert set(statuses) == {200, 429}
    assert 30 <= statuses[200] <= 30 + math.ceil(elapsed / 2)
