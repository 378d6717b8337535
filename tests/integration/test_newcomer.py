"""What a newcomer meets first: a model hub out of reach, a second server on the same data folder."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from service.testing.live_server import fathom_serve, free_port
from tests.integration.ingest_app import FATHOM, cli_env
from tests.integration.served import served_config


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


def test_a_second_server_on_a_held_data_dir_refuses_to_start(tmp_path: Path) -> None:
    config, data = served_config(tmp_path), tmp_path / "data"
    with fathom_serve(config, env=cli_env(data)):
        started = time.monotonic()
        second = subprocess.run(
            [FATHOM, "--config", str(config), "serve", "--port", str(free_port())],
            capture_output=True,
            text=True,
            env=cli_env(data),
            timeout=60,
            check=False,
        )
        elapsed = time.monotonic() - started
    assert second.returncode == 1
    assert "is in use by another process" in second.stderr
    assert "Stop it first" in second.stderr and str(data) in second.stderr
    assert elapsed < 30
