"""A collection knows the embedder that wrote it: another embedder is refused by the CLI and the HTTP API.

Changing `[embedding] max_length` stands in for any change of embedder (model, file, int8): the
vectors of texts cut at another length are not the collection's, so the same refusal follows.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from service.ingest.journal_sqlite import journal_path
from service.search.fingerprint import EmbedderFingerprint
from service.settings import Settings, settings_from_dict
from tests.integration.ingest_app import documents_body, fathom, write_config
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, index_documents, search_settings
from tests.integration.test_indexer_cli import SMALL_CHUNKS, summary, write_jsonl

pytestmark = pytest.mark.anyio


def recorded(data: Path, collection: str) -> EmbedderFingerprint | None:
    with sqlite3.connect(journal_path(data)) as db:
        [(stored,)] = db.execute("SELECT embedder FROM collections WHERE name = ?", (collection,)).fetchall()
    return None if stored is None else EmbedderFingerprint.from_json(stored)


def with_max_length(config: Path, max_length: int) -> Path:
    other = config.with_name(f"max{max_length}.toml")
    text = config.read_text(encoding="utf-8").replace(
        "[embedding]\n", f"[embedding]\nmax_length = {max_length}\n"
    )
    other.write_text(text, encoding="utf-8")
    return other


def changed(settings: Settings, **embedding: object) -> Settings:
    raw = msgspec.to_builtins(settings)
    raw["embedding"].update(embedding)
    return settings_from_dict(raw)


def test_the_cli_refuses_to_index_with_another_embedder(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    source = write_jsonl(tmp_path / "corpus.jsonl", cranfield(limit=3))
    index = ("index", str(source), "--collection", "c", *SMALL_CHUNKS)
    first = fathom(config, data, *index)
    assert first.returncode == 0, first.stderr
    fingerprint = recorded(data, "c")
    assert fingerprint is not None and fingerprint.max_length == 256 and fingerprint.quantize == "none"
    assert len(fingerprint.model_hash) == 64 and fingerprint.dimensions == 384

    refused = fathom(with_max_length(config, 128), data, *index)
    assert refused.returncode != 0
    message = refused.stderr
    assert "Traceback" not in message
    # The differing field is named first, in both fingerprints, and what fixes it.
    assert "(max_length differ)" in message
    assert "Collection: max_length=256" in message and "Configured: max_length=128" in message
    assert "[embedding] max_length" in message and "fathom index SOURCE --collection c" in message
    # Nothing was written with the other embedder.
    assert recorded(data, "c") == fingerprint
    assert summary(fathom(config, data, *index).stdout) == (0, 0, 3, 0, 0)


def test_a_collection_from_before_fingerprints_gets_one_on_its_next_run(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    source = write_jsonl(tmp_path / "corpus.jsonl", cranfield(limit=2))
    index = ("index", str(source), "--collection", "c", *SMALL_CHUNKS)
    assert fathom(config, data, *index).returncode == 0
    with sqlite3.connect(journal_path(data)) as db:  # as an earlier release left it
        db.execute("UPDATE collections SET embedder = NULL")

    again = fathom(config, data, *index)
    assert again.returncode == 0, again.stderr
    assert 'collection "c" records no embedder' in again.stderr
    assert recorded(data, "c") is not None
    assert fathom(with_max_length(config, 128), data, *index).returncode != 0


async def test_the_api_answers_409_naming_both_embedders(tmp_path: Path) -> None:
    settings = search_settings(tmp_path)
    report = await index_documents(settings, "c", cranfield(limit=3))
    assert report.added == 3
    other = changed(settings, max_length=128)
    headers = {"Authorization": f"Bearer {new_key(other, 'ops')}"}
    query = {"query": "boundary layer", "collection": "c", "rerank": {"enabled": False}}
    async with running(other) as client:
        searched = await client.post("/v1/search", json=query, headers=headers)
        context = await client.post("/v1/context", json={"query": "wing", "collection": "c"}, headers=headers)
        pushed = await client.post(
            "/v1/collections/c/documents", json=documents_body(cranfield(limit=4)[3:]), headers=headers
        )
        # A collection this embedder made is searched as usual.
        assert (await client.put("/v1/collections/fresh", headers=headers)).status_code == 201
        fresh = await client.post("/v1/search", json={**query, "collection": "fresh"}, headers=headers)
        described = (await client.get("/v1/collections/c", headers=headers)).json()["embedder"]
    for answer in (searched, context, pushed):
        assert answer.status_code == 409, answer.text
        body = answer.json()
        assert body["error"]["code"] == "embedder_mismatch"
        assert "(max_length differ)" in body["message"] and "Configured: max_length=128" in body["message"]
    assert fresh.status_code == 200, fresh.text
    assert described["max_length"] == 256 and described["quantize"] == "none"
    async with running(settings) as client:
        headers = {"Authorization": f"Bearer {new_key(settings, 'ops2')}"}
        same = await client.post("/v1/search", json=query, headers=headers)
    assert same.status_code == 200 and same.json()["hits"]
    assert json.loads(recorded(tmp_path, "c").to_json())["max_length"] == 256  # type: ignore[union-attr]
