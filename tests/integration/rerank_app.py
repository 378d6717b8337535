"""Building a real Fathom app on the offline models for API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from service.app import create_app
from service.auth.scopes import SCOPES
from service.settings import Settings, settings_from_dict
from service.stores import open_keys
from tests.conftest import BENCH, MODELS, TINY


def rerank_settings(data_dir: Path, **rerank: Any) -> Settings:
    models: dict[str, Any] = {
        TINY: {"path": str(MODELS / TINY)},
        BENCH: {"path": str(MODELS / BENCH)},
        "broken-model": {"path": str(data_dir / "no-such-folder")},
    }
    return settings_from_dict(
        {
            "data_dir": str(data_dir),
            "rerank": {"default_model": TINY, "models": models, **rerank},
            # These tests are about reranking: leave the search stores closed.
            "search": {"enabled": False},
        }
    )


def new_key(
    settings: Settings,
    name: str,
    *,
    scopes: tuple[str, ...] = SCOPES,
    collections: tuple[str, ...] | None = None,
    **limits: int | None,
) -> str:
    """A key with every scope unless the test is about scopes: most tests exercise other things."""
    store = open_keys(settings)
    try:
        return store.create(
            name,
            scopes=frozenset(scopes),
            collections=None if collections is None else frozenset(collections),
            **limits,
        )
    finally:
        store.close()


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the test's own event loop, lifespan run, models and search stack opened (or failed)."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://fathom") as client:
        await app.state["runtime"].wait_started()
        yield client
