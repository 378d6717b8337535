"""The Keys contract, run over both adapters: SQLite under data_dir and PostgreSQL shared by replicas.

"Two replicas" here are two store objects on one database (or one SQLite file), each with its own
connections, as two `fathom serve` processes would have; tests/integration/test_replicas.py does it
with real processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.auth.keys import Keys
from service.cli import main
from service.errors import InvalidRequest, QuotaExceeded, RateLimited
from service.state.postgres import MIGRATIONS, Postgres
from service.stores import open_keys
from tests.integration.state_db import ADAPTERS, fresh_database, needs_postgres, state_settings

Opener = Callable[[], Keys]


@pytest.fixture(params=ADAPTERS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another store on the same state, as another replica would; all closed at the end."""
    opened: list[Keys] = []
    with state_settings(request.param, tmp_path) as settings:

        def open_one() -> Keys:
            opened.append(open_keys(settings))
            return opened[-1]

        yield open_one
        for store in opened:
            store.close()


def test_keys_authenticate_until_revoked_everywhere(opener: Opener) -> None:
    one, two = opener(), opener()
    raw = one.create("a")
    assert (key := two.authenticate(raw)) is not None and key.name == "a"
    assert two.authenticate(raw + "x") is None
    started = time.monotonic()
    assert one.revoke("a")
    assert two.authenticate(raw) is None
    assert time.monotonic() - started < 1.0  # revocation is seen by the other store at once
    assert not two.revoke("a")


def test_duplicate_or_blank_names_are_refused(opener: Opener) -> None:
    one, two = opener(), opener()
    one.create("a")
    with pytest.raises(InvalidRequest, match="already exists"):
        two.create("a")
    with pytest.raises(InvalidRequest, match="non-empty"):
        two.create(" ")


def test_quota_is_all_or_nothing_and_refundable(opener: Opener) -> None:
    store = opener()
    store.create("q", quota=5)
    store.charge("q", 3)
    with pytest.raises(QuotaExceeded, match="2 of 5 left"):
        store.charge("q", 3)
    store.refund("q", 3)
    store.charge("q", 5)
    assert store.list()[0].used == 5


def test_usage_held_while_the_disk_was_full_is_added_past_the_quota(opener: Opener) -> None:
    store = opener()
    store.create("q", quota=5)
    store.charge("q", 4)
    store.add_usage("q", 3)  # already spent: the quota decided when it was charged in memory
    store.add_usage("q", -1)
    assert store.list()[0].used == 6


def test_concurrent_charges_never_overspend(opener: Opener) -> None:
    """100 charges of one unit against a quota of 50, from two stores and 16 threads: exactly 50 pass."""
    stores = [opener(), opener()]
    stores[0].create("q", quota=50)

    def charge(i: int) -> bool:
        try:
            stores[i % 2].charge("q", 1)
        except QuotaExceeded:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(charge, range(100)))
    assert outcomes.count(True) == 50
    assert stores[1].list()[0].used == 50


def test_rate_limit_is_shared_gcra(opener: Opener) -> None:
    """60/minute: a burst of 60 over both stores, then one per second."""
    one, two = opener(), opener()
    one.create("r", rate_limit=60)
    now = 1_000_000.0
    for i in range(60):
        (one, two)[i % 2].admit("r", now)
    with pytest.raises(RateLimited, match=r"retry in 1\.0 s") as refused:
        two.admit("r", now)
    assert refused.value.retry_after == pytest.approx(1.0)
    one.admit("r", now + 1.0)
    with pytest.raises(RateLimited):
        two.admit("r", now + 1.5)


def test_unlimited_keys_are_always_admitted(opener: Opener) -> None:
    store = opener()
    store.create("free")
    for _ in range(200):
        store.admit("free", 5.0)


def test_scopes_collections_and_public_origins_round_trip(opener: Opener) -> None:
    one, two = opener(), opener()
    pusher = two.authenticate(one.create("p", scopes=frozenset({"write"}), collections=frozenset({"a"})))
    assert pusher is not None and pusher.grants("write") and not pusher.grants("search")
    assert pusher.reaches("a") and not pusher.reaches("b")
    one.create(
        "page",
        scopes=frozenset({"search"}),
        collections=frozenset({"docs"}),
        origins=frozenset({"https://example.org"}),
    )
    assert two.public_origins() == {"https://example.org"}
    [page] = [key for key in two.list() if key.name == "page"]
    assert page.public and page.rate_limit is not None
    one.revoke("page")
    assert two.public_origins() == frozenset()


@pytest.mark.parametrize("_", [pytest.param(None, marks=needs_postgres)])
def test_migrations_apply_once_in_order(_: None) -> None:
    with fresh_database() as url:
        databases = [Postgres(url), Postgres(url)]
        try:
            with ThreadPoolExecutor(2) as pool:
                applied = list(pool.map(lambda db: db.migrate(), databases))
            # Both started at once: one applied everything, the other found it done.
            assert sorted(applied, key=len) == [[], [version for version, _, _ in MIGRATIONS]]
            assert databases[0].version() == MIGRATIONS[-1][0]
        finally:
            for database in databases:
                database.close()


@pytest.mark.parametrize("_", [pytest.param(None, marks=needs_postgres)])
def test_fathom_migrate_brings_the_database_up_to_date(
    _: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_database() as url:
        config = tmp_path / "fathom.toml"
        config.write_text(f'data_dir = "{tmp_path}"\n[state]\nurl = "{url}"\n')
        latest = MIGRATIONS[-1][0]
        assert main(["--config", str(config), "migrate"]) == 0
        assert f"version {latest} (applied 1" in capsys.readouterr().out
        assert main(["--config", str(config), "migrate"]) == 0
        assert f"version {latest} (nothing to apply)" in capsys.readouterr().out
        # The keys CLI works on the same database.
        assert main(["--config", str(config), "keys", "create", "--name", "ops"]) == 0
        assert "ops" in capsys.readouterr().out
