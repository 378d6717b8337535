"""PDF and Word files made by the tests themselves: text on known pages, and the bad kinds of file."""

from __future__ import annotations

import io
from collections.abc import Sequence

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
