"""One key-epoch rotation with 100,000 and 1,000,000 live data keys: how long it takes,
and whether data-key requests keep being served meanwhile.

The rights service runs as a process (``tessera-rights``, with a key file as its
keyring) on a real Kafka and PostgreSQL (durable settings). The live keys are written
straight into its ``data_keys`` table with COPY as the owner, each a real 32-byte key
wrapped under epoch 1 (the master key), spread over 100 tenants. Then, in the same run:

- **baseline**: ``GET /internal/v1/data-keys/{participant}`` for random participants,
  ``CONCURRENCY`` at a time, for ``--baseline-seconds``, no rotation;
- **during rotation**: ``POST /internal/v1/key-epochs/rotations`` (answers when every
  key is re-wrapped and epoch 1's key destroyed) with the same GET load running until
  it answers.

Both rows give requests served, errors and p50/p99 latency. Afterwards a sample of
keys is read again and compared with the keys written: the same bytes, under epoch 2.

    ROTATION_TOTALS=100000,1000000 python -m bench.rotation
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench.enrolment import _percentile, _wait_ready
from bench.stack import start_stack
from tessera_common.crypto import new_data_key
from tessera_devstack.processes import free_port
from tessera_rights.domain import wrap_data_key

TOKEN = "bench-internal-token"
TENANTS = 100
CONCURRENCY = 4
SAMPLE = 2000


async def _insert_keys(owner_url: str, master: bytes, total: int) -> dict[str, bytes]:
    """COPY ``total`` wrapped keys in chunks; returns a sample participant → key."""
    now = datetime.now(UTC)
    sample: dict[str, bytes] = {}
    connection = await asyncpg.connect(owner_url)
    try:
        chunk = 50_000
        for start in range(0, total, chunk):
            records = []
            for i in range(start, min(total, start + chunk)):
                participant_id, key = f"p_{i:09d}", os.urandom(32)
                record = wrap_data_key(master, key, participant_id=participant_id, tenant_id=f"t_{i % TENANTS:03d}",
                                       key_id=f"k_{i:09d}", created_at=now)
                records.append((record.tenant_id, record.participant_id, record.key_id, record.nonce, record.wrapped,
                                record.created_at, 1))
                if i % max(1, total // SAMPLE) == 0:
                    sample[participant_id] = key
            await connection.copy_records_to_table(
                "data_keys", records=records,
                columns=["tenant_id", "participant_id", "key_id", "nonce", "wrapped", "created_at", "epoch"])
        await connection.execute("VACUUM ANALYZE data_keys")
    finally:
        await connection.close()
    return sample


async def _load(client: httpx.AsyncClient, total: int, stop: asyncio.Event) -> tuple[list[float], int]:
    """GETs of random participants, CONCURRENCY at a time, until ``stop``."""
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while not stop.is_set():
            participant_id = f"p_{random.randrange(total):09d}"
            started = time.perf_counter()
            try:
                response = await client.get(f"/internal/v1/data-keys/{participant_id}")
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies, errors


async def _measure(url: str, total: int, baseline_seconds: float, sample: dict[str, bytes]) -> dict:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=3600) as client:
        stop = asyncio.Event()
        load = asyncio.create_task(_load(client, total, stop))
        await asyncio.sleep(baseline_seconds)
        stop.set()
        baseline = await load

        stop = asyncio.Event()
        load = asyncio.create_task(_load(client, total, stop))
        started = time.monotonic()
        rotation = await client.post("/internal/v1/key-epochs/rotations")
        seconds = time.monotonic() - started
        stop.set()
        during = await load
        rotation.raise_for_status()

        wrong = 0
        for participant_id, key in sample.items():
            body = (await client.get(f"/internal/v1/data-keys/{participant_id}")).json()
            wrong += base64.b64decode(body["key"]) != key
    return {"seconds": seconds, "rotation": rotation.json(), "baseline": baseline, "during": during,
            "wrong": wrong, "sampled": len(sample)}


def _row(name: str, result: tuple[list[float], int], seconds: float) -> str:
    latencies, errors = result
    return (f"  {name:<22}{len(latencies):>10}{len(latencies) / seconds:>10.0f}{errors:>8}"
            f"{_percentile(latencies, 50) * 1000:>10.1f}{_percentile(latencies, 99) * 1000:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--totals", default=os.environ.get("ROTATION_TOTALS", "100000,1000000"))
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    args = parser.parse_args()
    totals = [int(t) for t in args.totals.split(",")]
    print(f"one key-epoch rotation; data-key GETs meanwhile, {CONCURRENCY} at a time, beside a baseline "
          f"of {args.baseline_seconds:g} s without rotation (os.cpu_count() = {os.cpu_count()})")
    for total in totals:
        with tempfile.TemporaryDirectory(prefix="tessera-bench-rotation-") as root:
            stack = start_stack(Path(root))
            try:
                master = new_data_key()
                port = free_port()
                server = stack.spawn_service(
                    "rights", port, TESSERA_INTERNAL_TOKEN=TOKEN,
                    TESSERA_DATA_KEY_MASTER_KEY=base64.b64encode(master).decode(),
                    TESSERA_KEYRING_PATH=str(Path(root) / "keys" / "rights-keyring.json"))
                _wait_ready(server, f"http://127.0.0.1:{port}/readyz")  # migrated: data_keys exists
                started = time.monotonic()
                sample = asyncio.run(_insert_keys(stack.database("rights")["database_owner_url"], master, total))
                inserted = time.monotonic() - started
                result = asyncio.run(_measure(f"http://127.0.0.1:{port}", total, args.baseline_seconds, sample))
            finally:
                stack.stop()
        rotation = result["rotation"]
        print(f"\n{total:,} live keys ({TENANTS} tenants; written by COPY in {inserted:.0f} s)")
        print(f"  rotation: {result['seconds']:.1f} s, {rotation['rewrapped']:,} keys re-wrapped "
              f"({rotation['rewrapped'] / result['seconds']:,.0f} keys/s), epoch {rotation['epoch']} current, "
              f"retired {rotation['retired']}, left {rotation['left']}; "
              f"{result['sampled'] - result['wrong']}/{result['sampled']} sampled keys the same afterwards")
        print(f"  {'GET data key':<22}{'requests':>10}{'per s':>10}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}")
        print(_row("baseline", result["baseline"], args.baseline_seconds))
        print(_row("during rotation", result["during"], result["seconds"]))


if __name__ == "__main__":
    main()
