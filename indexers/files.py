"""A folder of text, HTML, PDF and Word files as documents: id = path in the folder, title from the file."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

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


def document_files(folder: Path, follow_symlinks: bool = False) -> Iterator[Path]:
    """Files with a known suffix, in a stable order so progress and failures read the same each run.

    Each file is given once: a link to a file inside the folder stands for that file, so it is left
    out when the file is reached under its own name. Links to folders are not descended into.
    """
    inside = folder.resolve()
    seen: set[Path] = set()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in relative.parts)
        # Not is_file(): a dangling link, or a pipe, must be reported, not skipped unseen.
        if path.suffix.lower() not in SUFFIXES or hidden or path.is_dir():
            continue
        real = path.resolve() if path.is_symlink() else inside / relative
        if real.is_relative_to(inside) or follow_symlinks:
            if real in seen:
                continue
            seen.add(real)
        yield path


def read_folder(folder: Path, follow_symlinks: bool = False) -> Iterator[Record]:
    for path in document_files(folder, follow_symlinks):
        yield read_file(path, folder, follow_symlinks)


def read_file(path: Path, folder: Path, follow_symlinks: bool = False) -> Record:
    """The file as a Document, or why it is not one; nothing outside `folder` unless links are followed."""
    where = printable(path)
    try:
        source = file_to_read(path, folder, follow_symlinks)
        if not utf8(source.doc_id):
            # An id must be text: an escaped stand-in could collide with a file really named so.
            return SourceProblem(where, "the file name is not valid UTF-8: rename the file to index it")
        raw = read_regular_file(source.real)
    except NotIndexable as exc:
        return SourceProblem(where, str(exc))
    except OSError as exc:
        return SourceProblem(where, f"cannot be read: {exc.strerror or exc}")
    return parse_file(raw, source.doc_id, where)


def parse_file(raw: bytes, doc_id: str, where: str) -> Record:
    suffix = PurePosixPath(doc_id).suffix.lower()
    metadata = {"path": doc_id, "format": suffix.lstrip(".")}
    stem = PurePosixPath(doc_id).stem
    if suffix in PAGED:
        try:
            title, text, extracted = PAGED[suffix](raw)
        except UnreadableFile as exc:
            return SourceProblem(where, str(exc))
        # A parser's surprise on a hostile file (an IndexError deep in pypdf, say) must not end the run.
        except Exception as exc:
            return SourceProblem(where, f"cannot be read ({type(exc).__name__}: {exc})")
        return Document(doc_id, title or stem, text, {**metadata, **extracted})
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return SourceProblem(f"{where}:{line}", f"not UTF-8 text (byte {exc.start})")
    if suffix in {".html", ".htm"}:
        title, text = html_title_and_text(content)
    elif suffix in {".md", ".markdown"}:
        heading = MARKDOWN_HEADING.search(content)
        title, text = (heading.group(1) if heading else ""), content
    else:
        title, text = "", content
    return Document(doc_id, title or stem, text.strip(), metadata)


class NotIndexable(Exception):
    """A file the indexer refuses to open: a link out of the folder, a pipe, a device."""


@dataclass(frozen=True, slots=True)
class FileToRead:
    real: Path  # where the bytes are (a link's target)
    doc_id: str  # the document's id: its path in the folder


def file_to_read(path: Path, folder: Path, follow_symlinks: bool) -> FileToRead:
    """Where to read `path` from, and its id. A link into the folder is its target, under the target's
    name (so it is one document, not two); a link out of it is refused unless links are followed."""
    doc_id = path.relative_to(folder).as_posix()
    if not path.is_symlink():
        return FileToRead(path, doc_id)
    real, inside = path.resolve(), folder.resolve()
    if real.is_relative_to(inside):
        target_id = real.relative_to(inside).as_posix()
        if PurePosixPath(target_id).suffix.lower() not in SUFFIXES:
            raise NotIndexable(f"links to {printable(real)}, which is not a kind of file Fathom reads")
        return FileToRead(real, target_id)
    if not follow_symlinks:
        raise NotIndexable(
            f"is a link to {printable(real)}, outside {printable(folder)}: not followed "
            "(pass --follow-symlinks to index what links point to)"
        )
    return FileToRead(real, doc_id)


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file. Pipes, sockets and devices are refused before they are opened (a
    pipe would block the run for good, a device may act on being opened), and again on the opened
    descriptor, in case the path was swapped in between."""
    refuse_special(path.stat().st_mode)
    # O_NONBLOCK: should a pipe be swapped in after the check, opening it must not wait for a writer.
    # O_NOFOLLOW: nor may a link swapped in lead out of the folder.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as handle:
        refuse_special(os.fstat(handle.fileno()).st_mode)
        return handle.read()


def refuse_special(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    for test, kind in SPECIAL_FILES:
        if test(mode):
            raise NotIndexable(f"is {kind}, not a regular file: skipped without opening it")
    raise NotIndexable("is not a regular file: skipped without opening it")


SPECIAL_FILES: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)
# Control characters in a file name could forge or garble lines of the report.
CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(32), 127]}


def printable(path: Path | str) -> str:
    """A path for the report: bytes that are not UTF-8 and control characters as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace").translate(CONTROL_ESCAPES)


def utf8(text: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
