"""What the suppression rules cost per released table, the exact audit included.

No servers: ``domain.cross_tab`` and ``domain.partition`` on random tables shaped like
what tenants ask for (two 0–10 scales is the largest cross-tab, 11 × 11), with counts
from a sparse and a dense mix, k = 5. Prints the time per table and how many cells
ended up hidden, beside what primary suppression alone would hide, so the cost of
protecting against an attacker who reads the reasons shows in cells as well as time.
"""

from __future__ import annotations

import argparse
import random
import time

from bench.enrolment import _percentile
from tessera_analytics.domain import FEWER, cross_tab, partition

MIXES = {
    "sparse": [0, 0, 1, 2, 3, 4, 6, 10, 30],
    "dense": [0, 1, 2, 50, 200, 400],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=30, help="random tables per shape and mix")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(11)
    for size in (5, 11):
        keys = [str(i) for i in range(size)]
        for mix, counts in MIXES.items():
            seconds, hidden, primary = [], 0, 0
            for _ in range(args.tables):
                truth = {(r, c): rng.choice(counts) for r in keys for c in keys}
                started = time.perf_counter()
                table = cross_tab(truth, keys, keys, args.k)
                seconds.append(time.perf_counter() - started)
                hidden += sum(cell.suppressed for row in table.cells for cell in row)
                primary += sum(cell.reason == FEWER for row in table.cells for cell in row)
            print(f"cross-tab {size}×{size} {mix:>6}: p50 {_percentile(seconds, 50) * 1000:.0f} ms, "
                  f"max {max(seconds) * 1000:.0f} ms; cells hidden {hidden / args.tables:.1f} of {size * size} "
                  f"({primary / args.tables:.1f} below k) over {args.tables} tables", flush=True)
    keys = [str(i) for i in range(11)]
    seconds = []
    for _ in range(args.tables * 10):
        truth = {key: rng.choice(MIXES["sparse"]) for key in keys}
        started = time.perf_counter()
        partition(truth, keys, args.k)
        seconds.append(time.perf_counter() - started)
    print(f"partition of 11 cells (a 0–10 scale): p50 {_percentile(seconds, 50) * 1000:.1f} ms, "
          f"max {max(seconds) * 1000:.1f} ms over {len(seconds)} tables", flush=True)


if __name__ == "__main__":
    main()
