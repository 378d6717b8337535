"""Chunking with the real embedding tokenizer: windows, overlap, title room, deterministic ids."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from service.ingest.chunking import Chunker, ChunkingPolicy, chunk_id
from service.ingest.documents import Document
from tests.conftest import EMBEDDER


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(EMBEDDER / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text).ids)  # with special tokens, as the model sees it


def test_short_document_is_one_chunk(tokenizer: Tokenizer) -> None:
    doc = Document("d1", "Wings", "lift and drag of a wing")
    [chunk] = Chunker(tokenizer, ChunkingPolicy()).chunks(doc)
    assert (chunk.id, chunk.text, chunk.title, chunk.position) == ("d1#0", doc.text, "Wings", 0)


def test_empty_document_still_has_a_chunk(tokenizer: Tokenizer) -> None:
    [chunk] = Chunker(tokenizer, ChunkingPolicy()).chunks(Document("empty", "", ""))
    assert chunk.id == "empty#0" and chunk.text == ""


def test_long_document_windows_fit_the_model_and_overlap(tokenizer: Tokenizer) -> None:
    words = [f"word{i}" for i in range(600)]
    doc = Document("long", "A title of several words", " ".join(words), {"lang": "en"})
    policy = ChunkingPolicy(max_tokens=64, overlap=8)
    chunks = Chunker(tokenizer, policy).chunks(doc)
    assert len(chunks) > 5
    assert [c.id for c in chunks] == [chunk_id("long", i) for i in range(len(chunks))]
    for chunk in chunks:
        assert tokens(tokenizer, f"{chunk.title}\n{chunk.text}") <= policy.max_tokens
        assert chunk.metadata == {"lang": "en"}
    assert chunks[0].text.startswith("word0 ") and chunks[-1].text.endswith("word599")
    # consecutive windows share text: the last words of one chunk open the next
    assert chunks[1].text.split()[0] in chunks[0].text.split()
    assert set(" ".join(c.text for c in chunks).split()) == set(words)


def test_bad_overlap_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        ChunkingPolicy(max_tokens=64, overlap=40)
