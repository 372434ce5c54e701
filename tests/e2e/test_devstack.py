"""``make run``'s launcher (``tessera-devstack run``) as a developer runs it: the whole
platform on free ports; one erasure followed in Jaeger from the phone into every
store's consumer, with nothing personal in any span; a service killed, and the launcher
bringing it back; Ctrl-C stopping everything."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tessera_devstack.processes import free_port

pytestmark = [pytest.mark.connected, pytest.mark.e2e]

SERVICES = ("enrolment", "dialogue", "rights", "analytics")
OPERATOR_KEY = "devstack-operator-key-" + os.urandom(8).hex()


class Launcher:
    """``tessera-devstack run`` as a process, its output collected line by line."""

    def __init__(self, run_dir: Path) -> None:
        self.ports = {name: free_port() for name in ("kafka", "kafka_controller", "store", "jaeger", "jaeger_otlp",
                                                     *SERVICES)}
        command = shutil.which("tessera-devstack", path=str(Path(sys.executable).parent))
        assert command, "console script tessera-devstack is not installed"
        env = {**os.environ, "TESSERA_RUN_DIR": str(run_dir), "TESSERA_OPERATOR_KEY": OPERATOR_KEY,
               **{f"TESSERA_{name.upper()}_PORT": str(port) for name, port in self.ports.items()}}
        self.process = subprocess.Popen([command, "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()
        self.pids = run_dir / "pids"

    def _collect(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, "the launcher stopped:\n" + "\n".join(self.lines[-40:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} after {timeout}s:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.2)

    def pid(self, name: str) -> int:
        return int((self.pids / f"{name}.pid").read_text())

    def ready(self, service: str) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.ports[service]}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def interrupt(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=90)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def launcher(tmp_path_factory) -> Launcher:
    launcher = Launcher(tmp_path_factory.mktemp("devstack") / "run")
    try:
        launcher.wait_for("Tessera is running", timeout=300)
        yield launcher
    finally:
        if launcher.process.poll() is None:
            launcher.interrupt()


def test_one_erasure_is_followed_in_jaeger_across_all_four_services_with_nothing_personal(launcher):
    url = {service: f"http://127.0.0.1:{launcher.ports[service]}" for service in SERVICES}
    jaeger = f"http://127.0.0.1:{launcher.ports['jaeger']}"
    assert any(f"traces     {jaeger}" in line for line in launcher.lines)  # printed for SRE
    # The phone's own address, distinct from every server's, to look for in the spans.
    phone = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.77"), timeout=30)
    http = httpx.Client(timeout=30)
    tenant = http.post(f"{url['enrolment']}/v1/tenants", json={"name": "Traces", "region": "eu-west"},
                       headers={"Authorization": f"Bearer {OPERATOR_KEY}"}).json()
    auth = {"Authorization": f"Bearer {tenant['api_key']}"}
    deadline = time.monotonic() + 60
    while http.get(f"{url['dialogue']}/v1/tenants/{tenant['tenant_id']}/settings", headers=auth).status_code != 200:
        assert time.monotonic() < deadline, "the dialogue service never learnt the tenant"
        time.sleep(0.3)
    base = f"{url['dialogue']}/v1/tenants/{tenant['tenant_id']}/dialogues"
    dialogue = http.post(base, headers=auth, json={"title": "Traces", "questions": [
        {"kind": "open_text", "prompt": "What would you change?"}]}).json()
    assert http.post(f"{base}/{dialogue['dialogue_id']}/publish", headers=auth).status_code == 200
    code = http.post(f"{url['enrolment']}/v1/tenants/{tenant['tenant_id']}/codes", json={}, headers=auth).json()
    device = phone.post(f"{url['enrolment']}/v1/enrolments",
                        json={"code": code["code"], "platform": "ios", "form_factor": "phone"}).json()
    me = {"Authorization": f"Bearer {device['device_token']}"}
    text = "Een bankje bij de vijver graag " + os.urandom(6).hex()
    question = dialogue["questions"][0]["question_id"]
    assert phone.put(f"{url['enrolment']}/v1/me/dialogues/{dialogue['dialogue_id']}/questions/{question}/answer",
                     json={"value": text}, headers=me).status_code == 201
    asked = phone.post(f"{url['enrolment']}/v1/me/rights-requests", json={"kind": "erasure"}, headers=me)
    assert asked.status_code == 202, asked.text
    secret = {"Authorization": f"Bearer {asked.json()['status_secret']}"}
    while phone.get(f"{url['enrolment']}/v1/rights-requests/{asked.json()['request_id']}",
                    headers=secret).json()["status"] != "completed":
        assert time.monotonic() < deadline + 90, "the erasure did not complete"
        time.sleep(0.5)

    # The erasure's trace, from Jaeger's query API: the gateway's request, rights, and
    # every store's consumer, over Kafka (spans are exported in batches: look again).
    wanted = {f"tessera-{service}" for service in SERVICES}
    found = None
    deadline = time.monotonic() + 60
    while found is None and time.monotonic() < deadline:
        traces = http.get(f"{jaeger}/api/traces", params={"service": "tessera-enrolment", "limit": 200,
                                                          "lookback": "1h"}).json()["data"] or []
        for trace in traces:
            services = {process["serviceName"] for process in trace["processes"].values()}
            operations = " ".join(span["operationName"] for span in trace["spans"])
            if services >= wanted and "rights-requests" in operations:
                found = trace
        time.sleep(1)
    assert found is not None, "no trace of the erasure holds spans of all four services"
    everything = json.dumps(found)
    for secret_value in (device["participant_id"], device["device_token"], code["code"], code["display"],
                         "127.0.0.77", text, tenant["api_key"]):
        assert secret_value not in everything, f"a span carries {secret_value[:6]}…"

    # The same trace in the trace view Jaeger serves at the printed URL, as SRE would open it.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=os.environ.get("TESSERA_CHROMIUM", "/usr/bin/chromium"))
        try:
            page = browser.new_page()
            page.goto(jaeger)
            page.get_by_role("button", name="Find traces").click()
            erasure = page.locator(".trace")
            for service in sorted(wanted):
                erasure = erasure.filter(has_text=service)
            erasure.filter(has_text="rights-requests").first.click()
            shown = page.locator("#spans .service").all_inner_texts()
            page.screenshot(path=str(launcher.pids.parent / "trace-view.png"), full_page=True)
        finally:
            browser.close()
    assert wanted <= set(shown), shown  # the waterfall names all four services


def test_the_console_is_printed_and_served_with_an_owner_invitation(launcher):
    """What the README's first steps promise: the printed console, and a tenant made with
    owner_email whose invitation the console opens (the run's keys and Kafka principals
    being make run's own)."""
    gateway = f"http://127.0.0.1:{launcher.ports['enrolment']}"
    assert any(f"console    {gateway}/console/" in line for line in launcher.lines)
    http = httpx.Client(timeout=30)
    page = http.get(f"{gateway}/console/")
    assert page.status_code == 200 and "console.js" in page.text
    made = http.post(f"{gateway}/v1/tenants", headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                     json={"name": "Console", "region": "eu-west", "owner_email": "owner@console.example"}).json()
    assert made["owner_invitation_url"].startswith(f"{gateway}/console/#invitation=tci_")
    token = made["owner_invitation_url"].split("#invitation=", 1)[1]
    invitation = http.post(f"{gateway}/console/api/invitation", json={"token": token})
    assert invitation.json()["email"] == "owner@console.example"


def test_make_run_restarts_a_service_that_dies_and_stops_everything_on_ctrl_c(launcher):
    try:
        pids = {name: launcher.pid(name) for name in ("kafka", "postgresql", "jaeger", *SERVICES)}
        assert all(launcher.ready(service) for service in SERVICES)

        os.kill(pids["analytics"], signal.SIGKILL)
        launcher.wait_for("analytics restarted", timeout=60)
        deadline = time.monotonic() + 60
        while not launcher.ready("analytics"):
            assert time.monotonic() < deadline, "\n".join(launcher.lines[-40:])
            time.sleep(0.3)

        restarted = launcher.pid("analytics")
        others_untouched = {name: alive(pid) for name, pid in pids.items() if name != "analytics"}
        said = "\n".join(launcher.lines)
    finally:
        code = launcher.interrupt() if launcher.process.poll() is None else launcher.process.returncode

    assert restarted != pids["analytics"] and not alive(pids["analytics"])
    assert all(others_untouched.values()), others_untouched  # one death did not take the platform down
    assert "analytics stopped unexpectedly (exit code -9); restarting in 1 s" in said
    assert code == 0
    deadline = time.monotonic() + 30  # Ctrl-C stops everything it started, the restarted one too
    while any(alive(pid) for pid in (*pids.values(), restarted)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in (*pids.values(), restarted))

