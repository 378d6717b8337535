"""docker-compose.yml validates, and runs the server versions the code expects."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.metadata import version

import pytest

from service.settings import load_settings
from tests.conftest import REPO


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where the plugin is installed, else Debian's docker-compose."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no docker compose here: .ci/run installs Debian's docker-compose")


def test_compose_file_is_valid_and_wires_two_replicas_on_shared_state() -> None:
    result = subprocess.run(
        [*compose_command(), "config"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    config = result.stdout
    for service in ("elasticsearch:", "qdrant:", "postgres:", "fathom-a:", "fathom-b:", "proxy:"):
        assert f"  {service}" in config
    assert config.count("/app/config/docker.toml") == 2
    assert config.count("FATHOM_STATE__URL: postgresql://") == 2
    # The proxy spreads every request, writes too, over both replicas: the journal is shared.
    nginx = (REPO / "config" / "nginx.conf").read_text()
    upstreams = re.findall(r"upstream \w+ \{(.*?)\}", nginx, re.S)
    assert len(upstreams) == 1
    assert "server fathom-a:8000" in upstreams[0] and "server fathom-b:8000" in upstreams[0]
    assert re.findall(r"proxy_pass (\S+);", nginx) == ["http://fathom"]


def test_elasticsearch_server_major_matches_the_client() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    image = next(
        line.split("elasticsearch:")[-1]
        for line in compose.splitlines()
        if "elasticsearch/elasticsearch:" in line
    )
    assert image.strip().split(".")[0] == version("elasticsearch").split(".")[0]
    ci_script = (REPO / ".ci" / "elasticsearch.sh").read_text()
    assert f'ES_VERSION="{image.strip()}"' in ci_script


def test_docker_config_loads() -> None:
    settings = load_settings(REPO / "config" / "docker.toml", environ={})
    assert settings.search.lexical == "elasticsearch"
    # The proxy's fixed address is the one whose X-Forwarded-For the replicas believe, and no other.
    proxy_address = re.findall(r"ipv4_address: (\S+)", (REPO / "docker-compose.yml").read_text())
    assert settings.server.trusted_proxies == proxy_address
    assert settings.qdrant.url and settings.elasticsearch.url
    assert settings.data_dir == "/data" and settings.server.host == "0.0.0.0"


def test_qdrant_server_is_within_one_minor_of_the_client() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    image = next(line for line in compose.splitlines() if "qdrant/qdrant:" in line).split(":v")[-1]
    server_minor = int(image.split(".")[1])
    client_minor = int(version("qdrant-client").split(".")[1])
    assert image.split(".")[0] == version("qdrant-client").split(".")[0]
    assert abs(server_minor - client_minor) <= 1
