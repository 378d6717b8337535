"""RemoteEmbedder: embeddings from an OpenAI-compatible `/v1/embeddings` service ([embedding] url).

Another Fathom, Hugging Face TEI, Infinity, vLLM and OpenAI all answer OpenAI's request: `model`,
`input` (a list of texts), and `data: [{index, embedding}]`. Passages go in batches of
`batch_size`, at most `concurrency` requests at a time; a request that meets a 429, a 5xx, a timeout
or a broken connection is sent again after an exponential backoff (or the server's Retry-After), up to
`max_retries` times, so a service restarting in the middle of an index run costs the run a pause, not
its work. The writer stores nothing of a batch until every vector of it has come back, so a retried
request never leaves a vector twice or half a batch in the store.

Chunks are still cut here, with the model's tokenizer (`[embedding] path` holding tokenizer.json, or
the hub's for `model`): the service only embeds. Its fingerprint is the model name it answers with
and a hash of its vector for a fixed probe text: another model, or the same one quantised, answers
the probe with another vector.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
from tokenizers import Tokenizer

from service.backends.embedder import TokenizingEmbedder, untruncated_copy
from service.errors import BackendUnavailable, InvalidRequest, ModelUnavailable
from service.search.fingerprint import EmbedderFingerprint
from service.settings import EmbeddingSettings

log = logging.getLogger("fathom")

# Embedded alone, always: its vector identifies the service's model, file and precision.
PROBE_TEXT = "Fathom embedder probe: boundary layer transition on a swept wing at high Mach numbers."
# The probe's vector is rounded before it is hashed, so two machines' last bits do not tell them apart,
# while int8 against fp32 (components apart by about 1e-3) or another model does.
PROBE_DECIMALS = 2
BACKOFF_FIRST = 0.5
BACKOFF_MOST = 30.0
# The longest Retry-After honoured: a server asking for more is retried sooner.
RETRY_AFTER_MOST = 60.0


def endpoint(url: str) -> str:
    """The embeddings endpoint: `url` itself when it names one, else OpenAI's path under it (a base URL
    such as `http://host:8080` or `https://api.openai.com/v1`, as OpenAI clients take)."""
    url = url.rstrip("/")
    if url.endswith("/embeddings"):
        return url
    return f"{url}/embeddings" if url.endswith("/v1") else f"{url}/v1/embeddings"


def remote_tokenizer(settings: EmbeddingSettings) -> Tokenizer:
    """The model's tokenizer, untruncated: from `path` (a folder holding tokenizer.json, or the file)."""
    try:
        if settings.path:
            file = Path(settings.path)
            return untruncated_copy(
                Tokenizer.from_file(str(file / "tokenizer.json" if file.is_dir() else file))
            )
        return untruncated_copy(Tokenizer.from_pretrained(settings.model))
    except Exception as exc:  # tokenizers raises plain Exceptions for a missing file or hub model
        raise ModelUnavailable(
            f"the tokenizer of embedding model {settings.model!r} cannot be loaded ({exc}): with"
            " [embedding] url, set [embedding] path to a folder holding the model's tokenizer.json;"
            " chunks are cut with it"
        ) from exc


def probe_hash(vector: Sequence[float]) -> str:
    rounded = [round(value, PROBE_DECIMALS) + 0.0 for value in vector]  # + 0.0: -0.0 hashes as 0.0
    return hashlib.sha256(json.dumps(rounded).encode()).hexdigest()


def retry_after(response: httpx.Response) -> float:
    """Seconds the server asks to wait (Retry-After as seconds or as an HTTP date); 0 when it does not."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return 0.0
    return min(max(seconds, 0.0), RETRY_AFTER_MOST)


def backoff(attempt: int) -> float:
    """Exponential, with jitter so clients refused together do not come back together."""
    ceiling: float = min(BACKOFF_MOST, BACKOFF_FIRST * 2.0**attempt)
    return ceiling * random.uniform(0.5, 1.0)


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


class RemoteEmbedder(TokenizingEmbedder):
    """The TextEmbedder protocol on a remote `/v1/embeddings`; `open()` probes it for its fingerprint."""

    def __init__(self, settings: EmbeddingSettings, tokenizer: Tokenizer) -> None:
        super().__init__(settings, tokenizer)
        self._url = endpoint(settings.url)
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=settings.timeout)
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))
        self._fingerprint: EmbedderFingerprint | None = None

    @classmethod
    async def open(cls, settings: EmbeddingSettings) -> RemoteEmbedder:
        embedder = cls(settings, await asyncio.to_thread(remote_tokenizer, settings))
        try:
            await embedder.probe()
        except BaseException:
            await embedder.aclose()
            raise
        return embedder

    async def probe(self) -> EmbedderFingerprint:
        """Embed the probe text and take the service's fingerprint from it."""
        [vector], model = await self._embed_batch([PROBE_TEXT])
        self._fingerprint = EmbedderFingerprint(
            model=model,
            model_hash=f"probe:{probe_hash(vector)}",
            quantize="remote",
            recipe="",
            max_length=self._settings.max_length,
            pooling="remote",
            dimensions=len(vector),
        )
        return self._fingerprint

    @property
    def fingerprint(self) -> EmbedderFingerprint:
        if self._fingerprint is None:
            raise RuntimeError("RemoteEmbedder used before open() probed the service")
        return self._fingerprint

    @property
    def dimensions(self) -> int:
        return self.fingerprint.dimensions

    async def _embed_query(self, text: str) -> list[float]:
        [vector], _ = await self._embed_batch([text])
        return vector

    async def embed_passages(
        self,
        texts: Sequence[str],
        on_embedded: Callable[[int], object] | None = None,
        lengths: Sequence[int] | None = None,
    ) -> list[list[float]]:
        """One vector per text, in order; batches of similar lengths (the service pads each batch)."""
        sizes = lengths if lengths is not None else [len(text) for text in texts]
        order = sorted(range(len(texts)), key=lambda index: sizes[index])
        size = max(1, self._settings.batch_size)
        result: list[list[float]] = [[] for _ in texts]

        async def one(indexes: list[int]) -> None:
            vectors, _ = await self._embed_batch([texts[index] for index in indexes])
            for index, vector in zip(indexes, vectors, strict=True):
                result[index] = vector
                if on_embedded is not None:
                    on_embedded(index)

        try:
            async with asyncio.TaskGroup() as group:
                for start in range(0, len(order), size):
                    group.create_task(one(order[start : start + size]))
        except ExceptionGroup as failure:  # the first batch that failed for good; the rest were stopped
            raise failure.exceptions[0] from None
        return result

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _embed_batch(self, texts: list[str]) -> tuple[list[list[float]], str]:
        """The vectors of `texts` and the model name the service answered with, retried as it allows."""
        body = {"model": self._settings.model, "input": texts, "encoding_format": "float"}
        retries = max(0, self._settings.max_retries)
        async with self._slots:
            for attempt in range(retries + 1):
                try:
                    response = await self._client.post(self._url, json=body)
                except httpx.TransportError as exc:  # refused, reset, timed out
                    failure, wait = f"{type(exc).__name__}: {exc}", backoff(attempt)
                else:
                    if response.status_code == 200:
                        return self._vectors(response, len(texts))
                    if not retryable(response.status_code):
                        raise self._refused(response)
                    failure = f"answered {response.status_code}"
                    wait = max(backoff(attempt), retry_after(response))
                if attempt == retries:
                    raise BackendUnavailable(
                        f"the embedding service at {self._url} failed {retries + 1} times ({failure})"
                    )
                log.warning(
                    "embedding service at %s: %s; retry %d of %d in %.1f s",
                    self._url,
                    failure,
                    attempt + 1,
                    retries,
                    wait,
                )
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _vectors(self, response: httpx.Response, count: int) -> tuple[list[list[float]], str]:
        try:
            payload: Any = response.json()
            data = sorted(payload["data"], key=lambda item: item["index"])
            vectors = [[float(value) for value in item["embedding"]] for item in data]
            model = str(payload.get("model") or self._settings.model)
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailable(
                f"the embedding service at {self._url} answered something other than OpenAI's embeddings"
                f" response ({type(exc).__name__}: {exc})"
            ) from exc
        widths = {len(vector) for vector in vectors}
        expected = {self._fingerprint.dimensions} if self._fingerprint else widths
        if len(vectors) != count or len(widths) > 1 or widths != expected:
            raise BackendUnavailable(
                f"the embedding service at {self._url} answered {len(vectors)} vectors of {sorted(widths)}"
                f" dimensions for {count} texts (expected {sorted(expected)})"
            )
        return vectors, model

    def _refused(self, response: httpx.Response) -> InvalidRequest | BackendUnavailable:
        """A 4xx other than 429: the same request would be refused again. A 400 or 413 is about the
        texts (too long for the service, say); any other (401, 403, 404) about this server's settings."""
        detail = (
            f"the embedding service at {self._url} answered {response.status_code}: {response.text[:300]}"
        )
        if response.status_code in {400, 413, 422}:
            return InvalidRequest(detail)
        return BackendUnavailable(f"{detail}; check [embedding] url, api_key and model")
