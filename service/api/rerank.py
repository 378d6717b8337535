"""POST /v1/rerank (aliases /v2/rerank, /rerank): the spec's contract plus what Cohere and Jina send."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, SkipValidation

from service.api.guard import require_api_key
from service.auth.billing import billed, rerank_search_units
from service.auth.keys import ApiKey, Keys
from service.auth.scopes import SEARCH
from service.disconnect import cancel_on_disconnect
from service.errors import ClientGone, InvalidRequest
from service.metrics import Metrics
from service.rerank.registry import ModelRegistry
from service.settings import RerankSettings, Settings

# A document is a string, or an object (Jina's {"text": ...}, Cohere v1's semi-structured documents)
# whose `rank_fields` are scored, joined; the object itself comes back as `document`.
Document = str | dict[str, Any]


class RerankRequest(msgspec.Struct, kw_only=True):
    """Unknown fields are accepted and ignored, as Cohere and Jina clients send fields of their own."""

    query: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            description="The query to rank the documents against; at most [rerank] max_query_chars"
            " characters (10000 by default).",
        ),
    ]
    documents: Annotated[
        list[Document],
        msgspec.Meta(
            min_length=1,
            description="Strings, or objects scored on their rank_fields; at most [rerank] max_documents"
            " (1000 by default) per request.",
        ),
    ]
    model: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1, description="A model id of GET /v1/models; default: the configured one."
            ),
        ]
        | None
    ) = None
    top_n: Annotated[int, msgspec.Meta(ge=1, description="Return only the best top_n results.")] | None = None
    return_documents: Annotated[
        bool, msgspec.Meta(description="Return each document with its result (as {text} for a string).")
    ] = False
    max_tokens_per_doc: (
        Annotated[int, msgspec.Meta(ge=1, description="Cut each document to this many tokens first.")] | None
    ) = None
    rank_fields: (
        Annotated[
            list[Annotated[str, msgspec.Meta(min_length=1)]],
            msgspec.Meta(
                min_length=1,
                description="For object documents: the fields scored, joined in this order (default: text).",
                # Litestar's schema leaves out the items' own constraint: stated again for the document.
                extra_json_schema={"extra": {"items": {"type": "string", "minLength": 1}}},
            ),
        ]
        | None
    ) = None

    max_chunks_per_doc: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                description="Cohere's: a document longer than the model's window is split into overlapping"
                " windows and scored by its best one, up to this many windows (default [rerank]"
                " chunks_per_doc, 10; at most [rerank] max_chunks_per_doc, 50). Each window is billed as a"
                " document. 1 cuts the document at the window instead.",
            ),
        ]
        | None
    ) = None


class RerankResult(msgspec.Struct, omit_defaults=True):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class Usage(msgspec.Struct):
    total_tokens: int


class BilledUnits(msgspec.Struct):
    search_units: int


class Tokens(msgspec.Struct):
    input_tokens: int


class Meta(msgspec.Struct):
    billed_units: BilledUnits
    tokens: Tokens
    # Documents longer than the model's window, scored by their best window.
    split_documents: int


class RerankResponse(msgspec.Struct):
    id: str
    model: str
    results: list[RerankResult]
    usage: Usage
    meta: Meta


def document_text(document: Document, number: int, rank_fields: list[str]) -> str:
    """What the model reads of a document: the string, or the object's rank fields joined in order."""
    if isinstance(document, str):
        return document
    values = [document[name] for name in rank_fields if name in document]
    if not values:
        named = ", ".join(repr(name) for name in rank_fields)
        raise InvalidRequest(
            f"documents[{number}] has none of the fields to rank on ({named}); send them, or name the"
            " fields to rank on in rank_fields"
        )
    for value in values:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidRequest(
                f"documents[{number}]: the fields to rank on must hold text, got {type(value).__name__}"
            )
    return "\n".join(str(value) for value in values)


def document_texts(request: RerankRequest) -> list[str]:
    rank_fields = request.rank_fields or ["text"]
    return [document_text(doc, number, rank_fields) for number, doc in enumerate(request.documents)]


def returned_document(document: Document) -> dict[str, Any]:
    """As Cohere returns it: the object as sent, a string as {"text": ...}."""
    return {"text": document} if isinstance(document, str) else document


def validate(request: RerankRequest, limits: RerankSettings) -> None:
    """The 400s the request's types cannot say; empty fields and bounds are refused as it is parsed."""
    if not request.query.strip():
        raise InvalidRequest("query must not be empty")
    if len(request.query) > limits.max_query_chars:
        raise InvalidRequest(
            f"query is {len(request.query)} characters long; the limit is {limits.max_query_chars}"
        )
    if len(request.documents) > limits.max_documents:
        raise InvalidRequest(
            f"too many documents: {len(request.documents)} sent, at most {limits.max_documents} per request;"
            " split them over several requests"
        )
    chunks = request.max_chunks_per_doc
    if chunks is not None and chunks > limits.max_chunks_per_doc:
        raise InvalidRequest(
            f"max_chunks_per_doc must be between 1 and {limits.max_chunks_per_doc}, got {chunks}"
        )


def ranked(
    scores: list[float], documents: list[Document], top_n: int | None, with_documents: bool
) -> list[RerankResult]:
    """Best first; equal scores keep the order the documents came in."""
    order = sorted(range(len(scores)), key=lambda index: (-scores[index], index))[:top_n]
    return [
        RerankResult(index, scores[index], returned_document(documents[index]) if with_documents else None)
        for index in order
    ]


@post(
    ["/v1/rerank", "/v2/rerank", "/rerank"],
    guards=[require_api_key],
    opt={"scope": SEARCH},
    status_code=200,
    summary="Rerank documents by relevance to a query",
    tags=["rerank"],
)
async def rerank(
    request: Request[Any, Any, Any],
    data: JSONBody[RerankRequest],
    *,
    settings: NamedDependency[Settings],
    models: NamedDependency[ModelRegistry],
    keys: NamedDependency[SkipValidation[Keys]],
    api_key: NamedDependency[ApiKey | None],
    metrics: NamedDependency[Metrics],
) -> RerankResponse:
    limits = settings.rerank
    validate(data, limits)
    deadline = time.monotonic() + limits.request_timeout
    engine = await models.engine(data.model)
    model_id = data.model or models.default_model
    texts = document_texts(data)
    chunks = data.max_chunks_per_doc or limits.chunks_per_doc
    encoded = await engine.encode(data.query, texts, data.max_tokens_per_doc, chunks)
    units = rerank_search_units(len(encoded.pairs))  # as Cohere: each window counts as a document
    async with billed(keys, api_key, units):
        work = engine.score(encoded, max_tokens=limits.max_request_tokens, deadline=deadline)
        try:
            scored = await cancel_on_disconnect(request, work)
        except ClientGone:
            metrics.reranks_cancelled.inc()
            raise
    return RerankResponse(
        id=str(uuid.uuid4()),
        model=model_id,
        results=ranked(scored.scores, data.documents, data.top_n, data.return_documents),
        usage=Usage(scored.tokens),
        meta=Meta(BilledUnits(units), Tokens(scored.tokens), split_documents=scored.split_documents),
    )
