"""How the rerank engine forms its ONNX batches, on a fake encoder that records them (pure logic)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import cast

import numpy as np

from service.rerank.cost import CostModel
from service.rerank.cross_encoder import CrossEncoder, PairEncoding
from service.rerank.engine import RerankEngine


class RecordingEncoder:
    """Scores a pair by its length and its first id, and remembers the lengths of every batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def logits(self, batch: Sequence[PairEncoding]) -> np.ndarray:
        self.batches.append([len(pair) for pair in batch])
        return np.array([len(pair) + pair.ids[0] / 1000 for pair in batch], dtype=np.float64)


def pair(length: int, tag: int) -> PairEncoding:
    return PairEncoding(ids=[tag] + [0] * (length - 1), type_ids=[0] * length)


def slow_engine(encoder: RecordingEncoder, batch_size: int) -> RerankEngine:
    # A second per token: every cycle's time limit is below one slice, so each cycle runs one slice,
    # as a cycle of a slow model on a small machine does.
    return RerankEngine(
        cast(CrossEncoder, encoder), batch_size=batch_size, max_wait_ms=0, cost=CostModel(1.0)
    )


def padded(batches: list[list[int]]) -> int:
    return sum(len(batch) * max(batch) for batch in batches)


def test_one_slice_cycles_still_run_length_sorted_batches() -> None:
    draw = random.Random(7)
    lengths = [draw.randint(20, 300) for _ in range(100)]
    pairs = [pair(length, tag) for tag, length in enumerate(lengths)]
    encoder = RecordingEncoder()

    async def run() -> np.ndarray:
        engine = slow_engine(encoder, batch_size=16)
        try:
            return await engine.logits(pairs)
        finally:
            await engine.stop()

    logits = asyncio.run(run())

    ordered = sorted(lengths)
    best = [ordered[i : i + 16] for i in range(0, len(ordered), 16)]
    assert len(encoder.batches) == len(best)  # one slice per cycle, as the cost model forces
    assert padded(encoder.batches) == padded(best)  # as little padding as sorting the whole request
    in_corpus_order = [lengths[i : i + 16] for i in range(0, len(lengths), 16)]
    assert padded(encoder.batches) < padded(in_corpus_order)
    # Each score still lands on its own pair, whatever order the pairs ran in.
    assert logits.tolist() == [length + tag / 1000 for tag, length in enumerate(lengths)]


def test_a_budgeted_job_runs_in_its_own_order() -> None:
    lengths = [300, 20, 250, 40, 200, 60, 150, 80]
    encoder = RecordingEncoder()

    async def run() -> np.ndarray:
        engine = slow_engine(encoder, batch_size=16)
        try:
            return await engine.logits([pair(n, i) for i, n in enumerate(lengths)], ordered=4)
        finally:
            await engine.stop()

    logits = asyncio.run(run())

    assert encoder.batches == [lengths[:4], lengths[4:]]  # best first: the head, not the shortest
    assert logits.tolist() == [length + tag / 1000 for tag, length in enumerate(lengths)]
