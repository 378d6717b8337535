"""Writes that once wedged, orphaned or resurrected collections, over HTTP
and the CLI, on real stores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from service.ingest.documents import Document
from service.ingest.journal import Intent
from service.ingest.writer import document_json
from service.runtime import open_writer
from service.settings import Settings
from tests.conftest import bearer
from tests.integration.ingest_app import Api, documents_body, fathom, holdings, write_config
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio
DOCS = cranfield(limit=3)


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"v": 2**64}, "metadata.v: integer 18446744073709551616 is out of range"),
        ({"v": -(2**63) - 1}, "metadata.v: integer"),
        ({"deep": nested(500)}, "nested deeper than 16 levels"),
        ({"tags": [1, "one"]}, "metadata.tags: a list must hold values of one kind"),
        ({"": 1}, "key '' must be non-empty"),
    ],
)
async def test_metadata_no_store_takes_is_a_400_and_wedges_nothing(
    collections_api: Api, metadata: dict[str, Any], field: str
) -> None:
    client, auth = collections_api
    assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
    bad = Document("bad", "", "a document with metadata no store takes", metadata)
    refused = await client.post(
        "/v1/collections/site/documents", json=documents_body([DOCS[0], bad]), headers=auth
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["message"].startswith("documents[1].") and field in refused.text
    # Nothing was journalled: the next write goes through and the stores agree.
    pushed = await client.post("/v1/collections/site/documents", json=documents_body(DOCS), headers=auth)
    assert pushed.status_code == 200 and pushed.json()["added"] == 3, pushed.text
    info = (await client.get("/v1/collections/site", headers=auth)).json()
    assert info["pending"] == 0 and info["documents"] == 3
    assert info["stores"]["journal"] == info["stores"]["lexical"] == info["stores"]["vector"]
    assert (
        await client.delete(f"/v1/collections/site/documents/{DOCS[0].id}", headers=auth)
    ).status_code == 200


async def leave_unfinished(settings: Settings) -> None:
    """What the release before this one left behind: an intent with a value no store takes in "site",
    and an ordinary unfinished write in "zzz", recovered after it."""
    async with open_writer(settings) as writer:
        for name in ("site", "zzz"):
            await writer.create_collection(name)
            await writer.upsert(name, DOCS[:1])
        wedged = Document("bad", "", "never storable", {"v": 2**64})
        writer.journal.begin("site", [Intent("bad", "write", wedged.content_hash(), document_json(wedged))])
        fine = DOCS[1]
        writer.journal.begin("zzz", [Intent(fine.id, "write", fine.content_hash(), document_json(fine))])


async def test_an_intent_that_can_never_succeed_is_parked_for_verify(tmp_path: Path) -> None:
    settings = search_settings(tmp_path)
    await leave_unfinished(settings)
    auth = bearer(new_key(settings, "pusher"))
    async with running(settings) as client:
        # Start-up recovery parked the wedged intent and went on to the next collection.
        assert (await client.get("/v1/collections/zzz", headers=auth)).json()["documents"] == 2
        pushed = await client.post(
            "/v1/collections/site/documents", json=documents_body(DOCS[1:2]), headers=auth
        )
        assert pushed.status_code == 200 and pushed.json()["added"] == 1, pushed.text
        info = (await client.get("/v1/collections/site", headers=auth)).json()
        assert info["pending"] == 0 and info["stores"]["vector"]["documents"] == 2

    config = write_config(tmp_path)
    verify = fathom(config, tmp_path, "verify", "--collection", "site")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "1 failed changes" in verify.stdout and "failed write of 'bad'" in verify.stdout
    assert "out of range" in verify.stdout
    repaired = fathom(config, tmp_path, "verify", "--collection", "site", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "removed 1 failed changes" in repaired.stdout
    assert fathom(config, tmp_path, "verify", "--collection", "site").returncode == 0
    assert (await holdings(settings, "site")).consistent


async def test_bad_collection_names_touch_no_store(tmp_path: Path) -> None:
    settings = search_settings(tmp_path)
    auth = bearer(new_key(settings, "admin"))
    async with running(settings) as client:
        for name in ("%01ctl", "UPPER", "a%20b", "-dash", "x" * 65):
            response = await client.put(f"/v1/collections/{name}", headers=auth)
            assert response.status_code == 400, (name, response.text)
            assert "is not a valid collection name" in response.json()["error"]["message"]
    qdrant_collections = tmp_path / "qdrant" / "collection"
    assert not qdrant_collections.exists() or not any(qdrant_collections.iterdir())
    tantivy = tmp_path / "tantivy"
    assert not tantivy.exists() or not any(tantivy.iterdir())


async def test_a_collection_deleted_during_an_upsert_stays_deleted(tmp_path: Path) -> None:
    settings = search_settings(tmp_path)
    auth = bearer(new_key(settings, "pusher"))
    many = [Document(f"d{n}", "", f"document number {n} about boundary layers", {}) for n in range(320)]
    async with running(settings) as client:
        await client.put("/v1/collections/site", headers=auth)
        documents = "/v1/collections/site/documents"
        upsert = asyncio.create_task(client.post(documents, json=documents_body(many), headers=auth))
        for _ in range(1200):  # until the first of five batches is in
            if (await client.get("/v1/collections/site", headers=auth)).json()["documents"]:
                break
            await asyncio.sleep(0.05)
        assert (await client.delete("/v1/collections/site", headers=auth)).status_code == 200
        interrupted = await upsert
        assert interrupted.status_code == 404, interrupted.text
        assert "was deleted while this request ran" in interrupted.json()["error"]["message"]
        assert (await client.get("/v1/collections/site", headers=auth)).status_code == 404

        await client.put("/v1/collections/site", headers=auth)
        pushed = await client.post(
            "/v1/collections/site/documents", json=documents_body(DOCS[:1]), headers=auth
        )
        assert pushed.status_code == 200
        info = (await client.get("/v1/collections/site", headers=auth)).json()
        assert info["documents"] == 1 and info["pending"] == 0
        assert info["stores"]["lexical"] == info["stores"]["vector"] == {"documents": 1, "chunks": 1}
