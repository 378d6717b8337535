"""The server stores failing under Fathom: kill -9 of the Qdrant server, Elasticsearch or PostgreSQL (the
journal and key store) while documents are upserted, and a store that runs out of space.

Each test starts its own server on a free port with the CI scripts (.ci/*.sh), kills that process and
resumes it on the data it left: the shared test servers are never touched. The upsert the kill lands in
answers 503; once the server is back, Fathom's background recovery finishes what the journal recorded
without a restart, and the stores then hold exactly the documents whose upserts answered 2xx, plus
possibly a 503'd batch in full, each once, and no deleted document comes back.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from service.settings import Settings, StateSettings
from service.testing.live_server import free_ports
from tests.conftest import SHARED
from tests.integration.clusters import answers, script, wait_for
from tests.integration.ingest_app import holdings
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, qdrant_server, search_settings
from tests.integration.test_disk_full import fill, mounted

pytestmark = [pytest.mark.anyio, pytest.mark.server_faults]

TMP = Path(os.environ.get("TMPDIR", "/tmp"))
QDRANT_BIN = Path(os.environ.get("QDRANT_BIN", SHARED / "bin" / "qdrant"))
needs_qdrant = pytest.mark.skipif(not QDRANT_BIN.is_file(), reason=f"no qdrant binary at {QDRANT_BIN}")
needs_postgres = pytest.mark.skipif(
    not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")), reason="PostgreSQL is not installed"
)
needs_java = pytest.mark.skipif(
    not (Path("/usr/lib/jvm/temurin-25-jdk-amd64/bin/java").is_file() or os.environ.get("ES_JAVA_HOME")),
    reason="no Java 21+ for Elasticsearch (set ES_JAVA_HOME)",
)
# How long the background recovery may take to finish what the killed store left, once it is back.
RECOVERY_SECONDS = 60.0
Api = tuple[httpx.AsyncClient, dict[str, str]]


@dataclass(frozen=True)
class Server:
    """A server process this test started with a CI script, which it may kill -9 and resume."""

    script: str
    env: dict[str, str]
    pid_file: Path
    url: str

    def kill(self) -> None:
        """kill -9 of the server and of every process it forked (PostgreSQL's backends)."""
        pid = int(self.pid_file.read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
        for victim in [pid, *map(int, children.stdout.split())]:
            with suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def resume(self) -> None:
        script(self.script, "resume", **self.env)


@contextmanager
def started(name: str, env: dict[str, str], pid_file: Path, url: str) -> Iterator[Server]:
    try:
        script(name, "start", **env)
        yield Server(name, env, pid_file, url)
    finally:
        script(name, "stop", **env)


def free_pair() -> int:
    """A free port whose successor is free too (Qdrant's gRPC port is its HTTP port + 1)."""
    for _ in range(50):
        [port] = free_ports(1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


@contextmanager
def own_qdrant(storage: Path | None = None) -> Iterator[Server]:
    port = free_pair()
    env = {"QDRANT_PORT": str(port), **({"QDRANT_STORAGE": str(storage)} if storage else {})}
    with started(
        "qdrant.sh", env, TMP / f"fathom-qdrant-{port}" / "qdrant.pid", f"http://127.0.0.1:{port}"
    ) as s:
        yield s


@contextmanager
def own_postgres() -> Iterator[Server]:
    [port] = free_ports(1)
    env = {"PG_PORT": str(port)}
    pid_file = TMP / f"fathom-postgres-{port}" / "data" / "postmaster.pid"
    with started("postgres.sh", env, pid_file, f"postgresql://fathom@127.0.0.1:{port}/postgres") as s:
        yield s


@contextmanager
def own_elasticsearch() -> Iterator[Server]:
    [port] = free_ports(1)
    env = {"ES_PORT": str(port)}
    pid_file = TMP / f"fathom-elasticsearch-{port}" / "elasticsearch.pid"
    with started("elasticsearch.sh", env, pid_file, f"http://127.0.0.1:{port}") as s:
        yield s


def body(docs: list[Any]) -> dict[str, Any]:
    return {"documents": [{"id": d.id, "title": d.title, "text": d.text} for d in docs]}


@dataclass
class Outcome:
    """What the client was told: ids of batches answered 2xx, ids deleted, and the batches answered 503
    with whether the answer said they were kept to be applied later."""

    accepted: set[str]
    unavailable: list[tuple[set[str], bool]]
    deleted: set[str]


async def upserts_through_a_kill(api: Api, server: Server, *, ready_after: str = "") -> Outcome:
    """Upserts in batches of two; kill -9 of `server` while one is in flight, more while it is down,
    then resume it and wait for the background recovery to leave nothing pending."""
    client, auth = api
    path = "/v1/collections/site/documents"
    assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
    docs = cranfield(limit=16)
    batches = [docs[i : i + 2] for i in range(0, len(docs), 2)]
    outcome = Outcome(set(), [], set())
    for batch in batches[:3]:
        answer = await client.post(path, json=body(batch), headers=auth)
        assert answer.status_code == 200, answer.text
        outcome.accepted |= {d.id for d in batch}
    gone = docs[0].id
    deleted = await client.delete(f"{path}/{gone}", headers=auth)
    assert deleted.status_code in (200, 204), deleted.text
    outcome.deleted.add(gone)

    in_flight = asyncio.create_task(client.post(path, json=body(batches[3]), headers=auth))
    await asyncio.sleep(0.02)
    await asyncio.to_thread(server.kill)
    answered = [(batches[3], await in_flight)]
    for batch in batches[4:6]:  # while the server is down
        answered.append((batch, await client.post(path, json=body(batch), headers=auth)))
    for batch, answer in answered:
        ids = {d.id for d in batch}
        if answer.status_code == 200:
            outcome.accepted |= ids
            continue
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["type"] == "service_unavailable", answer.text
        assert "Traceback" not in answer.text
        outcome.unavailable.append((ids, "will be applied once it is reachable again" in answer.text))
    assert outcome.unavailable, "no upsert met the dead server"

    await asyncio.to_thread(server.resume)
    if ready_after:
        await asyncio.to_thread(wait_for, "the resumed server", answers(ready_after, lambda r: r.is_success))
    await settled(api)
    # Writes work again, through the same Fathom.
    answer = await client.post(path, json=body(batches[6]), headers=auth)
    assert answer.status_code == 200, answer.text
    outcome.accepted |= {d.id for d in batches[6]}
    search = await client.post(
        "/v1/search", json={"query": docs[13].title, "collection": "site"}, headers=auth
    )
    assert search.status_code == 200, search.text
    return outcome


async def settled(api: Api) -> None:
    """Until the collection answers with nothing pending and its stores agree."""
    client, auth = api
    deadline = time.monotonic() + RECOVERY_SECONDS
    info: Any = None
    while time.monotonic() < deadline:
        answer = await client.get("/v1/collections/site", headers=auth)
        if answer.status_code == 200:
            info = answer.json()
            stores = info.get("stores", {})
            if info["pending"] == 0 and stores.get("journal") == stores.get("lexical") == stores.get(
                "vector"
            ):
                return
        await asyncio.sleep(0.3)
    raise AssertionError(f"not recovered within {RECOVERY_SECONDS:.0f}s: {info}")


async def assert_exactly(settings: Settings, outcome: Outcome) -> None:
    """Every 2xx'd document once in each store; a 503'd batch in full if the answer said it was kept,
    else not at all; nothing deleted comes back."""
    held = await holdings(settings, "site")
    assert held.consistent, held
    present = set(held.vector)
    assert outcome.accepted - outcome.deleted <= present, outcome.accepted - outcome.deleted - present
    assert not present & outcome.deleted, "a deleted document came back"
    extra = present - outcome.accepted
    for batch, kept in outcome.unavailable:
        assert batch <= present if kept else not batch & present, (kept, batch, present)
        extra -= batch
    assert not extra, extra


def fault_settings(data_dir: Path, **kwargs: Any) -> Settings:
    """The lease short, so the recovery loop (every half lease) takes over within a second."""
    state = kwargs.pop("state", {})
    settings = search_settings(data_dir, rerank={"enabled": False}, **kwargs)
    return msgspec.structs.replace(settings, state=StateSettings(lease_seconds=1.0, **state))


@needs_qdrant
async def test_kill_9_of_the_qdrant_server_during_upserts(tmp_path: Path) -> None:
    with own_qdrant() as qdrant:
        settings = fault_settings(tmp_path, qdrant=qdrant_server(qdrant.url))
        auth = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
        async with running(settings) as client:
            outcome = await upserts_through_a_kill((client, auth), qdrant)
        await assert_exactly(settings, outcome)


@needs_postgres
@needs_qdrant
async def test_kill_9_of_postgresql_during_upserts(tmp_path: Path) -> None:
    """The journal and keys on PostgreSQL, the vectors on Qdrant local: PostgreSQL is killed."""
    with own_postgres() as postgres:
        settings = fault_settings(tmp_path, state={"url": postgres.url})
        auth = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
        async with running(settings) as client:
            outcome = await upserts_through_a_kill((client, auth), postgres)
        await assert_exactly(settings, outcome)


@needs_java
async def test_kill_9_of_elasticsearch_during_upserts(tmp_path: Path) -> None:
    with own_elasticsearch() as es:
        settings = fault_settings(tmp_path, lexical="elasticsearch", elasticsearch_url=es.url)
        auth = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
        async with running(settings) as client:
            health = f"{es.url}/_cluster/health?wait_for_status=yellow&timeout=1s"
            outcome = await upserts_through_a_kill((client, auth), es, ready_after=health)
        await assert_exactly(settings, outcome)


async def out_of_space_then_freed(api: Api, block: Any, unblock: Any) -> None:
    """An upsert while the store refuses writes for space is a 507; searches keep answering; once space
    is back, the refused batch is in the stores if and only if the 507 said it would be applied."""
    client, auth = api
    path = "/v1/collections/site/documents"
    created = await client.put("/v1/collections/site", headers=auth)
    assert created.status_code == 201, created.text
    docs = cranfield(limit=6)
    assert (await client.post(path, json=body(docs[:3]), headers=auth)).status_code == 200
    await asyncio.to_thread(block)
    answer = await client.post(path, json=body(docs[3:]), headers=auth)
    assert answer.status_code == 507, answer.text
    error = answer.json()["error"]
    assert error["type"] == "insufficient_storage" and "Traceback" not in answer.text, error
    kept = "will be applied once space is freed" in error["message"]
    search = await client.post(
        "/v1/search", json={"query": docs[1].title, "collection": "site"}, headers=auth
    )
    assert search.status_code == 200, search.text
    assert docs[1].id in {hit["id"] for hit in search.json()["hits"]}, search.text

    await asyncio.to_thread(unblock)
    await settled(api)
    await asyncio.sleep(1.5)  # past a recovery pass or two: a batch said to have failed must not land
    await settled(api)
    info = (await client.get("/v1/collections/site", headers=auth)).json()
    assert info["documents"] == (6 if kept else 3), (error["message"], info)


@needs_java
async def test_elasticsearch_at_its_flood_stage_is_507_and_searches_answer(tmp_path: Path) -> None:
    """The flood-stage watermark puts a read-only-allow-delete block on the index, which is what a full
    disk does to Elasticsearch; it is set here directly, rather than by waiting for disk statistics."""
    with own_elasticsearch() as es:
        settings = fault_settings(tmp_path, lexical="elasticsearch", elasticsearch_url=es.url)
        index = f"{settings.elasticsearch.index_prefix}site"
        auth = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}

        def blocked(on: bool) -> None:
            answer = httpx.put(
                f"{es.url}/{index}*/_settings",
                json={"index.blocks.read_only_allow_delete": True if on else None},
                timeout=30,
            )
            assert answer.is_success, answer.text

        async with running(settings) as client:
            await out_of_space_then_freed((client, auth), lambda: blocked(True), lambda: blocked(False))
        held = await holdings(settings, "site")
        assert held.consistent, held


@needs_qdrant
async def test_the_qdrant_server_on_a_full_disk_is_507_and_searches_answer(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fathom-qdrant-full-"))
    try:
        # Room for a collection's write-ahead log (Qdrant refuses to create one without), not much more.
        with mounted(folder / "disk", "96m") as disk, own_qdrant(storage=disk / "storage") as qdrant:
            settings = fault_settings(tmp_path, qdrant=qdrant_server(qdrant.url))
            auth = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
            async with running(settings) as client:
                await out_of_space_then_freed((client, auth), lambda: fill(disk), (disk / "filler").unlink)
            held = await holdings(settings, "site")
            assert held.consistent, held
    finally:
        shutil.rmtree(folder, ignore_errors=True)
