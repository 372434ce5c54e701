"""``uv run python -m bench.screening``: how well and how fast personal-data screening
works on the labelled samples: ``tests/data/screening_sample.jsonl`` (identifiers,
phones, addresses) and ``tests/data/screening_sample_people.jsonl`` (names, birth dates,
plates, IP addresses, handles, obfuscated e-mail, written before the rules for them).

Quality is scored per sample and per text, as the unit test does: the set of kinds :func:`screen`
finds against the set labelled, so a kind found twice in one text counts once and a
span in the wrong place still counts as found. A false alarm on a clean text is a text
labelled with no personal data on which anything is found. Cost is the wall time of one
:func:`screen` call per text, over several passes of the whole sample after a warm-up
pass; the p99 is what a participant with a number-heavy answer waits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from tessera_common.screening import KINDS, screen

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SAMPLES = (DATA / "screening_sample.jsonl", DATA / "screening_sample_people.jsonl")


@dataclass
class Tally:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else 1.0

    @property
    def f1(self) -> float:
        both = self.precision + self.recall
        return 2 * self.precision * self.recall / both if both else 0.0


def _score(rows: list[dict]) -> tuple[dict[str, Tally], Tally]:
    per_kind = {kind: Tally() for kind in KINDS}
    for row in rows:
        predicted = {finding.kind for finding in screen(row["text"])}
        labelled = set(row["kinds"])
        for kind in KINDS:
            tally = per_kind[kind]
            tally.true_positives += kind in predicted and kind in labelled
            tally.false_positives += kind in predicted and kind not in labelled
            tally.false_negatives += kind in labelled and kind not in predicted
    overall = Tally(
        sum(t.true_positives for t in per_kind.values()),
        sum(t.false_positives for t in per_kind.values()),
        sum(t.false_negatives for t in per_kind.values()),
    )
    return per_kind, overall


def _costs_us(texts: list[str], repetitions: int) -> list[float]:
    for text in texts:
        screen(text)
    costs = []
    for _ in range(repetitions):
        for text in texts:
            started = time.perf_counter_ns()
            screen(text)
            costs.append((time.perf_counter_ns() - started) / 1000)
    return costs


def _report(name: str, rows: list[dict]) -> None:
    per_kind, overall = _score(rows)
    with_data = sum(1 for row in rows if row["kinds"])
    clean = [row for row in rows if not row["kinds"]]
    alarms = sum(1 for row in clean if screen(row["text"]))
    languages = ", ".join(f"{lang} {sum(1 for r in rows if r['lang'] == lang)}" for lang in ("nl", "da", "en"))
    print(f"{name}: {len(rows)} texts ({languages}); {with_data} with personal data, {len(clean)} without")
    print(f"{'kind':<20}{'labelled':>9}{'found':>7}{'tp':>5}{'fp':>5}{'fn':>5}{'precision':>11}{'recall':>8}{'F1':>7}")
    for kind, tally in [*per_kind.items(), ("overall (micro)", overall)]:
        labelled = tally.true_positives + tally.false_negatives
        found = tally.true_positives + tally.false_positives
        if not labelled and not found:
            continue
        print(
            f"{kind:<20}{labelled:>9}{found:>7}{tally.true_positives:>5}{tally.false_positives:>5}"
            f"{tally.false_negatives:>5}{tally.precision:>11.3f}{tally.recall:>8.3f}{tally.f1:>7.3f}"
        )
    print(f"false alarms on clean texts: {alarms} of {len(clean)}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=20)
    args = parser.parse_args()

    every_row = []
    for sample in SAMPLES:
        with sample.open(encoding="utf-8") as lines:
            rows = [json.loads(line) for line in lines]
        _report(sample.name, rows)
        every_row += rows
    _report("both samples", every_row)

    costs = _costs_us([row["text"] for row in every_row], args.repetitions)
    percentiles = statistics.quantiles(costs, n=100, method="inclusive")
    print(
        f"cost per text over {args.repetitions} passes of both samples ({len(costs)} calls): "
        f"mean {statistics.fmean(costs):.0f} µs, p50 {percentiles[49]:.0f} µs, "
        f"p99 {percentiles[98]:.0f} µs, max {max(costs):.0f} µs"
    )


if __name__ == "__main__":
    main()
