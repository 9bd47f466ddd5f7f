"""``make run`` running: the real quickstart (``python -m devtools.quickstart``, on free ports with ``--ports``) and
the README's steps against it: an AS outage (the dev AS stopped with ``kill -STOP``: a cached token keeps working,
stale once its TTL has passed; a fresh one gets 503 + Retry-After; ``kill -CONT`` and it works), a process that
exits (reported with its cause, the others keep running), a taken port (named, nothing started)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.processes import free_port
from devtools.quickstart import exit_cause
from devtools.quickstart_ports import mode_ports
from tests.harness import ROOT, Response, basic, http_request, wait_until


class Quickstart:
    """``python -m devtools.quickstart`` on free ports, its output in a file."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None, ports: dict[str, int] | None = None) -> None:
        self.ports = ports or {name: free_port() for name in mode_ports("grpc", {})}
        self.run = tmp / "run"
        self.out = tmp / "quickstart.out"
        argv = [sys.executable, "-m", "devtools.quickstart", "--workdir", str(self.run),
                "--ports", ",".join(f"{name}={port}" for name, port in self.ports.items())]
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, **(env or {})})

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_running(self) -> None:
        wait_until(lambda: "quickstart is running" in self.output() or self.proc.poll() is not None,
                   "the quickstart starts its four processes", timeout=90)
        assert self.proc.poll() is None, self.output()

    def pid(self, name: str) -> int:
        return int((self.run / f"{name}.pid").read_text())

    def token(self, scope: str = "read") -> str:
        resp = http_request("POST", self.ports["dev-as"], "/oauth/v2/oauth-token",
                            {"Authorization": basic("demo-client", "demo-secret"),
                             "Content-Type": "application/x-www-form-urlencoded"},
                            f"grant_type=client_credentials&scope={scope}")
        assert resp.status == 200, resp
        return str(resp.json()["access_token"])

    def get(self, path: str, token: str) -> Response:
        return http_request("GET", self.ports["envoy"], path, {"Authorization": f"Bearer {token}"})

    def metric(self, sample: str) -> float:
        """The value of one sample line of phantom-authz's /metrics (0 when absent)."""
        text = http_request("GET", self.ports["authz-metrics"], "/metrics").body.decode()
        values = [line.rpartition(" ")[2] for line in text.splitlines() if line.startswith(sample + " ")]
        return float(values[0]) if values else 0.0

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Ctrl-C (or SIGTERM): the quickstart stops its processes and exits."""
        pids = [self.pid(name) for name in ("dev-as", "echo", "phantom-authz", "envoy")
                if (self.run / f"{name}.pid").exists()]
        self.proc.send_signal(sig)
        code = self.proc.wait(60)
        for pid in pids:
            assert not _alive(pid), f"process {pid} outlived the quickstart"
        assert not list(self.run.glob("*.pid")), "pid files are removed"
        return code

    def kill(self) -> None:
        """After a failed test: stop the quickstart and, should it be gone already, what it started."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        for pid_file in self.run.glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def quickstart(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Quickstart]:
    started = Quickstart(tmp_path, getattr(request, "param", None))
    try:
        started.wait_running()
        yield started
    finally:
        started.kill()


STALE = 'phantom_authz_cache_lookups_total{result="stale"}'


# the README's way to reach stale-if-error in seconds: a short cache TTL (AUTHZ__CACHE__MAX_TTL_SECONDS)
@pytest.mark.parametrize("quickstart", [{"AUTHZ__CACHE__MAX_TTL_SECONDS": "1"}], indirect=True)
def test_dev_as_stopped_and_continued_as_the_readme_says(quickstart: Quickstart) -> None:
    printed = quickstart.output()
    ports = quickstart.ports
    assert f"admin http://127.0.0.1:{ports['envoy-admin']}" in printed
    assert f"cache admin API 127.0.0.1:{ports['authz-admin']}" in printed
    assert f"metrics http://127.0.0.1:{ports['authz-metrics']}/metrics" in printed
    assert "may get scopes read write admin approve (default: read)" in printed
    assert "kill -STOP $(cat " in printed and "kill -CONT $(cat " in printed
    cached, fresh = quickstart.token(), quickstart.token()
    assert quickstart.get("/httpbin/get", cached).status == 200
    dev_as = quickstart.pid("dev-as")
    os.kill(dev_as, signal.SIGSTOP)
    try:
        def served_stale() -> bool:
            """Allowed every time: a fresh hit within the 1 s TTL, then stale (the AS does not answer)."""
            assert quickstart.get("/httpbin/get", cached).status == 200
            return quickstart.metric(STALE) >= 1

        wait_until(served_stale, "the cached answer is served stale while the dev AS is stopped", timeout=30)
        refused = quickstart.get("/httpbin/get", fresh)
        assert refused.status == 503, refused
        assert refused.headers.get("retry-after") == "5", refused  # deploy/authz.yaml's retry_after_seconds
        assert refused.json()["error"] == "server_error"
    finally:
        os.kill(dev_as, signal.SIGCONT)
    assert quickstart.get("/httpbin/get", fresh).status == 200
    assert quickstart.get("/httpbin/get", quickstart.token()).status == 200
    assert "quickstart: dev-as" not in quickstart.output(), "a stopped process has not exited"
    assert quickstart.stop() == 0


def test_a_process_that_exits_is_reported_and_the_others_keep_running(quickstart: Quickstart) -> None:
    token = quickstart.token()
    os.kill(quickstart.pid("echo"), signal.SIGKILL)
    report = "quickstart: echo killed by SIGKILL; dev-as, phantom-authz, envoy keep running."
    wait_until(lambda: report in quickstart.output(), "the quickstart reports the echo upstream's end")
    assert "echo/get" not in report and "The last lines of" in quickstart.output()
    assert quickstart.get("/admin/get", token).status == 403  # Envoy, phantom-authz and the dev AS still answer
    assert quickstart.get("/httpbin/get", token).status == 503  # Envoy: no upstream
    os.kill(quickstart.pid("dev-as"), signal.SIGTERM)
    wait_until(lambda: "quickstart: dev-as exited with status 0; phantom-authz, envoy keep running" in
               quickstart.output(), "the quickstart reports the dev AS's end")
    assert quickstart.proc.poll() is None
    assert quickstart.stop(signal.SIGTERM) == 1  # a process had exited


def test_exit_causes_read_as_the_report_prints_them() -> None:
    assert exit_cause(0) == "exited with status 0"
    assert exit_cause(3) == "exited with status 3"
    assert exit_cause(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_cause(-200) == "killed by signal 200"


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    ports = {name: free_port() for name in mode_ports("grpc", {})}
    holders = []
    for name in ("authz-metrics", "envoy-admin"):
        holder = socket.socket()
        holder.bind(("127.0.0.1", ports[name]))
        holder.listen()
        holders.append(holder)
    try:
        quickstart = Quickstart(tmp_path, ports=ports)
        assert quickstart.proc.wait(60) == 1
    finally:
        for holder in holders:
            holder.close()
    printed = quickstart.output()
    assert "quickstart: nothing started; ports taken:" in printed
    assert f"port {ports['authz-metrics']} (phantom-authz's /metrics): Address already in use" in printed
    assert "--ports authz-metrics=PORT" in printed
    assert f"port {ports['envoy-admin']} (Envoy's admin interface)" in printed
    assert "starting" not in printed
    assert not (tmp_path / "run").exists(), "no log or pid file: nothing was started"
