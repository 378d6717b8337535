"""The search rerank budget on the real bench cross-encoder, through HTTP on the embedded default.

The budget is relative to this machine: the test first times reranking the whole head with no budget,
then gives a quarter of that time, so it holds on a fast machine and on a loaded one alike.
"""

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


async def test_a_budget_reranks_a_best_first_head_and_ends_near_the_budget(
    client: tuple[httpx.AsyncClient, str],
) -> None:
    fused = await search(client, enabled=False)
    fused_ids = [hit["chunk_id"] for hit in fused["hits"]]
    assert len(fused_ids) == DEPTH
    whole = await search(client, depth=DEPTH, budget_ms=0)  # no budget: every hit of the head
    assert not whole["degraded"] and whole["reranked"] == DEPTH and None not in rerank_scores(whole)
    budget = whole["timings"]["rerank"] / 4

    within = await search(client, depth=DEPTH, budget_ms=budget)

    count = within["reranked"]
    assert 0 < count < DEPTH, f"{count} of {DEPTH} hits reranked in {budget:.0f} ms"
    scores = rerank_scores(within)
    head = [score for score in scores[:count] if score is not None]
    assert len(head) == count and head == sorted(head, reverse=True)
    assert scores[count:] == [None] * (DEPTH - count)
    hits = [hit["chunk_id"] for hit in within["hits"]]
    # The reranked hits are the best `count` of the fused order; the others keep it.
    assert set(hits[:count]) == set(fused_ids[:count])
    assert hits[count:] == fused_ids[count:]
    # The stage ends by its deadline, not after a batch that overran it (the slack is the event loop's).
    assert within["timings"]["rerank"] < 1.5 * budget
    assert not within["degraded"]
