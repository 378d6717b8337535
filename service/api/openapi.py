"""The OpenAPI document as the server answers: every error status a route can answer, with the one
ErrorResponse body; the Bearer scheme on keyed routes; Swagger UI served from a package, not a CDN.

Statuses come from errors.STATUS: a route names the error classes it raises (RAISES below), and each
class documents its own status and those of its subclasses, so a subclass given a new status in that
table is documented wherever its base is. What every route shares is added here, not listed per route:
the key guard's errors on keyed routes, 400 and 413 where there is a body, 500 everywhere.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from copy import copy
from importlib import metadata, resources
from pathlib import Path

import msgspec
from litestar import Litestar, MediaType, Response, route
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.router import Router
from litestar.static_files import create_static_files_router

from service import errors
from service.api import (
    analytics,
    analytics_page,
    collections,
    context,
    embeddings,
    events,
    health,
    models,
    rerank,
    search,
    web,
)
from service.api.errors import STATUS, ErrorResponse

BEARER = "BearerAuth"
SCHEMA_PATH = "/schema"
ASSETS_PATH = "/schema/assets"

# What the key guard answers on every route it guards: no or bad key, over the key's rate limit, a
# scope or collection the key lacks, and the key store unavailable (busy, damaged, disk full).
KEY_GUARD_RAISES: tuple[type[errors.FathomError], ...] = (
    errors.Unauthorized,
    errors.RateLimited,
    errors.Forbidden,
    errors.BackendUnavailable,
)

# What each route raises itself, beyond its guard. An app built with a route missing here fails at once.
RAISES: dict[HTTPRouteHandler, tuple[type[errors.FathomError], ...]] = {
    rerank.rerank: (
        errors.InvalidRequest,
        errors.QuotaExceeded,
        errors.ModelUnavailable,
        errors.Overloaded,
        errors.BackendTimeout,
        errors.ClientGone,
    ),
    search.search: (
        errors.InvalidRequest,
        errors.NotFound,
        errors.Conflict,
        errors.QuotaExceeded,
        errors.BackendUnavailable,
        errors.ModelUnavailable,
        errors.Overloaded,
    ),
    embeddings.embeddings: (errors.InvalidRequest, errors.QuotaExceeded, errors.BackendUnavailable),
    context.context: (
        errors.InvalidRequest,
        errors.NotFound,
        errors.Conflict,
        errors.QuotaExceeded,
        errors.BackendUnavailable,
        errors.ModelUnavailable,
        errors.Overloaded,
        errors.ClientGone,
    ),
    collections.list_collections: (errors.BackendUnavailable,),
    collections.get_collection: (errors.InvalidRequest, errors.NotFound, errors.BackendUnavailable),
    collections.put_collection: (errors.InvalidRequest, errors.BackendUnavailable),
    collections.delete_collection: (errors.InvalidRequest, errors.NotFound, errors.BackendUnavailable),
    collections.upsert_documents: (
        errors.InvalidRequest,
        errors.NotFound,
        errors.Conflict,
        errors.QuotaExceeded,
        errors.BackendUnavailable,
    ),
    collections.delete_document: (
        errors.InvalidRequest,
        errors.NotFound,
        errors.QuotaExceeded,
        errors.BackendUnavailable,
    ),
    models.list_models: (),
    health.healthz: (),
    health.readyz: (),
    health.metrics: (),
    web.search_page: (),
    web.page_js: (),
    web.page_css: (),
    web.widget_js: (),
    web.widget_css: (),
    events.record_event: (errors.InvalidRequest,),
    analytics.analytics: (errors.InvalidRequest, errors.BackendUnavailable),
    analytics_page.analytics_page: (),
    analytics_page.analytics_js: (),
    analytics_page.analytics_css: (),
}

# Statuses answered outside the error table: an over-long body, a body that is not JSON, anything unexpected.
PAYLOAD_TOO_LARGE = 413
UNSUPPORTED_MEDIA_TYPE = 415
INTERNAL_ERROR = 500

DESCRIPTIONS = {
    400: "Invalid request: the message names the field and what to fix",
    401: "Missing, wrong or revoked API key",
    402: "The key's quota of search units is used up",
    403: "The key lacks the scope or the collection this request needs",
    404: "Unknown collection or document",
    409: "The collection was indexed with another embedder than the configured one: the message names both",
    413: "The request body is larger than the server's limit ([server] max_body_bytes)",
    415: "The body is not sent as JSON: send Content-Type: application/json",
    429: "Over the key's rate limit; see Retry-After",
    499: "The client hung up before the answer: its queued work was dropped (logged, never read)",
    500: "Something unexpected; the operator's log has the details",
    503: "A model, the rerank queue or a search backend is not available; see Retry-After",
    507: "The server's disk is full: nothing can be written until space is freed; see Retry-After",
}


def statuses_of(raises: Sequence[type[errors.FathomError]]) -> set[int]:
    """The statuses of these classes and of their subclasses in the error table."""
    return {status for cls, (status, _) in STATUS.items() if issubclass(cls, tuple(raises))}


def keyed(handler: HTTPRouteHandler, metrics_keyed: bool) -> bool:
    """Whether the route asks for a key: /metrics only when [auth] metrics_admin_only is set."""
    if handler is health.metrics:
        return metrics_keyed
    return bool(handler.guards)


def error_statuses(handler: HTTPRouteHandler, metrics_keyed: bool = False) -> set[int]:
    raises = list(RAISES[handler])
    if keyed(handler, metrics_keyed):
        raises.extend(KEY_GUARD_RAISES)
    found = statuses_of(raises) | {INTERNAL_ERROR}
    if "data" in handler.parsed_fn_signature.parameters:
        found |= {400, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE}
    return found


def document(handler: HTTPRouteHandler, metrics_keyed: bool = False) -> HTTPRouteHandler:
    """A copy of the handler with its error answers and, when keyed, the Bearer scheme in the schema.

    A copy: the handlers are module-level, and apps built with other settings must not share answers.
    """
    if handler not in RAISES:
        raise LookupError(f"{handler.handler_name}: add the errors it raises to RAISES in {__name__}")
    statuses = error_statuses(handler, metrics_keyed)
    needs_key = keyed(handler, metrics_keyed)
    handler = copy(handler)
    responses = dict(handler.responses or {})
    for status in sorted(statuses):
        responses.setdefault(
            status,
            ResponseSpec(
                ErrorResponse, description=DESCRIPTIONS.get(status, "Error"), generate_examples=False
            ),
        )
    handler.responses = responses
    if needs_key:
        handler.security = [{BEARER: []}]
    return handler


def documented(
    handlers: Sequence[HTTPRouteHandler], metrics_keyed: bool = False
) -> list[HTTPRouteHandler | Router]:
    """The app's routes, each documented, with a true OPTIONS where a path has several handlers, and
    Swagger UI's files. `metrics_keyed`: /metrics asks for a key ([auth] metrics_admin_only)."""
    documents = [document(handler, metrics_keyed) for handler in handlers]
    return [*options_handlers(handlers), *documents, assets_router()]


def strict_structs(handlers: Sequence[HTTPRouteHandler]) -> set[str]:
    """Names of the request body structs (and those nested in them) that refuse unknown fields."""
    found: set[str] = set()
    for handler in handlers:
        data = handler.parsed_fn_signature.parameters.get("data")
        if data is not None:
            for info in struct_types(msgspec.inspect.type_info(data.annotation)):
                if info.forbid_unknown_fields:
                    found.add(info.cls.__name__)
    return found


def struct_types(info: msgspec.inspect.Type) -> list[msgspec.inspect.StructType]:
    """Every struct type within `info`: its fields', its items', its union's arms'."""
    if isinstance(info, msgspec.inspect.StructType):
        nested = [struct for field in info.fields for struct in struct_types(field.type)]
        return [info, *nested]
    if isinstance(info, msgspec.inspect.Metadata | msgspec.inspect.ListType):
        return struct_types(info.type if isinstance(info, msgspec.inspect.Metadata) else info.item_type)
    if isinstance(info, msgspec.inspect.UnionType):
        return [struct for arm in info.types for struct in struct_types(arm)]
    return []


def close_strict_objects(app: Litestar, handlers: Sequence[HTTPRouteHandler]) -> None:
    """additionalProperties: false on the schemas of structs that refuse unknown fields.

    Litestar leaves it out, so the schema allowed fields the server answers 400 for; read from the
    structs' own forbid_unknown_fields, not listed again.
    """
    schemas = (app.openapi_schema.components.schemas or {}) if app.openapi_schema.components else {}
    for name in strict_structs(handlers):
        if name in schemas:
            schemas[name].additional_properties = False


def options_handlers(handlers: Sequence[HTTPRouteHandler]) -> list[HTTPRouteHandler]:
    """OPTIONS answering every method of a path served by several handlers.

    Litestar makes the OPTIONS answer of a path when its first handler is registered and never
    updates it, so GET /v1/collections/{name} hid PUT and DELETE from `Allow`. Registered first,
    these take its place.
    """
    methods: dict[str, set[str]] = defaultdict(set)
    count: Counter[str] = Counter()
    for handler in handlers:
        for path in handler.paths:
            methods[path].update(handler.http_methods)
            count[path] += 1
    return [options_handler(path, methods[path]) for path in methods if count[path] > 1]


def options_handler(path: str, methods: set[str]) -> HTTPRouteHandler:
    allow = ", ".join(sorted(methods | {"OPTIONS"}))

    def allowed_methods() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": allow}, media_type=MediaType.TEXT)

    return route(path, http_method=[HttpMethod.OPTIONS], include_in_schema=False, sync_to_thread=False)(
        allowed_methods
    )


def swagger_assets() -> Path:
    """Swagger UI's files from the swagger-ui-py package: the docs page works without a network."""
    return Path(str(resources.files("swagger_ui").joinpath("static")))


def assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH, directories=[swagger_assets()], include_in_schema=False, name="swagger-assets"
    )


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Fathom",
        version=metadata.version("fathom"),
        description="Self-hosted search middleware: hybrid search and a Cohere/Jina-style Rerank API."
        " Errors have one body (ErrorResponse); keyed routes take 'Authorization: Bearer <key>'.",
        path=SCHEMA_PATH,
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key from `fathom keys create`",
                )
            }
        ),
        render_plugins=[
            SwaggerRenderPlugin(
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
            )
        ],
    )
