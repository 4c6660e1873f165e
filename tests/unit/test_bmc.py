"""The virtual BMC, for real: its server process on 127.0.0.1, driven by ipmitool and by
pyghmi's client, powering a real "machine" (a process it starts and kills)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xenlab.errors import XenlabError
from xenlab.lab.bmc import (
    BMC_USER,
    PASSWORD_BYTES,
    bmc_status,
    credentials_path,
    ensure_credentials,
    read_credentials,
    start_bmc,
)
from xenlab.lab.ipmi import IpmiPower, IpmiTarget
from xenlab.lab.processes import cmdline, owned_pids, sweep
from xenlab.waiting import WaitTimeout, wait_for

pytestmark = pytest.mark.skipif(shutil.which("ipmitool") is None, reason="ipmitool is not installed (./setup.sh)")


def machine_pids(run: Path) -> list[int]:
    """The "machine" processes of the BMC (their command line names the machine file)."""
    return [p for p in owned_pids(str(run) + "/") if "machine-h1" in (cmdline(p) or "") and "xenlab.lab.bmc" not in
            (cmdline(p) or "")]


def settled(run: Path, count: int, not_in: tuple = ()) -> list[int]:
    """The machine processes once `count` of them run (none of `not_in`): a started
    machine is exec'd just after the BMC answers, so its command line shows a moment later."""
    def found() -> list[int] | None:
        pids = machine_pids(run)
        return pids if len(pids) == count and not any(p in not_in for p in pids) else None

    try:
        return wait_for(found, f"{count} machine process(es) in {run}", timeout=10, interval=0.05)
    except WaitTimeout:
        return machine_pids(run)  # the caller's assertion says what was there instead


@pytest.fixture(scope="module")
def bmc(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    os.chmod(run, 0o700)
    machine = [sys.executable, "-c", "import time; time.sleep(600)", str(run / "machine-h1")]
    endpoint, handle = start_bmc(run, "h1", tied=True, command=machine)
    yield run, endpoint
    sweep(str(run) + "/")
    handle.wait(timeout=10)


def ipmitool(run: Path, port: int, *args: str, password: str | None = None) -> subprocess.CompletedProcess:
    creds = read_credentials(credentials_path(run))
    env = dict(os.environ, IPMI_PASSWORD=password if password is not None else creds.password)
    # a wrong password is met by silence (the BMC drops the session): give up after one try
    retries = ["-R", "1", "-N", "1"] if password is not None else []
    return subprocess.run(["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", creds.user, "-E",
                           *retries, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def power(run: Path, port: int, action: str) -> str:
    out = ipmitool(run, port, "chassis", "power", action)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_credentials_are_generated_once_private_and_never_printed(tmp_path):
    run = tmp_path / "run"
    path = ensure_credentials(run)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    creds = read_credentials(path)
    assert creds.user == BMC_USER and 16 <= len(creds.password) <= PASSWORD_BYTES
    assert ensure_credentials(run) == path and read_credentials(path) == creds  # kept, not regenerated
    assert creds.password not in repr(creds) and creds.password not in str(creds)
    os.chmod(path, 0o644)
    with pytest.raises(XenlabError, match="readable by others"):
        read_credentials(path)


def test_the_bmc_listens_on_loopback_only_and_keeps_its_secret_off_command_lines_and_logs(bmc):
    run, endpoint = bmc
    local = f"0100007F:{endpoint.port:04X}"
    udp = Path(f"/proc/{endpoint.pid}/net/udp").read_text()
    assert local in udp
    assert f"00000000:{endpoint.port:04X}" not in udp  # not on every address
    line = cmdline(endpoint.pid) or ""
    assert str(run) in line and "xenlab.lab.bmc" in line  # `down` and the sweep find it
    power(run, endpoint.port, "status")
    password = read_credentials(credentials_path(run)).password
    assert password not in line
    assert password not in (run / "logs" / "bmc-h1.log").read_text()
    assert bmc_status(run, "h1") == {"interface": "ipmi", "address": "127.0.0.1", "port": endpoint.port,
                                     "pid": endpoint.pid, "credentials_file": str(credentials_path(run)),
                                     "state": "listening"}


def test_ipmitool_chassis_power_maps_onto_the_machine(bmc):
    run, endpoint = bmc
    port = endpoint.port
    if not machine_pids(run):
        power(run, port, "on")
    [first] = settled(run, 1)
    assert power(run, port, "status") == "Chassis Power is on"
    assert "Down/Off" in power(run, port, "off")
    assert machine_pids(run) == []
    assert power(run, port, "status") == "Chassis Power is off"
    refused = ipmitool(run, port, "chassis", "power", "reset")  # nothing to reset while off
    assert refused.returncode != 0
    assert "Up/On" in power(run, port, "on")
    [second] = settled(run, 1, (first,))
    assert second != first
    assert "Cycle" in power(run, port, "cycle")
    [third] = settled(run, 1, (second,))
    assert third != second
    assert "Reset" in power(run, port, "reset")
    [fourth] = settled(run, 1, (third,))
    assert fourth != third
    assert power(run, port, "status") == "Chassis Power is on"


def test_a_wrong_password_is_refused(bmc):
    run, endpoint = bmc
    out = ipmitool(run, endpoint.port, "chassis", "power", "status", password="not-the-password")
    assert out.returncode != 0 and "Chassis Power" not in out.stdout


def test_pyghmi_client_powers_the_machine_and_names_no_secret_when_refused(bmc):
    run, endpoint = bmc
    creds = read_credentials(credentials_path(run))
    client = IpmiPower(IpmiTarget("h1", "127.0.0.1", endpoint.port, creds.user, lambda: creds.password))
    if not client.is_on():
        client.request("on", wait=10)
    client.request("off", wait=10)
    assert client.state() == "off" and machine_pids(run) == []
    client.request("on", wait=10)
    assert client.state() == "on"
    before = settled(run, 1)
    assert len(before) == 1
    client.request("cycle")
    after = settled(run, 1, tuple(before))
    assert len(after) == 1 and after != before
    wrong = IpmiPower(IpmiTarget("h1", "127.0.0.1", endpoint.port, creds.user, lambda: "wrong-password-123"))
    with pytest.raises(XenlabError) as info:
        wrong.state()
    assert "h1" in str(info.value) and "wrong-password-123" not in str(info.value)
    assert creds.password not in str(info.value)


def test_the_sweep_stops_the_bmc_and_its_machine(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    machine = [sys.executable, "-c", "import time; time.sleep(600)", str(run / "machine-h1")]
    endpoint, handle = start_bmc(run, "h1", tied=True, command=machine)
    assert len(machine_pids(run)) == 1
    stopped = sweep(str(run) + "/")
    handle.wait(timeout=10)
    assert endpoint.pid in stopped
    assert owned_pids(str(run) + "/") == []
    assert bmc_status(run, "h1")["state"] == "not running"


def test_a_qemu_lab_with_bmc_ipmi_shows_its_bmcs_in_status_json(tmp_path):
    """A lab file asking for `bmc: ipmi` gets a BMC per host, started by the lab in its run
    directory; `xenlab status --json` names its port and credentials file (not the
    credentials), and the BMC reports the host's power from the lab's own records."""
    from xenlab.lab import Lab
    from xenlab.lab.bmc import start_lab_bmcs
    from xenlab.lab.rundir import LabState, MachineState, RunDir
    from xenlab.spec import parse_lab

    base = tmp_path / "runs"
    base.mkdir(mode=0o700)
    run = RunDir(base / "bmclab")
    run.create()
    spec = parse_lab("name: bmclab\nbmc: ipmi\nhosts:\n  h1:\n  h2:\n    bmc: ipmi\nservices: null\n")
    assert spec.bmc_of("h1") == "ipmi" and spec.bmc_of("h2") == "ipmi"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", run.marker + "qemu-h1"])
    state = LabState(lab="bmclab", spec_path="", spec=json.loads(spec.model_dump_json()), accel="tcg", cpu="qemu64",
                     accel_reason="test", created_at=time.time(), tied_to_pid=None)
    state.machines["h1"] = MachineState(ssh_port=1, image_dir=str(tmp_path), pid=sleeper.pid)  # "QEMU" of h1
    state.machines["h2"] = MachineState(ssh_port=2, image_dir=str(tmp_path), pid=None, powered=False)
    run.write_state(state)
    lab = Lab(spec, "", run)
    started = start_lab_bmcs(lab, tied=True)
    try:
        assert sorted(started) == ["h1", "h2"]
        out = subprocess.run([sys.executable, "-m", "xenlab.cli", "status", "--json", "--lab", "bmclab"],
                             env=dict(os.environ, XENLAB_RUN_DIR=str(base)), capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        machines = {m["name"]: m for m in json.loads(out.stdout)["machines"]}
        password = read_credentials(credentials_path(run.root)).password
        assert password not in out.stdout
        for name in ("h1", "h2"):
            bmc = machines[name]["bmc"]
            assert bmc["address"] == "127.0.0.1" and bmc["state"] == "listening"
            assert bmc["credentials_file"] == str(credentials_path(run.root)) and bmc["pid"] == started[name][0]
        assert power(run.root, machines["h1"]["bmc"]["port"], "status") == "Chassis Power is on"
        assert power(run.root, machines["h2"]["bmc"]["port"], "status") == "Chassis Power is off"
        # the lab's own power faults go through the BMC too: here the reset reaches h1's
        # power control, which fails (this "QEMU" has no QMP socket) and says so over IPMI
        from xenlab.faults import inject

        with pytest.raises(XenlabError, match=r"h1: IPMI power reset on its BMC 127\.0\.0\.1:\d+ failed"):
            inject(lab, "reset", "h1")
        assert "bmc h1: power reset failed" in (run.root / "logs" / "bmc-h1.log").read_text()
        sleeper.kill()
        sleeper.wait()
        assert power(run.root, machines["h1"]["bmc"]["port"], "status") == "Chassis Power is off"
    finally:
        sleeper.kill()
        sweep(run.marker)
        for _, handle in started.values():
            handle.wait(timeout=10)
