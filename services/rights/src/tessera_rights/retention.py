"""Retention: the tenant's rules for how long data lives, applied through the same
erasure pipeline as a participant's request (reason ``retention``), so expiry is
fanned out, confirmed, retried, receipted and audited the same way (DESIGN.md §1).

- ``answers_days_after_close``: N days after a dialogue closed, each participant's
  answers to it are erased (an erasure scoped to that dialogue: the participant, their
  device and their other answers stay).
- ``idle_device_days``: a device not used for M days is erased with everything of its
  participant, as if they had asked.

The stores say what has expired (dialogue: closed dialogues and who still has answers
there; enrolment: idle devices) through their internal APIs; this service never reads
their databases. Each round takes at most ``batch`` subjects per rule, so a large
backlog drains over several rounds instead of flooding the stores at once.

The tenants with rules come from a definer function across tenants, each tenant's
rules from its own unit (:meth:`.store.RightsStore.tenants_with_retention`). Replicas
may run a round at the same time: a participant has at most one open erasure per
scope (the store's unique index), so a doubled round requests nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tessera_common.logs import get_logger
from tessera_rights.desk import Desk

log = get_logger(__name__)


class Retention:
    def __init__(self, desk: Desk, batch: int = 500) -> None:
        self.desk = desk
        self.batch = batch

    async def run_once(self, now: datetime | None = None) -> int:
        """One round over every tenant with rules; returns the erasures requested."""
        now = now or datetime.now(UTC)
        requested = 0
        for tenant in await self.desk.store.tenants_with_retention():
            rules = tenant["retention"]
            if rules.get("answers_days_after_close"):
                requested += await self._answers(tenant["_id"], now - timedelta(days=rules["answers_days_after_close"]))
            if rules.get("idle_device_days"):
                requested += await self._devices(tenant["_id"], now - timedelta(days=rules["idle_device_days"]))
        if requested:
            log.info("retention_erasures_requested", count=requested)
        return requested

    async def _answers(self, tenant_id: str, closed_before: datetime) -> int:
        requested = 0
        closed = await self._ask("dialogue", f"/internal/v1/tenants/{tenant_id}/retention/closed-dialogues",
                                 {"closed_before": closed_before.isoformat()})
        for dialogue in closed.get("dialogues", []):
            who = await self._ask(
                "dialogue",
                f"/internal/v1/tenants/{tenant_id}/retention/dialogues/{dialogue['dialogue_id']}/participants",
                {"limit": self.batch})
            for participant_id in who.get("participant_ids", []):
                received = await self.desk.receive("retention", tenant_id, participant_id, "erasure",
                                                   scope=dialogue["dialogue_id"])
                requested += received.created
        return requested

    async def _devices(self, tenant_id: str, idle_since: datetime) -> int:
        requested = 0
        idle = await self._ask("enrolment", f"/internal/v1/tenants/{tenant_id}/retention/idle-participants",
                               {"idle_since": idle_since.isoformat(), "limit": self.batch})
        for participant_id in idle.get("participant_ids", []):
            received = await self.desk.receive("retention", tenant_id, participant_id, "erasure")
            requested += received.created
        return requested

    async def _ask(self, service: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.desk.stores[service].get(path, params=params)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("retention_store_unavailable", service=service, error=type(exc).__name__)
            return {}
