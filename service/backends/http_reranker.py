"""The Reranker protocol on any /v1/rerank-compatible service: another Fathom, Cohere, Jina, TEI-style."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from service.errors import BackendTimeout, BackendUnavailable


class HttpReranker:
    """POSTs {model, query, documents} and reads results[].index / relevance_score back into order."""

    def __init__(self, url: str, *, api_key: str = "", model: str = "", timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)
        self._url = url
        self._model = model

    async def close(self) -> None:
        await self._client.aclose()

    async def score(
        self, query: str, passages: Sequence[str], *, budget_ms: float | None = None
    ) -> list[float]:
        """Every passage's score: a remote reranker's speed is unknown here, so `budget_ms` is not used
        ([search.rerank] timeout bounds the call)."""
        body: dict[str, Any] = {"query": query, "documents": list(passages), "top_n": len(passages)}
        if self._model:
            body["model"] = self._model
        try:
            response = await self._client.post(self._url, json=body)
        except httpx.TimeoutException as exc:
            raise BackendTimeout(f"reranker at {self._url} timed out") from exc
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"reranker at {self._url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise BackendUnavailable(
                f"reranker at {self._url} answered {response.status_code}: {response.text[:200]}"
            )
        return scores_in_order(response.json(), len(passages))


def scores_in_order(body: Any, count: int) -> list[float]:
    """Cohere-, Jina- and Fathom-style results, which come best first, back in the order sent."""
    scores: list[float | None] = [None] * count
    try:
        for result in body["results"]:
            scores[int(result["index"])] = float(result["relevance_score"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BackendUnavailable(f"the reranker's answer is not a rerank response: {exc!r}") from exc
    if any(score is None for score in scores):
        raise BackendUnavailable("the reranker left out some documents")
    return [score for score in scores if score is not None]
