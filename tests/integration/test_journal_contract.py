"""The Journal contract, run over both adapters: SQLite under data_dir and PostgreSQL shared by replicas.

"Replicas" here are journal objects on one state, each with its own owner id and connections, as two
`fathom serve` processes would have; a killed writer is a real process killed with SIGKILL.
tests/integration/test_replicas.py does the whole write path with real servers.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.ingest.journal import Committed, Intent, Journal, LeaseLost
from service.settings import Settings
from service.state.postgres import MIGRATIONS, Postgres
from service.stores import open_journal
from tests.integration.state_db import ADAPTERS, state_settings

# The shortest lease settings allow: long enough for one step of a test, short enough to wait out.
LEASE = 0.5
Opener = Callable[..., Journal]


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(adapter: str, tmp_path: Path) -> Iterator[Settings]:
    with state_settings(adapter, tmp_path, lease_seconds=LEASE) as settings:
        yield settings


@pytest.fixture
def opener(settings: Settings) -> Iterator[Opener]:
    """Opens another journal on the same state, as another replica would; all closed at the end."""
    opened: list[Journal] = []

    def open_one() -> Journal:
        opened.append(open_journal(settings))
        return opened[-1]

    yield open_one
    for journal in opened:
        journal.close()


def write(doc_id: str, digest: str = "h") -> Intent:
    return Intent(doc_id, "write", digest, f'{{"id": "{doc_id}"}}')


def outlive_lease() -> None:
    time.sleep(LEASE + 0.2)


def test_committed_state_and_collections_are_shared(opener: Opener) -> None:
    one, two = opener(), opener()
    assert one.add_collection("c") and not two.add_collection("c")
    first = two.generation("c")
    assert first is not None and one.generation("c") == first
    assert two.collections() == {"c": "ready"}
    one.begin("c", [write("a", "h1"), write("b")])
    one.commit_writes("c", [("a", "h1", 3), ("b", "h", 2)], run=7)
    assert two.committed("c", ["a", "b", "z"]) == {"a": Committed("h1", 3), "b": Committed("h", 2)}
    assert two.chunk_counts("c") == {"a": 3, "b": 2} and two.document_count("c") == 2
    # Dropped and created again: a new generation, so work begun on the old one can tell.
    one.mark_dropping("c")
    assert two.generation("c") is None and two.collections() == {"c": "dropping"}
    two.forget_collection("c")
    assert one.collections() == {} and one.chunk_counts("c") == {}
    assert one.add_collection("c")
    assert two.generation("c") not in (None, first)


def test_a_collection_keeps_the_fingerprint_of_its_embedder(opener: Opener) -> None:
    one, two = opener(), opener()
    assert one.add_collection("c", '{"model": "a"}')
    # Created already: the first embedder's fingerprint stays.
    assert not two.add_collection("c", '{"model": "b"}')
    assert two.embedder("c") == '{"model": "a"}'
    # A collection from before fingerprints has none until one is recorded.
    assert one.add_collection("old") and two.embedder("old") is None
    two.record_embedder("old", '{"model": "b"}')
    assert one.embedder("old") == '{"model": "b"}' and one.embedder("missing") is None


def test_unseen_and_invalidate(opener: Opener) -> None:
    journal = opener()
    journal.begin("c", [write("a"), write("b")])
    journal.commit_writes("c", [("a", "h", 1), ("b", "h", 2)], run=1)
    journal.mark_seen("c", ["a"], run=2)
    assert journal.unseen("c", run=2) == ["b"]
    journal.invalidate("c", ["a"])
    assert journal.committed("c", ["a"])["a"].content_hash == ""


def test_a_live_lease_is_not_taken_over(opener: Opener) -> None:
    one, two = opener(), opener()
    one.begin("c", [write("a"), Intent("b", "delete")])
    assert [i.doc_id for i in two.pending("c")] == ["a", "b"]  # everyone sees them, for verify
    assert two.claim("c") == [] and two.claimable() == []
    # Its owner may redo its own at any time (a write of its own that failed half-way).
    assert [i.doc_id for i in one.claim("c")] == ["a", "b"]


def test_renewing_keeps_the_lease(opener: Opener) -> None:
    one, two = opener(), opener()
    one.begin("c", [write("a")])
    for _ in range(5):
        time.sleep(LEASE / 3)
        assert one.renew("c", ["a"])
        assert two.claim("c") == []
    outlive_lease()
    assert two.claimable() == ["c"]
    [taken] = two.claim("c")
    assert taken == write("a")
    assert not one.renew("c", ["a"])  # its owner learns it lost them


def test_an_ex_owner_cannot_commit_after_a_takeover(opener: Opener) -> None:
    """The slow ex-owner's commit fails as a whole; the new owner's goes through, once."""
    one, two = opener(), opener()
    one.begin("c", [write("a", "h1"), write("b", "h1")])
    outlive_lease()
    assert {i.doc_id for i in two.claim("c")} == {"a", "b"}
    with pytest.raises(LeaseLost, match="took over 2 of 2"):
        one.commit_writes("c", [("a", "h1", 1), ("b", "h1", 1)], run=0)
    with pytest.raises(LeaseLost):
        one.commit_deletes("c", ["a"])
    with pytest.raises(LeaseLost):
        one.park("c", "a", "no")
    assert one.committed("c", ["a", "b"]) == {}
    two.commit_writes("c", [("a", "h1", 1), ("b", "h1", 1)], run=0)
    assert one.pending("c") == [] and one.document_count("c") == 2


def test_a_newer_intent_replaces_an_older_one_and_fences_its_owner(opener: Opener) -> None:
    one, two = opener(), opener()
    one.begin("c", [write("a", "old")])
    two.begin("c", [write("a", "new")])
    assert two.pending("c") == [write("a", "new")]
    with pytest.raises(LeaseLost):
        one.commit_writes("c", [("a", "old", 1)], run=0)
    two.commit_writes("c", [("a", "new", 1)], run=0)
    assert one.committed("c", ["a"]) == {"a": Committed("new", 1)}


def test_each_expired_intent_is_taken_over_exactly_once(opener: Opener) -> None:
    """Six journals claim the same expired intents at once: every intent goes to exactly one."""
    owner = opener()
    owner.begin("c", [write(f"d{i:03}") for i in range(200)])
    outlive_lease()
    claimers = [opener() for _ in range(6)]
    start = threading.Barrier(len(claimers))

    def claim(journal: Journal) -> list[str]:
        start.wait()
        return [intent.doc_id for intent in journal.claim("c")]

    with ThreadPoolExecutor(len(claimers)) as pool:
        claimed = [doc_id for taken in pool.map(claim, claimers) for doc_id in taken]
    assert sorted(claimed) == [f"d{i:03}" for i in range(200)]


def test_parked_intents_are_reported_until_discarded(opener: Opener) -> None:
    one, two = opener(), opener()
    one.begin("c", [write("a")])
    one.commit_writes("c", [("a", "h", 1)], run=0)
    one.begin("c", [write("a", "h2"), write("b")])
    one.park("c", "a", "a value no store takes")
    assert [(i.doc_id, i.reason) for i in two.parked("c")] == [("a", "a value no store takes")]
    assert [i.doc_id for i in two.pending("c")] == ["b"]
    assert two.committed("c", ["a"]) == {}  # the caller took it out of both stores
    outlive_lease()
    assert [i.doc_id for i in two.claim("c")] == ["b"]  # parked intents are not redone
    assert two.discard_parked("c") == 1 and two.parked("c") == []


def test_one_writer_holds_a_collection_at_a_time(opener: Opener) -> None:
    one, two = opener(), opener()
    held = one.hold("c")
    assert held is not None
    started = time.monotonic()
    assert two.hold("c", wait=0.3) is None
    assert 0.3 <= time.monotonic() - started < 2.0
    other = two.hold("d")
    assert other is not None
    other.release()
    held.release()
    again = two.hold("c")
    assert again is not None
    # A waiter gets the collection as soon as the holder lets go.
    threading.Timer(0.2, again.release).start()
    started = time.monotonic()
    waited = one.hold("c", wait=10)
    assert waited is not None and time.monotonic() - started < 5
    waited.release()


KILLED_WRITER = """
import sys, time
from service.ingest.journal import Intent
from service.settings import settings_from_dict
from service.stores import open_journal

settings = settings_from_dict({"data_dir": sys.argv[1], "state": {"url": sys.argv[2], "lease_seconds": %s}})
journal = open_journal(settings)
held = journal.hold("c")
journal.begin("c", [Intent("a", "write", "h", '{"id": "a"}')])
print("writing", flush=True)
time.sleep(600)
"""


def test_a_killed_writer_lets_go_and_its_intents_are_taken_over(
    adapter: str, settings: Settings, opener: Opener
) -> None:
    """kill -9 mid-write: the collection is free at once; its intents are taken over once the lease
    has run out (SQLite, on one machine, sees the owner is dead and does not wait)."""
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER % LEASE, settings.data_dir, settings.state.url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        survivor = opener()
        assert survivor.hold("c") is None
    finally:
        writer.kill()
        writer.communicate()
    killed = time.monotonic()
    held = None
    while held is None and time.monotonic() - killed < 5:
        held = survivor.hold("c")
    assert held is not None, "the killed writer's hold outlived it"
    held.release()
    if adapter == "sqlite":
        assert survivor.claimable() == ["c"]
    else:
        assert survivor.claim("c") == []  # a lease is all another machine can go by
        outlive_lease()
    assert [i.doc_id for i in survivor.claim("c")] == ["a"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_journal_from_before_fingerprints_keeps_its_collections(adapter: str, tmp_path: Path) -> None:
    """A journal written by the release before fingerprints opens, its collections intact and without one."""
    with state_settings(adapter, tmp_path) as settings:
        make_old_journal(settings)
        journal = open_journal(settings)
        try:
            assert journal.collections() == {"old": "ready"}
            assert journal.committed("old", ["a"]) == {"a": Committed("h", 2)}
            assert journal.embedder("old") is None
            journal.record_embedder("old", '{"model": "m"}')
            assert journal.embedder("old") == '{"model": "m"}'
        finally:
            journal.close()


def make_old_journal(settings: Settings) -> None:
    """The previous release's journal tables, holding one collection with one document."""
    rows = [
        "INSERT INTO {c} (name, state, created_at) VALUES ('old', 'ready', 1.0)",
        "INSERT INTO {d} (collection, doc_id, content_hash, chunk_count) VALUES ('old', 'a', 'h', 2)",
    ]
    if settings.state.url:
        database = Postgres(settings.state.url)
        try:
            with database.connection() as conn:
                conn.execute(
                    "CREATE TABLE fathom_migrations (version INTEGER PRIMARY KEY,"
                    " description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                for version, description, sql in MIGRATIONS[:2]:
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO fathom_migrations (version, description) VALUES (%s, %s)",
                        (version, description),
                    )
                for row in rows:
                    conn.execute(row.format(c="journal_collections", d="journal_documents").encode())
        finally:
            database.close()
        return
    with sqlite3.connect(settings.data_path / "journal.sqlite3") as db:
        db.executescript(
            "CREATE TABLE collections (name TEXT PRIMARY KEY, state TEXT NOT NULL, created_at REAL NOT NULL);"
            "CREATE TABLE documents (collection TEXT NOT NULL, doc_id TEXT NOT NULL,"
            " content_hash TEXT NOT NULL, chunk_count INTEGER NOT NULL,"
            " seen_run INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (collection, doc_id)) WITHOUT ROWID;"
            "CREATE TABLE intents (collection TEXT NOT NULL, doc_id TEXT NOT NULL, action TEXT NOT NULL,"
            " content_hash TEXT, document TEXT, state TEXT NOT NULL DEFAULT 'pending', reason TEXT,"
            " owner TEXT, lease_until REAL NOT NULL DEFAULT 0,"
            " PRIMARY KEY (collection, doc_id)) WITHOUT ROWID;"
        )
        for row in rows:
            db.execute(row.format(c="collections", d="documents"))
