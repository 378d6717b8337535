"""Source readers: every record is a Document or a problem with its file:line, never dropped."""

from __future__ import annotations

from pathlib import Path

from indexers.files import html_title_and_text, read_folder
from indexers.sources import Fields, SourceProblem, read_csv, read_jsonl
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
