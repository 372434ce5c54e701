"""Services run as processes (their console scripts), for the end-to-end tests."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import httpx

from tessera_devstack.processes import Server, spawn


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


def spawn_service(name: str, service: str, port: int, logs: Path, *, kafka_bootstrap: str,
                  database: dict[str, str], **settings: str) -> Server:
    """One service as a process (its console script) on the session's Kafka and its own
    database, with ``settings`` as further ``TESSERA_*`` variables."""
    command = shutil.which(f"tessera-{service}", path=str(Path(sys.executable).parent))
    assert command, f"console script tessera-{service} is not installed"
    env = {
        **os.environ,
        "TESSERA_PORT": str(port),
        "TESSERA_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **{f"TESSERA_{key.upper()}": value for key, value in database.items()},
        "TESSERA_ENVIRONMENT": "test",
        **settings,
    }
    return spawn(name, [command], logs / f"{name}.log", env=env, port=port)
