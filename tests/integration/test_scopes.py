"""Key scopes as operators make them (`fathom keys create --scope`) and as the API enforces them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import bearer
from tests.integration.ingest_app import FATHOM, cli_env
from tests.integration.rerank_app import running
from tests.integration.search_app import cranfield, search_settings

pytestmark = pytest.mark.anyio
DOC = cranfield(limit=1)[0]
BODY = {"documents": [{"id": DOC.id, "title": DOC.title, "text": DOC.text, "metadata": DOC.metadata}]}


def fathom(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FATHOM, *args], capture_output=True, text=True, env=cli_env(data_dir), timeout=60, check=False
    )


def create_key(data_dir: Path, name: str, *options: str) -> str:
    created = fathom(data_dir, "keys", "create", "--name", name, *options)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def assert_forbidden(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["type"] == "permission_error" and error["code"] == "insufficient_scope"
    assert scope in error["message"]


async def test_each_scope_opens_only_its_routes(tmp_path: Path) -> None:
    settings = search_settings(tmp_path)
    searcher = bearer(create_key(tmp_path, "site-search"))  # no --scope: search only
    pusher = bearer(create_key(tmp_path, "pusher", "--scope", "write", "--collections", "site"))
    admin = bearer(create_key(tmp_path, "ops", "--scope", "admin"))
    broke = bearer(create_key(tmp_path, "broke", "--scope", "search,write", "--quota", "0"))
    async with running(settings) as client:
        assert_forbidden(await client.put("/v1/collections/site", headers=searcher), "admin")
        assert_forbidden(await client.put("/v1/collections/site", headers=pusher), "admin")
        assert (await client.put("/v1/collections/site", headers=admin)).status_code == 201
        assert (await client.put("/v1/collections/other", headers=admin)).status_code == 201

        site, other = "/v1/collections/site/documents", "/v1/collections/other/documents"
        assert_forbidden(await client.post(site, json=BODY, headers=searcher), "write")
        pushed = await client.post(site, json=BODY, headers=pusher)
        assert pushed.status_code == 200 and pushed.json()["added"] == 1
        assert_forbidden(await client.post(other, json=BODY, headers=pusher), "site")
        listed = (await client.get("/v1/collections", headers=pusher)).json()
        assert listed == {"collections": [{"name": "site", "documents": 1}]}

        query = {"query": "boundary layer", "collection": "site", "rerank": {"enabled": False}}
        assert (await client.post("/v1/search", json=query, headers=searcher)).status_code == 200
        assert_forbidden(await client.post("/v1/search", json=query, headers=pusher), "search")

        # A key with quota 0 gets nothing in: document writes are billed like other calls.
        refused = await client.post(site, json=BODY, headers=broke)
        assert refused.status_code == 402 and refused.json()["error"]["code"] == "quota_exceeded"

        assert_forbidden(await client.delete("/v1/collections/site", headers=searcher), "admin")
        assert_forbidden(await client.delete(f"{site}/{DOC.id}", headers=searcher), "write")
        assert (await client.delete("/v1/collections/site", headers=admin)).status_code == 200


async def test_metrics_need_an_admin_key_only_when_configured(tmp_path: Path) -> None:
    searcher = bearer(create_key(tmp_path, "s"))
    admin = bearer(create_key(tmp_path, "a", "--scope", "admin"))
    open_settings = search_settings(tmp_path, enabled=False)
    async with running(open_settings) as client:
        assert (await client.get("/metrics")).status_code == 200
    closed = search_settings(tmp_path, enabled=False)
    closed.auth.metrics_admin_only = True
    async with running(closed) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert_forbidden(await client.get("/metrics", headers=searcher), "admin")
        assert (await client.get("/metrics", headers=admin)).status_code == 200


def test_keys_cli_shows_scopes_and_refuses_unknown_ones(tmp_path: Path) -> None:
    create_key(tmp_path, "limited", "--scope", "write", "--scope", "search", "--collections", "a,b")
    listing = fathom(tmp_path, "keys", "list").stdout.splitlines()
    row = next(line for line in listing if line.startswith("limited"))
    assert row.split()[-2:] == ["search,write", "a,b"]
    unknown = fathom(tmp_path, "keys", "create", "--name", "x", "--scope", "delete")
    assert unknown.returncode == 2 and "unknown scope 'delete'" in unknown.stderr
    bad_collection = fathom(tmp_path, "keys", "create", "--name", "x", "--collections", "Bad Name")
    assert bad_collection.returncode == 2 and "not valid" in bad_collection.stderr
