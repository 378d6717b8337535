"""`fathom serve` in a subprocess on a free port, as clients meet it: for tests of real client SDKs."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import MODELS
from tests.integration.ingest_app import start_fathom, write_config
from tests.integration.rerank_app import TINY

START_SECONDS = 120


def served_config(folder: Path, lexical: str = "tantivy") -> Path:
    """The indexer's config plus the tiny offline reranker, so the server gets ready without a hub."""
    config = write_config(folder, lexical)
    with config.open("a", encoding="utf-8") as handle:
        handle.write(
            f'[rerank]\ndefault_model = "{TINY}"\n'
            f'[rerank.models."{TINY}"]\npath = "{MODELS / TINY}"\n'
            '[rerank.models."BAAI/bge-reranker-v2-m3"]\nenabled = false\n'
        )
    return config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(config: Path, data_dir: Path) -> Iterator[str]:
    """The server's base URL once /readyz says ready; the process is stopped on exit."""
    port = free_port()
    process = start_fathom(config, data_dir, "serve", "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, url)
        yield url
    finally:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def wait_ready(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"fathom serve exited with {process.returncode}: {process.communicate()[1]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"fathom serve was not ready within {START_SECONDS} s")
