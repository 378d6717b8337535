"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Response, get
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.dependencies import runtime_of
from service.api.guard import require_api_key
from service.auth.scopes import ADMIN
from service.metrics import Metrics
from service.rerank.registry import ModelRegistry
from service.runtime import Runtime

# Below this much free space in data_dir, /readyz says not ready: SQLite and Tantivy need room to commit.
MIN_FREE_BYTES = 16 * 1024 * 1024


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: Annotated[str, msgspec.Meta(description='"ready" or "not ready"')]
    models: Annotated[dict[str, str], msgspec.Meta(description="Each model's status: loading, ready, failed")]
    search: Annotated[str, msgspec.Meta(description='"ready", "disabled", "starting" or "failed: <why>"')]
    storage: Annotated[
        str,
        msgspec.Meta(description='"ok", or "full" when the data directory is almost out of space'),
    ] = "ok"


@get("/healthz", tags=["operations"], summary="The process is alive", sync_to_thread=False)
def healthz() -> Health:
    return Health("ok")


@get(
    "/readyz",
    tags=["operations"],
    summary="Every model is loaded and search is open",
    responses={503: ResponseSpec(Readiness, description="Not ready yet, or failed", generate_examples=False)},
    sync_to_thread=False,
)
def readyz(runtime: NamedDependency[Runtime]) -> Response[Readiness]:
    models = {model_id: state.status for model_id, state in runtime.registry.states.items()}
    search = runtime.search.readiness()
    storage = storage_status(runtime.settings.data_path)
    ready = (
        all(status == "ready" for status in models.values())
        and search in ("ready", "disabled")
        and storage == "ok"
    )
    return Response(
        Readiness("ready" if ready else "not ready", models, search, storage),
        status_code=200 if ready else 503,
        media_type=MediaType.JSON,
    )


def storage_status(data_path: Path) -> str:
    """ "full" below MIN_FREE_BYTES: writes (journal, keys, billing, indexes) would fail with 507.

    No path in the answer; a folder that cannot be inspected is not reported full.
    """
    try:
        free = shutil.disk_usage(data_path).free
    except OSError:
        return "ok"
    return "full" if free < MIN_FREE_BYTES else "ok"


async def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """An admin key when [auth] metrics_admin_only is set; else open, for scrapers."""
    if runtime_of(connection).settings.auth.metrics_admin_only:
        await require_api_key(connection, handler)


@get(
    "/metrics",
    guards=[metrics_guard],
    opt={"scope": ADMIN},
    tags=["operations"],
    summary="Prometheus metrics, in Prometheus' text format",
    media_type=MediaType.TEXT,
    sync_to_thread=False,
)
def metrics(models: NamedDependency[ModelRegistry], metrics: NamedDependency[Metrics]) -> Response[bytes]:
    for model_id, state in models.states.items():
        if state.engine is not None:
            metrics.queue_depth.labels(model_id).set(state.engine.queue_depth)
            metrics.skipped_pairs.labels(model_id).set(state.engine.stats.skipped_pairs)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
