"""``make run``'s launcher (``tessera-devstack run``) as a developer runs it: the whole
platform on free ports, a service killed, and the launcher bringing it back."""

from __future__ import annotations

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

from tessera_devstack.processes import free_port

pytestmark = [pytest.mark.connected, pytest.mark.e2e]

SERVICES = ("enrolment", "dialogue", "rights", "analytics")


class Launcher:
    """``tessera-devstack run`` as a process, its output collected line by line."""

    def __init__(self, run_dir: Path) -> None:
        self.ports = {name: free_port() for name in ("kafka", "kafka_controller", "store", *SERVICES)}
        command = shutil.which("tessera-devstack", path=str(Path(sys.executable).parent))
        assert command, "console script tessera-devstack is not installed"
        env = {**os.environ, "TESSERA_RUN_DIR": str(run_dir),
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


def test_make_run_restarts_a_service_that_dies_and_stops_everything_on_ctrl_c(tmp_path):
    launcher = Launcher(tmp_path / "run")
    try:
        launcher.wait_for("Tessera is running", timeout=240)
        pids = {name: launcher.pid(name) for name in ("kafka", "postgresql", *SERVICES)}
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
