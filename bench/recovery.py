"""How soon a consumer service that died consumes again.

Analytics (the service with the most topics: eight) as a process on a real Kafka and
PostgreSQL. Each trial kills it with SIGKILL (no LeaveGroup: the broker learns of the
death only when the session times out or a new member joins), registers a tenant while
it is down, starts it again and times, from the start of the new process:

- **ready**: ``/readyz`` answers 200 (broker and store reachable);
- **consuming**: the tenant registered while it was down is known (its API key opens
  the tenant's route), i.e. the new member joined the group and handled the backlog.

Twice: as a dynamic member (no ``TESSERA_CONSUMER_INSTANCE_ID``: the new process is a
stranger to the group, which waits for the dead one's session to expire) and as a
static member (``TESSERA_CONSUMER_INSTANCE_ID``, as ``make run`` sets it). Beside them,
as the baseline of the same run, the same two times for the service's first start on
an empty group.

    python -m bench.recovery [--trials 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.stack import start_stack
from tessera_common.events import TenantRegistered, TenantRegisteredData, Topics
from tessera_common.secrets import new_id, new_split_secret, secret_hash
from tessera_common.kafka_access import KafkaEndpoint
from tessera_devstack.processes import free_port


async def _register(kafka: KafkaEndpoint) -> tuple[str, str]:
    from aiokafka import AIOKafkaProducer

    tenant_id = new_id("t")
    api_key = new_split_secret("tak", tenant_id)
    event = TenantRegistered(source="bench", tenant_id=tenant_id, subject=tenant_id,
                             data=TenantRegisteredData(region="eu-west", api_key_sha256=secret_hash(api_key)))
    producer = AIOKafkaProducer(**kafka.aiokafka(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(Topics.TENANT_REGISTERED, event.model_dump_json().encode(),
                                     key=tenant_id.encode())
    finally:
        await producer.stop()
    return tenant_id, api_key


def _until(check, timeout: float = 120.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("not within 120 s")
        time.sleep(0.05)
    return time.monotonic()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _knows(url: str, tenant_id: str, api_key: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/tenants/{tenant_id}/stats/devices", timeout=1,
                         headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
    except httpx.HTTPError:
        return False


def _start_and_time(stack, port: int, tenant: tuple[str, str], **env: str):
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    server = stack.spawn_service("analytics", port, **env)
    ready = _until(lambda: _ready(url)) - started
    consuming = _until(lambda: _knows(url, *tenant)) - started
    return server, ready, consuming


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tessera-bench-recovery-") as root:
        stack = start_stack(Path(root))
        try:
            for membership, env in (("dynamic", {}), ("static", {"TESSERA_CONSUMER_INSTANCE_ID": "analytics-0"})):
                # A group of its own for each membership, so the first start is on an empty group.
                env = {**env, "TESSERA_CONSUMER_GROUP_SUFFIX": f".{membership}"}
                port = free_port()
                tenant = asyncio.run(_register(stack.kafka))
                server, first_ready, first_consuming = _start_and_time(stack, port, tenant, **env)
                ready, consuming = [], []
                for _ in range(args.trials):
                    server.process.kill()
                    server.process.wait()
                    tenant = asyncio.run(_register(stack.kafka))
                    server, r, c = _start_and_time(stack, port, tenant, **env)
                    ready.append(r)
                    consuming.append(c)
                server.stop()
                results[membership] = (first_ready, first_consuming, ready, consuming)
        finally:
            stack.stop()

    print(f"analytics (8 topics, one consumer), {args.trials} kills with SIGKILL and restarts per membership")
    print(f"{'':<46}{'ready s':>10}{'consuming s':>14}")
    for membership, (first_ready, first_consuming, ready, consuming) in results.items():
        print(f"{membership + ' member: first start (baseline)':<46}{first_ready:>10.2f}{first_consuming:>14.2f}")
        print(f"{membership + ' member: restart after kill -9, median':<46}{statistics.median(ready):>10.2f}"
              f"{statistics.median(consuming):>14.2f}")
        print(f"{membership + ' member: restart after kill -9, slowest':<46}{max(ready):>10.2f}"
              f"{max(consuming):>14.2f}")

if __name__ == "__main__":
    main()
