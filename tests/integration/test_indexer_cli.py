"""`fathom index` and `fathom verify` end to end in subprocesses, on Tantivy (or Elasticsearch) + Qdrant."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from service.backends.stack import qdrant_path
from service.ingest.documents import Document
from service.ingest.journal_sqlite import journal_path
from tests.integration.ingest_app import fathom, holdings, start_fathom, write_config
from tests.integration.search_app import LEXICAL_BACKENDS, cranfield, search_settings

pytestmark = pytest.mark.anyio
# Small windows make several chunks of a Cranfield abstract without embedding much.
SMALL_CHUNKS = ("--chunk-tokens", "64", "--overlap", "8")
SUMMARY = re.compile(r"added (\d+), updated (\d+), unchanged (\d+), deleted (\d+), failed (\d+)")


def write_jsonl(path: Path, documents: Sequence[Document], extra_lines: Sequence[str] = ()) -> Path:
    lines = [json.dumps({"_id": d.id, "title": d.title, "text": d.text, **d.metadata}) for d in documents]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return path


def summary(stdout: str) -> tuple[int, ...]:
    """(added, updated, unchanged, deleted, failed) from the run's last line."""
    found = SUMMARY.search(stdout)
    assert found, stdout
    return tuple(int(n) for n in found.groups())


@pytest.mark.parametrize("lexical", LEXICAL_BACKENDS)
async def test_rerun_change_shrink_and_delete_missing(tmp_path: Path, lexical: str) -> None:
    config, data = write_config(tmp_path, lexical), tmp_path / "data"
    settings = search_settings(data, lexical)
    docs = cranfield(limit=10)
    source = write_jsonl(tmp_path / "corpus.jsonl", docs)
    index = ("index", str(source), "--collection", "c", *SMALL_CHUNKS)

    first = fathom(config, data, *index)
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout) == (10, 0, 0, 0, 0)
    assert "doc/s" in first.stderr  # the progress bar
    before = await holdings(settings, "c")
    assert before.consistent and len(before.journal) == 10 and before.journal[docs[0].id] > 2

    again = fathom(config, data, *index)
    assert summary(again.stdout) == (0, 0, 10, 0, 0)
    assert await holdings(settings, "c") == before

    shrunk = Document(docs[0].id, docs[0].title, " ".join(docs[0].text.split()[:20]), docs[0].metadata)
    edited = Document(
        docs[1].id, docs[1].title, docs[1].text + " an added closing sentence.", docs[1].metadata
    )
    write_jsonl(source, [shrunk, edited, *docs[2:9]])  # docs[9] is gone from the source
    changed = fathom(config, data, *index)
    assert summary(changed.stdout) == (0, 2, 7, 0, 0), changed.stderr
    after = await holdings(settings, "c")
    assert after.consistent and after.journal[docs[0].id] == 1 and docs[9].id in after.journal

    pruned = fathom(config, data, *index, "--delete-missing")
    assert summary(pruned.stdout) == (0, 0, 9, 1, 0)
    final = await holdings(settings, "c")
    assert final.consistent and set(final.journal) == {d.id for d in docs[:9]}
    assert fathom(config, data, "verify", "--collection", "c").returncode == 0


async def test_jsonl_with_a_malformed_line_and_strict(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    source = write_jsonl(
        tmp_path / "bad.jsonl", cranfield(limit=3), ['{"_id": "x", "text": ', '{"text": "no id"}']
    )
    run = fathom(config, data, "index", str(source), "--collection", "c")
    assert run.returncode == 1
    assert f"{source}:4: not valid JSON" in run.stderr and f"{source}:5: missing or empty id" in run.stderr
    assert summary(run.stdout) == (3, 0, 0, 0, 2)
    # Nothing was dropped silently, so --delete-missing refuses to act on a partial read.
    partial = fathom(config, data, "index", str(source), "--collection", "c", "--delete-missing")
    assert partial.returncode == 1 and "--delete-missing skipped" in partial.stderr

    strict = fathom(config, data, "index", str(source), "--collection", "s", "--strict")
    assert strict.returncode == 1 and f"--strict: {source}:4" in strict.stderr
    assert (await holdings(search_settings(data), "s")).journal == {}


async def test_folder_of_files_with_an_unreadable_one(tmp_path: Path) -> None:
    config, data, folder = write_config(tmp_path), tmp_path / "data", tmp_path / "site"
    (folder / "guide").mkdir(parents=True)
    (folder / "notes.txt").write_text("Plain notes about wing flutter.", encoding="utf-8")
    (folder / "guide" / "intro.md").write_text(
        "Preface\n\n# Getting started\n\nInstall it.", encoding="utf-8"
    )
    (folder / "page.html").write_text(
        "<html><head><title>Heat  transfer</title><style>p{}</style></head>"
        "<body><h1>Ignored heading</h1><p>Laminar <b>flow</b> &amp; heat.</p></body></html>",
        encoding="utf-8",
    )
    (folder / "latin1.txt").write_bytes(b"first line\nsecond line caf\xe9\n")
    (folder / "gone.md").symlink_to(folder / "missing-target.md")
    run = fathom(config, data, "index", str(folder), "--collection", "site")
    assert run.returncode == 1, run.stderr
    assert f"{folder / 'latin1.txt'}:2: not UTF-8" in run.stderr
    assert f"{folder / 'gone.md'}: cannot be read" in run.stderr
    assert summary(run.stdout) == (3, 0, 0, 0, 2)
    held = await holdings(search_settings(data), "site")
    assert set(held.journal) == {"notes.txt", "guide/intro.md", "page.html"} and held.consistent


async def test_csv_with_chosen_columns(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    source = tmp_path / "products.csv"
    source.write_text(
        "sku,name,description,price,colour,internal\n"
        'a1,Kite,"A kite, red and light",12.5,red,x\n'
        'a2,Glider,"Two-line, ""stunt"" glider",40,blue,y\n'
        "a3,Broken,too,few\n",
        encoding="utf-8",
    )
    args = (
        "--id-field",
        "sku",
        "--text-field",
        "description",
        "--title-field",
        "name",
        "--fields",
        "price,colour",
    )
    run = fathom(config, data, "index", str(source), "--collection", "shop", *args)
    assert run.returncode == 1 and f"{source}:4: expected 6 columns, found 4" in run.stderr
    assert summary(run.stdout) == (2, 0, 0, 0, 1)
    settings = search_settings(data)
    from service.backends.stack import open_lexical

    lexical = open_lexical(settings)
    try:
        [hit] = await lexical.search("shop", "stunt", limit=5)
    finally:
        await lexical.close()
    assert (hit.doc_id, hit.title, hit.metadata) == ("a2", "Glider", {"price": "40", "colour": "blue"})


async def test_cli_refuses_clearly_while_another_process_holds_qdrant(tmp_path: Path) -> None:
    from qdrant_client import AsyncQdrantClient

    config, data = write_config(tmp_path), tmp_path / "data"
    source = write_jsonl(tmp_path / "c.jsonl", cranfield(limit=1))
    holder = AsyncQdrantClient(path=str(qdrant_path(search_settings(data))))
    try:
        run = fathom(config, data, "index", str(source), "--collection", "c")
    finally:
        await holder.close()
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "fathom serve" in run.stderr and "POST /v1/collections/{name}/documents" in run.stderr


def journal_activity(data: Path) -> tuple[int, int]:
    """(documents committed, intents open), read as another process would, while the indexer runs."""
    path = journal_path(data)
    if not path.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            [(documents,)] = db.execute("SELECT COUNT(*) FROM documents").fetchall()
            [(intents,)] = db.execute("SELECT COUNT(*) FROM intents").fetchall()
    except sqlite3.OperationalError:  # the tables are not created yet
        return 0, 0
    return int(documents), int(intents)


def kill_mid_run(config: Path, data: Path, source: Path) -> None:
    """kill -9 the indexer while a batch's intents are open (or, failing that, after a few batches)."""
    process = start_fathom(config, data, "index", str(source), "--collection", "k", "--batch-size", "4")
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            documents, intents = journal_activity(data)
            if intents and documents >= 8:
                break
            time.sleep(0.002)
    finally:
        process.kill()  # SIGKILL: no cleanup, no flush, no lock release but the kernel's
        process.communicate()
    assert process.returncode == -9, "the indexer finished before it could be killed"


@pytest.mark.parametrize("finish", ["rerun", "repair"])
async def test_kill_9_mid_run_loses_and_duplicates_nothing(tmp_path: Path, finish: str) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    docs = cranfield(limit=48)
    source = write_jsonl(tmp_path / "corpus.jsonl", docs)
    kill_mid_run(config, data, source)
    settings = search_settings(data)
    interrupted = await holdings(settings, "k")
    assert 8 <= len(interrupted.journal) < len(docs)

    verify = fathom(config, data, "verify", "--collection", "k")
    # verify must say exactly what the stores show: drift (exit 1) when anything is unfinished.
    assert verify.returncode == (0 if interrupted.consistent else 1), verify.stdout
    if interrupted.pending:
        assert "unfinished" in verify.stdout

    if finish == "repair":
        repaired = fathom(config, data, "verify", "--collection", "k", "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert (await holdings(settings, "k")).consistent
    rerun = fathom(config, data, "index", str(source), "--collection", "k")
    assert rerun.returncode == 0, rerun.stderr
    added, updated, unchanged, deleted, failed = summary(rerun.stdout)
    assert added + unchanged == len(docs) and (updated, deleted, failed) == (0, 0, 0)
    final = await holdings(settings, "k")
    assert final.consistent and set(final.journal) == {d.id for d in docs}
    assert fathom(config, data, "verify", "--collection", "k").returncode == 0
