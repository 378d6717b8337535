"""Damaged state files: a corrupt or truncated journal, a corrupt key store. Each
is named, with what to do, in /readyz, in the API's 503 and on the command line; nothing hangs."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.ingest.journal_sqlite import journal_path
from tests.conftest import bearer
from tests.integration.ingest_app import fathom, write_config
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, index_documents, search_settings

pytestmark = pytest.mark.anyio


async def damage_journal(data_dir: Path, how: str) -> Path:
    settings = search_settings(data_dir)
    report = await index_documents(settings, "site", cranfield(limit=5))
    assert report.added == 5
    return overwrite(journal_path(data_dir), how)


def overwrite(journal: Path, how: str) -> Path:
    content = journal.read_bytes()
    if how == "corrupt":
        journal.write_bytes(b"\x00garbage\x00" * 1000 + content[10_000:])
    else:  # truncated: the header survives, most pages do not
        journal.write_bytes(content[: len(content) // 3])
    for leftover in ("-wal", "-shm"):
        Path(f"{journal}{leftover}").unlink(missing_ok=True)
    return journal


@pytest.mark.parametrize("how", ["corrupt", "truncated"])
async def test_a_damaged_journal_is_reported_not_hidden(tmp_path: Path, how: str) -> None:
    journal = await damage_journal(tmp_path, how)
    settings = search_settings(tmp_path)
    auth = bearer(new_key(settings, "k"))
    async with running(settings) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        status = ready.json()["search"]
        assert status.startswith("failed: the journal file") and str(journal) in status, status
        assert "restore it from a backup" in status
        search = await client.post("/v1/search", json={"query": "wing", "collection": "site"}, headers=auth)
        assert search.status_code == 503 and "damaged" in search.json()["error"]["message"]
    verify = fathom(write_config(tmp_path), tmp_path, "verify", "--collection", "site")
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    assert f"the journal file {journal} is damaged" in verify.stderr


def test_a_damaged_key_store_is_one_line_naming_the_file(tmp_path: Path) -> None:
    store = tmp_path / "fathom.sqlite3"
    store.write_bytes(b"not a key store" * 1000)
    config = write_config(tmp_path)
    for command in (["keys", "list"], ["serve", "--port", "1"]):
        result = fathom(config, tmp_path, *command, timeout=120)
        assert result.returncode == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert f"error: the key store file {store} is damaged" in result.stderr, result.stderr


def lose(journal: Path, how: str) -> Path:
    for leftover in ("-wal", "-shm"):
        Path(f"{journal}{leftover}").unlink(missing_ok=True)
    if how == "emptied":
        journal.write_bytes(b"")
    else:
        journal.unlink()
    return journal


@pytest.mark.parametrize("how", ["emptied", "missing"])
async def test_a_lost_journal_beside_stores_with_collections_is_refused(tmp_path: Path, how: str) -> None:
    """Opened as a new empty journal, the collection would be searchable yet unknown (404) to writes."""
    settings = search_settings(tmp_path)
    assert (await index_documents(settings, "site", cranfield(limit=5))).added == 5
    journal = lose(journal_path(tmp_path), how)
    auth = bearer(new_key(settings, "k"))
    async with running(settings) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503, ready.text
        status = ready.json()["search"]
        assert status.startswith(f"failed: the journal file {journal} is damaged"), status
        assert ("empty (0 bytes)" if how == "emptied" else "missing") in status, status
        assert str(tmp_path / "tantivy") in status and "holds site" in status, status
        assert "restore it from a backup or move the store folders aside" in status, status
        for answer in (
            await client.post("/v1/search", json={"query": "wing", "collection": "site"}, headers=auth),
            await client.get("/v1/collections/site", headers=auth),
        ):
            assert answer.status_code == 503 and "damaged" in answer.json()["error"]["message"], answer.text
    verify = fathom(write_config(tmp_path), tmp_path, "verify", "--collection", "site")
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    assert f"the journal file {journal} is damaged" in verify.stderr, verify.stderr
    # Refused, not replaced by a new empty journal: what the operator finds is what was there.
    assert journal.exists() == (how == "emptied")
    assert how == "missing" or journal.stat().st_size == 0
