"""create_app(settings): routes, lifespan (open and close what the app holds), error handlers, OpenAPI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State

from service.api import collections, context, embeddings, health, models, openapi, rerank, search, web
from service.api.body import JsonBodyRequest
from service.api.cors import cors_middleware
from service.api.errors import EXCEPTION_HANDLERS
from service.api.mcp import mcp_route
from service.api.metrics import Metrics, metrics_middleware
from service.api.services import Services
from service.backends.http_reranker import HttpReranker
from service.backends.stack import SearchStack, open_stack
from service.backends.token_budget import TokenCounters
from service.ingest.chunking import Chunker, ChunkingPolicy
from service.ingest.writer import IngestWriter
from service.mcp_server import build_mcp_server
from service.rerank.local_reranker import EngineReranker
from service.rerank.registry import ModelRegistry
from service.search.errors import SearchError
from service.search.pipeline import SearchPipeline
from service.search.protocols import Reranker
from service.settings import Settings
from service.state.stores import open_journal, open_keys

log = logging.getLogger("fathom")


def build_services(settings: Settings) -> Services:
    metrics = Metrics()
    return Services(
        settings=settings,
        keys=open_keys(settings),
        models=ModelRegistry(
            settings.rerank, cache_dir=settings.data_path / "models", batch_observer=metrics.batch_observer
        ),
        metrics=metrics,
    )


async def search_reranker(services: Services, exits: AsyncExitStack) -> Reranker:
    """A remote /v1/rerank when [search.rerank] url is set, else this process's engine."""
    config = services.settings.search.rerank
    if config.url:
        remote = HttpReranker(config.url, api_key=config.api_key, model=config.model, timeout=config.timeout)
        exits.push_async_callback(remote.close)
        return remote
    return EngineReranker(services.models, config.model or None)


async def open_search(services: Services, exits: AsyncExitStack) -> None:
    """Open the stores, the embedder and the journal; on failure, keep serving rerank and report why
    search cannot (in /readyz and in every search's 503)."""
    if not services.settings.search.enabled:
        services.stack_error = "search is switched off on this server ([search] enabled = false)"
        return
    try:
        stack: SearchStack = await exits.enter_async_context(open_stack(services.settings))
        ingest = await open_ingest(services.settings, stack, exits)
    except SearchError as exc:
        services.stack_error = str(exc)
        log.error("search is not available: %s", exc)
        return
    except Exception as exc:  # a background task: nothing else would ever report it
        services.stack_error = f"unexpected {type(exc).__name__} while opening the stores"
        log.exception("search is not available")
        return
    services.stack = stack
    services.ingest = ingest
    services.token_counters = TokenCounters(services.settings, stack.embedder.tokenizer)
    services.pipeline = SearchPipeline(
        stack.lexical,
        stack.vectors,
        stack.embedder,
        await search_reranker(services, exits),
        services.settings.search,
    )


async def open_ingest(settings: Settings, stack: SearchStack, exits: AsyncExitStack) -> IngestWriter:
    """The collections API's writer; changes a previous process left unfinished are finished first.

    A damaged journal raises StateDamaged naming the file. A collection that cannot be recovered now
    is logged and retried by its next write; the others are recovered regardless.
    """
    journal = await asyncio.to_thread(open_journal, settings)
    exits.callback(journal.close)
    writer = IngestWriter(stack, journal, Chunker(stack.embedder.tokenizer, ChunkingPolicy()))
    report = await writer.recover_all()
    for problem in report.problems:
        log.error("recovering unfinished collection changes: %s", problem)
    if report.recovered or report.parked:
        log.info(
            "finished %d interrupted collection changes, parked %d that can never succeed",
            report.recovered,
            report.parked,
        )
    # Another replica's changes left unfinished (it died mid-write) are finished here once its lease ran out.
    await exits.enter_async_context(writer.recovering(settings.state.lease_seconds / 2))
    return writer


async def stop_opening(opening: asyncio.Task[None]) -> None:
    """At shutdown: stop a search stack still opening; what it had opened is closed by the exit stack."""
    opening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await opening


def create_app(settings: Settings) -> Litestar:
    services = build_services(settings)
    assistant = build_mcp_server(services)
    mcp_transport = mcp_route(assistant, settings.server.host)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if not settings.auth.enabled:
            log.warning(
                "AUTH IS DISABLED: every request is served without an API key. Do not expose this server."
            )
        services.models.start_loading()
        async with AsyncExitStack() as exits:
            await exits.enter_async_context(assistant.session_manager.run())
            exits.callback(services.keys.close)
            exits.push_async_callback(services.models.close)
            # In the background, like the models: a model download or a recovery must not hold up
            # start-up, and /readyz says when search is ready.
            services.opening = asyncio.get_running_loop().create_task(open_search(services, exits))
            try:
                yield
            finally:
                await stop_opening(services.opening)

    return Litestar(
        route_handlers=[
            *openapi.documented(
                [
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
                    web.widget_js,
                    web.widget_css,
                ]
            ),
            # The MCP transport is an ASGI app of its own; its schema is MCP's, not OpenAPI's.
            mcp_transport,
        ],
        lifespan=[lifespan],
        state=State({"services": services}),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[metrics_middleware(services.metrics), cors_middleware(services.public_origins)],
        request_max_body_size=settings.server.max_body_bytes,
        request_class=JsonBodyRequest,
        openapi_config=openapi.openapi_config(),
        # Logging is the process's to configure (`fathom serve` does); Litestar's own config would
        # replace the root handlers, and our error handlers already log unexpected errors once.
        logging_config=None,
    )
