"""The collections API over HTTP on real stores, and a write cut between the two stores, recovered."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from service.backends.stack import SearchStack
from service.errors import BackendUnavailable
from service.ingest.chunking import Chunker, ChunkingPolicy
from service.ingest.documents import Document
from service.ingest.drift import find_drift
from service.ingest.writer import IngestWriter
from service.runtime import open_writer
from service.search.models import Chunk
from service.settings import Settings
from tests.integration.ingest_app import Api, documents_body
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio
DOCS = cranfield(limit=6)


async def test_push_documents_and_read_counts(collections_api: Api) -> None:
    client, auth = collections_api
    assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
    assert (await client.put("/v1/collections/site", headers=auth)).status_code == 200
    listing = (await client.get("/v1/collections", headers=auth)).json()
    assert listing == {"collections": [{"name": "site", "documents": 0}]}

    pushed = await client.post("/v1/collections/site/documents", json=documents_body(DOCS), headers=auth)
    assert pushed.status_code == 200, pushed.text
    assert pushed.json() | {"errors": []} == {
        "collection": "site",
        "added": 6,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "errors": [],
    }
    again = (
        await client.post("/v1/collections/site/documents", json=documents_body(DOCS), headers=auth)
    ).json()
    assert (again["added"], again["unchanged"]) == (0, 6)
    shorter = Document(DOCS[0].id, DOCS[0].title, "now a single short sentence", {"kind": "edited"})
    edited = (
        await client.post("/v1/collections/site/documents", json=documents_body([shorter]), headers=auth)
    ).json()
    assert edited["updated"] == 1

    info = (await client.get("/v1/collections/site", headers=auth)).json()
    stores = info["stores"]
    assert info["documents"] == 6 and info["pending"] == 0
    assert stores["journal"] == stores["lexical"] == stores["vector"] and stores["lexical"]["documents"] == 6

    gone = await client.delete(f"/v1/collections/site/documents/{DOCS[1].id}", headers=auth)
    assert gone.status_code == 200
    missing = await client.delete(f"/v1/collections/site/documents/{DOCS[1].id}", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    stores = (await client.get("/v1/collections/site", headers=auth)).json()["stores"]
    assert stores["journal"] == stores["lexical"] == stores["vector"] and stores["vector"]["documents"] == 5

    assert (await client.delete("/v1/collections/site", headers=auth)).status_code == 200
    assert (await client.get("/v1/collections/site", headers=auth)).status_code == 404
    assert (await client.get("/v1/collections", headers=auth)).json() == {"collections": []}


async def test_errors_use_the_common_body(collections_api: Api) -> None:
    client, auth = collections_api
    unknown = await client.post("/v1/collections/nope/documents", json=documents_body(DOCS[:1]), headers=auth)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert (await client.get("/v1/collections/nope", headers=auth)).status_code == 404
    assert (await client.delete("/v1/collections/nope", headers=auth)).status_code == 404
    assert (await client.put("/v1/collections/Bad%20Name", headers=auth)).status_code == 400
    await client.put("/v1/collections/site", headers=auth)
    for bad in ({}, {"documents": []}, {"documents": [{"id": 7, "text": "x"}]}, {"documents": [{"id": " "}]}):
        response = await client.post("/v1/collections/site/documents", json=bad, headers=auth)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"
    unauthenticated = await client.get("/v1/collections")
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["code"] == "invalid_api_key"
    assert (await client.post("/v1/collections/site/documents", json=documents_body(DOCS))).status_code == 401


async def test_an_upsert_repeating_an_id_is_refused_and_writes_nothing(collections_api: Api) -> None:
    client, auth = collections_api
    await client.put("/v1/collections/site", headers=auth)
    first = Document(DOCS[0].id, DOCS[0].title, "the first copy", {})
    second = Document(DOCS[0].id, DOCS[0].title, "the second copy", {})
    body = documents_body([first, DOCS[1], second, DOCS[2], DOCS[2]])

    response = await client.post("/v1/collections/site/documents", json=body, headers=auth)

    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert f"{DOCS[0].id!r}" in message and f"{DOCS[2].id!r}" in message
    assert f"{DOCS[1].id!r}" not in message and "once per request" in message
    info = (await client.get("/v1/collections/site", headers=auth)).json()
    assert info["documents"] == 0 and info["pending"] == 0
    assert info["stores"]["lexical"]["chunks"] == info["stores"]["vector"]["chunks"] == 0


class CrashingVectors:
    """The real vector store, except that upserts fail as if the process died before Qdrant wrote."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def upsert(self, collection: str, chunks: Sequence[Chunk], vectors: Any) -> None:
        raise BackendUnavailable("qdrant went away")


async def test_write_cut_between_the_stores_is_drift_until_recovered(tmp_path: Path) -> None:
    settings: Settings = search_settings(tmp_path)
    async with open_writer(settings) as writer:
        await writer.create_collection("c")
        await writer.upsert("c", DOCS[:2])
        real = writer.stack
        crashing = SearchStack(real.lexical, CrashingVectors(real.vectors), real.embedder)  # type: ignore[arg-type]
        # Same journal, so the cut falls inside the write protocol.
        cut = IngestWriter(crashing, writer.journal, Chunker(real.embedder.tokenizer, ChunkingPolicy()))
        changed = Document(DOCS[0].id, DOCS[0].title, "short now", {})
        with pytest.raises(BackendUnavailable):
            await cut.upsert("c", [changed, DOCS[2]])
        drift = await find_drift(writer, "c")
        # Lexical has the new chunks, Qdrant does not: the intents and the counts both say so.
        assert {i.doc_id for i in drift.pending} == {DOCS[0].id, DOCS[2].id}
        assert DOCS[2].id in drift.mismatched and drift.mismatched[DOCS[2].id].vector is None
        report = await writer.recover("c")
        assert report.recovered == 2
        after = await find_drift(writer, "c")
        assert after.clean and after.documents == 3
        assert writer.journal.chunk_counts("c")[DOCS[0].id] == 1
