"""Whether the model hub can be reached, asked once in seconds, so a model that must be downloaded fails
fast on an offline machine instead of after fastembed's retries, and says what to do instead."""

from __future__ import annotations

import functools
import os
import socket
from typing import Any
from urllib.parse import urlsplit

from huggingface_hub import constants

CONNECT_TIMEOUT = 3.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")

OFFLINE_HINT = (
    "the model hub cannot be reached from here and the model is not in the local cache. "
    "To use the models shipped beside the checkout, run with `--config config/offline.toml` "
    "(or FATHOM_CONFIG=config/offline.toml); or set `path` of the model in your config to a folder "
    "holding model.onnx and its tokenizer files"
)


@functools.cache
def hub_reachable() -> bool:
    """A TCP connect to the hub, with a short timeout. Behind a proxy the answer is left to the download."""
    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def download_options() -> dict[str, Any]:
    """fastembed keyword arguments: the local cache only, when the hub cannot be reached."""
    return {} if hub_reachable() else {"local_files_only": True}


def unavailable_reason(exc: Exception) -> str:
    """Why a hub model could not be loaded: the offline hint when offline, else fastembed's words."""
    return OFFLINE_HINT if not hub_reachable() else str(exc)
