"""Public keys over HTTP: CORS for their origins only, search only, their collections only, rate-limited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from service.auth.keys import KeyStore
from service.settings import SearchRerankSettings, Settings
from tests.conftest import bearer
from tests.integration.rerank_app import running
from tests.integration.search_app import cranfield, index_documents, search_settings

pytestmark = pytest.mark.anyio
SITE = "https://docs.example.org"
OTHER = "https://evil.example.net"


@dataclass
class Keys:
    public: str
    secret: str
    # A second public key for the site, with room in its rate limit for the tests that need many calls.
    roomy: str
    rerank_defaults: SearchRerankSettings


def create_keys(settings: Settings) -> Keys:
    store = KeyStore.in_data_dir(settings.data_path)
    try:
        public = store.create(
            "site", rate_limit=3, collections=frozenset({"site"}), origins=frozenset({SITE})
        )
        roomy = store.create(
            "widget", rate_limit=100, collections=frozenset({"site"}), origins=frozenset({SITE})
        )
        return Keys(public, store.create("backend"), roomy, settings.search.rerank)
    finally:
        store.close()


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[httpx.AsyncClient, Keys]]:
    settings = search_settings(tmp_path_factory.mktemp("public-keys"))
    for collection in ("site", "private"):
        await index_documents(settings, collection, cranfield(limit=5))
    keys = create_keys(settings)
    async with running(settings) as http:
        yield http, keys


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def search(
    http: httpx.AsyncClient,
    key: str,
    origin: str | None,
    collection: str = "site",
    rerank: dict[str, float] | None = None,
) -> httpx.Response:
    headers = {**bearer(key), **({"Origin": origin} if origin else {})}
    body = {"query": "wing", "collection": collection, **({"rerank": rerank} if rerank is not None else {})}
    return await http.post("/v1/search", json=body, headers=headers)


async def test_cors_answers_only_the_origins_public_keys_name(served: tuple[httpx.AsyncClient, Keys]) -> None:
    http, _ = served
    allowed = await http.options("/v1/search", headers=preflight(SITE))
    refused = await http.options("/v1/search", headers=preflight(OTHER))
    other_route = await http.options("/v1/rerank", headers=preflight(SITE))

    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert "authorization" in allowed.headers["access-control-allow-headers"]
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert f"--origin {OTHER}" in refused.json()["error"]["message"]
    assert "access-control-allow-origin" not in other_route.headers


async def test_a_public_key_searches_from_its_origin_only(served: tuple[httpx.AsyncClient, Keys]) -> None:
    http, keys = served
    ok = await search(http, keys.public, SITE)
    elsewhere = await search(http, keys.public, OTHER)
    no_origin = await search(http, keys.public, None)

    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == SITE and ok.json()["hits"]
    assert elsewhere.status_code == no_origin.status_code == 403
    assert "access-control-allow-origin" not in elsewhere.headers
    assert SITE in elsewhere.json()["error"]["message"]


async def test_a_public_key_only_searches_its_collections(served: tuple[httpx.AsyncClient, Keys]) -> None:
    http, keys = served
    public = {**bearer(keys.public), "Origin": SITE}
    other_collection = await search(http, keys.public, SITE, collection="private")
    rerank = await http.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers=public)
    create = await http.put("/v1/collections/site", headers=public)
    listing = await http.get("/v1/collections", headers=public)

    assert other_collection.status_code == 403
    assert [rerank.status_code, create.status_code, listing.status_code] == [403, 403, 403]
    assert "only search" in rerank.json()["error"]["message"]


async def test_a_public_key_has_its_own_rate_limit(served: tuple[httpx.AsyncClient, Keys]) -> None:
    http, keys = served
    statuses = [(await search(http, keys.public, SITE)).status_code for _ in range(4)]
    secret = [(await search(http, keys.secret, None, collection="private")).status_code for _ in range(4)]

    assert 429 in statuses  # three per minute, some already spent by the tests above
    limited = await search(http, keys.public, SITE)
    assert limited.status_code == 429 and limited.headers["access-control-allow-origin"] == SITE
    assert secret == [200] * 4


async def test_a_public_key_cannot_ask_for_more_rerank_than_the_server_default(
    served: tuple[httpx.AsyncClient, Keys],
) -> None:
    http, keys = served
    depth, budget = keys.rerank_defaults.depth, keys.rerank_defaults.budget_ms
    assert depth > 0 and budget > 0  # the cases below need a server whose default has a depth and a budget

    deeper = await search(http, keys.roomy, SITE, rerank={"depth": depth + 1})
    unbudgeted = await search(http, keys.roomy, SITE, rerank={"budget_ms": 0, "depth": 1000})
    no_budget = await search(http, keys.roomy, SITE, rerank={"budget_ms": 0})
    longer = await search(http, keys.roomy, SITE, rerank={"budget_ms": budget + 1})

    assert [deeper.status_code, unbudgeted.status_code, no_budget.status_code, longer.status_code] == [
        403
    ] * 4
    assert deeper.headers["access-control-allow-origin"] == SITE  # the widget can read why
    assert "rerank.depth" in deeper.json()["error"]["message"]
    assert f"default of {depth}" in deeper.json()["error"]["message"]
    for refused in (no_budget, longer):
        message = refused.json()["error"]["message"]
        assert "rerank.budget_ms" in message and f"default of {budget:g} ms" in message
    assert "0 (no budget)" in no_budget.json()["error"]["message"]


async def test_a_public_key_may_ask_for_the_default_rerank_or_less(
    served: tuple[httpx.AsyncClient, Keys],
) -> None:
    http, keys = served
    depth, budget = keys.rerank_defaults.depth, keys.rerank_defaults.budget_ms
    asks: list[dict[str, float]] = [
        {"depth": depth, "budget_ms": budget},
        {"depth": 0},
        {"depth": 3, "budget_ms": budget / 2},
        {},
    ]
    for rerank in asks:
        response = await search(http, keys.roomy, SITE, rerank=rerank)
        assert response.status_code == 200, (rerank, response.text)
    shallow = await search(http, keys.roomy, SITE, rerank={"depth": 0})
    assert shallow.json()["reranked"] == 0


async def test_a_secret_key_still_sets_any_rerank_depth_and_budget(
    served: tuple[httpx.AsyncClient, Keys],
) -> None:
    http, keys = served
    response = await search(
        http, keys.secret, None, collection="private", rerank={"budget_ms": 0, "depth": 1000}
    )
    assert response.status_code == 200, response.text
    assert response.json()["reranked"] >= len(response.json()["hits"]) > 0
