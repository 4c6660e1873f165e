"""Command steps on the real TCG lab, through `xenlab run` as a user runs them: a `run` step
judged on its exit status and output, and a `wait` until a unit is active, both through
the hosts' SSH shell; their output kept in the results and shown in the HTML report."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xenlab.report.html import render_run_html
from xenlab.results import RunResults

pytestmark = pytest.mark.e2e

SCENARIO = """\
name: command-steps
lab: xen-pool2
steps:
  - name: Xen 4 runs on h1
    run: {host: h1, command: "xl info", expect: {exit: 0, stdout: "xen_major\\\\s*:\\\\s*4", within: 60s}}
  - name: sshd is active on h2
    wait: {until: {unit_active: {host: h2, unit: ssh.service}}, timeout: 120}
"""


def test_a_run_step_and_a_unit_wait_go_through_the_hosts_shell(pool2, tmp_path):
    scenario = tmp_path / "command-steps.yaml"
    scenario.write_text(SCENARIO)
    results_path = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "xenlab.cli", "run", str(scenario), "--lab", pool2.name,
                           "--results", str(results_path)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=900, check=False)
    print(proc.stdout[-4000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = RunResults.read(results_path)
    [outcome] = results.scenarios
    run, wait = outcome.steps
    assert (run.outcome, wait.outcome) == ("passed", "passed")
    assert run.details["command"]["exit"] == 0 and "xen_major" in run.details["command"]["stdout_tail"]
    assert all(check["passed"] for check in run.details["command"]["checks"])
    assert wait.details["command"]["exit"] == 0 and wait.details["command"]["attempts"] >= 1
    page = render_run_html(results)
    assert "<code>h1$ xl info</code>" in page and "xen_major" in page
