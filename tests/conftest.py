"""Fixtures every test may use: where ../shared is, and the asyncio backend for anyio tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FATHOM_SHARED_DIR", REPO.parent / "shared"))
MODELS = SHARED / "models"
DATA = SHARED / "data"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
