"""What a newcomer meets first: a model hub out of reach, a second server on the same data folder."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import MODELS
from tests.integration.ingest_app import FATHOM, cli_env, write_config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_hub_model_offline_fails_in_seconds_and_names_the_offline_config(tmp_path: Path) -> None:
    """The defaults alone (no FATHOM_CONFIG) on a machine that cannot reach the model hub."""
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"_id": "1", "title": "t", "text": "hello"}) + "\n", encoding="utf-8")
    # Nothing listens on this port: the hub is out of reach, as on an air-gapped machine.
    env = {**cli_env(tmp_path / "data"), "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    started = time.monotonic()
    run = subprocess.run(
        [FATHOM, "index", str(source), "--collection", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert run.returncode != 0
    assert "the model hub cannot be reached" in run.stderr
    assert "--config config/offline.toml" in run.stderr
    assert "Traceback" not in run.stderr
    assert elapsed < 30, f"took {elapsed:.0f} s"


def wait_ready(port: int, server: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if json.load(answer)["search"] == "ready":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("the first server never became ready")


def test_a_second_server_on_a_held_data_dir_refuses_to_start(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    tiny = MODELS / "cross-encoder-tiny-random"
    with config.open("a", encoding="utf-8") as more:
        more.write(
            f'[rerank]\ndefault_model = "tiny"\n[rerank.models.tiny]\npath = "{tiny}"\n'
            '[rerank.models."BAAI/bge-reranker-v2-m3"]\nenabled = false\n'
        )
    data = tmp_path / "data"
    first_port, second_port = free_port(), free_port()
    first = subprocess.Popen(
        [FATHOM, "--config", str(config), "serve", "--port", str(first_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data),
    )
    try:
        wait_ready(first_port, first)
        started = time.monotonic()
        second = subprocess.run(
            [FATHOM, "--config", str(config), "serve", "--port", str(second_port)],
            capture_output=True,
            text=True,
            env=cli_env(data),
            timeout=60,
            check=False,
        )
        elapsed = time.monotonic() - started
    finally:
        first.terminate()
        first.communicate(timeout=30)  # reaps it and closes its pipe
    assert second.returncode == 1
    assert "is in use by another process" in second.stderr
    assert "Stop it first" in second.stderr and str(data) in second.stderr
    assert elapsed < 30
