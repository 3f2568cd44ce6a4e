"""The listening sockets of `medkb serve --workers N`: one per worker process, on one port.

uvicorn's own multi-process mode binds one socket in the parent and hands that same socket to
every worker. Whichever worker is idle in accept() then takes every connection waiting, so
clients that connect at once all land on one process: 8 clients connecting together reached a
single one of two workers in 4 of 5 trials (and 31 of 32 in one), leaving the other worker's core
idle while the first queued every request behind its interpreter lock.

Here each worker listens on a socket of its own, bound to the same address with SO_REUSEPORT
(Linux 3.9 and later, socket(7)), and the kernel spreads new connections across the listening
sockets by a hash of each connection's addresses and ports, as nginx's `listen ... reuseport`
does. The parent holds a socket bound to the address with the same option but never listening:
it keeps the port (a port in use is reported before any worker starts) and receives no
connections. uvicorn's supervisor is kept as it is (worker health checks, restarts, SIGHUP,
SIGTTIN/SIGTTOU): it passes its sockets to each worker it starts by pickling them, and the
parent's socket pickles as "a new socket bound to this address", so every worker, a restarted
one included, makes its own.

A worker that exits drops the connections still waiting in its own accept queue (the kernel
does not move them to another socket); clients see a reset and reconnect. Where SO_REUSEPORT
does not exist, the workers share the parent's socket as in plain uvicorn.
"""

from __future__ import annotations

import socket
from typing import Any

REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn's Config.bind_socket reads the host


def _bound(family: int, address: tuple[Any, ...], reuse_port: bool, kind: type[socket.socket] = socket.socket) -> socket.socket:
    """A new TCP socket of class `kind` bound to `address` with SO_REUSEADDR (a port left in
    TIME_WAIT is free, as uvicorn binds) and, when `reuse_port`, SO_REUSEPORT; not listening.
    Raises OSError when the address cannot be bound."""
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def worker_socket(family: int, address: tuple[Any, ...]) -> socket.socket:
    """A new TCP socket bound to `address` (host, port) with SO_REUSEADDR and SO_REUSEPORT, not
    yet listening (uvicorn's server calls listen). Raises OSError when the address cannot be bound
    (another user's socket holds the port, an address this machine does not have)."""
    return _bound(family, address, reuse_port=True)


class PortReservation(socket.socket):
    """The parent's socket: bound to (host, port) with SO_REUSEPORT and never listening, so it
    holds the port and gets no connections. Pickled into a worker process it arrives as
    `worker_socket(family, the same address)`: a listening socket of that worker's own.
    With port 0 the port the kernel chose is the one every worker binds."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (worker_socket, (int(self.family), self.getsockname()[:2]))


def url(host: str, port: int) -> str:
    """The address a browser opens: http://host:port, an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def reserve_port(host: str, port: int) -> socket.socket:
    """The socket to hand uvicorn's `Multiprocess` supervisor for `host`:`port`: a
    PortReservation where SO_REUSEPORT exists, else a plain bound socket that every worker
    shares. Raises OSError when the address cannot be bound (e.g. EADDRINUSE: the port is taken).

    The port is first bound without SO_REUSEPORT and let go: SO_REUSEPORT lets any socket of the
    same user with that option join the port, so another `medkb serve --workers N` on it, or the
    workers a killed server left behind, would otherwise share its connections silently instead
    of being reported as a port in use."""
    family = _family(host)
    probe = _bound(family, (host, port), reuse_port=False)
    port = probe.getsockname()[1]  # port 0: the one the kernel chose
    probe.close()
    if not REUSE_PORT:
        return _bound(family, (host, port), reuse_port=False)
    return _bound(family, (host, port), reuse_port=True, kind=PortReservation)


def listening_socket(host: str, port: int, workers: int) -> socket.socket:
    """The socket `medkb serve` takes before it loads anything, so that a port in use is one line
    and exit 2 instead of a model loaded for nothing: for one process, a plain socket bound to
    `host`:`port` (uvicorn's server listens on it); for several, `reserve_port`'s. Raises OSError
    when the address cannot be bound."""
    if workers > 1:
        return reserve_port(host, port)
    return _bound(_family(host), (host, port), reuse_port=False)


def run_single(config: Any, sock: socket.socket) -> None:
    """Run one uvicorn server (config: a `uvicorn.Config`) in this process on `sock`, a socket
    from `listening_socket`, until it is told to stop (SIGINT, SIGTERM)."""
    import logging

    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:  # uvicorn says where it listens only for the sockets it binds itself
                logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", url(config.host, sock.getsockname()[1]))

    try:
        Server(config).run(sockets=[sock])
    finally:
        sock.close()


def run_workers(config: Any, sock: socket.socket | None = None) -> None:
    """Run `config.workers` uvicorn server processes (config: a `uvicorn.Config` whose app is an
    import string) under uvicorn's supervisor, each listening on its own SO_REUSEPORT socket,
    until the supervisor is told to stop (SIGINT, SIGTERM). `sock` is the parent's socket from
    `listening_socket` (taken here when not given). Raises OSError when the address cannot be
    bound, before any worker starts."""
    import logging

    from uvicorn.supervisors import Multiprocess

    sock = sock if sock is not None else reserve_port(config.host, config.port)
    spread = "each on its own socket (SO_REUSEPORT)" if isinstance(sock, PortReservation) else "sharing one socket"
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s with %d worker processes, %s (Press CTRL+C to quit)",
                                            url(config.host, sock.getsockname()[1]), config.workers, spread)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
