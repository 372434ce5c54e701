"""Faults as tests (issue 13): each service killed with SIGKILL and restarted, the
broker restarted and the store restarted, each during a steady load of answers and
an erasure. Every answer the gateway accepted is counted exactly once, and every
erasure completes (see :mod:`support.faults` for what one trial does and checks).

One platform (its own Kafka and PostgreSQL, which the store and broker faults stop
and start) for the module; the faults one after another, each on a fresh tenant.
How long recovery takes is the bench's business (``python -m bench.faults``), not
asserted here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.faults import FAULTS, Platform, run_trial

pytestmark = [pytest.mark.connected, pytest.mark.e2e]


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp("faults"), durable=False)
    try:
        platform.start()
        yield platform
    finally:
        platform.close()


@pytest.mark.parametrize("fault", FAULTS)
def test_every_accepted_answer_is_counted_once_and_every_erasure_completes(platform, fault):
    trial = run_trial(platform, fault, rate=15)

    assert trial.accepted > 0
    assert not trial.rejected, trial.rejected
    assert trial.missing == {"analytics": [], "dialogue": [], "kafka": []}, trial.missing
    assert trial.unexpected == {"analytics": [], "dialogue": []}, trial.unexpected
    assert trial.counted == trial.accepted
    assert trial.figures_exact
    assert trial.erasures_completed == trial.erasures_requested == 2
