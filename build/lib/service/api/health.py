"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.services import Services, services_of
from service.auth.guard import require_api_key
from service.auth.scopes import ADMIN


@get("/healthz", tags=["operations"], summary="The process is alive", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["operations"], summary="Every model is loaded and search is open", sync_to_thread=False)
def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    services = services_of(request)
    models = {model_id: state.status for model_id, state in services.models.states.items()}
    search = search_status(services)
    ready = all(status == "ready" for status in models.values()) and search in ("ready", "disabled")
    return Response(
        {"status": "ready" if ready else "not ready", "models": models, "search": search},
        status_code=200 if ready else 503,
        media_type=MediaType.JSON,
    )


def search_status(services: Services) -> str:
    if services.pipeline is not None:
        return "ready"
    if not services.settings.search.enabled:
        return "disabled"
    return f"failed: {services.stack_error}" if services.stack_error else "starting"


async def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """An admin key when [auth] metrics_admin_only is set; else open, for scrapers."""
    if services_of(connection).settings.auth.metrics_admin_only:
        await require_api_key(connection, handler)


@get(
    "/metrics",
    guards=[metrics_guard],
    opt={"scope": ADMIN},
    tags=["operations"],
    summary="Prometheus metrics",
    sync_to_thread=False,
)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    for model_id, state in services.models.states.items():
        if state.engine is not None:
            services.metrics.queue_depth.labels(model_id).set(state.engine.queue_depth)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
