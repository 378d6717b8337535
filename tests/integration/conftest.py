"""Session-wide indexes of the evaluation collections, built once (embedding them is the slow part), and
the collections API on each lexical backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from service.settings import Settings
from tests.conftest import bearer
from tests.integration.ingest_app import Api
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import LEXICAL_BACKENDS, beir_documents, index_documents, search_settings


def _indexed(tmp_path_factory: pytest.TempPathFactory, name: str) -> Settings:
    settings = search_settings(tmp_path_factory.mktemp(f"indexed-{name}"), "tantivy")
    documents = beir_documents(name)
    report = anyio.run(index_documents, settings, name, documents)
    assert report.added == len(documents) and report.failed == 0
    return settings


@pytest.fixture(scope="session")
def indexed_cranfield(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of an embedded stack (Tantivy + Qdrant local) holding all of Cranfield as `cranfield`."""
    yield _indexed(tmp_path_factory, "cranfield")


@pytest.fixture(scope="session")
def indexed_cacm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of an embedded stack holding all of CACM as `cacm`."""
    yield _indexed(tmp_path_factory, "cacm")


@pytest.fixture(params=LEXICAL_BACKENDS)
async def collections_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The app on each lexical backend; the collection `site` is deleted afterwards."""
    settings = search_settings(tmp_path, str(request.param))
    headers = bearer(new_key(settings, "pusher"))
    async with running(settings) as client:
        yield client, headers
        await client.delete("/v1/collections/site", headers=headers)  # nothing left on a shared server
