"""`fathom index` on a folder of PDF and Word files made here: found by search, with page numbers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from indexers.files import read_file
from service.ingest.documents import Document
from tests.conftest import bearer
from tests.integration.ingest_app import fathom, write_config
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import search_settings
from tests.integration.test_indexer_cli import summary
from tests.paged_fixtures import PDF_PAGES, docx_bytes, encrypted_pdf_bytes, pdf_bytes

pytestmark = pytest.mark.anyio


def write_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "report.pdf").write_bytes(pdf_bytes())
    (folder / "manual.docx").write_bytes(docx_bytes())
    (folder / "locked.pdf").write_bytes(encrypted_pdf_bytes())
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 not a whole zip")
    (folder / "notes.txt").write_text("Plain notes about the test rig.", encoding="utf-8")
    return folder


async def test_pdf_and_docx_are_indexed_with_pages_and_bad_files_reported(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    source = write_folder(tmp_path / "docs")
    run = fathom(config, data, "index", str(source), "--collection", "docs")
    assert run.returncode == 1, run.stderr  # two files failed, and the run says so
    assert summary(run.stdout) == (3, 0, 0, 0, 2)
    assert "locked.pdf: is encrypted" in run.stderr
    assert "broken.docx: is not a readable .docx file" in run.stderr

    settings = search_settings(data)
    key = new_key(settings, "reader")
    async with running(settings) as http:
        for query, doc_id, page in [
            ("hypersonic panel flutter", "report.pdf", 2),
            ("heat shield ablation charring", "report.pdf", 3),
            ("turbine blade borescope cracks", "manual.docx", 2),
        ]:
            response = await http.post(
                "/v1/search",
                json={"query": query, "collection": "docs", "top_k": 1, "rerank": {"enabled": False}},
                headers=bearer(key),
            )
            assert response.status_code == 200, response.text
            [hit] = response.json()["hits"]
            assert hit["id"] == doc_id
            assert hit["metadata"]["page"] <= page <= hit["metadata"]["page_end"]
            assert hit["metadata"]["format"] == doc_id.rsplit(".", 1)[1]
            assert "page_starts" not in hit["metadata"]
        await check_context_citations(http, key, source)
        limited = new_key(settings, "elsewhere", scopes=("search",), collections=("other",))
        refused = await http.post(
            "/v1/context",
            json={"query": "flutter", "collection": "docs"},
            headers=bearer(limited),
        )
        assert refused.status_code == 403 and "may only use the collections other" in refused.text


async def check_context_citations(http: httpx.AsyncClient, key: str, source: Path) -> None:
    """/v1/context cites pages, and its offsets locate the passage in the file's extracted text."""
    response = await http.post(
        "/v1/context",
        json={"query": "hypersonic panel flutter above Mach five", "collection": "docs", "max_tokens": 200},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    # The test reranker's weights are random: find the PDF's passage rather than expect it first.
    [passage] = [p for p in response.json()["passages"] if p["citation"]["id"] == "report.pdf"]
    cite = passage["citation"]
    assert cite["page"] == 1 and cite["page_end"] == len(PDF_PAGES)  # one short chunk spans the file
    document = read_file(source / "report.pdf", source)
    assert isinstance(document, Document)
    assert document.text[cite["start"] : cite["end"]] == passage["text"]


async def test_one_pdf_file_as_the_source(tmp_path: Path) -> None:
    config, data = write_config(tmp_path), tmp_path / "data"
    (tmp_path / "report.pdf").write_bytes(pdf_bytes())
    run = fathom(config, data, "index", str(tmp_path / "report.pdf"), "--collection", "one")
    assert run.returncode == 0, run.stderr
    assert summary(run.stdout) == (1, 0, 0, 0, 0)
