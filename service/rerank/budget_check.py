"""A start-up warning when the search reranker cannot use its time budget on this machine.

A search reranks as many fused hits as fit in `[search.rerank] budget_ms` (service/rerank/engine.py).
A large cross-encoder on a CPU fits almost none: bge-reranker-v2-m3 costs about 50 times the compute
of a MiniLM-L6 cross-encoder, so the budget runs out before the first handful of hits is scored, and
every search silently falls back to the fused order. The engine measures its cost per token when it
loads; this module turns that into the number of hits a search can rerank and says so in the log once.
"""

from __future__ import annotations

import logging

from service.errors import FathomError
from service.rerank.registry import ModelRegistry

log = logging.getLogger("fathom.rerank")

# Fewer hits than this reranked per search is not worth the stage: the visitor sees the fused order.
HANDFUL = 5


def hits_within(seconds_per_token: float, budget_ms: float, pair_tokens: int) -> int:
    """How many (query, passage) pairs of `pair_tokens` tokens one search can score in its budget."""
    if seconds_per_token <= 0.0:
        return HANDFUL  # nothing measured: no grounds for a warning
    return int((budget_ms / 1000) / (seconds_per_token * pair_tokens))


def budget_advice(model_id: str, hits: int, budget_ms: float, pair_tokens: int) -> str | None:
    """The warning for a search reranker that scores fewer than HANDFUL hits per search, else None."""
    if hits >= HANDFUL:
        return None
    return (
        f"search reranker {model_id!r} scores about {hits} hits of {pair_tokens} tokens within "
        f"[search.rerank] budget_ms = {budget_ms:g} on this machine, so most searches return the fused "
        "order unreranked. Use a smaller cross-encoder for search ([search.rerank] model, e.g. "
        'Xenova/ms-marco-MiniLM-L-6-v2), quantize it (quantize = "int8"), raise budget_ms, or '
        "point [search.rerank] url at a faster machine."
    )


async def warn_if_budget_too_small(
    models: ModelRegistry, model_id: str | None, budget_ms: float, pair_tokens: int
) -> None:
    """Wait for the search model to load, then log `budget_advice` if it applies (once, at start-up)."""
    model = model_id or models.default_model
    try:
        engine = await models.engine(model)
    except FathomError:  # an unknown or failed model is reported where it is used
        return
    hits = hits_within(engine.cost.seconds_per_token, budget_ms, pair_tokens)
    advice = budget_advice(model, hits, budget_ms, pair_tokens)
    if advice is not None:
        log.warning(advice)
    else:
        log.info("search reranker %s scores about %d hits within budget_ms = %g", model, hits, budget_ms)
