"""A full disk under data_dir, on a real small tmpfs: /readyz says so, and writes
get 507 with a message that names no server path."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from service.settings import Settings, StateSettings
from service.stores import open_keys
from tests.conftest import bearer
from tests.integration.rerank_app import new_key, rerank_settings, running
from tests.integration.search_app import cranfield, search_settings
from tests.integration.state_db import POSTGRES_URL, fresh_database

pytestmark = pytest.mark.anyio


@contextmanager
def mounted(mount: Path, size: str = "48m") -> Iterator[Path]:
    """A small tmpfs at `mount` (a new folder), unmounted on exit."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted(tmp_path / "disk") as mount:
        yield mount


@pytest.fixture
def server_disk() -> Iterator[Path]:
    """A small disk the database server's user can reach (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="fathom-full-"))
    folder.chmod(0o755)
    try:
        with mounted(folder / "disk") as mount:
            yield mount
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    auth = bearer(new_key(settings, "admin"))
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
    auth = bearer(new_key(settings, "admin"))
    documents = cranfield(limit=3)
    body = {"documents": [{"id": d.id, "title": d.title, "text": d.text} for d in documents]}
    async with running(settings) as client:
        assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
        fill(small_disk)
        answer = await client.post("/v1/collections/site/documents", json=body, headers=auth)
        assert answer.status_code == 507, answer.text
        error = answer.json()["error"]
        assert error["type"] == "insufficient_storage", error
        assert "will be applied once space is freed" in error["message"], error
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

        # A delete the vector store has no room for is kept and finished the same way.
        fill(small_disk)
        deleted = await client.delete(f"/v1/collections/site/documents/{documents[0].id}", headers=auth)
        assert deleted.status_code == 507 and "will be applied once space is freed" in deleted.text, (
            deleted.text
        )
        (small_disk / "filler").unlink()
        assert await documents_after(client, auth, "site", 2, within=30)
        info = (await client.get("/v1/collections/site", headers=auth)).json()
        assert info["stores"]["journal"] == info["stores"]["lexical"] == info["stores"]["vector"], info


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
    admin = bearer(new_key(settings, "admin"))
    reader = bearer(new_key(settings, "reader", quota=4, rate_limit=600))
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


@contextmanager
def tablespace_on(folder: Path) -> Iterator[str]:
    """A tablespace of the test server in `folder`, dropped on exit; skips unless the server is local."""
    name = f"fathom_full_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        row = admin.execute("SHOW data_directory").fetchone()
        server_data = Path(str(row[0])) if row else Path()
        if not server_data.is_dir():
            pytest.skip("the PostgreSQL server is not on this machine: its disk cannot be filled here")
        owner = server_data.stat()
        os.chown(folder, owner.st_uid, owner.st_gid)
        admin.execute(f"CREATE TABLESPACE {name} LOCATION '{folder}'".encode())
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP TABLESPACE IF EXISTS {name}".encode())


def fill_table(url: str, table: str) -> psycopg.Connection[tuple[object, ...]]:
    """Update a row until PostgreSQL cannot extend the table. An open snapshot (returned: close it to
    let go) keeps it from reusing the page's dead row versions, as a long report query would."""
    reader = psycopg.connect(url)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    reader.execute(f"SELECT count(*) FROM {table}".encode())
    with psycopg.connect(url, autocommit=True) as writer:
        for _ in range(5000):
            try:
                writer.execute(f"UPDATE {table} SET rate_tat = rate_tat + 1 WHERE name = 'filler'".encode())
            except psycopg.errors.DiskFull:
                return reader
    reader.close()
    raise AssertionError(f"{table} never ran out of room")


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="FATHOM_TEST_POSTGRES_URL is not set")
async def test_with_the_state_database_full_reranks_answer_and_their_usage_is_written_later(
    tmp_path: Path, server_disk: Path
) -> None:
    small_disk = server_disk
    with tablespace_on(small_disk) as tablespace, fresh_database() as url:
        settings = msgspec.structs.replace(rerank_settings(tmp_path), state=StateSettings(url=url))
        reader = bearer(new_key(settings, "reader", quota=3, rate_limit=600))
        new_key(settings, "filler")
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f"ALTER TABLE api_keys SET TABLESPACE {tablespace}".encode())
        fill(small_disk)
        snapshot = fill_table(url, "api_keys")
        rerank = {"query": "boundary layer", "documents": ["a boundary layer", "a wing"]}
        async with running(settings) as client:
            for _ in range(3):
                answer = await client.post("/v1/rerank", json=rerank, headers=reader)
                assert answer.status_code == 200, answer.text
            over = await client.post("/v1/rerank", json=rerank, headers=reader)
            assert over.status_code == 402 and "0 of 3 left" in over.text, over.text
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, "fathom_key_usage_unwritten_units") == 3, metrics

            snapshot.close()
            (small_disk / "filler").unlink()
            await asyncio.sleep(1.1)  # past the pause between tries at writing held usage
            over = await client.post("/v1/rerank", json=rerank, headers=reader)
            assert over.status_code == 402, over.text  # now refused by the database's own count
            assert used(settings, "reader") == 3
