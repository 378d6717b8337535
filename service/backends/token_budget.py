"""Counting and cutting text in the tokens of a named tokenizer, for token budgets.

The default is the embedding model's tokenizer; a request may name another: a local rerank model's,
or one listed under [context] tokenizers (an LLM's tokenizer.json, so the budget is the prompt's).
Counts leave out special tokens: they are the text's tokens, as a prompt would hold them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from tokenizers import Tokenizer

from service.errors import InvalidRequest, ModelUnavailable
from service.settings import Settings


class TokenCounter:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def cut(self, text: str, tokens: int) -> str:
        """The longest prefix of `text` of at most `tokens` tokens, ending at a word's end if it can."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= tokens:
            return text
        if tokens < 1:
            return ""
        end = tokens
        words = encoding.word_ids
        while end > 1 and words[end] is not None and words[end] == words[end - 1]:
            end -= 1
        prefix = text[: encoding.offsets[end - 1][1]]
        # A prefix can tokenize differently from its place in the whole; shrink until it fits.
        while end > 1 and self.count(prefix) > tokens:
            end -= 1
            prefix = text[: encoding.offsets[end - 1][1]]
        return prefix


def tokenizer_file(path: Path) -> Path:
    return path / "tokenizer.json" if path.is_dir() else path


class TokenCounters:
    """Counters by name, each file loaded once on first use."""

    def __init__(self, settings: Settings, embedding: Tokenizer) -> None:
        self.default_name = settings.embedding.model
        self._paths = {
            name: Path(model.path)
            for name, model in settings.rerank.enabled_models().items()
            if model.path is not None
        }
        self._paths.update({name: Path(path) for name, path in settings.context.tokenizers.items()})
        self._loaded = {self.default_name: TokenCounter(embedding)}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return sorted({self.default_name, *self._paths})

    def get(self, name: str | None) -> TokenCounter:
        """The named counter (the embedding model's for None); InvalidRequest for an unknown name."""
        name = name or self.default_name
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = TokenCounter(self._load(name))
            return self._loaded[name]

    def _load(self, name: str) -> Tokenizer:
        if name not in self._paths:
            raise InvalidRequest(f"unknown tokenizer {name!r}; available: {', '.join(self.names)}")
        path = tokenizer_file(self._paths[name])
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises plain Exception for a bad file
            raise ModelUnavailable(f"tokenizer {name!r} cannot be loaded from {path}: {exc}") from exc
