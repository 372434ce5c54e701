"""Analytics' store alone on PostgreSQL: how long a figure takes to read at 100,000
answers, and how long an answer event takes to become part of the figures at 200
answers a second with two replicas.

Figures are not kept as counters (see ``tessera_analytics.store``): a dialogue's
figures and a cross-tab are GROUP BYs over the answer rows, so their cost grows with
the answers of the dialogue or question read. Measured here:

- a 100,000-answer dialogue (25,000 participants × a single-choice, a scale, a
  multiple-choice and an idea question), bulk-loaded (COPY, as the owner) with an
  equal-sized second tenant beside it: the dialogue's figures
  (``question_counters``) and the cross-tab of its single-choice by its scale
  question (``cross_counts``), p50/p99 of repeated reads;
- answer events applied by two store instances (two pools: two replicas) at a steady
  200 a second for ``--seconds``: the time from the event's hand-over to its commit,
  after which every figures query counts it (the event-to-figure lag, less Kafka).

Usage: ``uv run python -m bench.analytics_sql [--participants 25000] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import asyncpg

from tessera_analytics.store import AnalyticsStore, AnswerState
from tessera_common.postgres import Database, migration_dirs
from tessera_common.secrets import new_id


def _rows(tenant: str, dialogue: str, participants: int, rng: random.Random) -> list[tuple]:
    rows = []
    for n in range(participants):
        pid = f"p_{tenant}_{n}"
        device = rng.choice(["ios/phone", "android/phone", "ios/tablet", "android/tablet"])
        day = date(2026, 11, 1 + rng.randrange(20))
        base = (tenant, pid, dialogue)
        rows.append((base[0], "q_single", pid, f"a_{pid}_s", dialogue, "single_choice", 1, True,
                     [rng.choice("abcde")], None, day, True, device))
        rows.append((base[0], "q_scale", pid, f"a_{pid}_c", dialogue, "scale", 1, True, [],
                     rng.randint(1, 7), day, True, device))
        rows.append((base[0], "q_multi", pid, f"a_{pid}_m", dialogue, "multiple_choice", 1, True,
                     sorted(rng.sample("vwxyz", rng.randint(1, 3))), None, day, True, device))
        rows.append((base[0], "q_idea", pid, f"a_{pid}_i", dialogue, "idea", 1, True, [], None, day, True, device))
    return rows


def _quantiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (n={len(ordered)})"


async def run(settings: dict[str, str], participants: int, seconds: float) -> None:
    databases = [Database(settings["database_url"], settings["database_owner_url"], migration_dirs("analytics"))
                 for _ in range(2)]
    for database in databases:
        await database.open()
    stores = [AnalyticsStore(database) for database in databases]
    try:
        rng = random.Random(1)
        tenant, other = "t_bench", "t_other"
        owner = await asyncpg.connect(settings["database_owner_url"])
        try:
            for t in (tenant, other):
                started = time.perf_counter()
                await owner.copy_records_to_table("answer_contributions", records=_rows(t, "d_bench", participants, rng))
                print(f"loaded {participants * 4} answers for {t} in {time.perf_counter() - started:.1f} s")
            await owner.execute("VACUUM ANALYZE answer_contributions")
        finally:
            await owner.close()

        for name, read in (
            ("dialogue figures", lambda: stores[0].question_counters(tenant, "d_bench")),
            ("cross-tab single × scale",
             lambda: stores[0].cross_counts(tenant, ("q_single", "single_choice"), ("q_scale", "scale"))),
        ):
            await read()
            samples = []
            for _ in range(30):
                started = time.perf_counter()
                await read()
                samples.append(time.perf_counter() - started)
            print(f"{name} at {participants * 4} answers: {_quantiles(samples)}")

        lags: list[float] = []
        pending: set[asyncio.Task] = set()

        async def apply(store: AnalyticsStore, event: AnswerState, handed_over: float) -> None:
            await store.apply_answer(event, f"m_{event.participant_id}")
            lags.append(time.perf_counter() - handed_over)

        started = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * 200)
            while n < due:
                pid = f"p_{tenant}_{rng.randrange(participants * 2)}"
                event = AnswerState(tenant, pid, "d_bench", "q_single", "single_choice", f"a_{pid}_s",
                                    rng.randint(1, 5), True, (rng.choice("abcde"),), None, "2026-11-27",
                                    False, "ios/phone", new_id("e"))
                task = asyncio.create_task(apply(stores[n % 2], event, time.perf_counter()))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
        print(f"answer event to figures at 200/s, 2 replicas, {seconds:.0f} s: {_quantiles(lags)}")
        started = time.perf_counter()
        await stores[1].cross_counts(tenant, ("q_single", "single_choice"), ("q_scale", "scale"))
        print(f"cross-tab after the writes: {(time.perf_counter() - started) * 1000:.1f} ms")
    finally:
        for database in databases:
            await database.close()


def main() -> None:
    from tessera_devstack.postgres import PostgresConfig, start_postgres

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=25_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as root:
        postgres = start_postgres(PostgresConfig(Path(root) / "postgres"))
        try:
            asyncio.run(run(postgres.database("analytics", "bench_analytics"), args.participants, args.seconds))
        finally:
            postgres.stop()
            postgres.discard()


if __name__ == "__main__":
    main()
