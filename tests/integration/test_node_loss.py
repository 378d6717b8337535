"""Clusters that lose a node: Fathom on a 3-node Elasticsearch and a 3-peer Qdrant, one of each killed.

Collections are created with one replica of every shard (Elasticsearch replicas = 1, Qdrant
replication_factor = 2), spread over three shards so that every node holds some of them. After kill -9 of
the elected Elasticsearch master and of a Qdrant peer, searches must still return the full, undegraded
results they gave before, and new documents must still be written to both stores and found.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.conftest import bearer
from tests.integration.clusters import ES_CLUSTER, QDRANT_CLUSTER, Node, elasticsearch_cluster, qdrant_cluster
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, qdrant_server, search_settings

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.clusters,
    pytest.mark.skipif(
        not (ES_CLUSTER and QDRANT_CLUSTER),
        reason="FATHOM_TEST_ES_CLUSTER and FATHOM_TEST_QDRANT_CLUSTER are not set",
    ),
]

DOCS = cranfield(limit=120)
BEFORE, AFTER = DOCS[:100], DOCS[100:]
QUERIES = [doc.title for doc in BEFORE[::10]]
COLLECTION = "survivors"
PATH = f"/v1/collections/{COLLECTION}/documents"
# How long the clusters may take to notice the loss and answer fully again.
RECOVERY_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[list[Node], list[Node]]]:
    with elasticsearch_cluster() as es, qdrant_cluster() as qdrant:
        yield es, qdrant


@pytest.fixture(scope="module")
def settings(clusters: tuple[list[Node], list[Node]], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    es, qdrant = clusters
    settings = search_settings(
        tmp_path_factory.mktemp("node-loss"),
        "elasticsearch",
        elasticsearch_url=",".join(node.url for node in es),
        qdrant=qdrant_server(qdrant[0].url, shards=3, replication_factor=2),
        rerank={"enabled": False},
    )
    settings.elasticsearch.shards, settings.elasticsearch.replicas = 3, 1
    return settings


@pytest.fixture(scope="module")
async def fathom(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    headers = bearer(new_key(settings, "ops"))
    async with running(settings) as client:
        yield client, headers


def documents(docs: list[Any]) -> dict[str, Any]:
    return {"documents": [{"id": d.id, "title": d.title, "text": d.text} for d in docs]}


async def ranked(fathom: tuple[httpx.AsyncClient, dict[str, str]], query: str) -> tuple[list[str], Any]:
    client, headers = fathom
    response = await client.post(
        "/v1/search", json={"query": query, "collection": COLLECTION, "top_k": 10}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return [hit["id"] for hit in body["hits"]], body["degraded"]


def elected_master(es: list[Node]) -> Node:
    [master] = httpx.get(f"{es[0].url}/_cat/master?format=json", timeout=10).json()
    return next(node for node in es if master["node"] == f"node-{node.http_port}")


def layout(es: list[Node], qdrant: list[Node], index: str, collection: str) -> tuple[Any, Any]:
    shards = httpx.get(f"{es[0].url}/_cat/shards/{index}?format=json", timeout=10).json()
    info = httpx.get(f"{qdrant[0].url}/collections/{collection}/cluster", timeout=10).json()["result"]
    return shards, info


async def test_search_and_writes_survive_the_loss_of_a_node(
    fathom: tuple[httpx.AsyncClient, dict[str, str]],
    clusters: tuple[list[Node], list[Node]],
    settings: Settings,
    record_property: Any,
) -> None:
    client, headers = fathom
    es, qdrant = clusters
    created = await client.put(f"/v1/collections/{COLLECTION}", headers=headers)
    assert created.status_code == 201, created.text
    pushed = await client.post(PATH, json=documents(BEFORE), headers=headers)
    assert pushed.status_code == 200 and pushed.json()["added"] == len(BEFORE), pushed.text
    shards, qdrant_info = layout(
        es,
        qdrant,
        settings.elasticsearch.index_prefix + COLLECTION,
        settings.qdrant.collection_prefix + COLLECTION,
    )
    assert len(shards) == 6 and {s["state"] for s in shards} == {"STARTED"}, (
        shards
    )  # 3 primaries + 3 replicas
    assert len(qdrant_info["local_shards"]) + len(qdrant_info["remote_shards"]) == 6, qdrant_info

    expected = {}
    for query in QUERIES:
        ids, degraded = await ranked(fathom, query)
        assert len(ids) == 10 and degraded == []
        expected[query] = ids

    master, peer = elected_master(es), qdrant[1]
    master.kill()
    peer.kill()
    killed = time.monotonic()

    # Every answer from the kill on is recorded: how long until every query is full and undegraded again.
    answers = degraded_answers = 0
    while True:
        results = [await ranked(fathom, query) for query in QUERIES]
        answers += len(results)
        degraded_answers += sum(1 for _, degraded in results if degraded)
        if all(
            ids == expected[q] and not degraded for q, (ids, degraded) in zip(QUERIES, results, strict=True)
        ):
            break
        assert time.monotonic() - killed < RECOVERY_TIMEOUT, results
    full_after = time.monotonic() - killed
    record_property("full_results_after_s", round(full_after, 2))
    record_property("degraded_answers", f"{degraded_answers}/{answers}")
    print(f"node loss: full results {full_after:.2f}s after the kill; {degraded_answers}/{answers} degraded")

    # Writes: new documents reach both stores and are found, on what is left of each cluster.
    started = time.monotonic()
    pushed = await client.post(PATH, json=documents(AFTER), headers=headers)
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["added"] == len(AFTER) and pushed.json()["failed"] == 0, pushed.json()
    print(f"node loss: {len(AFTER)} documents written in {time.monotonic() - started:.2f}s")
    for doc in AFTER:
        ids, degraded = await ranked(fathom, doc.title)
        assert doc.id in ids and degraded == []
    info = (await client.get(f"/v1/collections/{COLLECTION}", headers=headers)).json()
    assert info["stores"]["lexical"]["documents"] == info["stores"]["vector"]["documents"] == len(DOCS), info
