"""A public key's rate limit per visitor, over HTTP: each client address gets its own share, a proxy's
X-Forwarded-For counts only from a trusted proxy, and the key's overall limit still holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import msgspec
import pytest

from service.app import create_app
from service.auth.keys import KeyStore
from service.settings import AuthSettings, ServerSettings
from tests.integration.search_app import cranfield, index_documents, search_settings

pytestmark = pytest.mark.anyio
SITE = "https://docs.example.org"
PROXY = "10.0.0.2"  # the trusted proxy's address
PER_VISITOR = 2  # [auth] visitor_rate_limit
OVERALL = 5  # the key's own --rate-limit
BODY = {"query": "wing", "collection": "site"}

Client = Callable[[str], httpx.AsyncClient]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Client, str]]:
    """The app, a public key, and a client from any peer address."""
    settings = search_settings(tmp_path_factory.mktemp("visitors"), rerank={"enabled": False})
    settings = msgspec.structs.replace(
        settings,
        server=ServerSettings(trusted_proxies=[PROXY]),
        auth=AuthSettings(visitor_rate_limit=PER_VISITOR),
    )
    await index_documents(settings, "site", cranfield(limit=3))
    store = KeyStore.in_data_dir(settings.data_path)
    key = store.create("site", rate_limit=OVERALL, collections=frozenset({"site"}), origins=frozenset({SITE}))
    store.close()
    app = create_app(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.lifespan())
        await app.state["runtime"].wait_started()

        def client(peer: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(peer, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://fathom")

        yield client, key


async def searches(
    http: httpx.AsyncClient, key: str, times: int, forwarded_for: str | None = None
) -> list[int]:
    headers = {"Authorization": f"Bearer {key}", "Origin": SITE}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    statuses = []
    for _ in range(times):
        response = await http.post("/v1/search", json=BODY, headers=headers)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert "visitor" in response.json()["error"]["message"] or "requests per minute" in response.text
            assert float(response.headers["retry-after"]) > 0
    return statuses


async def test_each_visitor_gets_its_own_share_and_the_key_its_overall_limit(
    served: tuple[Client, str],
) -> None:
    client, key = served
    one, two, three = client("192.0.2.1"), client("192.0.2.2"), client("192.0.2.3")

    assert await searches(one, key, PER_VISITOR + 1) == [200] * PER_VISITOR + [429]
    # Another visitor is not locked out by the first one's use.
    assert await searches(two, key, PER_VISITOR + 1) == [200] * PER_VISITOR + [429]
    headers = {"Authorization": f"Bearer {key}", "Origin": SITE}
    refused = await one.post("/v1/search", json=BODY, headers=headers)
    assert "this visitor's rate limit of 2" in refused.json()["error"]["message"]
    # 4 of the key's 5 spent (refusals spend none): a third visitor gets the last, then the key's limit.
    third = await searches(three, key, 2)
    assert third == [200, 429]


async def test_forwarded_for_counts_only_from_a_trusted_proxy(served: tuple[Client, str]) -> None:
    client, key = served
    proxy, stranger = client(PROXY), client("192.0.2.9")

    # Behind the trusted proxy, two visitors each get their own share.
    assert await searches(proxy, key, PER_VISITOR + 1, "198.51.100.1") == [200] * PER_VISITOR + [429]
    assert await searches(proxy, key, 1, "203.0.113.7, 198.51.100.2") == [200]
    # A spoofed header from an untrusted peer is ignored: every request counts against the peer itself.
    spoofed = [await searches(stranger, key, 1, f"198.51.100.{100 + i}") for i in range(PER_VISITOR + 1)]
    assert spoofed == [[200]] * PER_VISITOR + [[429]]
