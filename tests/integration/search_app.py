"""Real search stacks for tests: Cranfield documents indexed into the configured stores."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from indexers.run import index_records
from indexers.sources import beir_corpus, read_jsonl
from service.ingest.documents import Document
from service.ingest.writer import IngestReport
from service.runtime import open_writer
from service.settings import Settings, settings_from_dict
from tests.conftest import DATA, offline_models

ELASTICSEARCH_URL = os.environ.get("FATHOM_TEST_ELASTICSEARCH_URL", "")
QDRANT_URL = os.environ.get("FATHOM_TEST_QDRANT_URL", "")
needs_qdrant_server = [
    pytest.mark.qdrant_server,
    pytest.mark.skipif(not QDRANT_URL, reason="FATHOM_TEST_QDRANT_URL is not set"),
]
# Parametrise over these to run a test on both lexical backends; Elasticsearch only where a server is.
needs_elasticsearch = [
    pytest.mark.elasticsearch,
    pytest.mark.skipif(not ELASTICSEARCH_URL, reason="FATHOM_TEST_ELASTICSEARCH_URL is not set"),
]
LEXICAL_BACKENDS = ["tantivy", pytest.param("elasticsearch", marks=needs_elasticsearch)]


def qdrant_server(url: str = "", *, grpc: bool = True, **cluster: int) -> dict[str, Any]:
    """[qdrant] settings for a server (default: the test server), its gRPC port next to the HTTP one.

    The collection prefix is unique to the process and call, so tests sharing one server never meet.
    """
    url = url or QDRANT_URL
    return {
        "url": url,
        "prefer_grpc": grpc,
        "grpc_port": int(url.rsplit(":", 1)[1]) + 1,
        "collection_prefix": f"t{os.getpid()}-{next(_prefixes)}-",
        **cluster,
    }


_prefixes = itertools.count()


def search_settings(
    data_dir: Path,
    lexical: str = "tantivy",
    elasticsearch_url: str = "",
    qdrant: dict[str, Any] | None = None,
    **search: Any,
) -> Settings:
    """The embedded default (or Elasticsearch, or a Qdrant server) on the offline models.

    Reranks with the tiny model.
    """
    return settings_from_dict(
        {
            "data_dir": str(data_dir),
            **offline_models(),
            "elasticsearch": {
                "url": elasticsearch_url or ELASTICSEARCH_URL or "http://127.0.0.1:9200",
                "index_prefix": f"t{os.getpid()}-",
            },
            "qdrant": qdrant or {},
            "search": {"lexical": lexical, **search},
        }
    )


def cranfield(limit: int | None = None) -> list[Document]:
    """Cranfield documents, each with metadata to filter on: a year and a parity tag."""
    documents = []
    with (DATA / "cranfield" / "corpus.jsonl").open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if limit is not None and number >= limit:
                break
            raw = json.loads(line)
            metadata = {"year": 1950 + number % 20, "kind": "even" if number % 2 == 0 else "odd"}
            documents.append(Document(raw["_id"], raw.get("title", ""), raw["text"], metadata))
    return documents


def beir_documents(name: str) -> list[Document]:
    """A whole collection from ../shared/data as the indexer reads it."""
    records = list(read_jsonl(beir_corpus(DATA / name)))
    documents = [r for r in records if isinstance(r, Document)]
    assert len(documents) == len(records)
    return documents


async def index_documents(settings: Settings, collection: str, documents: list[Document]) -> IngestReport:
    async with open_writer(settings) as writer:
        return await index_records(writer, collection, documents)
