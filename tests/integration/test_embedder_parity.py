"""FastembedEmbedder reproduces the PyTorch reference embeddings of the shared all-MiniLM-L6-v2 folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.backends.embedder import FastembedEmbedder
from service.errors import ModelUnavailable
from service.settings import EmbeddingSettings
from tests.conftest import MODELS

TOLERANCE = 1e-4
MODEL_NAME = "all-MiniLM-L6-v2"


MODEL_DIR = MODELS / MODEL_NAME

pytestmark = pytest.mark.skipif(not MODEL_DIR.is_dir(), reason=f"{MODEL_DIR} is not available")


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    with (MODEL_DIR / "reference_embeddings.json").open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastembedEmbedder]:
    settings = EmbeddingSettings(model=f"sentence-transformers/{MODEL_NAME}", path=str(MODEL_DIR))
    model = FastembedEmbedder(settings, tmp_path_factory.mktemp("models"))
    yield model
    model.close()


def texts_and_vectors(reference: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    sentences = reference["sentences"]
    return [s["text"] for s in sentences], np.array([s["embedding"] for s in sentences])


def max_abs_diff(actual: list[list[float]], expected: np.ndarray) -> float:
    return float(np.abs(np.array(actual) - expected).max())


def test_reference_was_made_at_the_configured_limit(
    reference: dict[str, Any], embedder: FastembedEmbedder
) -> None:
    texts, _ = texts_and_vectors(reference)
    assert reference["max_length"] == embedder.max_length == 256
    assert reference["pooling"] == "mean" and reference["normalize"] is True
    # Without an input past the limit, a wrong truncation could not show.
    assert max(embedder.count_tokens(text) for text in texts) > embedder.max_length


@pytest.mark.anyio
async def test_passages_match_reference(reference: dict[str, Any], embedder: FastembedEmbedder) -> None:
    texts, expected = texts_and_vectors(reference)
    vectors = await embedder.embed_passages(texts)
    assert embedder.dimensions == expected.shape[1]
    assert max_abs_diff(vectors, expected) < TOLERANCE


def test_passages_run_shortest_first_by_tokens_and_come_back_in_order(
    reference: dict[str, Any], embedder: FastembedEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, expected = texts_and_vectors(reference)
    # Characters and tokens disagree: nonsense letters are a wordpiece or two each, common words one
    # token each, so a sort by characters would run these two the other way round.
    tricky = ["zqxj" * 6, "understanding international relationships"]
    model = embedder._model
    seen: list[str] = []

    def recording(documents: list[str], **options: Any) -> Any:
        seen.extend(documents)
        return type(model).embed(model, documents, **options)

    monkeypatch.setattr(model, "embed", recording)
    vectors = embedder.embed_passages_sync([*tricky, *texts])
    lengths = [embedder.count_tokens(text) for text in seen]
    assert lengths == sorted(lengths)
    assert embedder.count_tokens(tricky[0]) > embedder.count_tokens(tricky[1])
    assert len(tricky[0]) < len(tricky[1])
    assert max_abs_diff(vectors[len(tricky) :], expected) < TOLERANCE


@pytest.mark.anyio
async def test_queries_match_reference_one_by_one(
    reference: dict[str, Any], embedder: FastembedEmbedder
) -> None:
    texts, expected = texts_and_vectors(reference)
    vectors = [await embedder.embed_query(text) for text in texts]
    assert max_abs_diff(vectors, expected) < TOLERANCE


def test_configured_limit_wins_over_a_shorter_tokenizer_config(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    """fastembed alone would cut at the folder's 128; the settings' 256 must win."""
    folder = tmp_path / "short-config"
    folder.mkdir()
    for name in ("model.onnx", "tokenizer.json", "config.json", "special_tokens_map.json"):
        (folder / name).symlink_to(MODEL_DIR / name)
    tokenizer_config = json.loads((MODEL_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config.update(max_length=128, model_max_length=128)
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")

    embedder = FastembedEmbedder(EmbeddingSettings(path=str(folder), max_length=256), tmp_path / "models")
    try:
        texts, expected = texts_and_vectors(reference)
        assert max_abs_diff(embedder.embed_passages_sync(texts), expected) < TOLERANCE
    finally:
        embedder.close()


def test_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"hidden_size": 384}', encoding="utf-8")
    with pytest.raises(ModelUnavailable, match=r"lacks model\.onnx, tokenizer\.json, tokenizer_config\.json"):
        FastembedEmbedder(EmbeddingSettings(path=str(tmp_path)), tmp_path / "models")


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        FastembedEmbedder(EmbeddingSettings(path=str(tmp_path / "nowhere")), tmp_path / "models")


def test_unknown_hub_model_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="no-such/model"):
        FastembedEmbedder(EmbeddingSettings(model="no-such/model"), tmp_path / "models")
