"""Analytics rules: which figures may leave, given the minimum group size k.

No I/O. Every released figure describes at least k participants (invariant 7),
including figures that could be derived by subtracting released cells from a
released total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from itertools import product
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

PLATFORMS = ("ios", "android")
FORM_FACTORS = ("phone", "tablet")
DEFAULT_MIN_GROUP_SIZE = 5
MIN_GROUP_SIZE_FLOOR = 3
FEWER = "fewer than k participants"
COMPLEMENTARY = "complementary: would reveal a suppressed cell"
TOTAL_BELOW_K = "total below minimum group size"
WHOLE = ("suppressed with all the others: with the reasons told apart, every smaller release would let a small "
         "cell be solved for")


@dataclass(frozen=True)
class DeviceCell:
    platform: str
    form_factor: str
    count: int | None  # None: suppressed
    suppressed: bool
    reason: str | None


@dataclass(frozen=True)
class DeviceFigures:
    k: int
    total: int | None
    total_suppressed: bool
    cells: list[DeviceCell]


def device_figures(counts: dict[tuple[str, str], int], k: int) -> DeviceFigures:
    """The platform × form-factor table with small cells suppressed.

    The four cells partition the participants: :func:`partition` decides."""
    keys = list(product(PLATFORMS, FORM_FACTORS))
    cells, total_hidden = partition({f"{p}/{f}": n for (p, f), n in counts.items()}, [f"{p}/{f}" for p, f in keys], k)
    return DeviceFigures(
        k=k, total=None if total_hidden else sum(counts.get(key, 0) for key in keys), total_suppressed=total_hidden,
        cells=[DeviceCell(p, f, cell.value, cell.suppressed, cell.reason)
               for (p, f), cell in zip(keys, cells, strict=True)],
    )


# --- released-or-suppressed figures ---------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One figure: released (``value``) or suppressed (``value`` None, with the reason)."""

    key: str
    value: float | int | None
    suppressed: bool
    reason: str | None
    label: str | None = None


def _check_k(k: int) -> None:
    if k < MIN_GROUP_SIZE_FLOOR:
        raise ValueError(f"k must be at least {MIN_GROUP_SIZE_FLOOR}")


def _hidden(key: str, reason: str, labels: dict[str, str] | None) -> Cell:
    return Cell(key, None, True, reason, (labels or {}).get(key))


def _reason(entry: Any, primary: set[Any], hidden: set[Any] | None) -> str | None:
    """Why ``entry`` is hidden (None: released), given what :func:`_protected` chose."""
    if hidden is None:
        return WHOLE
    if entry in primary:
        return FEWER
    return COMPLEMENTARY if entry in hidden else None


def partition(counts: dict[str, int], keys: list[str], k: int,
              labels: dict[str, str] | None = None) -> tuple[list[Cell], bool]:
    """Cells that add up to a released total (single choice, scale points, days,
    device types): (cells in ``keys`` order, whether the total itself is hidden).

    Primary: a cell below k, zero included. Complementary: while the hidden cells add
    up to between 1 and k-1 — which the total minus the released cells would give
    away — or the exact audit can pin a small one (two hidden cells "fewer than k"
    that make up 2k-2 are both k-1), the smallest released cell is hidden too. The
    total (the question's respondents) stays released. A total below k hides
    everything."""
    _check_k(k)
    values = {key: counts.get(key, 0) for key in keys}
    if sum(values.values()) < k:
        return [_hidden(key, TOTAL_BELOW_K, labels) for key in keys], True
    primary = {key for key in keys if values[key] < k}
    hidden = _protected([["total", *keys]], {**values, "total": sum(values.values())}, primary, k, keep={"total"})
    return [_hidden(key, reason, labels) if (reason := _reason(key, primary, hidden))
            else Cell(key, values[key], False, None, (labels or {}).get(key)) for key in keys], False


def overlapping(counts: dict[str, int], keys: list[str], respondents: int, k: int,
                labels: dict[str, str] | None = None) -> list[Cell]:
    """Cells that overlap (several picks per participant, or ideas on several days):
    they do not add up to the respondents, so no subtraction isolates one; each cell
    below k is hidden, and all of them when the respondents are fewer than k."""
    _check_k(k)
    if respondents < k:
        return [_hidden(key, TOTAL_BELOW_K, labels) for key in keys]
    return [Cell(key, counts.get(key, 0), False, None, (labels or {}).get(key)) if counts.get(key, 0) >= k
            else _hidden(key, FEWER, labels) for key in keys]


@dataclass(frozen=True)
class ScaleFigures:
    histogram: list[Cell]
    mean: Cell
    median: Cell


def scale_figures(histogram: dict[int, int], scale_min: int, scale_max: int, k: int) -> ScaleFigures:
    """The histogram (a partition) with mean and median from the exact counts.

    With the count and the released points, an exact mean is one more equation in the
    hidden points' counts (two hidden points: solved), so the mean goes whenever hidden
    points hold anyone; the median goes when it falls on a hidden point."""
    points = list(range(scale_min, scale_max + 1))
    cells, total_hidden = partition({str(p): n for p, n in histogram.items()}, [str(p) for p in points], k)
    if total_hidden:
        return ScaleFigures(cells, Cell("mean", None, True, TOTAL_BELOW_K), Cell("median", None, True, TOTAL_BELOW_K))
    n = sum(histogram.get(p, 0) for p in points)
    if any(c.suppressed and histogram.get(int(c.key), 0) for c in cells):
        mean = Cell("mean", None, True, "with the count and the released points it would reveal suppressed points")
    else:
        mean = Cell("mean", round(sum(p * histogram.get(p, 0) for p in points) / n, 2), False, None)
    low, high = _nth(histogram, points, (n - 1) // 2), _nth(histogram, points, n // 2)
    middle = low if low == high else (low + high) / 2
    on_hidden = any(c.suppressed and int(c.key) in (low, high) for c in cells)
    median = (Cell("median", None, True, "falls on a suppressed point") if on_hidden
              else Cell("median", middle, False, None))
    return ScaleFigures(cells, mean, median)


def _nth(histogram: dict[int, int], points: list[int], index: int) -> int:
    """The point of the ``index``-th answer (from 0) in scale order: a median from the
    counts alone, however many answers there are."""
    seen = 0
    for point in points:
        seen += histogram.get(point, 0)
        if index < seen:
            return point
    raise IndexError(index)


# --- tables across questions and dialogues ------------------------------------


@dataclass(frozen=True)
class CrossTab:
    row_keys: list[str]
    col_keys: list[str]
    cells: list[list[Cell]]
    row_totals: list[Cell]
    col_totals: list[Cell]
    total: Cell
    method: str


CROSS_TAB_METHOD = (
    "cells and margins below k hidden; then, until nothing changes, every value an attacker can derive by "
    "subtraction along a row, a column or a margin (including zeros that make other lines solvable) is "
    "treated as known, and while some line's unknown part adds up to between 1 and k-1 (or a small hidden "
    "value is derivable outright), one more released non-zero entry is hidden: the one that leaves the "
    "fewest such lines, then the smallest; then an exact audit (integer programs, knowing each hidden "
    "figure's reason: 'fewer than k' is 0..k-1, complementary at least k) hides more until no small "
    "non-zero cell and no small hidden part of a line has a single possible value"
)


def _violations(lines: list[list[Any]], values: dict[Any, int], hidden: set[Any], k: int) -> list[list[Any]]:
    """The lines that give a small group away once everything derivable by subtraction
    is known: a line whose still-unknown entries add up to 1..k-1, or one holding a
    small hidden value that became known outright. Each line's first entry is its total."""
    known = {e for e in values if e not in hidden}
    changed = True
    while changed:
        changed = False
        for line in lines:
            total, parts = line[0], line[1:]
            unknown = [e for e in parts if e not in known]
            if total in known:
                rest = values[total] - sum(values[e] for e in parts if e in known)
                if unknown and (len(unknown) == 1 or rest == 0):
                    known.update(unknown)
                    changed = True
            elif not unknown:
                known.add(total)
                changed = True
    bad = []
    for line in lines:
        total, parts = line[0], line[1:]
        if total in known and 0 < values[total] - sum(values[e] for e in parts if e in known) < k or any(e in hidden and e in known and 0 < values[e] < k for e in line):
            bad.append(line)
    return bad


def _complement(lines: list[list[Any]], values: dict[Any, int], hidden: set[Any], k: int,
                keep: frozenset[Any] | set[Any] = frozenset()) -> set[Any]:
    """Greedy complementary suppression with one step of lookahead: of the released
    non-zero entries on the lines that give something away (or, when those hold none,
    on the lines crossing them), hide the one after which the fewest lines still do.
    Picking simply the smallest entry cascades on sparse tables, where hiding a cell
    whose column is still solvable only moves the leak. Entries in ``keep`` (released
    elsewhere) are never hidden."""
    hidden = set(hidden)
    while bad := _violations(lines, values, hidden, k):
        candidates = {e for line in bad for e in line if e not in hidden | keep and values[e] > 0}
        if not candidates:
            near = {e for line in bad for other in lines if set(other) & set(line) for e in other}
            candidates = {e for e in near if e not in hidden | keep and values[e] > 0}
        if not candidates:
            return hidden  # left to the exact audit in _protected, which can hide everything
        hidden.add(min(candidates, key=lambda e: (len(_violations(lines, values, hidden | {e}, k)), values[e], str(e))))
    return hidden


def _pinned(lines: list[list[Any]], values: dict[Any, int], hidden: set[Any], primary: set[Any],
            k: int) -> list[list[Any]]:
    """The exact audit: the lines through a small group that an attacker holding every
    released figure, and every suppressed figure's reason, can still pin down.

    The attacker's knowledge is integer linear: each line's entries add up to its
    total, every count is a whole number, a cell hidden as "fewer than k" lies in
    [0, k-1] and one hidden as complementary is at least k (it was not small). A
    hidden small non-zero cell, or a line's hidden part adding up to 1..k-1, is pinned
    when its minimum and maximum over that feasible set are both its true value. Two
    integer programs per target, solved by HiGHS (scipy); the tables' equations form a
    network (rows → cells → columns), so the relaxation is already integral and each
    solve takes about a millisecond."""
    order = sorted(hidden, key=str)
    if not order:
        return []
    index = {e: i for i, e in enumerate(order)}
    rows, rhs = [], []
    for line in lines:
        coefficients, constant = np.zeros(len(order)), 0
        for e, sign in [(line[0], -1)] + [(part, 1) for part in line[1:]]:
            if e in index:
                coefficients[index[e]] += sign
            else:
                constant += sign * values[e]
        if coefficients.any():
            rows.append(coefficients)
            rhs.append(-constant)
    bounds = Bounds([0 if e in primary else k for e in order], [k - 1 if e in primary else np.inf for e in order])
    constraints = [LinearConstraint(np.array(rows), rhs, rhs)] if rows else []
    integrality = np.ones(len(order))

    one_sum = len(rows) == 1 and bool(np.all(rows[0] == 1))
    low, high = np.array(bounds.lb, dtype=float), np.array(bounds.ub, dtype=float)

    def can_differ(objective: np.ndarray, truth: int) -> bool:
        if one_sum:
            # One equation, the hidden cells adding up to a known rest (a partition):
            # the sum over a subset ranges over its bounds' sum, cut by what the rest
            # of the cells can take up. Exact, and a thousand times quicker than HiGHS.
            inside, outside = (objective > 0) & (rows[0] > 0), (objective == 0) & (rows[0] > 0)
            lowest = max(low[inside].sum(), rhs[0] - high[outside].sum())
            highest = min(high[inside].sum(), rhs[0] - low[outside].sum())
            return highest > lowest
        for sign in (-1, 1):  # the maximum first: most targets can grow
            result = milp(sign * objective, constraints=constraints, integrality=integrality, bounds=bounds)
            if result.status == 3:  # unbounded
                return True
            if result.status != 0:  # the truth is feasible, so only a failed solve: assume the worst
                return False
            if abs(sign * result.fun - truth) >= 0.5:
                return True
        return False

    leaking = []
    for e in order:
        if e in primary and 0 < values[e] < k:
            objective = np.zeros(len(order))
            objective[index[e]] = 1
            if not can_differ(objective, values[e]):
                leaking += [line for line in lines if e in line]
    for line in lines:
        parts = [e for e in line[1:] if e in index]
        if len(parts) > 1 and 0 < sum(values[e] for e in parts) < k:
            objective = np.zeros(len(order))
            objective[[index[e] for e in parts]] = 1
            if not can_differ(objective, sum(values[e] for e in parts)):
                leaking.append(line)
    return leaking


def _protected(lines: list[list[Any]], values: dict[Any, int], primary: set[Any], k: int,
               keep: frozenset[Any] | set[Any] = frozenset()) -> set[Any] | None:
    """What to hide: the primary entries, the greedy complement, then one more released
    entry (the smallest on a leaking line, else near one) for as long as the exact
    audit pins a small group. None when only hiding every entry but ``keep`` would
    do: then each is hidden under one reason, which tells the attacker nothing about
    its size (a table of zeros fits too)."""
    hidden = set(primary)
    while True:
        hidden = _complement(lines, values, hidden, k, keep)
        leaking = _pinned(lines, values, hidden, primary, k)
        if not leaking:
            return hidden
        candidates = {e for line in leaking for e in line if e not in hidden | keep and values[e] > 0}
        if not candidates:
            near = {e for line in leaking for other in lines if set(other) & set(line) for e in other}
            candidates = {e for e in near if e not in hidden | keep and values[e] > 0}
        if not candidates:
            candidates = {e for e in values if e not in hidden | keep and values[e] > 0}
        if not candidates:
            return None
        hidden.add(min(candidates, key=lambda e: (values[e], str(e))))


def cross_tab(counts: dict[tuple[str, str], int], row_keys: list[str], col_keys: list[str], k: int) -> CrossTab:
    """Distinct participants per (row value, column value), with margins and total."""
    _check_k(k)
    values: dict[Any, int] = {}
    for r in row_keys:
        for c in col_keys:
            values[(r, c)] = counts.get((r, c), 0)
    for r in row_keys:
        values[("row", r)] = sum(values[(r, c)] for c in col_keys)
    for c in col_keys:
        values[("col", c)] = sum(values[(r, c)] for r in row_keys)
    values["total"] = sum(values[("row", r)] for r in row_keys)
    if values["total"] < k:
        return CrossTab(
            row_keys, col_keys,
            [[Cell(f"{r}|{c}", None, True, TOTAL_BELOW_K) for c in col_keys] for r in row_keys],
            [Cell(r, None, True, TOTAL_BELOW_K) for r in row_keys], [Cell(c, None, True, TOTAL_BELOW_K) for c in col_keys],
            Cell("total", None, True, TOTAL_BELOW_K), CROSS_TAB_METHOD)
    lines = [[("row", r)] + [(r, c) for c in col_keys] for r in row_keys]
    lines += [[("col", c)] + [(r, c) for r in row_keys] for c in col_keys]
    lines += [["total"] + [("row", r) for r in row_keys], ["total"] + [("col", c) for c in col_keys]]
    primary = {e for e, v in values.items() if v < k}
    hidden = _protected(lines, values, primary, k)

    def cell(entry: Any, key: str) -> Cell:
        reason = _reason(entry, primary, hidden)
        return Cell(key, None, True, reason) if reason else Cell(key, values[entry], False, None)

    return CrossTab(
        row_keys, col_keys, [[cell((r, c), f"{r}|{c}") for c in col_keys] for r in row_keys],
        [cell(("row", r), r) for r in row_keys], [cell(("col", c), c) for c in col_keys],
        cell("total", "total"), CROSS_TAB_METHOD)


@dataclass(frozen=True)
class Overlap:
    dialogue_keys: list[str]
    cells: list[list[Cell]]


def overlap(participants: dict[str, int], both: dict[tuple[str, str], int], keys: list[str], k: int) -> Overlap:
    """Participants of each dialogue (diagonal) and of each pair (off the diagonal).
    A pair is released only when it and both remainders (those of one dialogue who did
    not take part in the other: the diagonal minus the pair) are each 0 or at least k,
    so no subtraction from a released diagonal singles out a small group."""
    _check_k(k)
    rows = []
    for a in keys:
        row = []
        for b in keys:
            if a == b:
                n = participants.get(a, 0)
                row.append(Cell(f"{a}|{b}", n, False, None) if n >= k else Cell(f"{a}|{b}", None, True, FEWER))
                continue
            n = both.get((a, b), both.get((b, a), 0))
            only_a, only_b = participants.get(a, 0) - n, participants.get(b, 0) - n
            if n < k:
                row.append(Cell(f"{a}|{b}", None, True, FEWER))
            elif 0 < only_a < k or 0 < only_b < k:
                row.append(Cell(f"{a}|{b}", None, True,
                                "complementary: the participants of one dialogue but not the other would be fewer than k"))
            else:
                row.append(Cell(f"{a}|{b}", n, False, None))
        rows.append(row)
    return Overlap(keys, rows)


# --- a dialogue's figures, from its questions' counters ----------------------

DEVICE_KEYS = [f"{p}/{f}" for p, f in product(PLATFORMS, FORM_FACTORS)] + ["unknown"]
ONE_VALUE_KINDS = ("single_choice", "scale")


@dataclass(frozen=True)
class QuestionFigures:
    question_id: str
    kind: str
    prompt: str
    respondents: Cell
    answers: Cell
    choices: list[Cell] | None
    scale: ScaleFigures | None
    scale_range: tuple[int, int] | None
    over_time: list[Cell]
    devices: list[Cell]

    def suppressed(self) -> list[tuple[str, Cell]]:
        """(figure, cell) for every hidden figure, for the response's list of what was
        suppressed and why."""
        named: list[tuple[str, Cell]] = [("respondents", self.respondents), ("answers", self.answers)]
        named += [("choices", c) for c in self.choices or []]
        if self.scale is not None:
            named += [("histogram", c) for c in self.scale.histogram]
            named += [("mean", self.scale.mean), ("median", self.scale.median)]
        named += [("over_time", c) for c in self.over_time] + [("devices", c) for c in self.devices]
        return [(figure, cell) for figure, cell in named if cell.suppressed]


def _count(key: str, n: int, released: bool) -> Cell:
    if released:
        return Cell(key, n, False, None)
    return Cell(key, None, True, "fewer than k participants")


def _days(counters: dict[str, int]) -> list[str]:
    """Every day from the first to the last with an answer, so a quiet day inside the
    range is listed (and hidden like any small cell), never simply absent."""
    used = sorted(day for day, n in counters.items() if n > 0)
    if not used:
        return []
    first, last = date.fromisoformat(used[0]), date.fromisoformat(used[-1])
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def question_figures(question: dict[str, Any], counters: dict[str, Any] | None, k: int) -> QuestionFigures:
    """One question's releasable figures from its counters (respondents, answers, and
    per choice, scale point, day and device type, each counting participants).

    Single choice, scale points and device types partition the respondents, so they
    get complementary suppression; a multiple-choice question's cells overlap (several
    picks each), and so do an idea question's days (ideas on several days)."""
    counters = counters or {}
    respondents = counters.get("respondents", 0)
    enough = respondents >= k
    kind = question["kind"]
    choices = None
    if kind in ("single_choice", "multiple_choice"):
        keys = [c["key"] for c in question["choices"]]
        labels = {c["key"]: c["label"] for c in question["choices"]}
        counts = counters.get("choices", {})
        if kind == "single_choice":
            choices, _ = partition(counts, keys, k, labels)
        else:
            choices = overlapping(counts, keys, respondents, k, labels)
    scale = scale_range = None
    if kind == "scale":
        scale_range = (question["scale_min"], question["scale_max"])
        histogram = {int(point): n for point, n in counters.get("scale", {}).items()}
        scale = scale_figures(histogram, scale_range[0], scale_range[1], k)
    day_counts = counters.get("days", {})
    if kind == "idea":
        over_time = overlapping(day_counts, _days(day_counts), respondents, k)
    else:
        over_time, _ = partition(day_counts, _days(day_counts), k)
    devices, _ = partition(counters.get("devices", {}), DEVICE_KEYS, k)
    return QuestionFigures(
        question_id=question["question_id"], kind=kind, prompt=question["prompt"],
        respondents=_count("respondents", respondents, enough),
        answers=_count("answers", counters.get("answers", 0), enough),
        choices=choices, scale=scale, scale_range=scale_range, over_time=over_time, devices=devices,
    )


def one_value(kind: str, counted: dict[str, Any]) -> str | None:
    """The single value a participant's record counts for a single-choice or scale
    question (the cross-tab's row or column key)."""
    values = counted["choices"] if kind == "single_choice" else counted["scale"]
    return next(iter(values), None)
