"""The relevance floor of vector hits and the empty state: nonsense finds nothing, nor do empty documents."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from service.errors import InvalidRequest
from service.search.floor import nonsense_queries, percentile
from service.search.models import Filter, Hit
from service.search.pipeline import SearchPipeline, SearchQuery
from service.search.results import SearchOutcome
from service.settings import SearchSettings
from tests.unit.search_fakes import FakeEmbedder, FakeLexical, FakeVectors, hit

pytestmark = pytest.mark.anyio
PROBES = 20


@dataclass
class ProbedVectors(FakeVectors):
    """Answers the floor's probes (any query but "real") with nearest scores 0.20, 0.21, ... in turn."""

    probed: int = 0

    async def search(
        self, collection: str, vector: Sequence[float], *, limit: int, filter: Filter | None = None
    ) -> list[Hit]:
        if vector[0] != REAL:
            self.probed += 1
            return [hit("noise#0", 0.2 + (self.probed % PROBES) / 100)]
        return await super().search(collection, vector, limit=limit, filter=filter)


REAL = 1.0


class QueryEmbedder(FakeEmbedder):
    async def embed_query(self, text: str) -> list[float]:
        await super().embed_query(text)
        return [REAL if text == "real" else 0.0, 0.0, 0.0]


def pipeline(
    lexical: list[Hit], vectors: list[Hit], **settings: object
) -> tuple[SearchPipeline, ProbedVectors]:
    store = ProbedVectors(hits=vectors)
    config = SearchSettings(vector_floor_probes=PROBES, **settings)  # type: ignore[arg-type]
    return SearchPipeline(FakeLexical(hits=lexical), store, QueryEmbedder(), None, config), store


def ids(outcome: SearchOutcome) -> list[str]:
    return [found.id for found in outcome.hits]


def real(**fields: object) -> SearchQuery:
    return SearchQuery(query="real", collection="docs", rerank_enabled=False, **fields)  # type: ignore[arg-type]


async def test_a_query_that_matches_nothing_and_nothing_close_answers_no_hits() -> None:
    search, _ = pipeline([], [hit("d1#0", 0.24), hit("d2#0", 0.21)])

    outcome = await search.search(real())

    assert outcome.hits == [] and outcome.cursor is None and outcome.found == 0


async def test_the_floor_drops_only_vector_hits_the_lexical_side_did_not_find() -> None:
    lexical = [hit("d1#0", 3.0)]
    vectors = [hit("d2#0", 0.8), hit("d1#0", 0.1), hit("d3#0", 0.22)]
    search, _ = pipeline(lexical, vectors)

    outcome = await search.search(real())

    # d2 is close; d1 matched lexically, however far its vector; d3 is no closer than noise (0.20-0.39).
    assert sorted(ids(outcome)) == ["d1", "d2"] and outcome.found == 2


async def test_the_floor_is_a_high_percentile_of_what_noise_reaches_measured_once() -> None:
    search, store = pipeline([], [hit("d1#0", 0.389), hit("d2#0", 0.387)])

    answers = await asyncio.gather(*(search.search(real()) for _ in range(3)))

    assert store.probed == PROBES  # one measurement for the three searches
    floor = await search.floors.floor("docs")
    assert floor == pytest.approx(percentile([0.2 + i / 100 for i in range(PROBES)], 0.99))
    assert all(ids(answer) == ["d1"] for answer in answers)


async def test_the_floor_is_set_per_request_per_collection_or_off() -> None:
    vectors = [hit("d1#0", 0.5), hit("d2#0", 0.3)]
    by_collection, _ = pipeline([], vectors, vector_floors={"docs": 0.4})

    assert ids(await by_collection.search(real())) == ["d1"]
    assert ids(await by_collection.search(real(vector_floor=0.2))) == ["d1", "d2"]
    assert ids(await by_collection.search(real(vector_floor="off"))) == ["d1", "d2"]
    with pytest.raises(InvalidRequest, match="vector_floor"):
        await by_collection.search(real(vector_floor=1.5))


async def test_empty_documents_are_never_hits() -> None:
    empty = Hit("e1#0", "e1", 0.9, "", "  ")
    search, _ = pipeline([hit("d1#0", 2.0)], [empty, hit("d1#0", 0.9)], vector_floor="off")

    assert ids(await search.search(real())) == ["d1"]


def test_probes_are_fixed_random_letters() -> None:
    probes = nonsense_queries(50)

    assert probes == nonsense_queries(50) and len(set(probes)) == 50
    assert all(word.isalpha() and 3 <= len(word) <= 9 for probe in probes for word in probe.split())


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([0.0, 1.0], 0.5) == 0.5
    assert percentile([3.0, 1.0, 2.0], 1.0) == 3.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0 and percentile([], 0.5) == 0.0
