"""`fathom index` on a folder it should not trust: links out of it, a pipe, compression bombs and a file
name that is not UTF-8. The good files are indexed, each bad one is reported, and the run ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import bearer
from tests.integration.ingest_app import fathom_measured, holdings, write_config
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import search_settings
from tests.integration.test_indexer_cli import summary
from tests.paged_fixtures import docx_bytes, pdf_bomb_bytes, pdf_bytes, write_docx_bomb

pytestmark = pytest.mark.anyio
OUTSIDE_WORD = "zebraquokka"
GOOD = {"notes.txt", "report.pdf", "manual.docx"}
# Model loading and three small files take seconds; a pipe that is opened blocks for good.
RUN_SECONDS = 240
PEAK_RSS_LIMIT = 1 << 30


def hostile_folder(tmp_path: Path) -> Path:
    """Good files, a link within the folder, and one of each kind of bad file."""
    outside, sibling, folder = tmp_path / "outside", tmp_path / "sibling", tmp_path / "docs"
    for made in (outside, sibling, folder):
        made.mkdir()
    (outside / "secret.txt").write_text(f"The {OUTSIDE_WORD} password file.", encoding="utf-8")
    (sibling / "private.txt").write_text(f"A sibling's {OUTSIDE_WORD} diary.", encoding="utf-8")
    (folder / "notes.txt").write_text("Plain notes about wing flutter.", encoding="utf-8")
    (folder / "report.pdf").write_bytes(pdf_bytes())
    (folder / "manual.docx").write_bytes(docx_bytes())
    (folder / "alias.txt").symlink_to("notes.txt")  # inside: the same file, indexed once
    (folder / "link_outside.txt").symlink_to(outside / "secret.txt")
    (folder / "link_sibling.txt").symlink_to(Path("..") / "sibling" / "private.txt")
    os.mkfifo(folder / "x.txt")
    write_docx_bomb(folder / "bomb.docx")
    write_docx_bomb(folder / "lying.docx", declared=1000)  # headers claim 1000 bytes of the 1 GiB
    (folder / "bomb.pdf").write_bytes(pdf_bomb_bytes())
    (folder / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"A note whose name is Latin-1.")
    return folder


async def test_bad_files_are_reported_one_a_line_and_the_rest_indexed(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    folder = hostile_folder(tmp_path)
    run = fathom_measured(config, data, "index", str(folder), "--collection", "docs", timeout=RUN_SECONDS)
    assert not run.timed_out, f"still running after {RUN_SECONDS} s: {run.stderr[-2000:]}"
    assert run.peak_rss_bytes < PEAK_RSS_LIMIT, f"peak RSS {run.peak_rss_bytes >> 20} MiB"
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1, run.stderr
    assert summary(run.stdout) == (3, 0, 0, 0, 7)
    failed = [line for line in run.stderr.splitlines() if line.startswith("failed ")]
    reasons = {
        "link_outside.txt": "outside",
        "link_sibling.txt": "outside",
        "x.txt": "named pipe (FIFO)",
        "bomb.docx": "zip bomb",
        "lying.docx": "not a readable .docx file",
        "bomb.pdf": "compression bomb",
        "caf\\xe9.txt": "not valid UTF-8",
    }
    assert len(failed) == len(reasons), failed
    for name, reason in reasons.items():
        [line] = [line for line in failed if f"{folder}/{name}: " in line]
        assert reason in line, line

    held = await holdings(search_settings(data), "docs")
    assert set(held.journal) == GOOD and held.consistent
    await check_search(data)


async def check_search(data: Path) -> None:
    """The good files are found; no word of the files the links pointed to is in the collection."""
    settings = search_settings(data)
    key = new_key(settings, "reader")
    async with running(settings) as http:
        for query, expected in [("wing flutter notes", "notes.txt"), (OUTSIDE_WORD, None)]:
            response = await http.post(
                "/v1/search",
                json={"query": query, "collection": "docs", "top_k": 10, "rerank": {"enabled": False}},
                headers=bearer(key),
            )
            assert response.status_code == 200, response.text
            hits = response.json()["hits"]
            assert {hit["id"] for hit in hits} <= GOOD
            assert all(OUTSIDE_WORD not in hit["snippet"].lower() for hit in hits)
            if expected is not None:
                assert hits[0]["id"] == expected


async def test_follow_symlinks_indexes_what_links_point_to(tmp_path: Path) -> None:
    config, data, folder = write_config(tmp_path), tmp_path / "data", tmp_path / "docs"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text(f"The {OUTSIDE_WORD} file.", encoding="utf-8")
    (folder / "notes.txt").write_text("Plain notes about wing flutter.", encoding="utf-8")
    (folder / "alias.txt").symlink_to("notes.txt")
    (folder / "link_outside.txt").symlink_to(tmp_path / "secret.txt")
    run = fathom_measured(
        config, data, "index", str(folder), "--collection", "docs", "--follow-symlinks", timeout=RUN_SECONDS
    )
    assert run.returncode == 0, run.stderr
    assert summary(run.stdout) == (2, 0, 0, 0, 0)
    held = await holdings(search_settings(data), "docs")
    assert set(held.journal) == {"notes.txt", "link_outside.txt"} and held.consistent


def test_a_pipe_as_the_source_is_refused_at_once(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    os.mkfifo(tmp_path / "corpus.csv")
    run = fathom_measured(
        config, data, "index", str(tmp_path / "corpus.csv"), "--collection", "c", timeout=60
    )
    assert not run.timed_out, "blocked opening the pipe"
    assert run.returncode == 2
    assert run.stderr == f"error: {tmp_path / 'corpus.csv'} is not a regular file or a folder\n"
