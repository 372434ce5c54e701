"""Typed settings shared by every service: read from the environment (prefix ``TESSERA_``).

Each service subclasses :class:`ServiceSettings` with its own port and database name,
so one process never needs to know another's settings. Defaults run the local stack.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tessera_common.kafka_access import KafkaCredentials

#: Values that must never reach a non-development deployment.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "dev-operator-key", "dev-internal-token", "dev-erased-marker-key"}
)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TESSERA_", extra="ignore")

    service_name: str = "tessera"
    environment: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    #: The service's own SASL/SCRAM-SHA-512 principal (``tessera-<service>``), whose ACLs
    #: allow only its own topics and groups (tessera_common.kafka_access). Unset = no
    #: authentication, for a broker without it (testcontainers' image); refused in
    #: production.
    kafka_username: str | None = Field(default=None, max_length=200)
    kafka_password: SecretStr | None = None
    #: Used only when a service creates a missing topic at start; production topics
    #: are declared up front (deploy/k8s/README.md) with replication 3.
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    #: Appended to each consumer group's name (``tessera-dialogue`` + suffix). Empty in
    #: a deployment; set where independent copies of a service, each with a database of
    #: its own, share one Kafka cluster (the tests: one database and group per test), so
    #: no copy takes another's events.
    consumer_group_suffix: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9._-]*$")
    #: This process's stable name in its consumer groups (Kafka static membership), e.g.
    #: a StatefulSet pod's name or, for ``make run``, the service's: restarted with the
    #: same id it consumes again at once, rather than after the dead process's session
    #: expires. Unique per live replica; unset = a new member at every start.
    consumer_instance_id: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    #: The service's own database, as its own role (which owns no table, so row-level
    #: security applies to it), e.g. postgresql://tessera_dialogue:…@host:5432/tessera_dialogue.
    database_url: SecretStr = SecretStr("postgresql://tessera@127.0.0.1:5432/tessera")
    #: The same database as its owner role, for migrations at start; unset = the
    #: service does not migrate (a deployment job runs ``tessera-migrate`` instead).
    database_owner_url: SecretStr | None = None
    #: Connections the service's pool keeps open at most (per replica).
    database_pool_size: int = Field(default=10, ge=1)
    #: After an erasure, the tables it deleted from are vacuumed (as the owner, when
    #: ``database_owner_url`` is set) at most once per this many seconds.
    vacuum_after_erasure_seconds: float = Field(default=60.0, gt=0)

    #: OTLP/HTTP traces endpoint (e.g. http://jaeger:4318/v1/traces); unset = no export.
    otlp_endpoint: str | None = None
    log_level: str = "INFO"

    #: Operator's bearer key: creates tenants. Unset in development means "generate one".
    operator_key: SecretStr = SecretStr("dev-operator-key")

    #: Gateway's Ed25519 public key (base64 of the 32 raw bytes) that downstream services
    #: use to verify participant assertions forwarded by the enrolment gateway.
    gateway_public_key: str | None = None

    #: Bearer token services present to each other's ``/internal`` routes (the rights
    #: service's data keys). In production these routes are also fenced off by the
    #: network policy (deploy/k8s); the token is the second lock, not the only one.
    internal_token: SecretStr = SecretStr("dev-internal-token")
    #: HMAC key under which this service remembers erased participants
    #: (:func:`tessera_common.secrets.erased_marker`): never their raw ID.
    erased_marker_key: SecretStr = SecretStr("dev-erased-marker-key")

    #: Largest HTTP request body accepted, in bytes; anything larger gets 413.
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)

    #: How long a consumer remembers an applied event id (the inbox). Redelivery comes
    #: from offsets not yet committed, minutes at most; this outlives Kafka's default
    #: 7-day retention so that even a group reset to the earliest offset is deduplicated.
    inbox_retention_days: int = Field(default=14, ge=1)

    #: How often the outbox relay looks for events whose publish was interrupted.
    outbox_sweep_seconds: float = Field(default=5.0, gt=0)

    def kafka_credentials(self) -> KafkaCredentials | None:
        if self.kafka_username is None:
            return None
        if self.kafka_password is None:
            raise ValueError("TESSERA_KAFKA_PASSWORD must be set with TESSERA_KAFKA_USERNAME")
        return KafkaCredentials(self.kafka_username, self.kafka_password)

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> ServiceSettings:
        if self.kafka_username is not None and self.kafka_password is None:
            raise ValueError("TESSERA_KAFKA_PASSWORD must be set with TESSERA_KAFKA_USERNAME")
        if self.environment != "production":
            return self
        for name in ("operator_key", "internal_token", "erased_marker_key"):
            if getattr(self, name).get_secret_value() in PLACEHOLDER_SECRETS:
                raise ValueError(f"TESSERA_{name.upper()} must be set to a real secret in production")
        if self.kafka_username is None:
            raise ValueError("TESSERA_KAFKA_USERNAME and TESSERA_KAFKA_PASSWORD must be set in production")
        return self
