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
from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

from service.ingest.chunking import PAGE_STARTS

PAGE_SEPARATOR = "\n\n"
# pypdf logs a warning for every oddity of a damaged file it can still read; the indexer reports
# files that cannot be read, and a page of warnings per file would bury its progress bar.
logging.getLogger("pypdf").setLevel(logging.ERROR)


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
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("is encrypted with a password; decrypt it first")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (FileNotDecryptedError, NotImplementedError) as exc:
        raise UnreadableFile(f"is encrypted and cannot be read: {exc}") from exc
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableFile(f"is not a readable PDF: {exc}") from exc
    if not any(pages):
        raise UnreadableFile("has no text layer (a scan?): run OCR on it first")
    text, starts = paged_text(pages)
    return str(title or "").strip(), text, {"page_count": len(pages), PAGE_STARTS: starts}


def docx_document(raw: bytes) -> tuple[str, str, dict[str, object]]:
    """(title, text, metadata) of a Word file: paragraphs and table rows, pages as Word laid them out."""
    try:
        document = docx.Document(io.BytesIO(raw))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableFile(f"is not a readable .docx file: {exc}") from exc
    pages = word_pages(document)
    text, starts = paged_text(pages)
    title = document.core_properties.title or first_heading(document)
    metadata: dict[str, object] = {"page_count": len(pages), PAGE_STARTS: starts}
    if document.core_properties.author:
        metadata["author"] = document.core_properties.author
    return title.strip(), text, metadata


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
