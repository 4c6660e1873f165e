"""Command steps (`run`, `wait: until`): validated with file and line, refused up front where
the lab has no shell, and run by the runner through a machine's shell.

The shell here is this machine's own `sh` (a subprocess per command), so exit statuses,
output, time limits and the `/proc/net/tcp` check of `port_open` are real; only the
lab around it (SSH to a dom0) is left out. The run on a QEMU lab is
tests/e2e/test_command_steps.py.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from test_scenario_runner import FakePool, World

from xenlab.errors import CommandFailed, SpecError
from xenlab.lab.labs import make_lab
from xenlab.report.html import render_run_html
from xenlab.results import RunResults
from xenlab.scenario import parse_scenario, run_scenario
from xenlab.scenario.session import fit
from xenlab.spec import load_lab

REPO = Path(__file__).resolve().parents[2]
HEAD = "name: t\nsteps:\n"


@dataclass(frozen=True)
class Output:
    status: int
    stdout: str
    stderr: str


class LocalShell:
    """This machine's sh, answering as a lab machine's RemoteShell does (CommandFailed at the timeout)."""

    def __init__(self):
        self.commands: list[str] = []

    def run(self, command: str, timeout: float = 60, input: bytes | None = None) -> Output:
        self.commands.append(command)
        try:
            done = subprocess.run(["sh", "-c", command], check=False, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed("h1", command, None, _text(exc.stdout), _text(exc.stderr)) from None
        return Output(done.returncode, done.stdout, done.stderr)


def _text(data: bytes | str | None) -> str:
    return data.decode() if isinstance(data, bytes) else data or ""


class ShellLab:
    name = "shell-lab"

    def __init__(self, shell):
        self.machines = {"h1": shell}


def run(text: str, shell=None):
    shell = shell or LocalShell()
    events: list[tuple] = []
    result = run_scenario(parse_scenario(HEAD + text, "s.yaml"), ShellLab(shell), FakePool(World()), None, None,
                          on_event=lambda *e: events.append(e), poll_s=0.01)
    return result, shell, events


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(SpecError) as info:
        parse_scenario(HEAD + text, "s.yaml")
    return info.value.problems


# -- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(("step", "wanted"), [
    ('  - run: {host: h1, command: "x", expect: {stdout: "a("}}',
     "steps.0.run.expect.stdout: 'a(' is not a regular expression: missing ), unterminated subpattern"),
    ('  - run: {host: h1, command: "x", expect: {within: 3 hours}}',
     "steps.0.run.expect.within: '3 hours' is not a duration: write seconds such as 30, or '30s'"),
    ('  - run: {host: h1, command: "x", expect: {exit: 300}}',
     "steps.0.run.expect.exit: 300 is not an exit status: write a number from 0 to 255, `nonzero` or `any`"),
    ('  - run: {host: h1, command: "  "}', "steps.0.run.command: the command is empty"),
    ('  - run: {host: h1, command: "x", expect: {stdot: "a"}}', "unknown key 'stdot' in steps.0.run.expect"),
    ("  - wait: {until: {unit_active: {host: h1, unit: \"a b\"}}}",
     "steps.0.wait.until.unit_active.unit: 'a b' is not a systemd unit name"),
    ("  - wait: {until: {}}", "steps.0.wait.until: `until` has exactly one of command_succeeds, unit_active"),
    ("  - wait: {until: {port_open: {host: h1, port: 70000}}}", "steps.0.wait.until.port_open.port: "),
    ("  - wait: {until: {port_open: {host: h1, port: 22}}, seconds: 3}", "steps.0.wait: a wait has either `for: CONDITION`"),
])
def test_a_bad_command_step_is_refused_at_its_line(step, wanted):
    [(line, message)] = problems(step + "\n")
    assert line == 3 and message.startswith(wanted), message


def test_durations_read_as_seconds_and_titles_show_the_command():
    scenario = parse_scenario(HEAD + '  - run: {host: h1, command: "xl info", expect: {within: 500ms}}\n'
                                     '  - run: {host: h1, command: "true", expect: {within: 2m, exit: any}}\n'
                                     "  - wait: {until: {unit_active: {host: services, unit: nfs-server}}}\n",
                              "s.yaml")
    first, second, third = scenario.steps
    assert (first.run.expect.within, second.run.expect.within) == (0.5, 120.0)
    assert first.title == "run on h1: xl info" and first.run.expect.exit == 0
    assert third.title == "wait until nfs-server active on services"


def test_unknown_hosts_are_named_at_their_lines_and_the_services_node_is_allowed():
    lab = load_lab(REPO / "labs/xen-pool2.yaml")
    scenario = parse_scenario(HEAD + "  - run: {host: h9, command: ls}\n"
                                     "  - wait: {until: {port_open: {host: services, port: 2049}}}\n"
                                     "  - wait: {until: {command_succeeds: {host: h7, command: 'true'}}}\n", "s.yaml")
    assert fit(scenario, make_lab(lab, "labs/xen-pool2.yaml")) == [
        (3, "lab xen-pool2 has no host 'h9' (hosts: h1, h2; services node: services)"),
        (5, "lab xen-pool2 has no host 'h7' (hosts: h1, h2; services node: services)")]


def test_a_sim_lab_refuses_command_steps_up_front_naming_the_capability():
    path = REPO / "labs/xapi-sim-pool3.yaml"
    scenario = parse_scenario(HEAD + "  - form_pool: {members: [h1, h2]}\n  - run: {host: h1, command: 'true'}\n"
                                     "  - wait: {until: {unit_active: {host: h2, unit: xapi}}}\n", "s.yaml")
    found = fit(scenario, make_lab(load_lab(path), str(path)))
    assert [line for line, _ in found] == [4, 5]
    assert all("sim lab xapi-sim-pool3 has no shell there (capability: shell" in m for _, m in found)


# -- running ------------------------------------------------------------------------------
def test_a_run_step_passes_on_its_exit_status_and_output_and_keeps_them():
    result, shell, _ = run('  - run: {host: h1, command: "echo xen_major : 4; echo warn >&2", '
                           'expect: {exit: 0, stdout: "xen_major\\\\s*: 4", stderr: "^warn$"}}\n')
    [step] = result.steps
    assert step.outcome == "passed", step.message
    command = step.details["command"]
    assert (command["exit"], command["stdout_tail"], command["stderr_tail"]) == (0, "xen_major : 4", "warn")
    assert [c["passed"] for c in command["checks"]] == [True, True, True]
    assert step.figures["duration"].value == command["seconds"]
    assert shell.commands == ["echo xen_major : 4; echo warn >&2"]


def test_a_wrong_exit_status_or_output_fails_the_step_with_what_it_said():
    result, _, _ = run('  - run: {host: h1, command: "echo nope; exit 3", expect: {stdout: "yes"}}\n'
                       '  - run: {host: h1, command: "true"}\n')
    failed, skipped = result.steps
    assert failed.outcome == "failed" and skipped.outcome == "skipped"
    assert failed.message == ("`echo nope; exit 3` on h1: exit 3 (expected exit 0); stdout does not match 'yes' "
                              "(expected stdout matches 'yes'); it said: nope")
    assert failed.details["command"]["exit"] == 3


def test_expecting_a_nonzero_exit_passes_on_a_failure_only():
    result, _, _ = run('  - run: {host: h1, command: "exit 1", expect: {exit: nonzero}}\n'
                       '  - run: {host: h1, command: "exit 0", expect: {exit: nonzero}}\n')
    assert [s.outcome for s in result.steps] == ["passed", "failed"]


def test_a_command_past_its_time_is_stopped_and_fails():
    result, _, _ = run('  - run: {host: h1, command: "echo started; exec sleep 30", expect: {within: 300ms}}\n')
    [step] = result.steps
    assert step.outcome == "failed"
    assert "it did not finish within 0.3 s" in step.message
    assert step.details["command"]["error"] == "did not finish within 0.3 s"
    assert "exit" not in step.details["command"]


def test_wait_until_a_command_succeeds_tries_it_until_it_does(tmp_path):
    counter = tmp_path / "tries"
    counter.write_text("0")
    command = f"n=$(cat {counter}); echo $((n+1)) > {counter}; [ $n -ge 2 ]"
    result, shell, _ = run(f"  - wait: {{until: {{command_succeeds: {{host: h1, command: '{command}'}}}}, "
                           "timeout: 30}\n")
    [step] = result.steps
    assert step.outcome == "passed", step.message
    assert step.details["command"]["attempts"] == 3 and len(shell.commands) == 3
    assert step.message.endswith("(3 tries)")


def test_wait_until_that_never_holds_fails_with_the_last_try():
    result, _, _ = run("  - wait: {until: {command_succeeds: {host: h1, command: 'echo not yet >&2; false'}}, "
                       "timeout: 0.2}\n")
    [step] = result.steps
    assert step.outcome == "failed"
    assert step.message.startswith("`echo not yet >&2; false` succeeds on h1: not so after 0.2 s (")
    assert step.message.endswith("last: exit 1; it said: not yet)")


def test_port_open_reads_the_listening_sockets_of_the_machine():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result, _, _ = run(f"  - wait: {{until: {{port_open: {{host: h1, port: {port}}}}}, timeout: 5}}\n")
        assert result.steps[0].outcome == "passed", result.steps[0].message
    with socket.socket() as bound_only:  # bound but not listening: not open
        bound_only.bind(("127.0.0.1", 0))
        port = bound_only.getsockname()[1]
        result, _, _ = run(f"  - wait: {{until: {{port_open: {{host: h1, port: {port}}}}}, timeout: 0.2}}\n")
        assert result.steps[0].outcome == "failed"


def test_unit_active_asks_systemctl_quietly():
    scenario = parse_scenario(HEAD + "  - wait: {until: {unit_active: {host: h1, unit: \"xen-watchdog.service\"}}}\n",
                              "s.yaml")
    assert scenario.steps[0].wait.until.shell_command() == "systemctl is-active --quiet xen-watchdog.service"


def test_a_lab_without_a_shell_on_the_host_errors_rather_than_passes():
    class NoShellLab:  # what a bare runner call on a sim lab would be given
        name = "sim-lab"
        machines: ClassVar[dict] = {}

    result = run_scenario(parse_scenario(HEAD + "  - run: {host: h1, command: 'true'}\n", "s.yaml"),
                          NoShellLab(), FakePool(World()), None, None)
    [step] = result.steps
    assert step.outcome == "error"
    assert "needs a shell on h1 (capability: shell)" in step.message


def test_the_html_report_shows_what_the_command_did():
    result, _, _ = run("""  - run: {host: h1, command: "echo '<b>hi</b>'; exit 2", expect: {exit: 2, stdout: hi}}\n""")
    page = render_run_html(RunResults(lab="shell-lab", accel="kvm", scenarios=[result]))
    assert "<code>h1$ echo &#x27;&lt;b&gt;hi&lt;/b&gt;&#x27;; exit 2</code>" in page
    assert "exit 2" in page and "<pre>&lt;b&gt;hi&lt;/b&gt;</pre>" in page
    assert "stdout matches &#x27;hi&#x27;" in page
