"""The data map: every collection of every service, what it holds, and which store
must confirm a participant's erasure (DESIGN.md §2, issue 4).

One declaration that the rights service reads to know whom to wait for, and that a
test checks against the databases the services really create: a collection that
exists but is not declared here fails the build, so a store added later cannot be
forgotten by erasure.
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
    "figures",  # counters over many participants (k applies when released): no participant data
    "data_keys",  # participants' wrapped data keys
    "erasure_markers",  # HMACs of erased participant IDs: no personal data
    "rights_requests",  # requests, deadlines, per-store progress; the raw ID only while open
    "audit_trail",  # hash-chained entries: markers, actors, reasons; never erased data or raw IDs
    "objection_markers",  # HMACs of participants who objected to analysis
]


@dataclass(frozen=True)
class Collection:
    service: str
    collection: str
    categories: tuple[Category, ...]
    #: The name under which this collection's erasure is confirmed
    #: (``store-erasure-completed.data.store``), or None when it holds no participant data.
    erasure_store: str | None = None
    #: True where a participant's objection to analysis must be applied (figures): the
    #: store confirms it under its ``erasure_store`` name.
    applies_objection: bool = False


DATA_MAP: tuple[Collection, ...] = (
    Collection("enrolment", "tenants", ("tenant_account",)),
    Collection("enrolment", "codes", ("opp_codes",)),
    Collection("enrolment", "devices", ("device_facts",), erasure_store="enrolment.devices"),
    Collection("dialogue", "tenants", ("tenant_account",)),
    Collection("dialogue", "dialogues", ("dialogue_content",)),
    Collection("dialogue", "answers", ("answers",), erasure_store="dialogue.answers"),
    Collection("dialogue", "erased", ("erasure_markers",)),
    Collection("analytics", "tenants", ("tenant_account",)),
    Collection("analytics", "device_contributions", ("device_facts", "aggregates"),
               erasure_store="analytics.contributions", applies_objection=True),
    Collection("analytics", "answer_contributions", ("answers", "aggregates"),
               erasure_store="analytics.contributions", applies_objection=True),
    # Counters per question; a record being settled is named there by a hashed ID for
    # the moment of the update (store._settle), and taken out by erasure's retraction.
    Collection("analytics", "question_figures", ("figures",)),
    Collection("analytics", "dialogues", ("dialogue_content",)),
    Collection("analytics", "erased", ("erasure_markers",)),
    Collection("analytics", "objected", ("objection_markers",)),
    Collection("rights", "tenants", ("tenant_account",)),
    Collection("rights", "data_keys", ("data_keys",), erasure_store="rights.data_keys"),
    Collection("rights", "erased_participants", ("erasure_markers",)),
    # A request holds the raw participant ID (retries and access need it) until the
    # participant's erasure completes, which strips it from all their requests.
    Collection("rights", "requests", ("rights_requests",)),
    Collection("rights", "audit", ("audit_trail",)),
    Collection("rights", "audit_heads", ("audit_trail",)),
)


def erasure_stores() -> frozenset[str]:
    """Every store that must confirm before an erasure is complete."""
    return frozenset(c.erasure_store for c in DATA_MAP if c.erasure_store is not None)


def objection_stores() -> frozenset[str]:
    """Every store that must confirm an objection to analysis."""
    return frozenset(c.erasure_store for c in DATA_MAP if c.applies_objection and c.erasure_store is not None)


def collections_of(service: str) -> frozenset[str]:
    return frozenset(c.collection for c in DATA_MAP if c.service == service)
