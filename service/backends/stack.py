"""The configured search backends, opened together and closed together.

One place builds them from Settings, so the service and the indexer CLI run the very same stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from service.backends.embedder import FastembedEmbedder, TextEmbedder
from service.backends.qdrant import QdrantIndex
from service.search.protocols import LexicalStore
from service.settings import Settings


@dataclass(slots=True)
class SearchStack:
    lexical: LexicalStore
    vectors: QdrantIndex
    embedder: TextEmbedder


def qdrant_path(settings: Settings) -> Path:
    return Path(settings.qdrant.path) if settings.qdrant.path else settings.data_path / "qdrant"


def embedded_collections(settings: Settings) -> dict[Path, list[str]]:
    """The embedded stores' folders that hold collections, with the names found there.

    A store on a server (Elasticsearch, a Qdrant url) is not looked at: asking it needs it up.
    """
    folders: list[Path] = []
    if settings.search.lexical != "elasticsearch":
        folders.append(settings.data_path / "tantivy")
    if not settings.qdrant.url:
        # Qdrant's local mode keeps each collection in <path>/collection/<name>/.
        folders.append(qdrant_path(settings) / "collection")
    folders = [folder for folder in folders if folder.is_dir()]
    found = {folder: sorted(p.name for p in folder.iterdir() if p.is_dir()) for folder in folders}
    return {folder: names for folder, names in found.items() if names}


def open_lexical(settings: Settings) -> LexicalStore:
    """Elasticsearch when configured, else the embedded Tantivy index under data_dir."""
    if settings.search.lexical == "elasticsearch":
        from service.backends.elasticsearch import ElasticsearchIndex

        return ElasticsearchIndex(settings.elasticsearch)
    from service.backends.tantivy import TantivyIndex

    return TantivyIndex(settings.data_path / "tantivy")


@asynccontextmanager
async def open_stack(settings: Settings) -> AsyncIterator[SearchStack]:
    """Embedder (loaded off the event loop, or a remote service probed), lexical store and vector store;
    all closed on exit."""
    async with AsyncExitStack() as stack:
        embedder: TextEmbedder
        if settings.embedding.url:
            from service.backends.remote_embedder import RemoteEmbedder

            remote = await RemoteEmbedder.open(settings.embedding)
            stack.push_async_callback(remote.aclose)
            embedder = remote
        else:
            local = await asyncio.to_thread(
                FastembedEmbedder, settings.embedding, settings.data_path / "models"
            )
            stack.callback(local.close)
            embedder = local
        lexical = open_lexical(settings)
        stack.push_async_callback(lexical.close)
        vectors = QdrantIndex(
            settings.qdrant, dimensions=embedder.dimensions, local_path=qdrant_path(settings)
        )
        stack.push_async_callback(vectors.close)
        yield SearchStack(lexical=lexical, vectors=vectors, embedder=embedder)
