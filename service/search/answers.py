"""The shapes search answers in, shared by its two adapters: the HTTP API and the MCP tools.

A hit's evidence, the stages that degraded, a cited context passage and a whole document: each is a
msgspec Struct, so /v1/search and /v1/context serialise and document them, and an MCP tool returns
the same fields as plain JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec

from service.search.context import Passage, pages
from service.search.fusion import StageEvidence
from service.search.results import Degradation, SearchHit

# Metadata keys a citation reads its link from, first found wins.
URL_KEYS = ("url", "source_url", "link")
# Metadata a citation states in its own fields (page, page_end), so not twice.
PAGE_KEYS = ("page", "page_end")


class Evidence(msgspec.Struct, omit_defaults=True):
    rank: int | None = None
    score: float | None = None


class HitEvidence(msgspec.Struct):
    bm25: Evidence
    vector: Evidence
    fused: Evidence
    rerank: Evidence


class DegradedStage(msgspec.Struct):
    stage: str
    reason: str


class Citation(msgspec.Struct):
    """Where the passage is: `text == document_text[start:end]`; `chunks` are the positions merged."""

    id: str
    title: str
    url: str | None
    chunks: list[int]
    start: int | None
    end: int | None
    page: int | None
    page_end: int | None
    metadata: dict[str, Any]


class ContextPassage(msgspec.Struct):
    text: str
    tokens: int
    truncated: bool
    score: float
    citation: Citation
    evidence: HitEvidence


class ContextResponse(msgspec.Struct):
    id: str
    collection: str
    tokenizer: str
    max_tokens: int
    total_tokens: int
    passages: list[ContextPassage]
    timings: dict[str, float]
    degraded: list[DegradedStage]


class DocumentText(msgspec.Struct):
    """A whole document reassembled from its chunks; text past the caller's limit is left out."""

    id: str
    title: str
    url: str | None
    metadata: dict[str, Any]
    text: str
    truncated: bool
    chars: int


def evidence(stage: StageEvidence) -> Evidence:
    return Evidence(rank=stage.rank, score=stage.score)


def hit_evidence(hit: SearchHit) -> HitEvidence:
    return HitEvidence(
        bm25=evidence(hit.bm25),
        vector=evidence(hit.vector),
        fused=Evidence(score=hit.fused_score),
        rerank=Evidence(score=hit.rerank_score),
    )


def degraded_stages(degraded: list[Degradation]) -> list[DegradedStage]:
    return [DegradedStage(d.stage, d.reason) for d in degraded]


def url_of(metadata: dict[str, Any]) -> str | None:
    return next((metadata[key] for key in URL_KEYS if isinstance(metadata.get(key), str)), None)


def without_pages(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if k not in PAGE_KEYS}


def citation(passage: Passage) -> Citation:
    metadata = passage.best.metadata
    first, last = pages(passage)
    return Citation(
        id=passage.best.id,
        title=passage.best.title,
        url=url_of(metadata),
        chunks=passage.positions,
        start=passage.start,
        end=passage.end,
        page=first,
        page_end=last,
        metadata=without_pages(metadata),
    )


def to_passage(passage: Passage) -> ContextPassage:
    return ContextPassage(
        text=passage.text,
        tokens=passage.tokens,
        truncated=passage.truncated,
        score=passage.best.score,
        citation=citation(passage),
        evidence=hit_evidence(passage.best),
    )
