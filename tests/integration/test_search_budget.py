"""The search rerank budget on the real bench cross-encoder, through HTTP on the embedded default: it
decides how much is scored ahead, never the order a page shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.settings import settings_from_dict
from tests.conftest import BENCH, bearer, offline_models
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, index_documents

pytestmark = pytest.mark.anyio
DEPTH = 32
BLOCK = 10  # [search.rerank] block


@pytest.fixture(scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = settings_from_dict(
        {
            "data_dir": str(tmp_path_factory.mktemp("budget")),
            **offline_models(BENCH),
            # The unbudgeted reference search reranks the whole head, which a busy CI machine makes slow.
            "search": {"rerank": {"timeout": 300}},
        }
    )
    report = await index_documents(settings, "cran", cranfield(limit=60))
    assert report.failed == 0
    key = new_key(settings, "budget")
    async with running(settings) as http:
        yield http, key


async def search(client: tuple[httpx.AsyncClient, str], **rerank: Any) -> dict[str, Any]:
    http, key = client
    body = {"query": "boundary layer flow over a flat plate", "collection": "cran", "top_k": DEPTH}
    response = await http.post("/v1/search", json={**body, "rerank": rerank}, headers=bearer(key))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def rerank_scores(answer: dict[str, Any]) -> list[float | None]:
    return [hit["evidence"]["rerank"].get("score") for hit in answer["hits"]]


async def test_the_page_is_the_same_whatever_the_budget(client: tuple[httpx.AsyncClient, str]) -> None:
    fused = await search(client, enabled=False)
    fused_ids = [hit["chunk_id"] for hit in fused["hits"]]
    assert len(fused_ids) == DEPTH

    # A budget too short for anything, and one long enough for the whole depth ahead.
    tight = await search(client, depth=DEPTH, budget_ms=1)
    ample = await search(client, depth=DEPTH, budget_ms=60_000)

    assert [hit["chunk_id"] for hit in tight["hits"]] == [hit["chunk_id"] for hit in ample["hits"]]
    assert tight["reranked"] == ample["reranked"] == DEPTH and not tight["degraded"]
    scores = rerank_scores(tight)
    hits = [hit["chunk_id"] for hit in tight["hits"]]
    # Blocks of 10 fused hits (the last one of 2), each sorted by rerank score on its own.
    for start in range(0, DEPTH, BLOCK):
        block = [score for score in scores[start : start + BLOCK] if score is not None]
        assert len(block) == len(fused_ids[start : start + BLOCK]) and block == sorted(block, reverse=True)
        assert set(hits[start : start + BLOCK]) == set(fused_ids[start : start + BLOCK])


async def test_without_a_budget_the_whole_depth_is_one_block(client: tuple[httpx.AsyncClient, str]) -> None:
    whole = await search(client, depth=DEPTH, budget_ms=0)

    scores = rerank_scores(whole)
    assert whole["reranked"] == DEPTH and None not in scores and scores == sorted(scores, reverse=True)
