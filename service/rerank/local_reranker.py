"""The search pipeline's Reranker on this process's own rerank engine."""

from __future__ import annotations

from collections.abc import Sequence

from service.rerank.registry import ModelRegistry


class EngineReranker:
    """Scores passages with a registry model, sharing batches with /v1/rerank traffic."""

    def __init__(self, models: ModelRegistry, model_id: str | None = None) -> None:
        self._models = models
        self._model_id = model_id

    async def score(
        self, query: str, passages: Sequence[str], *, budget_ms: float | None = None
    ) -> list[float]:
        """Every passage's score, or with a budget those of the head that fits in it (a prefix); both
        run ahead of /v1/rerank's bulk batches, since a search is waited for."""
        engine = await self._models.engine(self._model_id)
        if budget_ms is None:
            return await engine.rerank_first(query, passages)
        return await engine.rerank_within(query, passages, budget_ms / 1000)
