"""`fathom keys` as an operator uses it, and the keys it makes working against the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import bearer
from tests.integration.rerank_app import rerank_settings, running

FATHOM = str(Path(sys.executable).with_name("fathom"))


def fathom(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FATHOM_DATA_DIR": str(data_dir)}
    env.pop("FATHOM_CONFIG", None)
    return subprocess.run([FATHOM, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.anyio
async def test_create_list_revoke_and_use(tmp_path: Path) -> None:
    created = fathom(tmp_path, "keys", "create", "--name", "website", "--quota", "10", "--rate-limit", "60")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("fth_") and " " not in key

    listing = fathom(tmp_path, "keys", "list")
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith("website"))
    assert key[:8] in row and "active" in row and "10" in row and "60" in row
    assert key not in listing.stdout  # only the prefix is ever shown again

    settings = rerank_settings(tmp_path)
    body = {"query": "q", "documents": ["d"]}
    async with running(settings) as client:
        ok = await client.post("/v1/rerank", json=body, headers=bearer(key))
        assert ok.status_code == 200
        assert fathom(tmp_path, "keys", "revoke", "website").returncode == 0
        revoked = await client.post("/v1/rerank", json=body, headers=bearer(key))
        assert revoked.status_code == 401
    usage_row = next(
        line for line in fathom(tmp_path, "keys", "list").stdout.splitlines() if line.startswith("website")
    )
    assert "revoked" in usage_row and " 1 " in usage_row  # one search unit used


def test_bad_cli_input_is_a_clear_error(tmp_path: Path) -> None:
    assert fathom(tmp_path, "keys", "create", "--name", "twice").returncode == 0
    again = fathom(tmp_path, "keys", "create", "--name", "twice")
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    unknown = fathom(tmp_path, "keys", "revoke", "nobody")
    assert unknown.returncode == 1 and "no active key named 'nobody'" in unknown.stderr
    negative = fathom(tmp_path, "keys", "create", "--name", "x", "--rate-limit", "0")
    assert negative.returncode == 2 and "must be at least 1" in negative.stderr
    bad_config = fathom(tmp_path, "--config", str(tmp_path / "missing.toml"), "keys", "list")
    assert bad_config.returncode == 2 and "does not exist" in bad_config.stderr


def test_public_keys_from_the_cli(tmp_path: Path) -> None:
    created = fathom(
        tmp_path, "keys", "create", "--name", "site", "--public", "--origin", "https://docs.example.org",
        "--collections", "docs",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert (
        "public key for https://docs.example.org" in created.stdout
        and "600 requests/minute" in created.stdout
    )
    row = next(
        line for line in fathom(tmp_path, "keys", "list").stdout.splitlines() if line.startswith("site")
    )
    assert "public from https://docs.example.org" in row and "docs" in row
    # The rest of what a public key may not be is covered by tests/unit/test_public_keys.py.
    no_origin = fathom(tmp_path, "keys", "create", "--name", "x", "--public", "--collections", "docs")
    assert no_origin.returncode == 1 and "needs at least one --origin" in no_origin.stderr
