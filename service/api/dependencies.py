"""The typed dependencies route handlers declare by name, each taken from the app's Runtime.

A handler asks for what it uses (`search_service: SearchService`, `writer: IngestWriter`, `keys: Keys`...);
a search-side part that is not open yet, or failed to open, is a 503 saying why before the handler
runs (the search service itself is always there: its methods say so). Guards and exception handlers,
which Litestar does not inject into, use `runtime_of`.

Handlers mark each as `NamedDependency[T]`; the key store as `NamedDependency[SkipValidation[Keys]]`,
because Keys is a Protocol, which Litestar's validation cannot check with isinstance.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from service.auth.keys import ApiKey, Keys
from service.backends.embedder import TextEmbedder
from service.ingest.writer import IngestWriter
from service.metrics import Metrics
from service.rerank.registry import ModelRegistry
from service.runtime import Runtime
from service.search_service import SearchService
from service.settings import Settings

RUNTIME = "runtime"


def runtime_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
    runtime: Runtime = connection.app.state[RUNTIME]
    return runtime


async def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state[RUNTIME]
    return runtime


async def provide_settings(runtime: NamedDependency[Runtime]) -> Settings:
    return runtime.settings


async def provide_metrics(runtime: NamedDependency[Runtime]) -> Metrics:
    return runtime.metrics


async def provide_keys(runtime: NamedDependency[Runtime]) -> Keys:
    return runtime.key_store


async def provide_models(runtime: NamedDependency[Runtime]) -> ModelRegistry:
    return runtime.registry


async def provide_search_service(runtime: NamedDependency[Runtime]) -> SearchService:
    return runtime.search


async def provide_writer(runtime: NamedDependency[Runtime]) -> IngestWriter:
    return runtime.search.writer


async def provide_embedder(runtime: NamedDependency[Runtime]) -> TextEmbedder:
    return runtime.search.embedder


async def provide_api_key(request: Request[Any, Any, Any]) -> ApiKey | None:
    """The caller's key, set by the guard (None when auth is off)."""
    key: ApiKey | None = request.state.get("api_key")
    return key


DEPENDENCIES = {
    RUNTIME: Provide(provide_runtime),
    "settings": Provide(provide_settings),
    "metrics": Provide(provide_metrics),
    "keys": Provide(provide_keys),
    "models": Provide(provide_models),
    "search_service": Provide(provide_search_service),
    "writer": Provide(provide_writer),
    "embedder": Provide(provide_embedder),
    "api_key": Provide(provide_api_key),
}
