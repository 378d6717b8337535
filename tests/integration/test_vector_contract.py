"""The VectorStore contract: QdrantIndex in local mode and on a Qdrant server (HTTP and gRPC).

Real embeddings of Cranfield abstracts; the congruence test holds the server's ranking to local mode's.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.backends.embedder import FastembedEmbedder
from service.backends.qdrant import QdrantIndex
from service.errors import BackendUnavailable, InvalidRequest, NotFound
from service.search.models import AnyOf, Chunk, Equals, Filter, Range
from service.settings import EmbeddingSettings, QdrantSettings
from tests.conftest import EMBEDDER
from tests.integration.contract_data import CORPUS, cranfield_chunks
from tests.integration.search_app import needs_qdrant_server, qdrant_server

DOCS = 40
COLLECTION = "cranfield"


MODEL_DIR = EMBEDDER

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not (MODEL_DIR.is_dir() and CORPUS.is_file()), reason="shared model or corpus missing"
    ),
]


@dataclass(frozen=True)
class Corpus:
    chunks: list[Chunk]
    vectors: np.ndarray  # one L2-normalised row per chunk

    def vector(self, doc_id: str) -> list[float]:
        return [float(x) for x in self.vectors[self.index(doc_id)]]

    def index(self, doc_id: str) -> int:
        return next(i for i, chunk in enumerate(self.chunks) if chunk.doc_id == doc_id)

    def nearest(
        self, doc_id: str, limit: int, keep: Callable[[dict[str, Any]], bool]
    ) -> list[tuple[str, float]]:
        """Brute-force answer: the `limit` kept chunks closest to `doc_id`, with their cosine."""
        scores = self.vectors @ self.vectors[self.index(doc_id)]
        ranked = sorted(range(len(self.chunks)), key=lambda i: -scores[i])
        kept = [i for i in ranked if keep(self.chunks[i].metadata)]
        return [(self.chunks[i].doc_id, float(scores[i])) for i in kept[:limit]]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastembedEmbedder]:
    model = FastembedEmbedder(EmbeddingSettings(path=str(MODEL_DIR)), tmp_path_factory.mktemp("models"))
    yield model
    model.close()


@pytest.fixture(scope="module")
def corpus(embedder: FastembedEmbedder) -> Corpus:
    chunks = cranfield_chunks(DOCS, skip_empty=True)
    return Corpus(chunks, np.array(embedder.embed_passages_sync([chunk.text for chunk in chunks])))


MODES = [
    "local",
    pytest.param("server-http", marks=needs_qdrant_server),
    pytest.param("server-grpc", marks=needs_qdrant_server),
]


def open_store(mode: str, folder: Path, dimensions: int) -> QdrantIndex:
    """Local mode in `folder`, or the test server over HTTP or gRPC under a collection prefix of its own."""
    if mode == "local":
        return QdrantIndex(QdrantSettings(), dimensions=dimensions, local_path=folder)
    settings = QdrantSettings(**qdrant_server(grpc=mode == "server-grpc"))
    return QdrantIndex(settings, dimensions=dimensions)


@pytest.fixture(params=MODES)
async def index(request: pytest.FixtureRequest, tmp_path: Path, corpus: Corpus) -> AsyncIterator[QdrantIndex]:
    store = open_store(request.param, tmp_path / "qdrant", corpus.vectors.shape[1])
    try:
        await store.ensure_collection(COLLECTION)
        await store.upsert(COLLECTION, corpus.chunks, corpus.vectors.tolist())
        yield store
    finally:
        await store.drop_collection(COLLECTION)
        await store.close()


async def test_own_text_finds_its_document(
    index: QdrantIndex, corpus: Corpus, embedder: FastembedEmbedder
) -> None:
    for chunk in corpus.chunks[::4]:  # a sample: each query is a full abstract, embedded alone
        [hit] = await index.search(COLLECTION, await embedder.embed_query(chunk.text), limit=1)
        assert (hit.doc_id, hit.chunk_id) == (chunk.doc_id, chunk.id)
        assert hit.score == pytest.approx(1.0, abs=1e-5)
        assert (hit.title, hit.text, hit.metadata) == (chunk.title, chunk.text, chunk.metadata)


async def test_scores_are_cosine_similarity_best_first(index: QdrantIndex, corpus: Corpus) -> None:
    query = corpus.chunks[3].doc_id
    hits = await index.search(COLLECTION, corpus.vector(query), limit=10)
    expected = corpus.nearest(query, 10, lambda _: True)
    assert [hit.doc_id for hit in hits] == [doc_id for doc_id, _ in expected]
    assert [hit.score for hit in hits] == pytest.approx([score for _, score in expected], abs=1e-5)


FILTERS: dict[str, tuple[Filter, Callable[[dict[str, Any]], bool]]] = {
    "equals-string": (Filter((Equals("parity", "odd"),)), lambda m: m["parity"] == "odd"),
    "equals-int": (Filter((Equals("group", 2),)), lambda m: m["group"] == 2),
    "equals-bool": (Filter((Equals("reviewed", True),)), lambda m: m["reviewed"] is True),
    "equals-float": (Filter((Equals("pages", 12.0),)), lambda m: m["pages"] == 12.0),
    "in-strings": (Filter((AnyOf("tag", ("a", "c")),)), lambda m: m["tag"] in ("a", "c")),
    "in-ints": (Filter((AnyOf("group", (1, 3)),)), lambda m: m["group"] in (1, 3)),
    "in-mixed": (Filter((AnyOf("tag", ("b", 7)),)), lambda m: m["tag"] == "b"),
    "numeric-range": (
        Filter((Range("pages", gte=10, lt=30),)),
        lambda m: 10 <= m["pages"] < 30,
    ),
    "date-range": (
        Filter((Range("published", gte=date(1953, 1, 1), lt=date(1956, 1, 1)),)),
        lambda m: date(1953, 1, 1) <= date.fromisoformat(m["published"]) < date(1956, 1, 1),
    ),
    "datetime-range": (
        Filter((Range("published", gt=datetime(1957, 6, 1, tzinfo=UTC)),)),
        lambda m: (
            datetime.fromisoformat(m["published"]).replace(tzinfo=UTC) > datetime(1957, 6, 1, tzinfo=UTC)
        ),
    ),
    "all-of": (
        Filter((Equals("parity", "even"), Range("pages", lte=40))),
        lambda m: m["parity"] == "even" and m["pages"] <= 40,
    ),
}


@pytest.mark.parametrize("name", FILTERS)
async def test_filter_applies_before_the_limit(name: str, index: QdrantIndex, corpus: Corpus) -> None:
    filter, keep = FILTERS[name]
    # Query from a document the filter drops: filtering after the limit would come back short or wrong.
    query = next(chunk.doc_id for chunk in corpus.chunks if not keep(chunk.metadata))
    expected = corpus.nearest(query, 5, keep)
    assert len(expected) > 0, f"{name} keeps no document: the test data no longer exercises it"

    hits = await index.search(COLLECTION, corpus.vector(query), limit=5, filter=filter)

    assert [hit.doc_id for hit in hits] == [doc_id for doc_id, _ in expected]
    assert all(keep(hit.metadata) for hit in hits)


async def test_upsert_is_idempotent(index: QdrantIndex, corpus: Corpus) -> None:
    await index.upsert(COLLECTION, corpus.chunks, corpus.vectors.tolist())
    assert await index.count_chunks(COLLECTION) == len(corpus.chunks)


async def test_delete_documents(index: QdrantIndex, corpus: Corpus) -> None:
    gone = [corpus.chunks[0].doc_id, corpus.chunks[5].doc_id]
    await index.delete_documents(COLLECTION, gone)
    assert await index.count_chunks(COLLECTION) == len(corpus.chunks) - 2
    hits = await index.search(COLLECTION, corpus.vector(gone[0]), limit=len(corpus.chunks))
    assert not {hit.doc_id for hit in hits} & set(gone)


async def test_missing_collection_is_not_found(index: QdrantIndex, corpus: Corpus) -> None:
    assert not await index.collection_exists("absent")
    with pytest.raises(NotFound, match='collection "absent" does not exist'):
        await index.search("absent", corpus.vector(corpus.chunks[0].doc_id), limit=3)
    with pytest.raises(NotFound):
        await index.count_chunks("absent")
    with pytest.raises(NotFound):
        await index.delete_documents("absent", ["1"])


async def test_drop_collection(index: QdrantIndex) -> None:
    await index.drop_collection(COLLECTION)
    assert not await index.collection_exists(COLLECTION)
    await index.ensure_collection(COLLECTION)
    assert await index.count_chunks(COLLECTION) == 0


async def test_mismatched_vector_count_is_refused(index: QdrantIndex, corpus: Corpus) -> None:
    with pytest.raises(InvalidRequest):
        await index.upsert(COLLECTION, corpus.chunks[:2], corpus.vectors[:1].tolist())


async def test_ensure_collection_twice_is_idempotent(index: QdrantIndex, corpus: Corpus) -> None:
    # Two replicas may create one collection at once; the second call must neither fail nor empty it.
    await index.ensure_collection(COLLECTION)
    assert await index.count_chunks(COLLECTION) == len(corpus.chunks)


async def test_reopened_folder_keeps_points_and_checks_width(tmp_path: Path, corpus: Corpus) -> None:
    path = tmp_path / "qdrant"
    first = QdrantIndex(QdrantSettings(), dimensions=corpus.vectors.shape[1], local_path=path)
    try:
        await first.ensure_collection(COLLECTION)
        await first.upsert(COLLECTION, corpus.chunks[:3], corpus.vectors[:3].tolist())
    finally:
        await first.close()

    narrow = QdrantIndex(QdrantSettings(), dimensions=8, local_path=path)
    try:
        assert await narrow.count_chunks(COLLECTION) == 3
        with pytest.raises(InvalidRequest, match="size 384"):
            await narrow.ensure_collection(COLLECTION)
    finally:
        await narrow.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("index", ["local"], indirect=True)
async def test_locked_folder_is_unavailable(index: QdrantIndex, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="already accessed"):
        QdrantIndex(QdrantSettings(), dimensions=384, local_path=tmp_path / "qdrant")
    # qdrant-client leaves the refused client's lock file open; collect it now, under this test's filter,
    # rather than in whichever test the garbage collector happens to run next.
    gc.collect()


@pytest.mark.parametrize("grpc", [False, True], ids=["http", "grpc"])
async def test_unreachable_server_is_unavailable(corpus: Corpus, grpc: bool) -> None:
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
    settings = QdrantSettings(url="http://127.0.0.1:9", prefer_grpc=grpc, grpc_port=9)
    store = QdrantIndex(settings, dimensions=corpus.vectors.shape[1])
    try:
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await store.search(COLLECTION, corpus.vector(corpus.chunks[0].doc_id), limit=3)
    finally:
        await store.close()


CONGRUENCE_DOCS = 200
CONGRUENCE_QUERIES = 50


@pytest.fixture(scope="module")
def congruence_data(embedder: FastembedEmbedder) -> tuple[list[Chunk], list[list[float]], list[list[float]]]:
    """More documents than the contract's, and Cranfield's own queries, embedded once for both transports."""
    chunks = cranfield_chunks(CONGRUENCE_DOCS, skip_empty=True)
    with (CORPUS.parent / "queries.jsonl").open(encoding="utf-8") as lines:
        queries = [json.loads(line)["text"] for line in islice(lines, CONGRUENCE_QUERIES)]
    vectors = embedder.embed_passages_sync([chunk.text for chunk in chunks])
    # Any vectors do for congruence; MiniLM embeds queries as it does passages anyway.
    return chunks, vectors, embedder.embed_passages_sync(queries)


@pytest.mark.parametrize("mode", [p for p in MODES if p != "local"])
async def test_server_ranks_as_local_mode_does(
    mode: str, tmp_path: Path, congruence_data: tuple[list[Chunk], list[list[float]], list[list[float]]]
) -> None:
    """Congruence: one collection in both modes, Cranfield's queries, the same ranked ids and scores."""
    chunks, vectors, queries = congruence_data
    local = open_store("local", tmp_path / "qdrant", len(vectors[0]))
    server = open_store(mode, tmp_path, len(vectors[0]))
    try:
        for store in (local, server):
            await store.ensure_collection(COLLECTION)
            await store.upsert(COLLECTION, chunks, vectors)
        for number, vector in enumerate(queries):
            expected = await local.search(COLLECTION, vector, limit=10)
            got = await server.search(COLLECTION, vector, limit=10)
            assert [hit.chunk_id for hit in got] == [hit.chunk_id for hit in expected], f"query {number}"
            assert [hit.score for hit in got] == pytest.approx([hit.score for hit in expected], abs=1e-5)
    finally:
        await server.drop_collection(COLLECTION)
        await local.close()
        await server.close()
