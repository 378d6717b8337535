"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.services import services_of


@get("/healthz", tags=["operations"], summary="The process is alive", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["operations"], summary="Every configured model is loaded", sync_to_thread=False)
def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    states = services_of(request).models.states
    models = {model_id: state.status for model_id, state in states.items()}
    ready = all(status == "ready" for status in models.values())
    return Response(
        {"status": "ready" if ready else "not ready", "models": models},
        status_code=200 if ready else 503,
        media_type=MediaType.JSON,
    )


@get("/metrics", tags=["operations"], summary="Prometheus metrics", sync_to_thread=False)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    for model_id, state in services.models.states.items():
        if state.engine is not None:
            services.metrics.queue_depth.labels(model_id).set(state.engine.queue_depth)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
