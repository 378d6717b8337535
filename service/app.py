"""create_app(settings): routes, lifespan (opens the runtime), dependencies, error handlers, OpenAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State

from service.analytics.recorder import ANALYTICS, Recorder
from service.api import (
    analytics,
    analytics_page,
    collections,
    context,
    embeddings,
    events,
    health,
    models,
    openapi,
    rerank,
    schema_limits,
    search,
    web,
)
from service.api.body import JsonBodyRequest
from service.api.cors import cors_middleware
from service.api.dependencies import DEPENDENCIES, RUNTIME
from service.api.errors import EXCEPTION_HANDLERS
from service.api.mcp import mcp_route
from service.api.metrics import metrics_middleware
from service.mcp_server import build_mcp_server
from service.runtime import Runtime, new_runtime, start
from service.settings import Settings

log = logging.getLogger("fathom")


def create_app(settings: Settings, runtime: Runtime | None = None) -> Litestar:
    """The HTTP service. Without `runtime`, it builds one and its lifespan opens and closes it (models
    and search in the background); a prepared runtime (a bench's, or a test's fakes) is its owner's to
    open and close."""
    owned = runtime is None
    runtime = runtime or new_runtime(settings)
    assistant = build_mcp_server(runtime)
    recorder = Recorder(settings, runtime.metrics.registry)
    mcp_transport = mcp_route(assistant, settings.server.host)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not settings.auth.enabled:
            log.warning(
                "AUTH IS DISABLED: every request is served without an API key. Do not expose this server."
            )
        async with AsyncExitStack() as exits:
            await exits.enter_async_context(assistant.session_manager.run())
            await exits.enter_async_context(recorder.running())
            if owned:
                # In the background: a model download or a recovery must not hold up start-up, and
                # /readyz says when search is ready.
                await start(runtime, exits, background=True, recover=True)
            yield

    handlers = [
        rerank.rerank,
        search.search,
        embeddings.embeddings,
        context.context,
        collections.list_collections,
        collections.get_collection,
        collections.put_collection,
        collections.delete_collection,
        collections.upsert_documents,
        collections.delete_document,
        models.list_models,
        health.healthz,
        health.readyz,
        health.metrics,
        web.search_page,
        web.page_js,
        web.page_css,
        web.widget_js,
        web.widget_css,
        events.record_event,
        analytics.analytics,
        analytics_page.analytics_page,
        analytics_page.analytics_js,
        analytics_page.analytics_css,
    ]
    app = Litestar(
        route_handlers=[
            *openapi.documented(
                handlers, metrics_keyed=settings.auth.enabled and settings.auth.metrics_admin_only
            ),
            # The MCP transport is an ASGI app of its own; its schema is MCP's, not OpenAPI's.
            mcp_transport,
        ],
        lifespan=[lifespan],
        state=State({RUNTIME: runtime, ANALYTICS: recorder}),
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[metrics_middleware(runtime.metrics), cors_middleware(runtime.public_origins)],
        request_max_body_size=settings.server.max_body_bytes,
        request_class=JsonBodyRequest,
        openapi_config=openapi.openapi_config(),
        # Logging is the process's to configure (`fathom serve` does); Litestar's own config would
        # replace the root handlers, and our error handlers already log unexpected errors once.
        logging_config=None,
    )
    openapi.close_strict_objects(app, handlers)
    schema_limits.state_limits(app, settings)
    return app
