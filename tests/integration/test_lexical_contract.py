"""One contract for both BM25 stores: embedded Tantivy and a real Elasticsearch.

Elasticsearch runs when FATHOM_TEST_ELASTICSEARCH_URL is set; `.ci/elasticsearch.sh start` starts one.
"""

from __future__ import annotations

import html
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch, BadRequestError

from service.backends.elasticsearch import ElasticsearchIndex
from service.backends.tantivy import TantivyIndex
from service.errors import BackendUnavailable, InvalidRequest, NotFound
from service.search.models import AnyOf, Chunk, Equals, Filter, Range
from service.search.protocols import LexicalStore
from service.search.typos import MAX_EXPANSIONS, Matching
from service.settings import ElasticsearchSettings, SearchSettings
from tests.integration.contract_data import CORPUS, CUT, SPLIT_TEXT, cranfield_chunks, split_document

DOCS = 60
COLLECTION = "cranfield"
ES_URL = os.environ.get("FATHOM_TEST_ELASTICSEARCH_URL", "")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not CORPUS.is_file(), reason=f"shared corpus missing: {CORPUS}"),
]


@dataclass
class Backend:
    name: str
    store: LexicalStore
    stems: bool


CHUNKS = cranfield_chunks(DOCS) if CORPUS.is_file() else []
BY_ID = {chunk.id: chunk for chunk in CHUNKS}


async def english_analyzer_available(url: str) -> bool:
    """The integ-test-zip has no analysis-common module, hence no `english` analyzer and no stemming."""
    async with AsyncElasticsearch(url) as client:
        try:
            await client.indices.analyze(analyzer="english", text="wings")
        except BadRequestError:
            return False
        return True


@pytest.fixture(params=["tantivy", pytest.param("elasticsearch", marks=pytest.mark.elasticsearch)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "tantivy":
        store: LexicalStore = TantivyIndex(tmp_path / "tantivy")
        stems = True
    else:
        if not ES_URL:
            pytest.skip("FATHOM_TEST_ELASTICSEARCH_URL is not set; start one with .ci/elasticsearch.sh start")
        # A prefix per test, so tests never see each other's indexes.
        prefix = f"fathom-test-{uuid.uuid4().hex[:8]}-"
        store = ElasticsearchIndex(ElasticsearchSettings(url=ES_URL, index_prefix=prefix))
        stems = await english_analyzer_available(ES_URL)
    try:
        yield Backend(request.param, store, stems)
    finally:
        await store.drop_collection(COLLECTION)
        await store.close()


@pytest.fixture
async def store(backend: Backend) -> LexicalStore:
    """The backend's store with the corpus indexed."""
    await backend.store.ensure_collection(COLLECTION)
    await backend.store.upsert(COLLECTION, CHUNKS)
    return backend.store


def ids(hits: list[Any]) -> list[str]:
    return [hit.chunk_id for hit in hits]


async def test_count_is_the_number_of_chunks(store: LexicalStore) -> None:
    assert await store.count_chunks(COLLECTION) == len(CHUNKS)


async def test_title_query_finds_its_document_first(store: LexicalStore) -> None:
    for chunk in CHUNKS[::6]:
        hits = await store.search(COLLECTION, chunk.title, limit=5)
        assert hits[0].chunk_id == chunk.id, chunk.title


async def test_a_query_at_the_term_limit_is_answered(store: LexicalStore) -> None:
    """The longest query /v1/search lets through (max_query_terms words of real text, as a pasted
    document is) is one both stores answer, with one of the documents it was cut from first."""
    limit = SearchSettings().max_query_terms
    words: list[str] = []
    sources: set[str] = set()
    for chunk in CHUNKS:
        if len(words) >= limit:
            break
        words.extend(chunk.text.split())
        sources.add(chunk.doc_id)
    assert len(words) >= limit
    hits = await store.search(COLLECTION, " ".join(words[:limit]), limit=10)
    assert hits and hits[0].doc_id in sources


async def test_hits_carry_the_passage_best_first(store: LexicalStore) -> None:
    hits = await store.search(COLLECTION, "boundary layer flow", limit=10)
    assert len(hits) == 10
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    for hit in hits:
        chunk = BY_ID[hit.chunk_id]
        assert (hit.doc_id, hit.title, hit.text, hit.metadata) == (
            chunk.doc_id,
            chunk.title,
            chunk.text,
            chunk.metadata,
        )


async def test_plural_and_singular_match_alike(backend: Backend, store: LexicalStore) -> None:
    if not backend.stems:
        pytest.skip(f"{backend.name} here has no english analyzer (integ-test-zip lacks analysis-common)")
    singular = await store.search(COLLECTION, "slipstream wing", limit=20)
    plural = await store.search(COLLECTION, "slipstreams wings", limit=20)
    assert ids(plural) == ids(singular)
    assert "1:0" in ids(plural)  # document 1 says only "slipstream"


async def test_snippet_highlights_matches_with_em(store: LexicalStore) -> None:
    [hit] = await store.search(COLLECTION, "slipstream", limit=1)
    assert hit.snippet is not None
    assert "<em>slipstream</em>" in hit.snippet
    assert len(hit.snippet) < 300


async def test_snippet_without_a_match_in_the_text_is_its_start(backend: Backend) -> None:
    chunk = Chunk(id="t:0", doc_id="t", position=0, title="zeppelin", text="<b>Airships</b> & balloons.")
    await backend.store.upsert(COLLECTION, [chunk])
    [hit] = await backend.store.search(COLLECTION, "zeppelin", limit=1)
    # Escaped (the two stores escape "/" differently, both valid HTML), so no markup of the text survives.
    assert hit.snippet is not None
    assert "<" not in hit.snippet
    assert html.unescape(hit.snippet) == chunk.text


KEEP: dict[str, tuple[Filter, Callable[[dict[str, Any]], bool]]] = {
    "equals-string": (Filter((Equals("parity", "odd"),)), lambda m: m["parity"] == "odd"),
    "equals-int": (Filter((Equals("group", 2),)), lambda m: m["group"] == 2),
    "equals-bool": (Filter((Equals("reviewed", True),)), lambda m: m["reviewed"] is True),
    "equals-float": (Filter((Equals("pages", 13.5),)), lambda m: m["pages"] == 13.5),
    "equals-date": (Filter((Equals("published", "1953-04-15"),)), lambda m: m["published"] == "1953-04-15"),
    "in-strings": (Filter((AnyOf("tag", ("a", "c")),)), lambda m: m["tag"] in ("a", "c")),
    "in-ints": (Filter((AnyOf("group", (1, 3)),)), lambda m: m["group"] in (1, 3)),
    "range-two-sided": (Filter((Range("pages", gte=2.5, lt=30.0),)), lambda m: 2.5 <= m["pages"] < 30),
    "range-exclusive": (Filter((Range("pages", gt=3.0, lte=9.0),)), lambda m: 3 < m["pages"] <= 9),
    "range-date": (
        Filter((Range("published", gte=date(1953, 1, 1), lt=date(1956, 1, 1)),)),
        lambda m: "1953" <= m["published"] < "1956",
    ),
    "range-datetime-zone": (
        # 2024-03-10T00:30+02:00 is 2024-03-09T22:30Z: kept; the 10th's later hours are not.
        Filter((Range("updated", lte=datetime(2024, 3, 9, 23, tzinfo=UTC)),)),
        lambda m: datetime.fromisoformat(m["updated"]) <= datetime(2024, 3, 9, 23, tzinfo=UTC),
    ),
    "and": (
        Filter((Equals("parity", "even"), Range("group", gte=1.0))),
        lambda m: m["parity"] == "even" and m["group"] >= 1,
    ),
    "missing-field": (Filter((Equals("nothing", "x"),)), lambda m: False),
}


@pytest.mark.parametrize("name", list(KEEP))
async def test_filters_keep_exactly_the_matching_passages(store: LexicalStore, name: str) -> None:
    filter, keep = KEEP[name]
    query = "flow"
    unfiltered = await store.search(COLLECTION, query, limit=100)
    filtered = await store.search(COLLECTION, query, limit=100, filter=filter)
    expected = [hit.chunk_id for hit in unfiltered if keep(BY_ID[hit.chunk_id].metadata)]
    assert len(expected) < len(unfiltered)
    assert set(ids(filtered)) == set(expected)


async def test_filters_apply_before_the_limit(store: LexicalStore) -> None:
    ranked = await store.search(COLLECTION, "flow", limit=100)
    last_three = [hit.doc_id for hit in ranked[-3:]]
    hits = await store.search(COLLECTION, "flow", limit=2, filter=Filter((AnyOf("key", tuple(last_three)),)))
    assert ids(hits) == ids(ranked[-3:-1])


async def test_upsert_twice_is_idempotent_and_replaces_text(store: LexicalStore) -> None:
    await store.upsert(COLLECTION, CHUNKS)
    assert await store.count_chunks(COLLECTION) == len(CHUNKS)
    changed = replace(CHUNKS[0], text="quasar magnetosphere", title="")
    await store.upsert(COLLECTION, [changed])
    assert await store.count_chunks(COLLECTION) == len(CHUNKS)
    assert ids(await store.search(COLLECTION, "magnetosphere", limit=5)) == [changed.id]
    assert changed.id not in ids(await store.search(COLLECTION, "slipstream", limit=60))


async def test_delete_documents_removes_all_their_chunks(store: LexicalStore) -> None:
    extra = [replace(CHUNKS[1], id="2:1", position=1), replace(CHUNKS[1], id="2:2", position=2)]
    await store.upsert(COLLECTION, extra)
    assert await store.count_chunks(COLLECTION) == len(CHUNKS) + 2
    await store.delete_documents(COLLECTION, ["2", "3", "no-such-document"])
    assert await store.count_chunks(COLLECTION) == len(CHUNKS) - 2
    hits = await store.search(COLLECTION, CHUNKS[1].title, limit=60)
    assert not {"2", "3"} & {hit.doc_id for hit in hits}


async def test_a_value_of_another_type_is_kept_but_not_filterable(store: LexicalStore) -> None:
    odd = replace(CHUNKS[0], id="odd:0", doc_id="odd", metadata={"group": "many", "published": "unknown"})
    await store.upsert(COLLECTION, [odd])
    assert await store.count_chunks(COLLECTION) == len(CHUNKS) + 1
    hits = await store.search(COLLECTION, CHUNKS[0].title, limit=2)
    assert odd.metadata in [hit.metadata for hit in hits]
    in_range = await store.search(
        COLLECTION, CHUNKS[0].title, limit=100, filter=Filter((Range("group", gte=0.0),))
    )
    assert odd.id not in ids(in_range)


QUERIES = [
    'wing AND (body OR "slip',
    "title:slipstream",
    "metadata.parity:odd",
    "*",
    "c++ -- ~ ^2 [1 TO 2] {x} \\ / ! ? : ; ' `",
    "NOT",
    "",
    "   ",
    "ünïcode ✈ 翼",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_any_text_is_a_query_never_syntax(store: LexicalStore, query: str) -> None:
    await store.search(COLLECTION, query, limit=5)


async def test_operators_are_plain_words(store: LexicalStore) -> None:
    # As syntax, "-aerodynamics" would exclude document 1, the only one that says "slipstream".
    hits = await store.search(COLLECTION, "+slipstream -aerodynamics", limit=1)
    assert ids(hits) == ["1:0"]
    assert await store.search(COLLECTION, "*", limit=5) == []


async def test_missing_collection_is_not_found(backend: Backend) -> None:
    store = backend.store
    assert not await store.collection_exists("absent")
    with pytest.raises(NotFound, match='collection "absent" does not exist'):
        await store.search("absent", "wing", limit=5)
    with pytest.raises(NotFound):
        await store.count_chunks("absent")
    with pytest.raises(NotFound):
        await store.delete_documents("absent", ["1"])
    await store.drop_collection("absent")


async def test_collection_lifecycle(backend: Backend) -> None:
    store = backend.store
    await store.ensure_collection(COLLECTION)
    await store.ensure_collection(COLLECTION)
    assert await store.collection_exists(COLLECTION)
    assert await store.count_chunks(COLLECTION) == 0
    assert await store.search(COLLECTION, "wing", limit=5) == []
    await store.drop_collection(COLLECTION)
    assert not await store.collection_exists(COLLECTION)


async def test_upsert_creates_the_collection(backend: Backend) -> None:
    await backend.store.upsert(COLLECTION, CHUNKS[:3])
    assert await backend.store.count_chunks(COLLECTION) == 3


@pytest.mark.parametrize("name", ["../escape", "Upper", "", "a/b", "_x", "a" * 101])
async def test_invalid_collection_names_are_refused(backend: Backend, name: str) -> None:
    with pytest.raises(InvalidRequest, match="collection name"):
        await backend.store.search(name, "wing", limit=5)


async def test_unreachable_elasticsearch_is_unavailable() -> None:
    store = ElasticsearchIndex(ElasticsearchSettings(url="http://127.0.0.1:9", request_timeout=2))
    try:
        with pytest.raises(BackendUnavailable, match="Elasticsearch is unavailable"):
            await store.search(COLLECTION, "wing", limit=5)
    finally:
        await store.close()


async def test_title_and_text_are_one_bm25_field(backend: Backend) -> None:
    """A word counts the same in the title as in the text: BM25 sees one field, not two summed."""
    filler = "alpha beta gamma delta epsilon"
    chunks = [
        Chunk(id="in-title:0", doc_id="in-title", position=0, title="zeppelin", text=filler),
        Chunk(id="in-text:0", doc_id="in-text", position=0, title="", text=f"zeppelin {filler}"),
        Chunk(id="other:0", doc_id="other", position=0, title="", text="kite balloon glider"),
    ]
    await backend.store.upsert(COLLECTION, chunks)
    hits = await backend.store.search(COLLECTION, "zeppelin", limit=5)
    assert sorted(ids(hits)) == ["in-text:0", "in-title:0"]
    assert hits[0].score == pytest.approx(hits[1].score, rel=1e-3)
    # The snippet still comes from the text, its words highlighted.
    in_text = next(hit for hit in hits if hit.chunk_id == "in-text:0")
    assert in_text.snippet is not None and "<em>zeppelin</em>" in in_text.snippet


TYPOS = Matching(typos=True)


async def test_a_typo_finds_its_document_only_with_typo_tolerance(store: LexicalStore) -> None:
    # Document 1 is about "the aerodynamics of a wing in a slipstream": a deletion and a swap.
    typed = "aerodynamcs slipstraem"
    assert await store.search(COLLECTION, typed, limit=10) == []
    assert await store.search(COLLECTION, typed, limit=10, matching=Matching(typos=False)) == []
    hits = await store.search(COLLECTION, typed, limit=10, matching=TYPOS)
    holding = [sum(w in f"{h.title} {h.text}".lower() for w in ("aerodynamic", "slipstream")) for h in hits]
    # Passages holding both corrected words first (document 1 among them), then those holding one.
    assert "1:0" in ids(hits)[: holding.count(2)]
    assert holding == sorted(holding, reverse=True) and holding[-1] >= 1


async def test_words_under_five_letters_are_not_fuzzed(store: LexicalStore) -> None:
    assert await store.search(COLLECTION, "wimg", limit=10, matching=TYPOS) == []  # "wing", 4 letters
    assert await store.search(COLLECTION, "wimgs", limit=10, matching=TYPOS) != []  # 5 letters: one edit


async def test_two_edits_only_from_nine_letters(backend: Backend) -> None:
    chunks = [
        Chunk(id="z:1", doc_id="z1", position=0, title="", text="quorbitals"),  # 10 letters
        Chunk(id="z:2", doc_id="z2", position=0, title="", text="quorbit"),  # 7 letters
    ]
    await backend.store.upsert(COLLECTION, chunks)
    # Two edits away from each: found for the 9-letter word typed, not for the 6-letter one.
    assert ids(await backend.store.search(COLLECTION, "quorbtalls", limit=10, matching=TYPOS)) == ["z:1"]
    assert await backend.store.search(COLLECTION, "qurbt", limit=10, matching=TYPOS) == []


async def test_an_exact_match_outranks_typo_matches(backend: Backend) -> None:
    exact = Chunk(id="x:1", doc_id="x1", position=0, title="", text="zyphoral manifolds")
    neighbour = Chunk(id="x:2", doc_id="x2", position=0, title="", text="zyphorel manifolds")
    await backend.store.upsert(COLLECTION, [neighbour, exact])
    # A word the collection holds is taken as typed: its exact match first, the neighbour not fuzzed in.
    assert ids(await backend.store.search(COLLECTION, "zyphoral manifolds", limit=10, matching=TYPOS)) == [
        "x:1",
        "x:2",
    ]
    # A word it does not hold matches both neighbours, as typos.
    unknown = await backend.store.search(COLLECTION, "zyphoril", limit=10, matching=TYPOS)
    assert sorted(ids(unknown)) == ["x:1", "x:2"]


async def test_the_unfinished_last_word_matches_as_a_prefix(store: LexicalStore) -> None:
    typed = "experimental investigation of the aerodyn"
    with_prefix = await store.search(COLLECTION, typed, limit=10, matching=Matching(prefix=True))
    assert with_prefix[0].chunk_id == "1:0"
    # Without prefix mode "aerodyn" matches nothing: the documents come from the other words only.
    alone = await store.search(COLLECTION, "aerodyn", limit=10)
    assert alone == []
    prefixed = await store.search(COLLECTION, "aerodyn", limit=100, matching=Matching(prefix=True))
    assert prefixed and all("aerodyn" in f"{h.title} {h.text}".lower() for h in prefixed)
    # Under three letters the last word is not expanded.
    assert await store.search(COLLECTION, "ae", limit=10, matching=Matching(prefix=True)) == []


async def test_a_prefix_expands_to_at_most_max_expansions_terms(backend: Backend) -> None:
    # 60 passages, each the only holder of one word starting "qqv": the prefix reaches 50 of them.
    words = [f"qqv{a}{b}" for a in "abcdefghij" for b in "klmnop"]
    chunks = [Chunk(id=f"p:{i}", doc_id=f"p{i}", position=0, title="", text=w) for i, w in enumerate(words)]
    await backend.store.upsert(COLLECTION, chunks)
    hits = await backend.store.search(COLLECTION, "qqv", limit=100, matching=Matching(prefix=True))
    assert len(hits) == MAX_EXPANSIONS < len(words)
    assert await backend.store.search(COLLECTION, "qqvak", limit=100, matching=Matching(prefix=True)) != []


async def test_facets_count_what_typo_tolerance_matches(store: LexicalStore) -> None:
    typed = "aerodynamcs slipstraem"
    hits = await store.search(COLLECTION, typed, limit=100, matching=TYPOS)
    counts = await store.facets(COLLECTION, typed, [], matching=TYPOS)
    assert counts.total == len({hit.doc_id for hit in hits}) > 0
    assert (await store.facets(COLLECTION, typed, [])).total == 0


async def test_bm25_scores_a_document_on_its_whole_text(backend: Backend) -> None:
    """A document cut into chunks scores as the same text held in one chunk: BM25 ranks documents on
    their whole text. Its hit, once per document, is the chunk that matches best, for the snippet."""
    others = [Chunk(id="other#0", doc_id="other", position=0, title="", text="kite balloon hangar")]
    whole = [
        Chunk(
            id="split#0", doc_id="split", position=0, title="", text=SPLIT_TEXT, start=0, end=len(SPLIT_TEXT)
        )
    ]
    await backend.store.upsert(COLLECTION, [*split_document(), *others])
    await backend.store.upsert("whole-copy", [*whole, *others])
    try:
        split_hits = await backend.store.search(COLLECTION, "zeppelin hangar", limit=5)
        whole_hits = await backend.store.search("whole-copy", "zeppelin hangar", limit=5)
    finally:
        await backend.store.drop_collection("whole-copy")
    assert [hit.doc_id for hit in split_hits] == [hit.doc_id for hit in whole_hits] == ["split", "other"]
    assert split_hits[0].score == pytest.approx(whole_hits[0].score, rel=1e-5)
    # zeppelin is the rarer word, so the chunk holding it matches best.
    assert split_hits[0].chunk_id == "split#0" and split_hits[0].text == SPLIT_TEXT[:CUT]
    assert split_hits[0].snippet is not None and "<em>zeppelin</em>" in split_hits[0].snippet
