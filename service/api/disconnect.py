"""Stop a request's work when its client hangs up: ASGI servers keep running the handler otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from litestar import Request

from service.search.errors import ClientGone

T = TypeVar("T")


async def cancel_on_disconnect(request: Request[Any, Any, Any], work: Coroutine[Any, Any, T]) -> T:
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


async def _disconnect(request: Request[Any, Any, Any]) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
