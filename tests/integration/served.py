"""`fathom serve` in its own process as clients meet it, on the offline models: for client SDK tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import MODELS
from tests.integration.ingest_app import write_config
from tests.integration.live_server import fathom_serve, free_ports
from tests.integration.rerank_app import TINY


def served_config(folder: Path, lexical: str = "tantivy") -> Path:
    """The indexer's config with its data folder (folder/data) and the tiny offline reranker, so the
    server gets ready without a model hub."""
    config = write_config(folder, lexical)
    config.write_text(
        f'data_dir = "{folder / "data"}"\n'
        + config.read_text(encoding="utf-8")
        + f'[rerank]\ndefault_model = "{TINY}"\n'
        f'[rerank.models."{TINY}"]\npath = "{MODELS / TINY}"\n'
        '[rerank.models."BAAI/bge-reranker-v2-m3"]\nenabled = false\n',
        encoding="utf-8",
    )
    return config


@contextmanager
def served(config: Path) -> Iterator[str]:
    """The server's base URL once /readyz says ready; its output goes to server.log beside the config."""
    [port] = free_ports(1)
    with fathom_serve(config, port, config.parent / "server.log") as url:
        yield url
