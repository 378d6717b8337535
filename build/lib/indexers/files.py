"""A folder of text, HTML, PDF and Word files as documents: id = path in the folder, title from the file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from indexers.paged_files import UnreadableFile, docx_document, pdf_document
from indexers.sources import Record, SourceProblem
from service.ingest.documents import Document

# Binary formats, each read by its own extractor into (title, text, metadata).
PAGED = {".pdf": pdf_document, ".docx": docx_document}
SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", *PAGED})
MARKDOWN_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
# Markup whose content is never text a reader sees.
HIDDEN_TAGS = frozenset({"script", "style", "template", "noscript", "head"})
HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


def document_files(folder: Path) -> Iterator[Path]:
    """Files with a known suffix, in a stable order so progress and failures read the same each run."""
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        # Not is_file(): a dangling link must be reported as unreadable, not skipped unseen.
        if path.suffix.lower() in SUFFIXES and not hidden and not path.is_dir():
            yield path


def read_folder(folder: Path) -> Iterator[Record]:
    for path in document_files(folder):
        yield read_file(path, folder)


def read_file(path: Path, folder: Path) -> Record:
    doc_id = path.relative_to(folder).as_posix()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return SourceProblem(str(path), f"cannot be read: {exc.strerror or exc}")
    suffix = path.suffix.lower()
    metadata = {"path": doc_id, "format": suffix.lstrip(".")}
    if suffix in PAGED:
        try:
            title, text, extracted = PAGED[suffix](raw)
        except UnreadableFile as exc:
            return SourceProblem(str(path), str(exc))
        return Document(doc_id, title or path.stem, text, {**metadata, **extracted})
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return SourceProblem(f"{path}:{line}", f"not UTF-8 text (byte {exc.start})")
    if suffix in {".html", ".htm"}:
        title, text = html_title_and_text(content)
    elif suffix in {".md", ".markdown"}:
        heading = MARKDOWN_HEADING.search(content)
        title, text = (heading.group(1) if heading else ""), content
    else:
        title, text = "", content
    return Document(doc_id, title or path.stem, text.strip(), metadata)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.heading = ""
        self.parts: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            # Unclosed inner tags (<p>, <li>) end with their parent, as browsers treat them.
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if "title" in self._open:
            self.title += data
        elif not HIDDEN_TAGS.intersection(self._open):
            self.parts.append(data)
            if not self.heading and HEADING_TAGS.intersection(self._open):
                self.heading = data.strip()


def html_title_and_text(content: str) -> tuple[str, str]:
    """The <title> (else the first heading) and the visible text, whitespace collapsed."""
    extractor = _TextExtractor()
    extractor.feed(content)
    extractor.close()
    text = re.sub(r"\s+", " ", " ".join(extractor.parts)).strip()
    return " ".join(extractor.title.split()) or extractor.heading, text
