"""The rerank engine: requests queue their pairs, one worker runs them in shared, length-sorted batches.

Inference runs in a worker thread, never on the event loop. While one cycle runs, newly arrived requests
queue up. Each cycle takes pairs from every waiting request in turn, `batch_size` at a time and each
request's shortest first, until it holds about `cycle_ms` of work (by the measured cost per token); then
it sorts them by length and runs batches of `batch_size`. So concurrent requests share batches, little
compute goes to padding (a cycle of a slow model may hold a single slice, which is of one length because
the request's pairs were taken in length order), and a small request waits at most about one cycle
behind a huge one instead of behind all of it.

A request ends early when its client goes away (its task is cancelled) or its deadline passes: its
pairs are taken out of the queue, and the worker skips those already in the cycle being run.

A request with a deadline is admitted only when the work queued, its own and the run in progress can
all be done (at the measured cost per token) by its deadline and by the earliest deadline of those
already admitted: requests share cycles, so a newcomer's pairs delay the others too. Otherwise it is
refused at once (Overloaded, 429, with the seconds until the queue has room for it) rather than after
waiting out its time limit to be told no. Once the cost is known, every admitted request then ends
within its deadline unless the machine slows down under it.

A search's budgeted job (`rerank_within`) is different: its passages come best first, and only a
prefix of them is any use to the search. So it runs in order, in small batches, ahead of the cycle's
length-sorted batches, and the worker starts no batch that would not end by its deadline (near it,
the batch shrinks to what fits): whatever is done when time is up is a usable head, and no batch is
thrown away half run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.errors import BackendTimeout, InvalidRequest, Overloaded
from service.rerank.cost import CostModel, affordable
from service.rerank.cross_encoder import CrossEncoder, EncodedRequest, PairEncoding, sigmoid

# A search budget plans for this share of the time left (the rest is slack for answering on the event
# loop). The real guard is the worker's: it starts a budgeted batch only when its estimate, padded by
# LATE_MARGIN (the cost per token is a running mean, one batch may take longer), ends by the deadline.
BUDGET_SHARE = 0.9
LATE_MARGIN = 1.25
# Pairs per ONNX run of a budgeted job: small, so the prefix grows in steps and the last batch
# started before the deadline is short; big enough that a run is still mostly matrix work.
BUDGET_BATCH = 4


@dataclass(eq=False, slots=True)
class Job:
    """One request's pairs and how far they have got. The worker thread writes `logits` and `done`."""

    pairs: list[PairEncoding]
    future: asyncio.Future[None]
    deadline: float | None = None  # time.monotonic()
    partial: bool = False  # at the deadline, answer with the pairs scored so far
    logits: np.ndarray = field(init=False)
    taken: int = 0  # pairs handed to a cycle
    done: int = 0  # pairs scored or skipped
    stopped: bool = False  # the client left or the deadline passed: skip what is left
    ordered: int = 0  # > 0: a budgeted job, run in order in batches of this many pairs
    left_tokens: int = field(init=False)  # tokens neither scored, skipped nor in the batch being run
    # The order pairs are taken into cycles: shortest first, so each slice of a job holds pairs of
    # about one length and its batch pads little, however few pairs a cycle takes; a budgeted job's
    # own order, because only a prefix of it counts.
    order: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.logits = np.full(len(self.pairs), np.nan)
        self.left_tokens = sum(len(pair) for pair in self.pairs)
        indices = range(len(self.pairs))
        self.order = list(indices) if self.ordered else sorted(indices, key=lambda i: len(self.pairs[i]))

    def indices(self, start: int, stop: int) -> list[int]:
        """The pairs at positions start..stop of the taking order."""
        return self.order[start:stop]

    @property
    def waiting(self) -> int:
        """Pairs not yet taken into a cycle."""
        return len(self.pairs) - self.taken

    @property
    def unfinished(self) -> int:
        return len(self.pairs) - self.done

    def expired(self, now: float) -> bool:
        return self.stopped or (self.deadline is not None and now >= self.deadline)


@dataclass(frozen=True, slots=True)
class Slice:
    """Positions `start`..`stop` of one job's taking order, run in one cycle."""

    job: Job
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class Scored:
    """A request's scores in the order of its documents, and what scoring them took."""

    scores: list[float]
    tokens: int
    windows: int  # pairs run: one per document, more for a document split into windows
    split_documents: int


@dataclass(slots=True)
class EngineStats:
    """Counters for /metrics and for tests that check requests share batches."""

    cycles: int = 0
    batches: int = 0
    jobs: int = 0
    pairs: int = 0
    skipped_pairs: int = 0  # pairs of requests that were cancelled or timed out, never run
    refused: int = 0  # requests refused at once: they would not have ended by their deadline
    observers: list[Callable[[int, int], None]] = field(default_factory=list)


class RerankEngine:
    """Micro-batching, fair, deadline-aware front of one CrossEncoder."""

    def __init__(
        self,
        encoder: CrossEncoder,
        *,
        batch_size: int = 16,
        max_wait_ms: float = 2.0,
        max_queue_pairs: int = 20_000,
        cycle_ms: float = 200.0,
        cycle_pairs: int = 512,
        cost: CostModel | None = None,
    ) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue_pairs = max_queue_pairs
        self.cycle_seconds = cycle_ms / 1000
        self.cycle_pairs = cycle_pairs
        self.cost = cost or CostModel()
        self.stats = EngineStats()
        self._jobs: list[Job] = []  # every job not yet finished, oldest first
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy_until = 0.0  # time.monotonic() the ONNX run in progress should end by; 0.0 when idle

    @property
    def queue_depth(self) -> int:
        """Pairs accepted and not yet scored: waiting, or in the cycle being run."""
        return sum(job.unfinished for job in self._jobs if not job.stopped)

    def queued_tokens(self) -> int:
        """Tokens of live requests' pairs not yet run (the batch being run is not among them)."""
        return sum(job.left_tokens for job in self._jobs if not job.stopped)

    def backlog_seconds(self) -> float:
        """How long a new request waits before its first batch: the queue, and the run in progress.

        The run in progress counts even when its request has gone (cancelled, or past its deadline):
        the worker is busy with it all the same.
        """
        running = max(0.0, self._busy_until - time.monotonic()) if self._busy_until else 0.0
        return self.cost.seconds(self.queued_tokens()) + running

    def calibrate(self, rows: int = 8, width: int = 128) -> None:
        """Warm the session up and measure the cost per token on a dummy batch; runs in a thread."""
        dummy = PairEncoding(ids=[0] * width, type_ids=[0] * width)
        for _ in range(2):  # the first run pays for ONNX Runtime's allocations, not the model
            started = time.perf_counter()
            self.encoder.logits([dummy] * rows)
        self.cost.observe(rows * width, time.perf_counter() - started)

    def start(self) -> None:
        if self._worker is None:
            self._loop = asyncio.get_running_loop()
            self._worker = self._loop.create_task(self._run(), name="rerank-engine")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        max_tokens_per_doc: int | None = None,
        *,
        max_chunks_per_doc: int = 1,
        deadline: float | None = None,
    ) -> Scored:
        """Score every document against the query; see `score`."""
        encoded = await self.encode(query, documents, max_tokens_per_doc, max_chunks_per_doc)
        return await self.score(encoded, deadline=deadline)

    async def score(
        self, encoded: EncodedRequest, *, max_tokens: int | None = None, deadline: float | None = None
    ) -> Scored:
        """Scores in document order, a long document's by its best window (MaxP).

        Scores are sigmoids of the model's logits. `max_tokens` refuses a request whose pairs hold
        more tokens (InvalidRequest); past `deadline` (time.monotonic()) it fails with BackendTimeout.
        """
        if max_tokens is not None and encoded.tokens > max_tokens:
            raise InvalidRequest(
                f"this request holds {encoded.tokens} tokens to score, more than the {max_tokens} one "
                "request may; send fewer or shorter documents, or a smaller max_chunks_per_doc"
            )
        logits = await self.logits(encoded.pairs, deadline=deadline)
        return Scored(
            scores=sigmoid(encoded.best_per_document(logits)).tolist(),
            tokens=encoded.tokens,
            windows=len(encoded.pairs),
            split_documents=encoded.split_documents,
        )

    async def rerank_within(self, query: str, passages: Sequence[str], seconds: float) -> list[float]:
        """Scores for as many passages, in order, as fit in `seconds` on this machine, given the queue.

        The answer is a prefix of `passages`: the best-first head a search can afford to rerank. The
        plan takes BUDGET_SHARE of the time left after tokenising and after the backlog ahead; the
        pairs then run in order, BUDGET_BATCH at a time, and stop at the first batch that would
        overrun the deadline, so what was scored is a prefix and the stage ends by the deadline.
        """
        deadline = time.monotonic() + seconds
        encoded = await self.encode(query, passages)
        left = BUDGET_SHARE * (deadline - time.monotonic()) - self.backlog_seconds()
        count = affordable([len(pair) for pair in encoded.pairs], left, self.cost)
        if count == 0:
            return []
        logits = await self.logits(
            encoded.pairs[:count], deadline=deadline, partial=True, ordered=BUDGET_BATCH
        )
        scored = int(np.argmax(np.isnan(logits))) if np.isnan(logits).any() else count
        scores: list[float] = sigmoid(logits[:scored]).tolist()
        return scores

    async def rerank_first(self, query: str, passages: Sequence[str]) -> list[float]:
        """Every passage's score, run in order ahead of the cycle's length-sorted batches, as a budgeted
        job is: the blocks a search page shows, which a visitor waits for, do not queue behind bulk
        /v1/rerank work. Bounded by the caller (the search's rerank timeout cancels it)."""
        encoded = await self.encode(query, passages)
        logits = await self.logits(encoded.pairs, ordered=BUDGET_BATCH)
        scores: list[float] = sigmoid(logits).tolist()
        return scores

    async def encode(
        self,
        query: str,
        documents: Sequence[str],
        max_tokens_per_doc: int | None = None,
        max_chunks_per_doc: int = 1,
    ) -> EncodedRequest:
        """Tokenise off the event loop: a thousand long documents take a while."""
        return await asyncio.to_thread(
            self.encoder.encode, query, documents, max_tokens_per_doc, max_chunks_per_doc
        )

    async def logits(
        self,
        pairs: list[PairEncoding],
        *,
        deadline: float | None = None,
        partial: bool = False,
        ordered: int = 0,
    ) -> np.ndarray:
        """One logit per pair.

        At `deadline` (time.monotonic()) the pairs not yet scored are dropped: with `partial` they come
        back as NaN, else the request fails with BackendTimeout. Cancelling the caller drops them too.
        `ordered` > 0 runs the pairs in order, that many per batch, none past the deadline (a budget).
        """
        if not pairs:
            return np.empty(0)
        if len(pairs) > self.max_queue_pairs:
            raise InvalidRequest(
                f"this request needs {len(pairs)} (query, document) pairs scored, more than the "
                f"{self.max_queue_pairs} the server queues at once; send fewer documents per request"
            )
        backlog = self.queue_depth
        if backlog + len(pairs) > self.max_queue_pairs:
            raise Overloaded(
                f"the rerank queue is full ({backlog} pairs waiting); retry shortly",
                retry_after=self.backlog_seconds(),
            )
        if deadline is not None and not partial:
            self._admit(sum(len(pair) for pair in pairs), deadline)
        self.start()
        job = Job(pairs, asyncio.get_running_loop().create_future(), deadline, partial, ordered=ordered)
        self._jobs.append(job)
        self._wakeup.set()
        try:
            await self._finished(job)
        finally:
            if job.unfinished:  # cancelled, timed out or failed: the worker skips what is left
                job.stopped = True
                self.stats.skipped_pairs += job.waiting
                self._forget(job)
        return job.logits

    def _admit(self, tokens: int, deadline: float) -> None:
        """Overloaded when the queue, the run in progress and these tokens cannot all be scored by
        `deadline` and by the earliest deadline of the requests admitted before (see the module doc)."""
        finish = time.monotonic() + self.backlog_seconds() + self.cost.seconds(tokens)
        admitted = [job.deadline for job in self._jobs if job.deadline and not (job.partial or job.stopped)]
        earliest = min([deadline, *(when for when in admitted if when > time.monotonic())])
        if finish <= earliest:
            return
        self.stats.refused += 1
        late = finish - earliest
        raise Overloaded(
            f"the rerank queue holds about {self.backlog_seconds():.1f} s of work; this request would "
            f"end {late:.1f} s past a time limit; retry after the Retry-After seconds, or send fewer "
            "documents",
            retry_after=late,
        )

    async def _finished(self, job: Job) -> None:
        try:
            async with asyncio.timeout_at(_loop_time(job.deadline)):
                await job.future
        except TimeoutError:
            job.stopped = True
            scored = int(np.count_nonzero(~np.isnan(job.logits)))
            if not job.partial:
                raise BackendTimeout(
                    f"reranking stopped at the request's time limit with {scored} of {len(job.pairs)} "
                    "pairs scored; send fewer or shorter documents, or retry"
                ) from None

    def _forget(self, job: Job) -> None:
        with contextlib.suppress(ValueError):
            self._jobs.remove(job)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.max_wait and not any(job.taken for job in self._jobs):
                await asyncio.sleep(self.max_wait)  # idle until now: let requests arriving together share
            cycle = self._take_cycle()
            if not cycle:
                self._wakeup.clear()
                continue
            try:
                await asyncio.to_thread(self._infer, cycle)
            except Exception as exc:  # a failed cycle fails its requests, not the worker
                for job in {piece.job: None for piece in cycle}:
                    job.stopped = True
                    self._forget(job)
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue

    def _settle(self, job: Job) -> None:
        """Answer a job whose every pair is scored or skipped; on the event loop."""
        self._forget(job)
        if not job.future.done():
            job.future.set_result(None)

    def _settle_soon(self, job: Job) -> None:
        """From the worker thread: a job done mid-cycle is answered now, not at the cycle's end."""
        if job.done == len(job.pairs) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._settle, job)

    def _take_cycle(self) -> list[Slice]:
        """Up to one cycle of work, `batch_size` pairs from each waiting job in turn (oldest first)."""
        now = time.monotonic()
        limit = self._cycle_tokens()
        cycle: list[Slice] = []
        tokens = pairs = 0
        while tokens < limit and pairs < self.cycle_pairs:
            active = [job for job in self._jobs if job.waiting and not job.expired(now)]
            if not active:
                break
            for job in active:
                stop = min(len(job.pairs), job.taken + (job.ordered or self.batch_size))
                cycle.append(Slice(job, job.taken, stop))
                tokens += sum(len(job.pairs[index]) for index in job.indices(job.taken, stop))
                pairs += stop - job.taken
                job.taken = stop
                if tokens >= limit or pairs >= self.cycle_pairs:
                    break
        return cycle

    def _cycle_tokens(self) -> float:
        per_token = self.cost.seconds_per_token
        return self.cycle_seconds / per_token if per_token else float("inf")

    def _infer(self, cycle: list[Slice]) -> None:
        """Score a cycle's pairs; runs in a worker thread.

        Budgeted jobs first, each in order (their deadlines are close and only a prefix counts), then
        everyone else's pairs sorted by length, in batches of `batch_size`.
        """
        jobs = len({piece.job for piece in cycle})
        budgeted: dict[Job, list[int]] = {}
        flat: list[tuple[Job, int]] = []
        for piece in cycle:
            span = piece.job.indices(piece.start, piece.stop)
            if piece.job.ordered:
                budgeted.setdefault(piece.job, []).extend(span)
            else:
                flat.extend((piece.job, index) for index in span)
        for job, indices in budgeted.items():
            self._run_in_order(job, indices, jobs)
        flat.sort(key=lambda item: len(item[0].pairs[item[1]]))
        start = 0
        while start < len(flat):
            now = time.monotonic()
            batch: list[tuple[Job, int]] = []
            while start < len(flat) and len(batch) < self.batch_size:
                job, index = flat[start]
                start += 1
                if job.expired(now):
                    self._skip(job, [index])
                else:
                    batch.append((job, index))
            if batch:
                self._run_batch(batch, jobs)
        self.stats.cycles += 1
        self.stats.jobs += jobs
        self.stats.pairs += len(flat) + sum(len(indices) for indices in budgeted.values())

    def _run_in_order(self, job: Job, indices: list[int], jobs: int) -> None:
        """A budgeted job's pairs of this cycle, `job.ordered` at a time, none expected past its deadline.

        Near the deadline the batch shrinks to what is expected to fit; when not even one pair does,
        what is scored so far is the prefix the search gets and the rest is skipped.
        """
        position = 0
        while position < len(indices):
            now = time.monotonic()
            batch = (
                []
                if job.expired(now)
                else self._fitting(job, indices[position : position + job.ordered], now)
            )
            if not batch:
                job.stopped = True
                self._skip(job, indices[position:])
                self._skip(job, job.indices(job.taken, len(job.pairs)))
                job.taken = len(job.pairs)
                return
            self._run_batch([(job, index) for index in batch], jobs)
            position += len(batch)

    def _fitting(self, job: Job, batch: list[int], now: float) -> list[int]:
        """The longest head of `batch` whose run, by the cost per token padded by LATE_MARGIN, ends by
        the job's deadline."""
        if job.deadline is None:
            return batch
        while batch:
            padded = len(batch) * max(len(job.pairs[index]) for index in batch)
            if now + LATE_MARGIN * self.cost.seconds(padded) <= job.deadline:
                break
            batch = batch[:-1]
        return batch

    def _skip(self, job: Job, indices: list[int]) -> None:
        """Pairs of a job that has gone: counted as done unscored."""
        if not indices:
            return
        job.done += len(indices)
        job.left_tokens -= sum(len(job.pairs[index]) for index in indices)
        self.stats.skipped_pairs += len(indices)
        self._settle_soon(job)

    def _run_batch(self, batch: list[tuple[Job, int]], jobs: int) -> None:
        pairs = [job.pairs[index] for job, index in batch]
        padded = len(pairs) * max(len(pair) for pair in pairs)
        for (job, _), pair in zip(batch, pairs, strict=True):
            job.left_tokens -= len(pair)
        started = time.perf_counter()
        self._busy_until = time.monotonic() + self.cost.seconds(padded)
        try:
            logits = self.encoder.logits(pairs)
        finally:
            self._busy_until = 0.0
        self.cost.observe(padded, time.perf_counter() - started)
        for (job, index), logit in zip(batch, logits, strict=True):
            job.logits[index] = logit
            job.done += 1
            self._settle_soon(job)
        self.stats.batches += 1
        for observe in self.stats.observers:
            observe(len(batch), jobs)


def _loop_time(deadline: float | None) -> float | None:
    """A time.monotonic() deadline on the event loop's clock, for asyncio.timeout_at."""
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())
