"""``make bench``: enrolments per second and latency through the gateway, beside a
bare baseline measured in the same run on the same local stack.

Both servers run as separate processes (one uvicorn worker each) against one real
Kafka and one PostgreSQL started here (durable: fsync and synchronous commit on); the
load comes from this process at a fixed concurrency, after a warm-up. On a 2-core
machine the load generator, the server, PostgreSQL and Kafka share the cores, so read
the ratio more than the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tessera_common.identity import generate_signing_key
from bench.stack import start_stack
from tessera_devstack.processes import Server, free_port, spawn

OPERATOR_KEY = "bench-operator-key-0123456789"


async def _load(url: str, make_body, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                response = await client.post(url, json=make_body(i))
                latencies.append(time.perf_counter() - started)
                if response.status_code != 201:
                    raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return total / elapsed, latencies


async def _outbox_drain_seconds(owner_url: str, timeout: float = 600) -> float:
    """How long after the load the gateway's outbox is empty again: the publishing the
    request path did not wait for."""
    import asyncpg

    connection = await asyncpg.connect(owner_url)
    started = time.perf_counter()
    try:
        while await connection.fetchval("SELECT count(*) FROM outbox") > 0:
            if time.perf_counter() - started > timeout:
                break
            await asyncio.sleep(0.01)
    finally:
        await connection.close()
    return time.perf_counter() - started


def _percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] if len(values) > 1 else values[0]


def _wait_ready(server: Server, url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} died:\n{server.tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{server.name} not ready:\n{server.tail()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    os.chmod(root, 0o755)
    stack = start_stack(root)
    try:
        private, public = generate_signing_key()
        gateway_port, baseline_port = free_port(), free_port()
        gateway = stack.spawn_service(
            "enrolment", gateway_port, TESSERA_OPERATOR_KEY=OPERATOR_KEY,
            TESSERA_GATEWAY_SIGNING_KEY=private, TESSERA_GATEWAY_PUBLIC_KEY=public, TESSERA_ENVIRONMENT="test",
        )
        baseline = spawn(
            "baseline", [sys.executable, "-m", "bench.baseline_app"], root / "baseline.log",
            env={**os.environ, "BENCH_PORT": str(baseline_port),
                 "BENCH_DATABASE_URL": stack.database("baseline")["database_owner_url"]},
            port=baseline_port,
        )
        stack.servers.append(baseline)
        gateway_url, baseline_url = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{baseline_port}"
        _wait_ready(gateway, f"{gateway_url}/readyz")
        _wait_ready(baseline, f"{baseline_url}/docs")

        tenant = httpx.post(f"{gateway_url}/v1/tenants", json={"name": "Bench", "region": "eu-west"},
                            headers={"Authorization": f"Bearer {OPERATOR_KEY}"}).json()
        code = httpx.post(f"{gateway_url}/v1/tenants/{tenant['tenant_id']}/codes", json={},
                          headers={"Authorization": f"Bearer {tenant['api_key']}"}).json()["code"]
        platforms = [("ios", "phone"), ("android", "phone"), ("android", "tablet"), ("ios", "tablet")]

        def enrolment(i: int) -> dict[str, str]:
            platform, form_factor = platforms[i % 4]
            return {"code": code, "platform": platform, "form_factor": form_factor}

        results = {}
        for name, url, body in (
            ("baseline insert", f"{baseline_url}/insert", lambda i: {}),
            ("gateway enrol", f"{gateway_url}/v1/enrolments", enrolment),
        ):
            asyncio.run(_load(url, body, args.warmup, args.concurrency))
            results[name] = asyncio.run(_load(url, body, args.requests, args.concurrency))
        drained_after = asyncio.run(_outbox_drain_seconds(stack.database("enrolment")["database_owner_url"]))

        print(f"\nTessera bench: {args.requests} requests after {args.warmup} warm-up, "
              f"concurrency {args.concurrency}, {os.cpu_count()} cores, Kafka + PostgreSQL 15 local")
        print(f"{'':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for name, (rate, latencies) in results.items():
            print(f"{name:<18}{rate:>10.1f}{_percentile(latencies, 50) * 1000:>10.1f}"
                  f"{_percentile(latencies, 99) * 1000:>10.1f}")
        gateway_rate, baseline_rate = results["gateway enrol"][0], results["baseline insert"][0]
        print(f"gateway / baseline throughput: {gateway_rate / baseline_rate:.2f}")
        print(f"gateway outbox empty {drained_after:.2f} s after the last request")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
