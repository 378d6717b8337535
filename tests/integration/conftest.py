"""Session-wide indexes of the evaluation collections, built once: embedding them is the slow part."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from service.settings import Settings
from tests.integration.search_app import beir_documents, index_documents, search_settings


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
