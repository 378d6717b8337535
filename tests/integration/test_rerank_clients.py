"""What Cohere's and Jina's clients read from Fathom: their error fields, Cohere's structured documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BENCH, bearer
from tests.integration.rerank_app import new_key, rerank_settings, running

pytestmark = pytest.mark.anyio


def jina_client_error(body: dict[str, Any]) -> str:
    """What Jina's clients (langchain-community's and llama-index's JinaRerank, haystack's JinaRanker) do
    with a response: results, or else RuntimeError(body["detail"])."""
    if "results" in body:
        return ""
    return str(body["detail"])


def cohere_client_error(body: dict[str, Any]) -> str:
    """Cohere's SDKs and Cohere's own errors carry the text in a top-level `message`."""
    return str(body["message"])


async def error_answers(client: httpx.AsyncClient, key: str) -> dict[int, dict[str, Any]]:
    """One error body of each kind a rerank client meets: bad request, bad key, model unavailable."""
    good = {"model": BENCH, "query": "q", "documents": ["a"]}
    answers = {
        400: await client.post("/v1/rerank", json={**good, "documents": []}, headers=bearer(key)),
        401: await client.post("/v1/rerank", json=good, headers=bearer("wrong")),
        503: await client.post("/v1/rerank", json={**good, "model": "broken-model"}, headers=bearer(key)),
        404: await client.post("/v1/no-such-route", json=good, headers=bearer(key)),
    }
    return {status: response.json() for status, response in answers.items() if response.status_code == status}


@pytest.mark.parametrize("client_reads", [jina_client_error, cohere_client_error], ids=["jina", "cohere"])
async def test_every_error_gives_each_client_its_message(tmp_path: Path, client_reads: Any) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "clients")
    async with running(settings) as client:
        bodies = await error_answers(client, key)
    assert sorted(bodies) == [400, 401, 404, 503]
    for body in bodies.values():
        message = body["error"]["message"]
        assert message and client_reads(body) == message
        assert body["error"]["type"] and body["error"]["code"]


async def test_rank_fields_score_the_named_fields_and_return_the_object(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "fields")
    documents = [
        {"title": "Pizza", "text": "A popular Italian food.", "id": 7},
        {"title": "Machine learning", "text": "A subset of artificial intelligence."},
    ]
    joined = [f"{d['title']}\n{d['text']}" for d in documents]
    query = "What is machine learning?"
    async with running(settings) as client:

        async def scores(docs: list[Any], **options: Any) -> dict[int, float]:
            body = {"model": BENCH, "query": query, "documents": docs, **options}
            response = await client.post("/v1/rerank", json=body, headers=bearer(key))
            assert response.status_code == 200, response.text
            return {r["index"]: r["relevance_score"] for r in response.json()["results"]}

        by_fields = await scores(documents, rank_fields=["title", "text"])
        assert by_fields == await scores(joined)
        # The default rank field is `text`, as in Cohere's API.
        assert await scores(documents) == await scores([d["text"] for d in documents])
        # A dict without `text` but with the named field is scored on that field.
        titles = [{"title": d["title"]} for d in documents]
        assert await scores(titles, rank_fields=["title"]) == await scores([d["title"] for d in documents])

        answer = await client.post(
            "/v1/rerank",
            json={
                "model": BENCH,
                "query": query,
                "documents": documents,
                "rank_fields": ["title", "text"],
                "return_documents": True,
            },
            headers=bearer(key),
        )
        returned = {r["index"]: r["document"] for r in answer.json()["results"]}
        assert returned == dict(enumerate(documents))  # the objects as sent, extra fields included

        missing = await client.post(
            "/v1/rerank",
            json={"model": BENCH, "query": query, "documents": titles},
            headers=bearer(key),
        )
    assert missing.status_code == 400
    assert "documents[0] has none of the fields to rank on ('text')" in missing.json()["message"]


async def test_cohere_sdk_reads_results_errors_and_rank_fields(tmp_path: Path) -> None:
    """Cohere's own SDK (v1 and v2 clients) against the app: results, a 400's message, rank_fields."""
    import cohere

    settings = rerank_settings(tmp_path)
    key = new_key(settings, "cohere")
    documents = [
        {"title": "Pizza", "text": "Italian food"},
        {"title": "ML", "text": "Machine learning is AI"},
    ]
    async with running(settings) as client:
        # The SDK's requests go through the test's client, to the app in this process.
        v1 = cohere.AsyncClient(api_key=key, base_url="http://fathom", httpx_client=client)
        v2 = cohere.AsyncClientV2(api_key=key, base_url="http://fathom", httpx_client=client)
        texts = [f"{d['title']}\n{d['text']}" for d in documents]
        plain = await v2.rerank(model=BENCH, query="machine learning", documents=texts)
        fielded = await v1.rerank(
            model=BENCH,
            query="machine learning",
            documents=documents,
            rank_fields=["title", "text"],
            return_documents=True,
        )
        with pytest.raises(cohere.BadRequestError) as refused:
            await v2.rerank(model=BENCH, query=" ", documents=texts)
    assert [(r.index, r.relevance_score) for r in fielded.results] == [
        (r.index, r.relevance_score) for r in plain.results
    ]
    best = fielded.results[0]
    assert getattr(best.document, "title", None) == documents[best.index]["title"]
    assert refused.value.body["message"] == "query must not be empty"
