"""`fathom serve` as clients meet it over TCP: a client that hangs up mid-rerank stops its work, and
/healthz keeps answering while many searches run.

One server for the module, on the fp32 bench cross-encoder (slow enough on a CPU that a rerank of
50 passages is still running when the client hangs up).
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from service.settings import load_settings
from service.testing.live_server import fathom_serve, free_ports
from tests.conftest import MODELS
from tests.integration.rerank_app import new_key
from tests.integration.search_app import cranfield

BENCH = "cross-encoder-minilm-l6-bench"
QUERY = "boundary layer flow over a flat plate"
# The stated bound for /healthz while 64 searches run, on the 2 shared cores of CI. A handler that did
# its CPU work on the event loop would hold every /healthz for the sum of the searches' work (the issue
# this guards against measured 4.6 s); what is left is the OS sharing the cores among busy threads.
HEALTHZ_MAX_SECONDS = 3.0
HEALTHZ_MEDIAN_SECONDS = 0.5
CONCURRENT_SEARCHES = 64


@dataclass(frozen=True)
class Live:
    url: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("live")
    config = folder / "fathom.toml"
    config.write_text(
        f'data_dir = "{folder / "data"}"\n'
        f'[embedding]\npath = "{MODELS / "all-MiniLM-L6-v2"}"\n'
        f'[rerank]\ndefault_model = "{BENCH}"\n'
        f'[rerank.models."{BENCH}"]\npath = "{MODELS / BENCH}"\n'
        '[rerank.models."BAAI/bge-reranker-v2-m3"]\nenabled = false\n',
        encoding="utf-8",
    )
    key = new_key(load_settings(config, environ={}), "live")
    [port] = free_ports(1)
    with fathom_serve(config, port=port, log=folder / "serve.log") as server:
        url = server.url
        live = Live(url, key)
        assert httpx.put(f"{url}/v1/collections/site", headers=live.auth).status_code == 201
        documents = [{"id": d.id, "title": d.title, "text": d.text} for d in cranfield(limit=60)]
        written = httpx.post(
            f"{url}/v1/collections/site/documents",
            json={"documents": documents},
            headers=live.auth,
            timeout=300,
        )
        assert written.status_code == 200, written.text
        yield live


def metric(live: Live, name: str) -> float:
    """One sample of /metrics by its full name (with labels), 0 when it is not there yet."""
    for line in httpx.get(f"{live.url}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


QUEUED = f'fathom_rerank_queue_pairs{{model="{BENCH}"}}'
SKIPPED = f'fathom_rerank_skipped_pairs{{model="{BENCH}"}}'


def wait_for(condition: Any, seconds: float, what: str) -> float:
    """Poll until `condition()` holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what} within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def hang_up_mid_rerank(live: Live, path: str, body: dict[str, Any]) -> None:
    """Send a request on a raw socket, wait until its pairs are in the rerank queue, then close."""
    payload = json.dumps(body).encode()
    host, port = live.url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {live.key}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port))) as client:
        client.sendall(head.encode() + payload)

        def queued() -> bool:
            answered, _, _ = select.select([client], [], [], 0)
            assert not answered, f"answered before it was queued: {client.recv(4096)!r}"
            return metric(live, QUEUED) > 0

        wait_for(queued, 120, "the request's pairs queued for reranking")


@pytest.mark.parametrize(
    ("path", "body", "counter"),
    [
        (
            "/v1/search",
            {"query": QUERY, "collection": "site", "rerank": {"budget_ms": 0, "depth": 50}},
            "fathom_search_cancelled_total",
        ),
        (
            "/v1/rerank",
            # 48 documents of 500 characters: three batches and more, seconds of fp32 work on 2 cores,
            # within the time limit (a longer request is refused at once with 429 on a loaded machine).
            {"query": QUERY, "documents": [d.text[:500] for d in cranfield(limit=48)]},
            "fathom_rerank_cancelled_total",
        ),
    ],
)
def test_a_client_that_hangs_up_mid_rerank_stops_its_work(
    live: Live, path: str, body: dict[str, Any], counter: str
) -> None:
    wait_for(lambda: metric(live, QUEUED) == 0, 120, "an idle rerank queue to start from")
    cancelled, skipped = metric(live, counter), metric(live, SKIPPED)

    hang_up_mid_rerank(live, path, body)

    # The queue drains within about the batch that was running when the client left, and the pairs
    # not yet run are dropped unscored rather than computed for nobody.
    drained = wait_for(lambda: metric(live, QUEUED) == 0, 30, "the rerank queue drained")
    assert metric(live, counter) == cancelled + 1
    assert metric(live, SKIPPED) > skipped, f"no pair was skipped (queue drained in {drained:.1f} s)"
    # The engine is free again: a small rerank answers.
    small = httpx.post(
        f"{live.url}/v1/rerank",
        json={"query": QUERY, "documents": ["boundary layers", "weather"]},
        headers=live.auth,
        timeout=60,
    )
    assert small.status_code == 200, small.text


async def search_and_probe(live: Live) -> tuple[list[int], list[float]]:
    """CONCURRENT_SEARCHES searches at once while /healthz is asked every 0.1 s; statuses, latencies."""
    limits = httpx.Limits(max_connections=CONCURRENT_SEARCHES + 1)
    async with httpx.AsyncClient(base_url=live.url, timeout=120, limits=limits) as client:
        searching = asyncio.gather(
            *(
                client.post(
                    "/v1/search",
                    json={"query": f"{QUERY} {number}", "collection": "site"},
                    headers=live.auth,
                )
                for number in range(CONCURRENT_SEARCHES)
            )
        )
        latencies: list[float] = []
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as probe:
            while not searching.done() or len(latencies) < 5:
                started = time.monotonic()
                assert (await probe.get("/healthz")).status_code == 200
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.1)
        return [response.status_code for response in await searching], latencies


def test_healthz_answers_while_64_searches_run(live: Live) -> None:
    statuses, latencies = asyncio.run(search_and_probe(live))

    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) > 0
    summary = f"/healthz over {len(latencies)} probes: max {max(latencies):.3f} s"
    assert max(latencies) <= HEALTHZ_MAX_SECONDS, summary
    assert statistics.median(latencies) <= HEALTHZ_MEDIAN_SECONDS, summary
