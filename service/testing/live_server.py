"""A real `fathom serve` in its own process: a free port, optionally a fresh key, ready when /readyz says
so, stopped on the way out. Benches measure and tests check the server as a client meets it, over HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_SECONDS = 180.0
STOP_SECONDS = 30.0


class SetupError(Exception):
    """A setup problem a bench or test cannot go on past (the server never got ready, a file is
    missing); the message says what to fix."""


@dataclass(slots=True)
class Served:
    url: str
    key: str  # empty unless a key was created
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1: within FATHOM_TEST_PORTS ("18600-18699") when set, else any."""
    low, _, high = os.environ.get("FATHOM_TEST_PORTS", "0-0").partition("-")
    candidates = range(int(low), int(high) + 1) if int(low) else [0] * count
    with ExitStack() as held:  # each stays bound until all are chosen, so none is chosen twice
        ports: list[int] = []
        for port in candidates:
            probe = held.enter_context(socket.socket())
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(int(probe.getsockname()[1]))
            if len(ports) == count:
                return ports
    raise SetupError(f"fewer than {count} free ports in FATHOM_TEST_PORTS={os.environ['FATHOM_TEST_PORTS']}")


def free_port() -> int:
    [port] = free_ports(1)
    return port


def fathom_command() -> list[str]:
    """The `fathom` script of this virtualenv, or the module when it is not installed as a script."""
    script = Path(sys.executable).parent / "fathom"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service.cli"]


def create_key(config: Path, environment: Mapping[str, str], name: str) -> str:
    """A key with every scope, made the way an operator makes one: `fathom keys create`."""
    created = subprocess.run(
        [*fathom_command(), "--config", str(config), "keys", "create", "--name", name],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if created.returncode != 0 or not created.stdout.strip():
        raise SetupError(f"`fathom keys create` failed ({created.returncode}): {created.stderr.strip()}")
    return created.stdout.strip().splitlines()[-1].strip()


@contextmanager
def fathom_serve(
    config: Path,
    *,
    port: int = 0,
    env: Mapping[str, str] | None = None,
    with_key: bool = False,
    log: Path | None = None,
    startup_timeout: float = STARTUP_SECONDS,
    check_not_ready: Callable[[httpx.Response, Served], None] | None = None,
) -> Iterator[Served]:
    """`fathom --config CONFIG serve` on 127.0.0.1:`port` (0: a free one), `env` laid over this
    process's environment, until /readyz answers 200.

    `with_key`: a key is created first, in the same config and data dir (Served.key, Served.headers).
    The output goes to `log` (kept; else a temporary file, gone afterwards). `check_not_ready` sees each
    non-200 /readyz answer and may raise SetupError to stop waiting.
    """
    environment = {**os.environ, **(env or {})}
    key = create_key(config, environment, f"live-{time.time_ns()}") if with_key else ""
    port = port or free_port()
    command = [*fathom_command(), "--config", str(config), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    with ExitStack() as cleanup:
        if log is None:
            folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="fathom-serve-"))
            log = Path(folder) / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
        cleanup.callback(stop, process)
        served = Served(f"http://127.0.0.1:{port}", key, process, log)
        wait_ready(served, startup_timeout, check_not_ready)
        yield served


def wait_ready(
    served: Served, timeout: float, check: Callable[[httpx.Response, Served], None] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(base_url=served.url, timeout=5) as client:
        while time.monotonic() < deadline:
            if served.process.poll() is not None:
                raise SetupError(
                    f"fathom serve exited with status {served.process.returncode}:\n{served.log_tail()}"
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
    raise SetupError(f"fathom serve was not ready after {timeout:.0f} s ({last}):\n{served.log_tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited in STOP_SECONDS (a test may have killed it already)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
