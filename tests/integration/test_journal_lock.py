"""The ingest journal waits off the event loop: while another process holds the
journal's write lock, an upsert waits for it and /healthz still answers at once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from service.ingest.journal_sqlite import journal_path
from tests.conftest import bearer
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio
HELD_SECONDS = 3.0


async def test_healthz_answers_while_another_process_holds_the_journal_lock(tmp_path: Path) -> None:
    settings = search_settings(tmp_path)
    auth = bearer(new_key(settings, "writer"))
    documents = [{"id": d.id, "title": d.title, "text": d.text} for d in cranfield(limit=3)]
    async with running(settings) as client:
        assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
        # Another process's exclusive transaction: every write to the journal waits for it.
        holder = sqlite3.connect(journal_path(settings.data_path), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            upsert = asyncio.create_task(
                client.post("/v1/collections/site/documents", json={"documents": documents}, headers=auth)
            )
            await asyncio.sleep(0.5)  # the upsert is now waiting on the lock
            assert not upsert.done()
            started = time.perf_counter()
            health = await client.get("/healthz")
            waited = time.perf_counter() - started
            assert health.status_code == 200
            assert waited < 1.0, f"/healthz took {waited:.2f} s while the journal was locked"
            await asyncio.sleep(HELD_SECONDS - 0.5 - waited)
            assert not upsert.done()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        written = await upsert
        assert written.status_code == 200, written.text
        assert (await client.get("/v1/collections/site", headers=auth)).json()["documents"] == 3
