"""GET /v1/models: the configured rerank models and whether each is ready."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency

from service.rerank.registry import ModelRegistry


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
def list_models(models: NamedDependency[ModelRegistry]) -> ModelList:
    registry = models
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
