"""The data map: every table of every service's database, what it holds, and which
store must confirm a participant's erasure (DESIGN.md §2, issue 4).

One declaration that the rights service reads to know whom to wait for, and that a
test checks against the catalogues of the databases the services really create: a
table that exists but is not declared here fails the build, so a store added later
cannot be forgotten by erasure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Category = Literal[
    "tenant_account",  # organisations, their key hashes and settings: no participant data
    "opp_codes",
    "dialogue_content",  # what tenants wrote: titles, questions
    "device_facts",  # platform and form factor of a participant's device, token hash
    "answers",  # what participants answered, free text included
    "aggregates",  # per-participant contributions to figures
    "data_keys",  # participants' wrapped data keys
    "erasure_markers",  # HMACs of erased participant IDs: no personal data
    "rights_requests",  # requests, deadlines, per-store progress; the raw ID only while open
    "audit_trail",  # hash-chained entries: markers, actors, reasons; never erased data or raw IDs
    "objection_markers",  # HMACs of participants who objected to analysis
    "key_holds",  # which process may hold whose data key in memory, until when; the raw ID only while it may
    "outbox",  # events committed with a change, until the relay has published them
    "inbox",  # ids of events a consumer has applied: no participant data
    "key_epochs",  # wrapping-key epochs and their times: no key material, no participant data
]


@dataclass(frozen=True)
class Table:
    service: str
    table: str
    categories: tuple[Category, ...]
    #: The name under which this table's erasure is confirmed
    #: (``store-erasure-completed.data.store``), or None when it holds no participant data.
    erasure_store: str | None = None
    #: True where a participant's objection to analysis must be applied (figures): the
    #: store confirms it under its ``erasure_store`` name.
    applies_objection: bool = False


SERVICES = ("enrolment", "dialogue", "rights", "analytics")

#: In every service's database. An event in the outbox lives for the moment between a
#: commit and its publish; a participant's erasure deletes what of theirs still waits
#: there (each store's erasure does, in its own transaction).
_INFRASTRUCTURE = tuple(
    table for service in SERVICES
    for table in (Table(service, "outbox", ("outbox",)), Table(service, "inbox", ("inbox",)))
)

#: Behind the gateway: its copy of each tenant's key hashes, scopes and allow-list, and
#: when each key last opened the service's routes (tessera_common.tenant_access).
_TENANT_ACCESS = tuple(
    table for service in ("dialogue", "rights", "analytics")
    for table in (Table(service, "tenant_access", ("tenant_account",)), Table(service, "api_key_use", ("tenant_account",)))
)

DATA_MAP: tuple[Table, ...] = _INFRASTRUCTURE + _TENANT_ACCESS + (
    Table("enrolment", "tenants", ("tenant_account",)),
    Table("enrolment", "codes", ("opp_codes",)),
    # Which Kafka users the tenant's systems were issued (never a password).
    Table("enrolment", "kafka_credentials", ("tenant_account",)),
    # The console's people: accounts (Argon2id hashes, sealed TOTP secrets), their
    # recovery codes (hashes), invitations, sessions and activity. No participant data.
    Table("enrolment", "console_accounts", ("tenant_account",)),
    Table("enrolment", "console_recovery_codes", ("tenant_account",)),
    Table("enrolment", "console_invitations", ("tenant_account",)),
    Table("enrolment", "console_sessions", ("tenant_account",)),
    Table("enrolment", "console_activity", ("tenant_account",)),
    Table("enrolment", "console_allow_list", ("tenant_account",)),
    Table("enrolment", "console_passkeys", ("tenant_account",)),
    # The tenant's API keys: names, scopes, hashes, last use (the keys themselves never).
    Table("enrolment", "api_keys", ("tenant_account",)),
    Table("enrolment", "devices", ("device_facts",), erasure_store="enrolment.devices"),
    Table("dialogue", "tenants", ("tenant_account",)),
    Table("dialogue", "dialogues", ("dialogue_content",)),
    Table("dialogue", "answers", ("answers",), erasure_store="dialogue.answers"),
    Table("dialogue", "erased", ("erasure_markers",)),
    Table("analytics", "tenants", ("tenant_account",)),
    Table("analytics", "device_contributions", ("device_facts", "aggregates"),
               erasure_store="analytics.contributions", applies_objection=True),
    # One row per answer (its latest version): every figure is an aggregate over these.
    Table("analytics", "answer_contributions", ("answers", "aggregates"),
               erasure_store="analytics.contributions", applies_objection=True),
    Table("analytics", "dialogues", ("dialogue_content",)),
    Table("analytics", "erased", ("erasure_markers",)),
    Table("analytics", "objected", ("objection_markers",)),
    Table("rights", "tenants", ("tenant_account",)),
    Table("rights", "data_keys", ("data_keys",), erasure_store="rights.data_keys"),
    Table("rights", "erased_participants", ("erasure_markers",)),
    # A request holds the raw participant ID (retries and access need it) until the
    # participant's erasure completes, which strips it from all their requests.
    Table("rights", "requests", ("rights_requests",)),
    # Which processes may hold a participant's key in memory: rows go when their bound
    # passes or the participant's erasure completes (it waits for them).
    Table("rights", "key_holders", ("key_holds",)),
    Table("rights", "audit", ("audit_trail",)),
    Table("rights", "audit_heads", ("audit_trail",)),
    Table("rights", "key_epochs", ("key_epochs",)),
)


def erasure_stores() -> frozenset[str]:
    """Every store that must confirm before an erasure is complete."""
    return frozenset(c.erasure_store for c in DATA_MAP if c.erasure_store is not None)


def objection_stores() -> frozenset[str]:
    """Every store that must confirm an objection to analysis."""
    return frozenset(c.erasure_store for c in DATA_MAP if c.applies_objection and c.erasure_store is not None)


def tables_of(service: str) -> frozenset[str]:
    return frozenset(c.table for c in DATA_MAP if c.service == service)
