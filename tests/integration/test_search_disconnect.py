"""A search whose client hangs up is cancelled, not computed for nobody (issue 7, defect 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from tests.integration.rerank_app import new_key
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio
CANCELLED = "fathom_search_cancelled_total"


def cancelled(metrics: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(CANCELLED + " "))
    return float(line.split()[1])


async def test_a_client_that_hangs_up_cancels_its_search(tmp_path: Path) -> None:
    settings = search_settings(tmp_path)
    key = new_key(settings, "searcher")
    auth = {"Authorization": f"Bearer {key}"}
    documents = [{"id": d.id, "title": d.title, "text": d.text} for d in cranfield(limit=20)]
    search = {"query": "boundary layer flow", "collection": "site", "rerank": {"enabled": True}}
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://fathom") as client:
        await app.state["services"].wait_started()
        assert (await client.put("/v1/collections/site", headers=auth)).status_code == 201
        written = await client.post(
            "/v1/collections/site/documents", json={"documents": documents}, headers=auth
        )
        assert written.status_code == 200, written.text
        # A client that stays gets its answer, and nothing counts as cancelled.
        assert (await client.post("/v1/search", json=search, headers=auth)).status_code == 200
        assert cancelled((await client.get("/metrics")).text) == 0

        # A raw ASGI client that sends its request, then disconnects before any answer.
        body = json.dumps(search).encode()
        incoming = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/search",
            "raw_path": b"/v1/search",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"fathom"),
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {key}".encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("fathom", 80),
        }
        await app(scope, receive, send)  # type: ignore[arg-type]

        assert cancelled((await client.get("/metrics")).text) == 1
        starts = [m for m in sent if m["type"] == "http.response.start"]
        assert [m["status"] for m in starts] == [499]  # logged as nginx does; nobody reads it
        # The server is not left busy: the next search answers.
        assert (await client.post("/v1/search", json=search, headers=auth)).status_code == 200
