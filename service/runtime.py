"""The composition root: the one place that builds Fathom's long-lived parts from Settings.

`fathom serve` (create_app), `fathom mcp` and `fathom eval` open a Runtime, and `fathom index` the
writer part of it (open_writer), so each of them runs the very same wiring. `fathom keys` opens only the
key store; the benches measure a `fathom serve` process of their own (service/testing/live_server.py):

    Runtime
     ├── settings
     ├── metrics     Prometheus collectors (one registry per runtime, so several never collide)
     ├── keys        the API key store (SQLite under data_dir, or PostgreSQL)       [keys=True]
     ├── models      rerank engines by model id, loading in the background           [models=True]
     └── search      the SearchService (service/search_service.py), which the HTTP routes and the MCP
                     tools share; once open (search=True) it holds the parts built here:
          ├── stack      embedder + lexical store + vector store
          ├── journal    the collections and their changes (SQLite or PostgreSQL)
          ├── writer     the ingest write path on the stack and the journal
          ├── pipeline   retrieve, fuse, rerank (reranker: local engine or a remote /v1/rerank)
          └── counters   the token budgets of /v1/context and the MCP search tool

Search opens in the foreground (the CLI: a failure raises) or in the background (the server: models
and stores load while it answers /healthz; a failure is kept by the search service for /readyz and
503s). A test may build a Runtime on fakes and hand it to `create_app(settings, runtime=...)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from service.auth.deferred_usage import DeferredUsage
from service.auth.keys import Keys
from service.auth.visitors import VisitorLimits
from service.backends.http_reranker import HttpReranker
from service.backends.stack import open_stack
from service.backends.token_budget import TokenCounters
from service.errors import FathomError
from service.ingest.chunking import Chunker, ChunkingPolicy
from service.ingest.writer import IngestWriter
from service.metrics import Metrics
from service.rerank.budget_check import warn_if_budget_too_small
from service.rerank.local_reranker import EngineReranker
from service.rerank.registry import ModelRegistry
from service.rerank.score_cache import ScoreCache
from service.search.pipeline import SearchPipeline
from service.search.protocols import Reranker
from service.search_service import SearchParts, SearchService
from service.settings import Settings
from service.stores import open_journal, open_keys

log = logging.getLogger("fathom")

# Tokens of a typical search query, added to a passage's when estimating what the rerank budget covers.
QUERY_TOKENS = 16


@dataclass(slots=True)
class Runtime:
    """What a Fathom process holds. Parts not asked for are None; search is there even before it opens."""

    settings: Settings
    metrics: Metrics
    search: SearchService
    keys: Keys | None = None
    models: ModelRegistry | None = None
    # Each visitor's share of a public key's rate limit (service/auth/visitors.py).
    visitors: VisitorLimits = field(init=False)

    def __post_init__(self) -> None:
        self.visitors = VisitorLimits(self.settings.auth.visitor_rate_limit)

    @property
    def key_store(self) -> Keys:
        """The key store; RuntimeError if this runtime was opened without it (a wiring mistake)."""
        if self.keys is None:
            raise RuntimeError("this runtime was opened without its key store (keys=False)")
        return self.keys

    @property
    def registry(self) -> ModelRegistry:
        """The rerank models; RuntimeError if this runtime was opened without them (a wiring mistake)."""
        if self.models is None:
            raise RuntimeError("this runtime was opened without its rerank models (models=False)")
        return self.models

    async def public_origins(self) -> frozenset[str]:
        """The origins of active public keys, read off the event loop (CORS asks on every browser call)."""
        if self.keys is None:
            return frozenset()
        return await asyncio.to_thread(self.keys.public_origins)

    async def wait_started(self) -> None:
        """Until every model has loaded or failed and search has opened or failed."""
        if self.models is not None:
            await self.models.wait_loaded()
        await self.search.wait_opened()


def new_runtime(settings: Settings, *, keys: bool = True, models: bool = True) -> Runtime:
    """The parts that open synchronously and cheaply; `start` opens the rest."""
    metrics = Metrics()
    registry = (
        ModelRegistry(
            settings.rerank,
            cache_dir=settings.data_path / "models",
            batch_observer=metrics.batch_observer,
        )
        if models
        else None
    )
    return Runtime(
        settings=settings,
        metrics=metrics,
        search=SearchService(
            settings,
            registry,
            scores=ScoreCache(
                settings.search.rerank.cache_entries,
                on_hit=metrics.rerank_cache_hits.inc,
                on_miss=metrics.rerank_cache_misses.inc,
            ),
        ),
        keys=(
            DeferredUsage(
                open_keys(settings), unwritten=metrics.usage_unwritten, deferred=metrics.usage_deferred
            )
            if keys
            else None
        ),
        models=registry,
    )


async def start(
    runtime: Runtime,
    exits: AsyncExitStack,
    *,
    search: bool = True,
    background: bool = False,
    recover: bool = False,
    chunking: ChunkingPolicy | None = None,
) -> None:
    """Start loading the models and open search; what is opened is closed by `exits`.

    With `recover` (the server), changes left unfinished are finished first, and those of a replica
    that died mid-write are taken over in the background once their lease runs out.

    In the background, a failure to open search is logged and kept by `runtime.search` (for /readyz);
    in the foreground it raises (StoreLocked, StateDamaged, ModelUnavailable...).
    """
    if runtime.keys is not None:
        exits.callback(runtime.keys.close)
    if runtime.models is not None:
        runtime.models.start_loading()
        exits.push_async_callback(runtime.models.close)
    if not search:
        return
    if background and not runtime.settings.search.enabled:  # the server's switch; the CLI opens search
        runtime.search.fail("search is switched off on this server ([search] enabled = false)")
        return
    if not background:
        await open_search(runtime, exits, recover=recover, chunking=chunking)
        return
    # Its own exit stack, closed after the task is stopped: never close stores it is still opening.
    search_exits = await exits.enter_async_context(AsyncExitStack())
    opening = open_search(runtime, search_exits, recover=recover, chunking=chunking)
    task = asyncio.get_running_loop().create_task(_reported(runtime.search, opening))
    runtime.search.opening_in(task)
    exits.push_async_callback(_stop_task, task)


async def open_search(
    runtime: Runtime, exits: AsyncExitStack, *, recover: bool, chunking: ChunkingPolicy | None
) -> None:
    """Stack, journal, writer, pipeline and token counters, each built here and nowhere else, handed to
    the search service."""
    settings = runtime.settings
    stack = await exits.enter_async_context(open_stack(settings))
    journal = await asyncio.to_thread(open_journal, settings)
    exits.callback(journal.close)
    writer = IngestWriter(stack, journal, Chunker(stack.embedder.tokenizer, chunking or ChunkingPolicy()))
    if recover:
        await recover_unfinished(writer)
        # Another replica's changes left unfinished (it died mid-write) are finished here once its
        # lease ran out.
        await exits.enter_async_context(writer.recovering(settings.state.lease_seconds / 2))
    reranker = search_reranker(runtime, exits, (chunking or ChunkingPolicy()).max_tokens)
    pipeline = SearchPipeline(
        stack.lexical,
        stack.vectors,
        stack.embedder,
        reranker,
        settings.search,
        check_collection=writer.check_embedder,
        prefetch=settings.search.rerank.cache_entries > 0,
    )
    runtime.search.open(
        SearchParts(
            pipeline=pipeline,
            catalog=journal,
            chunks=stack.vectors,
            counters=TokenCounters(settings, stack.embedder.tokenizer),
            stack=stack,
            writer=writer,
        )
    )


def search_reranker(runtime: Runtime, exits: AsyncExitStack, passage_tokens: int) -> Reranker | None:
    """A remote /v1/rerank when [search.rerank] url is set, else this process's engine (if it has models).

    The local engine is checked once it has loaded: a model too slow for the search budget is logged.
    """
    config = runtime.settings.search.rerank
    if config.url:
        remote = HttpReranker(config.url, api_key=config.api_key, model=config.model, timeout=config.timeout)
        exits.push_async_callback(remote.close)
        return runtime.search.cached(remote, f"{config.url} {config.model}")
    if runtime.models is None:
        return None
    if config.enabled:
        # A query is a few tokens next to a passage; the model's own limit truncates longer pairs.
        pair_tokens = min(passage_tokens + QUERY_TOKENS, runtime.settings.rerank.max_length)
        check = warn_if_budget_too_small(runtime.models, config.model or None, config.budget_ms, pair_tokens)
        exits.push_async_callback(_stop_task, asyncio.get_running_loop().create_task(check))
    engine = EngineReranker(runtime.models, config.model or None)
    return runtime.search.cached(engine, config.model or runtime.settings.rerank.default_model)


async def recover_unfinished(writer: IngestWriter) -> None:
    """Changes a previous process left unfinished are finished before the server takes new ones.

    A damaged journal raises StateDamaged naming the file. A collection that cannot be recovered now
    is logged and retried by its next write; the others are recovered regardless.
    """
    report = await writer.recover_all()
    report.log_recovery("recovering unfinished collection changes", "an earlier process left")


async def _reported(search: SearchService, opening: Coroutine[Any, Any, None]) -> None:
    """Open search in the background; keep serving rerank and report why search cannot."""
    try:
        await opening
    except FathomError as exc:
        search.fail(str(exc))
        log.error("search is not available: %s", exc)
    except Exception as exc:  # a background task: nothing else would ever report it
        search.fail(f"unexpected {type(exc).__name__} while opening the stores")
        log.exception("search is not available")


async def _stop_task(task: asyncio.Task[None]) -> None:
    """At shutdown: stop a background task (a search still opening: what it had opened is closed by
    the exit stack)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    keys: bool = True,
    models: bool = True,
    search: bool = True,
    background: bool = False,
    recover: bool = False,
    chunking: ChunkingPolicy | None = None,
) -> AsyncIterator[Runtime]:
    """A started Runtime with the parts asked for; everything it opened is closed on exit.

    `fathom index` and `fathom eval` ask for search without the key store, `fathom mcp` for all of it
    in the background, the server for all of it in the background with recovery of unfinished changes.
    """
    runtime = new_runtime(settings, keys=keys, models=models)
    async with AsyncExitStack() as exits:
        await start(runtime, exits, search=search, background=background, recover=recover, chunking=chunking)
        yield runtime


@asynccontextmanager
async def open_writer(
    settings: Settings, policy: ChunkingPolicy | None = None
) -> AsyncIterator[IngestWriter]:
    """The write path of a runtime opened for it alone: no key store, no rerank models.

    Raises StoreLocked when an embedded store is held by another process, such as `fathom serve`.
    """
    async with open_runtime(settings, keys=False, models=False, chunking=policy) as runtime:
        yield runtime.search.writer  # opened in the foreground: it is open, or it raised
