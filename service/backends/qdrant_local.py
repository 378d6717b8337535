"""Qdrant's local mode, off the event loop.

Local mode computes in the caller's thread, even behind AsyncQdrantClient: a brute-force search over a
large collection would stall every other request the server is handling. Here the synchronous client
runs on one worker thread of its own (local mode is not thread-safe, so one thread also serialises it),
and each call is awaited like the server client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient

from service.errors import StoreLocked


class ThreadedLocalClient:
    """The async surface QdrantIndex uses, on a synchronous local-mode QdrantClient."""

    def __init__(self, path: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fathom-qdrant-local")
        try:
            self._client = self._executor.submit(QdrantClient, path=str(path)).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, partial(method, *args, **kwargs)
            )

        return call

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._client.close)
        self._executor.shutdown(wait=True)


def check_unlocked(path: Path) -> None:
    """StoreLocked when another process holds the folder: tried as local mode takes its lock (an
    exclusive, non-blocking lock of <path>/.lock), and released at once. For `fathom serve` to refuse
    to start, rather than serve 503s that waiting never clears."""
    lock_file = path / ".lock"
    if not lock_file.exists():
        return
    import portalocker  # as qdrant-client does: importing it checks for writeable folders

    with lock_file.open("r+") as handle:
        try:
            portalocker.lock(handle, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
        except portalocker.exceptions.LockException as exc:
            raise StoreLocked(f"qdrant local storage {path} is in use by another process") from exc
        portalocker.unlock(handle)
