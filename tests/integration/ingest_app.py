"""The indexer as an operator runs it (`fathom index` in a subprocess), and what the stores then hold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.backends.qdrant import QdrantIndex
from service.backends.stack import open_lexical, qdrant_path
from service.ingest.documents import Document
from service.settings import Settings
from service.stores import open_journal
from tests.conftest import offline_toml
from tests.integration.search_app import ELASTICSEARCH_URL

FATHOM = str(Path(sys.executable).with_name("fathom"))
# A client of a running app and the headers of a key holding every scope (conftest's collections_api).
Api = tuple[httpx.AsyncClient, dict[str, str]]
MINILM_DIMENSIONS = 384


def write_config(folder: Path, lexical: str = "tantivy") -> Path:
    """A config file as an operator writes it: the offline models (the tiny reranker), the chosen
    lexical store."""
    config = folder / "fathom.toml"
    config.write_text(
        offline_toml() + f'[search]\nlexical = "{lexical}"\n'
        f'[elasticsearch]\nurl = "{ELASTICSEARCH_URL or "http://127.0.0.1:9200"}"\n'
        f'index_prefix = "t{os.getpid()}-"\n',
        encoding="utf-8",
    )
    return config


def cli_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "FATHOM_DATA_DIR": str(data_dir)}
    env.pop("FATHOM_CONFIG", None)
    return env


def fathom(
    config: Path, data_dir: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FATHOM, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=cli_env(data_dir),
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True, slots=True)
class MeasuredRun:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_bytes: int  # the process's own peak resident memory (from wait4, not shared with others)
    seconds: float
    timed_out: bool


# Runs the command and writes its peak RSS (KiB) to the file named first. A child forked from this test
# process starts with this process's high-water mark as its ru_maxrss (Linux keeps it across exec), and
# a test process that has loaded models holds gigabytes: a small wrapper's child starts from the
# wrapper's few megabytes instead.
_PEAK_WRAPPER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def fathom_measured(config: Path, data_dir: Path, *args: str, timeout: float = 300) -> MeasuredRun:
    """`fathom` as `fathom()` runs it, with its peak memory and wall time; killed after `timeout`."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        peak = Path(tmp) / "peak_kib"
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-c", _PEAK_WRAPPER, str(peak), FATHOM, "--config", str(config), *args],
            stdout=out,
            stderr=err,
            env=cli_env(data_dir),
            start_new_session=True,  # so a timeout kills the wrapper and the indexer together
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            os.killpg(process.pid, signal.SIGKILL)

        killer = threading.Timer(timeout, kill)
        killer.start()
        try:
            process.wait()
        finally:
            killer.cancel()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        peak_kib = int(peak.read_text()) if peak.is_file() else 0
        return MeasuredRun(
            process.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            peak_kib * 1024,  # Linux counts it in KiB
            seconds,
            killed.is_set(),
        )


def start_fathom(config: Path, data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FATHOM, "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )


@dataclass(frozen=True, slots=True)
class Holdings:
    """Chunks per document id in the journal and in each store."""

    journal: dict[str, int]
    lexical: dict[str, int]
    vector: dict[str, int]
    pending: int
    lexical_total: int
    vector_total: int

    @property
    def consistent(self) -> bool:
        """All three agree, nothing is unfinished, and no chunk is stored twice."""
        return (
            self.journal == self.lexical == self.vector
            and self.pending == 0
            and self.lexical_total == self.vector_total == sum(self.journal.values())
        )


async def holdings(settings: Settings, collection: str) -> Holdings:
    """Read with no process writing: Qdrant local mode allows one client per folder."""
    journal = open_journal(settings)
    lexical = open_lexical(settings)
    vectors = QdrantIndex(settings.qdrant, dimensions=MINILM_DIMENSIONS, local_path=qdrant_path(settings))
    try:
        return Holdings(
            journal.chunk_counts(collection),
            await lexical.chunk_counts(collection),
            await vectors.chunk_counts(collection),
            len(journal.pending(collection)),
            await lexical.count_chunks(collection),
            await vectors.count_chunks(collection),
        )
    finally:
        journal.close()
        await lexical.close()
        await vectors.close()


def documents_body(documents: Sequence[Document]) -> dict[str, Any]:
    """The body of POST /v1/collections/{name}/documents."""
    return {
        "documents": [
            {"id": d.id, "title": d.title, "text": d.text, "metadata": d.metadata} for d in documents
        ]
    }
