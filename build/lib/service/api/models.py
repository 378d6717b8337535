"""GET /v1/models: the configured rerank models and whether each is ready."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get

from service.api.services import services_of


class ModelInfo(msgspec.Struct, omit_defaults=True):
    id: str
    object: str = "model"
    type: str = "rerank"
    status: str = "loading"
    default: bool = False
    error: str | None = None


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelInfo]


@get("/v1/models", summary="List the rerank models", tags=["models"], sync_to_thread=False)
def list_models(request: Request[Any, Any, Any]) -> ModelList:
    registry = services_of(request).models
    return ModelList(
        object="list",
        data=[
            ModelInfo(
                id=model_id,
                status=state.status,
                default=model_id == registry.default_model,
                error=state.error,
            )
            for model_id, state in registry.states.items()
        ],
    )
