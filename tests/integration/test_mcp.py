"""The MCP server with the official SDK's client: over HTTP at /mcp on `fathom serve`, and over stdio."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from service.auth.keys import KeyStore
from service.settings import Settings
from tests.conftest import BENCH, EMBEDDER, MODELS, TINY, bearer
from tests.integration.ingest_app import FATHOM, cli_env, fathom
from tests.integration.rerank_app import new_key
from tests.integration.search_app import cranfield, search_settings
from tests.integration.served import served, served_config
from tests.integration.test_indexer_cli import write_jsonl
from tests.paged_fixtures import pdf_bytes

pytestmark = pytest.mark.anyio
# `fathom mcp` answers initialize once Python has imported it (7-8 s measured on a quiet 2-core
# machine), whatever the models take: the bound documented in the README, with room for a busy machine.
INITIALIZE_BOUND_SECONDS = 30
DOCS = cranfield(limit=40)
TOOLS = {"search", "get_document", "list_collections"}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Settings]]:
    """A config and data folder holding `cran` (40 Cranfield abstracts) and `docs` (a PDF)."""
    folder = tmp_path_factory.mktemp("mcp")
    config, data = served_config(folder), folder / "data"
    source = write_jsonl(folder / "cran.jsonl", DOCS)
    assert fathom(config, data, "index", str(source), "--collection", "cran").returncode == 0
    (folder / "report.pdf").write_bytes(pdf_bytes())
    assert fathom(config, data, "index", str(folder / "report.pdf"), "--collection", "docs").returncode == 0
    yield config, data, search_settings(data)


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    content: dict[str, Any] = result.structured_content
    return content


async def check_tools(client: Client) -> None:
    """What an assistant does: find the collections, search one, read the document a citation names."""
    assert {tool.name for tool in (await client.list_tools()).tools} >= TOOLS
    collections = structured(await client.call_tool("list_collections", {}))
    assert set(collections["result"]) == {"cran", "docs"}

    target = DOCS[7]
    found = structured(
        await client.call_tool("search", {"query": target.title, "collection": "cran", "max_tokens": 300})
    )
    assert found["total_tokens"] <= 300 and found["passages"]
    cite = found["passages"][0]["citation"]
    assert cite["id"] in {d.id for d in DOCS}
    document = structured(await client.call_tool("get_document", {"collection": "cran", "id": cite["id"]}))
    original = next(d for d in DOCS if d.id == cite["id"])
    assert document["text"] == original.text and document["title"] == original.title
    assert document["text"][cite["start"] : cite["end"]] == found["passages"][0]["text"]

    paged = structured(await client.call_tool("search", {"query": "panel flutter", "collection": "docs"}))
    assert paged["passages"][0]["citation"]["page"] in (1, 2)
    assert paged["passages"][0]["citation"]["page_end"] >= 2

    failed = await client.call_tool("search", {"query": "flutter", "collection": "nope"})
    assert failed.is_error and 'collection "nope" does not exist' in failed.content[0].text


async def check_limited_key(url: str, key: str) -> None:
    """A key limited to one collection sees and searches only that one."""
    async with (
        httpx2.AsyncClient(headers=bearer(key), timeout=60) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        assert structured(await client.call_tool("list_collections", {}))["result"] == ["docs"]
        refused = await client.call_tool("search", {"query": "wings", "collection": "cran"})
        assert refused.is_error and "may only use the collections docs" in refused.content[0].text


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


async def check_refusals_reach_the_sdk(url: str, write_only_key: str) -> None:
    """A bad key (401) and a key without the search scope (403): the SDK raises with Fathom's words."""
    refusals = {
        "fth_not_a_key": "invalid or revoked API key",
        write_only_key: "scope",
    }
    for key, words in refusals.items():
        messages: list[str] = []
        async with httpx2.AsyncClient(headers=bearer(key), timeout=60) as http:
            try:
                async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
                    await client.list_tools()
            except* MCPError as refused:  # the SDK's task groups wrap it, maybe more than once
                messages = [str(error) for error in leaves(refused)]
        assert any(words in message for message in messages), messages


async def test_http_transport_with_keys_and_billing(indexed: tuple[Path, Path, Settings]) -> None:
    config, _, settings = indexed
    key = new_key(settings, "assistant")
    with served(config) as url:
        headers = bearer(key)
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            await check_tools(client)
        await check_limited_key(
            url, new_key(settings, "docs-only", scopes=("search",), collections=("docs",))
        )
        await check_refusals_reach_the_sdk(url, new_key(settings, "writer", scopes=("write",)))
        async with httpx.AsyncClient() as anonymous:
            refused = await anonymous.post(
                f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            )
        assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
    store = KeyStore.in_data_dir(settings.data_path)
    try:
        [used] = [k.used for k in store.list() if k.name == "assistant"]
    finally:
        store.close()
    assert used == 2  # the two successful searches; the failed one was refunded


async def test_stdio_transport(indexed: tuple[Path, Path, Settings]) -> None:
    config, data, _ = indexed
    server = StdioServerParameters(command=FATHOM, args=["--config", str(config), "mcp"], env=cli_env(data))
    async with Client(server, read_timeout_seconds=120) as client:
        await check_tools(client)


def relative_config(config: Path, data: Path) -> Path:
    """A copy of `config` whose model paths and data folder are written relative to the copy's folder."""
    relative = config.parent / "relative" / "fathom.toml"
    relative.parent.mkdir(exist_ok=True)
    text = config.read_text(encoding="utf-8")
    for absolute in (data, EMBEDDER, MODELS / TINY):
        text = text.replace(f'"{absolute}"', f'"{os.path.relpath(absolute, relative.parent)}"')
    assert '= "/' not in text, text  # no absolute path left
    relative.write_text(text, encoding="utf-8")
    return relative


async def test_stdio_from_another_folder_with_relative_paths_in_the_config(
    indexed: tuple[Path, Path, Settings],
) -> None:
    """As an assistant starts it: from `/`, the config named by an absolute path, its model paths and
    data folder written relative to the config file (the way config/offline.toml names ../../shared)."""
    config, data, _ = indexed
    env = cli_env(data)
    env.pop("FATHOM_DATA_DIR")  # the config's own (relative) data_dir
    args = ["--config", str(relative_config(config, data)), "mcp"]
    server = StdioServerParameters(command=FATHOM, args=args, env=env, cwd="/")
    async with Client(server, read_timeout_seconds=120) as client:
        await check_tools(client)


def answer(server: subprocess.Popen[bytes], line: bytes, seconds: float = 180) -> dict[str, Any]:
    """Write one line to `fathom mcp` and read the JSON-RPC message it answers with."""
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(line + b"\n")
    server.stdin.flush()
    ready, _, _ = select.select([server.stdout], [], [], seconds)
    assert ready, f"no answer to {line!r} within {seconds} s"
    message: dict[str, Any] = json.loads(server.stdout.readline())
    return message


def test_stdio_answers_lines_that_are_not_json_rpc_and_keeps_serving(
    indexed: tuple[Path, Path, Settings],
) -> None:
    """Such lines were once met with silence: the client waited for an answer that never came."""
    config, data, _ = indexed
    command = [FATHOM, "--config", str(config), "mcp"]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=cli_env(data)
    ) as server:
        try:
            not_json = answer(server, b'{"jsonrpc": "2.0", "id": 1, "method": ')
            assert not_json["id"] is None and not_json["error"]["code"] == -32700, not_json
            no_method = answer(server, b'{"jsonrpc": "2.0", "id": 7}')
            assert no_method["id"] == 7 and no_method["error"]["code"] == -32600, no_method
            not_an_object = answer(server, b"[1, 2]")
            assert not_an_object["id"] is None and not_an_object["error"]["code"] == -32600, not_an_object
            initialize = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"},
                },
            }
            answered = answer(server, json.dumps(initialize).encode())
            assert answered["id"] == 2 and answered["result"]["serverInfo"]["name"] == "fathom", answered
        finally:
            server.terminate()


def test_stdio_answers_initialize_before_the_reranker_has_loaded(
    indexed: tuple[Path, Path, Settings], tmp_path: Path
) -> None:
    """An assistant gives up on a server silent for long: `initialize` is answered while the reranker
    is still being made (an int8 copy quantised on first use, which takes far longer than starting),
    and the tools wait for what they need."""
    config, data, _ = indexed
    slow = tmp_path / "int8.toml"
    slow.write_text(
        config.read_text(encoding="utf-8").replace(f'default_model = "{TINY}"', f'default_model = "{BENCH}"')
        + f'[rerank.models."{BENCH}"]\npath = "{MODELS / BENCH}"\nquantize = "int8"\n',
        encoding="utf-8",
    )
    env = cli_env(data)
    with subprocess.Popen(
        [FATHOM, "--config", str(slow), "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    ) as server:
        try:
            started = time.monotonic()
            initialize = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"},
                },
            }
            assert answer(server, json.dumps(initialize).encode())["id"] == 1
            initialized = time.monotonic() - started
            server.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')  # type: ignore[union-attr]
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
            search = {"name": "search", "arguments": {"query": DOCS[3].title, "collection": "cran"}}
            found = answer(server, json.dumps(call | {"params": search}).encode(), seconds=900)
            searched = time.monotonic() - started
        finally:
            server.terminate()
    assert not found["result"].get("isError"), found
    assert found["result"]["structuredContent"]["passages"], found
    print(f"initialize answered after {initialized:.1f} s; the first search after {searched:.1f} s")
    # The README's bound: the process's own start-up (imports), never the stores or the models.
    assert initialized < INITIALIZE_BOUND_SECONDS, (initialized, searched)
