"""PDF (text layer, pypdf) and Word (.docx, python-docx) files as documents, with their page layout.

A document's text is its pages joined by a blank line; `page_starts` in its metadata holds the
character offset where each page begins, from which the chunker gives every chunk its `page` and
`page_end`. Encrypted, damaged and image-only files are problems to report, never a crash.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator

import docx
from docx.document import Document as WordDocument
from docx.table import Table
from docx.text.paragraph import Paragraph
from pypdf import PdfReader, apply_configuration
from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError

from service.ingest.chunking import PAGE_STARTS

PAGE_SEPARATOR = "\n\n"
# pypdf logs a warning for every oddity of a damaged file it can still read; the indexer reports
# files that cannot be read, and a page of warnings per file would bury its progress bar.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# What one part of a file may inflate to. A long book's word/document.xml is a few MB, and a page's
# content stream less; python-docx holds every part in memory and lxml builds a tree several times
# the XML's size, so this (and the total) keeps a hostile file well under 1 GB of memory.
MAX_PART_BYTES = 64 << 20
# What all of a Word file's parts may inflate to together (its images included, held in memory too).
MAX_DOCX_BYTES = 256 << 20
# Word's XML compresses about 10:1; a part above 100:1 is a run of repeated bytes, a zip bomb's mark.
MAX_COMPRESSION_RATIO = 100
# Below this, a part's ratio is not worth judging: a tiny part costs nothing whatever it holds.
RATIO_FLOOR_BYTES = 1 << 20
# Inflated per read of a part, so a part is caught at most this far past a limit.
READ_BLOCK_BYTES = 1 << 20


class UnreadableFile(Exception):
    """The file cannot give text; the message says why, for the indexer's report."""


def paged_text(pages: list[str]) -> tuple[str, list[int]]:
    """Pages joined by a blank line, and the offset where each page begins in the joined text."""
    starts, offset = [], 0
    for page in pages:
        starts.append(offset)
        offset += len(page) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(pages), starts


def pdf_document(raw: bytes) -> tuple[str, str, dict[str, object]]:
    """(title, text, metadata) of a PDF's text layer; UnreadableFile when there is none to read."""
    try:
        # pypdf stops any stream at its limit: ours, so the bound does not move with pypdf's defaults.
        with apply_configuration(
            zlib_maximum_output_length=MAX_PART_BYTES,
            lzw_maximum_output_length=MAX_PART_BYTES,
            run_length_maximum_output_length=MAX_PART_BYTES,
            brotli_maximum_output_length=MAX_PART_BYTES,
            array_based_stream_maximum_output_length=MAX_PART_BYTES,
        ):
            pages, title = pdf_pages_and_title(raw)
    except (FileNotDecryptedError, NotImplementedError) as exc:
        raise UnreadableFile(f"is encrypted and cannot be read: {exc}") from exc
    except LimitReachedError as exc:
        raise UnreadableFile(
            f"has a stream that inflates past the limit of {MAX_PART_BYTES >> 20} MiB (a compression bomb?)"
        ) from exc
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFile(f"is not a readable PDF: {exc}") from exc
    if not any(pages):
        raise UnreadableFile("has no text layer (a scan?): run OCR on it first")
    text, starts = paged_text(pages)
    return str(title or "").strip(), text, {"page_count": len(pages), PAGE_STARTS: starts}


def pdf_pages_and_title(raw: bytes) -> tuple[list[str], object]:
    reader = PdfReader(io.BytesIO(raw))
    if reader.is_encrypted and not reader.decrypt(""):
        raise UnreadableFile("is encrypted with a password; decrypt it first")
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    return pages, reader.metadata.title if reader.metadata else None


def docx_document(raw: bytes) -> tuple[str, str, dict[str, object]]:
    """(title, text, metadata) of a Word file: paragraphs and table rows, pages as Word laid them out."""
    # EOFError: a part said to be longer than the file. SyntaxError: lxml's XMLSyntaxError, not XML.
    try:
        document = docx.Document(bounded_archive(raw))
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, SyntaxError) as exc:
        raise UnreadableFile(f"is not a readable .docx file: {exc}") from exc
    pages = word_pages(document)
    text, starts = paged_text(pages)
    title = document.core_properties.title or first_heading(document)
    metadata: dict[str, object] = {"page_count": len(pages), PAGE_STARTS: starts}
    if document.core_properties.author:
        metadata["author"] = document.core_properties.author
    return title.strip(), text, metadata


def bounded_archive(raw: bytes) -> io.BytesIO:
    """The zip's parts, each inflated a block at a time and stopped at its limit, re-packed uncompressed.

    python-docx reads a part whole (zipfile inflates it in one call, up to 1 GiB, before cutting it to
    the size the header declares), so a header that lies about a part's size would let it inflate
    unbounded: it is given this copy instead, which holds only what was read within the limits.
    """
    copy, total = io.BytesIO(), 0
    with zipfile.ZipFile(io.BytesIO(raw)) as archive, zipfile.ZipFile(copy, "w") as stored:
        members = archive.infolist()
        check_declared(members)
        for member in members:
            data = read_part(archive, member)
            total += len(data)
            too_much(total)
            stored.writestr(member.filename, data)
    copy.seek(0)
    return copy


def check_declared(members: list[zipfile.ZipInfo]) -> None:
    """Refuse what admits to being a bomb, before anything is inflated."""
    for member in members:
        too_big(member.filename, member.file_size, member.compress_size)
    too_much(sum(member.file_size for member in members))


def too_much(total: int) -> None:
    if total > MAX_DOCX_BYTES:
        raise UnreadableFile(
            f"inflates to {total} bytes or more, past the limit of {MAX_DOCX_BYTES >> 20} MiB "
            "for all parts (a zip bomb?)"
        )


def read_part(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
    """A part read in blocks: zipfile inflates no more than a block ahead of what it returns."""
    blocks, size = [], 0
    with archive.open(member) as stream:
        while block := stream.read(READ_BLOCK_BYTES):
            size += len(block)
            too_big(member.filename, size, member.compress_size)
            blocks.append(block)
    return b"".join(blocks)


def too_big(name: str, size: int, packed: int) -> None:
    """Raise when a part of `packed` compressed bytes inflates (or says it does) to `size`, too many."""
    if size > MAX_PART_BYTES:
        raise UnreadableFile(
            f"part {name} inflates to {size} bytes or more, past the limit of "
            f"{MAX_PART_BYTES >> 20} MiB (a zip bomb?)"
        )
    if size > RATIO_FLOOR_BYTES and size > MAX_COMPRESSION_RATIO * max(packed, 1):
        raise UnreadableFile(
            f"part {name} inflates {size // max(packed, 1)}:1 or more, past the limit of "
            f"{MAX_COMPRESSION_RATIO}:1 (a zip bomb?)"
        )


def word_pages(document: WordDocument) -> list[str]:
    """Body text split at page breaks: those Word rendered when it last saved, else the explicit ones.

    A .docx holds no page numbers; Word records where its pages began (`lastRenderedPageBreak`) and
    authors insert hard breaks. Counting both would count a hard break twice once Word has rendered it.
    """
    rendered = any(p.rendered_page_breaks for p in paragraphs(document))
    pages: list[list[str]] = [[]]
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            pages[-1].extend("\t".join(cell.text for cell in row.cells) for row in block.rows)
            continue
        breaks = len(block.rendered_page_breaks) if rendered else explicit_breaks(block)
        pages.extend([] for _ in range(breaks))
        if block.text.strip():
            pages[-1].append(block.text)
    return ["\n".join(lines).strip() for lines in pages]


def paragraphs(document: WordDocument) -> Iterator[Paragraph]:
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            yield block


def explicit_breaks(paragraph: Paragraph) -> int:
    """Hard page breaks in the paragraph; its text is counted on the page after them."""
    return sum(1 for run in paragraph.runs for br in run.element.br_lst if br.type == "page")


def first_heading(document: WordDocument) -> str:
    for paragraph in paragraphs(document):
        style = paragraph.style.name if paragraph.style is not None else ""
        if (style == "Title" or (style or "").startswith("Heading")) and paragraph.text.strip():
            return paragraph.text
    return ""
