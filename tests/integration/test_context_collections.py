"""POST /v1/context on the shared collections: within budget, rank order, merged, citations that locate."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from service.settings import ContextSettings, Settings
from tests.conftest import DATA, EMBEDDER, bearer
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import beir_documents

pytestmark = pytest.mark.anyio
BUDGETS = (40, 300, 1500)
QUERIES_PER_COLLECTION = 6


def queries(name: str) -> list[str]:
    with (DATA / name / "queries.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines][:QUERIES_PER_COLLECTION]


def word_tokenizer(folder: Path) -> Path:
    """A tokenizer unlike the model's: one token per word or punctuation run, as a named one to count with."""
    tokenizer = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    path = folder / "words.json"
    tokenizer.save(str(path))
    return path


def model_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(EMBEDDER / "tokenizer.json"))
    tokenizer.no_truncation()
    return tokenizer


async def served_context(settings: Settings, folder: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    context = ContextSettings(tokenizers={"words": str(word_tokenizer(folder))})
    # No rerank time budget: how many hits fit in one depends on the machine's load at that moment, so
    # /v1/context and the /v1/search it is compared with could rerank different heads.
    rerank = msgspec.structs.replace(settings.search.rerank, budget_ms=0.0)
    search = msgspec.structs.replace(settings.search, rerank=rerank)
    settings = msgspec.structs.replace(settings, context=context, search=search)
    key = new_key(settings, f"context-{folder.name}")
    async with running(settings) as http:
        yield http, key


@pytest.fixture
async def cranfield_client(
    indexed_cranfield: Settings, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async for client in served_context(indexed_cranfield, tmp_path):
        yield client


@pytest.fixture
async def cacm_client(indexed_cacm: Settings, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async for client in served_context(indexed_cacm, tmp_path):
        yield client


async def post(client: tuple[httpx.AsyncClient, str], route: str, **body: Any) -> httpx.Response:
    http, key = client
    return await http.post(route, json=body, headers=bearer(key))


async def check_collection(client: tuple[httpx.AsyncClient, str], name: str) -> None:
    texts = {document.id: document.text for document in beir_documents(name)}
    model = model_tokenizer()
    for query in queries(name):
        for budget in BUDGETS:
            response = await post(client, "/v1/context", query=query, collection=name, max_tokens=budget)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["total_tokens"] <= budget and body["max_tokens"] == budget
            assert body["total_tokens"] == sum(p["tokens"] for p in body["passages"])
            assert body["passages"], query
            for passage in body["passages"]:
                assert passage["tokens"] == len(model.encode(passage["text"], add_special_tokens=False).ids)
                cite = passage["citation"]
                # The citation locates the text in the document as it was indexed.
                assert texts[cite["id"]][cite["start"] : cite["end"]] == passage["text"]
            assert_no_overlap(body["passages"])
        await assert_search_order(client, name, query)


def assert_no_overlap(passages: list[dict[str, Any]]) -> None:
    """Merged: no two passages of one document overlap or meet."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for passage in passages:
        cite = passage["citation"]
        for start, end in spans.get(cite["id"], []):
            assert cite["end"] < start or end < cite["start"], passages
        spans.setdefault(cite["id"], []).append((cite["start"], cite["end"]))


async def assert_search_order(client: tuple[httpx.AsyncClient, str], name: str, query: str) -> None:
    """The passages come in the order /v1/search ranks their best chunks: the same pipeline."""
    context = (await post(client, "/v1/context", query=query, collection=name, max_tokens=1500)).json()
    # /v1/context reranks one block ([search.rerank] block, 10): the search it is compared with too.
    search = await post(
        client, "/v1/search", query=query, collection=name, passages=True, top_k=100, rerank={"depth": 10}
    )
    order = [hit["chunk_id"] for hit in search.json()["hits"]]
    best = [f"{p['citation']['id']}#{min(p['citation']['chunks'])}" for p in context["passages"]]
    ranks = [
        min(order.index(f"{p['citation']['id']}#{c}") for c in p["citation"]["chunks"])
        for p in context["passages"]
    ]
    assert ranks == sorted(ranks), (best, order[:20])


async def test_cranfield_passages_fit_cite_and_keep_rank(
    cranfield_client: tuple[httpx.AsyncClient, str],
) -> None:
    await check_collection(cranfield_client, "cranfield")


async def test_cacm_passages_fit_cite_and_keep_rank(cacm_client: tuple[httpx.AsyncClient, str]) -> None:
    await check_collection(cacm_client, "cacm")


async def test_a_named_tokenizer_counts_the_budget(cranfield_client: tuple[httpx.AsyncClient, str]) -> None:
    body = (
        await post(
            cranfield_client,
            "/v1/context",
            query="heat transfer in hypersonic flow",
            collection="cranfield",
            max_tokens=120,
            tokenizer="words",
        )
    ).json()
    assert body["tokenizer"] == "words" and body["total_tokens"] <= 120
    words = Whitespace()
    for passage in body["passages"]:
        assert passage["tokens"] == len(words.pre_tokenize_str(passage["text"]))


async def test_filter_min_score_and_bad_requests(cranfield_client: tuple[httpx.AsyncClient, str]) -> None:
    query = "boundary layer transition"
    filtered = await post(cranfield_client, "/v1/context", query=query, collection="cranfield", min_score=0.5)
    assert all(p["score"] >= 0.5 for p in filtered.json()["passages"])
    for body, status, message in [
        ({"max_tokens": 0}, 400, "max_tokens must be between 1 and"),
        ({"tokenizer": "gpt-17"}, 400, "unknown tokenizer 'gpt-17'; available:"),
        ({"filter": {"year": {"near": 3}}}, 400, "year"),
        ({"collection": "nope"}, 404, "nope"),
        ({"top_k": 3}, 400, "top_k"),
    ]:
        response = await post(
            cranfield_client, "/v1/context", **{"query": query, "collection": "cranfield", **body}
        )
        assert response.status_code == status, response.text
        assert message in response.text
    http, _ = cranfield_client
    assert (
        await http.post("/v1/context", json={"query": query, "collection": "cranfield"})
    ).status_code == 401
