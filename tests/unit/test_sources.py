"""Source readers: every record is a Document or a problem with its file:line, never dropped."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from indexers.files import html_title_and_text, read_folder
from indexers.sources import Fields, Record, SourceProblem, read_csv, read_jsonl
from service.ingest.documents import Document


def test_jsonl_fields_metadata_and_problems(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"doc": "a", "body": "text a", "title": "A", "lang": "en", "metadata": {"year": 1999}}\n'
        "\n"
        "[1, 2]\n"
        '{"doc": "b", "body": 5}\n',
        encoding="utf-8",
    )
    records = list(read_jsonl(path, Fields(id="doc", text="body")))
    assert records[0] == Document("a", "A", "text a", {"lang": "en", "year": 1999})
    assert records[1] == SourceProblem(f"{path}:3", "expected a JSON object")
    assert isinstance(records[2], SourceProblem) and records[2].location == f"{path}:4"
    kept = next(iter(read_jsonl(path, Fields(id="doc", text="body", keep=frozenset({"year"})))))
    assert isinstance(kept, Document) and kept.metadata == {"year": 1999}


def test_csv_rows_with_quoted_newlines_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('id,text,tag\n1,"two\nlines",x\n2,short\n3,ok,\n', encoding="utf-8")
    records = list(read_csv(path))
    assert records[0] == Document("1", "", "two\nlines", {"tag": "x"})
    assert records[1] == SourceProblem(f"{path}:4", "expected 3 columns, found 2")
    assert records[2] == Document("3", "", "ok", {})


def test_folder_titles_from_headings_and_file_names(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("intro\n## Real title ##\nbody", encoding="utf-8")
    (tmp_path / "b.txt").write_text("just text", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("skip me", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    records = {r.id: r for r in read_folder(tmp_path) if isinstance(r, Document)}
    assert set(records) == {"a.md", "b.txt"}
    assert records["a.md"].title == "Real title" and records["b.txt"].title == "b"
    assert records["b.txt"].metadata == {"path": "b.txt", "format": "txt"}


def test_html_text_skips_scripts_and_falls_back_to_the_first_heading() -> None:
    title, text = html_title_and_text(
        "<script>var x;</script><h2>Wings</h2><p>Lift&nbsp;and <i>drag</i><p>More"
    )
    assert title == "Wings" and text == "Wings Lift and drag More"


def folder_with_links(tmp_path: Path) -> Path:
    """docs/ with a note, a link to it, and links to a file outside and to one in a sibling folder."""
    folder, sibling = tmp_path / "docs", tmp_path / "sibling"
    folder.mkdir()
    sibling.mkdir()
    (tmp_path / "secret.txt").write_text("outside secret", encoding="utf-8")
    (sibling / "private.txt").write_text("sibling private", encoding="utf-8")
    (folder / "notes.txt").write_text("notes", encoding="utf-8")
    (folder / "alias.txt").symlink_to("notes.txt")
    (folder / "link_outside.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "link_sibling.txt").symlink_to(Path("..") / "sibling" / "private.txt")
    (folder / "linked_folder").symlink_to(sibling, target_is_directory=True)  # never descended into
    return folder


def test_links_out_of_the_folder_are_reported_not_read(tmp_path: Path) -> None:
    folder = folder_with_links(tmp_path)
    records = list(read_folder(folder))
    documents = [r for r in records if isinstance(r, Document)]
    problems = {r.location: r.message for r in records if isinstance(r, SourceProblem)}
    # The link inside the folder is the note itself: one document, under the note's own name.
    assert [(d.id, d.text) for d in documents] == [("notes.txt", "notes")]
    assert set(problems) == {str(folder / "link_outside.txt"), str(folder / "link_sibling.txt")}
    assert problems[str(folder / "link_outside.txt")] == (
        f"is a link to {tmp_path / 'secret.txt'}, outside {folder}: not followed "
        "(pass --follow-symlinks to index what links point to)"
    )


def test_follow_symlinks_reads_links_out_of_the_folder_once_each(tmp_path: Path) -> None:
    folder = folder_with_links(tmp_path)
    (folder / "again.txt").symlink_to(tmp_path / "secret.txt")
    records = list(read_folder(folder, follow_symlinks=True))
    texts = {r.id: r.text for r in records if isinstance(r, Document)}
    assert texts == {
        "again.txt": "outside secret",
        "link_sibling.txt": "sibling private",
        "notes.txt": "notes",
    }
    assert len(records) == len(texts)


def test_a_pipe_is_reported_without_being_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.txt")
    (tmp_path / "notes.txt").write_text("notes", encoding="utf-8")
    records: list[Record] = []
    # Opening a pipe with no writer waits for good: read in a thread so a hang fails the test.
    reader = threading.Thread(target=lambda: records.extend(read_folder(tmp_path)), daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "reading the folder blocked on the pipe"
    assert records == [
        Document("notes.txt", "notes", "notes", {"path": "notes.txt", "format": "txt"}),
        SourceProblem(
            str(tmp_path / "x.txt"), "is a named pipe (FIFO), not a regular file: skipped without opening it"
        ),
    ]


def test_a_file_name_that_is_not_utf8_is_reported_with_its_bytes_escaped(tmp_path: Path) -> None:
    (tmp_path / os.fsdecode(b"caf\xe9\n.txt")).write_bytes(b"text")
    [record] = list(read_folder(tmp_path))
    assert record == SourceProblem(
        f"{tmp_path}/caf\\xe9\\x0a.txt", "the file name is not valid UTF-8: rename the file to index it"
    )
