"""create_app(settings): routes, lifespan (open and close what the app holds), error handlers, OpenAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from service.api import health, models, rerank
from service.api.errors import EXCEPTION_HANDLERS
from service.api.metrics import Metrics, metrics_middleware
from service.api.services import Services
from service.auth.keys import KeyStore
from service.rerank.registry import ModelRegistry
from service.settings import Settings

log = logging.getLogger("fathom")


def key_store_path(settings: Settings) -> Path:
    return settings.data_path / "fathom.sqlite3"


def build_services(settings: Settings) -> Services:
    metrics = Metrics()
    return Services(
        settings=settings,
        keys=KeyStore(key_store_path(settings)),
        models=ModelRegistry(
            settings.rerank, cache_dir=settings.data_path / "models", batch_observer=metrics.batch_observer
        ),
        metrics=metrics,
    )


def create_app(settings: Settings) -> Litestar:
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not settings.auth.enabled:
            log.warning(
                "AUTH IS DISABLED: every request is served without an API key. Do not expose this server."
            )
        services.models.start_loading()
        try:
            yield
        finally:
            await services.models.close()
            services.keys.close()

    return Litestar(
        route_handlers=[rerank.rerank, models.list_models, health.healthz, health.readyz, health.metrics],
        lifespan=[lifespan],
        state=State({"services": services}),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[metrics_middleware(services.metrics)],
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Fathom",
            version="0.1.0",
            description="Self-hosted search middleware: hybrid search and a Cohere/Jina-style Rerank API.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        # Logging is the process's to configure (`fathom serve` does); Litestar's own config would
        # replace the root handlers, and our error handlers already log unexpected errors once.
        logging_config=None,
    )
