"""The benchmarks' one start-up wait (evals.server_process), against real child processes."""

import subprocess
import sys
import time

import pytest

from evals.server_process import ServerDidNotStart, free_port, stop, wait_until_serving


def _spawn(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_returns_once_healthz_answers_and_ready_says_so(tmp_path):
    (tmp_path / "healthz").write_text("ok")
    port = free_port()
    server = _spawn("-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path))
    checks = []
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", {"server": (server, lambda: "")}, timeout=60,
                           ready=lambda: checks.append(1) or len(checks) >= 3, poll_seconds=0.05)
        assert len(checks) == 3, "the wait goes on until ready() is true, and stops there"
        assert server.poll() is None
    finally:
        stop(server, grace_seconds=5)
    assert server.poll() is not None


def test_a_process_that_exits_first_is_named_with_its_output():
    quitter = _spawn("-c", "print('address already in use'); raise SystemExit(3)")
    output = lambda: quitter.stdout.read().decode()  # noqa: E731
    started = time.monotonic()
    with pytest.raises(ServerDidNotStart, match=r"the watcher exited with status 3: address already in use"):
        wait_until_serving(f"http://127.0.0.1:{free_port()}", {"watcher": (quitter, output)}, timeout=60, poll_seconds=0.05)
    assert time.monotonic() - started < 30, "an exit is reported at once, not at the timeout"


def test_a_server_that_never_answers_times_out():
    sleeper = _spawn("-c", "import time; time.sleep(60)")
    try:
        with pytest.raises(ServerDidNotStart, match=r"server not ready: .*/healthz did not answer 200 within 1 s"):
            wait_until_serving(f"http://127.0.0.1:{free_port()}", {"server": (sleeper, lambda: "")}, timeout=1, poll_seconds=0.05)
    finally:
        stop(sleeper, grace_seconds=5)
