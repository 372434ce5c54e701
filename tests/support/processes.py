"""Services run as processes (their console scripts), for the end-to-end tests."""

from __future__ import annotations

import time

import httpx

from tessera_devstack.processes import Server


def wait_ready(server: Server, url: str, timeout: float = 90.0) -> None:
    """Until the service answers ``/readyz`` with 200 (its broker and store reachable)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"{server.name} died:\n{server.tail()}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{server.name} not ready:\n{server.tail()}")
