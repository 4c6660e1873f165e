"""The host fixtures are one interface on every backend: what a lab's hosts cannot do is a
skip naming the capability, never a pass over nothing (issue 26: on a simulated lab
`test_dom0_runs_sshd` passed with an empty `testinfra_hosts`, other tests died with
`'SimLabHost' object has no attribute 'power'`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_example_tests_on_a_simulated_lab_skip_what_needs_a_shell_and_power_the_hosts(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pytest", "fixtures/test_pool_example.py", "--lab",
                          "labs/xapi-sim-pool3.yaml", "-p", "no:cacheprovider", "-rA", "--junitxml",
                          str(tmp_path / "junit.xml")], cwd=REPO, capture_output=True, text=True, timeout=300,
                         check=False, env={**__import__("os").environ, "XENLAB_RUN_DIR": str(tmp_path / "runs")})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "PASSED fixtures/test_pool_example.py::test_dom0_runs_sshd" not in output
    assert "h1 of lab xapi-sim-pool3 has no shell: a simulated host" in output
    assert "PASSED fixtures/test_pool_example.py::test_reboot_time_is_recorded" in output  # the simulator's power
    assert "has no attribute" not in output and "Traceback" not in output
    junit = (tmp_path / "junit.xml").read_text()
    assert junit.count("<skipped") == 2


def test_every_backends_hosts_share_one_interface():
    from xenlab.lab.contract import LabHost
    from xenlab.lab.host import Host
    from xenlab.lab.sim import SimLabHost
    from xenlab.lab.static import StaticHost

    for kind in (Host, SimLabHost, StaticHost):
        assert issubclass(kind, LabHost)
        for verb in ("run", "succeed", "fail", "power", "serial_tail", "link", "wait_ready", "can"):
            assert callable(getattr(kind, verb)), (kind, verb)
