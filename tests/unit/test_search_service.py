"""The search service on in-memory fakes: what both adapters (HTTP and MCP) get from it.

The same work on the real stores and models is tested through the HTTP API and the MCP SDK in
tests/integration (test_search_api, test_context_collections, test_mcp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from service.auth.keys import ApiKey
from service.errors import BackendUnavailable, NotFound
from service.search.models import Chunk
from service.search.pipeline import SearchPipeline
from service.search_service import SearchParts, SearchService
from service.settings import Settings, settings_from_dict
from tests.unit.search_fakes import FakeCatalog, FakeEmbedder, FakeLexical, FakeVectors

pytestmark = pytest.mark.anyio


@dataclass
class StoredVectors(FakeVectors):
    """Vectors that also hold one document's chunks, as the vector store keeps them."""

    stored: list[Chunk] = field(default_factory=list)

    async def document_chunks(self, collection: str, doc_id: str) -> list[Chunk]:
        return [chunk for chunk in self.stored if chunk.doc_id == doc_id]


def service_on(tmp_path: Path, vectors: FakeVectors, states: dict[str, str]) -> SearchService:
    settings: Settings = settings_from_dict({"data_dir": str(tmp_path)})
    pipeline = SearchPipeline(FakeLexical(), vectors, FakeEmbedder(), None, settings.search)
    return SearchService(settings, parts=SearchParts(pipeline, catalog=FakeCatalog(states), chunks=vectors))


def key_reaching(*collections: str) -> ApiKey:
    return ApiKey("k", "fth_k", None, None, 0, 0.0, None, collections=frozenset(collections))


def test_collections_are_the_ready_ones_the_key_reaches(tmp_path: Path) -> None:
    service = service_on(tmp_path, FakeVectors(), {"docs": "ready", "old": "dropping", "wiki": "ready"})
    assert service.collections(None) == ["docs", "wiki"]
    assert service.collections(key_reaching("wiki", "old")) == ["wiki"]


def test_the_nearest_ready_collection_is_named_for_a_misspelt_one(tmp_path: Path) -> None:
    service = service_on(tmp_path, FakeVectors(), {"manuals": "ready", "manual-old": "dropping"})
    assert service.nearest_collection("manuls") == "manuals"
    assert service.nearest_collection("manuals") is None  # it exists: nothing to suggest
    assert SearchService(service.settings).nearest_collection("manuls") is None  # not open yet


async def test_a_document_is_put_back_together_from_its_chunks(tmp_path: Path) -> None:
    meta = {"url": "https://example.org/a", "page": 2, "lang": "en"}
    chunks = [
        Chunk("a#0", "a", 0, "A", "one two three", meta, start=0, end=13),
        Chunk("a#1", "a", 1, "A", "three four", meta, start=8, end=18),
    ]
    service = service_on(tmp_path, StoredVectors(stored=chunks), {"docs": "ready"})
    document = await service.get_document("docs", "a", max_chars=10)
    assert (document.text, document.truncated, document.chars) == ("one two th", True, 18)
    assert document.url == "https://example.org/a" and document.metadata == {"url": meta["url"], "lang": "en"}
    with pytest.raises(NotFound, match="collection \"docs\" has no document 'b'"):
        await service.get_document("docs", "b", max_chars=10)


async def test_before_search_opens_each_use_is_a_503_with_the_reason_and_no_url(tmp_path: Path) -> None:
    settings: Settings = settings_from_dict({"data_dir": str(tmp_path)})
    service = SearchService(settings, error="Qdrant at http://10.0.0.7:6333 refused the connection")
    assert service.readiness() == "failed: Qdrant at <url> refused the connection"
    with pytest.raises(BackendUnavailable, match=r"^collections are not available: Qdrant at <url>"):
        service.collections(None, "collections are")
    with pytest.raises(BackendUnavailable, match=r"^search is not available: Qdrant at <url>"):
        await service.get_document("docs", "a", max_chars=10)
