"""Every event Tessera puts on Kafka, and the topic each one travels on.

The vocabulary of what happened, readable in one screen. Each event is a CloudEvents
1.0 envelope (``id``, ``source``, ``type``, ``time``, ``subject``) plus ``tenant_id``,
with a versioned ``type`` and a typed ``data`` body. A breaking change to a ``data``
model gets a new ``type`` (``...v2``) and a new topic; consumers deduplicate by ``id``.

Participant-scoped events are keyed by participant ID (:func:`partition_key`), so one
participant's events keep their order within a topic. Trace context does not live
here: it travels in Kafka headers (W3C ``traceparent``), set by the telemetry
middleware.

Personal data rules (DESIGN.md §1, §4.3): no event carries a device token, an API key,
an IP address, or free text in plaintext. Free text travels only as AES-GCM ciphertext
under the participant's data key (:class:`EncryptedText`). An API key travels only as
its SHA-256; the one set of addresses an event carries is a tenant's own IP allow-list
(``tenant-access-changed``): ranges its owners configured, never an address observed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Identifiers are opaque tokens we generate; the pattern keeps Mongo operators,
# dots and whitespace out of anything that becomes a key or a filter value.
OpaqueId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Platform = Literal["ios", "android"]
FormFactor = Literal["phone", "tablet"]
ErasureReason = Literal["participant", "tenant", "retention"]
QuestionKind = Literal["open_text", "idea", "single_choice", "multiple_choice", "scale"]
PiiPolicy = Literal["warn", "redact", "reject"]
#: What a tenant API key may open: ``dialogues`` (the dialogue service's tenant routes:
#: dialogues, answers, settings), ``figures`` (analytics), ``rights`` (rights requests,
#: retention, the audit chain), ``codes`` (Opp codes on the gateway), ``streams`` (Kafka
#: credentials and the data keys that open the tenant topic's sealed text).
ApiKeyScope = Literal["dialogues", "figures", "rights", "codes", "streams"]


class Topics:
    """Topic names in one place: one event type per topic, versioned with the type."""

    TENANT_REGISTERED: ClassVar[str] = "tessera.tenant-registered.v1"
    DEVICE_ENROLLED: ClassVar[str] = "tessera.device-enrolled.v1"
    TENANT_SETTINGS_CHANGED: ClassVar[str] = "tessera.tenant-settings-changed.v1"
    TENANT_ACCESS_CHANGED: ClassVar[str] = "tessera.tenant-access-changed.v1"
    ANSWER_SUBMITTED: ClassVar[str] = "tessera.answer-submitted.v1"
    ANSWER_CHANGED: ClassVar[str] = "tessera.answer-changed.v1"
    DIALOGUE_CHANGED: ClassVar[str] = "tessera.dialogue-changed.v1"
    ERASURE_REQUESTED: ClassVar[str] = "tessera.erasure-requested.v1"
    STORE_ERASURE_COMPLETED: ClassVar[str] = "tessera.store-erasure-completed.v1"
    OBJECTION_RECORDED: ClassVar[str] = "tessera.objection-recorded.v1"
    OBJECTION_APPLIED: ClassVar[str] = "tessera.objection-applied.v1"
    DATA_KEY_DESTROYED: ClassVar[str] = "tessera.data-key-destroyed.v1"
    DEAD_LETTER: ClassVar[str] = "tessera.dead-letter.v1"

    @classmethod
    def all(cls) -> list[str]:
        return [
            cls.TENANT_REGISTERED,
            cls.TENANT_SETTINGS_CHANGED,
            cls.TENANT_ACCESS_CHANGED,
            cls.DEVICE_ENROLLED,
            cls.ANSWER_SUBMITTED,
            cls.ANSWER_CHANGED,
            cls.DIALOGUE_CHANGED,
            cls.ERASURE_REQUESTED,
            cls.STORE_ERASURE_COMPLETED,
            cls.OBJECTION_RECORDED,
            cls.OBJECTION_APPLIED,
            cls.DATA_KEY_DESTROYED,
            cls.DEAD_LETTER,
        ]

    @staticmethod
    def for_tenant(tenant_id: str) -> str:
        """A tenant's own topic. The shared prefix lets a Kafka ACL on
        ``tenant.<tenant_id>.`` (prefixed) isolate tenants from each other."""
        return f"tenant.{tenant_id}.events.v1"


def _now() -> datetime:
    return datetime.now(UTC)


class EventEnvelope(BaseModel):
    """CloudEvents 1.0 attributes plus ``tenant_id``; ``data`` is declared per event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid4()))
    source: str
    type: str
    time: datetime = Field(default_factory=_now)
    subject: str | None = None
    tenant_id: OpaqueId
    datacontenttype: Literal["application/json"] = "application/json"


class EncryptedText(BaseModel):
    """Free text sealed with the participant's data key (AES-256-GCM).

    Erasure destroys the key, which makes every copy in Kafka unreadable at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: OpaqueId
    nonce: str  # base64
    ciphertext: str  # base64, includes the GCM tag


# --- tenants ---------------------------------------------------------------


class TenantRegisteredData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str
    #: SHA-256 of the tenant's 256-bit API key, so other services can verify the key
    #: without a call to enrolment; the key itself is never on the wire.
    api_key_sha256: str
    min_group_size: int = Field(default=5, ge=3)


class TenantRegistered(EventEnvelope):
    type: Literal["io.tessera.tenant.registered.v1"] = "io.tessera.tenant.registered.v1"
    data: TenantRegisteredData


class ApiKeyGrant(BaseModel):
    """One active API key of a tenant: its hash (never the key) and what it may open."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: OpaqueId
    key_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    scopes: list[ApiKeyScope] = Field(min_length=1, max_length=5)


class TenantAccessChangedData(BaseModel):
    """Who may use the tenant's API routes, whole, as the gateway (which owns it) now
    holds it: the active API keys and the IP allow-list (CIDR networks; empty: any
    address). A revoked key is simply absent.

    ``revision`` grows with every change, so a service keeps the highest it has seen:
    a late or redelivered event never brings a revoked key back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revision: int = Field(ge=1)
    api_keys: list[ApiKeyGrant] = Field(max_length=100)
    networks: list[Annotated[str, StringConstraints(max_length=43)]] = Field(max_length=100)


class TenantAccessChanged(EventEnvelope):
    type: Literal["io.tessera.tenant.access-changed.v1"] = "io.tessera.tenant.access-changed.v1"
    data: TenantAccessChangedData


class TenantSettingsChangedData(BaseModel):
    """The tenant's settings as the dialogue service now holds them (it owns them).

    ``revision`` grows with every change, so a consumer keeps the highest it has seen
    and a late or redelivered event cannot roll a setting back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_group_size: int = Field(ge=3)
    pii_policy: PiiPolicy
    revision: int = Field(ge=1)


class TenantSettingsChanged(EventEnvelope):
    type: Literal["io.tessera.tenant.settings-changed.v1"] = "io.tessera.tenant.settings-changed.v1"
    data: TenantSettingsChangedData


# --- devices ---------------------------------------------------------------


class DeviceEnrolledData(BaseModel):
    """Exactly the device facts DESIGN.md §1 allows, and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    participant_id: OpaqueId
    platform: Platform
    form_factor: FormFactor
    enrolled_at: datetime


class DeviceEnrolled(EventEnvelope):
    type: Literal["io.tessera.device.enrolled.v1"] = "io.tessera.device.enrolled.v1"
    data: DeviceEnrolledData


# --- dialogues -------------------------------------------------------------


class ChoiceDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: OpaqueId
    label: str


class QuestionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    question_id: OpaqueId
    kind: QuestionKind
    prompt: str
    choices: list[ChoiceDefinition] = Field(default_factory=list)
    scale_min: int | None = None
    scale_max: int | None = None


class DialogueChangedData(BaseModel):
    """A dialogue's definition as it now stands (no answers): what analytics labels its
    figures with, and what tells it every choice and scale point, so that an empty one
    is listed rather than absent. ``revision`` grows with every change: a consumer keeps
    the highest it has seen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dialogue_id: OpaqueId
    title: str
    status: Literal["draft", "published", "closed", "archived"]
    revision: int = Field(ge=1)
    questions: list[QuestionDefinition]
    changed_at: datetime


class DialogueChanged(EventEnvelope):
    type: Literal["io.tessera.dialogue.changed.v1"] = "io.tessera.dialogue.changed.v1"
    data: DialogueChangedData


# --- answers ---------------------------------------------------------------


class AnswerValue(BaseModel):
    """What every answer event says about the answer: whose, to what, and its value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    participant_id: OpaqueId
    dialogue_id: OpaqueId
    question_id: OpaqueId
    answer_id: OpaqueId
    question_kind: QuestionKind
    #: Choice keys or a scale value: not free text, so not encrypted; empty and null
    #: once withdrawn.
    choices: list[OpaqueId] = Field(default_factory=list)
    scale_value: int | None = None
    #: Free text, sealed under the participant's data key (AES-256-GCM, associated data
    #: ``tessera:<participant_id>:answer-text``); null for other kinds and once withdrawn.
    text: EncryptedText | None = None
    #: Kinds of personal data the screening found (never the text found).
    screening_kinds: list[str] = Field(default_factory=list)


class AnswerFields(AnswerValue):
    """The internal answer events' fields: the value and the answering device's facts."""

    #: The answering device's technical facts (already in ``device-enrolled``; nothing
    #: new about the person), for device-type statistics; None when not known.
    platform: Platform | None = None
    form_factor: FormFactor | None = None


class AnswerSubmittedData(AnswerFields):
    """A participant's answer as first stored (after screening: redacted if the
    tenant's policy says so)."""

    #: The answer's version: 1 here, +1 with every change. Answer events travel on two
    #: topics, so a consumer orders them by version, not by arrival.
    version: int = Field(default=1, ge=1)
    submitted_at: datetime


class AnswerSubmitted(EventEnvelope):
    type: Literal["io.tessera.answer.submitted.v1"] = "io.tessera.answer.submitted.v1"
    data: AnswerSubmittedData


class AnswerChangedData(AnswerFields):
    """An answer edited (new value) or withdrawn (no value). The highest ``version``
    of an ``answer_id`` is its current state."""

    change: Literal["edited", "withdrawn"]
    version: int = Field(ge=2)
    changed_at: datetime


class AnswerChanged(EventEnvelope):
    type: Literal["io.tessera.answer.changed.v1"] = "io.tessera.answer.changed.v1"
    data: AnswerChangedData


# --- erasure ---------------------------------------------------------------


class ErasureRequestedData(BaseModel):
    """Erase one participant's data. Every store in the data map confirms every request
    (with ``documents_deleted: 0`` where it holds nothing in scope), so the rights
    service needs no per-request knowledge of who holds what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: OpaqueId
    participant_id: OpaqueId
    reason: ErasureReason
    requested_at: datetime
    #: None: everything of the participant (their device stops working, their data key
    #: is destroyed). A dialogue ID: only their answers to that dialogue and what was
    #: derived from them (retention of answers after a dialogue closed).
    dialogue_id: OpaqueId | None = None
    #: None: every store. A retry names the stores that have not confirmed yet; the
    #: others ignore it rather than erase (and scan) again.
    stores: list[str] | None = None

    def addressed_to(self, store: str) -> bool:
        return self.stores is None or store in self.stores


class ErasureRequested(EventEnvelope):
    type: Literal["io.tessera.erasure.requested.v1"] = "io.tessera.erasure.requested.v1"
    data: ErasureRequestedData


class DataKeyDestroyedData(BaseModel):
    """A participant's data key is gone: every process that may hold it in memory drops
    it at once and says so (:mod:`tessera_common.keycache`). Read by every replica, not by
    one member of a group, since each has a cache of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    participant_id: OpaqueId
    #: The erasure that destroyed it; None when it was destroyed on its own.
    request_id: OpaqueId | None = None
    destroyed_at: datetime


class DataKeyDestroyed(EventEnvelope):
    type: Literal["io.tessera.data-key.destroyed.v1"] = "io.tessera.data-key.destroyed.v1"
    data: DataKeyDestroyedData


class StoreConfirmationData(BaseModel):
    """A store's word to the rights service that it did what a request asked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: OpaqueId
    #: The store that confirmed, as named in the data map (tessera_common.datamap).
    store: str
    documents_deleted: int = Field(ge=0)
    completed_at: datetime


class StoreErasureCompletedData(StoreConfirmationData):
    """The store deleted the participant's data (in the request's scope)."""


class StoreErasureCompleted(EventEnvelope):
    type: Literal["io.tessera.erasure.store-completed.v1"] = (
        "io.tessera.erasure.store-completed.v1"
    )
    data: StoreErasureCompletedData


class ParticipantErasureNoticeData(BaseModel):
    """On the tenant's own topic: the tenant's systems must erase their copies too (of
    one dialogue's answers, if scoped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: OpaqueId
    participant_id: OpaqueId
    reason: ErasureReason
    requested_at: datetime
    dialogue_id: OpaqueId | None = None


class ParticipantErasureNotice(EventEnvelope):
    type: Literal["io.tessera.tenant.participant-erasure.v1"] = "io.tessera.tenant.participant-erasure.v1"
    data: ParticipantErasureNoticeData


# --- what a tenant's own systems read on its topic -------------------------------
#
# ``tenant.<tenant_id>.events.v1`` (Topics.for_tenant) carries what a tenant's systems
# need: its answers as they are given, changed and withdrawn, its dialogues' changes,
# its rights requests, and the erasure notices above. Free text stays sealed under the
# participant's data key; the tenant fetches keys in batches while they exist
# (``POST /v1/tenants/{tenant_id}/data-keys:batchGet`` on rights), so a system that keeps
# ciphertext and fetches keys when it reads is erased along with the platform. The
# AsyncAPI document (tessera_common.asyncapi) is generated from these models.


class TenantAnswerData(AnswerValue):
    """An answer as the tenant's systems get it. No device facts: per answer, the
    device type would be a quasi-identifier (the platform releases it only in figures
    about at least k people). The highest ``version`` of an ``answer_id`` is its state."""

    change: Literal["submitted", "edited", "withdrawn"]
    version: int = Field(ge=1)
    at: datetime


class TenantAnswer(EventEnvelope):
    type: Literal["io.tessera.tenant.answer.v1"] = "io.tessera.tenant.answer.v1"
    data: TenantAnswerData


class TenantDialogue(EventEnvelope):
    """A dialogue of the tenant as it now stands (keep the highest ``revision``)."""

    type: Literal["io.tessera.tenant.dialogue.v1"] = "io.tessera.tenant.dialogue.v1"
    data: DialogueChangedData


class TenantRightsRequestData(BaseModel):
    """A rights request about one of the tenant's participants, when it is received and
    when it is completed. ``participant_id`` is null once the participant is erased."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: OpaqueId
    participant_id: OpaqueId | None
    kind: Literal["access", "export", "rectification", "erasure", "objection"]
    actor: Literal["participant", "tenant", "retention"]
    status: Literal["in_progress", "completed"]
    received_at: datetime
    deadline: datetime
    completed_at: datetime | None = None
    #: An erasure scoped to one dialogue's answers (retention); null: everything.
    dialogue_id: OpaqueId | None = None


class TenantRightsRequest(EventEnvelope):
    type: Literal["io.tessera.tenant.rights-request.v1"] = "io.tessera.tenant.rights-request.v1"
    data: TenantRightsRequestData


#: Every event a tenant's topic carries.
TENANT_EVENTS: tuple[type[EventEnvelope], ...] = (TenantAnswer, TenantDialogue, TenantRightsRequest,
                                                   ParticipantErasureNotice)


# --- objection to analysis -------------------------------------------------


class ObjectionRecordedData(BaseModel):
    """The participant objected to analysis: from now on no figure counts them, as if
    their answers had never arrived. Their answers themselves stay (no erasure)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: OpaqueId
    participant_id: OpaqueId
    recorded_at: datetime


class ObjectionRecorded(EventEnvelope):
    type: Literal["io.tessera.objection.recorded.v1"] = "io.tessera.objection.recorded.v1"
    data: ObjectionRecordedData


class ObjectionAppliedData(StoreConfirmationData):
    """The store no longer counts the participant in any figure."""


class ObjectionApplied(EventEnvelope):
    type: Literal["io.tessera.objection.applied.v1"] = "io.tessera.objection.applied.v1"
    data: ObjectionAppliedData


# --- dead letters ----------------------------------------------------------


class DeadLetter(BaseModel):
    """What a consumer could not handle, with the reason; the consumer moves on.

    Holds the original bytes only as their length and a digest: a message that failed
    validation may carry anything, personal data included."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=lambda: str(uuid4()))
    consumer: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    reason: str
    payload_sha256: str
    payload_bytes: int
    time: datetime = Field(default_factory=_now)


def partition_key(participant_id: str) -> bytes:
    """Kafka key for participant-scoped events: keeps one participant's order."""
    return participant_id.encode()
