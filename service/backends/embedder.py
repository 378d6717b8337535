"""FastembedEmbedder: sentence embeddings from an ONNX model through fastembed, off the event loop."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
from fastembed.text.onnx_text_model import OnnxTextModel
from tokenizers import Tokenizer

from service.errors import ModelUnavailable
from service.modelkit.digests import cached_digest
from service.modelkit.hub import download_options, unavailable_reason
from service.modelkit.onnx_session import open_session, recipe
from service.modelkit.smoothing import Calibration
from service.search.fingerprint import EmbedderFingerprint
from service.settings import EmbeddingSettings

# What a local model folder must hold; the ONNX graph's name is fixed so the folder layout is the contract.
LOCAL_MODEL_FILE = "model.onnx"
LOCAL_REQUIRED_FILES = (LOCAL_MODEL_FILE, "tokenizer.json", "tokenizer_config.json", "config.json")

# Local folders are registered with fastembed under this prefix so they never shadow a hub model it knows.
LOCAL_NAME_PREFIX = "fathom-local/"

# fastembed's model classes that fix their pooling in code rather than in a registration.
KNOWN_POOLING = {
    "PooledNormalizedEmbedding": "mean+normalize",
    "PooledEmbedding": "mean",
    "OnnxTextEmbedding": "cls+normalize",
    "LastTokenNormalizedEmbedding": "last_token+normalize",
}

A = TypeVar("A")
R = TypeVar("R")


FLOAT_BYTES = sys.getsizeof(0.5)


def entry_bytes(text: str, vector: tuple[float, ...]) -> int:
    """Memory an entry holds: the text, the tuple and its float objects."""
    return sys.getsizeof(text) + sys.getsizeof(vector) + FLOAT_BYTES * len(vector)


class QueryCache:
    """Least-recently-used query vectors, bounded in entries and in bytes; size 0 turns caching off.

    The byte bound matters as much as the count: queries are client text, and a thousand long ones
    would otherwise hold their texts for good. Vectors are stored as tuples and handed out as fresh
    lists, so no caller can alter a cached entry.
    """

    def __init__(self, size: int, max_bytes: int = 33_554_432) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, tuple[float, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, text: str) -> list[float] | None:
        vector = self._entries.get(text)
        if vector is None:
            return None
        self._entries.move_to_end(text)
        return list(vector)

    def put(self, text: str, vector: Sequence[float]) -> None:
        stored = tuple(vector)
        cost = entry_bytes(text, stored)
        if self._size <= 0 or cost > self._max_bytes:
            return
        if text in self._entries:
            self._bytes -= entry_bytes(text, self._entries.pop(text))
        self._entries[text] = stored
        self._bytes += cost
        while len(self._entries) > self._size or self._bytes > self._max_bytes:
            old_text, old_vector = self._entries.popitem(last=False)
            self._bytes -= entry_bytes(old_text, old_vector)


class TextEmbedder(Protocol):
    """What the stack needs of an embedder, in process or remote: vectors, the tokenizer chunks are cut
    with, and the fingerprint a collection records."""

    @property
    def dimensions(self) -> int: ...

    @property
    def max_length(self) -> int: ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def fingerprint(self) -> EmbedderFingerprint: ...

    def count_tokens(self, text: str) -> int: ...

    def token_counts(self, texts: Sequence[str]) -> list[int]: ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def embed_passages(
        self,
        texts: Sequence[str],
        on_embedded: Callable[[int], object] | None = None,
        lengths: Sequence[int] | None = None,
    ) -> list[list[float]]: ...


class TokenizingEmbedder:
    """What every embedder Fathom runs shares, in process or remote: the model's tokenizer here (chunks
    are cut and budgets counted with it) and the repeated-query cache in front of `_embed_query`."""

    def __init__(self, settings: EmbeddingSettings, tokenizer: Tokenizer) -> None:
        self._settings = settings
        self._tokenizer = tokenizer
        self._cache = QueryCache(settings.query_cache_size, settings.query_cache_bytes)

    @property
    def max_length(self) -> int:
        """Tokens per input, special tokens included; longer inputs are cut at the right."""
        return self._settings.max_length

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer without truncation or padding, for counting and chunking."""
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens the model would see, special tokens included: `<= max_length` means nothing is cut."""
        return self.token_counts([text])[0]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """count_tokens of each text.

        encode_batch even for one text: it lets go of the GIL while it works, where `encode` holds it, so
        a long text tokenised on a worker thread stalled the event loop with it (a 1 MB text: /healthz
        took 1.9 s).
        """
        return [len(encoding.ids) for encoding in self._tokenizer.encode_batch(list(texts))]

    async def embed_query(self, text: str) -> list[float]:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        vector = await self._embed_query(text)
        self._cache.put(text, vector)
        return vector

    async def _embed_query(self, text: str) -> list[float]:
        raise NotImplementedError


class FastembedEmbedder(TokenizingEmbedder):
    """The Embedder protocol on fastembed's TextEmbedding: one model, one inference thread.

    The single worker thread serialises query inference, so concurrent requests never oversubscribe the
    cores ONNX Runtime already parallelises over; the indexer's passages go through the same thread.
    """

    def __init__(self, settings: EmbeddingSettings, cache_dir: Path) -> None:
        self._model, model_file = load_text_embedding(settings, cache_dir)
        inference_tokenizer = model_tokenizer(self._model, settings)
        truncate_at(inference_tokenizer, settings.max_length)
        super().__init__(settings, untruncated_copy(inference_tokenizer))
        self._dimensions = self._model.embedding_size
        self._fingerprint = EmbedderFingerprint(
            model=settings.model,
            model_hash=cached_digest(model_file, cache_dir),
            quantize=settings.quantize,
            recipe="" if settings.quantize == "none" else recipe(embedder_calibration(inference_tokenizer)),
            max_length=settings.max_length,
            pooling=pooling_of(self._model),
            dimensions=self._dimensions,
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fathom-embedder")

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def fingerprint(self) -> EmbedderFingerprint:
        """Model file hash (cached by path, size and mtime), quantisation and recipe, length, pooling."""
        return self._fingerprint

    async def _embed_query(self, text: str) -> list[float]:
        return await self._in_worker(self._embed_query_sync, text)

    async def embed_passages(
        self,
        texts: Sequence[str],
        on_embedded: Callable[[int], object] | None = None,
        lengths: Sequence[int] | None = None,
    ) -> list[list[float]]:
        """On the one inference thread, queued behind (or ahead of) query embeddings, never beside them."""
        work = partial(self.embed_passages_sync, on_embedded=on_embedded, lengths=lengths)
        return await self._in_worker(work, texts)

    def embed_passages_sync(
        self,
        texts: Sequence[str],
        on_embedded: Callable[[int], object] | None = None,
        lengths: Sequence[int] | None = None,
    ) -> list[list[float]]:
        """One vector per text, in order, on the calling thread.

        Texts are embedded shortest first, by tokens, so each batch pads to a similar length, then put
        back in order. (By characters, CACM's chunks ran 1.27x the tokens they needed against 1.02x, and
        tokenising them once more costs a fraction of a percent of embedding them.)
        `on_embedded(index)` is called as each text's vector arrives (for an indexer's progress bar).
        `lengths`, the texts' token_counts when the caller has them already, spares tokenising them again.
        """
        if lengths is None:
            lengths = self.token_counts(texts)
        order = sorted(range(len(texts)), key=lambda index: lengths[index])
        vectors = self._model.embed([texts[index] for index in order], batch_size=self._settings.batch_size)
        result: list[list[float]] = [[] for _ in texts]
        for index, vector in zip(order, vectors, strict=True):
            result[index] = vector.tolist()
            if on_embedded is not None:
                on_embedded(index)
        return result

    def close(self) -> None:
        """Stop the inference thread; queued work is cancelled, a running batch finishes."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _embed_query_sync(self, text: str) -> list[float]:
        vector = next(iter(self._model.query_embed(text)))
        result: list[float] = vector.tolist()
        return result

    async def _in_worker(self, function: Callable[[A], R], argument: A) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, argument)


def load_text_embedding(settings: EmbeddingSettings, cache_dir: Path) -> tuple[TextEmbedding, Path]:
    """The fastembed model and its ONNX file: the folder at `settings.path`, else a hub model.

    fastembed finds the files and reads the tokenizer; the ONNX session is Fathom's own (thread
    settings for a shared machine, int8 when `quantize` asks), as for the rerank models.
    """
    where = f"folder {settings.path}" if settings.path else f"model {settings.model!r}"
    try:
        if settings.path:
            name = register_local_model(settings.model, Path(settings.path), settings.max_length)
            model = TextEmbedding(
                name, cache_dir=str(cache_dir), specific_model_path=settings.path, lazy_load=True
            )
        else:
            model = TextEmbedding(
                settings.model, cache_dir=str(cache_dir), lazy_load=True, **download_options()
            )
        inner: Any = model.model
        inner._ensure_tokenizer()
        model_file = Path(inner._model_dir) / inner.model_description.model_file
    except ModelUnavailable:
        raise
    except Exception as exc:  # fastembed raises anything from ValueError to network and ONNX errors
        reason = str(exc) if settings.path else unavailable_reason(exc)
        raise ModelUnavailable(f"embedding {where} cannot be loaded: {reason}") from exc
    inner.model = open_session(
        model_file,
        threads=settings.threads,
        quantize=settings.quantize,
        cache_dir=cache_dir,
        calibration=embedder_calibration(inner.tokenizer),
        # A request's largest batch would otherwise stay allocated after it (see ShrinkingSession).
        release_memory=True,
    )
    return model, model_file


def embedder_calibration(tokenizer: Tokenizer) -> Calibration:
    """How an embedder is calibrated for int8 (its recipe is part of a collection's fingerprint).

    No outlier channels in fp32 here: on the MiniLM embedder they brought cosine to fp32 from 0.9991
    to 0.9996 but cost 13% of its int8 speed, and indexing speed is why int8 is chosen.
    """
    return Calibration(tokenizer, pairs=False, outlier_channels=0)


def pooling_of(model: TextEmbedding) -> str:
    """How fastembed turns token vectors into one: the pooling and whether it normalises."""
    inner: Any = model.model
    pooling = getattr(inner, "_pooling", None)
    if pooling is not None:
        normalized = "+normalize" if getattr(inner, "_normalization", False) else ""
        return f"{getattr(pooling, 'value', pooling)}{normalized}".lower()
    return KNOWN_POOLING.get(type(inner).__name__, type(inner).__name__)


def register_local_model(model_id: str, path: Path, max_length: int) -> str:
    """Register the folder's model with fastembed once per process; returns the name to load it by.

    The name carries the dimension, the only thing a registration fixes beyond mean pooling and
    normalisation, so two folders of one model id but different widths never collide.
    """
    config = read_local_config(path)
    dimensions = config_int(config, "hidden_size", path)
    check_max_length(max_length, config, path)
    name = f"{LOCAL_NAME_PREFIX}{model_id}:{dimensions}"
    known = {description["model"].lower() for description in TextEmbedding.list_supported_models()}
    if name.lower() not in known:
        TextEmbedding.add_custom_model(
            name,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=model_id),
            dim=dimensions,
            model_file=LOCAL_MODEL_FILE,
        )
    return name


def read_local_config(path: Path) -> dict[str, object]:
    """config.json of a local model folder, after checking the folder holds every file loading needs."""
    if not path.is_dir():
        raise ModelUnavailable(f"embedding model folder {path} does not exist")
    missing = [name for name in LOCAL_REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelUnavailable(f"embedding model folder {path} lacks {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"{path / 'config.json'} cannot be read: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelUnavailable(f"{path / 'config.json'} is not a JSON object")
    return config


def check_max_length(max_length: int, config: dict[str, object], path: Path) -> None:
    """Refuse a limit past the position table: ONNX Runtime would fail on the first long input instead."""
    positions = config.get("max_position_embeddings")
    if max_length <= 0 or (isinstance(positions, int) and max_length > positions):
        raise ModelUnavailable(
            f"embedding max_length {max_length} does not fit the model in {path} "
            f"(max_position_embeddings {positions})"
        )


def config_int(config: dict[str, object], key: str, path: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelUnavailable(f"{path / 'config.json'} has no positive integer {key!r}")
    return value


def model_tokenizer(model: TextEmbedding, settings: EmbeddingSettings) -> Tokenizer:
    inner = model.model
    if not isinstance(inner, OnnxTextModel) or inner.tokenizer is None:
        raise ModelUnavailable(f"embedding model {settings.model!r} exposes no tokenizer to truncate with")
    return inner.tokenizer


def truncate_at(tokenizer: Tokenizer, max_length: int) -> None:
    """Cut at exactly `max_length` tokens.

    fastembed takes the smaller of two tokenizer_config.json keys, so a folder that says 128 would be
    silently cut at 128; the configured limit wins instead. The direction fastembed resolved is kept.
    """
    direction = (tokenizer.truncation or {}).get("direction", "right")
    tokenizer.enable_truncation(max_length=max_length, direction=direction)


def untruncated_copy(tokenizer: Tokenizer) -> Tokenizer:
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy
