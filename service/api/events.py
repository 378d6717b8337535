"""POST /v1/events: a visitor's click on a hit, as the widget reports it; and the search event that
POST /v1/search records (`record_search`). Both only append to the recorder's buffer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sized
from typing import Annotated, Any, Literal, Protocol

import msgspec
from litestar import Request, post
from litestar.connection import ASGIConnection
from litestar.params import JSONBody

from service.analytics.events import ClickEvent, SearchEvent, normalised
from service.analytics.recorder import ANALYTICS, Recorder
from service.api.fields import SEARCH_ID, text
from service.api.guard import require_api_key
from service.auth.client_address import client_address
from service.auth.keys import ApiKey
from service.auth.scopes import SEARCH
from service.errors import InvalidRequest

# A click is a few short fields: anything bigger is not one (413 before it is read).
MAX_EVENT_BYTES = 2048
MAX_POSITION = 10_000


class EventRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Annotated[Literal["click"], msgspec.Meta(description='The kind of event: "click".')]
    search_id: Annotated[
        str,
        msgspec.Meta(pattern=SEARCH_ID, description="The `id` of the search response the hit came from."),
    ]
    hit_id: Annotated[str, text("The `id` of the hit chosen.", max_length=512)]
    position: Annotated[
        int,
        msgspec.Meta(ge=1, le=MAX_POSITION, description="The hit's place in the results, 1 for the first."),
    ]


class EventAccepted(msgspec.Struct):
    # False when analytics are off or the buffer was full: the event was not kept (nothing to retry).
    recorded: bool


class AskedSearch(Protocol):
    """What an analytics event reads of a search request (service/api/search.py's SearchRequest)."""

    @property
    def query(self) -> str: ...
    @property
    def collection(self) -> str: ...
    @property
    def filter(self) -> dict[str, Any] | None: ...
    @property
    def facets(self) -> list[str] | None: ...
    @property
    def typo_tolerance(self) -> bool | None: ...
    @property
    def prefix(self) -> bool: ...
    @property
    def cursor(self) -> str | None: ...


class AnsweredSearch(Protocol):
    """What it reads of the answer (SearchResponse)."""

    @property
    def id(self) -> str: ...
    @property
    def hits(self) -> Sized: ...
    @property
    def timings(self) -> dict[str, float]: ...
    @property
    def degraded(self) -> Sized: ...


def recorder_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Recorder | None:
    recorder: Recorder | None = connection.app.state.get(ANALYTICS)
    return recorder


def visitor_of(recorder: Recorder, connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    peer = connection.client.host if connection.client else None
    address = client_address(peer, connection.headers.get("x-forwarded-for"), recorder.proxies)
    return recorder.visitor(address, connection.headers.get("user-agent", ""))


def checked_search_id(text_id: str) -> str:
    try:
        return str(uuid.UUID(text_id))
    except ValueError:
        raise InvalidRequest(
            f"search_id {text_id!r} is not a search's id: send the `id` of the POST /v1/search response"
        ) from None


@post(
    "/v1/events",
    guards=[require_api_key],
    # The widget sends clicks with the public key it searches with.
    opt={"scope": SEARCH, "public": True},
    status_code=202,
    request_max_body_size=MAX_EVENT_BYTES,
    summary="Record a click on a search hit",
    tags=["analytics"],
)
async def record_event(request: Request[Any, Any, Any], data: JSONBody[EventRequest]) -> EventAccepted:
    search_id = checked_search_id(data.search_id)
    recorder = recorder_of(request)
    if recorder is None:
        return EventAccepted(recorded=False)
    event = ClickEvent(search_id, time.time(), data.hit_id, data.position, visitor_of(recorder, request))
    return EventAccepted(recorded=recorder.record_click(event))


def record_search(
    request: Request[Any, Any, Any],
    data: AskedSearch,
    api_key: ApiKey | None,
    response: AnsweredSearch,
    typo_default: bool,
) -> None:
    """Buffer the analytics event of an answered search; never raises into the search, never waits."""
    recorder = recorder_of(request)
    if recorder is None or not recorder.enabled:
        return
    recorder.record_search(
        SearchEvent(
            search_id=response.id,
            at=time.time(),
            collection=data.collection,
            query=normalised(data.query),
            key_name=api_key.name if api_key else None,
            public=bool(api_key and api_key.public),
            filters=",".join(sorted(data.filter or {})),
            facets=",".join(data.facets or ()),
            hits=len(response.hits),
            typo=typo_default if data.typo_tolerance is None else data.typo_tolerance,
            prefix=data.prefix,
            follow=data.cursor is not None,
            latency_ms=response.timings.get("total", 0.0),
            degraded=bool(response.degraded),
            visitor=visitor_of(recorder, request),
        )
    )
