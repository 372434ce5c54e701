"""Hypothesis profiles for the property tests (``test_fuzz_participant_input.py``).

``ci`` (the default) is brief and derandomised: the same examples on every run, so a
red build is reproducible and never a coin toss. ``long`` (``TESSERA_FUZZ=long``, or
``make fuzz``) searches afresh each time, ``TESSERA_FUZZ_EXAMPLES`` examples per
property (100,000 unless set), keeps what it finds in ``.hypothesis/`` and
replays it first on the next run.

The deadline is per example and generous: it is there to catch a regular expression
that backtracks catastrophically (seconds to forever on 2,000 characters), not to
measure speed, which ``make bench`` does.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

_DEADLINE = timedelta(seconds=2)

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=_DEADLINE,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "100000")),
    deadline=_DEADLINE,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("TESSERA_FUZZ", "ci"))
