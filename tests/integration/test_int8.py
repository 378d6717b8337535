"""int8 models: quantised once at load and cached by the source file's hash, ranking as fp32 does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from service.backends.embedder import FastembedEmbedder
from service.modelkit.digests import file_digest
from service.modelkit.onnx_session import RECIPE
from service.modelkit.smoothing import OUTLIER_SUFFIX
from service.settings import EmbeddingSettings, settings_from_dict
from tests.conftest import BENCH, DATA, EMBEDDER, MODELS, bearer
from tests.integration.rerank_app import new_key, running

pytestmark = pytest.mark.anyio
INT8 = f"{BENCH}-int8"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def cranfield(count: int) -> tuple[list[str], list[str]]:
    lines = (DATA / "cranfield" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    queries = (DATA / "cranfield" / "queries.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    return [json.loads(q)["text"] for q in queries], [json.loads(line)["text"] for line in lines]


async def test_an_int8_reranker_ranks_as_fp32_and_is_quantised_once(tmp_path: Path) -> None:
    folder = str(MODELS / BENCH)
    settings = settings_from_dict(
        {
            "data_dir": str(tmp_path),
            "rerank": {
                "default_model": BENCH,
                "request_timeout": 600,  # a busy CI machine is slow; this test is about agreement
                "models": {BENCH: {"path": folder}, INT8: {"path": folder, "quantize": "int8"}},
            },
            "search": {"enabled": False},
        }
    )
    key = new_key(settings, "int8")
    queries, documents = cranfield(40)
    cached = (
        tmp_path / "models" / "int8" / f"{file_digest(MODELS / BENCH / 'model.onnx')}-{RECIPE}-fp32x2.onnx"
    )

    async def scores(client: object, model: str, query: str) -> np.ndarray:
        response = await client.post(  # type: ignore[attr-defined]
            "/v1/rerank",
            json={"model": model, "query": query, "documents": documents},
            headers=bearer(key),
        )
        assert response.status_code == 200, response.text
        found = np.empty(len(documents))
        for result in response.json()["results"]:
            found[result["index"]] = result["relevance_score"]
        return found

    async with running(settings) as client:
        pairs = [(await scores(client, BENCH, q), await scores(client, INT8, q)) for q in queries]
    assert cached.is_file() and cached.stat().st_size < (MODELS / BENCH / "model.onnx").stat().st_size * 0.75
    made = cached.stat().st_mtime_ns
    # The recipe: every MatMul with a weight in int8, per-token scales; pooler and classifier stay fp32.
    ops = {node.name: node.op_type for node in onnx.load(str(cached)).graph.node}
    for number in range(6):
        for part in ("attention/self/key", "attention/output/dense", "intermediate/dense", "output/dense"):
            assert ops[f"/m/bert/encoder/layer.{number}/{part}/MatMul/int8"] == "MatMulIntegerToFloat"
    assert ops["/m/classifier/Gemm"] == ops["/m/bert/pooler/dense/Gemm"] == "Gemm"
    # ... but for a few outlier input channels, multiplied in fp32 and added back.
    exact = [op for name, op in ops.items() if name.endswith(OUTLIER_SUFFIX)]
    assert exact and set(exact) == {"MatMul"}
    # ... and their inputs smoothed first: one Mul per input shared by MatMuls (query, key, value: one).
    smoothing = [name for name, op in ops.items() if op == "Mul" and name.endswith("/smoothed")]
    assert len(smoothing) == 6 * 4  # per layer: attention in, attention out, FFN in, FFN out
    for fp32, int8 in pairs:
        assert not np.allclose(fp32, int8, atol=1e-6)  # really another model
        assert spearman(fp32, int8) >= 0.95
        assert len(set(np.argsort(-fp32)[:10]) & set(np.argsort(-int8)[:10])) >= 8
    async with running(settings) as client:  # a restart loads the cached file, does not quantise again
        await scores(client, INT8, queries[0])
    assert cached.stat().st_mtime_ns == made


def test_an_int8_embedder_agrees_with_fp32(tmp_path: Path) -> None:
    reference = json.loads((EMBEDDER / "reference_embeddings.json").read_text())
    texts = [item["text"] for item in reference["sentences"]]
    folder = str(EMBEDDER)
    fp32 = FastembedEmbedder(EmbeddingSettings(path=folder), tmp_path)
    int8 = FastembedEmbedder(EmbeddingSettings(path=folder, quantize="int8"), tmp_path)
    try:
        a = np.array(fp32.embed_passages_sync(texts))
        b = np.array(int8.embed_passages_sync(texts))
    finally:
        fp32.close()
        int8.close()
    assert np.allclose(a, [item["embedding"] for item in reference["sentences"]], atol=1e-4)  # fp32 parity
    cosines = np.sum(a * b, axis=1)
    assert cosines.min() >= 0.95 and cosines.mean() >= 0.98 and not np.allclose(a, b, atol=1e-5)
    (cached,) = (tmp_path / "int8").glob("*.onnx")
    assert cached.name.endswith(f"-{RECIPE}-fp32x0.onnx")
    nodes = onnx.load(str(cached)).graph.node
    smoothing = [node for node in nodes if node.name.endswith("/smoothed")]
    assert len(smoothing) == 6 * 4  # the embedder is smoothed as the cross-encoder is
    assert not [node for node in nodes if node.name.endswith(OUTLIER_SUFFIX)]  # but all in int8
