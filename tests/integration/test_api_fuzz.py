"""A bounded property-based run against the OpenAPI schema (issue 7): schemathesis generates requests for
every operation from the schema the server publishes; no answer may be a 5xx, and every answer must be
one the schema documents, with the documented body. Against a real `fathom serve` on the embedded stores,
with an admin key so every route is reached; a few examples per operation keep it to a minute or two."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.ingest_app import fathom
from tests.integration.search_app import cranfield
from tests.integration.served import served, served_config

EXAMPLES_PER_OPERATION = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = served_config(folder)
    created = fathom(config, folder / "data", "keys", "create", "--name", "fuzz", "--scope", "admin")
    auth = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
    documents = [{"id": d.id, "title": d.title, "text": d.text, "metadata": d.metadata} for d in cranfield(5)]
    with served(config) as url:
        httpx.put(f"{url}/v1/collections/site", headers=auth, timeout=60)
        httpx.post(
            f"{url}/v1/collections/site/documents", json={"documents": documents}, headers=auth, timeout=120
        )
        yield url, auth


def test_no_5xx_and_every_answer_as_documented(live: tuple[str, dict[str, str]]) -> None:
    url, auth = live
    schema = schemathesis.openapi.from_url(f"{url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # every route is in the schema, so every route is fuzzed
    calls: list[int] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            response = case.call(base_url=url, headers=auth, timeout=60)
            calls.append(response.status_code)
            case.validate_response(response, checks=CHECKS)

        fuzz()
    assert len(calls) >= 3 * len(operations), len(calls)  # several examples per operation, not one
