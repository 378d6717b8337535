"""QdrantIndex: the vector store on Qdrant, a server or local mode in a folder."""

from __future__ import annotations

import errno
import sqlite3
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import date, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from service.backends.qdrant_local import ThreadedLocalClient
from service.errors import (
    BackendTimeout,
    BackendUnavailable,
    FathomError,
    InvalidRequest,
    NotFound,
    StorageFull,
    StoreLocked,
)
from service.search.collections import checked_collection_name
from service.search.models import AnyOf, Chunk, Condition, Equals, Filter, Hit, Range, Scalar
from service.settings import QdrantSettings
from service.state.sqlite import is_full

# Qdrant takes only integers and UUIDs as point ids: chunk ids map to a UUID under this fixed namespace,
# so re-indexing a chunk overwrites its point. The chunk id itself travels in the payload.
CHUNK_ID_NAMESPACE = uuid.UUID("6f0d5a8e-3c1b-5e2a-9d47-0b8f1c2e7a35")

# Points per scroll request when reading every chunk's document id.
SCROLL_PAGE = 2048

# Statuses that mean the server gave up in time rather than refused.
TIMEOUT_STATUSES = frozenset({408, 504})


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, chunk_id))


class QdrantIndex:
    """The VectorStore protocol on Qdrant: one Qdrant collection per Fathom collection, cosine distance.

    With `settings.url` it talks to a server; otherwise it runs Qdrant's local mode in `local_path`.
    Local mode holds an exclusive file lock on that folder until `close()`: open one QdrantIndex per
    folder per process, and never two processes on one folder (use a server to share an index).
    Local mode searches by brute force, on a worker thread of its own (see qdrant_local.py).
    """

    def __init__(self, settings: QdrantSettings, *, dimensions: int, local_path: Path | None = None) -> None:
        self._prefix = settings.collection_prefix
        self._dimensions = dimensions
        self._server = bool(settings.url)
        self._shards = settings.shards
        self._replication_factor = settings.replication_factor
        self._client = open_client(settings, local_path)

    async def close(self) -> None:
        """Release the connection pool, or the local folder's lock."""
        await self._client.close()

    async def ensure_collection(self, collection: str) -> None:
        name = self._name(collection)
        async with self._translated():
            if await self._client.collection_exists(name):
                await self._check_dimensions(collection)
                return
            if not self._server:
                await self._client.create_collection(name, vectors_config=self._vector_params())
                return
            try:
                await self._client.create_collection(
                    name,
                    vectors_config=self._vector_params(),
                    shard_number=self._shards,
                    replication_factor=self._replication_factor,
                )
            except (UnexpectedResponse, grpc.RpcError) as exc:
                # Another process created it between our existence check and this call: fine.
                if not already_exists(exc):
                    raise
            # Deletion filters on doc_id; local mode scans anyway and warns that indexes do nothing.
            # Creating an index that exists is a no-op, so the losing side of a race may repeat it.
            await self._client.create_payload_index(name, "doc_id", models.PayloadSchemaType.KEYWORD)

    async def drop_collection(self, collection: str) -> None:
        """Idempotent: dropping a collection that does not exist is no error."""
        with suppress(NotFound):
            async with self._translated(collection):
                await self._client.delete_collection(self._name(collection))

    async def collection_exists(self, collection: str) -> bool:
        async with self._translated():
            return await self._client.collection_exists(self._name(collection))

    async def delete_documents(self, collection: str, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        selector = models.FilterSelector(
            filter=models.Filter(
                must=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(doc_ids)))]
            )
        )
        async with self._translated(collection):
            await self._client.delete(self._name(collection), points_selector=selector, wait=True)

    async def count_chunks(self, collection: str) -> int:
        async with self._translated(collection):
            result = await self._client.count(self._name(collection), exact=True)
        return result.count

    async def chunk_counts(self, collection: str) -> dict[str, int]:
        """Scrolls the doc_id payloads only, a page at a time."""
        counts: Counter[str] = Counter()
        offset: models.ExtendedPointId | None = None
        async with self._translated(collection):
            while True:
                points, offset = await self._client.scroll(
                    self._name(collection), limit=SCROLL_PAGE, offset=offset, with_payload=["doc_id"]
                )
                counts.update(str((point.payload or {}).get("doc_id")) for point in points)
                if offset is None:
                    return dict(counts)

    async def upsert(
        self, collection: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]
    ) -> None:
        if len(chunks) != len(vectors):
            raise InvalidRequest(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            return
        points = [to_point(chunk, vector) for chunk, vector in zip(chunks, vectors, strict=True)]
        async with self._translated(collection):
            await self._client.upsert(self._name(collection), points=points, wait=True)

    async def search(
        self, collection: str, vector: Sequence[float], *, limit: int, filter: Filter | None = None
    ) -> list[Hit]:
        """Nearest `limit` chunks by cosine similarity (the hit's score), filter applied before the limit."""
        query_filter = to_qdrant_filter(filter)
        async with self._translated(collection):
            response = await self._client.query_points(
                self._name(collection),
                query=[float(x) for x in vector],
                query_filter=query_filter,
                limit=limit,
                with_payload=True,
            )
        return [to_hit(point) for point in response.points]

    async def chunks(self, collection: str, chunk_ids: Sequence[str]) -> list[Chunk]:
        """The stored chunks of these ids (those that exist), in no particular order."""
        if not chunk_ids:
            return []
        async with self._translated(collection):
            points = await self._client.retrieve(
                self._name(collection), ids=[point_id(c) for c in chunk_ids], with_payload=True
            )
        return [to_chunk(point.payload or {}) for point in points]

    async def document_chunks(self, collection: str, doc_id: str) -> list[Chunk]:
        """Every stored chunk of one document, in position order; [] when the document is not there."""
        where = models.Filter(
            must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))]
        )
        found: list[Chunk] = []
        offset: models.ExtendedPointId | None = None
        async with self._translated(collection):
            while True:
                points, offset = await self._client.scroll(
                    self._name(collection), scroll_filter=where, limit=SCROLL_PAGE, offset=offset
                )
                found.extend(to_chunk(point.payload or {}) for point in points)
                if offset is None:
                    return sorted(found, key=lambda chunk: chunk.position)

    def _name(self, collection: str) -> str:
        # Qdrant checks no names itself: without this, any string would become a collection.
        return self._prefix + checked_collection_name(collection)

    def _vector_params(self) -> models.VectorParams:
        return models.VectorParams(size=self._dimensions, distance=models.Distance.COSINE)

    async def _check_dimensions(self, collection: str) -> None:
        """An existing collection built with another model would answer every query with noise."""
        info = await self._client.get_collection(self._name(collection))
        params = info.config.params.vectors
        size = params.size if isinstance(params, models.VectorParams) else None
        if size != self._dimensions:
            raise InvalidRequest(
                f'collection "{collection}" holds vectors of size {size}, '
                f"the embedding model makes {self._dimensions}: re-index it or drop it"
            )

    @asynccontextmanager
    async def _translated(self, collection: str | None = None) -> AsyncIterator[None]:
        """The one place Qdrant and httpx failures become Fathom errors."""
        try:
            yield
        except ValueError:
            # Local mode reports a missing collection as a bare ValueError; anything else is a bug.
            if collection is None or await self._client.collection_exists(self._name(collection)):
                raise
            raise missing(collection) from None
        except sqlite3.Error as exc:
            # Local mode keeps its points in SQLite: a full disk is SQLITE_FULL there, not ENOSPC.
            if not is_full(exc):
                raise
            raise no_room(collection) from exc
        except OSError as exc:
            raise (no_room(collection) if exc.errno == errno.ENOSPC else translate(exc, collection)) from exc
        except (UnexpectedResponse, ResponseHandlingException, httpx.HTTPError) as exc:
            raise translate(exc, collection) from exc
        except grpc.RpcError as exc:
            raise translate_grpc(exc, collection) from exc


def open_client(settings: QdrantSettings, local_path: Path | None) -> AsyncQdrantClient | ThreadedLocalClient:
    if settings.url:
        # The version check runs in a background thread whose only outcome is a warning; /readyz is
        # where an unreachable or mismatched server shows.
        return AsyncQdrantClient(
            url=settings.url,
            api_key=settings.api_key or None,
            prefer_grpc=settings.prefer_grpc,
            grpc_port=settings.grpc_port,
            check_compatibility=False,
        )
    if local_path is None:
        raise BackendUnavailable("qdrant has neither a url nor a local path")
    try:
        return ThreadedLocalClient(local_path)
    except RuntimeError as exc:  # the folder's lock is held by another client
        raise StoreLocked(f"qdrant local storage {local_path} is in use by another process: {exc}") from exc


def no_room(collection: str | None) -> StorageFull:
    """A full disk, in local mode or on the server; no path, as this goes to clients."""
    what = f'collection "{collection}"' if collection else "the vector store"
    return StorageFull(f"the server's disk is full: {what} cannot be written")


def out_of_space(message: str) -> bool:
    """Whether a Qdrant server's error is its disk being full: it answers that as an internal error
    (500, or gRPC INTERNAL) whose text carries the OS's ENOSPC message."""
    return "No space left on device" in message


def missing(collection: str) -> NotFound:
    return NotFound(f'collection "{collection}" does not exist')


def translate(
    exc: UnexpectedResponse | ResponseHandlingException | httpx.HTTPError | OSError, collection: str | None
) -> FathomError:
    if isinstance(exc, UnexpectedResponse):
        if exc.status_code == 404 and collection is not None:
            return missing(collection)
        if exc.status_code in TIMEOUT_STATUSES:
            return BackendTimeout(f"qdrant timed out ({exc.status_code})")
        if out_of_space(exc.content.decode("utf-8", "replace")):
            return no_room(collection)
        return BackendUnavailable(
            f"qdrant answered {exc.status_code} {exc.reason_phrase}: {exc.content[:200]!r}"
        )
    cause = exc.source if isinstance(exc, ResponseHandlingException) else exc
    if isinstance(cause, httpx.TimeoutException):
        return BackendTimeout(f"qdrant timed out: {cause!r}")
    return BackendUnavailable(f"qdrant is unreachable: {cause!r}")


def translate_grpc(exc: grpc.RpcError, collection: str | None) -> FathomError:
    """The gRPC transport's failures, as translate() does for HTTP."""
    code = grpc_code(exc)
    detail = exc.details() if code is not None else str(exc)
    if code == grpc.StatusCode.NOT_FOUND and collection is not None:
        return missing(collection)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout(f"qdrant timed out: {detail}")
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable(f"qdrant is unreachable: {detail}")
    if out_of_space(detail or ""):
        return no_room(collection)
    return BackendUnavailable(f"qdrant answered {code}: {(detail or '')[:200]}")


def already_exists(exc: UnexpectedResponse | grpc.RpcError) -> bool:
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code == 409
    return bool(grpc_code(exc) == grpc.StatusCode.ALREADY_EXISTS)


def grpc_code(exc: grpc.RpcError) -> Any:
    """The status of a failed call (the asyncio client's errors are not grpc.Call, but have its methods)."""
    code = getattr(exc, "code", None)
    return code() if callable(code) else None


def to_point(chunk: Chunk, vector: Sequence[float]) -> models.PointStruct:
    payload = {
        "chunk_id": chunk.id,
        "doc_id": chunk.doc_id,
        "position": chunk.position,
        "title": chunk.title,
        "text": chunk.text,
        "metadata": chunk.metadata,
        "start": chunk.start,
        "end": chunk.end,
    }
    return models.PointStruct(id=point_id(chunk.id), vector=[float(x) for x in vector], payload=payload)


def to_chunk(payload: dict[str, Any]) -> Chunk:
    """A stored chunk as it was written; offsets are None in points written before they were kept."""
    return Chunk(
        id=payload["chunk_id"],
        doc_id=payload["doc_id"],
        position=int(payload.get("position", 0)),
        title=payload.get("title", ""),
        text=payload.get("text", ""),
        metadata=payload.get("metadata") or {},
        start=payload.get("start"),
        end=payload.get("end"),
    )


def to_hit(point: models.ScoredPoint) -> Hit:
    payload = point.payload or {}
    return Hit(
        chunk_id=payload["chunk_id"],
        doc_id=payload["doc_id"],
        score=point.score,
        title=payload.get("title", ""),
        text=payload.get("text", ""),
        metadata=payload.get("metadata") or {},
    )


def to_qdrant_filter(filter: Filter | None) -> models.Filter | None:
    if filter is None or not filter.conditions:
        return None
    return models.Filter(must=[to_condition(condition) for condition in filter.conditions])


def to_condition(condition: Condition) -> models.Condition:
    key = f"metadata.{condition.field}"
    match condition:
        case Equals(value=value):
            return equals(key, value)
        case AnyOf(values=values):
            return any_of(key, values)
        case Range():
            return models.FieldCondition(key=key, range=to_range(condition))


def equals(key: str, value: Scalar) -> models.Condition:
    # Qdrant matches only strings, integers and booleans exactly; a float equality is a closed range.
    if isinstance(value, float):
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def any_of(key: str, values: Sequence[Scalar]) -> models.Condition:
    # MatchAny takes a list of strings or of integers only; other mixes become a disjunction.
    strings = [value for value in values if isinstance(value, str)]
    if len(strings) == len(values):
        return models.FieldCondition(key=key, match=models.MatchAny(any=strings))
    integers = [value for value in values if isinstance(value, int) and not isinstance(value, bool)]
    if len(integers) == len(values):
        return models.FieldCondition(key=key, match=models.MatchAny(any=integers))
    return models.Filter(should=[equals(key, value) for value in values])


def to_range(condition: Range) -> models.Range | models.DatetimeRange:
    bounds: dict[str, Any] = {
        name: getattr(condition, name)
        for name in ("gte", "gt", "lte", "lt")
        if getattr(condition, name) is not None
    }
    dated = [isinstance(bound, date | datetime) for bound in bounds.values()]
    if dated and all(dated):
        # Stored values must be ISO strings; a bound without a time zone is taken as UTC.
        return models.DatetimeRange(**bounds)
    if any(dated):
        raise InvalidRequest(f'range on "{condition.field}" mixes dates and numbers')
    return models.Range(**bounds)
