"""GET /v1/analytics: what a collection's visitors searched for, found nothing for, and clicked."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import Parameter

from service.analytics.report import MAX_DAYS, Report
from service.api.events import recorder_of
from service.api.guard import require_api_key
from service.auth.access import check_collection
from service.auth.keys import ApiKey
from service.auth.scopes import ADMIN
from service.errors import BackendUnavailable
from service.search.collections import COLLECTION_NAME_PATTERN, COLLECTION_NAME_RULE, checked_collection_name


@get(
    "/v1/analytics",
    guards=[require_api_key],
    opt={"scope": ADMIN},
    summary="Search analytics of a collection",
    tags=["analytics"],
)
async def analytics(
    request: Request[Any, Any, Any],
    collection: Annotated[
        str,
        Parameter(
            min_length=1,
            pattern=COLLECTION_NAME_PATTERN,
            description=f"The collection to report on: {COLLECTION_NAME_RULE}.",
        ),
    ],
    days: Annotated[int, Parameter(ge=1, le=MAX_DAYS, description="The period: the last N days.")] = 30,
    *,
    api_key: NamedDependency[ApiKey | None],
) -> Report:
    name = checked_collection_name(collection)
    check_collection(api_key, name)
    recorder = recorder_of(request)
    if recorder is None:
        raise BackendUnavailable("analytics are not available on this server")
    return await recorder.report(name, days)
