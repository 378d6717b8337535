"""A full disk under data_dir (issue 7, defect 9), on a real small tmpfs: /readyz says so, and writes
get 507 with a message that names no server path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    """Write until the disk refuses: ENOSPC is the state under test."""
    with (disk / "filler").open("wb") as filler:
        block = b"\0" * (1 << 20)
        try:
            while True:
                filler.write(block)
                filler.flush()
                os.fsync(filler.fileno())
        except OSError:
            pass


async def test_a_full_disk_is_not_ready_and_writes_are_507_without_a_path(small_disk: Path) -> None:
    settings = search_settings(small_disk)
    auth = {"Authorization": f"Bearer {new_key(settings, 'admin')}"}
    documents = [{"id": d.id, "title": d.title, "text": d.text} for d in cranfield(limit=3)]
    async with running(settings) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["storage"] == "ok", ready.text
        assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
        fill(small_disk)

        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["storage"] == "full", ready.text
        for answer in (
            await client.put("/v1/collections/other", headers=auth),
            await client.post("/v1/collections/site/documents", json={"documents": documents}, headers=auth),
        ):
            assert answer.status_code == 507, answer.text
            assert answer.json()["error"]["type"] == "insufficient_storage" or "disk is full" in answer.text
            assert str(small_disk) not in answer.text and "/tmp" not in answer.text, answer.text

        (small_disk / "filler").unlink()  # space again: ready, and writes work
        assert (await client.get("/readyz")).json()["storage"] == "ok"
