"""Who may do what on Kafka: credentials, each service's principal and its ACLs, and
tenant credentials scoped to their own topics.

The broker runs SASL/SCRAM-SHA-512 and Kafka's ``StandardAuthorizer`` with
``allow.everyone.if.no.acl.found=false``: a client without a credential does not get
in, and a principal may do only what an ACL below grants it.

- Each service is the principal ``User:tessera-<service>``: it may write only the
  topics it produces, read only those it consumes, and use only consumer groups named
  ``tessera-<service>…`` (:data:`SERVICE_ACCESS`).
- A tenant's credential is ``User:tenant-<tenant_id>-<credential_id>``: it may read
  topics that start with ``tenant.<tenant_id>.`` in consumer groups that start with
  the same prefix, and nothing else (:func:`tenant_grants`).

SCRAM users and ACLs are changed with librdkafka's admin client (confluent-kafka):
aiokafka, which the services use for producing and consuming, has no API for either.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr

from tessera_common.events import Topics

MECHANISM = "SCRAM-SHA-512"
#: Iterations of the SCRAM credential Kafka stores (its minimum is 4096).
SCRAM_ITERATIONS = 8192
#: Topic prefix of every tenant topic (Topics.for_tenant).
TENANT_TOPIC_PREFIX = "tenant."


@dataclass(frozen=True)
class KafkaCredentials:
    """A SASL/SCRAM user name and password, in the forms each client library takes."""

    username: str
    password: SecretStr

    def aiokafka(self) -> dict[str, Any]:
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": MECHANISM,
                "sasl_plain_username": self.username, "sasl_plain_password": self.password.get_secret_value()}

    def librdkafka(self) -> dict[str, str]:
        return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM,
                "sasl.username": self.username, "sasl.password": self.password.get_secret_value()}

    def faststream(self):  # type: ignore[no-untyped-def]
        from faststream.security import SASLScram512

        return SASLScram512(self.username, self.password.get_secret_value(), use_ssl=False)


@dataclass(frozen=True)
class KafkaEndpoint:
    """A broker and the credentials to reach it with (none: no authentication)."""

    bootstrap_servers: str
    credentials: KafkaCredentials | None = None

    def aiokafka(self) -> dict[str, Any]:
        """``bootstrap_servers`` and the SASL options, for any aiokafka client."""
        return {"bootstrap_servers": self.bootstrap_servers, **aiokafka_options(self.credentials)}


def aiokafka_options(credentials: KafkaCredentials | None) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client: SASL with ``credentials``, or none
    (a broker without authentication, as testcontainers' image runs)."""
    return credentials.aiokafka() if credentials else {}


def new_password() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(32))


@dataclass(frozen=True)
class ServiceAccess:
    """What one service's principal may do. Consuming a topic also allows creating it,
    so a service that starts before its producer can still subscribe."""

    produces: tuple[str, ...]
    consumes: tuple[str, ...]
    #: Consumed without a consumer group (every process reads every message).
    reads_without_group: tuple[str, ...] = ()
    #: Writes (and creates) tenant topics, ``tenant.<tenant_id>.…``.
    writes_tenant_topics: bool = False
    topics_created_at_start: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        ordered = dict.fromkeys((*self.produces, *self.consumes, *self.reads_without_group))
        object.__setattr__(self, "topics_created_at_start", tuple(ordered))


#: Every consumer may park a message it cannot handle (broker.dead_letter).
_EVERY_CONSUMER = (Topics.DEAD_LETTER,)

SERVICE_ACCESS: dict[str, ServiceAccess] = {
    "enrolment": ServiceAccess(
        produces=(Topics.TENANT_REGISTERED, Topics.TENANT_ACCESS_CHANGED, Topics.DEVICE_ENROLLED,
                  Topics.STORE_ERASURE_COMPLETED, *_EVERY_CONSUMER),
        consumes=(Topics.ERASURE_REQUESTED,),
    ),
    "dialogue": ServiceAccess(
        produces=(Topics.TENANT_SETTINGS_CHANGED, Topics.DIALOGUE_CHANGED, Topics.ANSWER_SUBMITTED,
                  Topics.ANSWER_CHANGED, Topics.STORE_ERASURE_COMPLETED, *_EVERY_CONSUMER),
        consumes=(Topics.TENANT_REGISTERED, Topics.TENANT_ACCESS_CHANGED, Topics.ERASURE_REQUESTED),
        reads_without_group=(Topics.DATA_KEY_DESTROYED,),
        writes_tenant_topics=True,
    ),
    "rights": ServiceAccess(
        produces=(Topics.ERASURE_REQUESTED, Topics.OBJECTION_RECORDED, Topics.DATA_KEY_DESTROYED, *_EVERY_CONSUMER),
        consumes=(Topics.TENANT_REGISTERED, Topics.TENANT_ACCESS_CHANGED, Topics.STORE_ERASURE_COMPLETED,
                  Topics.OBJECTION_APPLIED),
        writes_tenant_topics=True,
    ),
    "analytics": ServiceAccess(
        produces=(Topics.STORE_ERASURE_COMPLETED, Topics.OBJECTION_APPLIED, *_EVERY_CONSUMER),
        consumes=(Topics.TENANT_REGISTERED, Topics.TENANT_ACCESS_CHANGED, Topics.TENANT_SETTINGS_CHANGED,
                  Topics.DEVICE_ENROLLED,
                  Topics.ANSWER_SUBMITTED, Topics.ANSWER_CHANGED, Topics.DIALOGUE_CHANGED,
                  Topics.ERASURE_REQUESTED, Topics.OBJECTION_RECORDED),
    ),
}

#: The principal that issues tenants' credentials (used by the enrolment service's
#: credential routes only). ALTER on the cluster lets it create users and ACLs, which is
#: as strong as an administrator: in production it belongs to a separate provisioner.
PROVISIONER = "tessera-provisioner"


def own_topics(service_name: str) -> list[str]:
    """The topics a service creates at start if missing: those its ACLs name (every
    platform topic for a name not in :data:`SERVICE_ACCESS`)."""
    access = SERVICE_ACCESS.get(service_name.removeprefix("tessera-"))
    return list(access.topics_created_at_start) if access else Topics.all()


def service_username(service: str) -> str:
    return f"tessera-{service}"


def tenant_username(tenant_id: str, credential_id: str) -> str:
    return f"tenant-{tenant_id}-{credential_id}"


def tenant_topic_prefix(tenant_id: str) -> str:
    return f"{TENANT_TOPIC_PREFIX}{tenant_id}."


@dataclass(frozen=True)
class Grant:
    """Operations a principal is allowed on a resource: a topic or consumer group by
    name (``literal``) or by prefix (``prefixed``), or the cluster."""

    resource: Literal["topic", "group", "cluster"]
    name: str
    pattern: Literal["literal", "prefixed"]
    operations: tuple[str, ...]  # Kafka's names: READ, WRITE, CREATE, DESCRIBE, ALTER


def service_grants(service: str) -> list[Grant]:
    """The ACLs of ``service``'s principal, from :data:`SERVICE_ACCESS`."""
    access = SERVICE_ACCESS[service]
    read = {*access.consumes, *access.reads_without_group}
    grants = [Grant("topic", topic, "literal",
                    (*(("WRITE",) if topic in access.produces else ()), *(("READ",) if topic in read else ()),
                     "DESCRIBE", "CREATE"))
              for topic in access.topics_created_at_start]
    if access.consumes:
        grants.append(Grant("group", service_username(service), "prefixed", ("READ",)))
    if access.writes_tenant_topics:
        grants.append(Grant("topic", TENANT_TOPIC_PREFIX, "prefixed", ("WRITE", "DESCRIBE", "CREATE")))
    return grants


def provisioner_grants() -> list[Grant]:
    return [Grant("cluster", "kafka-cluster", "literal", ("ALTER", "DESCRIBE"))]


def tenant_grants(tenant_id: str) -> list[Grant]:
    """Read the tenant's own topics, in consumer groups of its own prefix; nothing else."""
    prefix = tenant_topic_prefix(tenant_id)
    return [Grant("topic", prefix, "prefixed", ("READ", "DESCRIBE")), Grant("group", prefix, "prefixed", ("READ",))]


def acl_bindings(username: str, grants: list[Grant]) -> list:  # type: ignore[type-arg]
    """``grants`` as librdkafka's ACL bindings for ``User:<username>``, from any host."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    # librdkafka calls Kafka's CLUSTER resource BROKER.
    resource_types = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "cluster": ResourceType.BROKER}
    return [AclBinding(resource_types[g.resource], g.name, ResourcePatternType[g.pattern.upper()],
                       f"User:{username}", "*", AclOperation[operation], AclPermissionType.ALLOW)
            for g in grants for operation in g.operations]


def strimzi_users(cluster: str = "kafka") -> list[dict[str, Any]]:
    """The services' principals and the provisioner as Strimzi ``KafkaUser`` resources
    (deploy/k8s/kafka-users.yaml is this, kept current by tests/unit/test_kafka_declaration.py)."""
    def acl(grant: Grant) -> dict[str, Any]:
        resource: dict[str, Any] = {"type": grant.resource}
        if grant.resource != "cluster":
            resource |= {"name": grant.name, "patternType": "literal" if grant.pattern == "literal" else "prefix"}
        return {"resource": resource, "operations": [op.capitalize() for op in grant.operations]}

    principals = {service_username(s): service_grants(s) for s in SERVICE_ACCESS}
    principals[PROVISIONER] = provisioner_grants()
    return [{"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaUser",
             "metadata": {"name": name, "labels": {"strimzi.io/cluster": cluster}},
             "spec": {"authentication": {"type": "scram-sha-512"},
                      "authorization": {"type": "simple", "acls": [acl(g) for g in grants]}}}
            for name, grants in principals.items()]


class KafkaAccessAdmin:
    """Users, ACLs and topics, changed as a principal with the right to (the broker's
    administrator, or :data:`PROVISIONER` for tenant credentials).

    librdkafka's admin client is synchronous with futures; each call runs in a thread
    so that a service's event loop never blocks on the broker."""

    def __init__(self, bootstrap_servers: str, credentials: KafkaCredentials | None, timeout: float = 15.0) -> None:
        from confluent_kafka.admin import AdminClient

        # librdkafka's own log lines go through Python's logging, not to stderr.
        config = {"bootstrap.servers": bootstrap_servers, "socket.timeout.ms": int(timeout * 1000),
                  "logger": logging.getLogger("tessera.kafka_admin")}
        if credentials is not None:
            config.update(credentials.librdkafka())
        self._client = AdminClient(config)
        self._timeout = timeout

    def _wait(self, futures: Iterable[Any]) -> None:
        for future in futures:
            future.result(timeout=self._timeout)

    def upsert_user_sync(self, username: str, password: SecretStr) -> None:
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(username, info, password.get_secret_value().encode())
        self._wait(self._client.alter_user_scram_credentials([upsert]).values())

    def delete_user_sync(self, username: str) -> None:
        from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion

        deletion = UserScramCredentialDeletion(username, ScramMechanism.SCRAM_SHA_512)
        try:
            self._wait(self._client.alter_user_scram_credentials([deletion]).values())
        except Exception as error:  # already gone: deleting again is a no-op
            if "RESOURCE_NOT_FOUND" not in str(error):
                raise

    def grant_sync(self, bindings: list) -> None:  # type: ignore[type-arg]
        if bindings:
            self._wait(self._client.create_acls(bindings).values())

    def revoke_all_sync(self, username: str) -> int:
        """Delete every ACL that names ``User:<username>``; how many were deleted.

        Returns once the broker answers that none is left: the controller commits the
        deletion before the broker applies it to its authorizer, and a request served
        in between would still be allowed."""
        flt = self._principal_filter(username)
        deleted = 0
        for future in self._client.delete_acls([flt]).values():
            deleted += len(future.result(timeout=self._timeout))
        deadline = time.monotonic() + self._timeout
        while self._client.describe_acls(flt).result(timeout=self._timeout):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker still applies ACLs of {username}")
            time.sleep(0.05)
        return deleted

    @staticmethod
    def _principal_filter(username: str):  # type: ignore[no-untyped-def]
        from confluent_kafka.admin import (
            AclBindingFilter,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
        )

        return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{username}", None,
                                AclOperation.ANY, AclPermissionType.ANY)

    def create_topics_sync(self, topics: Iterable[str], partitions: int = 3, replication_factor: int = 1) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import NewTopic

        wanted = [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor) for t in topics]
        for future in self._client.create_topics(wanted, operation_timeout=self._timeout).values():
            try:
                future.result(timeout=self._timeout)
            except KafkaException as error:
                if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise

    async def upsert_user(self, username: str, password: SecretStr) -> None:
        await asyncio.to_thread(self.upsert_user_sync, username, password)

    async def delete_user(self, username: str) -> None:
        await asyncio.to_thread(self.delete_user_sync, username)

    async def grant(self, bindings: list) -> None:  # type: ignore[type-arg]
        await asyncio.to_thread(self.grant_sync, bindings)

    async def revoke_all(self, username: str) -> int:
        return await asyncio.to_thread(self.revoke_all_sync, username)


def provision_platform(admin: KafkaAccessAdmin, partitions: int = 3) -> dict[str, KafkaCredentials]:
    """As the broker's administrator: every platform topic, each service's principal
    with a new password and its ACLs, and the provisioner. Returns the credentials,
    by service name (``"provisioner"`` for the provisioner)."""
    admin.create_topics_sync(Topics.all(), partitions=partitions)
    issued: dict[str, KafkaCredentials] = {}
    for service in SERVICE_ACCESS:
        credentials = KafkaCredentials(service_username(service), new_password())
        admin.upsert_user_sync(credentials.username, credentials.password)
        admin.grant_sync(acl_bindings(credentials.username, service_grants(service)))
        issued[service] = credentials
    provisioner = KafkaCredentials(PROVISIONER, new_password())
    admin.upsert_user_sync(provisioner.username, provisioner.password)
    admin.grant_sync(acl_bindings(PROVISIONER, provisioner_grants()))
    issued["provisioner"] = provisioner
    return issued
