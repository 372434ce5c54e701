"""Analytics rules: which figures may leave, given the minimum group size k.

No I/O. Every released figure describes at least k participants (invariant 7),
including figures that could be derived by subtracting released cells from a
released total.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

PLATFORMS = ("ios", "android")
FORM_FACTORS = ("phone", "tablet")
DEFAULT_MIN_GROUP_SIZE = 5
MIN_GROUP_SIZE_FLOOR = 3


@dataclass(frozen=True)
class Cell:
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
    cells: list[Cell]


def device_figures(counts: dict[tuple[str, str], int], k: int) -> DeviceFigures:
    """The platform × form-factor table with small cells suppressed.

    Primary suppression: any cell with fewer than k participants (zero included, so a
    hidden cell is never known to be empty). Complementary suppression: if the hidden
    cells together hold between 1 and k-1 participants, the released total minus the
    released cells would reveal that small group, so the smallest released cell is
    hidden too, until the hidden cells add up to 0 or at least k. A total below k hides
    everything."""
    if k < MIN_GROUP_SIZE_FLOOR:
        raise ValueError(f"k must be at least {MIN_GROUP_SIZE_FLOOR}")
    keys = list(product(PLATFORMS, FORM_FACTORS))
    values = {key: counts.get(key, 0) for key in keys}
    total = sum(values.values())
    if total < k:
        return DeviceFigures(
            k=k, total=None, total_suppressed=True,
            cells=[Cell(p, f, None, True, "total below minimum group size") for p, f in keys],
        )
    primary = {key for key in keys if values[key] < k}
    complementary: set[tuple[str, str]] = set()
    while 0 < sum(values[key] for key in primary | complementary) < k:
        released = sorted((key for key in keys if key not in primary | complementary), key=lambda c: values[c])
        complementary.add(released[0])
    cells = []
    for p, f in keys:
        if (p, f) in primary:
            cells.append(Cell(p, f, None, True, "fewer than k participants"))
        elif (p, f) in complementary:
            cells.append(Cell(p, f, None, True, "complementary: would reveal a suppressed cell"))
        else:
            cells.append(Cell(p, f, values[(p, f)], False, None))
    return DeviceFigures(k=k, total=total, total_suppressed=False, cells=cells)
