"""The HTTP layer on a prepared runtime: a real key store, a pipeline on in-memory fakes, no models.

create_app(settings, runtime=...) leaves the runtime to its owner, so these run in milliseconds; the
same routes on the real stores and models are tested in tests/integration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.auth.keys import KeyStore
from service.metrics import Metrics
from service.rerank.registry import ModelRegistry
from service.runtime import Runtime
from service.search.pipeline import SearchPipeline
from service.search_service import SearchParts, SearchService
from service.settings import Settings, settings_from_dict
from tests.unit.search_fakes import FUSED_DOCS, FakeCatalog, FakeEmbedder, FakeLexical, FakeVectors

pytestmark = pytest.mark.anyio
DEPENDENCY_NAMES = {
    "runtime",
    "settings",
    "metrics",
    "keys",
    "models",
    "search_service",
    "writer",
    "embedder",
}


def fake_runtime(data_dir: Path, *, search_open: bool = True) -> Runtime:
    # The fakes' vectors score alike for every query, so a measured floor would hide them all.
    settings: Settings = settings_from_dict({"data_dir": str(data_dir), "search": {"vector_floor": "off"}})
    vectors = FakeVectors()
    pipeline = SearchPipeline(FakeLexical(), vectors, FakeEmbedder(), None, settings.search)
    # Never started: its models stay "loading", which no test here waits for.
    models = ModelRegistry(settings.rerank, cache_dir=data_dir / "models")
    parts = SearchParts(pipeline, catalog=FakeCatalog({"docs": "ready"}), chunks=vectors)
    return Runtime(
        settings=settings,
        metrics=Metrics(),
        search=SearchService(
            settings,
            models,
            parts=parts if search_open else None,
            error=None if search_open else "Elasticsearch at http://10.0.0.7:9200 refused the connection",
        ),
        keys=KeyStore.in_data_dir(data_dir),
        models=models,
    )


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = fake_runtime(tmp_path)
    yield runtime
    runtime.key_store.close()


async def client_for(runtime: Runtime) -> httpx.AsyncClient:
    app = create_app(runtime.settings, runtime=runtime)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fathom")


def bearer(runtime: Runtime, *scopes: str) -> dict[str, str]:
    key = runtime.key_store.create(f"key-{'-'.join(scopes)}", scopes=frozenset(scopes))
    return {"Authorization": f"Bearer {key}"}


def error_text(response: httpx.Response) -> str:
    """The one error body: the message under error, and again as message and detail."""
    body: dict[str, Any] = response.json()
    assert body["message"] == body["detail"] == body["error"]["message"]
    return str(body["message"])


async def test_a_search_without_a_key_is_401_saying_how_to_send_one(runtime: Runtime) -> None:
    async with await client_for(runtime) as client:
        response = await client.post("/v1/search", json={"query": "q", "collection": "docs"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="fathom"'
    assert "Authorization: Bearer" in error_text(response)


async def test_a_key_without_the_search_scope_is_403_naming_it(runtime: Runtime) -> None:
    async with await client_for(runtime) as client:
        response = await client.post(
            "/v1/search", json={"query": "q", "collection": "docs"}, headers=bearer(runtime, "write")
        )
    assert response.status_code == 403
    assert "lacks the 'search' scope" in error_text(response)


async def test_an_unknown_field_is_400_naming_it(runtime: Runtime) -> None:
    async with await client_for(runtime) as client:
        response = await client.post(
            "/v1/search",
            json={"query": "q", "collection": "docs", "topk": 3},
            headers=bearer(runtime, "search"),
        )
    assert response.status_code == 400
    assert error_text(response) == "invalid request: unknown field `topk`"


async def test_a_search_answers_the_fused_hits_with_their_evidence(runtime: Runtime) -> None:
    async with await client_for(runtime) as client:
        response = await client.post(
            "/v1/search",
            json={"query": "what is fathom", "collection": "docs", "rerank": {"enabled": False}},
            headers=bearer(runtime, "search"),
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [hit["id"] for hit in body["hits"]] == FUSED_DOCS
    first = body["hits"][0]
    assert first["evidence"]["bm25"] == {"rank": 2, "score": 7.0}
    assert first["evidence"]["vector"] == {"rank": 1, "score": 0.9}
    assert {"lexical", "vector", "fusion", "total"} <= set(body["timings"])
    assert body["degraded"] == [] and body["collection"] == "docs" and body["reranked"] == 0


async def test_an_unknown_rerank_model_is_400_listing_the_configured_ones(runtime: Runtime) -> None:
    async with await client_for(runtime) as client:
        response = await client.post(
            "/v1/search",
            json={"query": "q", "collection": "docs", "rerank": {"model": "nope"}},
            headers=bearer(runtime, "search"),
        )
    assert response.status_code == 400
    assert error_text(response).startswith("unknown rerank model 'nope'; available models: ")


async def test_search_not_open_is_503_with_the_reason_and_no_url(tmp_path: Path) -> None:
    runtime = fake_runtime(tmp_path, search_open=False)
    try:
        async with await client_for(runtime) as client:
            search = await client.post(
                "/v1/search", json={"query": "q", "collection": "docs"}, headers=bearer(runtime, "search")
            )
            ready = await client.get("/readyz")
    finally:
        runtime.key_store.close()
    assert search.status_code == 503 and search.headers["retry-after"] == "5"
    assert error_text(search) == "search is not available: Elasticsearch at <url> refused the connection"
    assert ready.status_code == 503 and ready.json()["search"].startswith("failed: Elasticsearch at <url>")


async def test_injected_dependencies_are_not_request_parameters(runtime: Runtime) -> None:
    async with await client_for(runtime) as client:
        schema = (await client.get("/schema/openapi.json")).json()
    named = {
        parameter["name"]
        for path in schema["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
    }
    assert named and not named & DEPENDENCY_NAMES  # path parameters such as `name` are there
