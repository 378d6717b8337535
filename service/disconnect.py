"""Stop a request's work when its client hangs up: ASGI servers keep running the handler otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from service.errors import ClientGone

T = TypeVar("T")


class Connection(Protocol):
    """What is watched for the hang-up: a Litestar request, or the Starlette request of an MCP tool call."""

    @property
    def receive(self) -> Callable[[], Awaitable[Any]]: ...


async def cancel_on_disconnect(request: Connection, work: Coroutine[Any, Any, T]) -> T:
    """The result of `work`, or ClientGone after cancelling it if the client disconnects first.

    Call it after the body has been read: from then on the only message the server sends is
    `http.disconnect` (uvicorn also sends it once the response is complete, when nobody waits).
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone = not task.done()  # the client left, or this handler itself is being cancelled
        task.cancel()
        watcher.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if gone:
        raise ClientGone("the client closed the connection before the answer was ready")
    return task.result()


async def _disconnect(request: Connection) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
