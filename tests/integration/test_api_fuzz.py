"""A bounded property-based run against the OpenAPI schema: schemathesis generates requests for
every operation from the schema the server publishes; no answer may be a 5xx, and every answer must be
one the schema documents, with the documented body. Against a real `fathom serve` on the embedded stores,
with an admin key so every route is reached; a few examples per operation keep it to a minute or two.

The second test holds the schema to what the server takes: data that breaks the schema is refused,
and data that fits it is taken, but for the rules listed in UNSAYABLE that a schema cannot state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import bearer
from tests.integration.ingest_app import fathom
from tests.integration.search_app import cranfield
from tests.integration.served import served, served_config

EXAMPLES_PER_OPERATION = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
AGREEMENT_CHECKS = [positive_data_acceptance, negative_data_rejection]
# Refusals of schema-valid requests for rules the schema cannot state (or does not yet), by a fragment of
# the server's message and why. Anything else refused is a finding.
UNSAYABLE = {
    "cursor is not valid": "a cursor is minted by the server; no pattern tells a real one",
    "cursor belongs to another search": "a cursor is bound to the search that made it",
    "has none of the fields to rank on": "which fields an object document needs depends on rank_fields",
    "filter field": "filter stays a free object in the schema; its field names are checked as parsed",
    "terms; the limit is": "terms are counted as the analysers cut words (\\w+), which no length says",
    "dimensions must be": "the embedding model's width is known once it is loaded, after the schema",
    "got `float`": "JSON Schema's integer takes 1.0; the server's strict parsing does not",
    "request body is larger than the limit": "no JSON Schema keyword bounds a whole body in bytes; only"
    " /v1/events' 2 KB is small enough for generated data to reach",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = served_config(folder)
    created = fathom(config, folder / "data", "keys", "create", "--name", "fuzz", "--scope", "admin")
    auth = bearer(created.stdout.strip().splitlines()[-1])
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


def test_the_schema_allows_what_the_server_takes(live: tuple[str, dict[str, str]]) -> None:
    schema = schemathesis.openapi.from_url(f"{live[0]}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    findings: list[str] = []
    calls: list[int] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                agreement(operation, mode, live, calls=calls, findings=findings)
            except Unsatisfiable:  # no parameters and no body: nothing can break its schema
                assert mode is GenerationMode.NEGATIVE
    assert len(calls) >= 3 * len(operations), len(calls)  # several examples per operation, not one
    assert not findings, "\n".join(findings[:20])


def agreement(
    operation: Any,
    mode: GenerationMode,
    live: tuple[str, dict[str, str]],
    *,
    calls: list[int],
    findings: list[str],
) -> None:
    """Requests of `mode` for the operation; each disagreement the schema could have stated, in findings."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: Any) -> None:
        url, auth = live
        response = case.call(base_url=url, headers=auth, timeout=60)
        calls.append(response.status_code)
        try:
            case.validate_response(response, checks=AGREEMENT_CHECKS)
        except FailureGroup:
            if not any(fragment in response.text for fragment in UNSAYABLE):
                findings.append(f"{operation.label} {mode.value} -> {response.status_code} {response.text}")

    fuzz()
