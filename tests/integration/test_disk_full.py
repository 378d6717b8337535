"""A full disk under data_dir (issue 7, defect 9), on a real small tmpfs: /readyz says so, and writes
get 507 with a message that names no server path."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from service.settings import Settings, StateSettings
from service.state.stores import open_keys
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    """Write until the disk refuses: ENOSPC is the state under test."""
    with (disk / "filler").open("wb") as filler:
        block = b"\0" * (1 << 20)
        try:
            while True:
                filler.write(block)
                filler.flush()
                os.fsync(filler.fileno())
        except OSError:
            pass


async def test_a_full_disk_is_not_ready_and_writes_are_507_without_a_path(small_disk: Path) -> None:
    settings = search_settings(small_disk)
    auth = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
    documents = [{"id": d.id, "title": d.title, "text": d.text} for d in cranfield(limit=3)]
    async with running(settings) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["storage"] == "ok", ready.text
        assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
        fill(small_disk)

        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["storage"] == "full", ready.text
        for answer in (
            await client.put("/v1/collections/other", headers=auth),
            await client.post("/v1/collections/site/documents", json={"documents": documents}, headers=auth),
        ):
            assert answer.status_code == 507, answer.text
            assert answer.json()["error"]["type"] == "insufficient_storage" or "disk is full" in answer.text
            assert str(small_disk) not in answer.text and "/tmp" not in answer.text, answer.text

        (small_disk / "filler").unlink()  # space again: ready, and writes work
        assert (await client.get("/readyz")).json()["storage"] == "ok"


async def documents_after(
    client: httpx.AsyncClient, auth: dict[str, str], collection: str, wanted: int, within: float
) -> bool:
    """Whether the collection holds `wanted` committed documents within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        answer = await client.get(f"/v1/collections/{collection}", headers=auth)
        assert answer.status_code == 200, answer.text
        if answer.json()["documents"] == wanted:
            return True
        await asyncio.sleep(0.2)
    return False


async def test_an_upsert_the_vector_store_has_no_room_for_is_507_and_then_written(
    tmp_path: Path, small_disk: Path
) -> None:
    """Qdrant's folder on its own full volume: the journal records the batch, Tantivy takes it, and
    Qdrant local cannot. The 507 says the batch is kept and will be written; once space returns it is,
    whole, in both stores, with no second request."""
    settings = msgspec.structs.replace(
        search_settings(tmp_path / "data", qdrant={"path": str(small_disk / "qdrant")}),
        state=StateSettings(lease_seconds=1.0),
    )
    auth = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
    documents = cranfield(limit=3)
    body = {"documents": [{"id": d.id, "title": d.title, "text": d.text} for d in documents]}
    async with running(settings) as client:
        assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
        fill(small_disk)
        answer = await client.post("/v1/collections/site/documents", json=body, headers=auth)
        assert answer.status_code == 507, answer.text
        error = answer.json()["error"]
        assert error["type"] == "insufficient_storage", error
        assert "will be written once space is freed" in error["message"], error
        assert str(small_disk) not in answer.text and str(tmp_path) not in answer.text, answer.text
        # Kept, as the answer says: pending in the journal, not yet committed.
        info = (await client.get("/v1/collections/site", headers=auth)).json()
        assert (info["pending"], info["documents"]) == (3, 0), info

        (small_disk / "filler").unlink()
        # The server's background recovery (every half lease) applies them: no request asks it to.
        assert await documents_after(client, auth, "site", 3, within=30)
        info = (await client.get("/v1/collections/site", headers=auth)).json()
        assert info["pending"] == 0, info
        assert info["stores"]["journal"] == info["stores"]["lexical"] == info["stores"]["vector"], info
        search = await client.post(
            "/v1/search", json={"query": documents[1].title, "collection": "site"}, headers=auth
        )
        assert search.status_code == 200 and not search.json().get("degraded"), search.text
        assert documents[1].id in {hit["id"] for hit in search.json()["hits"]}, search.text


def metric(text: str, name: str) -> float:
    [value] = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    return value


def used(settings: Settings, name: str) -> int:
    """The key's usage as stored, read as `fathom keys list` reads it."""
    store = open_keys(settings)
    try:
        return next(key.used for key in store.list() if key.name == name)
    finally:
        store.close()


async def test_with_the_disk_full_reads_answer_within_quota_and_their_usage_is_written_later(
    small_disk: Path,
) -> None:
    settings = search_settings(small_disk)
    admin = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
    reader = {"Authorization": f"Bearer {new_key(settings, 'reader', quota=4, rate_limit=600)}"}
    documents = [{"id": d.id, "title": d.title, "text": d.text} for d in cranfield(limit=3)]
    search = ("/v1/search", {"query": "boundary layer", "collection": "site"})
    rerank = ("/v1/rerank", {"query": "boundary layer", "documents": ["a boundary layer", "a wing"]})
    async with running(settings) as client:
        assert (await client.put("/v1/collections/site", headers=admin)).status_code == 201
        body = {"documents": documents}
        posted = await client.post("/v1/collections/site/documents", json=body, headers=admin)
        assert posted.status_code == 200, posted.text
        fill(small_disk)

        # One unit each, four in the quota: all four answer, though none of it can be stored.
        for path, request in (search, rerank, search, rerank):
            answer = await client.post(path, json=request, headers=reader)
            assert answer.status_code == 200, (path, answer.text)
        assert used(settings, "reader") == 0
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "fathom_key_usage_unwritten_units") == 4, metrics
        assert metric(metrics, "fathom_key_usage_deferred_units_total") == 4, metrics
        # The quota still holds, counted from what is held in memory.
        over = await client.post(search[0], json=search[1], headers=reader)
        assert over.status_code == 402 and "0 of 4 left" in over.json()["error"]["message"], over.text

        (small_disk / "filler").unlink()
        await asyncio.sleep(1.1)  # past the pause between tries at writing held usage
        assert (await client.post(search[0], json=search[1], headers=admin)).status_code == 200
        assert used(settings, "reader") == 4 and used(settings, "admin") == 2  # the upsert, this search
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "fathom_key_usage_unwritten_units") == 0, metrics
