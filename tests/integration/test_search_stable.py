"""The same search answers the same hits in the same order under load, pages never repeat or skip, and
nonsense answers nothing: a real `fathom serve` with the bench cross-encoder and the default budget,
searched concurrently over HTTP while /v1/rerank traffic keeps its rerank engine busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from service.testing.live_server import fathom_serve, free_ports
from tests.conftest import MODELS
from tests.integration.rerank_app import BENCH, new_key
from tests.integration.search_app import cranfield, index_documents, search_settings

pytestmark = pytest.mark.anyio
QUERY = "boundary layer flow over a flat plate"
SEARCHES = 8


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("stable")
    settings = search_settings(folder / "data")
    report = asyncio.run(index_documents(settings, "cran", cranfield(limit=80)))
    assert report.failed == 0
    key = new_key(settings, "stable")
    config = folder / "fathom.toml"
    config.write_text(
        f'data_dir = "{folder / "data"}"\n'
        f'[embedding]\npath = "{MODELS / "all-MiniLM-L6-v2"}"\n'
        f'[rerank]\ndefault_model = "{BENCH}"\n'
        f'[rerank.models."{BENCH}"]\npath = "{MODELS / BENCH}"\n'
        '[rerank.models."BAAI/bge-reranker-v2-m3"]\nenabled = false\n'
        # A loaded CI machine may take seconds for a page's blocks: this is about order, not speed.
        "[search.rerank]\ntimeout = 120.0\n",
        encoding="utf-8",
    )
    [port] = free_ports(1)
    with fathom_serve(config, port=port, log=folder / "server.log") as server:
        url = server.url
        yield url, key


@pytest.fixture
async def http(server: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    url, key = server
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        yield client


async def search(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await http.post("/v1/search", json={"query": QUERY, "collection": "cran", **fields})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ids(answer: dict[str, Any]) -> list[str]:
    return [hit["id"] for hit in answer["hits"]]


async def walk(http: httpx.AsyncClient, top_k: int, pages: int) -> list[str]:
    seen: list[str] = []
    answer = await search(http, top_k=top_k)
    for _ in range(pages - 1):
        seen += ids(answer)
        answer = await search(http, top_k=top_k, cursor=answer["cursor"])
    return seen + ids(answer)


async def busy_reranker(http: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """/v1/rerank batches ahead of the searches, so each finds a different queue in front of it."""
    documents = [f"passage {n} about compressible boundary layers and heat transfer" for n in range(40)]
    while not stop.is_set():
        response = await http.post("/v1/rerank", json={"query": QUERY, "documents": documents})
        assert response.status_code in (200, 429), response.text


async def under_load(http: httpx.AsyncClient, *work: Any) -> list[Any]:
    stop = asyncio.Event()
    noise = [asyncio.create_task(busy_reranker(http, stop)) for _ in range(2)]
    try:
        return list(await asyncio.gather(*work))
    finally:
        stop.set()
        await asyncio.gather(*noise)


async def test_concurrent_identical_searches_answer_identical_hits(http: httpx.AsyncClient) -> None:
    answers = await under_load(http, *(search(http) for _ in range(SEARCHES)))
    quiet = await search(http)

    assert all(ids(answer) == ids(quiet) for answer in answers)
    assert len(ids(quiet)) == 10 and quiet["reranked"] >= 10
    scores = [hit["evidence"]["rerank"]["score"] for hit in quiet["hits"]]
    assert scores == sorted(scores, reverse=True)  # page 1 is one block, reranked in full


async def test_three_page_walks_never_repeat_or_skip(http: httpx.AsyncClient) -> None:
    one_page = ids(await search(http, top_k=30))
    walks = await under_load(http, *(walk(http, top_k, 3) for top_k in (10, 10, 7, 7)))

    assert len(set(one_page)) == 30
    assert walks[0] == walks[1] == one_page
    assert walks[2] == walks[3] == one_page[:21]


async def test_a_repeated_search_is_answered_from_the_score_cache(http: httpx.AsyncClient) -> None:
    # A depth of one block: no next page to score ahead, so the first search scores its page's block alone.
    fresh = {"query": "supersonic flutter of thin panels", "collection": "cran", "rerank": {"depth": 10}}
    before = await counters(http)
    first = await http.post("/v1/search", json=fresh)
    middle = await counters(http)
    repeat = await http.post("/v1/search", json=fresh)
    after = await counters(http)

    assert first.status_code == repeat.status_code == 200
    assert ids(first.json()) == ids(repeat.json())
    assert middle["misses"] - before["misses"] >= 10  # the first scored its page's block at least
    assert after["misses"] == middle["misses"] and after["hits"] - middle["hits"] >= 10
    first_ms, repeat_ms = first.json()["timings"]["rerank"], repeat.json()["timings"]["rerank"]
    print(f"rerank stage: first {first_ms:.1f} ms, repeat {repeat_ms:.1f} ms")


async def counters(http: httpx.AsyncClient) -> dict[str, float]:
    text = (await http.get("/metrics")).text
    values = {}
    for name in ("hits", "misses"):
        [line] = [row for row in text.splitlines() if row.startswith(f"fathom_rerank_cache_{name}_total ")]
        values[name] = float(line.split()[1])
    return values


@pytest.mark.parametrize("nonsense", ["qqxzv", "asdkjh qwe", "zzkvx pqwm"])
async def test_nonsense_finds_nothing(http: httpx.AsyncClient, nonsense: str) -> None:
    answer = await search(http, query=nonsense, facets=[])

    assert answer["hits"] == [] and answer["cursor"] is None
    assert answer["found"] == 0 and answer["total"] == 0


async def test_a_real_query_keeps_its_hits_and_counts_them(http: httpx.AsyncClient) -> None:
    answer = await search(http, facets=[])

    assert len(answer["hits"]) == 10 and answer["found"] >= 30 and answer["cursor"] is not None
