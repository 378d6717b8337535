"""What a search returns: final hits with their evidence, timings and the stages that degraded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.search.facets import FacetCounts
from service.search.fusion import FusedHit, StageEvidence


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One final hit: a document (or a passage when passages were asked for) with its evidence.

    `score` is the rerank score (a probability in [0, 1]) when the hit was reranked, else the fused
    RRF score. The two scales are not comparable: a reranked hit always comes before every hit that
    was not, whatever the numbers say, and only rerank scores are meaningful against `min_score`.
    """

    id: str
    chunk_id: str
    title: str
    snippet: str
    metadata: dict[str, Any]
    score: float
    bm25: StageEvidence
    vector: StageEvidence
    fused_score: float
    rerank_score: float | None = None
    # The whole passage (the snippet may be a highlighted fragment of it), for callers that quote it.
    text: str = ""

    @classmethod
    def from_fused(cls, item: FusedHit, rerank_score: float | None = None) -> SearchHit:
        """The final hit for a fused passage whose evidence is (lexical, vector)."""
        hit = item.hit
        bm25, vector = item.evidence
        return cls(
            id=hit.doc_id,
            chunk_id=hit.chunk_id,
            title=hit.title,
            # A retriever's highlighted snippet when there is one, else the passage itself.
            snippet=hit.snippet if hit.snippet is not None else hit.text,
            metadata=hit.metadata,
            score=item.fused_score if rerank_score is None else rerank_score,
            bm25=bm25,
            vector=vector,
            fused_score=item.fused_score,
            rerank_score=rerank_score,
            text=hit.text,
        )


@dataclass(frozen=True, slots=True)
class Degradation:
    """A stage ("lexical", "vector" or "rerank") that failed or timed out, and why, in a few words."""

    stage: str
    reason: str


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """Hits best first; milliseconds per stage that ran; the stages the answer had to do without.

    `cursor` asks for the next page (None: no more hits); `facets` when they were asked for and counted.
    """

    hits: list[SearchHit]
    timings: dict[str, float] = field(default_factory=dict)
    degraded: list[Degradation] = field(default_factory=list)
    cursor: str | None = None
    facets: FacetCounts | None = None
    # The leading hits of the whole list in rerank order, through this page's blocks (0: not reranked).
    reranked: int = 0
    # Hits the whole list holds, every page together (up to max_depth): what a result count shows.
    found: int = 0
