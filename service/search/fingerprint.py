"""What makes an embedder's vectors comparable: the fingerprint a collection records when it is created.

Two embedders whose fingerprints differ write vectors into different spaces (another model, another
file, int8 against fp32, texts cut at another length), so a query embedded by one finds nothing
meaningful among vectors of the other. The collection keeps the fingerprint of the embedder that wrote
it, and searching or indexing it with another is refused (EmbedderMismatch, 409) rather than degrading
its results silently.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from service.errors import EmbedderMismatch

# The settings an operator changes to get back the embedder a collection was indexed with.
SETTING_OF_FIELD = {
    "model": "[embedding] model (and path)",
    "model_hash": "[embedding] path (the model file) or url",
    "quantize": "[embedding] quantize",
    "recipe": "[embedding] quantize (the int8 recipe of another release)",
    "max_length": "[embedding] max_length",
    "pooling": "[embedding] model",
    "dimensions": "[embedding] model",
}


@dataclass(frozen=True, slots=True)
class EmbedderFingerprint:
    """`model_hash` is the SHA-256 of a local model file, or `probe:` and the hash of a remote
    service's vector for a fixed text; `recipe` names the int8 recipe ('' for fp32)."""

    model: str
    model_hash: str
    quantize: str
    recipe: str
    max_length: int
    pooling: str
    dimensions: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EmbedderFingerprint:
        """ValueError when the text is not a fingerprint this release can read."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        try:
            return cls(**{f.name: raw[f.name] for f in fields(cls)})
        except KeyError as exc:
            raise ValueError(f"no {exc.args[0]!r}") from exc

    def differences(self, other: EmbedderFingerprint) -> list[str]:
        """The names of the fields whose values differ, in field order."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def describe(self, first: list[str] | None = None) -> str:
        """`field=value` pairs, the fields named in `first` before the others."""
        order = list(first or []) + [f.name for f in fields(self) if f.name not in (first or [])]
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in order)


def mismatch(
    collection: str, recorded: EmbedderFingerprint, current: EmbedderFingerprint
) -> EmbedderMismatch:
    """The refusal: both fingerprints, the differing fields first, and the two ways out."""
    differing = recorded.differences(current)
    settings = sorted({SETTING_OF_FIELD[name] for name in differing})
    return EmbedderMismatch(
        f'collection "{collection}" was indexed with another embedder than the one configured'
        f" ({', '.join(differing)} differ), so its vectors and this embedder's would not be comparable."
        f" Collection: {recorded.describe(differing)}. Configured: {current.describe(differing)}."
        f" Either set {' and '.join(settings)} back to what the collection was indexed with, or"
        f" re-embed it with the configured embedder: {reembed_command(collection)}"
    )


def unreadable(collection: str, problem: str) -> EmbedderMismatch:
    return EmbedderMismatch(
        f'collection "{collection}" records an embedder this release cannot read ({problem}), so its'
        " vectors cannot be checked against the configured embedder; re-embed it:"
        f" {reembed_command(collection)}"
    )


def reembed_command(collection: str) -> str:
    """The command that rewrites a collection's vectors with the configured embedder."""
    return (
        f"drop it (DELETE /v1/collections/{collection}) and index it again"
        f" (fathom index SOURCE --collection {collection})"
    )
