"""Embedder fingerprints: what differs is named first, and model files are hashed once per version."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from service.modelkit import digests
from service.search.fingerprint import EmbedderFingerprint, mismatch

FP32 = EmbedderFingerprint("m", "a" * 64, "none", "", 256, "mean+normalize", 384)


def test_a_fingerprint_survives_the_journal() -> None:
    assert EmbedderFingerprint.from_json(FP32.to_json()) == FP32
    with pytest.raises(ValueError, match="no 'model_hash'"):
        EmbedderFingerprint.from_json('{"model": "m"}')


def test_the_refusal_names_the_differing_fields_first_and_the_fix() -> None:
    int8 = replace(FP32, quantize="int8", recipe="smooth-v5")
    message = str(mismatch("docs", FP32, int8))
    assert "(quantize, recipe differ)" in message
    assert "Collection: quantize='none', recipe=''" in message
    assert "Configured: quantize='int8', recipe='smooth-v5', model='m'" in message
    assert "[embedding] quantize" in message and "--collection docs" in message


def test_a_model_file_is_hashed_once_per_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"weights")
    hashed: list[Path] = []
    real = digests.file_digest

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(digests, "file_digest", counting)
    monkeypatch.setattr(digests, "_known", {})
    first = digests.cached_digest(model, tmp_path / "cache")
    assert digests.cached_digest(model, tmp_path / "cache") == first and len(hashed) == 1
    # Another process: read from the cache file, not hashed again.
    monkeypatch.setattr(digests, "_known", {})
    assert digests.cached_digest(model, tmp_path / "cache") == first and len(hashed) == 1
    # A changed file is hashed again.
    model.write_bytes(b"other weights")
    os.utime(model, ns=(1, 1))
    assert digests.cached_digest(model, tmp_path / "cache") != first and len(hashed) == 2
