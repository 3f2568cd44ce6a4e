"""Per-client limits: who a client is (its address, from the ASGI scope) and how many
conversations it may start per minute.

Behind a reverse proxy every client has the proxy's address unless uvicorn is told to
trust the proxy's X-Forwarded-For (`--forwarded-allow-ips`); then the forwarded address
is in the scope and is what counts here.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time

from starlette.requests import Request


def client_address(request: Request) -> str:
    client = request.scope.get("client")
    return client[0] if client else "unknown"


def client_key(address: str) -> str:
    """What the conversation store keeps to tell clients apart: a hash, not the address itself."""
    return hashlib.sha256(f"medkb-client:{address}".encode()).hexdigest()[:16]


class StartLimiter:
    """A token bucket per client address: `per_minute` starts at once, then one every 60/per_minute s.

    Kept in memory (it resets on restart) and bounded: at most `max_clients` addresses are
    tracked; when more appear, the ones whose buckets have refilled are forgotten first."""

    def __init__(self, per_minute: int, max_clients: int = 10_000, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, address: str) -> float:
        """Take one start for `address`: 0 if allowed, else the seconds to wait before the next one."""
        if self.capacity <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(address, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens < 1:
                self._buckets[address] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[address] = (tokens - 1, now)
            if len(self._buckets) > self.max_clients:
                self._forget(now)
            return 0.0

    def _forget(self, now: float) -> None:
        full = [a for a, (tokens, then) in self._buckets.items() if tokens + (now - then) * self.rate >= self.capacity]
        for address in full:
            del self._buckets[address]
        while len(self._buckets) > self.max_clients:  # still too many: drop the longest idle
            del self._buckets[min(self._buckets, key=lambda a: self._buckets[a][1])]


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
