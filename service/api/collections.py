"""Collections over HTTP, for sites that push their changes: the same write path and journal as the CLI."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any

import msgspec
from litestar import Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, SkipValidation

from service.api.fields import CollectionPath, text
from service.api.guard import require_api_key
from service.auth.billing import billed, rerank_search_units
from service.auth.keys import ApiKey, Keys
from service.auth.scopes import ADMIN, WRITE
from service.errors import InvalidRequest, NotFound
from service.ingest.documents import Document
from service.ingest.drift import stored_counts
from service.ingest.metadata import metadata_problem
from service.ingest.writer import IngestWriter
from service.search_service import SearchService

MAX_DOCUMENTS_PER_REQUEST = 1000
# Documents per write through the journal, as the CLI's batches: bounds what one failure redoes.
WRITE_BATCH = 64
# Duplicated ids a 400 names before it says "and N more": enough to find them, short enough to read.
MAX_NAMED_IDS = 10


class DocumentIn(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, text("The document's id: sending it again replaces the document.")]
    text: str = ""
    title: str = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class UpsertRequest(msgspec.Struct, forbid_unknown_fields=True):
    documents: Annotated[
        list[DocumentIn],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_DOCUMENTS_PER_REQUEST,
            description=f"1 to {MAX_DOCUMENTS_PER_REQUEST} documents, each id once.",
        ),
    ]


class UpsertResponse(msgspec.Struct):
    collection: str
    added: int
    updated: int
    unchanged: int
    failed: int
    errors: list[str]


class StoreCounts(msgspec.Struct):
    documents: int
    chunks: int


class CollectionInfo(msgspec.Struct):
    name: str
    documents: int
    pending: int
    stores: dict[str, StoreCounts]
    embedder: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(
            description="The fingerprint of the embedder that wrote its vectors (null: made by a release"
            " that kept none; recorded on its next write)"
        ),
    ] = None


class CollectionSummary(msgspec.Struct):
    name: str
    documents: int


class CollectionList(msgspec.Struct):
    collections: list[CollectionSummary]


class CollectionCreated(msgspec.Struct):
    name: str
    created: bool


class CollectionDeleted(msgspec.Struct):
    name: str
    deleted: bool


class DocumentDeleted(msgspec.Struct):
    collection: str
    id: str
    deleted: bool


def to_documents(body: UpsertRequest) -> list[Document]:
    if not body.documents:
        raise InvalidRequest("documents: send at least one document")
    if len(body.documents) > MAX_DOCUMENTS_PER_REQUEST:
        raise InvalidRequest(f"documents: at most {MAX_DOCUMENTS_PER_REQUEST} per request")
    for number, document in enumerate(body.documents):
        if not document.id.strip():
            raise InvalidRequest(f"documents[{number}].id must not be empty")
        # Before anything is journalled: a value a store refuses later would be redone forever.
        problem = metadata_problem(document.metadata)
        if problem is not None:
            raise InvalidRequest(f"documents[{number}].{problem}")
    check_unique_ids(body.documents)
    return [Document(d.id, d.title, d.text, d.metadata) for d in body.documents]


def check_unique_ids(documents: list[DocumentIn]) -> None:
    """InvalidRequest naming ids sent more than once: which copy should win is the client's to say, and
    writing the last one silently would hide the client's bug."""
    repeated = [doc_id for doc_id, count in Counter(d.id for d in documents).items() if count > 1]
    if repeated:
        named = ", ".join(repr(doc_id) for doc_id in repeated[:MAX_NAMED_IDS])
        more = f" and {len(repeated) - MAX_NAMED_IDS} more" if len(repeated) > MAX_NAMED_IDS else ""
        raise InvalidRequest(
            f"documents: each id may appear once per request; sent more than once: {named}{more};"
            " nothing was written"
        )


def recorded_embedder(stored: str | None) -> dict[str, Any] | None:
    """The journal's fingerprint as an object; one this release cannot read is shown as its raw text
    (searches of the collection say why it is refused)."""
    if stored is None:
        return None
    try:
        value = json.loads(stored)
    except ValueError:
        return {"unreadable": stored}
    return value if isinstance(value, dict) else {"unreadable": stored}


@get(
    "/v1/collections",
    guards=[require_api_key],
    opt={"scope": WRITE},
    summary="List collections",
    tags=["collections"],
)
async def list_collections(
    search_service: NamedDependency[SearchService], api_key: NamedDependency[ApiKey | None]
) -> CollectionList:
    """The collections this key may reach."""
    reached = search_service.collections(api_key, "collections are")
    return CollectionList([CollectionSummary(name, search_service.document_count(name)) for name in reached])


@get(
    "/v1/collections/{name:str}",
    guards=[require_api_key],
    opt={"scope": WRITE},
    summary="Collection counts",
    tags=["collections"],
)
async def get_collection(writer: NamedDependency[IngestWriter], name: CollectionPath) -> CollectionInfo:
    """Documents and chunks in the journal and in each store: a quick look for drift."""
    await writer.require(name)
    counts = await stored_counts(writer, name)
    embedder = await writer.stored_embedder(name)
    return CollectionInfo(
        name=name,
        documents=len(counts.journal),
        pending=len(counts.pending),
        stores={
            store: StoreCounts(len(per_document), sum(per_document.values()))
            for store, per_document in counts.stores().items()
        },
        embedder=recorded_embedder(embedder),
    )


@put(
    "/v1/collections/{name:str}",
    guards=[require_api_key],
    opt={"scope": ADMIN},
    status_code=201,
    responses={
        200: ResponseSpec(CollectionCreated, description="It already existed", generate_examples=False)
    },
    summary="Create a collection",
    tags=["collections"],
)
async def put_collection(
    writer: NamedDependency[IngestWriter], name: CollectionPath
) -> Response[CollectionCreated]:
    """201 when created, 200 when it already existed."""
    created = await writer.create_collection(name)
    return Response(CollectionCreated(name, created), status_code=201 if created else 200)


@delete(
    "/v1/collections/{name:str}",
    guards=[require_api_key],
    opt={"scope": ADMIN},
    status_code=200,
    summary="Delete a collection",
    tags=["collections"],
)
async def delete_collection(writer: NamedDependency[IngestWriter], name: CollectionPath) -> CollectionDeleted:
    await writer.drop_collection(name)
    return CollectionDeleted(name, deleted=True)


@post(
    "/v1/collections/{name:str}/documents",
    guards=[require_api_key],
    opt={"scope": WRITE},
    status_code=200,
    summary="Add or replace documents",
    tags=["collections"],
)
async def upsert_documents(
    name: CollectionPath,
    data: JSONBody[UpsertRequest],
    *,
    writer: NamedDependency[IngestWriter],
    keys: NamedDependency[SkipValidation[Keys]],
    api_key: NamedDependency[ApiKey | None],
) -> UpsertResponse:
    """Unchanged documents are skipped; a changed one's chunks are all replaced.

    Billed like a rerank of as many documents. Each batch checks that the collection is still the one
    this request began on: a DELETE in between ends the upsert with 404 rather than re-creating it.
    """
    generation = await writer.require(name)
    documents = to_documents(data)
    async with billed(keys, api_key, rerank_search_units(len(documents))):
        # An interrupted change in this collection is finished before new ones, as the CLI does.
        report = await writer.recover(name)
        for start in range(0, len(documents), WRITE_BATCH):
            batch = documents[start : start + WRITE_BATCH]
            report.add(await writer.upsert(name, batch, generation=generation))
    return UpsertResponse(
        name, report.added, report.updated, report.unchanged, report.failed, report.problems
    )


@delete(
    "/v1/collections/{name:str}/documents/{doc_id:path}",
    guards=[require_api_key],
    opt={"scope": WRITE},
    status_code=200,
    summary="Delete a document",
    tags=["collections"],
)
async def delete_document(
    name: CollectionPath,
    doc_id: FromPath[str],
    *,
    writer: NamedDependency[IngestWriter],
    keys: NamedDependency[SkipValidation[Keys]],
    api_key: NamedDependency[ApiKey | None],
) -> DocumentDeleted:
    await writer.require(name)
    doc_id = doc_id.removeprefix("/")  # a path parameter keeps its leading slash; ids may hold slashes
    async with billed(keys, api_key, 1):
        if await writer.delete(name, [doc_id]) == 0:
            raise NotFound(f'collection "{name}" has no document {doc_id!r}')
    return DocumentDeleted(name, doc_id, deleted=True)
