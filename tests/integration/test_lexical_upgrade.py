"""Indexes written by earlier releases keep answering: before BM25 ranked on one `content` field (over
title and text), and before it ranked whole documents (over chunks)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import tantivy
from elasticsearch import AsyncElasticsearch

from service.backends import tantivy as tantivy_backend
from service.backends.elasticsearch import DOCUMENTS_SUFFIX, ElasticsearchIndex, load_index_body
from service.backends.tantivy import TantivyIndex
from service.settings import ElasticsearchSettings
from tests.integration.contract_data import split_document

pytestmark = pytest.mark.anyio
ES_URL = os.environ.get("FATHOM_TEST_ELASTICSEARCH_URL", "")


def legacy_tantivy_schema() -> tantivy.Schema:
    """The passage schema as it was: no content field."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("doc_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("position", stored=True)
    builder.add_text_field("title", stored=True, tokenizer_name=tantivy_backend.ANALYZER)
    builder.add_text_field("text", stored=True, tokenizer_name=tantivy_backend.ANALYZER)
    builder.add_json_field(
        "metadata", fast=True, tokenizer_name="raw", index_option="basic", expand_dots_enabled=True
    )
    builder.add_bytes_field("metadata_source", stored=True)
    return builder.build()


async def test_a_tantivy_index_without_content_is_searched_over_title_and_text(tmp_path: Path) -> None:
    path = tmp_path / "tantivy" / "old"
    path.mkdir(parents=True)
    index = tantivy.Index(legacy_tantivy_schema(), path=str(path))
    index.register_tokenizer(tantivy_backend.ANALYZER, tantivy_backend.english_analyzer())
    writer = index.writer(heap_size=15_000_000, num_threads=1)
    for doc_id, title, text in [("a", "Zeppelins", "airships of the past"), ("b", "", "kites and gliders")]:
        document = tantivy.Document()
        for name, value in (
            ("chunk_id", f"{doc_id}#0"),
            ("doc_id", doc_id),
            ("title", title),
            ("text", text),
        ):
            document.add_text(name, value)
        document.add_integer("position", 0)
        document.add_json("metadata", {"kind": doc_id})
        document.add_bytes("metadata_source", b'{"kind": "%s"}' % doc_id.encode())
        writer.add_document(document)
    writer.commit()
    writer.wait_merging_threads()

    store = TantivyIndex(tmp_path / "tantivy")
    try:
        [by_title] = await store.search("old", "zeppelin", limit=5)
        [by_text] = await store.search("old", "gliders", limit=5)
        assert (by_title.doc_id, by_text.doc_id) == ("a", "b")
        assert by_text.snippet is not None and "<em>gliders</em>" in by_text.snippet
    finally:
        await store.close()


@pytest.mark.elasticsearch
@pytest.mark.skipif(not ES_URL, reason="FATHOM_TEST_ELASTICSEARCH_URL is not set")
async def test_an_elasticsearch_index_without_content_is_searched_over_title_and_text() -> None:
    prefix = f"fathom-test-{uuid.uuid4().hex[:8]}-"
    body = load_index_body(analyzer="standard")
    del body["mappings"]["properties"]["content"]
    for name in ("title", "text"):
        del body["mappings"]["properties"][name]["copy_to"]
    async with AsyncElasticsearch(ES_URL) as client:
        await client.indices.create(index=f"{prefix}old", **body)
        await client.index(
            index=f"{prefix}old",
            id="a#0",
            document={"doc_id": "a", "position": 0, "title": "Zeppelins", "text": "airships", "metadata": {}},
            refresh=True,
        )
        store = ElasticsearchIndex(ElasticsearchSettings(url=ES_URL, index_prefix=prefix))
        try:
            [hit] = await store.search("old", "zeppelins", limit=5)
            assert hit.doc_id == "a"
        finally:
            await store.drop_collection("old")
            await store.close()


@pytest.mark.elasticsearch
@pytest.mark.skipif(not ES_URL, reason="FATHOM_TEST_ELASTICSEARCH_URL is not set")
async def test_bm25_k1_and_b_come_from_the_settings() -> None:
    prefix = f"fathom-test-{uuid.uuid4().hex[:8]}-"
    store = ElasticsearchIndex(
        ElasticsearchSettings(url=ES_URL, index_prefix=prefix, bm25_k1=0.9, bm25_b=0.4)
    )
    try:
        await store.ensure_collection("tuned")
        async with AsyncElasticsearch(ES_URL) as client:
            settings = await client.indices.get_settings(index=f"{prefix}tuned")
        similarity = next(iter(settings.body.values()))["settings"]["index"]["similarity"]["fathom_bm25"]
        assert (float(similarity["k1"]), float(similarity["b"])) == (0.9, 0.4)
    finally:
        await store.drop_collection("tuned")
        await store.close()


async def test_a_tantivy_collection_without_its_documents_index_keeps_ranking_chunks(tmp_path: Path) -> None:
    """A collection written before BM25 ranked whole documents has no documents index: it keeps
    answering with chunk-level BM25 (every matching chunk a hit), and writes do not start one half-filled."""
    store = TantivyIndex(tmp_path / "tantivy")
    await store.ensure_collection("old")
    await store.close()
    shutil.rmtree(tmp_path / "tantivy" / "old" / tantivy_backend.DOCUMENTS_FOLDER)

    store = TantivyIndex(tmp_path / "tantivy")
    try:
        await store.upsert("old", split_document())
        hits = await store.search("old", "zeppelin hangar", limit=5)
        assert sorted(hit.chunk_id for hit in hits) == ["split#0", "split#1"]
        assert not (tmp_path / "tantivy" / "old" / tantivy_backend.DOCUMENTS_FOLDER).exists()
    finally:
        await store.close()


@pytest.mark.elasticsearch
@pytest.mark.skipif(not ES_URL, reason="FATHOM_TEST_ELASTICSEARCH_URL is not set")
async def test_an_elasticsearch_collection_without_its_documents_index_keeps_ranking_chunks() -> None:
    prefix = f"fathom-test-{uuid.uuid4().hex[:8]}-"
    async with AsyncElasticsearch(ES_URL) as client:
        await client.indices.create(index=f"{prefix}old", **load_index_body(analyzer="standard"))
        store = ElasticsearchIndex(ElasticsearchSettings(url=ES_URL, index_prefix=prefix))
        try:
            await store.upsert("old", split_document())
            hits = await store.search("old", "zeppelin hangar", limit=5)
            assert sorted(hit.chunk_id for hit in hits) == ["split#0", "split#1"]
            assert not await client.indices.exists(index=f"{prefix}old{DOCUMENTS_SUFFIX}")
        finally:
            await store.drop_collection("old")
            await store.close()
