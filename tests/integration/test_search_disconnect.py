"""A search whose client hangs up is cancelled, not computed for nobody: /v1/search,
/v1/context and the MCP search tool over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from service.app import create_app
from tests.conftest import bearer
from tests.integration.rerank_app import new_key
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio
CANCELLED = "fathom_search_cancelled_total"
QUERY = "boundary layer flow"
# The MCP transport answers JSON (stateless), and checks the Host against the server's own address.
MCP_HEADERS = {"accept": "application/json, text/event-stream", "host": "127.0.0.1:8000"}
CASES = {
    "/v1/search": ({"query": QUERY, "collection": "site", "rerank": {"enabled": True}}, {}),
    "/v1/context": ({"query": QUERY, "collection": "site"}, {}),
    "/mcp": (
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "search", "arguments": {"query": QUERY, "collection": "site"}},
        },
        MCP_HEADERS,
    ),
}


def cancelled(metrics: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(CANCELLED + " "))
    return float(line.split()[1])


async def hang_up(app: Litestar, path: str, body: dict[str, Any], headers: dict[str, str]) -> list[int]:
    """A raw ASGI client that sends its request, then disconnects before any answer; the statuses sent."""
    incoming = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    all_headers = {"host": "fathom", "content-type": "application/json", **headers}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in all_headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("fathom", 80),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    return [message["status"] for message in sent if message["type"] == "http.response.start"]


@pytest.mark.parametrize("path", list(CASES))
async def test_a_client_that_hangs_up_cancels_its_search(tmp_path: Path, path: str) -> None:
    settings = search_settings(tmp_path)
    key = new_key(settings, "searcher")
    auth = bearer(key)
    body, headers = CASES[path]
    documents = [{"id": d.id, "title": d.title, "text": d.text} for d in cranfield(limit=20)]
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://fathom") as client:
        await app.state["runtime"].wait_started()
        assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
        written = await client.post(
            "/v1/collections/site/documents", json={"documents": documents}, headers=auth
        )
        assert written.status_code == 200, written.text
        # A client that stays gets its answer, and nothing counts as cancelled.
        stays = await client.post(path, json=body, headers={**auth, **headers})
        assert stays.status_code == 200, stays.text
        assert "isError" not in stays.text or '"isError":false' in stays.text.replace(" ", "")
        assert cancelled((await client.get("/metrics")).text) == 0

        statuses = await hang_up(app, path, body, {**auth, **headers})

        assert cancelled((await client.get("/metrics")).text) == 1
        if path != "/mcp":  # the MCP transport answers in its own way, to nobody
            assert statuses == [499]  # logged as nginx does; nobody reads it
        # The server is not left busy: the next search answers.
        assert (await client.post(path, json=body, headers={**auth, **headers})).status_code == 200
