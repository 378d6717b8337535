"""What the route handlers share, built once per app by create_app and reached through app.state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection

from service.api.metrics import Metrics
from service.auth.keys import Keys
from service.backends.stack import SearchStack
from service.backends.token_budget import TokenCounters
from service.ingest.writer import IngestWriter
from service.rerank.registry import ModelRegistry
from service.search.pipeline import SearchPipeline
from service.settings import Settings


@dataclass(slots=True)
class Services:
    settings: Settings
    keys: Keys
    models: ModelRegistry
    metrics: Metrics
    # Opened in the background from the lifespan, as models load: until then, or when they cannot
    # open, search and collections answer 503 with the reason.
    opening: asyncio.Task[None] | None = None
    stack: SearchStack | None = None
    stack_error: str | None = None
    pipeline: SearchPipeline | None = None
    # The collections API's write path; opened with the stack.
    ingest: IngestWriter | None = None
    # Token budgets of /v1/context; opened with the stack, whose embedder gives the default tokenizer.
    token_counters: TokenCounters | None = None

    async def public_origins(self) -> frozenset[str]:
        """The origins of active public keys, read off the event loop (CORS asks on every browser call)."""
        return await asyncio.to_thread(self.keys.public_origins)

    async def wait_started(self) -> None:
        """Until every model has loaded or failed and the search stack has opened or failed."""
        await self.models.wait_loaded()
        if self.opening is not None:
            await asyncio.shield(self.opening)


def services_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Services:
    services: Services = connection.app.state["services"]
    return services
