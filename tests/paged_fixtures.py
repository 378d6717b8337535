"""PDF and Word files made by the tests themselves: text on known pages, and the bad kinds of file."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import docx
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

# Each page's lines, in words the Cranfield-free test collections do not otherwise hold.
PDF_PAGES = (
    ["Calibration of the wind tunnel balance.", "Strain gauges read the six force components."],
    ["Hypersonic flutter of thin panels.", "Panel flutter sets in above Mach five."],
    ["Ablation of heat shields on reentry.", "Charring materials absorb the heat load."],
)
DOCX_PAGES = (
    ["Gearbox lubrication intervals.", "Synthetic oil lasts twice as long in the gearbox."],
    ["Turbine blade inspection by borescope.", "Cracks at the blade root ground the engine."],
)


def pdf_bytes(pages: Sequence[Sequence[str]] = PDF_PAGES, title: str = "Test report") -> bytes:
    """A PDF with a real text layer: one page per entry, one line per string."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    pdf.setTitle(title)
    for lines in pages:
        for number, line in enumerate(lines):
            pdf.drawString(72, 760 - 18 * number, line)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def image_only_pdf_bytes() -> bytes:
    """A page with a drawing and no text, as a scan without OCR looks to a text extractor."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    pdf.rect(72, 600, 200, 100, fill=1)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def encrypted_pdf_bytes(password: str = "secret") -> bytes:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf_bytes())).pages:
        writer.add_page(page)
    writer.encrypt(password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def docx_bytes(pages: Sequence[Sequence[str]] = DOCX_PAGES, title: str = "Maintenance manual") -> bytes:
    """A Word file: a title heading, each page's paragraphs after a hard page break, and a table."""
    document = docx.Document()
    document.add_heading(title, level=0)
    for number, lines in enumerate(pages):
        if number:
            document.add_page_break()
        for line in lines:
            document.add_paragraph(line)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "torque"
    table.rows[0].cells[1].text = "40 Nm"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


# What a compression bomb claims to hold: far more than the indexer may ever inflate.
BOMB_BYTES = 1 << 30
BOMB_BLOCK = 1 << 20


def deflated_repeats(size: int, byte: bytes = b"\0", wbits: int = 15) -> bytes:
    """`size` copies of `byte`, deflated a block at a time so the test never holds the inflated form."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, wbits)
    block = byte * BOMB_BLOCK
    parts = [compressor.compress(block) for _ in range(size // BOMB_BLOCK)]
    return b"".join([*parts, compressor.compress(byte * (size % BOMB_BLOCK)), compressor.flush()])


def pdf_bomb_bytes(size: int = BOMB_BYTES) -> bytes:
    """A one-page PDF whose content stream is `size` zeros behind /FlateDecode (about 1 MB on disk)."""
    stream = deflated_repeats(size)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write_docx_bomb(path: Path, size: int = BOMB_BYTES, declared: int | None = None) -> None:
    """A real Word file whose word/document.xml inflates to `size` repeated bytes.

    Written a block at a time: the part compresses about 230:1, so a 1 GiB bomb is about 4.6 MB. With
    `declared`, its headers claim only that many bytes, with the checksum of those first bytes, as a
    bomb made to slip past a check of the declared sizes would.
    """
    with (
        zipfile.ZipFile(io.BytesIO(docx_bytes())) as good,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bomb,
    ):
        for member in good.infolist():
            if member.filename != "word/document.xml":
                bomb.writestr(member, good.read(member))
        with bomb.open("word/document.xml", "w", force_zip64=declared is None) as part:
            block = b"A" * BOMB_BLOCK
            for _ in range(size // BOMB_BLOCK):
                part.write(block)
    if declared is not None:
        declare(path, b"word/document.xml", declared, zlib.crc32(b"A" * declared))


def declare(path: Path, name: bytes, size: int, crc: int, packed: int | None = None) -> None:
    """Rewrite what a zip part's local header and central directory entry say of it: its inflated size
    and CRC, and its compressed size when `packed` is given."""
    raw = bytearray(path.read_bytes())
    # (signature, offset of the name, of the CRC; the compressed then inflated size follow the CRC).
    headers = [(b"PK\x03\x04", 30, 14), (b"PK\x01\x02", 46, 16)]
    at = raw.find(name)
    while at != -1:
        for signature, name_at, crc_at in headers:
            start = at - name_at
            if raw[start : start + 4] == signature:
                struct.pack_into("<I", raw, start + crc_at, crc)
                if packed is not None:
                    struct.pack_into("<I", raw, start + crc_at + 4, packed)
                struct.pack_into("<I", raw, start + crc_at + 8, size)
        at = raw.find(name, at + 1)
    path.write_bytes(bytes(raw))
