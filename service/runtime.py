"""The composition root: the one place that builds Fathom's long-lived parts from Settings.

`fathom serve` (create_app), `fathom mcp` and `fathom eval` open a Runtime, and `fathom index` the
writer part of it (open_writer), so each of them runs the very same wiring. `fathom keys` opens only the
key store; the benches measure a `fathom serve` process of their own (bench/_server.py):

    Runtime
     ├── settings
     ├── metrics     Prometheus collectors (one registry per runtime, so several never collide)
     ├── keys        the API key store (SQLite under data_dir, or PostgreSQL)       [keys=True]
     ├── models      rerank engines by model id, loading in the background           [models=True]
     └── search                                                                       [search=True]
          ├── stack      embedder + lexical store + vector store
          ├── writer     the ingest write path on the stack and the journal (SQLite or PostgreSQL)
          ├── pipeline   retrieve, fuse, rerank (reranker: local engine or a remote /v1/rerank)
          └── token_counters   the token budgets of /v1/context

Search opens in the foreground (the CLI: a failure raises) or in the background (the server: models
and stores load while it answers /healthz; a failure is kept in `search_error` for /readyz and 503s).
A bench or a test may open one and hand it to `create_app(settings, runtime=...)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from service.auth.deferred_usage import DeferredUsage
from service.auth.keys import Keys
from service.backends.http_reranker import HttpReranker
from service.backends.stack import SearchStack, open_stack
from service.backends.token_budget import TokenCounters
from service.errors import BackendUnavailable, FathomError, InvalidRequest
from service.ingest.chunking import Chunker, ChunkingPolicy
from service.ingest.writer import IngestWriter
from service.metrics import Metrics
from service.rerank.local_reranker import EngineReranker
from service.rerank.registry import ModelRegistry
from service.rerank.score_cache import CachedReranker, ScoreCache
from service.search.pipeline import SearchPipeline
from service.search.protocols import Reranker
from service.search.redact import for_clients
from service.settings import Settings
from service.state.stores import open_journal, open_keys

log = logging.getLogger("fathom")


@dataclass(slots=True)
class Runtime:
    """What a Fathom process holds. Parts not asked for (or not open yet) are None."""

    settings: Settings
    metrics: Metrics
    # Search rerank scores by (model, query, passage), shared by every model's reranker.
    scores: ScoreCache
    keys: Keys | None = None
    models: ModelRegistry | None = None
    stack: SearchStack | None = None
    writer: IngestWriter | None = None
    pipeline: SearchPipeline | None = None
    token_counters: TokenCounters | None = None
    # Why search could not open (or that it is switched off); None while it is opening or once open.
    search_error: str | None = None
    # The background opening of search (the server's), awaited by wait_started.
    opening: asyncio.Task[None] | None = None

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

    def unavailable(self, what: str) -> BackendUnavailable:
        """The 503 of a search-side part that is not open: why, without URLs or server paths."""
        return BackendUnavailable(
            f"{what} not available: {for_clients(self.search_error or 'still starting')}"
        )

    def reranker_for(self, model: str | None) -> Reranker | None:
        """The reranker a search asks for by model id; None: the pipeline's own (the configured one)."""
        if model is None:
            return None
        if self.settings.search.rerank.url:
            raise InvalidRequest(
                "rerank.model cannot be chosen per request: this server reranks through a remote URL"
            )
        states = self.models.states if self.models is not None else {}
        if self.models is None or model not in states:
            available = ", ".join(sorted(states)) or "none"
            raise InvalidRequest(f"unknown rerank model {model!r}; available models: {available}")
        return self.cached(EngineReranker(self.models, model), model)

    def cached(self, reranker: Reranker, model: str) -> Reranker:
        """`reranker` answering from the score cache what it holds for `model`."""
        return CachedReranker(reranker, model, self.scores)

    async def public_origins(self) -> frozenset[str]:
        """The origins of active public keys, read off the event loop (CORS asks on every browser call)."""
        if self.keys is None:
            return frozenset()
        return await asyncio.to_thread(self.keys.public_origins)

    async def wait_started(self) -> None:
        """Until every model has loaded or failed and search has opened or failed."""
        if self.models is not None:
            await self.models.wait_loaded()
        await self.wait_search_opened()

    async def wait_search_opened(self) -> None:
        """Until search (the stores, the embedder, the journal) has opened or failed; not the rerankers."""
        if self.opening is not None:
            await asyncio.shield(self.opening)


def new_runtime(settings: Settings, *, keys: bool = True, models: bool = True) -> Runtime:
    """The parts that open synchronously and cheaply; `start` opens the rest."""
    metrics = Metrics()
    return Runtime(
        settings=settings,
        metrics=metrics,
        scores=ScoreCache(
            settings.search.rerank.cache_entries,
            on_hit=metrics.rerank_cache_hits.inc,
            on_miss=metrics.rerank_cache_misses.inc,
        ),
        keys=(
            DeferredUsage(
                open_keys(settings), unwritten=metrics.usage_unwritten, deferred=metrics.usage_deferred
            )
            if keys
            else None
        ),
        models=(
            ModelRegistry(
                settings.rerank,
                cache_dir=settings.data_path / "models",
                batch_observer=metrics.batch_observer,
            )
            if models
            else None
        ),
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

    In the background, a failure to open search is logged and kept in `runtime.search_error`;
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
        runtime.search_error = "search is switched off on this server ([search] enabled = false)"
        return
    if not background:
        await open_search(runtime, exits, recover=recover, chunking=chunking)
        return
    # Its own exit stack, closed after the task is stopped: never close stores it is still opening.
    search_exits = await exits.enter_async_context(AsyncExitStack())
    opening = open_search(runtime, search_exits, recover=recover, chunking=chunking)
    runtime.opening = asyncio.get_running_loop().create_task(_reported(runtime, opening))
    exits.push_async_callback(_stop_opening, runtime.opening)


async def open_search(
    runtime: Runtime, exits: AsyncExitStack, *, recover: bool, chunking: ChunkingPolicy | None
) -> None:
    """Stack, writer (its journal), pipeline and token counters, each built here and nowhere else."""
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
    pipeline = SearchPipeline(
        stack.lexical,
        stack.vectors,
        stack.embedder,
        search_reranker(runtime, exits),
        settings.search,
        prefetch=settings.search.rerank.cache_entries > 0,
    )
    runtime.stack, runtime.writer, runtime.pipeline = stack, writer, pipeline
    runtime.token_counters = TokenCounters(settings, stack.embedder.tokenizer)


def search_reranker(runtime: Runtime, exits: AsyncExitStack) -> Reranker | None:
    """A remote /v1/rerank when [search.rerank] url is set, else this process's engine (if it has models)."""
    config = runtime.settings.search.rerank
    if config.url:
        remote = HttpReranker(config.url, api_key=config.api_key, model=config.model, timeout=config.timeout)
        exits.push_async_callback(remote.close)
        return runtime.cached(remote, f"{config.url} {config.model}")
    if runtime.models is None:
        return None
    engine = EngineReranker(runtime.models, config.model or None)
    return runtime.cached(engine, config.model or runtime.settings.rerank.default_model)


async def recover_unfinished(writer: IngestWriter) -> None:
    """Changes a previous process left unfinished are finished before the server takes new ones.

    A damaged journal raises StateDamaged naming the file. A collection that cannot be recovered now
    is logged and retried by its next write; the others are recovered regardless.
    """
    report = await writer.recover_all()
    report.log_recovery("recovering unfinished collection changes", "an earlier process left")


async def _reported(runtime: Runtime, opening: Coroutine[Any, Any, None]) -> None:
    """Open search in the background; keep serving rerank and report why search cannot."""
    try:
        await opening
    except FathomError as exc:
        runtime.search_error = str(exc)
        log.error("search is not available: %s", exc)
    except Exception as exc:  # a background task: nothing else would ever report it
        runtime.search_error = f"unexpected {type(exc).__name__} while opening the stores"
        log.exception("search is not available")


async def _stop_opening(opening: asyncio.Task[None]) -> None:
    """At shutdown: stop a search still opening; what it had opened is closed by the exit stack."""
    opening.cancel()
    await asyncio.gather(opening, return_exceptions=True)


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

    `fathom index` asks for search alone, `fathom keys` for keys alone, the server for all of it in
    the background with recovery of unfinished changes.
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
        assert runtime.writer is not None  # opened in the foreground: it is open or it raised
        yield runtime.writer
