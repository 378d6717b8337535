"""Two `fathom serve` replicas on one PostgreSQL state, one Elasticsearch and one Qdrant server.

Requests are spread over both replicas, as a load balancer would: the key's quota is spent exactly once,
a revoked key is refused by both at once, and a rate limit is one limit, not one per replica. Writes to
one collection through both converge, and a replica killed mid-write has its work finished by the
other once its lease runs out. The kill is the module's last test: it leaves one replica standing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from service.auth.keys import Keys
from service.ingest.documents import Document
from service.settings import settings_from_dict
from service.stores import open_keys
from service.testing.live_server import fathom_serve, free_ports
from tests.conftest import bearer, offline_toml
from tests.integration.ingest_app import fathom
from tests.integration.search_app import (
    ELASTICSEARCH_URL,
    QDRANT_URL,
    cranfield,
    needs_elasticsearch,
    needs_qdrant_server,
)
from tests.integration.state_db import fresh_database, needs_postgres

pytestmark = [*needs_postgres, *needs_elasticsearch, *needs_qdrant_server]

RERANK = {"query": "boundary layer", "documents": ["laminar flow over a plate", "wing flutter"]}
# Short, so the takeover test waits seconds, not the default 30 s.
LEASE_SECONDS = 2.0


def replica_config(data_dir: Path, state_url: str, name: str, prefix: str) -> str:
    """Both replicas' config but for data_dir and name; `prefix` keeps this run's collections apart from
    any an earlier run left in the shared Elasticsearch and Qdrant."""
    return f"""
data_dir = "{data_dir}"
[state]
url = "{state_url}"
lease_seconds = {LEASE_SECONDS}
replica_name = "{name}"
{offline_toml()}[search]
lexical = "elasticsearch"
[elasticsearch]
url = "{ELASTICSEARCH_URL}"
index_prefix = "{prefix}"
[qdrant]
url = "{QDRANT_URL}"
prefer_grpc = true
grpc_port = {int(QDRANT_URL.rsplit(":", 1)[1]) + 1}
collection_prefix = "{prefix}"
"""


@dataclass
class Replicas:
    urls: list[str]
    # the key store as `fathom keys` on that config sees it
    keys: Keys
    processes: list[subprocess.Popen[bytes]]
    configs: list[Path]
    state_url: str
    root: Path


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    prefix = f"replicas-{uuid.uuid4().hex[:8]}-"
    with fresh_database() as url:
        configs = []
        for name in ("a", "b"):
            config = root / f"{name}.toml"
            config.write_text(replica_config(root / name, url, name, prefix))
            configs.append(config)
        keys = open_keys(settings_from_dict({"data_dir": str(root), "state": {"url": url}}))
        one, two = free_ports(2)
        try:
            with (
                fathom_serve(configs[0], port=one, log=root / "a.log") as first,
                fathom_serve(configs[1], port=two, log=root / "b.log") as second,
            ):
                servers = [first, second]
                yield Replicas(
                    [s.url for s in servers], keys, [s.process for s in servers], configs, url, root
                )
        finally:
            keys.close()


async def spread(urls: list[str], key: str, count: int) -> Counter[int]:
    """`count` concurrent reranks, alternating between the replicas; how many of each status."""
    async with httpx.AsyncClient(timeout=60) as client:

        async def call(i: int) -> int:
            response = await client.post(f"{urls[i % 2]}/v1/rerank", json=RERANK, headers=bearer(key))
            return response.status_code

        return Counter(await asyncio.gather(*(call(i) for i in range(count))))


def test_quota_is_spent_exactly_once_across_replicas(replicas: Replicas, record_property: Any) -> None:
    urls, keys = replicas.urls, replicas.keys
    key = keys.create("metered", quota=50)
    statuses = asyncio.run(spread(urls, key, 100))
    record_property("statuses", dict(statuses))
    print(f"replicas: quota 50, 100 concurrent requests over both: {dict(statuses)}")
    assert statuses == {200: 50, 402: 50}
    [metered] = [k for k in keys.list() if k.name == "metered"]
    assert metered.used == 50


def test_revocation_reaches_the_other_replica_within_a_second(
    replicas: Replicas, record_property: Any
) -> None:
    urls, keys = replicas.urls, replicas.keys
    key = keys.create("leaver")
    for url in urls:
        assert httpx.post(f"{url}/v1/rerank", json=RERANK, headers=bearer(key), timeout=30).status_code == 200
    assert keys.revoke("leaver")  # what `fathom keys revoke leaver` does on this config
    revoked = time.monotonic()
    refused = {}
    for url in urls:
        while httpx.post(f"{url}/v1/rerank", json=RERANK, headers=bearer(key), timeout=30).status_code != 401:
            assert time.monotonic() - revoked < 1.0, f"{url} still accepts the revoked key"
            time.sleep(0.01)
        refused[url] = time.monotonic() - revoked
    record_property("refused_after_s", refused)
    print(f"replicas: revoked key refused after {', '.join(f'{s * 1000:.0f} ms' for s in refused.values())}")


def test_rate_limit_is_shared_across_replicas(replicas: Replicas, record_property: Any) -> None:
    urls, keys = replicas.urls, replicas.keys
    key = keys.create("limited", rate_limit=30)
    started = time.monotonic()
    statuses = asyncio.run(spread(urls, key, 60))
    elapsed = time.monotonic() - started
    record_property("statuses", dict(statuses))
    print(f"replicas: 30/minute, 60 requests over both in {elapsed:.2f}s: {dict(statuses)}")
    # The burst is the per-minute limit, then one every 2 s: one limit for both, not 30 each.
    assert set(statuses) == {200, 429}
    assert 30 <= statuses[200] <= 30 + math.ceil(elapsed / 2)


def documents_body(documents: Sequence[Document]) -> dict[str, Any]:
    return {
        "documents": [
            {"id": d.id, "title": d.title, "text": d.text, "metadata": d.metadata} for d in documents
        ]
    }


def edited(document: Document) -> Document:
    return Document(document.id, document.title, document.text + " (revised)", document.metadata)


def batches(documents: Sequence[Document], size: int) -> list[Sequence[Document]]:
    return [documents[start : start + size] for start in range(0, len(documents), size)]


def converged(replicas: Replicas, urls: Sequence[str], collection: str, headers: dict[str, str]) -> int:
    """`fathom verify` is clean, and every replica in `urls` counts the same documents and chunks in the
    journal and in each store, nothing unfinished; the number of documents."""
    verify = fathom(replicas.configs[1], replicas.root / "b", "verify", "--collection", collection)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "journal and stores agree" in verify.stdout
    seen = []
    for url in urls:
        info = httpx.get(f"{url}/v1/collections/{collection}", headers=headers, timeout=60).json()
        stores = info["stores"]
        assert info["pending"] == 0, info
        assert stores["journal"] == stores["lexical"] == stores["vector"], info
        seen.append(stores["journal"]["documents"])
    assert len(set(seen)) == 1
    return int(seen[0])


def committed_ids(state_url: str, collection: str) -> set[str]:
    with psycopg.connect(state_url) as conn:
        rows = conn.execute("SELECT doc_id FROM journal_documents WHERE collection = %s", (collection,))
        return {str(doc_id) for (doc_id,) in rows}


def open_intents(state_url: str, collection: str, owner: str = "%") -> set[str]:
    """Unfinished changes in the collection, of owners whose id matches the LIKE pattern."""
    with psycopg.connect(state_url) as conn:
        rows = conn.execute(
            "SELECT doc_id FROM journal_intents WHERE collection = %s AND owner LIKE %s",
            (collection, owner),
        )
        return {str(doc_id) for (doc_id,) in rows}


def test_writes_through_both_replicas_converge(replicas: Replicas, record_property: Any) -> None:
    """Upserts (overlapping and distinct ids, some edited) and deletes through both replicas at once."""
    urls = replicas.urls
    headers = bearer(replicas.keys.create("pusher", scopes=frozenset({"admin", "write"})))
    docs = cranfield(limit=64)
    created = httpx.put(f"{urls[0]}/v1/collections/shared", headers=headers, timeout=60)
    assert created.status_code in (200, 201), created.text
    seeded = httpx.post(
        f"{urls[1]}/v1/collections/shared/documents",
        json=documents_body(docs[:20]),
        headers=headers,
        timeout=300,
    )
    assert seeded.status_code == 200, seeded.text

    async def both_at_once() -> list[int]:
        async with httpx.AsyncClient(timeout=600, headers=headers) as client:

            def upsert(url: str, part: Sequence[Document]) -> Awaitable[httpx.Response]:
                return client.post(f"{url}/v1/collections/shared/documents", json=documents_body(part))

            def delete(url: str, document: Document) -> Awaitable[httpx.Response]:
                return client.delete(f"{url}/v1/collections/shared/documents/{document.id}")

            calls = [upsert(urls[0], part) for part in batches(docs[20:50], 8)]
            calls += [upsert(urls[1], part) for part in batches(docs[36:64], 8)]  # 36..49 through both
            calls += [upsert(urls[i % 2], [edited(d)]) for i, d in enumerate(docs[10:20])]
            calls += [delete(urls[i % 2], d) for i, d in enumerate(docs[:10])]
            return [response.status_code for response in await asyncio.gather(*calls)]

    started = time.monotonic()
    statuses = asyncio.run(both_at_once())
    elapsed = time.monotonic() - started
    print(f"replicas: {len(statuses)} concurrent writes to one collection over both in {elapsed:.1f}s")
    record_property("concurrent_writes_s", elapsed)
    assert statuses == [200] * len(statuses)
    expected = {d.id for d in docs[10:]}
    assert committed_ids(replicas.state_url, "shared") == expected
    assert converged(replicas, urls, "shared", headers) == len(expected)
    # The edits won: the journal holds the revised version of each edited document.
    with psycopg.connect(replicas.state_url) as conn:
        hashes = dict(conn.execute("SELECT doc_id, content_hash FROM journal_documents").fetchall())
    assert all(hashes[d.id] == edited(d).content_hash() for d in docs[10:20])


def post_in_background(url: str, body: dict[str, Any], headers: dict[str, str]) -> threading.Thread:
    """An upsert sent from a thread; the replica it goes to is killed before it answers."""

    def send() -> None:
        with contextlib.suppress(httpx.TransportError):
            httpx.post(url, json=body, headers=headers, timeout=600)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_collection_deleted_through_one_replica_stays_deleted(replicas: Replicas) -> None:
    """An upsert runs through a; b deletes the collection meanwhile: the delete waits for a's batch,
    a's next batch finds the collection gone (404), and nothing of it comes back in either store."""
    one, two = replicas.urls
    headers = bearer(replicas.keys.create("dropper", scopes=frozenset({"admin", "write"})))
    many = [Document(f"d{n}", "", f"document number {n} about boundary layers", {}) for n in range(320)]
    assert httpx.put(f"{one}/v1/collections/gone", headers=headers, timeout=60).status_code in (200, 201)
    statuses: list[int] = []

    def upsert() -> None:
        response = httpx.post(
            f"{one}/v1/collections/gone/documents", json=documents_body(many), headers=headers, timeout=600
        )
        statuses.append(response.status_code)

    upload = threading.Thread(target=upsert)
    upload.start()
    deadline = time.monotonic() + 300
    while not committed_ids(replicas.state_url, "gone") and time.monotonic() < deadline:
        time.sleep(0.02)  # until the first of five batches is in
    assert httpx.delete(f"{two}/v1/collections/gone", headers=headers, timeout=300).status_code == 200
    upload.join()
    assert statuses == [404]
    for url in replicas.urls:
        assert httpx.get(f"{url}/v1/collections/gone", headers=headers, timeout=60).status_code == 404
    assert httpx.put(f"{two}/v1/collections/gone", headers=headers, timeout=60).status_code in (200, 201)
    info = httpx.get(f"{one}/v1/collections/gone", headers=headers, timeout=60).json()
    assert info["stores"]["lexical"] == info["stores"]["vector"] == {"documents": 0, "chunks": 0}, info


def test_a_killed_replica_is_taken_over_by_the_other(replicas: Replicas, record_property: Any) -> None:
    """kill -9 replica a while its intents are open in a large upsert: replica b, with no request,
    finishes them once the lease runs out; the client's retry through b then completes the rest.
    Nothing is lost, nothing doubled, `fathom verify` clean. Runs last: a stays dead."""
    survivor = replicas.urls[1]
    headers = bearer(replicas.keys.create("bulk", scopes=frozenset({"admin", "write"})))
    docs = cranfield(limit=400)[100:]
    created = httpx.put(f"{survivor}/v1/collections/bulk", headers=headers, timeout=60)
    assert created.status_code in (200, 201), created.text

    upload = post_in_background(
        f"{replicas.urls[0]}/v1/collections/bulk/documents", documents_body(docs), headers
    )
    deadline = time.monotonic() + 600
    # Kill once a batch after the first is open: some work committed, some in the stores' hands.
    while not committed_ids(replicas.state_url, "bulk") and upload.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    with psycopg.connect(replicas.state_url, autocommit=True) as conn:
        while upload.is_alive() and time.monotonic() < deadline:
            # The next batch's intents, polled on one connection: the kill follows within a millisecond.
            query = "SELECT 1 FROM journal_intents WHERE collection = 'bulk' AND owner LIKE 'a:%' LIMIT 1"
            if conn.execute(query).fetchone():
                break
    replicas.processes[0].kill()
    killed = time.monotonic()
    replicas.processes[0].wait()
    upload.join()
    # What a left behind, now that it is dead.
    in_flight = open_intents(replicas.state_url, "bulk", "a:%")
    committed = committed_ids(replicas.state_url, "bulk")
    assert in_flight and committed, "replica a was not caught mid-write"
    while open_intents(replicas.state_url, "bulk", "a:%") and time.monotonic() - killed < 120:
        time.sleep(0.02)
    claimed = time.monotonic() - killed
    while open_intents(replicas.state_url, "bulk") and time.monotonic() - killed < 120:
        time.sleep(0.05)
    takeover = time.monotonic() - killed
    print(
        f"replicas: killed a with {len(in_flight)} changes open ({len(committed)} documents committed);"
        f" b claimed them {claimed:.2f}s and finished them {takeover:.2f}s after the kill"
        f" (lease {LEASE_SECONDS}s)"
    )
    record_property("takeover_s", {"claimed": claimed, "finished": takeover})
    assert not open_intents(replicas.state_url, "bulk"), "replica b did not take over"
    after = committed_ids(replicas.state_url, "bulk")
    # What a had begun is finished, and nothing more: the rest was never accepted.
    assert after == committed | in_flight
    assert converged(replicas, [survivor], "bulk", headers) == len(after)
    # The client saw its request fail and sends it again, to the replica still standing.
    retried = httpx.post(
        f"{survivor}/v1/collections/bulk/documents", json=documents_body(docs), headers=headers, timeout=900
    )
    assert retried.status_code == 200, retried.text
    assert (retried.json()["unchanged"], retried.json()["added"]) == (len(after), len(docs) - len(after))
    assert converged(replicas, [survivor], "bulk", headers) == len(docs)
