"""Reciprocal rank fusion of retriever rankings, and the collapse of fused passages into documents."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from service.search.models import Hit


@dataclass(frozen=True, slots=True)
class StageEvidence:
    """Where one retriever placed a passage: 1-based rank and its own score, or None if it did not."""

    rank: int | None = None
    score: float | None = None


ABSENT = StageEvidence()


@dataclass(frozen=True, slots=True)
class FusedHit:
    """One passage after fusion: its merged hit, fused score and one evidence per input ranking.

    `hit` keeps the full chunk text, which the reranker needs even when the snippet is short.
    """

    hit: Hit
    fused_score: float
    evidence: tuple[StageEvidence, ...]

    @property
    def best_rank(self) -> int:
        """The best rank any retriever gave this passage."""
        return min(stage.rank for stage in self.evidence if stage.rank is not None)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[FusedHit]:
    """Merge rankings by summing weight / (k + rank) per passage (chunk_id); rank starts at 1.

    Only order counts, so BM25 and cosine scores never need to be comparable. Ties are broken by the
    best single rank, then by chunk_id, so the output never depends on input order or hashing. A
    chunk_id repeated within one ranking counts once, at its best rank. Inputs are never mutated.
    """
    checked = _checked_weights(len(rankings), k, weights)
    evidence: dict[str, list[StageEvidence]] = {}
    merged: dict[str, Hit] = {}
    for index, ranking in enumerate(rankings):
        for rank, hit in enumerate(ranking, start=1):
            slots = evidence.setdefault(hit.chunk_id, [ABSENT] * len(rankings))
            if slots[index].rank is not None:
                continue
            slots[index] = StageEvidence(rank=rank, score=hit.score)
            merged[hit.chunk_id] = _merge(merged.get(hit.chunk_id), hit)
    fused = [
        FusedHit(hit=merged[chunk_id], fused_score=_fused_score(slots, checked, k), evidence=tuple(slots))
        for chunk_id, slots in evidence.items()
    ]
    return sorted(fused, key=lambda item: (-item.fused_score, item.best_rank, item.hit.chunk_id))


def collapse_to_documents(fused: Sequence[FusedHit]) -> list[FusedHit]:
    """Keep each document's best passage only, at that passage's position (input in fused order).

    A document's score is its best passage's fused score (MaxP), as BEIR-style document-level
    evaluation of passage retrieval does: summing passage scores would rank long documents above
    relevant ones merely for having more chunks that match. The kept passage supplies the snippet
    and the evidence, so score and evidence always describe the same passage.
    """
    seen: set[str] = set()
    documents: list[FusedHit] = []
    for item in fused:
        if item.hit.doc_id not in seen:
            seen.add(item.hit.doc_id)
            documents.append(item)
    return documents


def _checked_weights(count: int, k: int, weights: Sequence[float] | None) -> tuple[float, ...]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if weights is None:
        return (1.0,) * count
    if len(weights) != count:
        raise ValueError(f"got {len(weights)} weights for {count} rankings")
    if any(not math.isfinite(weight) or weight < 0 for weight in weights):
        raise ValueError(f"weights must be finite and not negative, got {list(weights)}")
    return tuple(weights)


def _fused_score(slots: Sequence[StageEvidence], weights: Sequence[float], k: int) -> float:
    # Summed in ranking order for every passage, so equal contributions give bit-equal sums.
    return sum(
        weight / (k + stage.rank)
        for weight, stage in zip(weights, slots, strict=True)
        if stage.rank is not None
    )


def _merge(known: Hit | None, other: Hit) -> Hit:
    """The first retriever's hit, with fields it left empty filled from a later retriever's."""
    if known is None:
        return other
    return replace(
        known,
        title=known.title or other.title,
        text=known.text or other.text,
        snippet=known.snippet if known.snippet is not None else other.snippet,
        metadata=known.metadata or other.metadata,
    )
