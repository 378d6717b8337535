"""The endpoint reproduces PyTorch's reference scores, in one request or in many concurrent ones."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BENCH, MODELS, TINY, bearer
from tests.integration.rerank_app import new_key, rerank_settings, running

pytestmark = pytest.mark.anyio
TOLERANCE = 1e-4


def reference_pairs(model: str) -> list[dict[str, Any]]:
    reference = json.loads((MODELS / model / "reference_scores.json").read_text())
    assert reference["max_length"] == 512 and reference["truncation"] == "longest_first"
    pairs: list[dict[str, Any]] = reference["pairs"]
    return pairs


def by_query(pairs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for pair in pairs:
        groups.setdefault(pair["query"], []).append(pair)
    return groups


@pytest.mark.parametrize("model", [TINY, BENCH])
async def test_scores_match_reference_per_query_request(tmp_path: Path, model: str) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "parity")
    async with running(settings) as client:
        for query, pairs in by_query(reference_pairs(model)).items():
            response = await client.post(
                "/v1/rerank",
                json={
                    "model": model,
                    "query": query,
                    "documents": [p["document"] for p in pairs],
                    "max_chunks_per_doc": 1,  # cut longest_first, as the references were: no windows
                },
                headers=bearer(key),
            )
            assert response.status_code == 200, response.text
            scores = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
            for index, pair in enumerate(pairs):
                assert abs(scores[index] - pair["sigmoid"]) < TOLERANCE, (query[:40], pair["document"][:40])


@pytest.mark.parametrize("model", [TINY, BENCH])
async def test_scores_match_reference_in_concurrent_single_pair_requests(tmp_path: Path, model: str) -> None:
    settings = rerank_settings(tmp_path, max_wait_ms=20)
    key = new_key(settings, "parity")
    pairs = reference_pairs(model)
    async with running(settings) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/rerank",
                    json={
                        "model": model,
                        "query": p["query"],
                        "documents": [p["document"]],
                        "max_chunks_per_doc": 1,
                    },
                    headers=bearer(key),
                )
                for p in pairs
            )
        )
    assert len(pairs) >= 10
    # The long pairs (a 6000-character document, a 3300-character query) hit 512-token truncation.
    assert any(len(p["document"]) > 5000 for p in pairs) and any(len(p["query"]) > 3000 for p in pairs)
    for pair, response in zip(pairs, responses, strict=True):
        assert response.status_code == 200, response.text
        assert abs(response.json()["results"][0]["relevance_score"] - pair["sigmoid"]) < TOLERANCE
