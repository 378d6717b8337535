"""POST /v1/context: the best passages for a query within a token budget, each with its citation.

The work is the search service's (service/search_service.py), which the MCP `search` tool shares;
this module is its HTTP shape: the request body, billing, and stopping when the client hangs up.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, SkipValidation

from service.api.fields import collection, text
from service.api.guard import require_api_key
from service.api.search import described
from service.auth.access import check_collection
from service.auth.billing import billed
from service.auth.keys import ApiKey, Keys
from service.auth.scopes import SEARCH
from service.disconnect import cancel_on_disconnect
from service.errors import ClientGone
from service.metrics import Metrics
from service.search.answers import ContextResponse
from service.search_service import SEARCH_UNITS_PER_CONTEXT, ContextQuery, SearchService


class ContextRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, text("What to find passages for.")]
    collection: Annotated[str, collection("The collection to search.")]
    # The search service checks both ends, its 400 naming the configured maximum; the schema states
    # the minimum.
    max_tokens: (
        Annotated[
            int,
            msgspec.Meta(
                description="Tokens the passages may fill: 1 to [context] max_tokens.",
                extra_json_schema={"extra": {"minimum": 1}},
            ),
        ]
        | None
    ) = None
    filter: dict[str, Any] | None = None
    min_score: (
        Annotated[float, described("Drop passages whose rerank score is below this.", ge=0, le=1)] | None
    ) = None
    tokenizer: str | None = None

    def query_of(self) -> ContextQuery:
        return ContextQuery(
            query=self.query,
            collection=self.collection,
            max_tokens=self.max_tokens,
            filter=self.filter,
            min_score=self.min_score,
            tokenizer=self.tokenizer,
        )


@post(
    "/v1/context",
    guards=[require_api_key],
    opt={"scope": SEARCH},
    status_code=200,
    summary="Passages for a prompt, within a token budget",
    tags=["search"],
)
async def context(
    request: Request[Any, Any, Any],
    data: JSONBody[ContextRequest],
    *,
    search_service: NamedDependency[SearchService],
    keys: NamedDependency[SkipValidation[Keys]],
    metrics: NamedDependency[Metrics],
    api_key: NamedDependency[ApiKey | None],
) -> ContextResponse:
    check_collection(api_key, data.collection)
    async with billed(keys, api_key, SEARCH_UNITS_PER_CONTEXT):
        try:
            # As /v1/search: the work stops when the client hangs up.
            response = await cancel_on_disconnect(request, search_service.context(data.query_of()))
        except ClientGone:
            metrics.searches_cancelled.inc()
            raise
    for degraded in response.degraded:
        metrics.degraded.labels(degraded.stage).inc()
    return response
