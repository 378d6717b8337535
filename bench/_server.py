"""A real `fathom serve` for a bench: a free port, a fresh key, ready when /readyz says so, stopped after.

Shared by bench/rerank.py, bench/search.py and bench/sizing.py, so every bench measures the server the
same way a client meets it: its own process, over HTTP, auth on unless the config turns it off.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A setup problem the bench cannot measure through; the message says what to fix."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fathom_command() -> list[str]:
    """The `fathom` script of this virtualenv, or the module when it is not installed as a script."""
    script = Path(sys.executable).parent / "fathom"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service.cli"]


@dataclass(slots=True)
class Served:
    url: str
    key: str  # empty when auth is off
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def fathom_serve(
    config: Path,
    *,
    env: Mapping[str, str] | None = None,
    port: int = 0,
    auth: bool = True,
    startup_timeout: float = 180.0,
    check_not_ready: Callable[[httpx.Response, Served], None] | None = None,
) -> Iterator[Served]:
    """`fathom serve` with FATHOM_CONFIG=config and `env` laid over this environment.

    With `auth`, a key is made first with `fathom keys create` (same config and data dir).
    `check_not_ready` sees each non-200 /readyz answer and may raise BenchError to stop waiting.
    """
    environment = {**os.environ, **(env or {}), "FATHOM_CONFIG": str(config)}
    command = fathom_command()
    key = ""
    if auth:
        created = subprocess.run(
            [*command, "keys", "create", "--name", f"bench-{time.time_ns()}"],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0 or not created.stdout.strip():
            raise BenchError(f"`fathom keys create` failed ({created.returncode}): {created.stderr.strip()}")
        key = created.stdout.strip().splitlines()[-1].strip()
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="fathom-bench-log-") as logs:
        log_path = Path(logs) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        served = Served(f"http://127.0.0.1:{port}", key, process, log_path)
        try:
            wait_ready(served, startup_timeout, check_not_ready)
            yield served
        finally:
            stop(process)


def wait_ready(
    served: Served, timeout: float, check: Callable[[httpx.Response, Served], None] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(base_url=served.url, timeout=5) as client:
        while time.monotonic() < deadline:
            if served.process.poll() is not None:
                raise BenchError(
                    f"the server exited with status {served.process.returncode}:\n{served.log_tail()}"
                )
            try:
                response = client.get("/readyz")
            except httpx.TransportError as exc:
                last = type(exc).__name__
            else:
                if response.status_code == 200:
                    return
                last = response.text
                if check is not None:
                    check(response, served)
            time.sleep(0.2)
    raise BenchError(f"the server was not ready after {timeout:.0f} s ({last}):\n{served.log_tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
