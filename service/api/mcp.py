"""/mcp: the MCP server's streamable HTTP transport, mounted on the service behind the API key guard."""

from __future__ import annotations

from litestar.handlers import ASGIRouteHandler, asgi
from litestar.types import Receive, Scope, Send
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp

from service.api.guard import require_api_key
from service.auth.scopes import SEARCH

MCP_PATH = "/mcp"
# A route's `opt` flag: its errors are answered as JSON-RPC errors (service/api/errors.py).
JSONRPC_ERRORS = "jsonrpc_errors"


def mcp_route(server: MCPServer[object], host: str) -> ASGIRouteHandler:
    """The route, after setting up the server's session manager (run it in the app's lifespan).

    Stateless with JSON answers: any replica can answer any request, and nothing is kept per client.
    """
    server.streamable_http_app(stateless_http=True, json_response=True, host=host)
    transport = StreamableHTTPASGIApp(server.session_manager)

    @asgi(
        MCP_PATH,
        is_mount=True,
        guards=[require_api_key],
        opt={"scope": SEARCH, JSONRPC_ERRORS: True},
        copy_scope=True,
    )
    async def mcp_transport(scope: Scope, receive: Receive, send: Send) -> None:
        await transport(scope, receive, send)  # type: ignore[arg-type]

    return mcp_transport
