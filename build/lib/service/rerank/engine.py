"""The rerank engine: requests queue their pairs, one worker runs them in shared, length-sorted batches.

Inference runs in a worker thread, never on the event loop. While one cycle runs, newly arrived requests
queue up; the next cycle takes them all (up to `cycle_pairs`), sorts every pair by length and runs
batches of `batch_size`, so concurrent requests share batches and little compute goes to padding.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.rerank.cross_encoder import CrossEncoder, PairEncoding, sigmoid
from service.search.errors import Overloaded


@dataclass(slots=True)
class _Job:
    pairs: list[PairEncoding]
    future: asyncio.Future[np.ndarray]


@dataclass(frozen=True, slots=True)
class Scored:
    """A request's scores in the order of its documents, and the tokens its pairs took."""

    scores: list[float]
    tokens: int


@dataclass(slots=True)
class EngineStats:
    """Counters for /metrics and for tests that check requests share batches."""

    cycles: int = 0
    batches: int = 0
    jobs: int = 0
    pairs: int = 0
    observers: list[Callable[[int, int], None]] = field(default_factory=list)


class RerankEngine:
    """Micro-batching front of one CrossEncoder."""

    def __init__(
        self,
        encoder: CrossEncoder,
        *,
        batch_size: int = 16,
        max_wait_ms: float = 2.0,
        max_queue_pairs: int = 20_000,
        cycle_pairs: int = 512,
    ) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue_pairs = max_queue_pairs
        self.cycle_pairs = cycle_pairs
        self.stats = EngineStats()
        self._pending: list[_Job] = []
        self._queued_pairs = 0
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """Pairs waiting for inference."""
        return self._queued_pairs

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="rerank-engine")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def rerank(
        self, query: str, documents: Sequence[str], max_tokens_per_doc: int | None = None
    ) -> Scored:
        """Score every document against the query; scores are sigmoids of the model's logits."""
        pairs = await asyncio.to_thread(self.encoder.encode, query, documents, max_tokens_per_doc)
        logits = await self._submit(pairs)
        return Scored(scores=sigmoid(logits).tolist(), tokens=sum(len(pair) for pair in pairs))

    async def _submit(self, pairs: list[PairEncoding]) -> np.ndarray:
        if self._queued_pairs + len(pairs) > self.max_queue_pairs:
            raise Overloaded(f"the rerank queue is full ({self._queued_pairs} pairs waiting); retry shortly")
        self.start()
        job = _Job(pairs, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued_pairs += len(pairs)
        self._wakeup.set()
        return await job.future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.max_wait:
                await asyncio.sleep(self.max_wait)  # let requests arriving together share the cycle
            jobs = self._take_cycle()
            if not jobs:
                continue
            try:
                results = await asyncio.to_thread(self._infer, [job.pairs for job in jobs])
            except Exception as exc:  # a failed cycle fails its requests, not the worker
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, logits in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(logits)

    def _take_cycle(self) -> list[_Job]:
        """Whole jobs, oldest first, up to cycle_pairs pairs (always at least one job)."""
        taken: list[_Job] = []
        count = 0
        while self._pending and (not taken or count + len(self._pending[0].pairs) <= self.cycle_pairs):
            job = self._pending.pop(0)
            if job.future.cancelled():  # the client went away: skip its work
                self._queued_pairs -= len(job.pairs)
                continue
            taken.append(job)
            count += len(job.pairs)
        self._queued_pairs -= count
        if not self._pending:
            self._wakeup.clear()
        return taken

    def _infer(self, jobs: list[list[PairEncoding]]) -> list[np.ndarray]:
        """Score all pairs of a cycle in length-sorted batches; runs in a worker thread."""
        flat = [
            (job_index, pair_index, pair)
            for job_index, job in enumerate(jobs)
            for pair_index, pair in enumerate(job)
        ]
        flat.sort(key=lambda item: len(item[2]))
        results = [np.empty(len(job), dtype=np.float64) for job in jobs]
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start : start + self.batch_size]
            logits = self.encoder.logits([pair for _, _, pair in chunk])
            for (job_index, pair_index, _), logit in zip(chunk, logits, strict=True):
                results[job_index][pair_index] = logit
            self.stats.batches += 1
            for observe in self.stats.observers:
                observe(len(chunk), len(jobs))
        self.stats.cycles += 1
        self.stats.jobs += len(jobs)
        self.stats.pairs += len(flat)
        return results
