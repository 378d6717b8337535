"""Real processes for browser tests: `fathom serve` on a free port, and a static site on another origin."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

READY_SECONDS = 180


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
    raise RuntimeError(
        f"fewer than {count} free ports in FATHOM_TEST_PORTS={os.environ['FATHOM_TEST_PORTS']}"
    )


@contextmanager
def fathom_serve(
    config: Path, port: int, log: Path, started: list[subprocess.Popen[bytes]] | None = None
) -> Iterator[str]:
    """`fathom serve --config CONFIG` in its own process until /readyz answers 200; its base URL.
    The process is appended to `started` for a test that kills it."""
    command = [sys.executable, "-m", "service.cli", "--config", str(config), "serve", "--port", str(port)]
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    if started is not None:
        started.append(server)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"fathom serve exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"fathom serve was not ready within {READY_SECONDS} s:\n{log.read_text()}")


@contextmanager
def static_site(port: int, page: Callable[[str], str]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1:port answering every GET with the HTML `page(path)`; its origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page(self.path).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
