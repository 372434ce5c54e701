"""Kafka access as declared (tessera_common.kafka_access): what each principal may do,
and the Strimzi ``KafkaUser`` resources in deploy/k8s, which must be that declaration.
With TESSERA_UPDATE_K8S=1 this rewrites deploy/k8s/kafka-users.yaml instead of failing.
What the broker really allows is tested on it: tests/integration/test_kafka_access.py."""

import os
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from tessera_common.events import Topics
from tessera_common.kafka_access import (
    SERVICE_ACCESS,
    Grant,
    KafkaCredentials,
    acl_bindings,
    own_topics,
    service_grants,
    strimzi_users,
    tenant_grants,
)
from tessera_common.settings import ServiceSettings

KEPT = Path(__file__).parents[2] / "deploy/k8s/kafka-users.yaml"
HEADER = ("# Generated from tessera_common.kafka_access (tests/unit/test_kafka_declaration.py keeps it\n"
          "# current): each service's Kafka principal and its ACLs, and the provisioner that\n"
          "# issues tenants' credentials, as Strimzi KafkaUser resources. Applied on its own,\n"
          "# like postgres.yaml (see README.md).\n")


def test_the_kept_strimzi_users_are_the_declared_ones() -> None:
    current = HEADER + yaml.safe_dump_all(strimzi_users(), sort_keys=False)
    if os.environ.get("TESSERA_UPDATE_K8S") == "1":
        KEPT.write_text(current, encoding="utf-8")
    assert KEPT.read_text(encoding="utf-8") == current, (
        "Kafka access changed: run TESSERA_UPDATE_K8S=1 uv run pytest tests/unit/test_kafka_declaration.py "
        "and commit deploy/k8s/kafka-users.yaml")


def test_every_platform_topic_has_one_writer_and_a_reader() -> None:
    for topic in Topics.all():
        writers = [s for s, a in SERVICE_ACCESS.items() if topic in a.produces]
        readers = [s for s, a in SERVICE_ACCESS.items() if topic in (*a.consumes, *a.reads_without_group)]
        if topic == Topics.DEAD_LETTER:  # every consumer parks; operators read it
            assert writers == list(SERVICE_ACCESS) and readers == []
        elif topic == Topics.STORE_ERASURE_COMPLETED:  # every store confirms to rights
            assert readers == ["rights"] and set(writers) == {"enrolment", "dialogue", "analytics"}
        else:
            assert len(writers) == 1 and readers, (topic, writers, readers)


def test_a_service_grant_names_only_its_own_topics_and_groups() -> None:
    grants = service_grants("analytics")
    assert Grant("group", "tessera-analytics", "prefixed", ("READ",)) in grants
    topics = {g.name: g.operations for g in grants if g.resource == "topic"}
    assert topics[Topics.ANSWER_SUBMITTED] == ("READ", "DESCRIBE", "CREATE")
    assert topics[Topics.OBJECTION_APPLIED] == ("WRITE", "DESCRIBE", "CREATE")
    assert Topics.ERASURE_REQUESTED in topics and "WRITE" not in topics[Topics.ERASURE_REQUESTED]
    assert not any(g.pattern == "prefixed" and g.resource == "topic" for g in grants)  # no tenant topics
    assert own_topics("tessera-analytics") == list(SERVICE_ACCESS["analytics"].topics_created_at_start)


def test_a_tenant_grant_reads_its_own_prefix_and_does_nothing_else() -> None:
    grants = tenant_grants("t_abc12345")
    assert grants == [Grant("topic", "tenant.t_abc12345.", "prefixed", ("READ", "DESCRIBE")),
                      Grant("group", "tenant.t_abc12345.", "prefixed", ("READ",))]
    bindings = acl_bindings("tenant-t_abc12345-kc_1", grants)
    assert [(b.name, b.principal, b.operation.name, b.permission_type.name) for b in bindings] == [
        ("tenant.t_abc12345.", "User:tenant-t_abc12345-kc_1", "READ", "ALLOW"),
        ("tenant.t_abc12345.", "User:tenant-t_abc12345-kc_1", "DESCRIBE", "ALLOW"),
        ("tenant.t_abc12345.", "User:tenant-t_abc12345-kc_1", "READ", "ALLOW"),
    ]


def test_production_refuses_a_service_without_a_kafka_principal() -> None:
    secrets = {"operator_key": "o" * 20, "internal_token": "i" * 20, "erased_marker_key": "m" * 20}
    with pytest.raises(ValueError, match="TESSERA_KAFKA_USERNAME"):
        ServiceSettings(environment="production", **secrets)
    with pytest.raises(ValueError, match="TESSERA_KAFKA_PASSWORD"):
        ServiceSettings(kafka_username="tessera-dialogue")
    settings = ServiceSettings(environment="production", kafka_username="tessera-dialogue",
                               kafka_password="p" * 20, **secrets)
    credentials = settings.kafka_credentials()
    assert credentials == KafkaCredentials("tessera-dialogue", SecretStr("p" * 20))
    assert credentials.aiokafka()["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "p" * 20 not in repr(credentials)  # the password never reaches a log line
