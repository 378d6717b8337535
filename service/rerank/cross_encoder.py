"""A cross-encoder loaded through fastembed, tokenised and run the way the references were computed.

fastembed finds or downloads the model and opens the ONNX Runtime session; Fathom does its own
tokenisation and batching on top, because the service needs what fastembed's `rerank` does not give:
`max_tokens_per_doc`, length-sorted batches shared across requests, and token counts for billing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastembed.common.model_description import ModelSource
from fastembed.rerank.cross_encoder import TextCrossEncoder
from tokenizers import Encoding, Tokenizer

from service.errors import ModelUnavailable
from service.modelkit.hub import download_options, unavailable_reason
from service.modelkit.onnx_session import Quantize, open_session
from service.modelkit.smoothing import Calibration

_REGISTER_LOCK = threading.Lock()
LOCAL_PREFIX = "fathom-local/"


@dataclass(frozen=True, slots=True)
class PairEncoding:
    """The token ids of one (query, document) pair, truncated and with special tokens."""

    ids: list[int]
    type_ids: list[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """A request's pairs: one per document, or one per window of a long document (`owners` says whose)."""

    pairs: list[PairEncoding]
    owners: list[int]
    documents: int

    @property
    def tokens(self) -> int:
        return sum(len(pair) for pair in self.pairs)

    @property
    def split_documents(self) -> int:
        """Documents scored by more than one window."""
        return sum(1 for count in Counter(self.owners).values() if count > 1)

    def best_per_document(self, logits: np.ndarray) -> np.ndarray:
        """Each document's best window (MaxP); NaN where none of its windows was scored."""
        best = np.full(self.documents, np.nan)
        for owner, logit in zip(self.owners, logits, strict=True):
            if not np.isnan(logit) and not logit <= best[owner]:
                best[owner] = logit
        return best


class CrossEncoder:
    """Scores (query, document) pairs with an ONNX cross-encoder; thread-safe for one caller at a time."""

    def __init__(self, session: Any, tokenizer: Tokenizer, *, max_length: int) -> None:
        self._session = session
        self._input_names = {node.name for node in session.get_inputs()}
        self._output_name = session.get_outputs()[0].name
        self.max_length = max_length
        # Two copies of the model's tokenizer: one that only splits text into tokens, and one whose
        # post-processing truncates a pair `longest_first` at max_length and adds the special tokens.
        self._splitter = Tokenizer.from_str(tokenizer.to_str())
        self._splitter.no_truncation()
        self._splitter.no_padding()
        self._pairer = Tokenizer.from_str(tokenizer.to_str())
        self._pairer.no_padding()
        self._pairer.enable_truncation(max_length=max_length, strategy="longest_first")
        self._pad_id = _pad_id(tokenizer)
        self._special_tokens: int = self._pairer.post_processor.num_special_tokens_to_add(True)

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        max_tokens_per_doc: int | None = None,
        max_chunks_per_doc: int = 1,
    ) -> EncodedRequest:
        """Tokenise each pair as `tokenizer(query, document, truncation="longest_first")` would.

        `max_tokens_per_doc` cuts the document first; the pair limit applies after it. A document that
        does not fit beside the query is split into up to `max_chunks_per_doc` overlapping windows
        (one window: cut `longest_first`, as the references were computed).
        """
        query_tokens = self._splitter.encode(query, add_special_tokens=False)
        doc_tokens = self._splitter.encode_batch(list(documents), add_special_tokens=False)
        window = self._window(len(query_tokens.ids))
        pairs: list[PairEncoding] = []
        owners: list[int] = []
        for index, doc in enumerate(doc_tokens):
            if max_tokens_per_doc is not None and len(doc.ids) > max_tokens_per_doc:
                doc.truncate(max_tokens_per_doc)
            for piece in _windows(doc, window, max_chunks_per_doc):
                pairs.append(self._pair(query_tokens, piece))
                owners.append(index)
        return EncodedRequest(pairs=pairs, owners=owners, documents=len(doc_tokens))

    def _window(self, query_length: int) -> int:
        """Document tokens per window: what is left beside the query, which keeps at most half."""
        room = self.max_length - self._special_tokens
        return int(max(1, room - min(query_length, room // 2)))

    def _pair(self, query: Encoding, document: Encoding) -> PairEncoding:
        # post_process mutates truncation state of its inputs' overflow only, so the shared
        # query encoding can be reused for every document.
        merged = self._pairer.post_process(query, document, add_special_tokens=True)
        return PairEncoding(ids=merged.ids, type_ids=merged.type_ids)

    def logits(self, batch: Sequence[PairEncoding]) -> np.ndarray:
        """One logit per pair: the batch is padded to its own longest pair, not to max_length."""
        width = max(len(pair) for pair in batch)
        input_ids = np.full((len(batch), width), self._pad_id, dtype=np.int64)
        type_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, pair in enumerate(batch):
            input_ids[row, : len(pair)] = pair.ids
            type_ids[row, : len(pair)] = pair.type_ids
            mask[row, : len(pair)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids}
        outputs = self._session.run(
            [self._output_name], {k: v for k, v in feeds.items() if k in self._input_names}
        )
        return _relevance_logit(np.asarray(outputs[0], dtype=np.float64))


def _windows(document: Encoding, window: int, limit: int) -> list[Encoding]:
    """The document whole, or its first `limit` windows of `window` tokens overlapping by a quarter."""
    if limit <= 1 or len(document.ids) <= window:
        return [document]
    document.truncate(window, stride=window // 4)
    return [document, *document.overflowing][:limit]


def _relevance_logit(output: np.ndarray) -> np.ndarray:
    """The relevance logit per pair: the single output, or the last class of a two-class head."""
    if output.ndim == 1:
        return output
    if output.shape[-1] == 1:
        return np.asarray(output[:, 0])
    return np.asarray(output[:, -1] - output[:, 0])


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-logits)))


def _pad_id(tokenizer: Tokenizer) -> int:
    padding = tokenizer.padding or {}
    pad_id = padding.get("pad_id")
    if isinstance(pad_id, int):
        return pad_id
    return 0


def _model_file(folder: Path) -> str:
    for candidate in ("model.onnx", "onnx/model.onnx"):
        if (folder / candidate).is_file():
            return candidate
    raise ModelUnavailable(f"no model.onnx in {folder} (looked for model.onnx and onnx/model.onnx)")


def _register_local(model_id: str, folder: Path) -> str:
    """fastembed loads only models it knows, so a local folder is registered under its own name."""
    name = f"{LOCAL_PREFIX}{folder.resolve()}"
    with _REGISTER_LOCK:
        known = {m["model"].lower() for m in TextCrossEncoder.list_supported_models()}
        if name.lower() not in known:
            TextCrossEncoder.add_custom_model(
                name,
                sources=ModelSource(hf=model_id),
                model_file=_model_file(folder),
                description=f"local folder for {model_id}",
            )
    return name


def load_cross_encoder(
    model_id: str,
    path: str | None,
    *,
    cache_dir: Path,
    max_length: int,
    threads: int = 0,
    quantize: Quantize = "none",
    allow_spinning: bool = False,
) -> CrossEncoder:
    """Open a model from a local folder, or from fastembed's cache, downloading it when absent.

    fastembed finds (or downloads) the files and reads the tokenizer; the session is Fathom's own, with
    the thread settings of service.modelkit.onnx_session and, when asked, an int8 copy of the model.
    """
    try:
        if path:
            folder = Path(path)
            if not folder.is_dir():
                raise ModelUnavailable(f"model folder {folder} does not exist")
            name = _register_local(model_id, folder)
            encoder = TextCrossEncoder(name, specific_model_path=str(folder), cuda=False, lazy_load=True)
        else:
            encoder = TextCrossEncoder(
                model_id, cache_dir=str(cache_dir), cuda=False, lazy_load=True, **download_options()
            )
        inner: Any = encoder.model  # fastembed's ONNX wrapper: where the files are, and the tokenizer
        inner._ensure_tokenizer()
        model_file = Path(inner._model_dir) / inner.model_description.model_file
    except ModelUnavailable:
        raise
    except Exception as exc:  # fastembed raises ValueError, OSError, onnxruntime errors, hub errors
        reason = str(exc) if path else unavailable_reason(exc)
        raise ModelUnavailable(f"model {model_id!r} could not be loaded: {reason}") from exc
    session = open_session(
        model_file,
        threads=threads,
        quantize=quantize,
        cache_dir=cache_dir,
        calibration=Calibration(inner.tokenizer, pairs=True),
        allow_spinning=allow_spinning,
    )
    return CrossEncoder(session, inner.tokenizer, max_length=max_length)
