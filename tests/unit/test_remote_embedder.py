"""The pure parts of [embedding] url: where requests go, how long to wait, what identifies the model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from service.backends.remote_embedder import (
    BACKOFF_MOST,
    RETRY_AFTER_MOST,
    backoff,
    endpoint,
    probe_hash,
    retry_after,
    retryable,
)
from service.settings import ConfigError, settings_from_dict


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://fathom:8000", "http://fathom:8000/v1/embeddings"),
        ("http://fathom:8000/", "http://fathom:8000/v1/embeddings"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1/embeddings"),
        ("http://tei/v1/embeddings", "http://tei/v1/embeddings"),
    ],
)
def test_a_base_url_or_the_endpoint_itself(url: str, expected: str) -> None:
    assert endpoint(url) == expected


def test_retry_after_in_seconds_or_as_a_date_and_bounded() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after(answer("3")) == 3.0
    assert retry_after(answer("3600")) == RETRY_AFTER_MOST
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 15 < retry_after(answer(later)) <= 20
    assert retry_after(answer("soon")) == 0.0 and retry_after(httpx.Response(503)) == 0.0


def test_backoff_doubles_up_to_its_ceiling_and_what_is_retried() -> None:
    assert 0.25 <= backoff(0) <= 0.5 and 2 <= backoff(3) <= 4
    assert BACKOFF_MOST / 2 <= backoff(20) <= BACKOFF_MOST
    assert retryable(429) and retryable(503) and retryable(500)
    assert not retryable(400) and not retryable(401) and not retryable(404)


def test_the_probe_hash_ignores_the_last_bits_but_not_the_vector() -> None:
    vector = [0.12345, -0.0001, 0.5]
    assert probe_hash(vector) == probe_hash([0.12349, 0.0001, 0.50001])
    assert probe_hash(vector) != probe_hash([0.13345, -0.0001, 0.5])


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"embedding\.url"):
        settings_from_dict({"embedding": {"url": "grpc://x"}})
    with pytest.raises(ConfigError, match="concurrency"):
        settings_from_dict({"embedding": {"url": "http://x", "concurrency": 0}})
