"""What the route handlers share, built once per app by create_app and reached through app.state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection

from service.api.metrics import Metrics
from service.auth.keys import KeyStore
from service.rerank.registry import ModelRegistry
from service.settings import Settings


@dataclass(slots=True)
class Services:
    settings: Settings
    keys: KeyStore
    models: ModelRegistry
    metrics: Metrics


def services_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Services:
    services: Services = connection.app.state["services"]
    return services
