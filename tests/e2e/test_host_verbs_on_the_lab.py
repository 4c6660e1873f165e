"""The host verbs on the real TCG lab, as a test writer uses them (the NixOS driver's verbs):
each one through the host's SSH shell or its serial console."""

from __future__ import annotations

import pytest

from xenlab.errors import WaitTimeout
from xenlab.lab.verbs import HostStep, listening

pytestmark = pytest.mark.e2e


def test_the_verbs_on_a_real_xen_host(pool2, tmp_path):
    h1 = pool2.host("h1")
    steps: list[HostStep] = []
    with listening(steps.append):
        assert "xen_major" in h1.succeed("xl info")
        h1.fail("xl list no-such-domain")
        h1.wait_for_unit("ssh.service", timeout=120)
        h1.wait_for_open_port(22, timeout=120)
        assert h1.wait_until_succeeds("xl list Domain-0 | tail -n 1", timeout=120).startswith("Domain-0")
        assert "Xen version" in h1.wait_for_console_text(r"Xen version \S+", timeout=60)
        local = tmp_path / "note.txt"
        local.write_text("from the test\n")
        h1.copy_to_host(local, "/tmp/note.txt")
        back = h1.copy_from_host("/tmp/note.txt", tmp_path / "back.txt")
        with pytest.raises(WaitTimeout):
            h1.wait_for_open_port(9, timeout=3)
    assert back.read_text() == "from the test\n"
    verbs = [s.verb for s in steps]
    assert verbs == ["succeed", "fail", "wait_for_unit", "wait_for_open_port", "wait_until_succeeds",
                     "wait_for_console_text", "copy_to_host", "copy_from_host", "wait_for_open_port"]
    assert all(s.ok for s in steps[:-1]) and not steps[-1].ok


def test_the_readmes_worked_example_passes_with_its_steps_in_junit(pool2, tmp_path):
    """fixtures/test_xen_checks_example.py on the shared lab (attached with --reuse-lab):
    each host verb it calls is a `host_step.N` property of the test in JUnit."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    junit = tmp_path / "junit.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "fixtures/test_xen_checks_example.py", "--reuse-lab",
                          "--lab", pool2.name, "-p", "no:cacheprovider", "--junitxml", str(junit)], cwd=repo,
                         env=dict(os.environ), capture_output=True, text=True, timeout=1200, check=False)
    print(run.stdout[-4000:], run.stderr[-2000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    text = junit.read_text()
    assert 'name="host_step.1"' in text and "h1: succeed xl info | grep xen_commandline" in text
    assert "wait_for_unit xen.service" in text and "wait_until_succeeds grep -q" in text
