"""The reranked order in blocks: the same answer whatever the reranker manages in its budget, pages that
never repeat or skip, and the score cache that lets repeats and next pages score nothing again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from service.errors import BackendUnavailable
from service.rerank.score_cache import CachedReranker, ScoreCache, pair_key
from service.search.pipeline import SearchPipeline, SearchQuery, shown_blocks
from service.search.results import SearchOutcome
from service.settings import SearchRerankSettings, SearchSettings
from tests.unit.search_fakes import FakeEmbedder, FakeLexical, FakeReranker, FakeVectors, hit

pytestmark = pytest.mark.anyio
LEXICAL = [hit(f"d{i:02d}#0", 30.0 - i) for i in range(30)]
# Scores that reverse the fused order, so a reranked block reads differently from a fused one.
SCORES = {f"d{i:02d}#0": i / 100 for i in range(30)}
DEPTH, BLOCK = 12, 4


@dataclass
class SlowBudgeted(FakeReranker):
    """Within a budget, scores only the first `affordable` passages of each call, as a loaded engine would."""

    sent: list[int] = field(default_factory=list)

    async def score(
        self, query: str, passages: Sequence[str], *, budget_ms: float | None = None
    ) -> list[float]:
        self.sent.append(len(passages))
        return await super().score(query, passages, budget_ms=budget_ms)


def pipeline(reranker: object, *, prefetch: bool = False, budget_ms: float = 300.0) -> SearchPipeline:
    settings = SearchSettings(
        rerank=SearchRerankSettings(depth=DEPTH, block=BLOCK, budget_ms=budget_ms), vector_floor="off"
    )
    return SearchPipeline(
        FakeLexical(hits=LEXICAL),
        FakeVectors(hits=[]),
        FakeEmbedder(),
        reranker,  # type: ignore[arg-type]
        settings,
        prefetch=prefetch,
    )


def request(**fields: object) -> SearchQuery:
    return SearchQuery(query="q", collection="docs", **fields)  # type: ignore[arg-type]


def ids(outcome: SearchOutcome) -> list[str]:
    return [found.id for found in outcome.hits]


async def walk(search: SearchPipeline, top_k: int) -> list[str]:
    """Every page of one walk, following the cursors."""
    seen: list[str] = []
    outcome = await search.search(request(top_k=top_k))
    while True:
        seen += ids(outcome)
        if outcome.cursor is None:
            return seen
        outcome = await search.search(request(top_k=top_k, cursor=outcome.cursor))


def test_a_page_overlaps_whole_blocks_within_the_depth() -> None:
    assert shown_blocks(0, 10, 50, 10) == (0, 10)
    assert shown_blocks(7, 7, 50, 10) == (0, 20)
    assert shown_blocks(45, 10, 50, 10) == (40, 50)
    assert shown_blocks(50, 10, 50, 10) is None


async def test_the_page_does_not_depend_on_how_much_fits_in_the_budget() -> None:
    answers = []
    for affordable in (0, 1, 5, None):  # a machine from overloaded to idle
        reranker = SlowBudgeted(by_chunk=SCORES, affordable=affordable, delay=0.01)
        answers.append(ids(await pipeline(reranker).search(request(top_k=BLOCK))))

    assert answers[0] == answers[1] == answers[2] == answers[3]
    # The first block, reranked in full: its best-scored (last fused) first.
    assert answers[0] == ["d03", "d02", "d01", "d00"]


async def test_pages_never_repeat_or_skip_whatever_the_page_size() -> None:
    reranker = FakeReranker(by_chunk=SCORES, affordable=1)
    one_page = ids(await pipeline(reranker).search(request(top_k=30)))

    for top_k in (3, 4, 5, 7):
        assert await walk(pipeline(reranker), top_k) == one_page
    assert sorted(one_page) == sorted({h.doc_id for h in LEXICAL})
    # Blocks of 4 within the depth, each reversed by the scores; then the fused order.
    assert one_page[:8] == ["d03", "d02", "d01", "d00", "d07", "d06", "d05", "d04"]
    assert one_page[DEPTH:] == [f"d{i:02d}" for i in range(DEPTH, 30)]


async def test_a_failed_rerank_keeps_the_rest_of_its_walk_in_fused_order() -> None:
    failing = FakeReranker(by_chunk=SCORES, error=BackendUnavailable("down"))
    first = await pipeline(failing).search(request(top_k=3))
    assert first.degraded and ids(first) == ["d00", "d01", "d02"]

    working = pipeline(FakeReranker(by_chunk=SCORES))
    second = await working.search(request(top_k=3, cursor=first.cursor))

    # Block 1 reranked now would put d00..d02 at its end: page 2 would repeat them.
    assert ids(second) == ["d03", "d04", "d05"] and not second.degraded


async def test_repeats_and_next_pages_score_nothing_again() -> None:
    counted: dict[str, int] = {"hits": 0, "misses": 0}
    cache = ScoreCache(
        1000,
        on_hit=lambda n: counted.__setitem__("hits", counted["hits"] + n),
        on_miss=lambda n: counted.__setitem__("misses", counted["misses"] + n),
    )
    inner = SlowBudgeted(by_chunk=SCORES)
    search = pipeline(CachedReranker(inner, "bench", cache), prefetch=True)

    first = await search.search(request(top_k=BLOCK))
    # The page's block in full, then the next page's ahead within the budget left.
    assert inner.sent == [BLOCK, BLOCK] and inner.budgets[0] is None
    again = await search.search(request(top_k=BLOCK))
    assert inner.sent == [BLOCK, BLOCK]  # nothing scored for the repeat
    following = await search.search(request(top_k=BLOCK, cursor=first.cursor))

    assert ids(again) == ids(first) and ids(following) == ["d07", "d06", "d05", "d04"]
    # The next page found its block and scored the one after it ahead.
    assert inner.sent == [BLOCK, BLOCK, BLOCK] and counted == {"hits": 2 * BLOCK + BLOCK, "misses": DEPTH}


async def test_a_budget_that_buys_part_of_a_block_keeps_it_for_the_next_search() -> None:
    cache = ScoreCache(1000)
    inner = SlowBudgeted(by_chunk=SCORES, affordable=2)
    cached = CachedReranker(inner, "bench", cache)

    assert await cached.score("q", ["a d00#0", "b d01#0", "c d02#0"], budget_ms=50) == [0.0, 0.01]
    assert await cached.score("q", ["a d00#0", "b d01#0", "c d02#0"], budget_ms=50) == [0.0, 0.01, 0.02]
    assert inner.sent == [3, 1]  # only the pair still missing was sent the second time


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = ScoreCache(2)
    a, b, c = (pair_key("m", "q", text) for text in "abc")
    cache.put([a, b], [0.1, 0.2])
    assert cache.get([a]) == [0.1]  # a is now the most recent
    cache.put([c], [0.3])

    assert len(cache) == 2 and cache.get([a, b, c]) == [0.1, None, 0.3]


def test_pair_keys_tell_models_queries_and_passages_apart() -> None:
    keys = {
        pair_key("m", "ab", "c"),
        pair_key("m", "a", "bc"),
        pair_key("n", "ab", "c"),
        pair_key("m", "ab", "d"),
    }
    assert len(keys) == 4


async def test_identical_searches_at_once_score_each_pair_once() -> None:
    inner = SlowBudgeted(by_chunk=SCORES, delay=0.05)
    cached = CachedReranker(inner, "bench", ScoreCache(1000))
    passages = [f"p d{i:02d}#0" for i in range(4)]

    answers = await asyncio.gather(*(cached.score("q", passages) for _ in range(5)))

    assert inner.sent == [4] and all(answer == [0.0, 0.01, 0.02, 0.03] for answer in answers)


async def test_a_pair_another_budget_left_unscored_is_scored_when_every_score_is_owed() -> None:
    inner = SlowBudgeted(by_chunk=SCORES, affordable=1, delay=0.05)
    cached = CachedReranker(inner, "bench", ScoreCache(1000))
    passages = ["p d00#0", "p d01#0"]

    budgeted, owed = await asyncio.gather(
        cached.score("q", passages, budget_ms=10), cached.score("q", passages)
    )

    assert budgeted == [0.0] and owed == [0.0, 0.01]
    assert inner.sent == [2, 1]  # the budget scored one; the unbudgeted search then scored the other
