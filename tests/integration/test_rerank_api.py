"""The Rerank API as a client meets it: request shapes, every error status, quotas, rate limits."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
import pytest

from service.rerank.cross_encoder import CrossEncoder
from service.settings import AuthSettings
from tests.conftest import BENCH, TINY, bearer
from tests.integration.rerank_app import new_key, rerank_settings, running

pytestmark = pytest.mark.anyio

DOCS = [
    "Machine learning is a subset of artificial intelligence.",
    "The weather today is sunny.",
    "Deep learning uses neural networks.",
    "Pizza is a popular Italian food.",
]


async def test_response_shape_for_cohere_and_jina_clients(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "shape")
    async with running(settings) as client:
        body = {"model": BENCH, "query": "What is machine learning?", "documents": DOCS}
        plain = (await client.post("/v1/rerank", json=body, headers=bearer(key))).json()
        results = plain["results"]
        assert sorted(r["index"] for r in results) == [0, 1, 2, 3]
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert "document" not in results[0]
        assert plain["model"] == BENCH and plain["id"]
        assert plain["usage"]["total_tokens"] == plain["meta"]["tokens"]["input_tokens"] > 0
        assert plain["meta"]["billed_units"]["search_units"] == 1

        # Jina: objects with text, top_n, return_documents; same scores through every alias.
        jina = {**body, "documents": [{"text": d} for d in DOCS], "top_n": 2, "return_documents": True}
        for path in ("/v2/rerank", "/rerank"):
            top = (await client.post(path, json=jina, headers=bearer(key))).json()["results"]
            assert [(r["index"], r["relevance_score"]) for r in top] == [
                (r["index"], r["relevance_score"]) for r in results[:2]
            ]
            assert top[0]["document"]["text"] == DOCS[top[0]["index"]]


async def test_ties_keep_input_order_and_default_model(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "ties")
    async with running(settings) as client:
        response = await client.post(
            "/v1/rerank", json={"query": "same", "documents": ["twin", "other", "twin"]}, headers=bearer(key)
        )
    body = response.json()
    assert body["model"] == TINY  # the configured default when the client names none
    order = [r["index"] for r in body["results"]]
    assert order.index(0) < order.index(2)


async def test_max_tokens_per_doc_cuts_the_document_first(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "cut")
    long_doc = "machine learning " * 300
    async with running(settings) as client:
        full = (
            await client.post(
                "/v1/rerank",
                json={"query": "ml", "documents": [long_doc], "max_chunks_per_doc": 1},
                headers=bearer(key),
            )
        ).json()
        cut = (
            await client.post(
                "/v1/rerank",
                json={"query": "ml", "documents": [long_doc], "max_tokens_per_doc": 10},
                headers=bearer(key),
            )
        ).json()
        short = (
            await client.post(
                "/v1/rerank",
                json={"query": "ml", "documents": ["machine learning " * 5]},
                headers=bearer(key),
            )
        ).json()
    assert full["usage"]["total_tokens"] == 512  # truncated to the pair limit
    assert cut["usage"]["total_tokens"] == short["usage"]["total_tokens"]
    assert cut["results"][0]["relevance_score"] == pytest.approx(
        short["results"][0]["relevance_score"], abs=1e-6
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"query": "", "documents": ["a"]}, "query must not be empty"),
        ({"query": "   ", "documents": ["a"]}, "query must not be empty"),
        ({"query": "x" * 10_001, "documents": ["a"]}, "the limit is 10000"),
        ({"query": "q", "documents": []}, "documents must hold at least one item"),
        ({"query": "q", "documents": ["a"] * 1001}, "too many documents"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n must be at least 1"),
        ({"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}, "max_tokens_per_doc"),
        ({"query": "q", "documents": ["a"], "max_chunks_per_doc": 0}, "max_chunks_per_doc"),
        ({"query": "q", "documents": ["a"], "max_chunks_per_doc": 51}, "between 1 and 50, got 51"),
        ({"query": 5, "documents": ["a"]}, "query"),
        ({"query": "q", "documents": "a"}, "documents"),
        ({"query": "q", "documents": [{"txt": "a"}]}, "documents"),
        ({"documents": ["a"]}, "query"),
        ({"query": "q", "documents": ["a"], "top_n": "three"}, "top_n"),
        (
            {"query": "q", "documents": ["a"], "model": "no-such-model"},
            f"available models: broken-model, {BENCH}",
        ),
    ],
)
async def test_invalid_requests_are_400_with_a_message(tmp_path: Path, body: object, fragment: str) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "bad")
    async with running(settings) as client:
        response = await client.post("/v1/rerank", json=body, headers=bearer(key))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert fragment in error["message"]
    assert error["type"] == "invalid_request_error" and error["code"]


async def test_malformed_json_and_wrong_routes(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "json")
    async with running(settings) as client:
        broken = await client.post(
            "/v1/rerank",
            content=b'{"query": "q", ',
            headers=bearer(key) | {"Content-Type": "application/json"},
        )
        missing = await client.get("/v1/nothing-here")
        wrong_method = await client.get("/v1/rerank", headers=bearer(key))
        empty = await client.post("/v1/rerank", content=b"", headers=bearer(key))
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    assert empty.status_code == 400 and "must be a JSON object" in empty.json()["error"]["message"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and "not allowed" in wrong_method.json()["error"]["message"]


async def test_missing_wrong_and_revoked_keys_are_401(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    body = {"query": "q", "documents": ["a"]}
    async with running(settings) as client:
        key = new_key(settings, "soon-revoked")
        assert (await client.post("/v1/rerank", json=body, headers=bearer(key))).status_code == 200
        runtime = client._transport.app.state["runtime"]  # type: ignore[attr-defined]
        runtime.keys.revoke("soon-revoked")
        cases = [
            {},
            {"Authorization": "Bearer fth_not-a-key"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            bearer(key),
        ]
        for headers in cases:
            # A bad key is a 401 even when the body is bad too: auth comes first.
            response = await client.post("/v1/rerank", content=b"{oops", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["error"]["type"] == "authentication_error"


async def test_quota_is_402_and_survives_a_restart(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "metered", quota=3)
    async with running(settings) as client:
        two_units = {"query": "q", "documents": ["d"] * 150}
        assert (await client.post("/v1/rerank", json=two_units, headers=bearer(key))).status_code == 200
        # A failed request is not billed.
        assert (
            await client.post("/v1/rerank", json={"query": "", "documents": ["d"]}, headers=bearer(key))
        ).status_code == 400
        over = await client.post("/v1/rerank", json=two_units, headers=bearer(key))
        assert over.status_code == 402
        assert "1 of 3 left" in over.json()["error"]["message"]
        assert (
            await client.post("/v1/rerank", json={"query": "q", "documents": ["d"]}, headers=bearer(key))
        ).status_code == 200
    async with running(settings) as client:  # a restart: usage came from SQLite
        response = await client.post(
            "/v1/rerank", json={"query": "q", "documents": ["d"]}, headers=bearer(key)
        )
        assert response.status_code == 402
        assert response.json()["error"]["code"] == "quota_exceeded"


async def test_rate_limit_is_429_with_retry_after_and_survives_a_restart(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "limited", rate_limit=2)
    body = {"query": "q", "documents": ["d"]}
    async with running(settings) as client:
        assert (await client.post("/v1/rerank", json=body, headers=bearer(key))).status_code == 200
        assert (await client.post("/v1/rerank", json=body, headers=bearer(key))).status_code == 200
        limited = await client.post("/v1/rerank", json=body, headers=bearer(key))
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 31
        assert limited.json()["error"]["type"] == "rate_limit_error"
    async with running(settings) as client:
        again = await client.post("/v1/rerank", json=body, headers=bearer(key))
        assert again.status_code == 429


async def test_a_broken_model_is_503_while_others_serve(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "broken")
    async with running(settings) as client:
        broken = await client.post(
            "/v1/rerank",
            json={"model": "broken-model", "query": "q", "documents": ["d"]},
            headers=bearer(key),
        )
        working = await client.post(
            "/v1/rerank", json={"model": TINY, "query": "q", "documents": ["d"]}, headers=bearer(key)
        )
        models = (await client.get("/v1/models")).json()["data"]
        ready = await client.get("/readyz")
    assert broken.status_code == 503
    assert broken.json()["error"]["code"] == "model_not_available"
    assert "does not exist" in broken.json()["error"]["message"]
    assert working.status_code == 200
    status = {m["id"]: m["status"] for m in models}
    assert status == {TINY: "ready", BENCH: "ready", "broken-model": "failed"}
    assert ready.status_code == 503 and ready.json()["models"]["broken-model"] == "failed"


async def test_unexpected_errors_are_500_without_a_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "boom")

    def explode(self: CrossEncoder, batch: object) -> object:
        raise RuntimeError("secret internal detail")

    async with running(settings) as client:
        monkeypatch.setattr(CrossEncoder, "logits", explode)
        with caplog.at_level(logging.ERROR, logger="fathom.api"):
            response = await client.post(
                "/v1/rerank", json={"query": "q", "documents": ["d"]}, headers=bearer(key)
            )
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.json()["error"]["type"] == "internal_error"
    assert any(r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records)


async def test_concurrent_requests_share_batches_and_score_as_sequential(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path, max_wait_ms=30)
    key = new_key(settings, "batch")
    queries = [f"query number {i} about machine learning" for i in range(8)]
    async with running(settings) as client:
        engine = client._transport.app.state["runtime"].models.states[BENCH].engine  # type: ignore[attr-defined]

        async def ask(query: str) -> dict[int, float]:
            response = await client.post(
                "/v1/rerank", json={"model": BENCH, "query": query, "documents": DOCS}, headers=bearer(key)
            )
            assert response.status_code == 200
            return {r["index"]: r["relevance_score"] for r in response.json()["results"]}

        sequential = [await ask(q) for q in queries]
        cycles_before = engine.stats.cycles
        concurrent = await asyncio.gather(*(ask(q) for q in queries))
        concurrent_cycles = engine.stats.cycles - cycles_before
    for alone, shared in zip(sequential, concurrent, strict=True):
        assert shared == pytest.approx(alone, abs=1e-6)
    assert concurrent_cycles < len(queries), (
        f"{len(queries)} concurrent requests took {concurrent_cycles} cycles"
    )


async def test_auth_can_be_switched_off_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = rerank_settings(tmp_path)
    open_settings = msgspec.structs.replace(settings, auth=AuthSettings(enabled=False))
    with caplog.at_level(logging.WARNING, logger="fathom"):
        async with running(open_settings) as client:
            response = await client.post("/v1/rerank", json={"query": "q", "documents": ["d"]})
    assert response.status_code == 200
    assert any("AUTH IS DISABLED" in r.getMessage() for r in caplog.records)


async def test_operations_endpoints(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "ops")
    async with running(settings) as client:
        await client.post("/v1/rerank", json={"query": "q", "documents": ["d"]}, headers=bearer(key))
        await client.post("/v1/rerank", json={"query": "", "documents": ["d"]}, headers=bearer(key))
        health = await client.get("/healthz")
        metrics = (await client.get("/metrics")).text
        schema = (await client.get("/schema/openapi.json")).json()
    assert health.json() == {"status": "ok"}
    assert 'fathom_http_requests_total{method="POST",route="/v1/rerank",status="200"} 1.0' in metrics
    assert 'route="/v1/rerank",status="400"' in metrics
    assert "fathom_http_request_seconds_bucket" in metrics
    assert f'fathom_rerank_batch_pairs_count{{model="{TINY}"}} 1.0' in metrics
    assert "fathom_rerank_queue_pairs" in metrics
    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/v1/models"} <= set(schema["paths"])
