"""A `medkb serve` (or any HTTP server) run as a child process by a benchmark: a free port to
give it, waiting until it answers `/healthz`, and stopping it.

Used by `evals.bench` (HTTP latency, `bench --live`) and `evals.loadtest`, which each used to
carry their own copy of the start-up wait.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Mapping


class ServerDidNotStart(RuntimeError):
    """A watched process exited before the server answered, or the wait timed out."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(base: str, processes: Mapping[str, tuple[subprocess.Popen, Callable[[], str]]], timeout: float = 180,
                       ready: Callable[[], bool] | None = None, poll_seconds: float = 0.3) -> None:
    """Block until `GET {base}/healthz` answers 200 and `ready()` (if given) is true.

    `processes` maps a name ("server", "watcher") to the process and a function returning what
    it has written so far. Raises ServerDidNotStart naming the process and the last 2,000
    characters of its output as soon as one of them exits, or once `timeout` seconds pass."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        for name, (proc, output) in processes.items():
            if proc.poll() is not None:
                raise ServerDidNotStart(f"the {name} exited with status {proc.returncode}: {output()[-2000:]}")
        try:
            up = httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            up = False
        if up and (ready is None or ready()):
            return
        if time.monotonic() > deadline:
            raise ServerDidNotStart(f"{', '.join(processes)} not ready: {base}/healthz did not answer 200" + (" (or not ready)" if ready else "")
                                    + f" within {timeout:.0f} s")
        time.sleep(poll_seconds)


def stop(proc: subprocess.Popen, grace_seconds: float = 15) -> None:
    """SIGTERM, then SIGKILL if the process has not exited after `grace_seconds`."""
    proc.terminate()
    try:
        proc.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
