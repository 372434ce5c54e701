"""The fault table (issue 13): each service killed with SIGKILL, the broker restarted and
PostgreSQL restarted, each during a steady load of answers through the gateway and
two erasures (one asked for just before the fault, one while it lasts), on the four
services as processes over their own Kafka and PostgreSQL (durable settings).

Per fault and trial, on a fresh tenant (see ``tests/support/faults.py``, which the
e2e test ``tests/e2e/test_faults.py`` shares): the answers the gateway accepted (2xx;
a phone sends a refused answer again, with the same Idempotency-Key, until it is
accepted), how many of them analytics counts exactly once with their value (and
dialogue's store holds once, and Kafka carries), the erasures completed with a
receipt, and the time to recover: from the restart until an answer accepted after it
is counted by analytics and both erasures have completed.

    python -m bench.faults [--trials 3] [--rate 30] [--down 2]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from tests.support.faults import FAULTS, Platform, Trial, run_trial


def _seconds(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        return f"{len(values) - len(finite)} never"
    return f"{statistics.median(finite):.1f} / {max(finite):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--rate", type=float, default=30, help="answers a second sent through the gateway")
    parser.add_argument("--down", type=float, default=2.0, help="seconds between the fault and the restart")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated, from: " + ", ".join(FAULTS))
    args = parser.parse_args()
    faults = [fault.strip() for fault in args.faults.split(",")]

    root = Path(tempfile.mkdtemp(prefix="tessera-bench-faults-"))
    os.chmod(root, 0o755)
    platform = Platform(root, durable=True)
    results: dict[str, list[Trial]] = {}
    try:
        platform.start()
        for fault in faults:
            for _ in range(args.trials):
                trial = run_trial(platform, fault, rate=args.rate, down_seconds=args.down)
                results.setdefault(fault, []).append(trial)
                if not trial.exact:
                    print(f"{fault}: NOT EXACT: missing {trial.missing}, unexpected {trial.unexpected}, "
                          f"figures exact {trial.figures_exact}, rejected {trial.rejected[:3]}")
    finally:
        platform.close()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nFaults under a load of {args.rate:g} answers/s through the gateway, {args.down:g} s down before "
          f"the restart, {os.cpu_count()} cores; time to recover: from the restart until an answer accepted after it "
          "is counted (counting again) and both erasures have completed (erasures done); median / slowest")
    header = ("fault", "trials", "answers accepted", "answers counted", "erasures completed", "time to recover s",
              "of which: counting again s", "erasures done s")
    print(f"| {' | '.join(header)} |")
    print(f"|{'|'.join(' --- ' for _ in header)}|")
    refused: Counter[str] = Counter()
    for fault, trials in results.items():
        for trial in trials:
            refused.update(trial.refusals)
        cells = (fault, str(len(trials)), f"{sum(t.accepted for t in trials):,}", f"{sum(t.counted for t in trials):,}",
                 f"{sum(t.erasures_completed for t in trials)} of {sum(t.erasures_requested for t in trials)}",
                 _seconds([t.recover_seconds for t in trials]), _seconds([t.counting_seconds for t in trials]),
                 _seconds([t.erasures_seconds for t in trials]))
        print(f"| {' | '.join(cells)} |")
    print("requests refused during the faults and sent again: "
          + ", ".join(f"{reason} {count:,}" for reason, count in refused.most_common()))


if __name__ == "__main__":
    main()
