import pytest

from tessera_analytics.domain import device_figures


def counts(ios_phone=0, ios_tablet=0, android_phone=0, android_tablet=0):
    return {("ios", "phone"): ios_phone, ("ios", "tablet"): ios_tablet,
            ("android", "phone"): android_phone, ("android", "tablet"): android_tablet}


def released(figures):
    return {(c.platform, c.form_factor): c.count for c in figures.cells if not c.suppressed}


def test_everything_is_hidden_below_k():
    figures = device_figures(counts(ios_phone=4), k=5)
    assert figures.total is None and figures.total_suppressed
    assert all(c.suppressed and c.count is None for c in figures.cells)


def test_cells_of_at_least_k_are_released():
    figures = device_figures(counts(5, 6, 7, 8), k=5)
    assert figures.total == 26
    assert released(figures) == counts(5, 6, 7, 8)


def test_a_single_small_cell_gets_a_complementary_partner():
    figures = device_figures(counts(ios_phone=10, ios_tablet=9, android_phone=8, android_tablet=5), k=6)
    # android/tablet (5) < 6 alone would be total − the rest; the smallest other cell hides too.
    assert released(figures) == {("ios", "phone"): 10, ("ios", "tablet"): 9}


def test_hidden_cells_adding_up_to_zero_need_no_partner():
    figures = device_figures(counts(ios_phone=10, android_phone=7), k=5)
    assert released(figures) == {("ios", "phone"): 10, ("android", "phone"): 7}


@pytest.mark.parametrize("k", [3, 5, 10])
@pytest.mark.parametrize(
    "table", [counts(1, 2, 30, 40), counts(0, 4, 0, 50), counts(6, 1, 1, 1), counts(3, 3, 3, 3), counts(100, 0, 0, 1)]
)
def test_no_released_figure_reveals_a_group_smaller_than_k(table, k):
    figures = device_figures(table, k=k)
    if figures.total is None:
        return
    shown = released(figures)
    assert all(v >= k for v in shown.values())
    hidden_sum = figures.total - sum(shown.values())
    assert hidden_sum == 0 or hidden_sum >= k


def test_k_has_a_floor_of_three():
    with pytest.raises(ValueError):
        device_figures(counts(), k=2)
