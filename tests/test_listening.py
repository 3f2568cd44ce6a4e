"""`medkb serve --workers N` listens on one port with a socket per worker (server/listening.py):
clients that connect at once are spread over the workers instead of all reaching the one that
happened to be idle in accept()."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import httpx
import pytest

from server.listening import REUSE_PORT, PortReservation, reserve_port, url

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not REUSE_PORT, reason="this platform has no SO_REUSEPORT; workers share one socket there")


def test_a_worker_gets_a_listening_socket_of_its_own_on_the_reserved_port():
    """The parent's socket holds the port and gets no connections; each copy sent to a worker
    (as uvicorn's supervisor sends it, pickled) is a new socket on the same port, and new
    connections are spread over the copies."""
    parent = reserve_port("127.0.0.1", 0)
    assert isinstance(parent, PortReservation)
    port = parent.getsockname()[1]
    workers = [pickle.loads(ForkingPickler.dumps(parent)) for _ in range(2)]
    try:
        assert all(w.getsockname() == ("127.0.0.1", port) and w.fileno() != parent.fileno() for w in workers)
        for w in workers:
            w.listen(128)
            w.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        time.sleep(0.2)
        accepted = []
        for w in workers:
            n = 0
            while True:
                try:
                    conn, _ = w.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            accepted.append(n)
        for c in clients:
            c.close()
        assert sum(accepted) == 64, accepted
        # The kernel hashes each connection's ports: 64 connections all but surely reach both
        # (fewer than 8 on one socket has a chance of about 1e-10).
        assert min(accepted) >= 8, accepted
    finally:
        for s in (parent, *workers):
            s.close()


@pytest.mark.parametrize("other_reuses_port", [False, True], ids=["plain socket", "another server's SO_REUSEPORT workers"])
def test_a_port_in_use_is_refused_before_any_worker_starts(other_reuses_port):
    """A port another program listens on is refused. So is one whose listeners set SO_REUSEPORT
    (another `medkb serve --workers N`, or workers a killed server left behind), which would
    otherwise let this server's sockets join the port and split its connections."""
    taken = socket.socket()
    if other_reuses_port:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError):
            reserve_port("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_the_address_of_an_ipv6_host_is_written_with_brackets():
    assert url("::1", 8000) == "http://[::1]:8000" and url("127.0.0.1", 8000) == "http://127.0.0.1:8000"


PID_APP = '''
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
'''

RUN = '''
import sys, uvicorn
from server.listening import run_workers
run_workers(uvicorn.Config("pid_app:app", host="127.0.0.1", port=int(sys.argv[1]), workers=2, log_level="warning"))
'''


async def _connect_together(base: str, n: int) -> Counter:
    """n clients, each with its own connection, all sending their first request at once (as the
    bench's clients do); which process answered each."""
    clients = [httpx.AsyncClient(timeout=10) for _ in range(n)]
    try:
        return Counter(r.text for r in await asyncio.gather(*(c.get(base) for c in clients)))
    finally:
        for c in clients:
            await c.aclose()


def _listening_sockets(port: int) -> int:
    """TCP sockets in state LISTEN on `port` on this machine (/proc/net/tcp, state 0A)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A")


def test_clients_connecting_at_once_reach_both_uvicorn_workers(tmp_path):
    """Under uvicorn's own supervisor with 2 workers: each worker listens on a socket of its own
    (two LISTEN sockets on the port, where uvicorn's shared socket makes one), 32 clients each
    holding one connection, connected together, are answered by both worker processes, and
    stopping the parent stops both."""
    (tmp_path / "pid_app.py").write_text(textwrap.dedent(PID_APP))
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(port)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        pids: set[str] = set()
        deadline = time.time() + 60
        while len(pids) < 2:  # both workers up: each new connection may reach either
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, f"only {pids} answered"
            try:
                pids.add(httpx.get(base, timeout=2).text)
            except httpx.HTTPError:
                time.sleep(0.2)
        # One listening socket per worker on the port (a shared socket would be one).
        assert _listening_sockets(port) == 2
        answered = asyncio.run(_connect_together(base, 32))
        assert sum(answered.values()) == 32 and set(answered) == pids, answered
        assert min(answered.values()) >= 4, answered  # fewer on one of two has a chance of about 1e-5
    finally:
        proc.terminate()
        proc.wait(30)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")], "a worker outlived the server"
