"""[embedding] url: indexing and searching through a second Fathom's /v1/embeddings, a real server
that is killed and restarted in the middle of an index run."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import msgspec
import pytest
from tokenizers import Tokenizer

from service.backends.embedder import untruncated_copy
from service.ingest.chunking import Chunker, ChunkingPolicy
from service.ingest.documents import Document
from service.settings import Settings, settings_from_dict
from service.testing.live_server import fathom_serve, free_ports
from tests.conftest import MODELS
from tests.integration.ingest_app import FATHOM, cli_env, holdings, write_config
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, search_settings
from tests.integration.served import served_config
from tests.integration.test_embedder_fingerprint import recorded
from tests.integration.test_indexer_cli import SMALL_CHUNKS, summary, write_jsonl

pytestmark = pytest.mark.anyio
DOCUMENTS = 80
PROGRESS = re.compile(rf"(\d+)/{DOCUMENTS}\b")


class Remote:
    """`fathom serve` on a fixed port, to be killed and started again on it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.config = served_config(folder)
        self.settings = settings_from_dict({"data_dir": str(folder / "data")})
        self.key = new_key(self.settings, "indexer")
        [self.port] = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._exits = ExitStack()

    def start(self) -> None:
        log = self.config.parent / f"server-{time.monotonic_ns()}.log"
        self.process = self._exits.enter_context(fathom_serve(self.config, port=self.port, log=log)).process

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        self._exits.close()


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    server = Remote(tmp_path / "remote")
    server.start()
    yield server
    server.close()


def remote_embedding(remote: Remote) -> dict[str, object]:
    return {"url": remote.url, "api_key": remote.key, "batch_size": 8, "concurrency": 2, "max_retries": 12}


def indexer_config(folder: Path, remote: Remote) -> Path:
    config = write_config(folder)
    lines = "".join(f"{key} = {value!r}\n" for key, value in remote_embedding(remote).items())
    config.write_text(config.read_text().replace("[embedding]\n", f"[embedding]\n{lines}"), encoding="utf-8")
    return config


def expected_chunks(documents: list[Document]) -> int:
    """The source's chunks, cut as SMALL_CHUNKS cuts them."""
    tokenizer = untruncated_copy(Tokenizer.from_file(str(MODELS / "all-MiniLM-L6-v2" / "tokenizer.json")))
    chunker = Chunker(tokenizer, ChunkingPolicy(64, 8))
    return sum(len(chunker.chunks(document)) for document in documents)


def progress(log: Path) -> int:
    found = PROGRESS.findall(log.read_text(encoding="utf-8", errors="replace"))
    return int(found[-1]) if found else 0


def with_remote(settings: Settings, remote: Remote) -> Settings:
    raw = msgspec.to_builtins(settings)
    raw["embedding"].update(remote_embedding(remote))
    return settings_from_dict(raw)


def index_through_restart(
    config: Path, data: Path, source: Path, remote: Remote
) -> tuple[int, str, str, int]:
    """`fathom index` with the embedding service killed and started again once some documents are
    embedded and most are not; its exit status, output, error output and progress at the kill."""
    log = data.parent / "index.log"
    command = [FATHOM, "--config", str(config), "index", str(source), "--collection", "c", *SMALL_CHUNKS]
    with log.open("w") as errors:
        indexer = subprocess.Popen(
            [*command, "--batch-size", "40"],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=cli_env(data),
        )
        deadline = time.monotonic() + 240
        while not 5 <= progress(log) < DOCUMENTS // 2 and time.monotonic() < deadline:
            assert indexer.poll() is None, log.read_text()
            time.sleep(0.05)
        killed_at = progress(log)
        remote.kill()
        time.sleep(2)
        remote.start()
        stdout, _ = indexer.communicate(timeout=300)
    return indexer.returncode, stdout, log.read_text(), killed_at


async def test_an_index_run_rides_out_a_restart_of_the_embedding_service(
    tmp_path: Path, remote: Remote
) -> None:
    documents = cranfield(limit=DOCUMENTS)
    source = write_jsonl(tmp_path / "corpus.jsonl", documents)
    config, data = indexer_config(tmp_path, remote), tmp_path / "data"
    status, stdout, stderr, killed_at = index_through_restart(config, data, source, remote)
    assert status == 0, stderr
    assert 5 <= killed_at < DOCUMENTS // 2
    assert "retry 1 of 12" in stderr  # it did meet the dead server
    assert summary(stdout) == (DOCUMENTS, 0, 0, 0, 0)
    # Nothing lost, nothing twice: every store holds each chunk of the source once.
    settings = search_settings(data)
    held = await holdings(settings, "c")
    chunks = expected_chunks(documents)
    assert held.consistent and len(held.journal) == DOCUMENTS
    assert held.vector_total == held.lexical_total == chunks
    fingerprint = recorded(data, "c")
    assert fingerprint is not None and fingerprint.model_hash.startswith("probe:")
    assert fingerprint.model == "sentence-transformers/all-MiniLM-L6-v2" and fingerprint.dimensions == 384

    # The query side embeds through the service too; this process's own model is another embedder.
    through_remote = with_remote(settings, remote)
    query = {"query": "boundary layer transition", "collection": "c", "rerank": {"enabled": False}}
    for own, expected in ((through_remote, 200), (settings, 409)):
        headers = {"Authorization": f"Bearer {new_key(own, f'k{expected}')}"}
        async with running(own) as client:
            answer = await client.post("/v1/search", json=query, headers=headers)
        assert answer.status_code == expected, answer.text
        if expected == 200:
            assert answer.json()["hits"] and not answer.json()["degraded"]
        else:
            assert "model_hash" in answer.json()["message"]
