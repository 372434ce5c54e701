"""Which figures analytics may release: primary and complementary suppression, checked
by hand on examples and by an attacker who solves for what was hidden."""

from __future__ import annotations

import random
from itertools import product

import pytest

from tessera_analytics.domain import (
    COMPLEMENTARY,
    FEWER,
    TOTAL_BELOW_K,
    WHOLE,
    cross_tab,
    overlap,
    overlapping,
    partition,
    question_figures,
    scale_figures,
)


def values(cells):
    return {c.key: c.value for c in cells}


def test_k_below_the_floor_is_refused():
    with pytest.raises(ValueError):
        partition({"a": 10}, ["a"], 2)
    with pytest.raises(ValueError):
        cross_tab({}, ["a"], ["b"], 1)


def test_partition_hides_small_and_empty_cells_and_their_complement():
    cells, total_hidden = partition({"a": 6, "b": 5, "c": 1}, ["a", "b", "c", "d"], 5, {"a": "North"})
    assert not total_hidden
    assert values(cells) == {"a": 6, "b": None, "c": None, "d": None}
    reasons = {c.key: c.reason for c in cells}
    assert reasons == {"a": None, "b": COMPLEMENTARY, "c": FEWER, "d": FEWER}
    assert cells[0].label == "North"


def test_partition_leaves_hidden_zeros_alone_and_hides_all_below_k():
    cells, _ = partition({"a": 6, "b": 7}, ["a", "b", "c"], 5)
    assert values(cells) == {"a": 6, "b": 7, "c": None}  # total − released = 0: nobody singled out
    cells, total_hidden = partition({"a": 4}, ["a", "b"], 5)
    assert total_hidden and all(c.reason == TOTAL_BELOW_K for c in cells)


def test_partition_never_lets_subtraction_reveal_a_small_group():
    rng = random.Random(1)
    for _ in range(2000):
        k = rng.randint(3, 6)
        keys = [str(i) for i in range(rng.randint(2, 6))]
        counts = {key: rng.choice([0, 0, 1, 2, 3, 5, 8, 13]) for key in keys}
        cells, total_hidden = partition(counts, keys, k)
        if total_hidden:
            continue
        hidden = sum(counts[c.key] for c in cells if c.suppressed)
        assert hidden == 0 or hidden >= k
        assert all(c.value >= k for c in cells if not c.suppressed)


def possible(reason, k, cap):
    """The values a suppressed figure may hold, to an attacker who reads its reason."""
    if reason == FEWER:
        return range(k)
    if reason == COMPLEMENTARY:
        return range(k, cap + 1)
    return range(cap + 1)


def test_partition_two_cells_just_below_k_are_not_left_to_be_solved_for():
    # Told both are "fewer than 5" and that they make up 18 − 10 = 8, an attacker knows
    # each is 4: the released 10 has to go as well.
    cells, _ = partition({"a": 4, "b": 4, "c": 10}, ["a", "b", "c"], 5)
    assert [(c.value, c.reason) for c in cells] == [(None, FEWER), (None, FEWER), (None, COMPLEMENTARY)]
    # With nothing left to hide, the reasons stop telling the cells apart.
    cells, total_hidden = partition({"a": 4, "b": 4}, ["a", "b"], 5)
    assert not total_hidden and [(c.value, c.reason) for c in cells] == [(None, WHOLE), (None, WHOLE)]


def test_partition_reasons_never_let_a_small_cell_be_solved_for():
    """An attacker with the total and every released cell enumerates every split of the
    rest that agrees with the reasons: no small non-zero cell may have one value only."""
    rng = random.Random(5)
    for _ in range(300):
        k = rng.randint(3, 5)
        keys = [str(i) for i in range(rng.randint(2, 4))]
        counts = {key: rng.choice([0, 1, 2, 3, 4, 5, 7]) for key in keys}
        total = sum(counts.values())
        cells, total_hidden = partition(counts, keys, k)
        if total_hidden:
            continue
        hidden = [c for c in cells if c.suppressed]
        rest = total - sum(c.value for c in cells if not c.suppressed)
        seen: dict[str, set[int]] = {c.key: set() for c in hidden}
        for guess in product(*(possible(c.reason, k, rest) for c in hidden)):
            if sum(guess) == rest:
                for c, value in zip(hidden, guess, strict=True):
                    seen[c.key].add(value)
        for c in hidden:
            if 0 < counts[c.key] < k:
                assert seen[c.key] != {counts[c.key]}, (counts, k, cells)


def test_overlapping_cells_need_no_complement():
    cells = overlapping({"x": 12, "y": 6, "z": 2}, ["x", "y", "z"], 12, 5)
    assert values(cells) == {"x": 12, "y": 6, "z": None}
    assert all(c.suppressed for c in overlapping({"x": 4}, ["x"], 4, 5))


def test_scale_mean_and_median_from_the_counts():
    figures = scale_figures({1: 5, 2: 5, 3: 6}, 1, 3, 5)
    assert values(figures.histogram) == {"1": 5, "2": 5, "3": 6}
    assert figures.mean.value == round((5 + 10 + 18) / 16, 2)
    assert figures.median.value == 2
    even = scale_figures({1: 5, 3: 5}, 1, 3, 5)
    assert even.median.value == 2  # between the two middle answers, 1 and 3
    assert even.mean.value == 2.0  # the hidden point 2 holds nobody: the mean gives nothing away


def test_scale_mean_goes_when_a_hidden_point_holds_anyone():
    rng = random.Random(2)
    for _ in range(500):
        histogram = {p: rng.choice([0, 1, 2, 5, 9]) for p in range(1, 6)}
        figures = scale_figures(histogram, 1, 5, 5)
        if any(histogram[int(c.key)] for c in figures.histogram if c.suppressed):
            assert figures.mean.suppressed
        if not figures.median.suppressed:
            assert not any(c.suppressed and histogram[int(c.key)] for c in figures.histogram
                           if float(c.key) == figures.median.value)


def test_cross_tab_example_with_margins():
    counts = {("a", "a"): 12, ("a", "b"): 6, ("b", "b"): 7, ("b", "c"): 2}
    table = cross_tab(counts, ["a", "b", "c"], ["a", "b", "c"], 5)
    assert table.total.value == 27
    assert table.cells[0][0].value == 12
    assert table.cells[1][2].suppressed and table.cells[1][2].reason == FEWER
    # Row b (9) less its released 7 would give the 2 away, and so would the column
    # margins (27 − 12 − 13); hiding row b's total and column a's closes both.
    assert [[c.value for c in row] for row in table.cells] == [[12, 6, None], [None, 7, None], [None, None, None]]
    assert [c.value for c in table.row_totals] == [18, None, None]
    assert [c.value for c in table.col_totals] == [None, 13, None]
    assert (table.row_totals[1].reason, table.col_totals[0].reason) == (COMPLEMENTARY, COMPLEMENTARY)
    seen = {}
    for grid in consistent_tables(table, ["a", "b", "c"], ["a", "b", "c"], 5, 27):
        seen.setdefault((1, 2), set()).add(grid[(1, 2)])
    assert seen[(1, 2)] == {0, 1, 2}  # the 2 in b→c could be none, one or two participants


def consistent_tables(table, rows, cols, k, cap):
    """Every table of whole numbers that agrees with every released figure and every
    suppressed figure's reason ("fewer than k" is 0..k-1, complementary at least k);
    no cell above ``cap``, which only ever leaves tables out (a stricter test)."""
    released, free = {}, []
    for i in range(len(rows)):
        for j in range(len(cols)):
            cell = table.cells[i][j]
            if cell.suppressed:
                # A cell is never more than a released total it is part of.
                bounds = [t.value for t in (table.row_totals[i], table.col_totals[j], table.total) if not t.suppressed]
                free.append(((i, j), possible(cell.reason, k, min([cap, *bounds]))))
            else:
                released[(i, j)] = cell.value

    def agrees(figure, value):
        return figure.value == value if not figure.suppressed else value in possible(figure.reason, k, 10 ** 9)

    for guess in product(*(values for _, values in free)):
        grid = dict(released)
        grid.update(zip((cell for cell, _ in free), guess, strict=True))
        row_sums = [sum(grid[(i, j)] for j in range(len(cols))) for i in range(len(rows))]
        col_sums = [sum(grid[(i, j)] for i in range(len(rows))) for j in range(len(cols))]
        if (all(agrees(t, s) for t, s in zip(table.row_totals, row_sums, strict=True))
                and all(agrees(t, s) for t, s in zip(table.col_totals, col_sums, strict=True))
                and agrees(table.total, sum(row_sums))):
            yield grid


def test_cross_tab_hidden_small_cells_cannot_be_solved_for():
    """An attacker with every released cell and margin, and every suppressed figure's
    reason, enumerates all tables that fit: no hidden cell holding 1..k-1 participants,
    and no row's or column's hidden part adding up to 1..k-1, may come out the same in
    all of them."""
    rng = random.Random(3)
    checked = 0
    k = 3
    while checked < 80:
        rows, cols = ["r0", "r1"], ["c0", "c1", "c2"]
        truth = {(r, c): rng.choice([0, 0, 1, 2, 3, 4, 5, 7]) for r in rows for c in cols}
        if sum(truth.values()) < k:
            continue
        table = cross_tab(truth, rows, cols, k)
        free = [(i, j) for i in range(2) for j in range(3) if table.cells[i][j].suppressed]
        if len(free) > 5:
            continue  # enumeration too large for a unit test
        checked += 1
        cap = sum(truth.values())
        grids = list(consistent_tables(table, rows, cols, k, cap))
        lines = [[(i, j) for j in range(3)] for i in range(2)] + [[(i, j) for i in range(2)] for j in range(3)]
        for cell in free:
            value = truth[(rows[cell[0]], cols[cell[1]])]
            if 0 < value < k:
                assert {grid[cell] for grid in grids} != {value}, (truth, table)
        for line in lines:
            part = [cell for cell in line if cell in free]
            value = sum(truth[(rows[i], cols[j])] for i, j in part)
            if len(part) > 1 and 0 < value < k:
                assert {sum(grid[cell] for cell in part) for grid in grids} != {value}, (truth, table)


def test_cross_tab_reasons_do_not_give_a_small_cell_away():
    # Row r0: 10 − 7 = 3 for a "fewer than 3" cell and a complementary one (at least 3):
    # 0 and 3, so r1's c0 is column c0's 3, and r1's hidden 5 left 2 in c2. Not any more.
    truth = {("r0", "c0"): 0, ("r0", "c1"): 7, ("r0", "c2"): 3, ("r1", "c0"): 3, ("r1", "c1"): 3, ("r1", "c2"): 2}
    table = cross_tab(truth, ["r0", "r1"], ["c0", "c1", "c2"], 3)
    assert table.cells[1][2].suppressed and table.cells[1][2].reason == FEWER
    grids = list(consistent_tables(table, ["r0", "r1"], ["c0", "c1", "c2"], 3, 18))
    assert {grid[(1, 2)] for grid in grids} == {0, 1, 2}


def test_cross_tab_lines_never_leave_a_small_remainder():
    rng = random.Random(4)
    for _ in range(250):
        k = rng.randint(3, 5)
        rows, cols = [f"r{i}" for i in range(rng.randint(2, 4))], [f"c{j}" for j in range(rng.randint(2, 4))]
        truth = {(r, c): rng.choice([0, 1, 2, 4, 6, 9]) for r in rows for c in cols}
        table = cross_tab(truth, rows, cols, k)
        if table.total.suppressed:
            continue
        lines = [(row, total) for row, total in zip(table.cells, table.row_totals, strict=True)]
        lines += [([row[j] for row in table.cells], table.col_totals[j]) for j in range(len(cols))]
        lines += [(table.row_totals, table.total), (table.col_totals, table.total)]
        for line, total in lines:
            if not total.suppressed:
                hidden = total.value - sum(c.value for c in line if not c.suppressed)
                assert hidden == 0 or hidden >= k


def test_overlap_hides_pairs_that_leave_a_small_remainder():
    table = overlap({"d1": 30, "d2": 27, "d3": 10}, {("d1", "d2"): 27, ("d1", "d3"): 5}, ["d1", "d2", "d3"], 5)
    cells = [[c.value for c in row] for row in table.cells]
    assert cells[0][0] == 30 and cells[1][1] == 27
    assert cells[0][1] is None  # 30 − 27 = 3 would be a small group
    assert cells[0][2] == 5  # 25 and 5 outside: both at least k
    assert cells[1][2] is None  # nobody in both: below k
    rng = random.Random(5)
    for _ in range(500):
        n = {"a": rng.randint(0, 20), "b": rng.randint(0, 20)}
        both = rng.randint(0, min(n.values()))
        released = overlap(n, {("a", "b"): both}, ["a", "b"], 5).cells[0][1]
        if not released.suppressed:
            assert all(x == 0 or x >= 5 for x in (n["a"] - both, n["b"] - both, both))


def test_question_figures_list_every_choice_and_device_type():
    question = {"question_id": "q1", "kind": "single_choice", "prompt": "Which?",
                "choices": [{"key": "a", "label": "A"}, {"key": "b", "label": "B"}]}
    counters = {"respondents": 9, "answers": 9, "choices": {"a": 9}, "days": {"2026-11-02": 4, "2026-11-04": 5},
                "devices": {"ios/phone": 9}}
    figures = question_figures(question, counters, 5)
    assert values(figures.choices) == {"a": 9, "b": None}
    assert [c.key for c in figures.over_time] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert values(figures.over_time) == {"2026-11-02": None, "2026-11-03": None, "2026-11-04": None}
    assert values(figures.devices)["ios/phone"] == 9 and len(figures.devices) == 5
    assert figures.respondents.value == 9
    empty = question_figures(question, None, 5)
    assert empty.respondents.suppressed and all(c.suppressed for c in empty.choices)
