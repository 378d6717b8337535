"""PDF and Word extraction with their page layout, and the page numbers chunks get from it."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from indexers.paged_files import UnreadableFile, docx_document, paged_text, pdf_document
from service.ingest.chunking import PAGE_STARTS, Chunker, ChunkingPolicy, chunk_metadata, page_at
from service.ingest.documents import Document
from tests.conftest import EMBEDDER
from tests.paged_fixtures import (
    DOCX_PAGES,
    PDF_PAGES,
    declare,
    docx_bytes,
    encrypted_pdf_bytes,
    image_only_pdf_bytes,
    pdf_bomb_bytes,
    pdf_bytes,
    write_docx_bomb,
)


def test_pages_are_joined_and_their_starts_kept() -> None:
    text, starts = paged_text(["one", "", "three"])
    assert text == "one\n\n\n\nthree" and starts == [0, 5, 7]
    assert [text[s:].split("\n")[0] for s in starts] == ["one", "", "three"]


def test_page_at_offsets() -> None:
    starts = [0, 10, 25]
    assert [page_at(starts, offset) for offset in (0, 9, 10, 24, 25, 1000)] == [1, 1, 2, 2, 3, 3]


def test_chunk_metadata_replaces_the_layout_with_the_pages_spanned() -> None:
    metadata = {"path": "a.pdf", PAGE_STARTS: [0, 10, 25], "page_count": 3}
    assert chunk_metadata(metadata, 3, 12) == {"path": "a.pdf", "page_count": 3, "page": 1, "page_end": 2}
    assert chunk_metadata({"lang": "en"}, 0, 5) == {"lang": "en"}


def test_pdf_text_layer_with_page_starts() -> None:
    title, text, metadata = pdf_document(pdf_bytes())
    assert title == "Test report" and metadata["page_count"] == len(PDF_PAGES)
    starts = metadata[PAGE_STARTS]
    assert isinstance(starts, list)
    for number, lines in enumerate(PDF_PAGES):
        assert text[starts[number] :].startswith(lines[0])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (encrypted_pdf_bytes(), "encrypted"),
        (image_only_pdf_bytes(), "no text layer"),
        (b"%PDF-1.7\nnot really a pdf", "not a readable PDF"),
    ],
)
def test_unreadable_pdfs_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFile, match=reason):
        pdf_document(raw)


def test_docx_pages_from_hard_breaks_title_and_table() -> None:
    title, text, metadata = docx_document(docx_bytes())
    assert title == "Maintenance manual" and metadata["page_count"] == len(DOCX_PAGES)
    starts = metadata[PAGE_STARTS]
    assert isinstance(starts, list)
    assert text[starts[1] :].startswith(DOCX_PAGES[1][0])
    assert "torque\t40 Nm" in text[starts[1] :]


def test_a_broken_docx_is_unreadable() -> None:
    with pytest.raises(UnreadableFile, match=r"not a readable \.docx"):
        docx_document(b"PK\x03\x04 truncated zip")


def test_chunks_carry_offsets_and_pages() -> None:
    tokenizer = Tokenizer.from_file(str(EMBEDDER / "tokenizer.json"))
    words = [f"w{i}" for i in range(300)]
    text, starts = paged_text([" ".join(words[:150]), " ".join(words[150:])])
    document = Document("d", "", text, {PAGE_STARTS: starts})
    chunks = Chunker(tokenizer, ChunkingPolicy(max_tokens=64, overlap=8)).chunks(document)
    for chunk in chunks:
        assert chunk.start is not None and chunk.end is not None
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.metadata["page"] == page_at(starts, chunk.start)
        assert PAGE_STARTS not in chunk.metadata
    assert chunks[0].metadata["page"] == 1 and chunks[-1].metadata["page_end"] == 2
    assert any(c.metadata["page"] == 1 and c.metadata["page_end"] == 2 for c in chunks)


def test_a_docx_bomb_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    write_docx_bomb(tmp_path / "bomb.docx")
    with pytest.raises(
        UnreadableFile,
        match=r"word/document.xml inflates to 1073741824 bytes or more, past the limit of 64 MiB",
    ):
        docx_document((tmp_path / "bomb.docx").read_bytes())


def test_a_docx_part_inflating_past_the_ratio_is_refused(tmp_path: Path) -> None:
    """Under the size limit, but 2 MiB of one byte: no Word file compresses like that."""
    write_docx_bomb(tmp_path / "dense.docx", size=2 << 20)
    with pytest.raises(
        UnreadableFile, match=r"word/document.xml inflates \d+:1 or more, past the limit of 100:1"
    ):
        docx_document((tmp_path / "dense.docx").read_bytes())


def test_a_pdf_stream_inflating_past_the_limit_is_refused() -> None:
    with pytest.raises(UnreadableFile, match="has a stream that inflates past the limit of 64 MiB"):
        pdf_document(pdf_bomb_bytes())


def test_a_docx_bomb_understating_its_size_never_inflates_past_it(tmp_path: Path) -> None:
    """Headers claiming 1000 bytes (with a matching CRC) for a part that inflates to 1 GiB."""
    write_docx_bomb(tmp_path / "lying.docx", declared=1000)
    raw = (tmp_path / "lying.docx").read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableFile, match=r"is not a readable \.docx file"):
            docx_document(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak >> 20} MiB allocated reading a 1000-byte part"


def test_a_docx_whose_parts_together_inflate_past_the_total_is_refused(tmp_path: Path) -> None:
    """Five parts of 60 MiB, each under the part limit, 300 MiB together; checked before inflating."""
    parts = {f"word/media/image{n}.bin": 60 << 20 for n in range(5)}
    with (
        zipfile.ZipFile(io.BytesIO(docx_bytes())) as good,
        zipfile.ZipFile(tmp_path / "heavy.docx", "w", zipfile.ZIP_STORED) as heavy,
    ):
        for member in good.infolist():
            heavy.writestr(member, good.read(member))
        for name in parts:
            heavy.writestr(name, b"")
    for name, size in parts.items():  # declared, not written: the check reads only the headers
        declare(tmp_path / "heavy.docx", name.encode(), size, 0, packed=1 << 20)
    with pytest.raises(UnreadableFile, match=r"inflates to \d+ bytes or more, past the limit of 256 MiB"):
        docx_document((tmp_path / "heavy.docx").read_bytes())


def test_a_docx_part_cut_short_is_unreadable(tmp_path: Path) -> None:
    """A stored part whose headers claim 1 MiB where the file holds 10 bytes: zipfile reads to the end."""
    path = tmp_path / "short.docx"
    path.write_bytes(docx_bytes())
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("word/extra.bin", b"0123456789")
    declare(path, b"word/extra.bin", 1 << 20, 0, packed=1 << 20)
    with pytest.raises(UnreadableFile, match=r"is not a readable \.docx file"):
        docx_document(path.read_bytes())
