"""SHA-256 of model files, computed once per file version and remembered.

A model file runs to gigabytes, and hashing one takes seconds: every process that loads it (a CLI run,
a server start) would pay that again. A digest is kept in memory and in a small JSON file beside the
model cache, keyed by the file's resolved path, size and modification time, so a file that changes is
hashed again and one that does not never is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

log = logging.getLogger("fathom.models")

# The file under a model cache folder that keeps the digests.
DIGESTS_FILE = "digests.json"

_known: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_digest(path: Path, cache_dir: Path) -> str:
    """file_digest(path), from memory or `<cache_dir>/digests.json` when the file has not changed."""
    stat = path.stat()
    where = str(path.resolve())
    key = (where, stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _known:
            return _known[key]
        entries = _read(cache_dir / DIGESTS_FILE)
        entry = entries.get(where)
        if isinstance(entry, dict) and (entry.get("size"), entry.get("mtime_ns")) == key[1:]:
            digest = str(entry.get("sha256"))
        else:
            digest = file_digest(path)
            entries[where] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
            _write(cache_dir / DIGESTS_FILE, entries)
        _known[key] = digest
        return digest


def _read(path: Path) -> dict[str, object]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or damaged: hashing again is all it costs
    return raw if isinstance(raw, dict) else {}


def _write(path: Path, entries: dict[str, object]) -> None:
    """Written beside and renamed, so a reader never sees half a file; a failure only costs a rehash."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".digests-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(entries, handle, indent=1, sort_keys=True)
        Path(scratch).replace(path)
    except OSError as exc:
        log.warning("could not remember model digests in %s: %s", path, exc)
