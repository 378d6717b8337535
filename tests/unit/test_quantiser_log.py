"""Quantising a model at load logs one line of ours and leaves the root logger as it was."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from service.modelkit.onnx_session import quantized
from service.modelkit.smoothing import Calibration
from tests.conftest import MODELS


def test_quantising_logs_our_line_and_none_of_the_quantisers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    folder = MODELS / "cross-encoder-tiny-random"
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    target = quantized(folder / "model.onnx", tmp_path, Calibration(tokenizer, pairs=True))
    assert target.is_file()
    ours = [r for r in caplog.records if r.name.startswith("fathom")]
    assert any("quantising" in r.getMessage() for r in ours)
    assert [r.getMessage() for r in caplog.records if r.name == "root"] == []
    # The filter is gone afterwards: the root logger is left as it was.
    assert logging.getLogger().filters == []
