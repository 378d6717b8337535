"""Pages and facets through the search pipeline, on the in-memory fakes of test_pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from service.errors import InvalidRequest
from service.search.facets import FacetCounts, FacetValue
from service.search.models import Filter
from service.search.pipeline import SearchQuery
from service.search.typos import EXACT, Matching
from tests.unit.test_pipeline import FakeLexical, FakeReranker, FakeVectors, hit, pipeline

pytestmark = pytest.mark.anyio
LEXICAL = [hit(f"d{i:02d}#0", 30.0 - i) for i in range(30)]
VECTORS = [hit(f"d{i:02d}#0", 1.0 - i / 100) for i in range(29, 4, -1)]


@dataclass
class FacetedLexical(FakeLexical):
    counts: FacetCounts = field(default_factory=lambda: FacetCounts(3, {"lang": [FacetValue("en", 3)]}))
    facet_calls: list[tuple[str, Sequence[str], Filter | None]] = field(default_factory=list)

    async def facets(
        self,
        collection: str,
        text: str,
        fields: Sequence[str],
        *,
        filter: Filter | None = None,
        matching: Matching = EXACT,
    ) -> FacetCounts:
        self.facet_calls.append((text, fields, filter))
        if self.error:
            raise self.error
        return self.counts


def paged(**fields: object) -> SearchQuery:
    return SearchQuery(query="q", collection="docs", **fields)  # type: ignore[arg-type]


async def test_two_reranked_pages_of_ten_are_one_page_of_twenty() -> None:
    # The reranker reverses part of the head, so the final order is neither retriever's.
    reranker = FakeReranker(by_chunk={f"d{i:02d}#0": i / 100 for i in range(30)})
    search = pipeline(FacetedLexical(hits=LEXICAL), FakeVectors(hits=VECTORS), reranker=reranker).search

    first = await search(paged(top_k=10))
    assert first.cursor is not None
    second = await search(paged(top_k=10, cursor=first.cursor))
    twenty = await search(paged(top_k=20))

    ids = [h.id for h in first.hits + second.hits]
    assert ids == [h.id for h in twenty.hits] and len(set(ids)) == 20
    assert [h.rerank_score is not None for h in twenty.hits] == [True, True] + [False] * 18


async def test_the_last_page_and_max_depth_end_the_cursors() -> None:
    search = pipeline(FacetedLexical(hits=LEXICAL), FakeVectors(hits=VECTORS), max_depth=25).search

    first = await search(paged(top_k=20, rerank_enabled=False))
    assert first.cursor is not None
    last = await search(paged(top_k=20, rerank_enabled=False, cursor=first.cursor))

    assert len(last.hits) == 5 and last.cursor is None


async def test_a_cursor_with_another_query_is_a_client_error() -> None:
    search = pipeline(FacetedLexical(hits=LEXICAL), FakeVectors(hits=VECTORS)).search
    first = await search(paged(top_k=5))

    with pytest.raises(InvalidRequest, match="another search"):
        await search(SearchQuery(query="other", collection="docs", cursor=first.cursor))


async def test_facets_come_from_the_lexical_store_with_the_filter() -> None:
    lexical = FacetedLexical()
    only = Filter(())

    outcome = await pipeline(lexical).search(paged(facets=("lang",), filter=only, rerank_enabled=False))

    assert outcome.facets == lexical.counts
    assert lexical.facet_calls == [("q", ("lang",), only)]
    assert "facets" in outcome.timings


async def test_no_facets_unless_asked_for() -> None:
    lexical = FacetedLexical()

    outcome = await pipeline(lexical).search(paged(rerank_enabled=False))

    assert outcome.facets is None and lexical.facet_calls == []


async def test_failed_facets_degrade_and_hits_still_come() -> None:
    class Broken(FacetedLexical):
        async def facets(
            self,
            collection: str,
            text: str,
            fields: Sequence[str],
            *,
            filter: Filter | None = None,
            matching: Matching = EXACT,
        ) -> FacetCounts:
            raise RuntimeError("disk on fire")

    outcome = await pipeline(Broken()).search(paged(facets=("lang",), rerank_enabled=False))

    assert outcome.facets is None and outcome.hits
    assert [(d.stage, d.reason) for d in outcome.degraded] == [("facets", "unexpected RuntimeError")]
