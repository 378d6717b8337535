"""POST /v1/embeddings: OpenAI's embeddings API on the configured embedding model, for OpenAI clients.

Inputs longer than the model's token limit are refused, as OpenAI refuses them, rather than cut
silently: a vector of half a text would look like a vector of all of it. Before any of that, an input
longer than [embedding] max_input_chars is refused by its length alone: tokenising costs time and memory
by the character, and a 9 MB word is only 3 tokens, so the token limit bounds neither.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody, SkipValidation

from service.api.guard import require_api_key
from service.auth.billing import billed, embedding_search_units
from service.auth.keys import ApiKey, Keys
from service.auth.scopes import SEARCH
from service.backends.embedder import TextEmbedder
from service.errors import InvalidRequest
from service.settings import Settings

# As OpenAI: at most this many inputs per request.
MAX_INPUTS = 2048
# Inputs tokenised at once when counting: counting stops at the first batch holding a text that is too
# long, so a request of many long texts never has all their tokens in memory together.
COUNT_BATCH = 32


class EmbeddingsRequest(msgspec.Struct, kw_only=True):
    """OpenAI's request. `user` is accepted and ignored; `dimensions` must be the model's own."""

    model: Annotated[str, msgspec.Meta(min_length=1, description="The embedding model of GET /v1/models.")]
    # OpenAI also takes token ids (lists of ints); msgspec allows one list type in a union.
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class Embedding(msgspec.Struct):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(msgspec.Struct):
    data: list[Embedding]
    model: Annotated[str, msgspec.Meta(min_length=1, description="The embedding model of GET /v1/models.")]
    usage: EmbeddingsUsage
    object: str = "list"


def input_texts(request: EmbeddingsRequest, max_chars: int) -> list[str]:
    """The inputs as a list of non-empty strings of at most `max_chars` characters; token-id inputs name
    another model's vocabulary."""
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not texts:
        raise InvalidRequest("input must hold at least one text")
    if not all(isinstance(text, str) for text in texts):
        raise InvalidRequest("input must be a string or a list of strings; token ids are not accepted")
    if len(texts) > MAX_INPUTS:
        raise InvalidRequest(f"input holds {len(texts)} texts; at most {MAX_INPUTS} per request")
    strings = [str(text) for text in texts]
    check_lengths(strings, max_chars)
    empty = [index for index, text in enumerate(strings) if not text.strip()]
    if empty:
        raise InvalidRequest(f"input[{empty[0]}] is empty; every input must hold some text")
    return strings


def check_lengths(texts: list[str], max_chars: int) -> None:
    """InvalidRequest naming the first text longer than `max_chars` characters, and the limit."""
    for index, text in enumerate(texts):
        if len(text) > max_chars:
            raise InvalidRequest(
                f"input[{index}] is {len(text)} characters long; the limit is {max_chars}:"
                " split it into shorter texts"
            )


def validate(request: EmbeddingsRequest, embedder: TextEmbedder, model: str) -> None:
    if request.model != model:
        raise InvalidRequest(f"unknown model {request.model!r}: this server embeds with {model!r}")
    if request.dimensions is not None and request.dimensions != embedder.dimensions:
        raise InvalidRequest(
            f"dimensions must be {embedder.dimensions}, the model's own; it cannot shorten its vectors"
        )


def token_counts(embedder: TextEmbedder, texts: list[str]) -> list[int]:
    """Tokens per input, special tokens included; InvalidRequest naming the first one that is too long."""
    counts: list[int] = []
    for start in range(0, len(texts), COUNT_BATCH):
        counts += embedder.token_counts(texts[start : start + COUNT_BATCH])
        for index, count in enumerate(counts[start:], start):
            if count > embedder.max_length:
                raise InvalidRequest(
                    f"input[{index}] is {count} tokens long; the model reads at most {embedder.max_length}:"
                    " split it into shorter texts"
                )
    return counts


def encoded(vector: list[float], encoding_format: str) -> list[float] | str:
    """base64 is the little-endian float32 bytes, as OpenAI sends it and its clients decode it."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


@post(
    "/v1/embeddings",
    guards=[require_api_key],
    opt={"scope": SEARCH},
    status_code=200,
    summary="Embed texts",
    tags=["embeddings"],
)
async def embeddings(
    data: JSONBody[EmbeddingsRequest],
    embedder: NamedDependency[SkipValidation[TextEmbedder]],
    settings: NamedDependency[Settings],
    keys: NamedDependency[SkipValidation[Keys]],
    api_key: NamedDependency[ApiKey | None],
) -> EmbeddingsResponse:
    model = settings.embedding.model
    validate(data, embedder, model)
    texts = input_texts(data, settings.embedding.max_input_chars)
    counts = await asyncio.to_thread(token_counts, embedder, texts)
    async with billed(keys, api_key, embedding_search_units(len(texts))):
        vectors = await embedder.embed_passages(texts, lengths=counts)
    return EmbeddingsResponse(
        data=[
            Embedding(index, encoded(vector, data.encoding_format)) for index, vector in enumerate(vectors)
        ],
        model=model,
        usage=EmbeddingsUsage(prompt_tokens=sum(counts), total_tokens=sum(counts)),
    )
