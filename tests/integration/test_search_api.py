"""POST /v1/search through HTTP on real stores: Tantivy or Elasticsearch, Qdrant local mode or a server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.backends.qdrant import QdrantIndex
from tests.conftest import bearer
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import (
    cranfield,
    index_documents,
    needs_elasticsearch,
    needs_qdrant_server,
    qdrant_server,
    search_settings,
)

pytestmark = pytest.mark.anyio
DOCS = cranfield(limit=80)


# (lexical store, vector store): each lexical store on local Qdrant, and the embedded pair's Tantivy on
# a Qdrant server over gRPC.
STACKS = [
    pytest.param(("tantivy", "local"), id="tantivy"),
    pytest.param(("elasticsearch", "local"), marks=needs_elasticsearch, id="elasticsearch"),
    pytest.param(("tantivy", "server"), marks=needs_qdrant_server, id="tantivy-qdrant-server"),
]


@pytest.fixture(params=STACKS, scope="module")
def stack(request: pytest.FixtureRequest) -> tuple[str, str]:
    lexical, vectors = request.param
    return str(lexical), str(vectors)


@pytest.fixture(scope="module")
async def client(
    stack: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    lexical, vectors = stack
    qdrant = qdrant_server() if vectors == "server" else None
    settings = search_settings(tmp_path_factory.mktemp(f"search-{lexical}"), lexical, qdrant=qdrant)
    report = await index_documents(settings, "cran", DOCS)
    assert report.added == len(DOCS) and report.failed == 0
    key = new_key(settings, "searcher")
    async with running(settings) as http:
        yield http, key
    # Leave no index behind on a shared Elasticsearch.
    from service.backends.stack import open_lexical

    store = open_lexical(settings)
    await store.drop_collection("cran")
    await store.close()
    if qdrant:
        vector_store = QdrantIndex(settings.qdrant, dimensions=384)
        await vector_store.drop_collection("cran")
        await vector_store.close()


async def search(client: tuple[httpx.AsyncClient, str], **body: Any) -> httpx.Response:
    http, key = client
    return await http.post("/v1/search", json=body, headers=bearer(key))


async def test_hits_carry_evidence_timings_and_snippets(client: tuple[httpx.AsyncClient, str]) -> None:
    target = DOCS[11]
    # The test reranker has random weights, so ranking quality is judged on the fused order.
    fused = await search(client, query=target.title, collection="cran", top_k=5, rerank={"enabled": False})
    assert fused.json()["hits"][0]["id"] == target.id
    response = await search(client, query=target.title, collection="cran", top_k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] == []
    hits = body["hits"]
    assert 1 <= len(hits) <= 5 and len({h["id"] for h in hits}) == len(hits)
    top = next(
        h
        for h in (await search(client, query=target.title, collection="cran", top_k=50)).json()["hits"]
        if h["id"] == target.id
    )
    assert top["title"] == target.title and top["metadata"]["year"] == target.metadata["year"]
    assert top["evidence"]["bm25"]["rank"] is not None and top["evidence"]["vector"]["rank"] is not None
    assert top["evidence"]["fused"]["score"] > 0
    assert 0 <= top["evidence"]["rerank"]["score"] <= 1 and top["score"] == top["evidence"]["rerank"]["score"]
    assert "<em>" in top["snippet"]
    assert {"lexical", "embed", "vector", "fusion", "rerank", "total"} <= set(body["timings"])


async def test_without_rerank_scores_are_fused(client: tuple[httpx.AsyncClient, str]) -> None:
    response = await search(client, query="boundary layer", collection="cran", rerank={"enabled": False})
    hits = response.json()["hits"]
    assert hits and all("score" not in h["evidence"]["rerank"] for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


async def test_filters_apply_in_both_retrievers(client: tuple[httpx.AsyncClient, str]) -> None:
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"kind": "even"}, lambda m: m["kind"] == "even"),
        ({"year": {"in": [1951, 1952]}}, lambda m: m["year"] in (1951, 1952)),
        (
            {"year": {"gte": 1960, "lt": 1965}, "kind": "odd"},
            lambda m: 1960 <= m["year"] < 1965 and m["kind"] == "odd",
        ),
    ]
    for filter_, holds in cases:
        response = await search(client, query="wing lift", collection="cran", filter=filter_, top_k=20)
        hits = response.json()["hits"]
        assert hits, filter_
        assert all(holds(h["metadata"]) for h in hits), filter_
        for hit in hits:  # each retriever that saw the hit saw it under the filter
            assert "rank" in hit["evidence"]["bm25"] or "rank" in hit["evidence"]["vector"]


async def test_passages_and_min_score(client: tuple[httpx.AsyncClient, str]) -> None:
    passages = (
        await search(client, query="heat transfer", collection="cran", passages=True, top_k=10)
    ).json()
    assert all("#" in h["chunk_id"] for h in passages["hits"])
    strict = (await search(client, query="heat transfer", collection="cran", min_score=0.99)).json()
    assert all(h["score"] >= 0.99 for h in strict["hits"])


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"query": "", "collection": "cran"}, 400, "query must not be empty"),
        ({"query": "wing", "collection": "nope"}, 404, 'collection "nope" does not exist'),
        ({"query": "wing", "collection": "crna"}, 404, 'does not exist; did you mean "cran"?'),
        ({"query": "wing", "collection": "cran", "filter": {"year": {"between": [1, 2]}}}, 400, "year"),
        ({"query": "wing", "collection": "cran", "filter": ["year"]}, 400, "filter"),
        ({"query": "wing", "collection": "cran", "top_k": 0}, 400, "top_k must be at least 1"),
        ({"query": "wing", "collection": "cran", "top_k": 1000}, 400, "top_k must be between 1 and"),
        ({"query": "wing", "collection": "cran", "topk": 3}, 400, "unknown field `topk`"),
        (
            {"query": "wing", "collection": "cran", "rerank": {"depht": 3}},
            400,
            "unknown field `rerank.depht`",
        ),
        ({"query": "wing", "collection": "cran", "rerank": {"model": "nope"}}, 400, "unknown rerank model"),
        (
            {"query": "wing", "collection": "cran", "fusion": {"weights": {"lexical": 0, "vector": 0}}},
            400,
            "weights",
        ),
    ],
)
async def test_bad_requests_say_what_to_fix(
    client: tuple[httpx.AsyncClient, str], body: dict[str, Any], status: int, fragment: str
) -> None:
    response = await search(client, **body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


async def test_search_needs_a_key(client: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = client
    response = await http.post("/v1/search", json={"query": "wing", "collection": "cran"})
    assert response.status_code == 401


async def test_a_dead_lexical_backend_degrades_instead_of_failing(tmp_path: Path) -> None:
    """Elasticsearch down (nothing listens on the port): the vector side answers and says so."""
    settings = search_settings(tmp_path, "tantivy")
    await index_documents(settings, "cran", DOCS[:20])
    dead = search_settings(
        tmp_path, "elasticsearch", elasticsearch_url="http://127.0.0.1:9", lexical_timeout=2.0
    )
    key = new_key(settings, "degraded", quota=2)
    async with running(dead) as http:
        headers = bearer(key)
        response = await http.post(
            "/v1/search",
            json={"query": DOCS[3].title, "collection": "cran", "rerank": {"enabled": False}},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert [d["stage"] for d in body["degraded"]] == ["lexical"]
        # The dead backend's URL is for the log, not the client: a generic stage reason only.
        assert body["degraded"][0]["reason"] == "unavailable"
        assert "127.0.0.1" not in response.text and "http://" not in response.text
        assert body["hits"] and all(h["evidence"]["bm25"] == {} for h in body["hits"])
        assert body["hits"][0]["id"] == DOCS[3].id
        metrics = (await http.get("/metrics")).text
        assert 'fathom_search_degraded_total{stage="lexical"} 1.0' in metrics
        # one search unit per query: the quota of 2 allows one more, then 402
        assert (
            await http.post("/v1/search", json={"query": "x", "collection": "cran"}, headers=headers)
        ).status_code == 200
        assert (
            await http.post("/v1/search", json={"query": "x", "collection": "cran"}, headers=headers)
        ).status_code == 402


async def test_readiness_reports_search(client: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = client
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["search"] == "ready"


async def test_search_on_a_rerank_only_replica_is_503(tmp_path: Path) -> None:
    settings = search_settings(tmp_path, enabled=False)
    key = new_key(settings, "replica")
    async with running(settings) as http:
        response = await http.post(
            "/v1/search",
            json={"query": "wing", "collection": "cran"},
            headers=bearer(key),
        )
        ready = await http.get("/readyz")
    assert response.status_code == 503 and "switched off" in response.json()["error"]["message"]
    assert ready.status_code == 200 and ready.json()["search"] == "disabled"


@pytest.mark.parametrize(
    "filter_",
    [
        {"year": 2**64},
        {"year": 2**63},
        {"year": -(2**63) - 1},
        {"year": {"in": [1950, 2**64]}},
        {"year": {"gte": 2**64}},
        {"year": {"lt": -(2**70)}},
        {"year": {"lte": 1e19}},
    ],
)
async def test_numbers_past_64_bits_in_a_filter_are_400(
    client: tuple[httpx.AsyncClient, str], filter_: dict[str, Any]
) -> None:
    """Once a 200 with the lexical stage degraded (equality), or with Tantivy matching the wrong years
    (a range bound it read as text)."""
    response = await search(client, query="wing", collection="cran", filter=filter_)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith('filter "year": ') and "out of range" in message, message


async def test_numbers_at_the_64_bit_limits_filter_normally(client: tuple[httpx.AsyncClient, str]) -> None:
    for filter_ in ({"year": 2**63 - 1}, {"year": {"gte": -(2**63)}}):
        response = await search(client, query="wing", collection="cran", filter=filter_)
        assert response.status_code == 200 and response.json()["degraded"] == [], response.text


async def lexical_ids(client: tuple[httpx.AsyncClient, str], query: str, **body: Any) -> list[str]:
    """Document ids of the BM25 side alone (vector weight 0, no rerank), as /v1/search answers them."""
    response = await search(
        client,
        query=query,
        collection="cran",
        top_k=10,
        fusion={"weights": {"lexical": 1, "vector": 0}},
        rerank={"enabled": False},
        **body,
    )
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


async def test_typos_are_tolerated_unless_the_request_turns_it_off(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    # Document 1's title, "experimental investigation of the aerodynamics of a wing in a slipstream",
    # with a typo in each long word: nothing matches by BM25 alone.
    typed = "experimentl invesitgation aerodynamcs slipstraem"
    assert (await lexical_ids(client, typed))[0] == "1"  # on by default ([search] typo_tolerance)
    assert await lexical_ids(client, typed, typo_tolerance=False) == []


async def test_the_last_word_matches_as_a_prefix_when_the_request_says_so(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    typed = "experimental investigation of the aerodyn"
    assert (await lexical_ids(client, typed, prefix=True))[0] == "1"
    assert "1" not in (await lexical_ids(client, "aerodyn wi", prefix=True))  # "wi": under 3 letters
    assert await lexical_ids(client, "aerodyn") == []
