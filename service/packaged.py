"""Files shipped inside the package (service/defaults/), read the same way from a checkout or a wheel."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def packaged(*parts: str) -> Traversable:
    """service/defaults/<parts>: package data, so `pip install .` carries it (see pyproject.toml)."""
    return resources.files("service").joinpath("defaults", *parts)
