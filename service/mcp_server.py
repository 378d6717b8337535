"""The MCP server: `search`, `get_document` and `list_collections` tools for assistants.

One MCPServer (the official SDK) serves both transports: stdio (`fathom mcp`, a process of the
assistant's own, no key needed) and streamable HTTP mounted on the service at /mcp, behind the API
key guard, where each search is billed as a /v1/context request. The tools are a thin adapter over
the search service (service/search_service.py), as the HTTP routes are: `search` is /v1/context, so an
assistant gets cited passages that fit its context window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import mcp_types
import msgspec
import pydantic
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from service.auth.access import bearer_token, check_collection, check_scope
from service.auth.billing import billed
from service.auth.keys import ApiKey
from service.auth.scopes import SEARCH
from service.disconnect import cancel_on_disconnect
from service.errors import ClientGone, FathomError, Unauthorized
from service.runtime import Runtime, open_runtime
from service.search_service import SEARCH_UNITS_PER_CONTEXT, ContextQuery
from service.settings import Settings

INSTRUCTIONS = (
    "Fathom searches document collections. Call list_collections to learn their names, search to get "
    "the passages that answer a question (cite them by their citation's id, title, url and page), and "
    "get_document to read a whole document."
)
DEFAULT_MAX_TOKENS = 2000
DEFAULT_MAX_CHARS = 20_000
T = TypeVar("T")


async def caller_key(runtime: Runtime, context: Context[Any, Any]) -> ApiKey | None:
    """The key of an HTTP caller, to bill and limit; None on stdio, whose caller runs the process itself.

    The /mcp route's guard has already refused requests without a valid key; this finds which one.
    """
    headers = context.headers if context.request_context.request is not None else None
    if headers is None or not runtime.settings.auth.enabled:
        return None
    # SQLite off the event loop, as the route guard reads it.
    key = await asyncio.to_thread(runtime.key_store.authenticate, bearer_token(headers.get("authorization")))
    if key is None:
        raise Unauthorized("invalid or revoked API key")
    check_scope(key, SEARCH)
    return key


async def collection_key(runtime: Runtime, context: Context[Any, Any], collection: str) -> ApiKey | None:
    """The caller's key, once it is known to reach `collection`."""
    key = await caller_key(runtime, context)
    check_collection(key, collection)
    return key


def build_mcp_server(runtime: Runtime, *, patient: bool = False) -> MCPServer[Any]:
    """The tools on `runtime`. `patient` (stdio): a tool waits for what it needs to finish opening, so
    the assistant's `initialize` is answered at once; over HTTP the server's /readyz says when it is
    ready, and a tool called before then answers that search is still starting."""

    async def opened(everything: bool) -> None:
        if patient:
            await (runtime.wait_started() if everything else runtime.search.wait_opened())

    with logging_left_alone():
        server: MCPServer[Any] = MCPServer(
            "fathom", instructions=INSTRUCTIONS, version="0.1.0", warn_on_duplicate_tools=False
        )

    @server.tool()
    async def search(
        query: str,
        collection: str,
        context: Context[Any, Any],
        max_tokens: int = DEFAULT_MAX_TOKENS,
        filter: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The passages of a collection that best answer `query`, best first, within `max_tokens`.

        Each passage has its text and a citation: document id, title, url, page and character offsets.
        `filter` restricts metadata fields, e.g. {"year": {"gte": 2020}} or {"lang": "en"}.
        """
        request = ContextQuery(query=query, collection=collection, max_tokens=max_tokens, filter=filter)
        with tool_errors():
            await opened(everything=True)  # the reranker too
            key = await collection_key(runtime, context, collection)
            async with billed(runtime.key_store, key, SEARCH_UNITS_PER_CONTEXT):
                response = await searched(runtime, context, runtime.search.context(request))
        result: dict[str, Any] = msgspec.to_builtins(response)
        return result

    @server.tool()
    async def get_document(
        collection: str, id: str, context: Context[Any, Any], max_chars: int = DEFAULT_MAX_CHARS
    ) -> dict[str, Any]:
        """A whole document by id (from a search citation): title, url, metadata and text.

        Text past `max_chars` characters is left out and `truncated` is true.
        """
        with tool_errors():
            await opened(everything=False)
            await collection_key(runtime, context, collection)
            document = await runtime.search.get_document(collection, id, max_chars)
        result: dict[str, Any] = msgspec.to_builtins(document)
        return result

    @server.tool()
    async def list_collections(context: Context[Any, Any]) -> list[str]:
        """The names of the collections that can be searched."""
        with tool_errors():
            await opened(everything=False)
            return runtime.search.collections(await caller_key(runtime, context))

    return server


async def searched(runtime: Runtime, context: Context[Any, Any], work: Coroutine[Any, Any, T]) -> T:
    """Over HTTP, the search stops when the client hangs up, as /v1/search and /v1/context do."""
    http = context.request_context.request
    if http is None:  # stdio: the assistant's own process, which ends the tool by ending us
        return await work
    try:
        return await cancel_on_disconnect(http, work)
    except ClientGone:
        runtime.metrics.searches_cancelled.inc()
        raise


@contextmanager
def logging_left_alone() -> Iterator[None]:
    """MCPServer() calls logging.basicConfig, a no-op only when the root logger has a handler.

    Logging is the process's to configure (`fathom serve` and `fathom mcp` do), not a library's.
    """
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)


@contextmanager
def tool_errors() -> Iterator[None]:
    """Fathom's errors reach the assistant as tool errors with their message: it can fix its call."""
    try:
        yield
    except FathomError as exc:
        raise ToolError(str(exc)) from exc


async def serve_stdio(settings: Settings) -> None:
    """`fathom mcp`: the tools over stdin and stdout, on the configured stores, until stdin closes.

    The stores are opened in this process, as `fathom serve` opens them; in the embedded setup
    Qdrant's local files take one process at a time, so run it against servers, or with the service
    stopped. They open in the background, as the models load: `initialize` is answered at once (an
    assistant gives up on a server that is silent for long), and each tool waits for what it needs;
    a store that cannot be opened (another process holds it) is the tools' error message.
    """
    async with open_runtime(settings, background=True) as runtime:
        server = build_mcp_server(runtime, patient=True)
        async with stdio_server() as (read_stream, write_stream):
            lowlevel = server._lowlevel_server
            answered = AnsweringBadLines(read_stream, write_stream)
            await lowlevel.run(answered, write_stream, lowlevel.create_initialization_options())


class AnsweringBadLines:
    """The stdio read stream, answering each line that is not a JSON-RPC message with a JSON-RPC error.

    The SDK's stdio transport hands such lines to the server as exceptions, which it only logs: the
    client waited for an answer that never came. JSON-RPC 2.0 asks for -32700 (parse error) for a line
    that is not JSON and -32600 (invalid request) for JSON that is not a request, with id null unless
    the id could be read. Everything else passes through, and the server keeps reading.
    """

    def __init__(self, inner: Any, write_stream: Any) -> None:
        self._inner = inner
        self._write = write_stream

    @property
    def last_context(self) -> Any:
        # The server runs each message in the context its sender had: pass the transport's on.
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item  # type: ignore[no-any-return]
            await self._write.send(SessionMessage(error_answer(item)))

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> AnsweringBadLines:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AnsweringBadLines:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def error_answer(exc: Exception) -> mcp_types.JSONRPCError:
    """-32700 when the line was not JSON, else -32600, with the request's id when it had a usable one."""
    problems = exc.errors() if isinstance(exc, pydantic.ValidationError) else []
    if not problems or any(problem["type"] == "json_invalid" for problem in problems):
        code, message = mcp_types.PARSE_ERROR, "Parse error: the line is not JSON"
    else:
        code, message = (
            mcp_types.INVALID_REQUEST,
            'Invalid Request: send a JSON-RPC 2.0 object with "jsonrpc": "2.0", a "method" and an "id"',
        )
    request_id = next((found for p in problems if (found := usable_id(p.get("input"))) is not None), None)
    error = mcp_types.ErrorData(code=code, message=message)
    return mcp_types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error)


def usable_id(value: object) -> str | int | None:
    """The `id` of a JSON object, when it is one JSON-RPC allows (a string or a whole number)."""
    request_id = value.get("id") if isinstance(value, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None
