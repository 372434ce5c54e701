"""The rights service's rules without I/O: deadlines, urgency, back-off, receipts, the
chain's recorded head, and the readable summary."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tessera_rights.domain import (
    GENESIS_HASH,
    chain_entry,
    human_summary,
    next_retry_delay,
    sign_receipt,
    statutory_deadline,
    urgency,
    verify_chain,
    verify_receipt,
)


@pytest.mark.parametrize(("received", "deadline"), [
    (datetime(2026, 3, 14, 9, 30, tzinfo=UTC), datetime(2026, 4, 14, 9, 30, tzinfo=UTC)),
    (datetime(2026, 1, 31, 23, 0, tzinfo=UTC), datetime(2026, 2, 28, 23, 0, tzinfo=UTC)),
    (datetime(2028, 1, 31, 8, 0, tzinfo=UTC), datetime(2028, 2, 29, 8, 0, tzinfo=UTC)),
    (datetime(2026, 12, 15, 12, 0, tzinfo=UTC), datetime(2027, 1, 15, 12, 0, tzinfo=UTC)),
])
def test_the_deadline_is_one_calendar_month_later(received, deadline):
    assert statutory_deadline(received) == deadline


def test_urgency_puts_overdue_before_at_risk_before_on_track():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert urgency("in_progress", now - timedelta(seconds=1), now) == "overdue"
    assert urgency("in_progress", now + timedelta(days=6), now) == "at_risk"
    assert urgency("in_progress", now + timedelta(days=8), now) == "on_track"
    assert urgency("completed", now - timedelta(days=8), now) == "closed"


def test_back_off_doubles_up_to_its_cap():
    assert [next_retry_delay(n, 2, 30).total_seconds() for n in range(6)] == [2, 4, 8, 16, 30, 30]


def test_a_receipt_verifies_with_the_public_key_only_unchanged():
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    signed = sign_receipt(key, {"request_id": "rr_1", "stores": [{"store": "dialogue.answers", "n": 3}]})
    assert verify_receipt(public, signed)
    altered = {**signed, "receipt": {**signed["receipt"], "request_id": "rr_2"}}
    assert not verify_receipt(public, altered)
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    assert not verify_receipt(other, signed)
    assert not verify_receipt(public, {"receipt": signed["receipt"]})


def _chain(n: int) -> list[dict]:
    entries, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        entries.append(chain_entry(prev, seq, {"action": "store_confirmed", "n": seq}))
        prev = entries[-1]["hash"]
    return entries


def test_the_recorded_head_catches_entries_removed_from_the_end():
    entries = _chain(4)
    head = (4, entries[-1]["hash"])
    assert verify_chain(entries, head).valid
    truncated = verify_chain(entries[:3], head)
    assert not truncated.valid and truncated.broken_at == 4 and "end" in truncated.reason
    assert not verify_chain(entries, (3, entries[2]["hash"])).valid
    assert verify_chain([], None).valid and not verify_chain([], (1, "x")).valid


def test_the_summary_reads_as_text_with_every_store_and_record():
    text = human_summary({
        "participant_id": "p_1", "tenant_id": "t_1", "generated_at": "2026-11-22",
        "stores": [
            {"store": "dialogue.answers", "records": [{"question_prompt": "Why?", "value": "More trees"}]},
            {"store": "analytics.contributions", "records": [], "objected": True},
        ],
    })
    assert "Your answers (1)" in text and "question prompt: Why?; value: More trees" in text
    assert "nothing" in text and "objected to analysis: yes" in text
