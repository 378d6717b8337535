"""Requests that once crashed or exhausted the server: oversized queries,
bodies that cannot be decoded, numbers sent as strings. Each is a 400 with the usual error body."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import bearer
from tests.integration.ingest_app import fathom
from tests.integration.rerank_app import new_key, rerank_settings, running
from tests.integration.search_app import cranfield
from tests.integration.served import served, served_config

OVERSIZED_QUERIES = 20
RSS_SLACK_BYTES = 100 * 2**20
JSON_ROUTES = ["/v1/rerank", "/v1/search", "/v1/collections/site/documents", "/v1/embeddings"]


def server_pid(config: Path) -> int:
    """The `fathom serve` process started with this config file."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if str(config).encode() in args and b"serve" in args:
            return int(cmdline.parent.name)
    raise AssertionError(f"no fathom serve process runs with {config}")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_oversized_queries_are_refused_and_leave_memory_where_it_was(tmp_path: Path) -> None:
    config = served_config(tmp_path)
    created = fathom(config, tmp_path / "data", "keys", "create", "--name", "ops", "--scope", "admin")
    auth = bearer(created.stdout.strip().splitlines()[-1])
    documents = [{"id": d.id, "title": d.title, "text": d.text} for d in cranfield(limit=20)]
    with served(config) as url, httpx.Client(base_url=url, timeout=60) as client:
        pid = server_pid(config)
        assert client.put("/v1/collections/site", headers=auth).status_code == 201
        assert client.post(
            "/v1/collections/site/documents", json={"documents": documents}, headers=auth
        ).is_success
        query = {"query": "boundary layer", "collection": "site", "rerank": {"enabled": False}}
        for _ in range(3):  # everything a search touches is loaded before the baseline
            assert client.post("/v1/search", json=query, headers=auth).status_code == 200
        before = rss_bytes(pid)
        huge = "boundary layer transition " * 40_000  # about 1 MB
        for _ in range(OVERSIZED_QUERIES):
            refused = client.post("/v1/search", json=query | {"query": huge}, headers=auth)
            assert refused.status_code == 400, refused.text
            assert (
                f"query is {len(huge)} characters long; the limit is 8192"
                in refused.json()["error"]["message"]
            )
        many_terms = client.post("/v1/search", json=query | {"query": "a b " * 600}, headers=auth)
        assert many_terms.status_code == 400 and "query has 1200 terms; the limit is 1024" in many_terms.text
        # A question pasted whole, as chatbots and "more like this" send: answered, not refused.
        pasted = " ".join(d["text"] for d in documents)[:3000]
        assert len(pasted.split()) > 300  # past the old limit of 256 terms
        for _ in range(3):
            answered = client.post("/v1/search", json=query | {"query": pasted}, headers=auth)
            assert answered.status_code == 200 and answered.json()["hits"], answered.text
        after = rss_bytes(pid)
        assert after - before < RSS_SLACK_BYTES, (before, after)
        assert client.post("/v1/search", json=query, headers=auth).status_code == 200


@pytest.mark.anyio
async def test_undecodable_bodies_are_400_on_every_json_route(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    auth = {**bearer(new_key(settings, "k")), "Content-Type": "application/json"}
    bodies = {
        "not UTF-8": b'{"query": "\\xff", "documents": ["a"]}'.replace(b"\\xff", b"\xff"),
        "nested too deeply": b'{"query": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    }
    async with running(settings) as client:
        for route in JSON_ROUTES:
            for problem, content in bodies.items():
                response = await client.post(route, content=content, headers=auth)
                assert response.status_code == 400, (route, problem, response.text)
                error = response.json()["error"]
                assert error["code"] == "invalid_json" and problem in error["message"], (route, error)


@pytest.mark.anyio
async def test_bodies_not_sent_as_json_are_415_on_every_json_route(tmp_path: Path) -> None:
    """Once parsed as JSON whatever they claimed to be: curl's `-d` sends a form's Content-Type."""
    settings = rerank_settings(tmp_path)
    auth = bearer(new_key(settings, "k"))
    body = b'{"query": "q", "documents": ["d"]}'
    sent = {
        "text/plain": 'Content-Type "text/plain"',
        "application/x-www-form-urlencoded": 'Content-Type "application/x-www-form-urlencoded"',
        None: "no Content-Type",
    }
    async with running(settings) as client:
        for route in JSON_ROUTES:
            for content_type, named in sent.items():
                headers = auth | ({"Content-Type": content_type} if content_type else {})
                response = await client.post(route, content=body, headers=headers)
                assert response.status_code == 415, (route, content_type, response.text)
                error = response.json()["error"]
                assert error["code"] == "unsupported_media_type", error
                assert "Content-Type: application/json" in error["message"] and named in error["message"]
        for content_type in (
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.api+json",
        ):
            response = await client.post(
                "/v1/rerank", content=body, headers=auth | {"Content-Type": content_type}
            )
            assert response.status_code == 200, (content_type, response.text)


@pytest.mark.anyio
async def test_numbers_sent_as_strings_are_refused(tmp_path: Path) -> None:
    settings = rerank_settings(tmp_path)
    auth = bearer(new_key(settings, "k"))
    async with running(settings) as client:
        rerank = await client.post(
            "/v1/rerank", json={"query": "q", "documents": ["d"], "top_n": "5"}, headers=auth
        )
        assert rerank.status_code == 400 and "top_n" in rerank.json()["error"]["message"]
        search = await client.post(
            "/v1/search", json={"query": "q", "collection": "c", "top_k": "5"}, headers=auth
        )
        assert search.status_code == 400 and "top_k" in search.json()["error"]["message"]
        fine = await client.post(
            "/v1/rerank", json={"query": "q", "documents": ["d"], "top_n": 5}, headers=auth
        )
        assert fine.status_code == 200
