"""A source document as the indexer sees it, whatever format it came from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def content_hash(self) -> str:
        """Changes whenever anything that ends up in a store changes."""
        canonical = json.dumps(
            [self.title, self.text, self.metadata], sort_keys=True, ensure_ascii=False, default=str
        )
        return hashlib.sha256(canonical.encode()).hexdigest()
