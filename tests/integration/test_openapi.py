"""The OpenAPI document is valid and true: every status and body a route answers is documented there."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from service.api.errors import STATUS
from tests.conftest import TINY, bearer
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import cranfield, index_documents, search_settings

pytestmark = pytest.mark.anyio
MAX_BODY = 4096


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str, dict[str, Any]]]:
    """The embedded stack holding a small `cran` collection, with a small body limit to reach 413."""
    settings = search_settings(tmp_path)
    settings.server.max_body_bytes = MAX_BODY
    await index_documents(settings, "cran", cranfield(limit=5))
    key = new_key(settings, "schema")
    async with running(settings) as client:
        spec = (await client.get("/schema/openapi.json")).json()
        yield client, key, spec


def example(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    """The smallest value the schema allows, with every required field: a request the route can serve."""
    if "$ref" in schema:
        return example(spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], spec)
    if "oneOf" in schema:
        return example(schema["oneOf"][0], spec)
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example(properties[name], spec) for name in schema.get("required", [])}
    if kind == "array":
        return [example(schema.get("items", {"type": "string"}), spec)]
    # A string is the collection's name, and a query, text or id that matches it.
    scalars = {"integer": schema.get("minimum", 1), "number": schema.get("minimum", 1), "boolean": False}
    return scalars.get(str(kind), "cran")


def requests_for(path: str, method: str, operation: dict[str, Any], spec: dict[str, Any]) -> list[Any]:
    """Ways to call one operation: without a key, valid, on a missing collection, with bad bodies."""
    filled = re.sub(r"\{name\}", "cran", path).replace("{doc_id}", "1")
    missing = re.sub(r"\{name\}", "nope", path).replace("{doc_id}", "no-such-document")
    calls: list[dict[str, Any]] = [{"url": filled, "keyed": False}, {"url": filled}, {"url": missing}]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content:
        valid = example(content["schema"], spec)
        calls[1]["json"] = calls[2]["json"] = valid
        calls += [
            {"url": filled, "json": {}},
            {"url": filled, "content": b"{not json"},
            {"url": filled, "json": ["an", "array"]},
            {"url": filled, "json": {**valid, "unknown_field_x": 1}},
            {"url": filled, "content": b'{"query": "' + b"x" * MAX_BODY + b'"}'},
        ]
    return [{"method": method.upper(), **call} for call in calls]


def check_documented(spec: dict[str, Any], path: str, method: str, response: httpx.Response) -> str | None:
    """None when the status is documented and the body matches its schema; else what is wrong."""
    responses = spec["paths"][path][method]["responses"]
    status = str(response.status_code)
    where = f"{method.upper()} {response.request.url.path} -> {status}"
    if status not in responses:
        return f"{where}: status not documented (documented: {sorted(responses)})"
    documented = responses[status].get("content")
    if not documented:
        return None
    media = response.headers.get("content-type", "").split(";")[0]
    if media not in documented:
        return f"{where}: content type {media} not documented ({sorted(documented)})"
    if media != "application/json":
        return None
    validator = Draft202012Validator({**documented[media]["schema"], "components": spec["components"]})
    problems = [error.message for error in validator.iter_errors(response.json())]
    return f"{where}: body does not match its schema: {problems[:3]}" if problems else None


async def test_the_schema_is_valid_openapi(served: tuple[httpx.AsyncClient, str, dict[str, Any]]) -> None:
    _, _, spec = served
    validate(spec)
    assert spec["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `fathom keys create`",
    }
    # Every status of the error table is documented on some route, with the one error body.
    documented = {
        status
        for operations in spec["paths"].values()
        for operation in operations.values()
        for status, answer in operation["responses"].items()
        if "ErrorResponse" in json.dumps(answer)
    }
    assert {str(status) for status, _ in STATUS.values()} <= documented
    rerank = spec["components"]["schemas"]["RerankRequest"]["properties"]
    assert rerank["query"]["minLength"] == 1 and rerank["documents"]["minItems"] == 1
    assert rerank["top_n"]["minimum"] == 1 and "description" in rerank["top_n"]
    assert spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"] == {
        "text/plain": {"schema": {"type": "string"}}
    }
    for path, method in [("/v1/collections/{name}", "put"), ("/v1/collections/{name}", "delete")]:
        assert "$ref" in json.dumps(spec["paths"][path][method]["responses"]["200"]), (path, method)


async def test_every_answer_of_every_route_is_documented(
    served: tuple[httpx.AsyncClient, str, dict[str, Any]],
) -> None:
    client, key, spec = served
    problems: list[str] = []
    seen: set[tuple[str, int]] = set()
    # Deletions last, so the other routes still find the collection.
    operations = sorted(
        (
            (path, method, operation)
            for path, ops in spec["paths"].items()
            for method, operation in ops.items()
        ),
        key=lambda item: item[1] == "delete",
    )
    for path, method, operation in operations:
        for call in requests_for(path, method, operation, spec):
            keyed = call.pop("keyed", True)
            headers = bearer(key) if keyed else {}
            response = await client.request(headers=headers, **call)
            seen.add((path, response.status_code))
            problem = check_documented(spec, path, method, response)
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)
    # The sweep reached what it is meant to: successes, and each kind of error.
    statuses = {status for _, status in seen}
    assert {200, 400, 401, 404, 413} <= statuses, sorted(statuses)
    assert ("/v1/search", 200) in seen and ("/v1/rerank", 200) in seen


async def test_options_allow_every_method_of_a_path(
    served: tuple[httpx.AsyncClient, str, dict[str, Any]],
) -> None:
    client, _, _ = served
    allowed = (await client.options("/v1/collections/cran")).headers["allow"]
    assert allowed == "DELETE, GET, OPTIONS, PUT"
    assert (await client.options("/v1/rerank")).headers["allow"] == "OPTIONS, POST"


async def test_swagger_ui_is_served_from_the_package(
    served: tuple[httpx.AsyncClient, str, dict[str, Any]],
) -> None:
    """The docs page names no other host: every asset it loads is served here."""
    client, _, _ = served
    page = (await client.get("/schema/swagger")).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert len(assets) >= 3 and all(asset.startswith("/schema/assets/") for asset in assets), assets
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200 and len(response.content) > 1000, asset


REFUSED_BODIES = [
    ("/v1/search", {"query": "   ", "collection": "cran"}),
    ("/v1/search", {"query": "wing", "collection": "crän"}),
    ("/v1/search", {"query": "wing", "collection": "Cran"}),
    ("/v1/search", {"query": "wing", "collection": ""}),
    ("/v1/search", {"query": "wing", "collection": "cran", "cursor": ""}),
    ("/v1/search", {"query": "wing", "collection": "cran", "rerank": {"model": ""}}),
    ("/v1/rerank", {"query": "q", "documents": []}),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "model": ""}),
    ("/v1/rerank", {"query": "q", "documents": [{"text": "a"}], "rank_fields": [""]}),
    ("/v1/embeddings", {"model": "", "input": "a"}),
    ("/v1/context", {"query": " ", "collection": "cran"}),
    ("/v1/context", {"query": "wing", "collection": "crän"}),
    ("/v1/collections/cran/documents", {"documents": []}),
    ("/v1/collections/cran/documents", {"documents": [{"id": ""}]}),
]


def request_schema(spec: dict[str, Any], path: str) -> Draft202012Validator:
    """The validator of a POST body as the schema declares it, its $refs read from the document."""
    templated = re.sub(r"/collections/[^/]+/", "/collections/{name}/", path)
    content = spec["paths"][templated]["post"]["requestBody"]["content"]["application/json"]
    return Draft202012Validator({**content["schema"], "components": spec["components"]})


@pytest.mark.parametrize(("path", "body"), REFUSED_BODIES)
async def test_what_the_server_refuses_the_schema_refuses(
    served: tuple[httpx.AsyncClient, str, dict[str, Any]], path: str, body: dict[str, Any]
) -> None:
    client, key, spec = served
    response = await client.post(path, json=body, headers=bearer(key))

    assert response.status_code == 400, response.text
    assert not request_schema(spec, path).is_valid(body), f"the schema allows {body}"


async def test_collection_names_in_paths_and_an_open_metrics_are_as_documented(
    served: tuple[httpx.AsyncClient, str, dict[str, Any]],
) -> None:
    client, key, spec = served
    refused = await client.put("/v1/collections/cr%C3%A4n", headers=bearer(key))
    name = next(
        p for p in spec["paths"]["/v1/collections/{name}"]["put"]["parameters"] if p["name"] == "name"
    )
    metrics = spec["paths"]["/metrics"]["get"]

    assert refused.status_code == 400 and "not a valid collection name" in refused.json()["error"]["message"]
    assert not Draft202012Validator(name["schema"]).is_valid("crän")
    assert Draft202012Validator(name["schema"]).is_valid("cran-2")
    assert (await client.get("/metrics")).status_code == 200  # open: [auth] metrics_admin_only is off
    assert "security" not in metrics and "401" not in metrics["responses"]


# Limits unlike the defaults, so the schema can only have them from this server's settings.
LIMITS: dict[tuple[str, str], int] = {
    ("/v1/search", "top_k"): 12,
    ("/v1/search", "candidates"): 150,
    ("/v1/context", "max_tokens"): 50,
    ("/v1/rerank", "max_chunks_per_doc"): 2,
}


async def test_the_schema_states_this_servers_limits(tmp_path: Path) -> None:
    settings = search_settings(tmp_path, max_top_k=12, max_candidates=150, max_query_chars=40)
    settings.context.max_tokens = 50
    settings.rerank.max_chunks_per_doc = 2
    settings.rerank.max_documents = 3
    settings.rerank.max_query_chars = 40
    settings.embedding.max_input_chars = 60
    await index_documents(settings, "cran", cranfield(limit=5))
    auth = {"Authorization": f"Bearer {new_key(settings, 'limits')}"}
    async with running(settings) as client:
        spec = (await client.get("/schema/openapi.json")).json()
        bodies = {
            "/v1/search": {"query": "flow", "collection": "cran"},
            "/v1/context": {"query": "flow", "collection": "cran"},
            "/v1/rerank": {"query": "flow", "documents": ["a"]},
        }
        for (path, field), limit in LIMITS.items():
            schema = request_schema(spec, path)
            at_limit, past_limit = {**bodies[path], field: limit}, {**bodies[path], field: limit + 1}
            assert schema.is_valid(at_limit) and not schema.is_valid(past_limit), (path, field)
            taken = await client.post(path, json=at_limit, headers=auth)
            refused = await client.post(path, json=past_limit, headers=auth)
            assert taken.status_code == 200, taken.text
            assert refused.status_code == 400, refused.text

        sizes = {
            "/v1/search": {"query": "a" * 40, "collection": "cran"},
            "/v1/rerank": {"query": "a" * 40, "documents": ["a", "b", "c"]},
            "/v1/embeddings": {"model": settings.embedding.model, "input": ["a" * 60]},
        }
        for path, body in sizes.items():
            schema = request_schema(spec, path)
            assert schema.is_valid(body), path
            assert (await client.post(path, json=body, headers=auth)).status_code == 200, path
        too_big = {
            "/v1/search": {"query": "a" * 41, "collection": "cran"},
            "/v1/rerank": {"query": "flow", "documents": ["a", "b", "c", "d"]},
            "/v1/embeddings": {"model": settings.embedding.model, "input": "a" * 61},
        }
        for path, body in too_big.items():
            assert not request_schema(spec, path).is_valid(body), path
            assert (await client.post(path, json=body, headers=auth)).status_code == 400, path
        # Model names are this server's configured ones: another is refused by schema and server alike.
        for model, status in ((TINY, 200), ("no-such-model", 400)):
            body = {"query": "flow", "documents": ["a"], "model": model}
            assert request_schema(spec, "/v1/rerank").is_valid(body) is (status == 200), model
            assert (await client.post("/v1/rerank", json=body, headers=auth)).status_code == status
