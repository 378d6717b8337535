"""The indexer's progress moves per document, not per batch: a bar that sits at 0% looks like a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexers.run import index_records
from service.runtime import open_writer
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio


async def test_progress_is_told_per_document_within_a_batch(tmp_path: Path) -> None:
    settings = search_settings(tmp_path)
    documents = cranfield(limit=12)
    first: list[int] = []
    again: list[int] = []
    async with open_writer(settings) as writer:
        report = await index_records(writer, "cran", documents, batch_size=100, on_progress=first.append)
        await index_records(writer, "cran", documents, batch_size=100, on_progress=again.append)
    assert report.added == 12
    # One batch, yet a tick per document as its last chunk is embedded (and a closing 0 top-up).
    assert sum(first) == 12 and first.count(1) == 12, first
    # Unchanged documents are told at once.
    assert sum(again) == 12 and again[0] == 12, again
