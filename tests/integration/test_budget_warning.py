"""The start-up check of the search reranker against its budget, on the real bench cross-encoder.

The budgets are extreme on purpose (a microsecond, a quarter of an hour), so the outcome does not
depend on how fast or busy this machine is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.rerank.budget_check import warn_if_budget_too_small
from service.rerank.registry import ModelRegistry
from service.settings import settings_from_dict
from tests.conftest import MODELS
from tests.integration.rerank_app import BENCH

pytestmark = pytest.mark.anyio


@pytest.fixture
async def models(tmp_path: Path) -> AsyncIterator[ModelRegistry]:
    settings = settings_from_dict(
        {
            "data_dir": str(tmp_path),
            "rerank": {"default_model": BENCH, "models": {BENCH: {"path": str(MODELS / BENCH)}}},
        }
    )
    registry = ModelRegistry(settings.rerank, cache_dir=tmp_path / "models")
    registry.start_loading()
    try:
        yield registry
    finally:
        await registry.close()


async def test_a_budget_the_model_cannot_use_is_a_warning(
    models: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="fathom.rerank"):
        await warn_if_budget_too_small(models, None, budget_ms=0.001, pair_tokens=272)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"search reranker {BENCH!r} scores about 0 hits" in warnings[0]


async def test_a_budget_the_model_can_use_is_only_noted(
    models: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="fathom.rerank"):
        await warn_if_budget_too_small(models, BENCH, budget_ms=900_000.0, pair_tokens=272)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("hits within budget_ms = 900000" in r.getMessage() for r in caplog.records)
