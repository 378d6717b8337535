"""Rerank work bounded by size and time: long documents by windows, budgets, deadlines, fairness, hang-ups."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from service.app import create_app
from service.rerank.cost import CostModel
from service.rerank.cross_encoder import CrossEncoder, PairEncoding
from service.rerank.engine import RerankEngine
from service.settings import Settings
from tests.conftest import TINY, bearer
from tests.integration.rerank_app import new_key, rerank_settings, running

pytestmark = pytest.mark.anyio


def engine_of(client: httpx.AsyncClient, model: str = TINY) -> RerankEngine:
    engine: RerankEngine | None = client._transport.app.state["runtime"].models.states[model].engine  # type: ignore[attr-defined]
    assert engine is not None
    return engine


@dataclass
class Held:
    """ONNX runs wait for `release`; `running` is set once the worker is inside one."""

    release: threading.Event = field(default_factory=threading.Event)
    running: threading.Event = field(default_factory=threading.Event)


@contextmanager
def held_inference(monkeypatch: pytest.MonkeyPatch) -> Iterator[Held]:
    """Every ONNX run waits until released: the worker is busy for as long as a test needs."""
    held = Held()
    real = CrossEncoder.logits

    def waiting(self: CrossEncoder, batch: list[PairEncoding]) -> np.ndarray:
        held.running.set()
        held.release.wait(timeout=30)
        return real(self, batch)

    monkeypatch.setattr(CrossEncoder, "logits", waiting)
    try:
        yield held
    finally:
        held.release.set()


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        await asyncio.sleep(0.01)


def window_texts(engine: RerankEngine, query: str, document: str) -> list[str]:
    """The document text of each window the engine would score, decoded from its tokens."""
    tokenizer = engine.encoder._splitter
    encoded = engine.encoder.encode(query, [document], None, 10)
    texts = []
    for pair in encoded.pairs:
        document_ids = [i for i, kind in zip(pair.ids, pair.type_ids, strict=True) if kind == 1][:-1]
        texts.append(tokenizer.decode(document_ids))
    return texts


async def test_long_documents_are_scored_by_their_best_window_and_billed_per_window(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    key = new_key(settings, "long")
    # One token per word, so a window's decoded text tokenises back to the same window.
    vocabulary = "river wind flow heat wing speed shock wave layer plate air boundary pressure drag"
    words = " ".join(vocabulary.split()[(i * 5) % 14] for i in range(1800))
    query = "river crossing"
    async with running(settings) as client:
        windows = window_texts(engine_of(client), query, words)
        split = await client.post(
            "/v1/rerank",
            json={"model": TINY, "query": query, "documents": [words, "short"]},
            headers=bearer(key),
        )
        one = await client.post(
            "/v1/rerank",
            json={"model": TINY, "query": query, "documents": [words], "max_chunks_per_doc": 1},
            headers=bearer(key),
        )
        alone = await client.post(
            "/v1/rerank",
            json={"model": TINY, "query": query, "documents": windows, "max_chunks_per_doc": 1},
            headers=bearer(key),
        )
        many = await client.post(
            "/v1/rerank",
            json={"model": TINY, "query": query, "documents": [words] * 26, "max_chunks_per_doc": 4},
            headers=bearer(key),
        )
    assert split.status_code == one.status_code == alone.status_code == many.status_code == 200
    assert 2 < len(windows) <= 10
    body = split.json()
    scores = {r["index"]: r["relevance_score"] for r in body["results"]}
    by_window = {r["index"]: r["relevance_score"] for r in alone.json()["results"]}
    window_scores = [by_window[index] for index in range(len(windows))]
    assert scores[0] == pytest.approx(max(window_scores), abs=1e-5)  # MaxP: the best window counts
    assert body["meta"]["split_documents"] == 1
    assert one.json()["meta"]["split_documents"] == 0
    assert one.json()["usage"]["total_tokens"] == 512  # one window: cut longest_first as before
    assert one.json()["results"][0]["relevance_score"] == pytest.approx(window_scores[0], abs=1e-5)
    # Cohere bills every window as a document: 26 documents x 4 windows (the cap, of 5) = 104 -> 2 units.
    assert len(windows) > 4
    assert many.json()["meta"]["billed_units"]["search_units"] == math.ceil(26 * 4 / 100) == 2
    assert many.json()["meta"]["split_documents"] == 26
    assert many.json()["usage"]["total_tokens"] == 26 * 4 * 512


async def test_a_request_larger_than_the_queue_or_the_token_budget_is_400(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path, max_queue_pairs=5, max_request_tokens=2_000)
    key = new_key(settings, "big")
    async with running(settings) as client:
        too_many = await client.post(
            "/v1/rerank", json={"query": "q", "documents": ["d"] * 6}, headers=bearer(key)
        )
        too_long = await client.post(
            "/v1/rerank", json={"query": "q", "documents": ["word " * 500] * 5}, headers=bearer(key)
        )
    assert too_many.status_code == 400, too_many.text
    assert "more than the 5 the server queues at once" in too_many.json()["error"]["message"]
    assert "retry-after" not in too_many.headers
    assert too_long.status_code == 400, too_long.text
    assert "more than the 2000 one request may" in too_long.json()["error"]["message"]


async def test_a_request_that_cannot_end_in_time_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused with 429 and Retry-After before waiting, not with a 503 after its whole time limit; a
    request that still fits behind the queue is admitted, and the one being run is not made late."""
    settings = rerank_settings(tmp_path, request_timeout=3.0)
    key = new_key(settings, "admission")

    async def rerank(documents: int) -> httpx.Response:
        body = {"query": "q", "documents": ["d"] * documents}
        return await client.post("/v1/rerank", json=body, headers=bearer(key))

    async with running(settings) as client:
        engine = engine_of(client)
        engine.cost = CostModel(seconds_per_token=0.03)  # 5 tokens a pair: 0.15 s per document
        with held_inference(monkeypatch) as held:
            first = asyncio.create_task(rerank(4))  # 0.6 s of work, admitted
            await until(held.running.is_set)
            started = time.monotonic()
            refused = await rerank(40)  # 6 s of work behind 0.6 s, against a 3 s limit
            waited = time.monotonic() - started
            small = asyncio.create_task(rerank(1))  # 0.15 s behind 0.6 s: fits
            await asyncio.sleep(0.05)
            held.release.set()
            answers = [(await first).status_code, (await small).status_code]
    assert refused.status_code == 429, refused.text
    assert waited < 1.0  # at once, not after the 3 s limit
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "overloaded"
    assert "time limit" in refused.json()["error"]["message"]
    assert answers == [200, 200]
    assert engine.stats.refused == 1


async def test_cohere_sdk_retries_a_refusal_and_then_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cohere's SDK retries a 429 by itself after Retry-After: the caller just gets its results."""
    import cohere

    settings = rerank_settings(tmp_path, request_timeout=10.0)
    key = new_key(settings, "cohere-retry")
    async with running(settings) as client:
        engine = engine_of(client)
        engine.cost = CostModel(seconds_per_token=0.03)
        sdk = cohere.AsyncClientV2(api_key=key, base_url="http://fathom", httpx_client=client)
        with held_inference(monkeypatch) as held:
            body = {"query": "q", "documents": ["d"] * 50}  # 7.5 s of work
            first = asyncio.create_task(client.post("/v1/rerank", json=body, headers=bearer(key)))
            await until(held.running.is_set)
            # 4.5 s more behind it would end past 10 s: refused, retried by the SDK after Retry-After.
            answer = asyncio.create_task(sdk.rerank(model=TINY, query="q", documents=["d"] * 30))
            await until(lambda: engine.stats.refused == 1)
            held.release.set()
            assert (await first).status_code == 200
            result = await answer
    assert sorted(r.index for r in result.results) == list(range(30))
    assert engine.stats.refused == 1


async def test_a_full_queue_is_429_and_the_gauge_counts_pairs_being_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = rerank_settings(tmp_path, max_queue_pairs=5)
    key = new_key(settings, "queue")
    async with running(settings) as client:
        with held_inference(monkeypatch) as held:
            first = asyncio.create_task(
                client.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 4}, headers=bearer(key))
            )
            await until(held.running.is_set)  # the cycle holding the 4 pairs is running now
            gauge = (await client.get("/metrics")).text
            full = await client.post(
                "/v1/rerank", json={"query": "q", "documents": ["d"] * 2}, headers=bearer(key)
            )
            held.release.set()
            assert (await first).status_code == 200
        after = (await client.get("/metrics")).text
    assert f'fathom_rerank_queue_pairs{{model="{TINY}"}} 4.0' in gauge
    assert full.status_code == 429
    assert "queue is full" in full.json()["error"]["message"] and "retry-after" in full.headers
    assert f'fathom_rerank_queue_pairs{{model="{TINY}"}} 0.0' in after


async def test_a_batch_still_running_for_a_request_that_left_counts_in_the_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search budget plans behind the batch the worker is busy with, even when its request is gone."""
    async with running(rerank_settings(tmp_path, batch_size=4)) as client:
        engine = engine_of(client)
        engine.cost = CostModel(seconds_per_token=0.05)  # the tiny model's real cost is near zero
        pairs = (await engine.encode("q", ["d"] * 8)).pairs
        with held_inference(monkeypatch) as held:
            job = asyncio.create_task(engine.logits(pairs))
            await until(held.running.is_set)
            waiting_behind = engine.backlog_seconds()
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            behind_the_run_alone = engine.backlog_seconds()
            held.release.set()
            await until(lambda: engine.backlog_seconds() == 0)
    in_flight = 4 * len(pairs[0]) * 0.05
    assert waiting_behind == pytest.approx(in_flight + 4 * len(pairs[0]) * 0.05, rel=0.2)
    assert 0 < behind_the_run_alone <= in_flight


async def test_work_past_the_request_time_limit_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = rerank_settings(tmp_path, request_timeout=1.0, batch_size=2)
    key = new_key(settings, "late")
    async with running(settings) as client:
        engine = engine_of(client)
        with held_inference(monkeypatch) as held:
            started = time.monotonic()
            late = asyncio.create_task(
                client.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 8}, headers=bearer(key))
            )
            await until(held.running.is_set)
            answer = await late
            waited = time.monotonic() - started
            held.release.set()
            await until(lambda: engine.stats.cycles == 1)
        assert answer.status_code == 503, answer.text
        assert "time limit" in answer.json()["error"]["message"]
        assert waited < 5
        assert engine.queue_depth == 0
        # The batch in flight at the deadline finishes; the 6 pairs behind it never run.
        assert engine.stats.skipped_pairs == 6
        ok = await client.post("/v1/rerank", json={"query": "q", "documents": ["d"]}, headers=bearer(key))
    assert ok.status_code == 200


async def test_a_small_request_is_not_stuck_behind_a_huge_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = rerank_settings(tmp_path, max_request_tokens=1_000_000)
    key = new_key(settings, "fair")
    document = "a passage of some length about wind tunnels and boundary layers " * 20
    finished: dict[str, float] = {}

    async def ask(name: str, documents: list[str]) -> None:
        response = await client.post(
            "/v1/rerank", json={"query": "boundary layer", "documents": documents}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text
        finished[name] = time.monotonic()

    async with running(settings) as client:
        engine = engine_of(client)
        with held_inference(monkeypatch) as held:
            huge = asyncio.create_task(ask("huge", [document] * 1000))
            await until(held.running.is_set)  # the huge one's first cycle is running
            small = asyncio.create_task(ask("small", [document]))
            await until(lambda: len(engine._jobs) == 2)
            held.release.set()
            await asyncio.gather(huge, small)
    assert finished["small"] < finished["huge"]
    assert engine.stats.cycles >= 2


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[str, RerankEngine]]:
    """The app behind a real uvicorn on a free port, so a client can really hang up."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done())
    runtime: Any = app.state["runtime"]
    await runtime.wait_started()
    port = server.servers[0].sockets[0].getsockname()[1]
    engine = runtime.models.states[TINY].engine
    try:
        yield f"http://127.0.0.1:{port}", engine
    finally:
        server.should_exit = True
        await task


async def test_a_client_that_hangs_up_has_its_queued_work_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = rerank_settings(tmp_path, batch_size=2)
    key = new_key(settings, "gone")
    async with served(settings) as (url, engine):
        with held_inference(monkeypatch) as held:
            async with httpx.AsyncClient(base_url=url, timeout=1.0) as client:
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(
                        "/v1/rerank", json={"query": "q", "documents": ["d"] * 10}, headers=bearer(key)
                    )
            assert held.running.is_set()
            await until(lambda: engine.queue_depth == 0)
            held.release.set()
            await until(lambda: engine.stats.cycles == 1)
        assert engine.stats.skipped_pairs == 8  # only the batch already running was scored
