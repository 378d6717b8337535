"""The search pipeline's Reranker on this process's own rerank engine."""

from __future__ import annotations

from collections.abc import Sequence

from service.rerank.registry import ModelRegistry


class EngineReranker:
    """Scores passages with a registry model, sharing batches with /v1/rerank traffic."""

    def __init__(self, models: ModelRegistry, model_id: str | None = None) -> None:
        self._models = models
        self._model_id = model_id

    async def score(self, query: str, passages: Sequence[str]) -> list[float]:
        engine = await self._models.engine(self._model_id)
        return (await engine.rerank(query, passages)).scores
