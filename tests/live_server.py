"""Serve an ASGI app with a real uvicorn on 127.0.0.1 in a thread, for tests that need
real HTTP (keep-alive connections, streamed bodies, a browser) without the real model; or a
whole `medkb serve` process with the fake model (serve_medkb)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app, timeout: float = 30) -> Iterator[str]:
    """Run `app` under uvicorn on a free port; yields the base URL and stops the server after."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


@contextmanager
def serve_medkb(env: dict[str, str], log: Path, cwd: Path = TESTS.parent, timeout: float = 90) -> Iterator[str]:
    """`medkb serve` (the fake model, tests/fake_model_cli.py) in its own process on a free port,
    its output in `log`; yields its base URL once /healthz answers 200, and stops it after.
    Fails the test, with the log, when the server stops or does not answer within `timeout` s."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(TESTS / "fake_model_cli.py"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"medkb serve on port {port} stopped:\n{log.read_text()}"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"medkb serve on port {port} did not answer in {timeout:.0f} s:\n{log.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
