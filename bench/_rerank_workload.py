"""The rerank bench's workload and its baseline: Cranfield abstracts, and fastembed's rerank in process."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.testing.live_server import SetupError

MODEL_ID = "bench"


@dataclass(frozen=True, slots=True)
class Workload:
    query: str
    query_id: str
    documents: list[str]
    document_ids: list[str]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def build_workload(data_dir: Path, docs: int, min_words: int, max_words: int, query_index: int) -> Workload:
    """The query at `query_index` and the first `docs` abstracts (corpus order) of min..max words."""
    corpus, queries = data_dir / "corpus.jsonl", data_dir / "queries.jsonl"
    for path in (corpus, queries):
        if not path.is_file():
            raise SetupError(f"{path} does not exist (BEIR jsonl expected; see --data-dir)")
    all_queries = list(read_jsonl(queries))
    if not 0 <= query_index < len(all_queries):
        raise SetupError(f"--query-index {query_index} is out of range: {queries} has {len(all_queries)}")
    query = all_queries[query_index]
    picked = [
        record
        for record in read_jsonl(corpus)
        if min_words <= len(str(record.get("text", "")).split()) <= max_words
    ][:docs]
    if len(picked) < docs:
        raise SetupError(f"only {len(picked)} documents of {min_words}..{max_words} words, {docs} wanted")
    return Workload(
        query=str(query["text"]),
        query_id=str(query["_id"]),
        documents=[str(record["text"]) for record in picked],
        document_ids=[str(record["_id"]) for record in picked],
    )


# --- baseline: fastembed in process ------------------------------------------------------------------


class Baseline:
    """fastembed's TextCrossEncoder on the model folder, loaded the way Fathom loads a local folder."""

    def __init__(self, model_dir: Path, batch_size: int) -> None:
        from fastembed.common.model_description import ModelSource
        from fastembed.rerank.cross_encoder import TextCrossEncoder

        name = f"bench-baseline/{model_dir.resolve()}"
        known = {m["model"].lower() for m in TextCrossEncoder.list_supported_models()}
        if name.lower() not in known:
            model_file = "model.onnx" if (model_dir / "model.onnx").is_file() else "onnx/model.onnx"
            TextCrossEncoder.add_custom_model(
                name, sources=ModelSource(hf=MODEL_ID), model_file=model_file, description="bench baseline"
            )
        self.encoder = TextCrossEncoder(name, specific_model_path=str(model_dir), cuda=False)
        self.batch_size = batch_size
        inner: Any = self.encoder.model
        truncation = inner.tokenizer.truncation or {}
        self.max_length = int(truncation.get("max_length", 0))
        self.truncation_strategy = str(truncation.get("strategy", "?"))
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.config_max_length = config.get("model_max_length")

    def logits(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return np.asarray(list(self.encoder.rerank(query, documents, batch_size=self.batch_size)))

    def token_lengths(self, query: str, documents: Sequence[str]) -> list[int]:
        """Unpadded pair lengths after truncation: the work a length-sorted batcher pays for."""
        inner: Any = self.encoder.model
        encodings = inner.tokenizer.encode_batch([(query, doc) for doc in documents])
        return [sum(encoding.attention_mask) for encoding in encodings]


def padded_tokens(lengths: Sequence[int], batch_size: int, *, sort: bool) -> int:
    """Tokens the model runs when batches are padded to their longest pair."""
    ordered = sorted(lengths) if sort else list(lengths)
    return sum(
        len(chunk) * max(chunk)
        for chunk in (ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size))
    )


def read_queries(data_dir: Path, first: int, count: int) -> list[tuple[str, str]]:
    records = list(read_jsonl(data_dir / "queries.jsonl"))[first : first + count]
    return [(str(record["_id"]), str(record["text"])) for record in records]
