"""`fathom serve` in its own process as clients meet it, on the offline models: for client SDK tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.testing.live_server import fathom_serve
from tests.integration.ingest_app import write_config


def served_config(folder: Path, lexical: str = "tantivy") -> Path:
    """The indexer's config with its data folder (folder/data), so a server gets ready on it without a
    model hub."""
    config = write_config(folder, lexical)
    config.write_text(
        f'data_dir = "{folder / "data"}"\n' + config.read_text(encoding="utf-8"), encoding="utf-8"
    )
    return config


@contextmanager
def served(config: Path) -> Iterator[str]:
    """The server's base URL once /readyz says ready; its output goes to server.log beside the config."""
    with fathom_serve(config, log=config.parent / "server.log") as server:
        yield server.url
