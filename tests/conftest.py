"""What every test may use: where ../shared is, the offline models as settings or as a config file's text,
a Bearer header, and the asyncio backend for anyio tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FATHOM_SHARED_DIR", REPO.parent / "shared"))
MODELS = SHARED / "models"
DATA = SHARED / "data"

EMBEDDER = MODELS / "all-MiniLM-L6-v2"
TINY = "cross-encoder-tiny-random"
BENCH = "cross-encoder-minilm-l6-bench"
# The packaged default reranker, which only the model hub has.
HUB_RERANKER = "BAAI/bge-reranker-v2-m3"


def offline_models(reranker: str = TINY) -> dict[str, Any]:
    """The offline models as settings: the MiniLM embedder and `reranker` (a folder of ../shared/models)
    as the only rerank model, so nothing is downloaded."""
    return {
        "embedding": {"path": str(EMBEDDER)},
        "rerank": {"default_model": reranker, "models": {reranker: {"path": str(MODELS / reranker)}}},
    }


def offline_toml(reranker: str = TINY) -> str:
    """The same as a config file's tables, for a `fathom` process. A file is laid over the packaged
    defaults, so the hub's reranker is switched off rather than left out."""
    return (
        f'[embedding]\npath = "{EMBEDDER}"\n'
        f'[rerank]\ndefault_model = "{reranker}"\n'
        f'[rerank.models."{reranker}"]\npath = "{MODELS / reranker}"\n'
        f'[rerank.models."{HUB_RERANKER}"]\nenabled = false\n'
    )


def bearer(key: str) -> dict[str, str]:
    """The header a client sends with an API key."""
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """asyncio for every anyio test and async fixture; session-wide, so fixtures of any scope may use it."""
    return "asyncio"
