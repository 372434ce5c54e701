import json
import time

import pytest
from pydantic import ValidationError

from tessera_common import identity
from tessera_common.events import DeviceEnrolled, Topics
from tessera_common.http import StrictBody, whole_number
from tessera_common.logs import REDACTED, redact_sensitive
from tessera_common.netaddr import truncate_ip
from tessera_common.secrets import erased_marker, new_split_secret, secret_hash, split_secret_selector
from tessera_common.settings import ServiceSettings
from tessera_common.telemetry import sanitise_path


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        ("testclient", "unknown"),
    ],
)
def test_addresses_are_kept_only_as_their_network(address, network):
    assert truncate_ip(address) == network


@pytest.mark.parametrize(
    ("path", "safe"),
    [
        ("/v1/tenants/t_AbC123xyz/codes/K7MQ2X9RTA", "/v1/tenants/:id/codes/:id"),
        ("/v1/enrolments", "/v1/enrolments"),
        ("/v1/me?token=abc", "/v1/me"),
        ("/v1/tenants/t_x/stats/devices", "/v1/tenants/:id/stats/devices"),
    ],
)
def test_span_paths_keep_route_words_and_drop_identifiers(path, safe):
    assert sanitise_path(path) == safe


def test_log_redaction_drops_secret_looking_keys_and_keeps_the_rest():
    event = redact_sensitive(None, "info", {
        "event": "x", "device_token": "tdt_1", "api_key": "tak_1", "opp_code": "ABC",
        "client_ip": "1.2.3.4", "status_code": 201, "tenant_id": "t_1",
    })
    assert event["device_token"] == event["api_key"] == event["opp_code"] == event["client_ip"] == REDACTED
    assert event["status_code"] == 201 and event["tenant_id"] == "t_1"


def test_secrets_have_256_bits_name_their_record_and_are_stored_as_sha256():
    token = new_split_secret("tdt", "p_Ab3-x_9")
    assert len(token.split(".", 1)[1]) >= 43
    assert split_secret_selector("tdt", token) == "p_Ab3-x_9"
    assert secret_hash(token) != token and len(secret_hash(token)) == 64


@pytest.mark.parametrize(
    "presented",
    ["", "tdt_p_x", "tak_p_x." + "A" * 43, "tdt_." + "A" * 43, "tdt_p_x.short", "tdt_p$gt.x" + "A" * 43,
     "tdt_" + "p" * 65 + "." + "A" * 43],
)
def test_malformed_secrets_have_no_selector(presented):
    assert split_secret_selector("tdt", presented) is None


def test_participant_assertions_verify_only_for_their_audience_and_lifetime():
    private, public = identity.generate_signing_key()
    who = identity.Participant("p_abc", "t_def")
    token = identity.sign_assertion(private, who, audience="tessera-dialogue")

    assert identity.verify_assertion(public, token, "tessera-dialogue") == who
    with pytest.raises(identity.InvalidAssertion):
        identity.verify_assertion(public, token, "tessera-rights")
    expired = identity.sign_assertion(private, who, "tessera-dialogue", ttl_seconds=1, now=time.time() - 120)
    with pytest.raises(identity.InvalidAssertion):
        identity.verify_assertion(public, expired, "tessera-dialogue")
    _, other_public = identity.generate_signing_key()
    with pytest.raises(identity.InvalidAssertion):
        identity.verify_assertion(other_public, token, "tessera-dialogue")


def test_an_unsigned_assertion_is_refused():
    import base64

    _, public = identity.generate_signing_key()

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': 'p_x', 'tid': 't_y', 'aud': 'tessera-dialogue', 'iss': identity.ISSUER, 'exp': time.time() + 60, 'iat': time.time()})}."
    with pytest.raises(identity.InvalidAssertion):
        identity.verify_assertion(public, forged, "tessera-dialogue")


def test_events_refuse_operators_and_unknown_fields():
    good = {
        "source": "s", "tenant_id": "t_abc", "type": "io.tessera.device.enrolled.v1",
        "data": {"participant_id": "p_abc", "platform": "ios", "form_factor": "phone",
                 "enrolled_at": "2026-11-22T10:00:00Z"},
    }
    assert DeviceEnrolled.model_validate(good).data.platform == "ios"
    with pytest.raises(ValidationError):
        DeviceEnrolled.model_validate({**good, "tenant_id": {"$gt": ""}})
    with pytest.raises(ValidationError):
        DeviceEnrolled.model_validate({**good, "data": {**good["data"], "email": "a@b.nl"}})
    with pytest.raises(ValidationError):
        DeviceEnrolled.model_validate({**good, "type": "io.tessera.device.enrolled.v2"})


def test_tenant_topics_share_a_prefix_for_acls():
    assert Topics.for_tenant("t_abc").startswith("tenant.t_abc.")
    assert len(set(Topics.all())) == len(Topics.all())


REAL = {"operator_key": "a-real-secret-value", "internal_token": "another-real-one", "erased_marker_key": "a-third",
        "kafka_username": "tessera-dialogue", "kafka_password": "a-fourth"}


@pytest.mark.parametrize("secret", ["operator_key", "internal_token", "erased_marker_key"])
def test_production_refuses_every_placeholder_secret(secret):
    with pytest.raises(ValidationError, match=secret.upper()):
        ServiceSettings(environment="production", **{**REAL, secret: f"dev-{secret.replace('_', '-')}"})
    assert ServiceSettings(environment="production", **REAL).environment == "production"


def test_an_erased_marker_is_keyed_and_does_not_contain_the_id():
    marker = erased_marker("key-one", "p_abc123")
    assert marker == erased_marker("key-one", "p_abc123")
    assert marker != erased_marker("key-two", "p_abc123")
    assert "abc123" not in marker and len(marker) == 64


def test_a_downstream_route_admits_only_a_valid_assertion_for_itself():
    from typing import Annotated

    from fastapi import Depends, FastAPI
    from fastapi.testclient import TestClient

    private, public = identity.generate_signing_key()
    current = identity.participant_dependency(public, "tessera-dialogue")
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(who: Annotated[identity.Participant, Depends(current)]) -> dict:
        return {"participant_id": who.participant_id, "tenant_id": who.tenant_id}

    client = TestClient(app)
    who = identity.Participant("p_abc", "t_def")
    good = identity.sign_assertion(private, who, "tessera-dialogue")
    for_rights = identity.sign_assertion(private, who, "tessera-rights")

    assert client.get("/whoami", headers={identity.ASSERTION_HEADER: good}).json() == {
        "participant_id": "p_abc", "tenant_id": "t_def"}
    assert client.get("/whoami").status_code == 401
    assert client.get("/whoami", headers={identity.ASSERTION_HEADER: for_rights}).status_code == 401
    assert client.get("/whoami", headers={identity.ASSERTION_HEADER: good + "x"}).status_code == 401


class _Count(StrictBody):
    count: whole_number(-10, 10)
    optional: whole_number(1, 10) | None = None


@pytest.mark.parametrize("sent", [5, 5.0, -3.0])
def test_a_whole_number_is_taken_as_json_writes_it(sent):
    # JSON Schema's "integer", which the OpenAPI documents state, takes 5.0: so does the service.
    assert _Count.model_validate_json(json.dumps({"count": sent})).count == int(sent)


@pytest.mark.parametrize("sent", ["5", True, 5.5, None, [5], {"$gt": 0}, 11, 11.0])
def test_anything_but_a_whole_json_number_in_range_is_refused(sent):
    with pytest.raises(ValidationError):
        _Count.model_validate_json(json.dumps({"count": sent}))


def test_a_whole_number_is_documented_as_an_integer_with_its_bounds():
    properties = _Count.model_json_schema()["properties"]
    assert properties["count"] == {"title": "Count", "type": "integer", "minimum": -10, "maximum": 10}
    assert properties["optional"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 10}


def test_the_allow_list_check_takes_ipv4_mapped_addresses_and_refuses_what_is_no_address() -> None:
    import ipaddress

    from tessera_common.tenant_access import address_allowed

    office = [ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32")]
    assert address_allowed([], "198.51.100.9") and address_allowed([], None)  # no list: anywhere
    assert address_allowed(office, "203.0.113.50") and address_allowed(office, "2001:db8::5")
    assert address_allowed(office, "::ffff:203.0.113.50")  # a dual-stack socket's IPv4
    for outside in ("198.51.100.9", "::ffff:198.51.100.9", "2001:db9::1", "testclient", "", None):
        assert not address_allowed(office, outside), outside
